//! The store a container sees: the closure of its current generation and
//! nothing else, instead of the host's whole /nix/store, where other
//! containers' generations and whatever secrets went into the store are.
//!
//! At start (in the helper's mount namespace, before lxc-start, see
//! lxc/mounts.rs) a tmpfs owned by the container's root goes onto its
//! /nix/store, with an empty directory (or file) for each path of the view
//! and the host's path bound onto it, read-only and idmapped. The tmpfs is
//! then made read-only and shared. The container's mount namespace copies
//! all of it, locked (it comes from a more privileged namespace), so its root
//! can neither write there nor unmount anything to see beneath.
//!
//! The namespace the helper made stays alive as LXC's monitor process's, the
//! parent of the container's init. A live update, switch or rollback adds
//! the new generation's paths there before activation: the tmpfs being
//! shared, each new mount propagates into the container, where it arrives
//! read-only and locked too. Paths that left the closure stay until the
//! next start (a rollback may want them back, and running processes may
//! still use them).
//!
//! The mounts live in these two namespaces, never in the host's: the host's
//! mount table does not grow with containers times paths.

use std::collections::BTreeSet;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use anyhow::{bail, Context, Result};
use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};
use rustix::mount::{FsMountFlags, FsOpenFlags, MountAttrFlags, MoveMountFlags};

use crate::layout::NIX_STORE;
use crate::lxc::mounts::{AttributeChange, Mounter};
use crate::profile::Generation;

/// Where the view is, relative to the container's root.
const TARGET: &str = "nix/store";

/// The store paths one generation needs, by their names in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreView {
    names: BTreeSet<String>,
}

impl StoreView {
    /// What `generation` needs: its system's closure (the generation's
    /// `closure` file; `nix-store --query --requisites` for a generation
    /// built before it had one) and the generation itself.
    pub fn of(generation: &Generation) -> Result<StoreView> {
        StoreView::of_path(&generation.path)
    }

    /// What the generation at `path` needs, as `of`.
    pub fn of_path(path: &Path) -> Result<StoreView> {
        let file = path.join(crate::layout::CLOSURE);
        let listed = match std::fs::read_to_string(&file) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => crate::nix::requisites(path)?,
            Err(err) => return Err(err).with_context(|| format!("cannot read {}", file.display())),
        };
        let mut names = BTreeSet::new();
        for listed in listed.lines().chain(path.to_str()) {
            let name = store_name(listed).with_context(|| {
                format!("generation {} lists {listed:?} in its closure", path.display())
            })?;
            names.insert(name.to_string());
        }
        Ok(StoreView { names })
    }

    /// Fails where this view, container `own`'s, holds a generation of
    /// another container, which holds that container's spec and settings. A
    /// container file may name any store path by its hash
    /// (builtins.appendContext, builtins.storePath) and so get it into its
    /// system's closure; every generation is named after its container
    /// (lib/generation.nix), which no other store path of the view can be
    /// but by its own choice of name.
    pub fn check_no_other_generation(&self, own: &str) -> Result<()> {
        let own_generation = format!("{}{own}", crate::layout::GENERATION_NAME_PREFIX);
        let other = self.names.iter().find(|name| {
            let named = name.split_at_checked(32).and_then(|(_, rest)| rest.strip_prefix('-'));
            named.is_some_and(|named| {
                named.starts_with(crate::layout::GENERATION_NAME_PREFIX) && named != own_generation
            })
        });
        match other {
            Some(other) => bail!(
                "its closure holds /nix/store/{other}, another container's generation (with its \
                 spec and settings): a container's store holds no other container's generation"
            ),
            None => Ok(()),
        }
    }

    /// Mounts the view onto the container's /nix/store. The caller is in its
    /// private mount namespace, which lxc-start inherits.
    pub fn mount(&self, mounter: &Mounter) -> Result<()> {
        let mount_point = mounter.directory(Path::new(TARGET))?;
        let store = new_tmpfs(mounter.owner())?;
        rustix::mount::move_mount(
            &store,
            "",
            &mount_point,
            "",
            MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH,
        )
        .context("cannot mount the container's store")?;
        let host_store = open_host_store()?;
        for name in &self.names {
            add_path(mounter, &host_store, &store, name)?;
        }
        seal(&store, MS_SHARED)
    }

    /// Adds what the view has and the running container's view lacks, in
    /// the mount namespace of its monitor (the parent of `init_pid`), from
    /// where it propagates into the container; returns how many paths were
    /// added. A container that runs with the whole store needs nothing.
    pub fn add_to_running(&self, mounter: &Mounter, rootfs: &Path, init_pid: u32) -> Result<usize> {
        let monitor = parent_of(init_pid)?;
        let namespace = rustix::fs::open(
            format!("/proc/{monitor}/ns/mnt"),
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .context("cannot open the mount namespace of the container's monitor")?;
        // setns(CLONE_NEWNS) wants a thread that shares its filesystem
        // attributes with no other: a thread of its own, not this process.
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    // SAFETY: only this thread's filesystem attributes change.
                    unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::FS) }
                        .context("cannot make a thread for the container's mount namespace")?;
                    rustix::thread::move_into_link_name_space(
                        namespace.as_fd(),
                        Some(rustix::thread::LinkNameSpaceType::Mount),
                    )
                    .context("cannot enter the mount namespace of the container's monitor")?;
                    self.add_missing(mounter, rootfs)
                })
                .join()
                .expect("adding store paths does not panic")
        })
    }

    /// `add_to_running`, in the monitor's mount namespace.
    fn add_missing(&self, mounter: &Mounter, rootfs: &Path) -> Result<usize> {
        let store = match RunningStore::find(rootfs, mounter.owner())? {
            RunningStore::Whole => return Ok(0),
            RunningStore::View(store) => store,
        };
        let present = names_in(&store).context("cannot read the container's store")?;
        let missing: Vec<&String> = self.names.difference(&present).collect();
        if missing.is_empty() {
            return Ok(0);
        }
        let host_store = open_host_store()?;
        // The tmpfs is read-only in this namespace as in the container's:
        // writable here for the new mount points, and read-only again. The
        // container's copy stays read-only (a mount's flags are its own).
        let writable =
            AttributeChange { clear: MountAttrFlags::MOUNT_ATTR_RDONLY, ..Default::default() };
        writable.apply(&store, false).context("cannot make the container's store writable")?;
        let added =
            missing.iter().try_for_each(|name| add_path(mounter, &host_store, &store, name));
        seal(&store, 0)?;
        added?;
        Ok(missing.len())
    }
}

