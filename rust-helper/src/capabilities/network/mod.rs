//! The network: a container's interfaces on the host's bridges and their
//! addresses (addresses.rs), the guard of its ports (port_guard.rs), where
//! what it sends through the host may go (egress.rs), and the rules between
//! containers: peers, and the forwarded ports of forward_ports/ (rules.rs).
//! A container file may come from someone who is not root: it joins only
//! the bridges the host names, with addresses of their subnets.

pub mod addresses;
pub mod egress;
pub mod names;
pub mod port_guard;
pub mod rules;
pub mod types;

use std::net::Ipv4Addr;

use anyhow::{anyhow, bail, Context as _, Result};
use ipnet::Ipv4Net;

use super::lxc_conf::{self, Rules, Setting, StoreScript};
use super::{Capability, Container};
use crate::context::Context;
use crate::formats::show;
use crate::settings::HostConfig;
use crate::spec::{GenerationMeta, Params, Spec};
use crate::state::{Address, ContainerRecord, State};
use addresses::{mac_address, port_name, Port};

/// The capability.
pub struct Network;

impl Capability for Network {
    /// Refuses a bridge the host does not let containers join.
    fn permit(&self, spec: &Spec, host: &HostConfig) -> Result<()> {
        addresses::joined(&spec.network, host).map(drop)
    }

    /// Its address on its bridge (the one it asks for, or one allocated),
    /// and with NAT one on the internet bridge; its interfaces are checked
    /// with them before anything is built.
    fn claim(&self, state: &mut State, host: &HostConfig, name: &str, spec: &Spec) -> Result<()> {
        let request = addresses::address_request(&spec.network, host)?;
        let bridge = addresses::joined(&spec.network, host)?.bridge;
        addresses::claim(state, host, name, bridge, request)?;
        // An internet interface's address, pinned for DHCP and the port guard.
        if spec.network.enable_nat {
            addresses::claim_internet(state, host, name)?;
        }
        addresses::interfaces_claimed(state, host, name, spec).map(drop)
    }

    /// Every address one of its generations uses stays its own, and those
    /// allocated to it for its life.
    fn recount(
        &self,
        host: &HostConfig,
        entry: &mut ContainerRecord,
        generations: &[GenerationMeta],
    ) {
        let kept = [
            (&host.hostonly.bridge, entry.automatic_ip),
            (&host.internet.bridge, entry.internet_ip),
        ];
        entry.addresses = kept
            .into_iter()
            .filter_map(|(bridge, ip)| Some(Address { bridge: bridge.clone(), ip: ip? }))
            .collect();
        for meta in generations {
            let hostonly = &meta.params.hostonly;
            entry
                .addresses
                .insert(Address { bridge: hostonly.bridge.clone(), ip: hostonly.address });
            if let Some(internet) = &meta.params.internet {
                if let Some(ip) = internet.address {
                    entry.addresses.insert(Address { bridge: internet.bridge.clone(), ip });
                }
            }
        }
    }

    fn owns_lxc_key(&self, key: &str) -> bool {
        network_key(key).is_some()
    }

    /// Its interfaces' settings, and that each veth is isolated and known
    /// to the port guard.
    fn check_lxc_settings(&self, settings: &[Setting], rules: &Rules) -> Result<()> {
        let mut seen = Seen::default();
        lxc_conf::each(settings, |setting| {
            let (index, item) = network_key(setting.key).expect("a key of the network's");
            check_network_item(index, item, setting.value, rules, &mut seen)
        })?;
        for index in 0..PORTS.len() {
            if seen.veths[index] && !seen.isolated[index] {
                bail!("lxc.net.{index} has no script.up: its port would not be isolated");
            }
            // The port guard knows a port by its name and its MAC address.
            if seen.veths[index] && !(seen.named[index] && seen.addressed[index]) {
                bail!(
                    "lxc.net.{index} has no veth.pair or no hwaddr: the port guard would not let \
                     its port pass (a generation older than fixed MAC addresses: update the container)"
                );
            }
        }
        Ok(())
    }

    /// Its name, once it has a generation (names.rs).
    fn add(&self, ctx: &Context, name: &str) -> Result<()> {
        let current = ctx.profile(name).current()?.context("a new container has a generation")?;
        names::follow(ctx, name, Some(current.meta()?.params.hostonly.address))
    }

    /// A clear error instead of LXC's where a bridge of the generation is missing.
    fn prepare_start(&self, _ctx: &Context, container: &Container) -> Result<()> {
        check_bridges(container.name, &container.meta.params)
    }

    /// Its ports' guard, which LXC's new ports meet at once; where what it
    /// sends through the host may go; the filter between peers (its ports
    /// start isolated, and stop being so only with their pairs in place)
    /// and its forwarded ports.
    fn before_start(&self, ctx: &Context, container: &Container) -> Result<()> {
        port_guard::before_start(ctx, container.name, container.entry, &container.meta.params)?;
        egress::before_start(ctx)?;
        rules::before_start(ctx, container.name, rules::needs_rules(container.meta))
    }

    /// Where it names peers, its ports stop being isolated.
    fn started(&self, _ctx: &Context, container: &Container) -> Result<()> {
        let names_peers = !container.meta.spec.network.peers.is_empty();
        rules::after_start(container.name, &container.meta.params, names_peers)
    }

    /// Its forwarded ports go with it.
    fn stopped(&self, ctx: &Context, _name: &str) -> Result<()> {
        rules::refresh(ctx, false)
    }

