//! The network's part of a container file (`network`), of a generation's
//! parameters (its interfaces) and of the host file (the bridges, the
//! internet's IPv6 prefix, `allowedEgress`): their types, each value
//! checked as it is read.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net};
use serde::{Deserialize, Serialize};

use crate::capabilities::forward_ports::types::PortRange;
use crate::formats::{show, AbsolutePath, ContainerName, DnsLabel, InterfaceName, PrefixLength};

/// The host's names for its containers (host file `names`; names.rs).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostNames {
    /// `<name>.<suffix>` is a container's name.
    pub suffix: DnsLabel,
    /// The hosts file whose block of names the helper keeps; null: none.
    pub hosts_file: Option<AbsolutePath>,
}

/// The `network` attribute set of a container file, normalized. Each value
/// is checked again here, as lib/spec.nix checked it: a spec comes from a
/// container file, which may be anyone's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkSpec {
    pub bridge: Option<InterfaceName>,
    pub ip: Option<Ipv4Addr>,
    pub prefix_length: Option<PrefixLength>,
    pub gateway: Option<Ipv4Addr>,
    pub enable_nat: bool,
    /// The containers it may reach, and be reached by, where they name it too.
    #[serde(default)]
    pub peers: Vec<ContainerName>,
}

/// The container's interface on its main bridge (called `hostonly` inside,
/// whichever bridge it is on).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostonlyInterface {
    pub bridge: InterfaceName,
    pub address: Ipv4Addr,
    pub prefix_length: PrefixLength,
    pub broadcast: Ipv4Addr,
    pub gateway: Option<Ipv4Addr>,
    /// The host's end of the veth (network::port_name); none in generations
    /// made before ports had names.
    #[serde(default)]
    pub port: Option<InterfaceName>,
    /// Its MAC address (network::mac_address); none in generations made
    /// before addresses were fixed.
    #[serde(default)]
    pub hwaddr: Option<String>,
}

/// The container's NATed interface (called `internet` inside); addressed by DHCP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InternetInterface {
    pub bridge: InterfaceName,
    /// The host's end of the veth, as `HostonlyInterface::port`.
    #[serde(default)]
    pub port: Option<InterfaceName>,
    /// Its MAC address, as `HostonlyInterface::hwaddr`.
    #[serde(default)]
    pub hwaddr: Option<String>,
    /// The address DHCP gives it (state.rs: `internet_ip`); none in
    /// generations made before addresses were pinned.
    #[serde(default)]
    pub address: Option<Ipv4Addr>,
}

/// A subnet on a host bridge, given by the host's own address in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostAddress {
    pub address: Ipv4Addr,
    pub prefix_length: PrefixLength,
}

impl HostAddress {
    pub fn subnet(&self) -> Ipv4Net {
        Ipv4Net::new(self.address, self.prefix_length.get())
            .expect("a PrefixLength is a valid IPv4 prefix length")
            .trunc()
    }
}

/// One of the host's two bridges, and the host's address on it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostBridge {
    pub bridge: InterfaceName,
    pub address: Ipv4Addr,
    pub prefix_length: PrefixLength,
}

impl HostBridge {
    pub fn host(&self) -> HostAddress {
        HostAddress { address: self.address, prefix_length: self.prefix_length }
    }
}

/// An IPv6 prefix of 64 to 112 bits (the NixOS module's ipv6.ipv6Prefix and
/// ipv6PrefixLength): DHCPv6 leases take the last 16 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Ipv6Prefix {
    pub prefix: Ipv6Addr,
    pub prefix_length: u8,
}

/// A network containers' forwarded traffic may reach (`allowedEgress`): on
/// the TCP and UDP ports of `ports`, or, where it names none, all of it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AllowedEgress {
    pub network: Network,
    #[serde(default)]
    pub ports: Vec<PortRange>,
}

/// An IPv4 or IPv6 network, "192.168.1.0/24" or "fd00::/8", without bits
/// set beyond its prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Network(pub IpNet);

impl TryFrom<String> for Network {
    type Error = String;

    fn try_from(text: String) -> Result<Network, String> {
        let network: IpNet = text.parse().map_err(|_| {
            format!("{} is not a network like 192.168.1.0/24 or fd00::/8", show(&text))
        })?;
        if network.trunc() != network {
            return Err(format!("{text} has bits set beyond its prefix: {}?", network.trunc()));
        }
        Ok(Network(network))
    }
}
