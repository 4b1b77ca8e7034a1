//! Forwarded ports' part of a container file (`forwardPorts`) and of the
//! host file (`allowedForwardPorts`): their types, each value checked as
//! it is read.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

/// A host port forwarded to a port of the container (`forwardPorts`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ForwardPort {
    pub protocol: Protocol,
    pub host_port: Port,
    pub container_port: Port,
    /// Only connections to this host address (default: any).
    pub host_address: Option<ForwardAddress>,
}

/// The host address a forward takes connections to: one that connections to
/// the host can come to, as lib/spec.nix's `forwardAddress` checks it. The
/// DNAT rules match only the host's own addresses; connections to
/// loopback's are never routed to a container, and 0.0.0.0/8, multicast and
/// the broadcast address are no host's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "Ipv4Addr", into = "Ipv4Addr")]
pub struct ForwardAddress(Ipv4Addr);

impl TryFrom<Ipv4Addr> for ForwardAddress {
    type Error = String;

    fn try_from(address: Ipv4Addr) -> Result<ForwardAddress, String> {
        if address.octets()[0] == 0
            || address.is_loopback()
            || address.is_multicast()
            || address.is_broadcast()
        {
            Err(format!(
                "{address} is not an IPv4 address of this host that connections can come to, like \
                 192.0.2.1 (not 0.0.0.0/8, loopback 127.0.0.0/8, multicast 224.0.0.0/4 or \
                 255.255.255.255)"
            ))
        } else {
            Ok(ForwardAddress(address))
        }
    }
}

impl From<ForwardAddress> for Ipv4Addr {
    fn from(address: ForwardAddress) -> Ipv4Addr {
        address.0
    }
}

impl std::fmt::Display for ForwardAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

/// A TCP or UDP port: 1 to 65535.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u16", into = "u16")]
pub struct Port(pub u16);

impl TryFrom<u16> for Port {
    type Error = String;

    fn try_from(value: u16) -> Result<Port, String> {
        if value == 0 {
            Err("0 is not a port".to_string())
        } else {
            Ok(Port(value))
        }
    }
}

impl From<Port> for u16 {
    fn from(port: Port) -> u16 {
        port.0
    }
}

/// Host ports from `from` to `to`, both included (`allowedForwardPorts`).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortRange {
    pub from: Port,
    pub to: Port,
}

impl PortRange {
    pub fn contains(&self, port: Port) -> bool {
        (self.from..=self.to).contains(&port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forward_takes_only_addresses_connections_can_come_to() {
        let forward = |address: &str| {
            serde_json::from_str::<ForwardPort>(&format!(
                r#"{{"protocol":"tcp","hostPort":80,"containerPort":80,"hostAddress":"{address}"}}"#
            ))
        };
        for good in ["192.0.2.1", "10.101.0.1", "1.0.0.0", "223.255.255.255", "240.0.0.1"] {
            let forward = forward(good).unwrap();
            assert_eq!(forward.host_address.unwrap().to_string(), good);
        }
        for bad in [
            "127.0.0.1",
            "127.255.0.9",
            "0.0.0.0",
            "0.1.2.3",
            "224.0.0.1",
            "239.1.1.1",
            "255.255.255.255",
        ] {
            let err = forward(bad).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("{bad} is not an IPv4 address of this host")),
                "{err}"
            );
        }
    }
}
