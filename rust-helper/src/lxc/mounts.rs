//! The host paths a container sees (the store, its profile at /init, and
//! what else it is allowed), mounted by this helper rather than by LXC: in a
//! mount namespace of the helper's own, onto the container's rootfs, just
//! before lxc-start, which inherits them.
//!
//! Why not `lxc.mount.entry`: the kernel locks the mounts that a container's
//! mount namespace gets from a more privileged one (read-only stays
//! read-only, nothing can be unmounted to uncover what lies beneath). Mounts
//! LXC makes inside the container are not locked, and an idmapped one, which
//! shows the store as owned by root inside, could be remounted writable and
//! written as the host's root.
//!
//! Each mount is a detached copy of its source (open_tree), made read-only
//! and idmapped to the container's ids (mount_setattr), then moved onto its
//! target (move_mount), which is found below the rootfs without following a
//! symlink: the rootfs belongs to the container.

use std::ffi::CStr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context, Result};
use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::mount::{MountAttrFlags, MountPropagationFlags, MoveMountFlags, OpenTreeFlags};

use crate::ids::IdMap;

/// A host path the container sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostMount {
    pub source: MountSource,
    /// Where inside, relative to the container's root.
    pub target: PathBuf,
    pub writable: bool,
    /// Shown with the container's ids (where the host has idmapped mounts),
    /// so that the host's root owns its files inside too: for host files,
    /// read-only. Not for the container's own files, which are its ids
    /// already, nor for writable host files, which its root would write as
    /// the host's root.
    pub idmapped: bool,
}

/// Where a mount comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountSource {
    /// A host path of the host's choosing (the store, the profile).
    Host(PathBuf),
    /// `relative` below `root`, found without leaving it (a container file
    /// named it, and the tree may be the container's); made where missing,
    /// as directories of the container's root, if `create`.
    Beneath { root: PathBuf, relative: PathBuf, create: bool },
}

impl MountSource {
    /// What the source's root is, for errors: the directory it is below.
    fn root_name(&self) -> String {
        match self {
            MountSource::Host(path) | MountSource::Beneath { root: path, .. } => {
                path.display().to_string()
            }
        }
    }
}

impl std::fmt::Display for MountSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MountSource::Host(path) => write!(f, "{}", path.display()),
            MountSource::Beneath { root, relative, .. } => {
                write!(f, "{}", root.join(relative).display())
            }
        }
    }
}

/// Moves this thread into a mount namespace of its own, whose mounts
/// receive the host's but do not propagate back: what is mounted here is
/// seen by this thread, its children (lxc-start, the container) and no one
/// else. Threads may each start containers (`autostart`).
pub fn enter_private_namespace() -> Result<()> {
    // Each container's namespace is made from the one this helper began in,
    // not from the one the container before it (`start a b c`) left: else
    // every later container would hold the earlier ones' mounts too. The
    // first call of any thread records it: no thread has moved before.
    static ORIGINAL: std::sync::OnceLock<std::io::Result<OwnedFd>> = std::sync::OnceLock::new();
    thread_local! {
        static MOVED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
    let original = ORIGINAL.get_or_init(|| {
        rustix::fs::open(
            "/proc/thread-self/ns/mnt",
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(std::io::Error::from)
    });
    let original = original
        .as_ref()
        .map_err(|err| anyhow::anyhow!("cannot open the helper's mount namespace: {err}"))?;
    if MOVED.get() {
        // Allowed: the unshare below gave this thread its own root and
        // working directory (CLONE_FS), which setns(2) asks for.
        rustix::thread::move_into_link_name_space(
            original.as_fd(),
            Some(rustix::thread::LinkNameSpaceType::Mount),
        )
        .context("cannot go back to the helper's own mount namespace")?;
    }
    // SAFETY: only NEWNS (and with it FS, for this thread) is unshared,
    // which leaves file descriptors alone.
    unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNS) }
        .context("cannot make a mount namespace for the container's mounts")?;
    MOVED.set(true);
    rustix::mount::mount_change(
        "/",
        MountPropagationFlags::DOWNSTREAM | MountPropagationFlags::REC,
    )
    .context("cannot keep the container's mounts from the host")?;
    Ok(())
}

