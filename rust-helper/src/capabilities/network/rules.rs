//! The host's network rules for its containers: which containers may reach
//! each other on a bridge, and which host ports go to which container.
//!
//! Each port a container has on a bridge is made isolated when it starts
//! (lib/isolate-port.sh): the kernel lets it reach the host and the bridge's
//! ports that are not isolated, never another container's. Containers that
//! name each other in `network.peers` may reach each other: their ports are
//! not isolated, and a bridge filter (nftables, lib/peers.nft) drops what goes
//! from one container's port to another's unless the two ports are a pair of
//! such peers on the same bridge.
//!
//! A running container's `forwardPorts` are DNAT rules (nftables, table ip
//! nixcloud-container-forwards): connections to a host address (any of the
//! host's, or the one named) on the host port go to the container's port.
//! They are there while it runs: made when it starts, gone when it stops.
//! Each container's rules are a chain of its own (`to-<name>`), so that
//! LXC's hook at its stop (lib/drop-forwards.sh) empties it, whatever
//! stopped the container; the helper's next command takes the empty chain
//! away. Only generations with forwarded ports have that hook (a container
//! without them stops without running it), and LXC runs the hooks of the
//! generation a container started with: forwarded ports that an update
//! gives a running container that started without any wait for its next
//! start.
//!
//! Nothing of this runs while no container names peers or forwards ports.
//! Once one does, the rules are kept in step with the containers whenever one
//! that names peers or ports starts, stops, changes or goes, and whenever any
//! container does so while rules are there (a new container of a gone one's
//! name must not find its pairs); the ruleset applied last is kept in the
//! state directory.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

use crate::capabilities::forward_ports::types::ForwardPort;
use crate::capabilities::forward_ports::{dnat_rule, forwards_chain, FORWARDS_TABLE};
use crate::capabilities::network::addresses::{port_name, Port};
use crate::context::Context;
use crate::formats::InterfaceName;
use crate::spec::{GenerationMeta, Params};
use crate::state::ContainerRecord;
use crate::system::nft::{Family, NetworkLock, Table};

/// The bridge filter's table (its content: lib/peers.nft).
const PEERS_TABLE: Table = Table { family: Family::Bridge, name: "nixcloud-container-peers" };
const PEERS_CONTENT: &str = include_str!("../../../../lib/peers.nft");
/// A container as the rules see it.
struct Member {
    /// Its name as LXC knows it.
    name: String,
    /// Its ports, each with its bridge.
    ports: Vec<(InterfaceName, InterfaceName)>,
    /// The names (in lower case) of the containers it names as peers.
    peers: BTreeSet<String>,
    forwards: Vec<ForwardPort>,
    /// Its address while it runs.
    running_at: Option<Ipv4Addr>,
    /// Whether its forwards wait for its next start: it runs a generation
    /// without forwarded ports, whose LXC settings have no stop hook.
    forwards_wait: bool,
}

impl Member {
    /// Where its forwarded ports go: to its address while it runs with its
    /// forwards in place (then its chain of forwards is there).
    fn forwarded_to(&self) -> Option<Ipv4Addr> {
        self.running_at.filter(|_| !self.forwards.is_empty() && !self.forwards_wait)
    }
}

/// Whether a container whose generation has `meta` needs the rules.
pub fn needs_rules(meta: &GenerationMeta) -> bool {
    !meta.spec.network.peers.is_empty() || !meta.spec.forward_ports.is_empty()
}

/// Brings the rules and the ports of running containers in step where they
/// are in use: `involved` says whether the container a command works on
/// names peers or ports (in the generation it had or has).
pub fn refresh(ctx: &Context, involved: bool) -> Result<()> {
    if involved || applied_file(ctx).exists() {
        sync(ctx, None)
    } else {
        Ok(())
    }
}

/// Before container `name` starts: its pairs and forwards in place, as if
/// it ran (its ports start isolated, and stop being so in `after_start`).
pub fn before_start(ctx: &Context, name: &str, involved: bool) -> Result<()> {
    if involved || applied_file(ctx).exists() {
        sync(ctx, Some(name))
    } else {
        Ok(())
    }
}

/// After container `name` started with its ports isolated: where it names
/// peers, they stop being isolated (`before_start` put its pairs in place).
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

/// `repair-network`: the rules and the ports, brought in step whatever is
/// there (after a firewall reload that flushed the rules).
pub fn repair(ctx: &Context) -> Result<()> {
    sync(ctx, None)?;
    let what = if applied_file(ctx).exists() {
        "the rules for peers and forwarded ports are in place"
    } else {
        "no container names peers or forwards ports"
    };
    println!("the containers' ports are isolated; {what}");
    Ok(())
}

