//! Devices' part of a container file (`devices`) and of the host file
//! (`allowedDevices`): the devices of lib/devices.json, which lib/spec.nix
//! and the host module's `allowedDevices` read as well.

use std::fmt;
use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

const DEVICES_JSON: &str = include_str!("../../../../lib/devices.json");

/// A device of lib/devices.json (its `use`, in words, is for the host
/// module's documentation).
#[derive(Deserialize)]
struct Definition {
    /// What a container file calls it.
    name: String,
    /// The device node, on the host and inside.
    node: String,
}

static DEVICES: LazyLock<Vec<Definition>> =
    LazyLock::new(|| serde_json::from_str(DEVICES_JSON).expect("lib/devices.json is valid"));

/// A host device a container may see (`devices`): one of lib/devices.json,
/// by its place there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Device(usize);

impl Device {
    fn definition(self) -> &'static Definition {
        &DEVICES[self.0]
    }

    /// The device node, on the host and inside.
    pub fn node(self) -> &'static str {
        &self.definition().node
    }

    pub fn name(self) -> &'static str {
        &self.definition().name
    }
}

impl TryFrom<String> for Device {
    type Error = String;

    fn try_from(name: String) -> Result<Device, String> {
        DEVICES.iter().position(|device| device.name == name).map(Device).ok_or_else(|| {
            let known: Vec<&str> = DEVICES.iter().map(|device| device.name.as_str()).collect();
            format!("{} is not a device ({})", crate::formats::show(&name), known.join(", "))
        })
    }
}

impl From<Device> for String {
    fn from(device: Device) -> String {
        device.name().to_string()
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_devices_of_lib_devices_json() {
        let tun = Device::try_from("tun".to_string()).unwrap();
        assert_eq!((tun.name(), tun.node()), ("tun", "/dev/net/tun"));
        let fuse: Device = serde_json::from_str(r#""fuse""#).unwrap();
        assert_eq!(fuse.node(), "/dev/fuse");
        assert_eq!(serde_json::to_string(&fuse).unwrap(), r#""fuse""#);
        for node in DEVICES.iter().map(|device| device.node.as_str()) {
            assert!(node.starts_with("/dev/") && !node.contains(".."), "{node}");
        }
        let err = serde_json::from_str::<Device>(r#""kvm""#).unwrap_err().to_string();
        assert!(err.contains("\"kvm\" is not a device (tun, fuse)"), "{err}");
    }
}
