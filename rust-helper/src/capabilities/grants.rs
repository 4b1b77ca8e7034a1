//! What a container file asks of the host: host paths (`bindMounts`), host
//! ports (`forwardPorts`) and devices (`devices`). The host allows them in
//! its host file (the NixOS module's options); a request beyond that is
//! refused at create and update, before anything is built, and again at
//! start, where the host may have taken it back.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};

use crate::capabilities::bind_mounts::types::{BindMount, HostPath};
use crate::formats::AbsolutePath;
use crate::lxc::mounts::{HostMount, MountSource};
use crate::settings::{HostConfig, Settings};
use crate::spec::Spec;

/// Where a container's mounts may not go: what the helper and LXC mount
/// there, and the root itself.
const RESERVED: [&str; 5] = ["/nix", "/init", "/proc", "/sys", "/dev"];

/// Fails with the first request of `spec` that `host` does not allow.
pub fn check(spec: &Spec, host: &HostConfig) -> Result<()> {
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
    let mut claimed = BTreeSet::new();
    for forward in &spec.forward_ports {
        let port = forward.host_port;
        if !host.allowed_forward_ports.iter().any(|range| range.contains(port)) {
            bail!(
                "forwardPorts: host port {} is not one this host lets containers have \
                 (nixcloud.containers.allowedForwardPorts, or allowedForwardPorts in the host file)",
                port.0
            );
        }
        if !claimed.insert((forward.protocol, port)) {
            bail!("forwardPorts: host port {} {} is named twice", forward.protocol, port.0);
        }
    }
    for device in &spec.devices {
        if !host.allowed_devices.contains(device) {
            bail!(
                "devices: {} is not a device this host lets containers have \
                 (nixcloud.containers.allowedDevices, or allowedDevices in the host file)",
                device.name()
            );
        }
    }
    Ok(())
}

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
/// paths the host allows. The spec was checked (`check`).
pub fn bind_mounts(settings: &Settings, name: &str, spec: &Spec) -> Result<Vec<HostMount>> {
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

/// Fails unless the host has the devices container `name` asks for, and
/// warns where its root could not open one: the node is bound as it is, and
/// to the container it is nobody's (udev makes /dev/net/tun and /dev/fuse
/// usable by all, 0666).
pub fn check_devices(name: &str, spec: &Spec) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for device in &spec.devices {
        let node = device.node();
        let mode = std::fs::metadata(node)
            .with_context(|| {
                format!("container '{name}' asks for {node}, which this host has not")
            })?
            .permissions()
            .mode();
        if mode & 0o006 != 0o006 {
            eprintln!(
                "warning: {node} has mode {:o}: inside '{name}' its root cannot open it; make it \
                 0666 (as udev does)",
                mode & 0o777
            );
        }
    }
    Ok(())
}

/// Makes container `name`'s data directory where it is missing: a gate
/// (host_dirs.rs), root's and entered by root alone. Its bind mounts'
/// sources below it are made by the mounts, as the container's root's
/// (mounts.rs); the helper mounts them as root, so the container's uid
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
