//! Devices' part of a container file (`devices`) and of the host file
//! (`allowedDevices`).

use serde::{Deserialize, Serialize};

/// A host device a container may see (`devices`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Device {
    /// /dev/net/tun: VPNs.
    Tun,
    /// /dev/fuse: FUSE file systems.
    Fuse,
}

impl Device {
    /// The device node, on the host and inside.
    pub fn node(self) -> &'static str {
        match self {
            Device::Tun => "/dev/net/tun",
            Device::Fuse => "/dev/fuse",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Device::Tun => "tun",
            Device::Fuse => "fuse",
        }
    }
}