    /// The rules and its name follow its generation; where its forwarded
    /// ports wait for its next start, it says so.
    fn current_changed(
        &self,
        ctx: &Context,
        name: &str,
        current: &GenerationMeta,
        activated: bool,
    ) -> Result<()> {
        rules::refresh(ctx, rules::needs_rules(current))?;
        // The generation is current already: a hosts file that cannot be
        // written is said, and fails nothing (repair-names writes it later).
        if let Err(err) = names::follow(ctx, name, Some(current.params.hostonly.address)) {
            eprintln!("warning: {err:#}");
        }
        if activated {
            rules::note_waiting_forwards(ctx, name)?;
        }
        Ok(())
    }

    /// Its ports pass the addresses it holds now; a container that goes
    /// takes its pairs and its forwarded ports with it: a new container of
    /// its name must not find them.
    fn entry_changed(
        &self,
        ctx: &Context,
        name: &str,
        before: Option<&ContainerRecord>,
        after: Option<&ContainerRecord>,
    ) -> Result<()> {
        let followed = port_guard::follow(ctx, name, before, after);
        if after.is_some() {
            return followed;
        }
        followed.and(rules::refresh(ctx, false))
    }

    /// Its name goes with it. Where the host's hosts file cannot be
    /// written, that is said, and the container goes all the same: its name
    /// there (if it ever got there) goes at the next write.
    fn remove(&self, ctx: &Context, name: &str, _entry: Option<&ContainerRecord>) -> Result<()> {
        if let Err(err) = names::follow(ctx, name, None) {
            eprintln!("warning: {err:#}");
        }
        Ok(())
    }
}

/// What each veth's `script.up` must be: lib/isolate-port.sh, in the store.
pub const ISOLATE_PORT: StoreScript =
    StoreScript { file: "isolate-port.sh", text: include_str!("../../../../lib/isolate-port.sh") };

/// The ports of the interfaces, by index.
const PORTS: [Port; 2] = [Port::Hostonly, Port::Internet];

/// The names LXC gives the container's interfaces inside, by index.
const INTERFACE_NAMES: [&str; 2] = ["hostonly", "internet"];

/// What the lines said that the whole must agree with: which interfaces
/// are veths, and which have the isolation script, their port's name and
/// their MAC address.
#[derive(Default)]
struct Seen {
    veths: [bool; 2],
    isolated: [bool; 2],
    named: [bool; 2],
    addressed: [bool; 2],
}

/// `lxc.net.<index>.<item>`, for the interfaces the helper gives containers.
fn network_key(key: &str) -> Option<(usize, &str)> {
    let rest = key.strip_prefix("lxc.net.")?;
    let (index, item) = rest.split_once('.')?;
    let index: usize = match index {
        "0" => 0,
        "1" => 1,
        _ => return None,
    };
    Some((index, item))
}

fn check_network_item(
    index: usize,
    item: &str,
    value: &str,
    rules: &Rules,
    seen: &mut Seen,
) -> Result<()> {
    let ipv4 = |text: &str| -> Result<Ipv4Addr> {
        text.parse().map_err(|_| anyhow!("{} is not an IPv4 address", show(text)))
    };
    match item {
        "type" if value == "veth" => {
            seen.veths[index] = true;
            Ok(())
        }
        "veth.pair" => {
            let port = port_name(rules.name, PORTS[index]);
            if value == port.as_str() {
                seen.named[index] = true;
                Ok(())
            } else {
                bail!("lxc.net.{index}.veth.pair must be {port}, not {}", show(value))
            }
        }
        "hwaddr" => {
            let address = mac_address(rules.name, PORTS[index]);
            if value == address {
                seen.addressed[index] = true;
                Ok(())
            } else {
                bail!("lxc.net.{index}.hwaddr must be {address}, not {}", show(value))
            }
        }
        "script.up" => {
            ISOLATE_PORT
                .check(value, rules.store)
                .with_context(|| format!("lxc.net.{index}.script.up {}", show(value)))?;
            seen.isolated[index] = true;
            Ok(())
        }
        "flags" if value == "up" => Ok(()),
        "name" if value == INTERFACE_NAMES[index] => Ok(()),
        "link" => {
            if rules.bridges.iter().any(|bridge| *bridge == value) {
                Ok(())
            } else {
                bail!("lxc.net.{index}.link {} is not a bridge of this host", show(value))
            }
        }
        "ipv4.address" => {
            // "<address>/<length> <broadcast>"
            let (net, broadcast) = value.split_once(' ').unwrap_or((value, ""));
            let net: Ipv4Net =
                net.parse().map_err(|_| anyhow!("{} is not an address", show(net)))?;
            if net.broadcast() != ipv4(broadcast)? {
                bail!("lxc.net.{index}.ipv4.address has a wrong broadcast address");
            }
            Ok(())
        }
        "ipv4.gateway" => ipv4(value).map(drop),
        _ => bail!(
            "lxc.net.{index}.{item} = {} is not a setting nixcloud-container generates",
            show(value)
        ),
    }
}

/// A clear error instead of LXC's when a bridge of the generation is missing.
fn check_bridges(name: &str, params: &Params) -> Result<()> {
    let bridges =
        std::iter::once(&params.hostonly.bridge).chain(params.internet.as_ref().map(|i| &i.bridge));
    for bridge in bridges {
        if !std::path::Path::new("/sys/class/net").join(bridge.as_str()).join("bridge").exists() {
            bail!(
                "cannot start container '{name}': bridge {bridge} does not exist on this host \
                 (nixcloud.containers.enable = true creates the default ones, \
                 nixcloud.containers.extraBridges the others)"
            );
        }
    }
    Ok(())
}
