//! Ids: the host uids and gids a container runs as (`IdMap`), and those
//! the host delegates to its containers (`HostIds`, the host file's
//! `idmap`).

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

/// One container's uids and gids: root inside is `host_id` outside, and
/// the container has `count` ids from there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IdMap {
    pub host_id: u32,
    pub count: u32,
}

impl IdMap {
    /// The first host id after the range.
    pub fn end(&self) -> u64 {
        u64::from(self.host_id) + u64::from(self.count)
    }

    pub fn overlaps(&self, other: &IdMap) -> bool {
        u64::from(self.host_id) < other.end() && u64::from(other.host_id) < self.end()
    }
}

impl std::fmt::Display for IdMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.host_id, self.end() - 1)
    }
}

/// The ids the host delegates to its containers (the host file's `idmap`):
/// `count` ids from `host_id`, handed out `per_container` at a time, each
/// container a range of its own unless `isolated` is off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostIds {
    pub host_id: u32,
    pub count: u32,
    pub per_container: u32,
    pub isolated: bool,
}

impl HostIds {
    /// Every id the host delegates to containers.
    pub fn delegated(&self) -> IdMap {
        IdMap { host_id: self.host_id, count: self.count }
    }

    /// The first range: every container's where ranges are not isolated.
    pub fn first(&self) -> IdMap {
        IdMap { host_id: self.host_id, count: self.per_container }
    }

    /// The ranges containers may get, in the order they are handed out.
    pub fn ranges(&self) -> impl Iterator<Item = IdMap> + '_ {
        let slots = if self.isolated { self.count / self.per_container } else { 1 };
        (0..slots).map(|slot| IdMap {
            host_id: self.host_id + slot * self.per_container,
            count: self.per_container,
        })
    }

    /// Fails where the host file's ids cannot serve containers.
    pub fn check(&self) -> Result<()> {
        // The original's promise: nothing of a container is a host uid
        // below 100000 (lib/ranges.json), where the host's own users live.
        let ranges = &crate::ranges::RANGES;
        if !ranges.host_id.contains(self.host_id) {
            bail!(
                "idmap.hostId {} is below {}, among the host's own uids",
                self.host_id,
                ranges.host_id.min
            );
        }
        if !ranges.per_container.contains(self.per_container) {
            bail!(
                "idmap.perContainer {} is below {}, the ids a NixOS system uses",
                self.per_container,
                ranges.per_container.min
            );
        }
        if self.count < self.per_container {
            bail!(
                "idmap.count {} is smaller than idmap.perContainer {}: no container fits",
                self.count,
                self.per_container
            );
        }
        if self.delegated().end() > u64::from(u32::MAX) {
            bail!("idmap.hostId + idmap.count goes beyond the largest uid");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_handed_out_per_container_unless_shared() {
        let ids =
            HostIds { host_id: 100000, count: 3 * 65536 + 5, per_container: 65536, isolated: true };
        let ranges: Vec<String> = ids.ranges().map(|r| r.to_string()).collect();
        assert_eq!(ranges, ["100000-165535", "165536-231071", "231072-296607"]);
        let shared = HostIds { isolated: false, ..ids };
        assert_eq!(shared.ranges().collect::<Vec<_>>(), [shared.first()]);
        assert!(ids.first().overlaps(&IdMap { host_id: 165535, count: 1 }));
        assert!(!ids.first().overlaps(&IdMap { host_id: 165536, count: 1 }));
    }
}
