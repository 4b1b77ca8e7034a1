//! Root's subordinate ids (/etc/subuid and /etc/subgid). LXC maps a
//! container's ids through newuidmap and newgidmap, which map only ids
//! delegated to root there, and delegating them keeps shadow from handing
//! the same ids to a user.

use anyhow::{bail, Context, Result};

use crate::ids::{HostIds, IdMap};

const FILES: [&str; 2] = ["/etc/subuid", "/etc/subgid"];

/// Fails, saying what to add, unless both files delegate all of `ids` to root.
pub fn check_delegated(ids: IdMap, host: &HostIds) -> Result<()> {
    for file in FILES {
        let text = match std::fs::read_to_string(file) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(err) => return Err(err).with_context(|| format!("cannot read {file}")),
        };
        if !delegates(&text, ids) {
            let all = host.delegated();
            bail!(
                "host ids {ids} are not delegated to root in {file}: add the line \
                 root:{}:{} to /etc/subuid and /etc/subgid (scripts/setup-debian does; on NixOS \
                 the host module delegates nixcloud.containers.idmap)",
                all.host_id,
                all.count
            );
        }
    }
    Ok(())
}

/// Whether the lines of a subuid/subgid file give root every id of `ids`,
/// in one range or in several that adjoin (as shadow allows).
fn delegates(text: &str, ids: IdMap) -> bool {
    let mut ranges: Vec<(u64, u64)> = text
        .lines()
        .filter_map(|line| {
            let mut fields = line.trim().split(':');
            let (owner, start, count) = (fields.next()?, fields.next()?, fields.next()?);
            if fields.next().is_some() || !(owner == "root" || owner == "0") {
                return None;
            }
            let start: u64 = start.parse().ok()?;
            Some((start, start + count.parse::<u64>().ok()?))
        })
        .collect();
    ranges.sort_unstable();
    let mut covered_to = u64::from(ids.host_id);
    for (start, end) in ranges {
        if start > covered_to {
            break;
        }
        covered_to = covered_to.max(end);
    }
    covered_to >= ids.end()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(host_id: u32) -> IdMap {
        IdMap { host_id, count: 65536 }
    }

    #[test]
    fn root_needs_every_id_of_the_range() {
        let text = "alice:100000:65536\nroot:100000:65536\n";
        assert!(delegates(text, ids(100000)));
        assert!(!delegates(text, ids(165536)), "the next range is not delegated");
        assert!(!delegates("alice:165536:65536\n", ids(165536)), "alice's range is not root's");
        assert!(!delegates("root:100000:65535\n", ids(100000)), "one id short");
    }

    #[test]
    fn adjoining_and_overlapping_lines_add_up() {
        let text = "root:100000:65536\n0:165536:100\nroot:165600:65536000\n";
        assert!(delegates(text, ids(165536)));
        assert!(delegates("root:100000:65536000\nroot:100000:65536\n", ids(65536000)));
        assert!(!delegates("root:100000:65536\nroot:165537:65536\n", ids(120000)), "a gap");
        assert!(!delegates("# comment\nroot:x:1\n\n", ids(100000)));
    }
}