/// What mounts for one container: its rootfs, the owner of mount points
/// made in it (the container's root) and, for idmapped mounts, a user
/// namespace with the container's ids.
pub struct Mounter {
    rootfs: OwnedFd,
    owner: u32,
    userns: Option<UserNamespace>,
}

impl Mounter {
    /// For the container whose rootfs is `rootfs` and whose ids are `ids`:
    /// host files idmapped to them if `idmapped` (else files of the host's
    /// root show as nobody's inside).
    pub fn new(rootfs: &Path, ids: IdMap, idmapped: bool) -> Result<Mounter> {
        let userns = idmapped.then(|| UserNamespace::new(ids)).transpose()?;
        let rootfs = rustix::fs::open(
            rootfs,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .with_context(|| format!("cannot open {}", rootfs.display()))?;
        Ok(Mounter { rootfs, owner: ids.host_id, userns })
    }

    /// The container's root on the host.
    pub fn owner(&self) -> u32 {
        self.owner
    }

    /// Mounts each of `mounts`; the caller is in its private namespace.
    pub fn mount_all(&self, mounts: &[HostMount]) -> Result<()> {
        for mount in mounts {
            self.mount(mount).with_context(|| {
                format!("cannot mount {} at /{}", mount.source, mount.target.display())
            })?;
        }
        Ok(())
    }

    fn mount(&self, mount: &HostMount) -> Result<()> {
        let source = match &mount.source {
            MountSource::Host(path) => {
                rustix::fs::open(path, OFlags::PATH | OFlags::CLOEXEC, Mode::empty())?
            }
            MountSource::Beneath { root, relative, create } => {
                let root = rustix::fs::open(
                    root,
                    OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .with_context(|| format!("cannot open {}", root.display()))?;
                if *create {
                    directory_beneath(&root, &mount.source.root_name(), relative, self.owner)?
                } else if relative.as_os_str().is_empty() {
                    root
                } else {
                    let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
                    rustix::fs::openat2(
                        &root,
                        relative,
                        OFlags::PATH | OFlags::CLOEXEC,
                        Mode::empty(),
                        resolve,
                    )
                    .map_err(|err| refused(err, relative, &mount.source.root_name(), true))?
                }
            }
        };
        let is_directory = rustix::fs::fstat(&source)?.st_mode & libc::S_IFMT == libc::S_IFDIR;
        let tree = self.copy_of(&source, "", mount.writable, true, mount.idmapped)?;
        let target =
            if is_directory { self.directory(&mount.target)? } else { self.file(&mount.target)? };
        rustix::mount::move_mount(
            &tree,
            "",
            &target,
            "",
            MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH,
        )?;
        Ok(())
    }

    /// A detached copy of the host path `source` (below `dir`; "": `dir`
    /// itself) as the container sees it: read-only unless `writable`,
    /// idmapped if `idmapped` and the host has idmapped mounts, with what is
    /// mounted below it if `recursive`; never with setuid or device files.
    pub fn copy_of<Fd: rustix::fd::AsFd, P: rustix::path::Arg + Copy + std::fmt::Debug>(
        &self,
        dir: Fd,
        source: P,
        writable: bool,
        recursive: bool,
        idmapped: bool,
    ) -> Result<OwnedFd> {
        let mut flags = OpenTreeFlags::OPEN_TREE_CLONE
            | OpenTreeFlags::OPEN_TREE_CLOEXEC
            | OpenTreeFlags::AT_EMPTY_PATH;
        if recursive {
            flags |= OpenTreeFlags::AT_RECURSIVE;
        }
        let tree = rustix::mount::open_tree(dir, source, flags)?;
        let mut attributes = MountAttrFlags::MOUNT_ATTR_NOSUID | MountAttrFlags::MOUNT_ATTR_NODEV;
        if !writable {
            attributes |= MountAttrFlags::MOUNT_ATTR_RDONLY;
        }
        let userns = self.userns.as_ref().filter(|_| idmapped);
        if userns.is_some() {
            attributes |= MountAttrFlags::MOUNT_ATTR_IDMAP;
        }
        let change = AttributeChange { set: attributes, userns, ..Default::default() };
        change.apply(&tree, recursive).map_err(|err| {
            if userns.is_some() && err == rustix::io::Errno::INVAL {
                anyhow::anyhow!(
                    "the kernel or the filesystem of {source:?} has no idmapped mounts (Linux \
                     5.12 or newer; ext4, xfs, btrfs and tmpfs have them, overlayfs has not): set \
                     idmappedMounts to false in the host file (NixOS: \
                     nixcloud.containers.idmappedMounts = false), and host files show as owned \
                     by nobody inside"
                )
            } else {
                anyhow::Error::from(err)
            }
        })?;
        Ok(tree)
    }

    /// The file `relative` below the rootfs, made empty (with its
    /// directories) where it is missing: a mount point for a file.
    fn file(&self, relative: &Path) -> Result<OwnedFd> {
        let parent = relative.parent().unwrap_or(Path::new(""));
        let name = relative.file_name().context("a file's mount point has a name")?;
        let dir = self.directory(parent)?;
        let resolve =
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
        // The directory was opened as a path only: the file is made through
        // a descriptor that can write to it.
        let dir = rustix::fs::openat2(
            &dir,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            resolve,
        )?;
        match rustix::fs::openat(
            &dir,
            name,
            OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        ) {
            Ok(_) => rustix::fs::chownat(
                &dir,
                name,
                Some(rustix::fs::Uid::from_raw(self.owner)),
                Some(rustix::fs::Gid::from_raw(self.owner)),
                rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
            )?,
            Err(rustix::io::Errno::EXIST) => {}
            Err(err) => return Err(err.into()),
        }
        Ok(rustix::fs::openat2(&dir, name, OFlags::PATH | OFlags::CLOEXEC, Mode::empty(), resolve)?)
    }

    /// Makes the directories LXC's own mounts land on (proc and sys of
    /// `lxc.mount.auto`, dev of `lxc.autodev`) where the container removed
    /// them, as the container's root's; one it turned into a link (to a host
    /// path, say) is an error, never followed.
    pub fn make_lxc_mount_points(&self) -> Result<()> {
        for mount_point in ["proc", "sys", "dev"] {
            self.directory(Path::new(mount_point))?;
        }
        Ok(())
    }

    /// The directory `relative` below the rootfs, made (owned by the
    /// container's root) where it is missing; see `directory_beneath`.
    pub fn directory(&self, relative: &Path) -> Result<OwnedFd> {
        directory_beneath(&self.rootfs, "the container's rootfs", relative, self.owner)
    }
}

/// A change of a mount's attributes (mount_setattr(2)).
pub struct AttributeChange<'a> {
    pub set: MountAttrFlags,
    pub clear: MountAttrFlags,
    /// MS_SHARED, MS_SLAVE, MS_PRIVATE or 0 for no change.
    pub propagation: u64,
    pub userns: Option<&'a UserNamespace>,
}

impl Default for AttributeChange<'_> {
    fn default() -> Self {
        AttributeChange {
            set: MountAttrFlags::empty(),
            clear: MountAttrFlags::empty(),
            propagation: 0,
            userns: None,
        }
    }
}

