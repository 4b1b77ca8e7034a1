//! The port guard (anti-spoofing; on unless the host file says
//! `antiSpoofing: false`): a container's ports (network::port_name) let into
//! their bridges only frames from their own MAC address
//! (network::mac_address); IPv4 and ARP only from the container's own
//! addresses; IPv6 only from the link-local address of the port's MAC and the
//! address DHCPv6 gives it; and no router advertisement, redirect, DHCP or
//! DHCPv6 server's answer. The rules are lib/port-guard.nft (nftables, table
//! bridge nixcloud-container-guard, before the bridge forwards a frame to
//! the host or another port); each port is a few elements of its sets.
//!
//! A port's elements follow from its container's name (which fixes its ports'
//! names and MAC addresses) and the addresses the state records for it,
//! which are its own for its life: they are put in place when it is created,
//! changed when its addresses change (update, delete-generations) and taken
//! away when it is destroyed; starting and stopping it changes nothing.
//! Its internet interface's address is allocated like a hostonly one and
//! pinned for DHCP: a file per container in `<state dir>/dhcp-hosts`, a
//! directory of dnsmasq's `dhcp-hostsdir` (the NixOS module points dnsmasq
//! at it), gives the interface's MAC address that address (and, where the
//! host routes an IPv6 prefix to the bridge, its IPv6 one).
//!
//! A command changes the elements of its container alone, in one nft
//! transaction. Where that fails (a ruleset flushed meanwhile), and at
//! `repair-network` and `repair-state`, the whole table is written again from
//! the state; so is it at a start that finds the table gone (a host without
//! the NixOS module, whose ruleset was flushed), before LXC makes the ports.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

use crate::capabilities::network::addresses::{
    self as network, link_local, mac_address, port_name, Port,
};
use crate::context::Context;
use crate::settings::HostConfig;
use crate::spec::Params;
use crate::state::ContainerRecord;
use crate::system::nft::{Family, NetworkLock, Table};

/// The guard's table (its content: lib/port-guard.nft).
const TABLE: Table = Table { family: Family::Bridge, name: "nixcloud-container-guard" };
const CONTENT: &str = include_str!("../../../../lib/port-guard.nft");

/// The sets of lib/port-guard.nft.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Set {
    Macs,
    Ipv4,
    Ipv6,
    NdTargets,
}

impl Set {
    const ALL: [Set; 4] = [Set::Macs, Set::Ipv4, Set::Ipv6, Set::NdTargets];

    fn name(self) -> &'static str {
        match self {
            Set::Macs => "macs",
            Set::Ipv4 => "ipv4",
            Set::Ipv6 => "ipv6",
            Set::NdTargets => "nd_targets",
        }
    }
}

/// Elements of the guard's sets, each as nft writes it.
type Elements = BTreeSet<(Set, String)>;

/// What the guard lets through of container `name`'s ports, whose state
/// entry is `entry`.
fn elements(name: &str, entry: &ContainerRecord, host: &HostConfig) -> Elements {
    let mut elements = Elements::new();
    let on_internet = |internet: bool| {
        entry
            .addresses
            .iter()
            .filter(move |address| (address.bridge == host.internet.bridge) == internet)
            .map(|address| address.ip)
    };
    // Every address one of its generations has is its own, wherever it is
    // now: no other container gets one while that generation exists.
    add_port(&mut elements, name, Port::Hostonly, on_internet(false), None);
    if let Some(ip) = entry.internet_ip {
        add_port(
            &mut elements,
            name,
            Port::Internet,
            on_internet(true),
            network::internet_ipv6(host, ip),
        );
    }
    elements
}

/// The elements of container `name`'s port `port`, whose container has the
/// addresses `ipv4` and, besides the port's link-local one, `ipv6`.
fn add_port(
    elements: &mut Elements,
    name: &str,
    port: Port,
    ipv4: impl Iterator<Item = Ipv4Addr>,
    ipv6: Option<Ipv6Addr>,
) {
    let interface = port_name(name, port);
    let mac = mac_address(name, port);
    let key = |value: String| format!("\"{interface}\" . {value}");
    elements.insert((Set::Macs, key(mac.clone())));
    for address in ipv4 {
        elements.insert((Set::Ipv4, key(address.to_string())));
    }
    for address in std::iter::once(link_local(&mac)).chain(ipv6) {
        elements.insert((Set::Ipv6, key(address.to_string())));
        // The same address as the 128-bit number lib/port-guard.nft reads.
        elements.insert((Set::NdTargets, key(format!("0x{:032x}", u128::from(address)))));
    }
}

