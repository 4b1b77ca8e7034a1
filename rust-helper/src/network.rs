//! From a container file's `network` to the container's interfaces, and the
//! allocation of hostonly addresses. Pure: the state file (state.rs) knows
//! which addresses are taken.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use anyhow::{bail, Result};
use ipnet::Ipv4Net;

use crate::settings::HostConfig;
use crate::spec::{HostonlyInterface, InternetInterface, NetworkSpec};

/// The address a spec asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wanted {
    /// Allocated from the hostonly subnet, fixed for the container's life.
    Automatic,
    /// `network.ip`.
    Static(Ipv4Addr),
}

/// The bridge the container's `hostonly` interface joins.
pub fn bridge<'a>(spec: &'a NetworkSpec, host: &'a HostConfig) -> &'a str {
    spec.bridge.as_deref().unwrap_or(&host.hostonly.bridge)
}

fn parse_ipv4(what: &str, text: &str) -> Result<Ipv4Addr> {
    match text.parse() {
        Ok(address) => Ok(address),
        Err(_) => bail!("{what} {text:?} is not an IPv4 address like 10.101.0.5"),
    }
}

/// What address the spec asks for, checked against the bridge it is on.
pub fn wanted(spec: &NetworkSpec, host: &HostConfig) -> Result<Wanted> {
    let on_hostonly = bridge(spec, host) == host.hostonly.bridge;
    let Some(text) = &spec.ip else {
        if !on_hostonly {
            bail!(
                "network.bridge {:?} needs a network.ip: addresses are allocated only on {}",
                bridge(spec, host),
                host.hostonly.bridge
            );
        }
        return Ok(Wanted::Automatic);
    };
    let address = parse_ipv4("network.ip", text)?;
    if on_hostonly {
        let subnet = hostonly_subnet(host);
        if !subnet.contains(&address) {
            bail!("network.ip {address} is outside {}'s subnet {subnet}", host.hostonly.bridge);
        }
        if address == subnet.network() || address == subnet.broadcast() {
            bail!("network.ip {address} is the network or broadcast address of {subnet}");
        }
        if address == host.hostonly.address {
            bail!("network.ip {address} is the host's own address on {}", host.hostonly.bridge);
        }
    }
    Ok(Wanted::Static(address))
}

/// The container's interfaces once its address is known.
pub fn interfaces(
    spec: &NetworkSpec,
    host: &HostConfig,
    address: Ipv4Addr,
) -> Result<(HostonlyInterface, Option<InternetInterface>)> {
    let bridge = bridge(spec, host).to_string();
    let on_hostonly = bridge == host.hostonly.bridge;
    let prefix_length = spec.prefix_length.unwrap_or(host.hostonly.prefix_length);
    let Ok(net) = Ipv4Net::new(address, prefix_length) else {
        bail!("network.prefixLength {prefix_length} is not an IPv4 prefix length (0 to 32)");
    };
    // The hostonly network is never a way out: with NAT the default route is
    // the internet interface's (by DHCP), without it the host's address.
    let gateway = match &spec.gateway {
        Some(text) => Some(parse_ipv4("network.gateway", text)?),
        None if on_hostonly && !spec.enable_nat => Some(host.hostonly.address),
        None => None,
    };
    let hostonly =
        HostonlyInterface { bridge, address, prefix_length, broadcast: net.broadcast(), gateway };
    let internet =
        spec.enable_nat.then(|| InternetInterface { bridge: host.internet.bridge.clone() });
    Ok((hostonly, internet))
}

pub fn hostonly_subnet(host: &HostConfig) -> Ipv4Net {
    Ipv4Net::new(host.hostonly.address, host.hostonly.prefix_length)
        .map(|net| net.trunc())
        .unwrap_or_else(|_| Ipv4Net::default())
}