impl AttributeChange<'_> {
    /// Applies the change to the mount `mount` refers to (its root), and to
    /// the mounts below it if `recursive`; rustix has no wrapper yet.
    pub fn apply(&self, mount: &OwnedFd, recursive: bool) -> Result<(), rustix::io::Errno> {
        let attr = MountAttr {
            attr_set: u64::from(self.set.bits()),
            attr_clr: u64::from(self.clear.bits()),
            propagation: self.propagation,
            userns_fd: self.userns.map_or(0, |ns| ns.fd.as_raw_fd() as u64),
        };
        let mut flags = libc::AT_EMPTY_PATH;
        if recursive {
            flags |= libc::AT_RECURSIVE;
        }
        const EMPTY: &CStr = c"";
        // SAFETY: the arguments are a valid descriptor, a NUL-terminated
        // string and a mount_attr of the size given, alive for the call.
        let result = unsafe {
            libc::syscall(
                libc::SYS_mount_setattr,
                mount.as_raw_fd(),
                EMPTY.as_ptr(),
                flags,
                &attr as *const MountAttr,
                std::mem::size_of::<MountAttr>(),
            )
        };
        if result == 0 {
            Ok(())
        } else {
            Err(rustix::io::Errno::from_raw_os_error(
                std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
            ))
        }
    }
}