/// What a running container's /nix/store is, seen from its monitor's
/// mount namespace.
enum RunningStore {
    /// Its view (the tmpfs), opened.
    View(OwnedFd),
    /// The host's whole store (a container that asks for it, or one started
    /// before store views).
    Whole,
}

impl RunningStore {
    fn find(rootfs: &Path, owner: u32) -> Result<RunningStore> {
        let rootfs = rustix::fs::open(
            rootfs,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .with_context(|| format!("cannot open {}", rootfs.display()))?;
        // The rootfs is the container's: nothing it put there is followed.
        let resolve =
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
        let unexpected = || {
            anyhow::anyhow!(
                "the container's /nix/store is not the store view this helper mounted; stop and \
                 start the container"
            )
        };
        let store = rustix::fs::openat2(
            &rootfs,
            TARGET,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            resolve,
        )
        .map_err(|_| unexpected())?;
        let stat = rustix::fs::fstat(&store)?;
        let host = rustix::fs::stat(NIX_STORE).context("cannot read the host's store")?;
        if (stat.st_dev, stat.st_ino) == (host.st_dev, host.st_ino) {
            return Ok(RunningStore::Whole);
        }
        let is_tmpfs = rustix::fs::fstatfs(&store)?.f_type as i64 == TMPFS_MAGIC;
        if !is_tmpfs || stat.st_uid != owner || !is_mount_root(&store)? {
            return Err(unexpected());
        }
        Ok(RunningStore::View(store))
    }
}

/// The entries of the directory `dir`.
fn names_in(dir: &OwnedFd) -> Result<BTreeSet<String>> {
    let mut names = BTreeSet::new();
    for entry in rustix::fs::Dir::read_from(dir)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name != "." && name != ".." {
            names.insert(name);
        }
    }
    Ok(names)
}

/// linux/magic.h
const TMPFS_MAGIC: i64 = 0x0102_1994;
/// linux/mount.h: the propagation of mount_setattr(2).
const MS_SHARED: u64 = 1 << 20;

fn is_mount_root(dir: &OwnedFd) -> Result<bool> {
    let statx = rustix::fs::statx(
        dir,
        "",
        rustix::fs::AtFlags::EMPTY_PATH,
        rustix::fs::StatxFlags::BASIC_STATS,
    )?;
    let mount_root = rustix::fs::StatxAttributes::MOUNT_ROOT;
    Ok(statx.stx_attributes_mask.contains(mount_root) && statx.stx_attributes.contains(mount_root))
}

