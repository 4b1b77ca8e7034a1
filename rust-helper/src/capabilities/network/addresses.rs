//! From a container file's `network` to the container's interfaces, and the
//! allocation of hostonly addresses. Pure: the state file (state.rs) knows
//! which addresses are taken.
//!
//! A container file may come from someone who is not root, so it joins only
//! the bridges the host names (the hostonly bridge, and `extraBridges` of the
//! host file), by the exact name the host gives them, and only with an
//! address that is a container's address in that bridge's subnet.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, Ipv6Addr};

use anyhow::{bail, Result};
use ipnet::Ipv4Net;

use super::types::{HostAddress, HostonlyInterface, InternetInterface, NetworkSpec};
use crate::formats::InterfaceName;
use crate::settings::HostConfig;
use crate::spec::Spec;
use crate::state::{Address, State};

/// The address a spec asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressRequest {
    /// One allocated from the hostonly subnet, fixed for the container's life.
    Allocate,
    /// `network.ip`.
    Fixed(Ipv4Addr),
}

/// The bridge a container's `hostonly` interface joins, as the host has it.
#[derive(Debug, Clone, Copy)]
pub struct Joined<'a> {
    pub bridge: &'a InterfaceName,
    /// The host's address on it, and so its subnet.
    pub host: HostAddress,
    pub is_hostonly: bool,
}

impl Joined<'_> {
    fn subnet(&self) -> Ipv4Net {
        self.host.subnet()
    }
}

/// The bridge `network.bridge` names (the hostonly bridge without it), if
/// the host lets containers join it.
pub fn joined<'a>(spec: &NetworkSpec, host: &'a HostConfig) -> Result<Joined<'a>> {
    let hostonly =
        Joined { bridge: &host.hostonly.bridge, host: host.hostonly.host(), is_hostonly: true };
    let Some(named) = &spec.bridge else {
        return Ok(hostonly);
    };
    if named == &host.hostonly.bridge {
        return Ok(hostonly);
    }
    if let Some((bridge, address)) = host.extra_bridges.get_key_value(named) {
        return Ok(Joined { bridge, host: *address, is_hostonly: false });
    }
    if named == &host.internet.bridge {
        bail!(
            "network.bridge {named} is the internet bridge, which containers join with \
             network.enableNat = true"
        );
    }
    bail!(
        "network.bridge {named} is not a bridge this host lets containers join: add it to \
         nixcloud.containers.extraBridges (or to extraBridges in the host file)"
    )
}

/// Refuses an address that is not a container's address in `joined`'s
/// subnet: outside it, its network or broadcast address, or the host's.
fn check_container_address(what: &str, address: Ipv4Addr, joined: &Joined) -> Result<()> {
    let subnet = joined.subnet();
    if !subnet.contains(&address) {
        bail!("{what} {address} is outside {}'s subnet {subnet}", joined.bridge);
    }
    if address == subnet.network() || address == subnet.broadcast() {
        bail!("{what} {address} is the network or broadcast address of {subnet}");
    }
    if address == joined.host.address {
        bail!("{what} {address} is the host's own address on {}", joined.bridge);
    }
    Ok(())
}

/// What address the spec asks for, checked against the bridge it is on.
pub fn address_request(spec: &NetworkSpec, host: &HostConfig) -> Result<AddressRequest> {
    let joined = joined(spec, host)?;
    if let Some(length) = spec.prefix_length {
        if length != joined.host.prefix_length {
            bail!(
                "network.prefixLength {length} is not {}'s /{} (leave it out)",
                joined.bridge,
                joined.host.prefix_length
            );
        }
    }
    let Some(address) = spec.ip else {
        if !joined.is_hostonly {
            bail!(
                "network.bridge {} needs a network.ip: addresses are allocated only on {}",
                joined.bridge,
                host.hostonly.bridge
            );
        }
        return Ok(AddressRequest::Allocate);
    };
    check_container_address("network.ip", address, &joined)?;
    Ok(AddressRequest::Fixed(address))
}