/// The kernel's `struct mount_attr` (linux/mount.h).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// Why a path below a root (`root_name`: the container's rootfs, its data
/// directory, an allowed host path) was refused, from what openat2 said:
/// one line naming the path and the rule, rather than the errno's words
/// ("Invalid cross-device link"). `follows`: symlinks were followed as long
/// as they stayed below the root.
fn refused(
    err: rustix::io::Errno,
    relative: &Path,
    root_name: &str,
    follows: bool,
) -> anyhow::Error {
    let path = relative.display();
    match err {
        rustix::io::Errno::XDEV => anyhow::anyhow!(
            "{path} leads out of {root_name} (through a symbolic link or a mount), which is \
             refused: a bind mount's path stays below the directory it is allowed in"
        ),
        rustix::io::Errno::LOOP if !follows => anyhow::anyhow!(
            "{path} in {root_name} is, or passes through, a symbolic link, which is never \
             followed there (whoever can write below it could point it anywhere)"
        ),
        rustix::io::Errno::LOOP => {
            anyhow::anyhow!("{path} in {root_name}: too many symbolic links")
        }
        rustix::io::Errno::NOENT => anyhow::anyhow!("{path} is not in {root_name}"),
        rustix::io::Errno::NOTDIR => {
            anyhow::anyhow!("{path} in {root_name} is not a directory, or passes through a file")
        }
        other => anyhow::anyhow!("cannot open {path} in {root_name}: {other}"),
    }
}

/// The directory `relative` below `root` (`root_name` for errors), made
/// (owned by `owner`) where it is missing, and reached without following a
/// symlink or leaving the root: the container may have put anything there.
fn directory_beneath(
    root: &OwnedFd,
    root_name: &str,
    relative: &Path,
    owner: u32,
) -> Result<OwnedFd> {
    let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let mut dir = rustix::fs::openat2(root, ".", flags, Mode::empty(), resolve)?;
    for component in relative.components() {
        let Component::Normal(name) = component else {
            bail!("{} is not a plain path below {root_name}", relative.display());
        };
        match rustix::fs::mkdirat(&dir, name, Mode::from_raw_mode(0o755)) {
            // A fresh directory is the container's, as LXC's are.
            Ok(()) => rustix::fs::chownat(
                &dir,
                name,
                Some(rustix::fs::Uid::from_raw(owner)),
                Some(rustix::fs::Gid::from_raw(owner)),
                rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
            )?,
            Err(rustix::io::Errno::EXIST) => {}
            Err(err) => return Err(err.into()),
        }
        dir = rustix::fs::openat2(&dir, name, flags, Mode::empty(), resolve)
            .map_err(|err| refused(err, relative, root_name, false))?;
    }
    Ok(dir)
}

/// A user namespace with the container's id mapping, for idmapping mounts:
/// a child process is made in one and waits, the mapping is written from
/// here, and the namespace stays reachable through its descriptor after the
/// child is gone.
pub struct UserNamespace {
    fd: OwnedFd,
}