/// A new tmpfs, detached, for the store view: owned by the container's root
/// (so that /nix/store shows as root's inside), neither setuid nor device
/// files.
fn new_tmpfs(owner: u32) -> Result<OwnedFd> {
    let context = || "cannot make a tmpfs for the container's store";
    let fs = rustix::mount::fsopen("tmpfs", FsOpenFlags::FSOPEN_CLOEXEC).with_context(context)?;
    for (key, value) in
        [("mode", "0755".to_string()), ("uid", owner.to_string()), ("gid", owner.to_string())]
    {
        rustix::mount::fsconfig_set_string(&fs, key, value.as_str()).with_context(context)?;
    }
    rustix::mount::fsconfig_create(&fs).with_context(context)?;
    rustix::mount::fsmount(
        &fs,
        FsMountFlags::FSMOUNT_CLOEXEC,
        MountAttrFlags::MOUNT_ATTR_NOSUID | MountAttrFlags::MOUNT_ATTR_NODEV,
    )
    .with_context(context)
}

/// Makes the view's tmpfs read-only, and sets its propagation (0: as is).
fn seal(store: &OwnedFd, propagation: u64) -> Result<()> {
    let sealed = AttributeChange {
        set: MountAttrFlags::MOUNT_ATTR_RDONLY,
        propagation,
        ..Default::default()
    };
    sealed.apply(store, false).context("cannot make the container's store read-only")
}

fn open_host_store() -> Result<OwnedFd> {
    rustix::fs::open(NIX_STORE, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .context("cannot open the host's store")
}

/// Puts the host's store path `name` into the view `store`: a mount point of
/// its kind with the path bound onto it, or for a symlink the same symlink.
fn add_path(mounter: &Mounter, host_store: &OwnedFd, store: &OwnedFd, name: &str) -> Result<()> {
    let context = || format!("cannot put {NIX_STORE}/{name} into the container's store");
    let stat = rustix::fs::statat(host_store, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
        .with_context(context)?;
    match FileType::from_raw_mode(stat.st_mode) {
        FileType::Symlink => {
            let target =
                rustix::fs::readlinkat(host_store, name, Vec::new()).with_context(context)?;
            return rustix::fs::symlinkat(&target, store, name).with_context(context);
        }
        FileType::Directory => rustix::fs::mkdirat(store, name, Mode::from_raw_mode(0o555)),
        // Made without opening it: a file open for writing on the tmpfs, even
        // for a moment, and copied into a child another thread spawns
        // meanwhile (`autostart`), keeps the tmpfs from being made read-only
        // (EBUSY).
        _ => rustix::fs::mknodat(store, name, FileType::RegularFile, Mode::from_raw_mode(0o444), 0),
    }
    .with_context(context)?;
    let copy = mounter.copy_of(host_store, name, false, false, true).with_context(context)?;
    rustix::mount::move_mount(&copy, "", store, name, MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH)
        .with_context(context)
}

/// The name in the store of `path`, which must be a store path.
fn store_name(path: &str) -> Result<&str> {
    let name = path.strip_prefix(NIX_STORE).and_then(|rest| rest.strip_prefix('/'));
    match name {
        Some(name) if crate::nix::store_paths::is_store_path_name(name) => Ok(name),
        _ => bail!("not a store path"),
    }
}

/// The parent of process `pid`.
fn parent_of(pid: u32) -> Result<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("the container's init ({pid}) is gone"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("PPid:"))
        .and_then(|value| value.trim().parse().ok())
        .with_context(|| format!("/proc/{pid}/status names no parent"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_store_paths_are_taken() {
        let hash = "r9zgkzc5zab416qddj283jlsvp18ydzr";
        assert_eq!(
            store_name(&format!("/nix/store/{hash}-busybox")).unwrap(),
            format!("{hash}-busybox")
        );
        for bad in [
            format!("/nix/store/{hash}"),
            format!("/nix/store/{hash}-"),
            format!("/nix/store/{hash}-.hidden"),
            format!("/nix/store/{hash}-a/b"),
            format!("/nix/store/{hash}-.."),
            "/nix/store/..".to_string(),
            format!("/nix/storeX/{hash}-a"),
            format!("/tmp/{hash}-a"),
            format!("/nix/store/{}-a", hash.to_uppercase()),
            format!("/nix/store/{hash}-a b"),
        ] {
            assert!(store_name(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_the_containers_own_generations_are_in_its_store() {
        let hash = "r9zgkzc5zab416qddj283jlsvp18ydzr";
        let view = |names: &[&str]| StoreView {
            names: names.iter().map(|name| format!("{hash}-{name}")).collect(),
        };
        let own = view(&["nixcloud-container-web", "busybox", "tiny-system-1"]);
        own.check_no_other_generation("web").unwrap();
        for other in ["nixcloud-container-db", "nixcloud-container-web2", "nixcloud-container-WEB"]
        {
            let err = view(&["nixcloud-container-web", other]).check_no_other_generation("web");
            assert!(format!("{:#}", err.unwrap_err()).contains(other), "{other}");
        }
    }
}
