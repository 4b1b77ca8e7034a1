//! The ranges of numbers that the host module, lib/spec.nix and the helper
//! all check, read from the one table lib/ranges.json (each `min` and, where
//! there is one, `max`, both included).

use std::sync::LazyLock;

use serde::Deserialize;

const RANGES_JSON: &str = include_str!("../../lib/ranges.json");

/// The ranges of lib/ranges.json.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Ranges {
    /// A container bridge's subnet: 31 and 32 leave no room for the host
    /// and containers.
    pub prefix_length: Range,
    /// `builds.network`, the subnet of the links to the build namespaces.
    pub builds_prefix_length: Range,
    /// `internetIPv6.prefixLength`: dnsmasq takes no DHCPv6 prefix shorter
    /// than 64 bits, and leases come from the last 16 bits.
    pub ipv6_prefix_length: Range,
    /// `idmap.hostId`: no container id is a host uid below it, where the
    /// host's own users live.
    pub host_id: Range,
    /// `idmap.perContainer`: NixOS needs nobody (65534) inside.
    pub per_container: Range,
}

/// From `min` to `max`, both included.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Range {
    pub min: u32,
    #[serde(default = "no_maximum")]
    pub max: u32,
}

fn no_maximum() -> u32 {
    u32::MAX
}

impl Range {
    pub fn contains(self, value: u32) -> bool {
        (self.min..=self.max).contains(&value)
    }
}

/// The table.
pub static RANGES: LazyLock<Ranges> =
    LazyLock::new(|| serde_json::from_str(RANGES_JSON).expect("lib/ranges.json is valid"));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_reads() {
        assert_eq!((RANGES.prefix_length.min, RANGES.prefix_length.max), (1, 30));
        assert!(RANGES.per_container.contains(65536) && !RANGES.per_container.contains(65535));
        assert_eq!(RANGES.host_id.max, u32::MAX);
    }
}