impl UserNamespace {
    fn new(map: IdMap) -> Result<UserNamespace> {
        // The child that holds the namespace while its maps are written is
        // born in it (CLONE_NEWUSER) and shares this process's memory and
        // descriptors (CLONE_VM, CLONE_FILES): a fork would copy the page
        // tables of this process, whose threads may be starting other
        // containers (`autostart`), only for the child to throw them away,
        // and would hold copies of their descriptors meanwhile.
        let mut stack = vec![0u8; CHILD_STACK];
        // SAFETY: the stack's end, 16-byte aligned, is where a stack grows down from.
        let top = unsafe { stack.as_mut_ptr().add(CHILD_STACK) }.map_addr(|addr| addr & !15);
        let pid = {
            // Every signal blocked, inherited by the child: nothing but
            // SIGKILL ends its pause, and no handler of this process ever
            // runs on its stack.
            let _blocked = BlockedSignals::all()?;
            let parent = std::process::id() as libc::pid_t;
            // SAFETY: the child runs only `hold_namespace`, which makes
            // system calls and touches no memory of this process but its
            // own stack and `parent` (a copy on that stack).
            unsafe {
                libc::clone(
                    hold_namespace,
                    top.cast(),
                    libc::CLONE_VM | libc::CLONE_FILES | libc::CLONE_NEWUSER | libc::SIGCHLD,
                    parent as usize as *mut libc::c_void,
                )
            }
        };
        if pid < 0 {
            return Err(std::io::Error::last_os_error())
                .context("cannot make a user namespace for the container's id mapping");
        }
        let made = Self::map_child(pid, map);
        // SAFETY: pid is our child; the stack lives until it has ended.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
        drop(stack);
        made
    }

    fn map_child(pid: libc::pid_t, map: IdMap) -> Result<UserNamespace> {
        let theirs = format!("/proc/{pid}/ns/user");
        let line = format!("0 {} {}\n", map.host_id, map.count);
        for file in ["uid_map", "gid_map"] {
            std::fs::write(format!("/proc/{pid}/{file}"), &line).with_context(|| {
                format!("cannot write the {file} of the container's id mapping")
            })?;
        }
        let fd = rustix::fs::open(&theirs, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
            .context("cannot open the user namespace of the container's id mapping")?;
        Ok(UserNamespace { fd })
    }
}

/// The stack of the child holding a user namespace: it makes two system
/// calls.
const CHILD_STACK: usize = 64 * 1024;

/// The child of `UserNamespace::new`, in the new user namespace: it dies
/// with the thread that made it (which kills it when done), and waits.
/// It shares the parent's memory and thread pointer, so it makes only bare
/// system calls, none of which fails: no errno (the parent thread's) is
/// written, and no libc function that keeps state (pause(3) marks the
/// calling thread as cancellable) runs.
extern "C" fn hold_namespace(parent: *mut libc::c_void) -> libc::c_int {
    // SAFETY: raw system calls that touch no memory of this process.
    unsafe {
        libc::syscall(libc::SYS_prctl, libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        // The thread that made it may have ended before the request.
        if libc::syscall(libc::SYS_getppid) != parent as usize as libc::c_long {
            libc::syscall(libc::SYS_exit, 0);
        }
        // Waits for nothing, forever: no descriptors, no timeout, and every
        // signal blocked but SIGKILL (ppoll: pause(2) is not on every
        // architecture).
        loop {
            libc::syscall(
                libc::SYS_ppoll,
                std::ptr::null_mut::<libc::pollfd>(),
                0,
                std::ptr::null::<libc::timespec>(),
                std::ptr::null::<libc::sigset_t>(),
                0,
            );
        }
    }
}

/// Every signal blocked for this thread until dropped, its mask before
/// then restored.
struct BlockedSignals {
    before: libc::sigset_t,
}

impl BlockedSignals {
    fn all() -> Result<BlockedSignals> {
        // SAFETY: plain sigset_t values, filled by the calls.
        unsafe {
            let mut all: libc::sigset_t = std::mem::zeroed();
            let mut before: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            let code = libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut before);
            if code != 0 {
                return Err(std::io::Error::from_raw_os_error(code))
                    .context("cannot block signals for the id mapping's process");
            }
            Ok(BlockedSignals { before })
        }
    }
}

impl Drop for BlockedSignals {
    fn drop(&mut self) {
        // SAFETY: restores the mask saved by `all`.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.before, std::ptr::null_mut()) };
    }
}