/// The interfaces of container `name`, with `address` on its main bridge
/// and, where it has NAT, `internet_address` on the internet bridge.
pub fn interfaces(
    name: &str,
    spec: &NetworkSpec,
    host: &HostConfig,
    address: Ipv4Addr,
    internet_address: Option<Ipv4Addr>,
) -> Result<(HostonlyInterface, Option<InternetInterface>)> {
    let joined = joined(spec, host)?;
    let subnet = joined.subnet();
    // The hostonly network is never a way out: with NAT the default route is
    // the internet interface's (by DHCP), without it the host's address.
    let gateway = match spec.gateway {
        Some(gateway) => {
            if gateway == address {
                bail!("network.gateway {gateway} is the container's own address");
            }
            if !subnet.contains(&gateway)
                || gateway == subnet.network()
                || gateway == subnet.broadcast()
            {
                bail!(
                    "network.gateway {gateway} is not an address in {}'s subnet {subnet}",
                    joined.bridge
                );
            }
            Some(gateway)
        }
        None if joined.is_hostonly && !spec.enable_nat => Some(joined.host.address),
        None => None,
    };
    let hostonly = HostonlyInterface {
        bridge: joined.bridge.clone(),
        address,
        prefix_length: joined.host.prefix_length,
        broadcast: subnet.broadcast(),
        gateway,
        port: Some(port_name(name, Port::Hostonly)),
        hwaddr: Some(mac_address(name, Port::Hostonly)),
    };
    let internet = spec.enable_nat.then(|| InternetInterface {
        bridge: host.internet.bridge.clone(),
        port: Some(port_name(name, Port::Internet)),
        hwaddr: Some(mac_address(name, Port::Internet)),
        address: internet_address,
    });
    Ok((hostonly, internet))
}

/// The interfaces of container `name` (whose entry in `state` holds its
/// claims: `claim`, `claim_internet`) for `spec`.
pub fn interfaces_claimed(
    state: &State,
    host: &HostConfig,
    name: &str,
    spec: &Spec,
) -> Result<(HostonlyInterface, Option<InternetInterface>)> {
    let entry = &state.containers[name];
    let address = match address_request(&spec.network, host)? {
        AddressRequest::Fixed(ip) => ip,
        AddressRequest::Allocate => entry.automatic_ip.expect("its address was claimed"),
    };
    let internet = if spec.network.enable_nat { entry.internet_ip } else { None };
    interfaces(name, &spec.network, host, address, internet)
}

/// The global IPv6 addresses of the network namespace of process `pid` (a
/// container's init), as its /proc/<pid>/net/if_inet6 lists them.
pub fn global_ipv6_addresses(pid: u32) -> Vec<std::net::Ipv6Addr> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/net/if_inet6")).unwrap_or_default();
    text.lines().filter_map(global_ipv6_address).collect()
}

/// The address of one if_inet6 line ("<32 hex digits> <index> <prefix
/// length> <scope> <flags> <name>"), where it is global and usable (scope
/// 0, not failed duplicate address detection).
fn global_ipv6_address(line: &str) -> Option<std::net::Ipv6Addr> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let [address, _, _, scope, flags, _] = fields[..] else {
        return None;
    };
    const DAD_FAILED: u32 = 0x08;
    if u32::from_str_radix(scope, 16).ok()? != 0
        || u32::from_str_radix(flags, 16).ok()? & DAD_FAILED != 0
    {
        return None;
    }
    u128::from_str_radix(address, 16).ok().map(std::net::Ipv6Addr::from)
}

/// A container's two interfaces, as ports of the host's bridges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    Hostonly,
    Internet,
}

/// The host's end of container `name`'s veth `port`: "nc", nine characters
/// of a hash of the name (names are the same in any case) and 'h' or 'i', so
/// that it fits the 15 characters of an interface name and says whose it is
/// to `ip link` and to the bridge filter (rules.rs).
pub fn port_name(name: &str, port: Port) -> InterfaceName {
    let hash = name_hash(name);
    const DIGITS: &[u8; 32] = b"0123456789abcdefghijklmnopqrstuv";
    let mut text = String::from(PORT_PREFIX);
    for index in 0..9 {
        text.push(DIGITS[((hash >> (5 * index)) & 31) as usize] as char);
    }
    text.push(port.letter());
    InterfaceName::try_from(text).expect("a port name is an interface name")
}

/// The MAC address of container `name`'s interface `port`: the same at every
/// start (LXC would pick another each time, and the host's neighbours would
/// go on sending to the old one for seconds), locally administered.
pub fn mac_address(name: &str, port: Port) -> String {
    let hash = name_hash(&format!("{name}/{}", port.letter()));
    let bytes: Vec<String> =
        (0..5).map(|index| format!("{:02x}", (hash >> (8 * index)) & 0xff)).collect();
    format!("02:{}", bytes.join(":"))
}

