//! Forwarded ports (`forwardPorts`): host ports the host lets containers
//! have (`allowedForwardPorts`), forwarded to a running container's port
//! by DNAT rules (the table `FORWARDS_TABLE`, kept with the rules between
//! peers: network/rules.rs). A port one container has is refused to
//! another while one of its generations has it.

pub mod types;

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use anyhow::{bail, Context as _, Result};

use super::lxc_conf::{self, Rules, Setting, StoreScript};
use super::Capability;
use crate::formats::show;
use crate::settings::HostConfig;
use crate::spec::{GenerationMeta, Spec};
use crate::state::{ContainerRecord, State};
use crate::system::nft::{Family, Table};
use types::ForwardPort;

/// The capability.
pub struct ForwardPorts;

impl Capability for ForwardPorts {
    /// Refuses a host port the host does not allow, and one named twice.
    fn permit(&self, spec: &Spec, host: &HostConfig) -> Result<()> {
        let mut claimed = BTreeSet::new();
        for forward in &spec.forward_ports {
            let port = forward.host_port;
            if !host.allowed_forward_ports.iter().any(|range| range.contains(port)) {
                bail!(
                    "forwardPorts: host port {} is not one this host lets containers have \
                     (nixcloud.containers.allowedForwardPorts, or allowedForwardPorts in the host file)",
                    port.0
                );
            }
            if !claimed.insert((forward.protocol, port)) {
                bail!("forwardPorts: host port {} {} is named twice", forward.protocol, port.0);
            }
        }
        Ok(())
    }

    fn claim(&self, state: &mut State, _host: &HostConfig, name: &str, spec: &Spec) -> Result<()> {
        claim(state, name, &spec.forward_ports)
    }

    /// Every host port one of its generations forwards stays its own.
    fn recount(
        &self,
        _host: &HostConfig,
        entry: &mut ContainerRecord,
        generations: &[GenerationMeta],
    ) {
        entry.forwards =
            generations.iter().flat_map(|meta| meta.spec.forward_ports.iter().copied()).collect();
    }

    fn owns_lxc_key(&self, key: &str) -> bool {
        key == "lxc.hook.stop"
    }

    fn check_lxc_settings(&self, settings: &[Setting], rules: &Rules) -> Result<()> {
        lxc_conf::each(settings, |setting| {
            DROP_FORWARDS
                .check(setting.value, rules.store)
                .with_context(|| format!("lxc.hook.stop {}", show(setting.value)))
        })
    }
}

/// What `lxc.hook.stop` must be: lib/drop-forwards.sh, in the store (it
/// empties the stopped container's chain of forwards).
pub const DROP_FORWARDS: StoreScript = StoreScript {
    file: "drop-forwards.sh",
    text: include_str!("../../../../lib/drop-forwards.sh"),
};

/// The port forwards' table.
pub const FORWARDS_TABLE: Table = Table { family: Family::Ip, name: "nixcloud-container-forwards" };

/// The chain of `FORWARDS_TABLE` that holds the DNAT rules of container
/// `name` (as LXC knows it: LXC's hook at its stop, lib/drop-forwards.sh,
/// finds it by LXC_NAME and empties it).
pub fn forwards_chain(name: &str) -> String {
    format!("to-{name}")
}

/// The DNAT rule of `forward` to a container at `address`.
pub fn dnat_rule(forward: &ForwardPort, address: Ipv4Addr) -> String {
    let to_host = forward.host_address.map(|host| format!("ip daddr {host} "));
    format!(
        "{}{} dport {} dnat to {address}:{}",
        to_host.as_deref().unwrap_or(""),
        forward.protocol,
        forward.host_port.0,
        forward.container_port.0
    )
}

/// Claims the host ports `forwards` for container `name` (whose entry
/// must exist), unless another container has one of them.
pub fn claim(state: &mut State, name: &str, forwards: &[ForwardPort]) -> Result<()> {
    for wanted in forwards {
        let holder = state.containers.iter().filter(|(other, _)| other.as_str() != name).find(
            |(_, entry)| {
                entry.forwards.iter().any(|held| {
                    held.protocol == wanted.protocol
                        && held.host_port == wanted.host_port
                        && (held.host_address.is_none()
                            || wanted.host_address.is_none()
                            || held.host_address == wanted.host_address)
                })
            },
        );
        if let Some((holder, _)) = holder {
            bail!(
                "forwardPorts: host port {} {} is forwarded to container '{holder}' already",
                wanted.protocol,
                wanted.host_port.0
            );
        }
    }
    let entry = state.containers.get_mut(name).expect("the entry exists");
    entry.forwards.extend(forwards.iter().copied());
    Ok(())
}
