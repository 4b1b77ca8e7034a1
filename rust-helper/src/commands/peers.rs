//! Which containers may reach each other on a bridge.
//!
//! Each port a container has on a bridge is made isolated when it starts
//! (lib/isolate-port.sh): the kernel lets it reach the host and the bridge's
//! ports that are not isolated, never another container's. Containers that
//! name each other in `network.peers` may reach each other: their ports are
//! not isolated, and a bridge filter (nftables, lib/peers.nft) drops what goes
//! from one container's port to another's unless the two ports are a pair of
//! such peers on the same bridge.
//!
//! Nothing of this runs while no container names peers. Once one does, the
//! filter is kept in step with the containers whenever one that names peers
//! starts, changes or goes, and whenever any container goes or comes while
//! the filter is there (a new container of a gone one's name must not find
//! its pairs); the ruleset applied last is kept in the state directory.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};

use super::context::Context;
use crate::formats::InterfaceName;
use crate::network::{port_name, Port};
use crate::process::Tool;
use crate::spec::Params;

/// The filter's table (its content: lib/peers.nft).
const TABLE: &str = "bridge nixcloud-container-peers";
const CONTENT: &str = include_str!("../../../lib/peers.nft");

/// A container as the filter sees it: its ports, each on its bridge, and
/// the peers it names.
struct Member {
    ports: Vec<(InterfaceName, InterfaceName)>,
    peers: BTreeSet<String>,
}

/// Brings the filter and the ports of running containers in step, where
/// peers are in use: `names_peers` says whether the container a command
/// works on names peers (in the generation it had or has).
pub fn refresh(ctx: &Context, names_peers: bool) -> Result<()> {
    if names_peers || applied_file(ctx).exists() {
        sync(ctx)
    } else {
        Ok(())
    }
}

/// After container `name` started with its ports isolated: where it names
/// peers, they stop being isolated (`refresh` put its pairs in place before).
pub fn after_start(name: &str, params: &Params, names_peers: bool) -> Result<()> {
    if !names_peers {
        return Ok(());
    }
    for (_, port) in ports(name, params) {
        set_isolated(&port, false)?;
    }
    Ok(())
}

/// The ports of container `name` whose generation has `params`, each with
/// its bridge.
fn ports(name: &str, params: &Params) -> Vec<(InterfaceName, InterfaceName)> {
    let mut ports = vec![(params.hostonly.bridge.clone(), port_name(name, Port::Hostonly))];
    if let Some(internet) = &params.internet {
        ports.push((internet.bridge.clone(), port_name(name, Port::Internet)));
    }
    ports
}

/// `repair-network`: the filter and the ports, brought in step whatever
/// is there (after a firewall reload that flushed the filter).
pub fn repair(ctx: &Context) -> Result<()> {
    sync(ctx)?;
    let pairs = if applied_file(ctx).exists() { "with the peers' pairs" } else { "no peers" };
    println!("the containers' ports are isolated, {pairs}");
    Ok(())
}

fn applied_file(ctx: &Context) -> PathBuf {
    ctx.settings.state_dir.join("peers.nft")
}

fn sync(ctx: &Context) -> Result<()> {
    let members = members(ctx)?;
    let pairs = pairs(&members);
    let applied = applied_file(ctx);
    if members.values().all(|member| member.peers.is_empty()) {
        if applied.exists() {
            apply(&format!("table {TABLE}\ndelete table {TABLE}\n"))?;
            std::fs::remove_file(&applied)
                .with_context(|| format!("cannot remove {}", applied.display()))?;
        }
    } else {
        let ruleset = ruleset(&pairs);
        crate::state::write_atomically(&applied, &ruleset)?;
        apply(&ruleset)?;
    }
    // Only now that the filter is there: the ports of containers that name
    // peers stop being isolated.
    for member in members.values() {
        for (_, port) in &member.ports {
            set_isolated(port, member.peers.is_empty())?;
        }
    }
    Ok(())
}

/// Every container with a current generation, by its name in lower case
/// (names are the same in any case).
fn members(ctx: &Context) -> Result<BTreeMap<String, Member>> {
    let mut members = BTreeMap::new();
    for name in ctx.store.read()?.containers.keys() {
        let Some(current) = ctx.profile(name).current()? else {
            continue;
        };
        let meta = current.meta()?;
        let ports = ports(name, &meta.params);
        let peers =
            meta.spec.network.peers.iter().map(|peer| peer.as_str().to_ascii_lowercase()).collect();
        members.insert(name.to_ascii_lowercase(), Member { ports, peers });
    }
    Ok(members)
}