/// A hash of a container's name: FNV-1a, then MurmurHash3's finalizer so that
/// every bit counts; stable across releases, as the names it makes must be.
fn name_hash(name: &str) -> u64 {
    let mut hash =
        name.to_ascii_lowercase().bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        });
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^ (hash >> 33)
}

impl Port {
    fn letter(self) -> char {
        match self {
            Port::Hostonly => 'h',
            Port::Internet => 'i',
        }
    }
}

/// How the host's ends of containers' veths begin.
pub const PORT_PREFIX: &str = "nc";

/// The IPv6 link-local address the kernel gives an interface with MAC
/// address `mac` (EUI-64, RFC 4291 appendix A: ff:fe in the middle, the
/// universal/local bit flipped), as long as the interface's addr_gen_mode is
/// the kernel's default (eui64). A NixOS guest keeps it: NixOS's dhcpcd.conf
/// (nixos/modules/services/networking/dhcpcd.nix) has no `slaac private`,
/// and the guest module sets no stable_secret.
pub fn link_local(mac: &str) -> Ipv6Addr {
    let bytes: Vec<u8> =
        mac.split(':').map(|byte| u8::from_str_radix(byte, 16).expect("a MAC address")).collect();
    let [a, b, c, d, e, f] = bytes[..] else {
        panic!("{mac} is not a MAC address");
    };
    let identifier = [a ^ 0x02, b, c, 0xff, 0xfe, d, e, f];
    let mut address = [0_u8; 16];
    address[..2].copy_from_slice(&[0xfe, 0x80]);
    address[8..].copy_from_slice(&identifier);
    Ipv6Addr::from(address)
}

/// The first free address of the internet bridge's subnet, for a
/// container's internet interface (DHCP hands it out, pinned to the
/// interface's MAC address): counting up from the one after the network
/// address, skipping the host's own.
pub fn first_free_internet(host: &HostConfig, taken: &BTreeSet<Ipv4Addr>) -> Option<Ipv4Addr> {
    host.internet
        .host()
        .subnet()
        .hosts()
        .find(|candidate| *candidate != host.internet.address && !taken.contains(candidate))
}

/// The IPv6 address DHCPv6 gives the container whose internet interface has
/// IPv4 address `ipv4`, where the host routes an IPv6 prefix to the internet
/// bridge: the prefix with the last 16 bits 0x1000 plus the IPv4 address's
/// place in its subnet, inside the range the NixOS module hands to dnsmasq
/// (<prefix>::1000 to <prefix>::ffff). None without a prefix, or for a
/// place beyond that range (more than 61,439 containers).
pub fn internet_ipv6(host: &HostConfig, ipv4: Ipv4Addr) -> Option<Ipv6Addr> {
    let prefix = host.internet_ipv6?;
    let place = u32::from(ipv4).checked_sub(u32::from(host.internet.host().subnet().network()))?;
    let low = u16::try_from(0x1000 + place).ok()?;
    let mut groups = prefix.prefix.segments();
    groups[7] = low;
    Some(Ipv6Addr::from(groups))
}

pub fn hostonly_subnet(host: &HostConfig) -> Ipv4Net {
    host.hostonly.host().subnet()
}

/// The first free address of the hostonly subnet, counting up from the one
/// after the network address and skipping the host's own.
pub fn first_free(host: &HostConfig, taken: &BTreeSet<Ipv4Addr>) -> Option<Ipv4Addr> {
    hostonly_subnet(host)
        .hosts()
        .find(|candidate| *candidate != host.hostonly.address && !taken.contains(candidate))
}

/// Makes `ip` container `name`'s allocated hostonly address (its entry
/// must exist) where the hostonly subnet could give it out and no other
/// container holds it: an imported container keeps the address it had.
/// Returns whether it did.
pub fn keep_allocated(state: &mut State, host: &HostConfig, name: &str, ip: Ipv4Addr) -> bool {
    let subnet = hostonly_subnet(host);
    let allocatable = subnet.contains(&ip)
        && ip != subnet.network()
        && ip != subnet.broadcast()
        && ip != host.hostonly.address
        && !taken_on(state, &host.hostonly.bridge).contains(&ip);
    if allocatable {
        state.containers.get_mut(name).expect("the entry exists").automatic_ip = Some(ip);
    }
    allocatable
}