/// `verb` ("add", "delete") element statements for `elements`, a line per set.
fn statements(verb: &str, elements: &Elements) -> String {
    let mut text = String::new();
    for set in Set::ALL {
        let listed: Vec<&str> =
            elements.iter().filter(|(s, _)| *s == set).map(|(_, e)| e.as_str()).collect();
        if !listed.is_empty() {
            text.push_str(&format!(
                "{verb} element {TABLE} {} {{ {} }}\n",
                set.name(),
                listed.join(", ")
            ));
        }
    }
    text
}

/// The whole table for `containers` (name, entry): written over what is there.
fn table(containers: &[(&str, &ContainerRecord)], host: &HostConfig) -> String {
    let all: Elements =
        containers.iter().flat_map(|(name, entry)| elements(name, entry, host)).collect();
    format!("{}{}", TABLE.replace(CONTENT), statements("add", &all))
}

/// Container `name`'s state entry changed from `before` to `after` (None:
/// it was not there, it is gone): its ports' elements and its DHCP address
/// follow.
pub fn follow(
    ctx: &Context,
    name: &str,
    before: Option<&ContainerRecord>,
    after: Option<&ContainerRecord>,
) -> Result<()> {
    let host = &ctx.settings.host;
    let lock = NetworkLock::take(&ctx.settings.state_dir)?;
    pin(
        &dhcp_hosts_dir(ctx),
        name,
        after.and_then(|entry| dhcp_host(name, entry, host)).as_deref(),
    )?;
    if !host.anti_spoofing {
        return Ok(());
    }
    let old = before.map(|entry| elements(name, entry, host)).unwrap_or_default();
    let new = after.map(|entry| elements(name, entry, host)).unwrap_or_default();
    if old == new {
        return Ok(());
    }
    let changes = format!(
        "{}{}",
        statements("delete", &old.difference(&new).cloned().collect()),
        statements("add", &new.difference(&old).cloned().collect())
    );
    // Where its elements are not as they were (the table was flushed, or
    // never made), the whole table, from the state, instead.
    if lock.apply(&changes).is_err() {
        write_all_locked(ctx, &lock)?;
    }
    Ok(())
}

/// Before container `name` (with `entry`, its current generation having
/// `params`) starts: a container made before internet addresses were pinned
/// gets one, and where the table is gone (a flushed ruleset), it comes back
/// whole.
pub fn before_start(
    ctx: &Context,
    name: &str,
    entry: &ContainerRecord,
    params: &Params,
) -> Result<()> {
    if params.internet.is_some() && entry.internet_ip.is_none() {
        let after = {
            let mut locked = ctx.store.lock()?;
            network::claim_internet(&mut locked.state, &ctx.settings.host, name)?;
            let after = locked.state.containers[name].clone();
            locked.save()?;
            after
        };
        follow(ctx, name, Some(entry), Some(&after))?;
    }
    if ctx.settings.host.anti_spoofing && !TABLE.exists()? {
        write_all(ctx)?;
    }
    Ok(())
}

/// The whole table and every DHCP address, from the state (`repair-network`,
/// `repair-state`); without the guard, the table goes.
pub fn write_all(ctx: &Context) -> Result<()> {
    let lock = NetworkLock::take(&ctx.settings.state_dir)?;
    write_all_locked(ctx, &lock)
}

fn write_all_locked(ctx: &Context, lock: &NetworkLock) -> Result<()> {
    let host = &ctx.settings.host;
    let state = ctx.store.read()?;
    let dir = dhcp_hosts_dir(ctx);
    for (name, entry) in &state.containers {
        pin(&dir, name, dhcp_host(name, entry, host).as_deref())?;
    }
    // Files of containers that are gone.
    if let Ok(files) = std::fs::read_dir(&dir) {
        for file in files.flatten() {
            let name = file.file_name().to_string_lossy().into_owned();
            if !state.containers.contains_key(&name) && !name.starts_with('.') {
                pin(&dir, &name, None)?;
            }
        }
    }
    if host.anti_spoofing {
        let containers: Vec<(&str, &ContainerRecord)> =
            state.containers.iter().map(|(name, entry)| (name.as_str(), entry)).collect();
        lock.apply(&table(&containers, host))
    } else {
        lock.apply(&TABLE.delete())
    }
}