/// The pairs of ports that may reach each other, both ways: those of two
/// containers that name each other, on a bridge they share.
fn pairs(members: &BTreeMap<String, Member>) -> BTreeSet<(&InterfaceName, &InterfaceName)> {
    let mut pairs = BTreeSet::new();
    for (name, member) in members {
        for peer in &member.peers {
            let Some(other) = members.get(peer).filter(|other| other.peers.contains(name)) else {
                continue;
            };
            for (bridge, port) in &member.ports {
                for (other_bridge, other_port) in &other.ports {
                    if bridge == other_bridge && port != other_port {
                        pairs.insert((port, other_port));
                    }
                }
            }
        }
    }
    pairs
}

/// The whole table, replacing what is there in one transaction.
fn ruleset(pairs: &BTreeSet<(&InterfaceName, &InterfaceName)>) -> String {
    let elements: Vec<String> =
        pairs.iter().map(|(from, to)| format!("\"{from}\" . \"{to}\"")).collect();
    let elements = if elements.is_empty() {
        String::new()
    } else {
        format!("elements = {{ {} }}", elements.join(", "))
    };
    format!(
        "table {TABLE}\ndelete table {TABLE}\ntable {TABLE} {{\n{}}}\n",
        CONTENT.replace("@ELEMENTS@", &elements)
    )
}

fn apply(ruleset: &str) -> Result<()> {
    let file = tempfile::NamedTempFile::new().context("cannot write the peers' filter")?;
    std::fs::write(file.path(), ruleset).context("cannot write the peers' filter")?;
    let finished = Tool::new("nft").arg("-f").arg(file.path()).output(false).context(
        "containers that name peers need nftables (nft) on the host: install it \
         (Debian: apt-get install nftables)",
    )?;
    if !finished.status.success() {
        bail!("nft could not set the peers' filter: {}", finished.stderr.trim());
    }
    Ok(())
}

/// Sets whether `port` (if it exists: its container runs) is an isolated
/// port of its bridge.
fn set_isolated(port: &InterfaceName, isolated: bool) -> Result<()> {
    let flag = Path::new("/sys/class/net").join(port.as_str()).join("brport/isolated");
    if !flag.exists() {
        return Ok(());
    }
    std::fs::write(&flag, if isolated { "1" } else { "0" })
        .with_context(|| format!("cannot set {}", flag.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(name: &str) -> InterfaceName {
        InterfaceName::try_from(name.to_string()).unwrap()
    }

    fn member(bridges: &[(&str, &str)], peers: &[&str]) -> Member {
        Member {
            ports: bridges.iter().map(|(bridge, p)| (port(bridge), port(p))).collect(),
            peers: peers.iter().map(|p| p.to_string()).collect(),
        }
    }

    #[test]
    fn only_mutual_peers_on_a_shared_bridge_are_pairs() {
        let members: BTreeMap<String, Member> = [
            ("a", member(&[("br0", "pa"), ("br1", "pa1")], &["b", "c", "ghost"])),
            ("b", member(&[("br0", "pb"), ("br1", "pb1")], &["a"])),
            ("c", member(&[("br0", "pc")], &[])),
            ("d", member(&[("br2", "pd")], &["a"])),
        ]
        .into_iter()
        .map(|(name, member)| (name.to_string(), member))
        .collect();
        let pairs: Vec<(String, String)> =
            pairs(&members).iter().map(|(x, y)| (x.to_string(), y.to_string())).collect();
        assert_eq!(
            pairs,
            [("pa", "pb"), ("pa1", "pb1"), ("pb", "pa"), ("pb1", "pa1")]
                .map(|(x, y)| (x.to_string(), y.to_string()))
        );
        let ruleset = ruleset(&super::pairs(&members));
        assert!(ruleset.contains("elements = { \"pa\" . \"pb\", \"pa1\" . \"pb1\""), "{ruleset}");
        assert!(ruleset.starts_with("table bridge nixcloud-container-peers\ndelete table"));
    }

    #[test]
    fn the_filter_knows_the_ports_by_their_prefix() {
        let pattern = format!(
            "iifname \"{}*\" oifname \"{}*\"",
            crate::network::PORT_PREFIX,
            crate::network::PORT_PREFIX
        );
        assert!(CONTENT.contains(&pattern), "lib/peers.nft matches {pattern}");
    }
}