fn applied_file(ctx: &Context) -> PathBuf {
    ctx.settings.state_dir.join(crate::layout::NETWORK_RULES)
}

/// Writes the rules for the containers as they are (with `starting` as if
/// it ran), then sets which ports are isolated.
fn sync(ctx: &Context, starting: Option<&str>) -> Result<()> {
    // Rules from the state as it is now replace none made from a newer one.
    let lock = NetworkLock::take(&ctx.settings.state_dir)?;
    let members = members(ctx, starting)?;
    let applied = applied_file(ctx);
    let in_use = members.values().any(|m| !m.peers.is_empty() || !m.forwards.is_empty());
    if in_use {
        let ruleset = ruleset(&members);
        crate::system::files::write_atomically(&applied, &ruleset)?;
        lock.apply(&ruleset)?;
    } else if applied.exists() {
        lock.apply(&format!("{}{}", PEERS_TABLE.delete(), FORWARDS_TABLE.delete()))?;
        std::fs::remove_file(&applied)
            .with_context(|| format!("cannot remove {}", applied.display()))?;
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
fn members(ctx: &Context, starting: Option<&str>) -> Result<BTreeMap<String, Member>> {
    let running = ctx.lxc().init_pids();
    let mut members = BTreeMap::new();
    for (name, entry) in ctx.store.read()?.containers {
        let runs = running.contains_key(&name) || starting == Some(name.as_str());
        let starts = starting == Some(name.as_str());
        if let Some(member) = member(ctx, &name, &entry, runs, starts)? {
            members.insert(name.to_ascii_lowercase(), member);
        }
    }
    Ok(members)
}

/// Container `name` (with state `entry`, running or starting as said) as
/// the rules see it; none without a current generation.
fn member(
    ctx: &Context,
    name: &str,
    entry: &ContainerRecord,
    runs: bool,
    starts: bool,
) -> Result<Option<Member>> {
    let Some(current) = ctx.profile(name).current()? else {
        return Ok(None);
    };
    let meta = current.meta()?;
    let started_with = (runs && !starts).then(|| ctx.store.started_with(name, entry)).flatten();
    let forwards_wait = match started_with {
        Some(started) if runs && !meta.spec.forward_ports.is_empty() => {
            !started_with_forwards(ctx, name, started.generation, current.number)
        }
        _ => false,
    };
    let started_at = started_with.map(|started| started.address);
    Ok(Some(Member {
        name: name.to_string(),
        ports: ports(name, &meta.params),
        peers: meta
            .spec
            .network
            .peers
            .iter()
            .map(|peer| peer.as_str().to_ascii_lowercase())
            .collect(),
        forwards: meta.spec.forward_ports,
        running_at: runs.then(|| started_at.unwrap_or(meta.params.hostonly.address)),
        forwards_wait,
    }))
}

/// Whether generation `started` of container `name`, which it runs, forwards
/// ports (then its LXC settings have the stop hook; generations older than
/// the hook have neither, and keep their forwards as they did); one that is
/// gone is taken to. `current` is the current generation, which forwards.
fn started_with_forwards(ctx: &Context, name: &str, started: u64, current: u64) -> bool {
    started == current
        || ctx
            .profile(name)
            .generation(started)
            .and_then(|generation| generation.meta())
            .map_or(true, |meta| !meta.spec.forward_ports.is_empty())
}

/// After a live switch of container `name`: says so where the forwarded
/// ports of its new generation wait for its next start (it started with a
/// generation without any).
pub fn note_waiting_forwards(ctx: &Context, name: &str) -> Result<()> {
    let Some(entry) = ctx.store.read()?.containers.remove(name) else {
        return Ok(());
    };
    let runs = ctx.lxc().is_running(name)?;
    if member(ctx, name, &entry, runs, false)?.is_some_and(|member| member.forwards_wait) {
        println!(
            "note: container '{name}' gets its forwarded ports at its next start: it started \
             without any, and LXC takes them away at its stop only from then on"
        );
    }
    Ok(())
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

/// Both tables, replacing what is there in one transaction.
fn ruleset(members: &BTreeMap<String, Member>) -> String {
    let elements: Vec<String> =
        pairs(members).iter().map(|(from, to)| format!("\"{from}\" . \"{to}\"")).collect();
    let elements = if elements.is_empty() {
        String::new()
    } else {
        format!("elements = {{ {} }}", elements.join(", "))
    };
    // Each running container's rules in its chain, which the base chains
    // jump to only for connections to the host's own addresses: a container
    // file's hostAddress that is not one of them would take another host's
    // connections as they pass through.
    let mut chains = String::new();
    let mut jumps = Vec::new();
    for member in members.values() {
        let Some(address) = member.forwarded_to() else {
            continue;
        };
        let chain = forwards_chain(&member.name);
        let rules: String = member
            .forwards
            .iter()
            .map(|forward| format!("    {}\n", dnat_rule(forward, address)))
            .collect();
        chains.push_str(&format!("  chain {chain} {{\n{rules}  }}\n"));
        jumps.push(chain);
    }
    let jumps = |local: &str| -> String {
        jumps.iter().map(|chain| format!("    {local}jump {chain}\n")).collect()
    };
    let forwards = format!(
        "{chains}\
         \x20 chain prerouting {{\n    type nat hook prerouting priority dstnat; policy accept;\n{}  }}\n\
         \x20 chain output {{\n    type nat hook output priority -100; policy accept;\n{}  }}\n",
        jumps("fib daddr type local "),
        // From the host itself, to its own addresses but loopback's (which
        // the kernel would not route to a container).
        jumps("fib daddr type local ip daddr != 127.0.0.0/8 "),
    );
    format!(
        "{}{}",
        PEERS_TABLE.replace(&PEERS_CONTENT.replace("@ELEMENTS@", &elements)),
        FORWARDS_TABLE.replace(&forwards)
    )
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
    use crate::capabilities::forward_ports::types::Protocol;
    use std::str::FromStr;

    fn port(name: &str) -> InterfaceName {
        InterfaceName::try_from(name.to_string()).unwrap()
    }

    fn member(bridges: &[(&str, &str)], peers: &[&str]) -> Member {
        Member {
            name: String::new(),
            ports: bridges.iter().map(|(bridge, p)| (port(bridge), port(p))).collect(),
            peers: peers.iter().map(|p| p.to_string()).collect(),
            forwards: Vec::new(),
            running_at: None,
            forwards_wait: false,
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
        let ruleset = ruleset(&members);
        assert!(ruleset.contains("elements = { \"pa\" . \"pb\", \"pa1\" . \"pb1\""), "{ruleset}");
        assert!(ruleset.starts_with("table bridge nixcloud-container-peers\ndelete table"));
    }

    #[test]
    fn running_containers_get_their_forwards() {
        let forward = |host_port, container_port, host_address: Option<&str>| ForwardPort {
            protocol: Protocol::Tcp,
            host_port: crate::capabilities::forward_ports::types::Port(host_port),
            container_port: crate::capabilities::forward_ports::types::Port(container_port),
            host_address: host_address.map(|a| Ipv4Addr::from_str(a).unwrap().try_into().unwrap()),
        };
        let mut web = member(&[], &[]);
        web.name = "Web".to_string();
        web.forwards = vec![forward(8080, 80, None), forward(8443, 443, Some("192.0.2.1"))];
        web.running_at = Some("10.101.0.2".parse().unwrap());
        let mut stopped = member(&[], &[]);
        stopped.forwards = vec![forward(9000, 9000, None)];
        let members: BTreeMap<String, Member> =
            [("web".to_string(), web), ("stopped".to_string(), stopped)].into_iter().collect();
        let ruleset = ruleset(&members);
        assert!(
            ruleset.contains(
                "  chain to-Web {\n    tcp dport 8080 dnat to 10.101.0.2:80\n    \
                 ip daddr 192.0.2.1 tcp dport 8443 dnat to 10.101.0.2:443\n  }\n"
            ),
            "its rules are a chain named as LXC names it: {ruleset}"
        );
        assert!(ruleset.contains("    fib daddr type local jump to-Web\n"), "{ruleset}");
        assert!(
            ruleset.contains("    fib daddr type local ip daddr != 127.0.0.0/8 jump to-Web\n"),
            "{ruleset}"
        );
        assert!(!ruleset.contains("9000"), "a stopped container has none: {ruleset}");
        assert!(!ruleset.contains("to-stopped"), "nor a chain: {ruleset}");
    }

    #[test]
    fn the_stop_hook_empties_the_chain_of_the_stopped_container() {
        let command =
            format!("nft flush chain {FORWARDS_TABLE} \"{}\"", forwards_chain("$LXC_NAME"));
        let script = crate::capabilities::forward_ports::DROP_FORWARDS.text;
        assert!(script.contains(&command), "lib/drop-forwards.sh runs {command}");
    }

    #[test]
    fn the_filter_knows_the_ports_by_their_prefix() {
        let pattern = format!(
            "iifname \"{}*\" oifname \"{}*\"",
            crate::capabilities::network::addresses::PORT_PREFIX,
            crate::capabilities::network::addresses::PORT_PREFIX
        );
        assert!(PEERS_CONTENT.contains(&pattern), "lib/peers.nft matches {pattern}");
    }
}
