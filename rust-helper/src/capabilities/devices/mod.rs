//! Devices (`devices`): host device nodes a container sees, where the host
//! allows them (`allowedDevices`); LXC binds each after it made the
//! container's /dev.

pub mod types;

use anyhow::{bail, Context as _, Result};

use super::{Capability, Container};
use crate::context::Context;
use crate::settings::HostConfig;
use crate::spec::Spec;

/// The capability.
pub struct Devices;

impl Capability for Devices {
    /// Refuses a device the host does not allow.
    fn permit(&self, spec: &Spec, host: &HostConfig) -> Result<()> {
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

    /// LXC binds each device node, after it made the container's /dev.
    fn own_config(&self, spec: &Spec) -> String {
        spec.devices
            .iter()
            .map(|device| {
                let node = device.node();
                format!("lxc.mount.entry = {node} {} none bind,create=file 0 0\n", &node[1..])
            })
            .collect()
    }

    fn prepare_start(&self, _ctx: &Context, container: &Container) -> Result<()> {
        check_devices(container.name, &container.meta.spec)
    }
}

/// Fails unless the host has the devices container `name` asks for, and
/// warns where its root could not open one: the node is bound as it is, and
/// to the container it is nobody's (udev makes /dev/net/tun and /dev/fuse
/// usable by all, 0666).
fn check_devices(name: &str, spec: &Spec) -> Result<()> {
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