/// The first free address of the hostonly subnet, counting up from the one
/// after the network address and skipping the host's own.
pub fn first_free(host: &HostConfig, taken: &BTreeSet<Ipv4Addr>) -> Option<Ipv4Addr> {
    hostonly_subnet(host)
        .hosts()
        .find(|candidate| *candidate != host.hostonly.address && !taken.contains(candidate))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn host() -> HostConfig {
        HostConfig::load(Path::new("/nonexistent")).unwrap()
    }

    fn spec(ip: Option<&str>, bridge: Option<&str>, nat: bool) -> NetworkSpec {
        NetworkSpec {
            bridge: bridge.map(str::to_string),
            ip: ip.map(str::to_string),
            prefix_length: None,
            gateway: None,
            enable_nat: nat,
        }
    }

    #[test]
    fn allocation_starts_after_the_host_and_fills_gaps() {
        let host = host();
        let mut taken = BTreeSet::new();
        assert_eq!(first_free(&host, &taken), Some(Ipv4Addr::new(10, 101, 0, 2)));
        taken.insert(Ipv4Addr::new(10, 101, 0, 2));
        taken.insert(Ipv4Addr::new(10, 101, 0, 4));
        assert_eq!(first_free(&host, &taken), Some(Ipv4Addr::new(10, 101, 0, 3)));
        taken.insert(Ipv4Addr::new(10, 101, 0, 3));
        assert_eq!(first_free(&host, &taken), Some(Ipv4Addr::new(10, 101, 0, 5)));
    }

    #[test]
    fn a_full_subnet_has_no_free_address() {
        let mut host = host();
        host.hostonly.prefix_length = 29; // .1 is the host; .2 to .6 for containers
        let taken: BTreeSet<_> = (2..=6).map(|i| Ipv4Addr::new(10, 101, 0, i)).collect();
        assert_eq!(first_free(&host, &taken), None);
    }

    #[test]
    fn static_addresses_on_hostonly_must_fit_its_subnet() {
        let host = host();
        assert_eq!(
            wanted(&spec(Some("10.101.7.9"), None, false), &host).unwrap(),
            Wanted::Static(Ipv4Addr::new(10, 101, 7, 9))
        );
        for bad in ["10.102.0.2", "10.101.0.1", "10.101.0.0", "10.101.255.255", "10.101.0", "x"] {
            assert!(wanted(&spec(Some(bad), None, false), &host).is_err(), "{bad}");
        }
    }

    #[test]
    fn own_bridges_take_any_address_but_need_one() {
        let host = host();
        let own = spec(Some("10.10.1.2"), Some("myOwnBridge"), false);
        assert_eq!(wanted(&own, &host).unwrap(), Wanted::Static(Ipv4Addr::new(10, 10, 1, 2)));
        assert!(wanted(&spec(None, Some("myOwnBridge"), false), &host).is_err());
    }

    #[test]
    fn gateway_is_the_host_only_without_nat_on_hostonly() {
        let host = host();
        let address = Ipv4Addr::new(10, 101, 0, 2);
        let (plain, internet) = interfaces(&spec(None, None, false), &host, address).unwrap();
        assert_eq!(plain.gateway, Some(Ipv4Addr::new(10, 101, 0, 1)));
        assert_eq!(plain.broadcast, Ipv4Addr::new(10, 101, 255, 255));
        assert_eq!(internet, None);

        let (natted, internet) = interfaces(&spec(None, None, true), &host, address).unwrap();
        assert_eq!(natted.gateway, None);
        assert_eq!(internet.unwrap().bridge, "brNC-internet");

        let own = spec(Some("10.10.1.2"), Some("myOwnBridge"), false);
        let (custom, _) = interfaces(&own, &host, Ipv4Addr::new(10, 10, 1, 2)).unwrap();
        assert_eq!((custom.bridge.as_str(), custom.gateway), ("myOwnBridge", None));
        assert_eq!(custom.broadcast, Ipv4Addr::new(10, 10, 255, 255));
    }
}
