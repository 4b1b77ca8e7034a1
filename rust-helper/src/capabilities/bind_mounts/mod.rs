//! Bind mounts (`bindMounts`): host paths a container sees, from its own
//! data directory or from the host paths the host allows
//! (`allowedHostPaths`), read-only unless the host allows writing. Mounted
//! by the helper at each start (lxc/mounts.rs), never by LXC.

pub mod types;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};

use super::{Capability, Container};
use crate::context::Context;
use crate::formats::AbsolutePath;
use crate::lxc::mounts::{HostMount, MountSource, Mounter};
use crate::settings::{HostConfig, Settings};
use crate::spec::Spec;
use crate::state::ContainerRecord;
use types::{BindMount, HostPath};

/// The capability.
pub struct BindMounts;

impl Capability for BindMounts {
    /// Refuses a mount point where the helper and LXC mount, one named
    /// twice, and a host path the host does not allow (or not writable).
    fn permit(&self, spec: &Spec, host: &HostConfig) -> Result<()> {
        let mut mount_points = BTreeSet::new();
        for bind in &spec.bind_mounts {
            let point = Path::new(bind.mount_point.as_str());
            if let Some(reserved) = RESERVED.iter().find(|reserved| point.starts_with(reserved)) {
                bail!("bindMounts: {point:?} is below {reserved}, which is the helper's and LXC's");
            }
            if !mount_points.insert(point) {
                bail!("bindMounts: {point:?} is named twice");
            }
            if let HostPath::Host(path) = &bind.host_path {
                allowed_root(host, path, !bind.is_read_only)?;
            }
        }
        Ok(())
    }

    fn add(&self, ctx: &Context, name: &str) -> Result<()> {
        make_data_dir(&ctx.settings, name)
    }

    /// Its data directory, made (or, made before the gate, closed) also
    /// where no bind mount needs it now.
    fn prepare_start(&self, ctx: &Context, container: &Container) -> Result<()> {
        make_data_dir(&ctx.settings, container.name)
    }

    fn mount(&self, ctx: &Context, container: &Container, mounter: &Mounter) -> Result<()> {
        let name = container.name;
        mounter.mount_all(&bind_mounts(&ctx.settings, name, &container.meta.spec)?)
    }

    /// Its data directory, unless the destroy keeps it (--keep-data).
    fn remove(&self, ctx: &Context, name: &str, entry: Option<&ContainerRecord>) -> Result<()> {
        if entry.is_some_and(|entry| entry.keep_data) {
            return Ok(());
        }
        let data = ctx.settings.data_dir(name);
        match std::fs::remove_dir_all(&data) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                Err(err).with_context(|| format!("cannot remove {}", data.display()))
            }
            _ => Ok(()),
        }
    }
}

/// Where a container's mounts may not go: what the helper and LXC mount
/// there, and the root itself.
const RESERVED: [&str; 5] = ["/nix", "/init", "/proc", "/sys", "/dev"];

/// The allowed host path that `path` is at or below, and where below it:
/// writable only where the host says so.
fn allowed_root<'a>(
    host: &'a HostConfig,
    path: &AbsolutePath,
    writable: bool,
) -> Result<(&'a AbsolutePath, PathBuf)> {
    let wanted = Path::new(path.as_str());
    // The most specific of the allowed paths it is below decides.
    let Some((root, allowed)) = host
        .allowed_host_paths
        .iter()
        .filter(|(root, _)| wanted.starts_with(root.as_str()))
        .max_by_key(|(root, _)| root.as_str().len())
    else {
        bail!(
            "bindMounts: host path {wanted:?} is not one this host lets containers see \
             (nixcloud.containers.allowedHostPaths, or allowedHostPaths in the host file); a \
             relative hostPath is in the container's own data directory"
        );
    };
    if writable && !allowed.writable {
        bail!(
            "bindMounts: host path {wanted:?} may be seen read-only only (isReadOnly = true): \
             the host allows {root} without writable"
        );
    }
    let below = wanted.strip_prefix(root.as_str()).expect("found as a prefix").to_path_buf();
    Ok((root, below))
}

/// The mounts of `spec`'s bind mounts for container `name`: from its own
/// data directory (made, as its root's, where missing), or from the host
/// paths the host allows. The spec was checked (`permit`).
fn bind_mounts(settings: &Settings, name: &str, spec: &Spec) -> Result<Vec<HostMount>> {
    spec.bind_mounts.iter().map(|bind| bind_mount(settings, name, bind)).collect()
}

fn bind_mount(settings: &Settings, name: &str, bind: &BindMount) -> Result<HostMount> {
    let target = PathBuf::from(bind.mount_point.as_str().trim_start_matches('/'));
    let writable = !bind.is_read_only;
    Ok(match &bind.host_path {
        // The container's own files are its ids already.
        HostPath::Own(relative) => HostMount {
            source: MountSource::Beneath {
                root: settings.data_dir(name),
                relative: relative.as_str().into(),
                create: true,
            },
            target,
            writable,
            idmapped: false,
        },
        HostPath::Host(path) => {
            let (root, below) = allowed_root(&settings.host, path, writable)?;
            HostMount {
                source: MountSource::Beneath {
                    root: root.as_str().into(),
                    relative: below,
                    create: false,
                },
                target,
                writable,
                idmapped: !writable,
            }
        }
    })
}

/// Makes container `name`'s data directory where it is missing: a gate
/// (host_dirs.rs), root's and entered by root alone. Its bind mounts'
/// sources below it are made by the mounts, as the container's root's
/// (lxc/mounts.rs); the helper mounts them as root, so the container's uid
/// never passes through the gate, and no host user reaches what the
/// container leaves in them. A data directory made before the gate (its
/// root's) becomes one, with its files as they are.
pub fn make_data_dir(settings: &Settings, name: &str) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = settings.data_dir(name);
    crate::system::host_dirs::root_dir(
        dir.parent().expect("a data directory is in the data directories'"),
    )?;
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(err) => return Err(err).with_context(|| format!("cannot create {}", dir.display())),
    }
    crate::system::host_dirs::gate(&dir, 0, DATA_DIR_MODE)
}

/// The mode of a container's data directory (root's): see `make_data_dir`.
const DATA_DIR_MODE: u32 = 0o700;