/// Where the DHCP addresses are pinned, a file per container.
pub fn dhcp_hosts_dir(ctx: &Context) -> PathBuf {
    ctx.settings.state_dir.join(crate::layout::DHCP_HOSTS)
}

/// Container `name`'s line for dnsmasq (`dhcp-host` syntax): its internet
/// interface's MAC address gets its address, and its IPv6 one where the
/// host has a prefix for the bridge. None without an internet address.
fn dhcp_host(name: &str, entry: &ContainerRecord, host: &HostConfig) -> Option<String> {
    let ip = entry.internet_ip?;
    let mac = mac_address(name, Port::Internet);
    Some(match network::internet_ipv6(host, ip) {
        Some(ipv6) => format!("{mac},{ip},[{ipv6}]\n"),
        None => format!("{mac},{ip}\n"),
    })
}

/// Puts `line` into container `name`'s file of `dir` (None: removes it),
/// readable by dnsmasq, which reads it as its own user (dnsmasq re-reads the
/// directory's new and changed files by itself; in a dhcp-hostsdir, a
/// removed file's address stays with it until it gets SIGHUP, which the
/// NixOS module sends). names.rs keeps its hosts directory with it too.
pub(super) fn pin(dir: &Path, name: &str, line: Option<&str>) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let file = dir.join(name);
    let Some(line) = line else {
        return match std::fs::remove_file(&file) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                Err(err).with_context(|| format!("cannot remove {}", file.display()))
            }
            _ => Ok(()),
        };
    };
    if std::fs::read_to_string(&file).is_ok_and(|text| text == line) {
        return Ok(());
    }
    std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)))
        .with_context(|| format!("cannot make {}", dir.display()))?;
    // Written beside it and renamed: dnsmasq never reads half a line.
    let mut temp = tempfile::Builder::new()
        .prefix(".")
        .permissions(std::fs::Permissions::from_mode(0o644))
        .tempfile_in(dir)
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    temp.write_all(line.as_bytes()).with_context(|| format!("cannot write {}", file.display()))?;
    temp.persist(&file).with_context(|| format!("cannot write {}", file.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Address, Phase};

    fn host() -> HostConfig {
        HostConfig::load(Path::new("/nonexistent")).unwrap()
    }

    fn entry(addresses: &[(&str, &str)], internet_ip: Option<&str>) -> ContainerRecord {
        let mut entry =
            ContainerRecord::new(Phase::Ready, crate::spec::Source::File("/x.nix".into()));
        entry.addresses = addresses
            .iter()
            .map(|(bridge, ip)| Address {
                bridge: crate::formats::InterfaceName::try_from(bridge.to_string()).unwrap(),
                ip: ip.parse().unwrap(),
            })
            .collect();
        entry.internet_ip = internet_ip.map(|ip| ip.parse().unwrap());
        entry
    }

    #[test]
    fn each_port_has_its_mac_and_its_addresses() {
        let host = host();
        let web = entry(
            &[
                ("brNC-hostonly", "10.101.0.2"),
                ("myOwnBridge", "10.10.1.2"),
                ("brNC-internet", "10.202.0.2"),
            ],
            Some("10.202.0.2"),
        );
        let elements = elements("web", &web, &host);
        let hostonly = port_name("web", Port::Hostonly);
        let internet = port_name("web", Port::Internet);
        let of = |set: Set| -> Vec<&str> {
            elements.iter().filter(|(s, _)| *s == set).map(|(_, e)| e.as_str()).collect()
        };
        assert_eq!(
            of(Set::Macs),
            [
                format!("\"{hostonly}\" . {}", mac_address("web", Port::Hostonly)),
                format!("\"{internet}\" . {}", mac_address("web", Port::Internet))
            ]
        );
        assert_eq!(
            of(Set::Ipv4),
            [
                format!("\"{hostonly}\" . 10.10.1.2"),
                format!("\"{hostonly}\" . 10.101.0.2"),
                format!("\"{internet}\" . 10.202.0.2")
            ],
            "hostonly: its addresses on every bridge but the internet one"
        );
        let link_local = link_local(&mac_address("web", Port::Hostonly));
        assert!(of(Set::Ipv6).contains(&format!("\"{hostonly}\" . {link_local}").as_str()));
        assert_eq!(of(Set::Ipv6).len(), 2, "one link-local address each, no prefix here");
        let number = format!("\"{hostonly}\" . 0x{:032x}", u128::from(link_local));
        assert!(number.contains("0xfe80000000000000"), "{number}");
        assert!(of(Set::NdTargets).contains(&number.as_str()));
    }

    #[test]
    fn changes_touch_only_what_changed() {
        let host = host();
        let before = elements("web", &entry(&[("brNC-hostonly", "10.101.0.2")], None), &host);
        let after = elements(
            "web",
            &entry(
                &[("brNC-hostonly", "10.101.0.3"), ("brNC-internet", "10.202.0.2")],
                Some("10.202.0.2"),
            ),
            &host,
        );
        let deleted = statements("delete", &before.difference(&after).cloned().collect());
        assert_eq!(
            deleted,
            format!(
                "delete element bridge nixcloud-container-guard ipv4 {{ \"{}\" . 10.101.0.2 }}\n",
                port_name("web", Port::Hostonly)
            )
        );
        let added = statements("add", &after.difference(&before).cloned().collect());
        assert_eq!(added.lines().count(), 4, "each set gets the internet port: {added}");
        assert!(added.contains(". 10.101.0.3") && added.contains(". 10.202.0.2"), "{added}");
    }

    #[test]
    fn the_table_is_lib_port_guard_nft_with_every_port() {
        let host = host();
        let web = entry(&[("brNC-hostonly", "10.101.0.2")], None);
        let text = table(&[("web", &web)], &host);
        assert!(text.starts_with(
            "table bridge nixcloud-container-guard\ndelete table bridge nixcloud-container-guard\n"
        ));
        assert!(text.contains(CONTENT));
        for set in Set::ALL {
            assert!(CONTENT.contains(&format!("set {} {{", set.name())), "{}", set.name());
        }
        assert!(text.contains("add element bridge nixcloud-container-guard ipv4 {"), "{text}");
        // The rules know the ports by the prefix their names have.
        assert!(CONTENT.contains(&format!("iifname != \"{}*\" accept", network::PORT_PREFIX)));
    }

    #[test]
    fn dhcp_gives_the_pinned_addresses() {
        let mut host = host();
        let web = entry(&[("brNC-internet", "10.202.0.7")], Some("10.202.0.7"));
        let mac = mac_address("web", Port::Internet);
        assert_eq!(dhcp_host("web", &web, &host).unwrap(), format!("{mac},10.202.0.7\n"));
        host.internet_ipv6 = Some(crate::capabilities::network::types::Ipv6Prefix {
            prefix: "2001:db8:1::".parse().unwrap(),
            prefix_length: 64,
        });
        assert_eq!(
            dhcp_host("web", &web, &host).unwrap(),
            format!("{mac},10.202.0.7,[2001:db8:1::1007]\n")
        );
        assert_eq!(dhcp_host("web", &entry(&[], None), &host), None);
    }

    #[test]
    fn pins_are_files_dnsmasq_can_read() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let pins = dir.path().join(crate::layout::DHCP_HOSTS);
        pin(&pins, "web", Some("02:00:00:00:00:01,10.202.0.2\n")).unwrap();
        let file = pins.join("web");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "02:00:00:00:00:01,10.202.0.2\n");
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o644);
        assert_eq!(std::fs::metadata(&pins).unwrap().permissions().mode() & 0o777, 0o755);
        pin(&pins, "web", None).unwrap();
        assert!(!file.exists());
        pin(&pins, "web", None).unwrap();
        assert_eq!(std::fs::read_dir(&pins).unwrap().count(), 0, "no temporary file stays");
    }
}