/// Which container other than `except` holds `ip` on `bridge`.
fn holder<'a>(
    state: &'a State,
    bridge: &InterfaceName,
    ip: Ipv4Addr,
    except: &str,
) -> Option<&'a str> {
    state
        .containers
        .iter()
        .filter(|(name, _)| name.as_str() != except)
        .find(|(_, entry)| entry.addresses.iter().any(|a| &a.bridge == bridge && a.ip == ip))
        .map(|(name, _)| name.as_str())
}

/// Every address held on `bridge`.
fn taken_on(state: &State, bridge: &InterfaceName) -> BTreeSet<Ipv4Addr> {
    state
        .containers
        .values()
        .flat_map(|entry| entry.addresses.iter())
        .filter(|address| &address.bridge == bridge)
        .map(|address| address.ip)
        .collect()
}

/// Reserves the address `request` asks for on `bridge` for container
/// `name` (whose entry must exist) and returns it.
pub fn claim(
    state: &mut State,
    host: &HostConfig,
    name: &str,
    bridge: &InterfaceName,
    request: AddressRequest,
) -> Result<Ipv4Addr> {
    let ip = match request {
        AddressRequest::Fixed(ip) => {
            if let Some(holder) = holder(state, bridge, ip, name) {
                bail!("network.ip {ip} on {bridge} is already used by container '{holder}'");
            }
            ip
        }
        AddressRequest::Allocate => match state.containers[name].automatic_ip {
            Some(ip) => ip,
            None => {
                let taken = taken_on(state, &host.hostonly.bridge);
                let Some(ip) = first_free(host, &taken) else {
                    bail!(
                        "no free address left in {} ({}): destroy a container or give \
                         network.ip on another bridge",
                        hostonly_subnet(host),
                        host.hostonly.bridge
                    );
                };
                ip
            }
        },
    };
    let entry = state.containers.get_mut(name).expect("the entry exists");
    if request == AddressRequest::Allocate {
        entry.automatic_ip = Some(ip);
    }
    entry.addresses.insert(Address { bridge: bridge.clone(), ip });
    Ok(ip)
}

