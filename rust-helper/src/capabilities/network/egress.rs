//! The egress policy: where traffic that containers send through the host
//! may go. It reaches the internet, and not the host's private networks or
//! link-local addresses, except those the host allows (`allowedEgress` in
//! the host file); the rules are lib/egress.nft (nftables, table inet
//! nixcloud-container-egress, on the forward hook), for every bridge
//! containers join. A container file has no say in them.
//!
//! The table follows the host file alone. It is written at `repair-network`
//! and before a container starts where it is not there as the host file has
//! it: gone (a flushed ruleset, a new boot) or written from another host file
//! (the ruleset applied last is kept in the state directory). It stays when
//! containers stop or go.

use std::path::PathBuf;

use anyhow::Result;

use super::types::AllowedEgress;
use crate::context::Context;
use crate::settings::HostConfig;
use crate::system::nft::{Family, NetworkLock, Table};

/// The egress table (its content: lib/egress.nft).
const TABLE: Table = Table { family: Family::Inet, name: "nixcloud-container-egress" };
const CONTENT: &str = include_str!("../../../../lib/egress.nft");

/// Before a container starts: the table in place, as the host file has it.
pub fn before_start(ctx: &Context) -> Result<()> {
    let wanted = ruleset(&ctx.settings.host);
    if std::fs::read_to_string(applied_file(ctx)).is_ok_and(|applied| applied == wanted)
        && TABLE.exists()?
    {
        return Ok(());
    }
    write(ctx, &wanted)
}

/// `repair-network`: the table written again, whatever is there.
pub fn repair(ctx: &Context) -> Result<()> {
    write(ctx, &ruleset(&ctx.settings.host))
}

fn write(ctx: &Context, ruleset: &str) -> Result<()> {
    let lock = NetworkLock::take(&ctx.settings.state_dir)?;
    lock.apply(ruleset)?;
    crate::system::files::write_atomically(&applied_file(ctx), ruleset)
}

fn applied_file(ctx: &Context) -> PathBuf {
    ctx.settings.state_dir.join(crate::layout::EGRESS_RULES)
}

/// The table for `host`, replacing what is there in one transaction.
fn ruleset(host: &HostConfig) -> String {
    let bridges: Vec<String> = std::iter::once(&host.hostonly.bridge)
        .chain([&host.internet.bridge])
        .chain(host.extra_bridges.keys())
        .map(|bridge| format!("\"{bridge}\""))
        .collect();
    let same_bridge: Vec<String> =
        bridges.iter().map(|bridge| format!("{bridge} . {bridge}")).collect();
    let allowed: String = host.allowed_egress.iter().map(allowance).collect();
    let content = CONTENT
        .replace("@BRIDGES@", &bridges.join(", "))
        .replace("@SAME_BRIDGE@", &same_bridge.join(", "))
        .replace("@ALLOWED@\n", &allowed);
    TABLE.replace(&content)
}

/// The rule that lets containers' traffic reach what `allowed` names.
fn allowance(allowed: &AllowedEgress) -> String {
    let network = allowed.network.0;
    let family = if network.addr().is_ipv4() { "ip" } else { "ip6" };
    let ports = if allowed.ports.is_empty() {
        String::new()
    } else {
        let ranges: Vec<String> = allowed
            .ports
            .iter()
            .map(|range| match (range.from.0, range.to.0) {
                (from, to) if from == to => from.to_string(),
                (from, to) => format!("{from}-{to}"),
            })
            .collect();
        format!("meta l4proto {{ tcp, udp }} th dport {{ {} }} ", ranges.join(", "))
    };
    format!("  {family} daddr {network} {ports}accept\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(json: &str) -> HostConfig {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("host.json");
        std::fs::write(&file, json).unwrap();
        HostConfig::load(&file).unwrap()
    }

    #[test]
    fn every_bridge_of_the_containers_is_filtered() {
        let ruleset = ruleset(&host(
            r#"{"extraBridges": {"myOwnBridge": {"address": "10.10.0.1", "prefixLength": 16}}}"#,
        ));
        assert!(
            ruleset.contains(
                "iifname != { \"brNC-hostonly\", \"brNC-internet\", \"myOwnBridge\" } accept\n"
            ),
            "{ruleset}"
        );
        assert!(ruleset.contains("\"myOwnBridge\" . \"myOwnBridge\" } accept\n"), "{ruleset}");
        assert!(ruleset.starts_with(
            "table inet nixcloud-container-egress\ndelete table inet nixcloud-container-egress\n"
        ));
        assert!(!ruleset.contains('@'), "every placeholder filled: {ruleset}");
    }

    #[test]
    fn what_the_host_allows_comes_before_the_refusals() {
        let ruleset = ruleset(&host(
            r#"{"allowedEgress": [
                {"network": "192.168.7.0/24", "ports": [{"from": 5432, "to": 5432}, {"from": 8000, "to": 8100}]},
                {"network": "fd00::/8"}
            ]}"#,
        ));
        let allowed =
            "  ip daddr 192.168.7.0/24 meta l4proto { tcp, udp } th dport { 5432, 8000-8100 } \
                       accept\n  ip6 daddr fd00::/8 accept\n";
        let at = ruleset.find(allowed).unwrap_or_else(|| panic!("{ruleset}"));
        assert!(at < ruleset.find("reject").unwrap(), "{ruleset}");
        let refused = "ip daddr { 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 100.64.0.0/10, \
                       169.254.0.0/16 } reject";
        assert!(ruleset.contains(refused), "{ruleset}");
        assert!(ruleset.contains("ip6 daddr { fc00::/7, fe80::/10 } reject"), "{ruleset}");
    }
}