/// Gives container `name` (whose entry must exist) an address on the
/// internet bridge, the one it has if it has one, and returns it.
pub fn claim_internet(state: &mut State, host: &HostConfig, name: &str) -> Result<Ipv4Addr> {
    let ip = match state.containers[name].internet_ip {
        Some(ip) => ip,
        None => {
            let taken = taken_on(state, &host.internet.bridge);
            let Some(ip) = first_free_internet(host, &taken) else {
                bail!(
                    "no free address left in {} ({}) for the internet interface: destroy a \
                     container with network.enableNat",
                    host.internet.host().subnet(),
                    host.internet.bridge
                );
            };
            ip
        }
    };
    let entry = state.containers.get_mut(name).expect("the entry exists");
    entry.internet_ip = Some(ip);
    entry.addresses.insert(Address { bridge: host.internet.bridge.clone(), ip });
    Ok(ip)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::PrefixLength;

    fn host() -> HostConfig {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("host.json");
        std::fs::write(
            &file,
            r#"{"extraBridges": {"myOwnBridge": {"address": "10.10.0.1", "prefixLength": 16}}}"#,
        )
        .unwrap();
        HostConfig::load(&file).unwrap()
    }

    fn spec(ip: Option<&str>, bridge: Option<&str>, nat: bool) -> NetworkSpec {
        NetworkSpec {
            bridge: bridge.map(|b| InterfaceName::try_from(b.to_string()).unwrap()),
            ip: ip.map(|ip| ip.parse().unwrap()),
            prefix_length: None,
            gateway: None,
            enable_nat: nat,
            peers: Vec::new(),
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
        // .1 is the host; .2 to .6 for containers
        host.hostonly.prefix_length = PrefixLength::try_from(29).unwrap();
        let taken: BTreeSet<_> = (2..=6).map(|i| Ipv4Addr::new(10, 101, 0, i)).collect();
        assert_eq!(first_free(&host, &taken), None);
    }

    #[test]
    fn static_addresses_must_be_container_addresses_of_their_bridge() {
        let host = host();
        assert_eq!(
            address_request(&spec(Some("10.101.7.9"), None, false), &host).unwrap(),
            AddressRequest::Fixed(Ipv4Addr::new(10, 101, 7, 9))
        );
        assert_eq!(
            address_request(&spec(Some("10.101.0.255"), None, false), &host).unwrap(),
            AddressRequest::Fixed(Ipv4Addr::new(10, 101, 0, 255)),
            "a host address of the /16"
        );
        for bad in ["10.102.0.2", "10.101.0.1", "10.101.0.0", "10.101.255.255"] {
            assert!(address_request(&spec(Some(bad), None, false), &host).is_err(), "{bad}");
        }
        for bad in ["10.10.0.1", "10.10.0.0", "10.10.255.255", "10.11.0.2"] {
            let err =
                address_request(&spec(Some(bad), Some("myOwnBridge"), false), &host).unwrap_err();
            assert!(err.to_string().starts_with("network.ip"), "{bad}: {err}");
        }
    }

    #[test]
    fn a_prefix_length_other_than_the_bridges_is_refused() {
        let host = host();
        let mut narrow = spec(Some("10.101.0.255"), None, false);
        for length in [24, 30, 8] {
            narrow.prefix_length = Some(PrefixLength::try_from(length).unwrap());
            let err = address_request(&narrow, &host).unwrap_err();
            assert!(err.to_string().contains("is not brNC-hostonly's /16"), "{err}");
        }
        narrow.prefix_length = Some(PrefixLength::try_from(16).unwrap());
        assert!(address_request(&narrow, &host).is_ok());
    }

    #[test]
    fn only_bridges_the_host_names_can_be_joined() {
        let host = host();
        let own = spec(Some("10.10.1.2"), Some("myOwnBridge"), false);
        assert_eq!(
            address_request(&own, &host).unwrap(),
            AddressRequest::Fixed(Ipv4Addr::new(10, 10, 1, 2))
        );
        let err = address_request(&spec(None, Some("myOwnBridge"), false), &host).unwrap_err();
        assert!(err.to_string().contains("needs a network.ip"), "{err}");
        for (bridge, message) in [
            ("br0", "is not a bridge this host lets containers join"),
            ("myownbridge", "is not a bridge this host lets containers join"),
            ("brNC-internet", "is the internet bridge"),
        ] {
            let err =
                address_request(&spec(Some("10.10.1.2"), Some(bridge), false), &host).unwrap_err();
            assert!(err.to_string().contains(message), "{bridge}: {err}");
        }
        let hostonly = spec(None, Some("brNC-hostonly"), false);
        assert_eq!(address_request(&hostonly, &host).unwrap(), AddressRequest::Allocate);
    }

    #[test]
    fn gateway_is_the_host_only_without_nat_on_hostonly() {
        let host = host();
        let address = Ipv4Addr::new(10, 101, 0, 2);
        let (plain, internet) =
            interfaces("web", &spec(None, None, false), &host, address, None).unwrap();
        assert_eq!(plain.gateway, Some(Ipv4Addr::new(10, 101, 0, 1)));
        assert_eq!(plain.broadcast, Ipv4Addr::new(10, 101, 255, 255));
        assert_eq!(internet, None);

        let (natted, internet) =
            interfaces("web", &spec(None, None, true), &host, address, None).unwrap();
        assert_eq!(natted.gateway, None);
        assert_eq!(internet.unwrap().bridge.as_str(), "brNC-internet");

        let own = spec(Some("10.10.1.2"), Some("myOwnBridge"), false);
        let (custom, _) =
            interfaces("web", &own, &host, Ipv4Addr::new(10, 10, 1, 2), None).unwrap();
        assert_eq!((custom.bridge.as_str(), custom.gateway), ("myOwnBridge", None));
        assert_eq!(custom.broadcast, Ipv4Addr::new(10, 10, 255, 255));
    }

    #[test]
    fn a_gateway_must_be_another_address_of_the_subnet() {
        let host = host();
        let address = Ipv4Addr::new(10, 101, 0, 2);
        let mut with_gateway = spec(None, None, false);
        for bad in ["8.8.8.8", "10.101.0.0", "10.101.255.255", "10.101.0.2"] {
            with_gateway.gateway = Some(bad.parse().unwrap());
            let err = interfaces("web", &with_gateway, &host, address, None).unwrap_err();
            assert!(err.to_string().starts_with("network.gateway"), "{bad}: {err}");
        }
        with_gateway.gateway = Some("10.101.0.9".parse().unwrap());
        let (hostonly, _) = interfaces("web", &with_gateway, &host, address, None).unwrap();
        assert_eq!(hostonly.gateway, Some(Ipv4Addr::new(10, 101, 0, 9)));
    }

    /// lib/interface-names.json, which the host module reads to keep dhcpcd
    /// and NetworkManager off these links, names what this helper gives
    /// them: its prefixes are the helper's, and its example names are
    /// those the helper gives the example containers.
    #[test]
    fn interface_names_table_is_the_helpers() {
        let table: serde_json::Value =
            serde_json::from_str(include_str!("../../../../lib/interface-names.json")).unwrap();
        assert_eq!(table["containerPortPrefix"], PORT_PREFIX);
        assert_eq!(table["buildLinkPrefix"], crate::nix::build_network::LINK_PREFIX);
        let ports = table["examples"]["containerPorts"].as_object().unwrap();
        assert!(ports.len() >= 3);
        for (name, names) in ports {
            for (key, port) in [("hostonly", Port::Hostonly), ("internet", Port::Internet)] {
                assert_eq!(names[key], port_name(name, port).as_str(), "{name} {key}");
            }
        }
        for link in table["examples"]["buildLinks"].as_array().unwrap() {
            let link = link.as_str().unwrap();
            let slot = link.strip_prefix(crate::nix::build_network::LINK_PREFIX).unwrap();
            assert!(slot.parse::<u32>().is_ok(), "{link}");
        }
    }

    #[test]
    fn port_names_are_stable_short_and_the_same_in_any_case() {
        let web = port_name("web", Port::Hostonly);
        assert_eq!(web.as_str().len(), 12);
        assert!(web.as_str().starts_with("nc") && web.as_str().ends_with('h'));
        assert_eq!(port_name("WEB", Port::Hostonly), web);
        assert_eq!(port_name("web", Port::Internet).as_str()[..11], web.as_str()[..11]);
        assert_ne!(port_name("web2", Port::Hostonly), web);
        // What a release gave a container, every later release gives it.
        assert_eq!(web.as_str(), "nc9d9qbul6sh");
        assert_eq!(mac_address("Web", Port::Hostonly), mac_address("web", Port::Hostonly));
        assert_ne!(mac_address("web", Port::Internet), mac_address("web", Port::Hostonly));
        assert!(mac_address("web", Port::Hostonly).starts_with("02:"));
        assert_eq!(mac_address("web", Port::Hostonly).len(), 17);
    }

    #[test]
    fn link_local_addresses_are_the_kernels_eui64() {
        // As `ip -6 addr` showed it for a veth with this MAC address.
        assert_eq!(link_local("02:7c:e3:1a:5b:09").to_string(), "fe80::7c:e3ff:fe1a:5b09");
        assert_eq!(link_local("00:16:3e:00:00:01").to_string(), "fe80::216:3eff:fe00:1");
    }

    #[test]
    fn internet_addresses_are_allocated_apart_from_the_host() {
        let host = host();
        let mut taken = BTreeSet::new();
        assert_eq!(first_free_internet(&host, &taken), Some(Ipv4Addr::new(10, 202, 0, 2)));
        taken.insert(Ipv4Addr::new(10, 202, 0, 2));
        assert_eq!(first_free_internet(&host, &taken), Some(Ipv4Addr::new(10, 202, 0, 3)));
    }

    #[test]
    fn internet_ipv6_addresses_lie_in_the_dhcpv6_range() {
        let mut host = host();
        let ipv4 = Ipv4Addr::new(10, 202, 0, 2);
        assert_eq!(internet_ipv6(&host, ipv4), None, "no prefix, no address");
        host.internet_ipv6 = Some(crate::capabilities::network::types::Ipv6Prefix {
            prefix: "2a01:4f8:221:3744:4000::".parse().unwrap(),
            prefix_length: 66,
        });
        assert_eq!(internet_ipv6(&host, ipv4).unwrap().to_string(), "2a01:4f8:221:3744:4000::1002");
        let last = Ipv4Addr::new(10, 202, 0xef, 0xff);
        assert_eq!(internet_ipv6(&host, last).unwrap().to_string(), "2a01:4f8:221:3744:4000::ffff");
        assert_eq!(internet_ipv6(&host, Ipv4Addr::new(10, 202, 0xf0, 0)), None);
    }

    #[test]
    fn only_global_ipv6_addresses_are_shown() {
        let lines = "fe800000000000000076a9fffe1383dc 02 40 20 80 hostonly\n\
                     00000000000000000000000000000001 01 80 10 80       lo\n\
                     20010db8000000000000000000000005 02 40 00 c0 hostonly\n\
                     20010db8000000000000000000000006 02 40 00 88 internet\n";
        let found: Vec<String> =
            lines.lines().filter_map(global_ipv6_address).map(|a| a.to_string()).collect();
        assert_eq!(found, ["2001:db8::5"]);
    }

    fn bridge(name: &str) -> InterfaceName {
        InterfaceName::try_from(name.to_string()).unwrap()
    }

    fn add(state: &mut State, name: &str) {
        state.containers.insert(
            name.to_string(),
            crate::state::ContainerRecord::new(
                crate::state::Phase::Creating,
                crate::spec::Source::File("/x.nix".into()),
            ),
        );
    }

    #[test]
    fn automatic_addresses_are_distinct_and_kept() {
        let host = host();
        let mut state = State::default();
        add(&mut state, "a");
        add(&mut state, "b");
        let a = claim(&mut state, &host, "a", &bridge("brNC-hostonly"), AddressRequest::Allocate)
            .unwrap();
        let b = claim(&mut state, &host, "b", &bridge("brNC-hostonly"), AddressRequest::Allocate)
            .unwrap();
        assert_eq!((a, b), (Ipv4Addr::new(10, 101, 0, 2), Ipv4Addr::new(10, 101, 0, 3)));
        assert_eq!(
            claim(&mut state, &host, "a", &bridge("brNC-hostonly"), AddressRequest::Allocate)
                .unwrap(),
            a
        );
    }

    #[test]
    fn internet_addresses_are_distinct_and_kept() {
        let host = host();
        let mut state = State::default();
        add(&mut state, "a");
        add(&mut state, "b");
        let a = claim_internet(&mut state, &host, "a").unwrap();
        let b = claim_internet(&mut state, &host, "b").unwrap();
        assert_eq!((a, b), (Ipv4Addr::new(10, 202, 0, 2), Ipv4Addr::new(10, 202, 0, 3)));
        assert_eq!(claim_internet(&mut state, &host, "a").unwrap(), a, "kept");
        assert!(state.containers["a"]
            .addresses
            .contains(&Address { bridge: bridge("brNC-internet"), ip: a }));
        // A hostonly address is no internet address: both start at .2.
        assert_eq!(
            claim(&mut state, &host, "a", &bridge("brNC-hostonly"), AddressRequest::Allocate)
                .unwrap(),
            Ipv4Addr::new(10, 101, 0, 2)
        );
    }

    #[test]
    fn static_addresses_collide_per_bridge() {
        let host = host();
        let mut state = State::default();
        add(&mut state, "a");
        add(&mut state, "b");
        let ip = Ipv4Addr::new(10, 101, 0, 2);
        claim(&mut state, &host, "a", &bridge("brNC-hostonly"), AddressRequest::Allocate).unwrap();
        let err =
            claim(&mut state, &host, "b", &bridge("brNC-hostonly"), AddressRequest::Fixed(ip))
                .unwrap_err();
        assert!(err.to_string().contains("already used by container 'a'"), "{err}");
        assert!(claim(&mut state, &host, "b", &bridge("other"), AddressRequest::Fixed(ip)).is_ok());
        // Automatic allocation skips static addresses.
        add(&mut state, "c");
        claim(
            &mut state,
            &host,
            "c",
            &bridge("brNC-hostonly"),
            AddressRequest::Fixed(Ipv4Addr::new(10, 101, 0, 3)),
        )
        .unwrap();
        add(&mut state, "d");
        let d = claim(&mut state, &host, "d", &bridge("brNC-hostonly"), AddressRequest::Allocate)
            .unwrap();
        assert_eq!(d, Ipv4Addr::new(10, 101, 0, 4));
    }
}
