//! The few netlink requests the build network needs (build_network.rs),
//! made in this process: a veth pair, addresses, a route and routing rules
//! (rtnetlink), and whether an nftables table exists (nfnetlink). Running
//! `ip` and `nft` for them costs milliseconds per command; this costs
//! microseconds. The numbers are the kernel's (include/uapi/linux/*.h).

// What the bench's build without the build network leaves unused.
#![cfg_attr(feature = "bench-without-build-network", allow(dead_code))]

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};

use anyhow::{bail, Context, Result};

// linux/netlink.h
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const NLMSG_ERROR: u16 = 0x2;
const NLMSG_DONE: u16 = 0x3;
// linux/rtnetlink.h
const RTM_NEWLINK: u16 = 16;
const RTM_NEWADDR: u16 = 20;
const RTM_NEWROUTE: u16 = 24;
const RTM_NEWRULE: u16 = 32;
const RTM_DELRULE: u16 = 33;
const RTA_GATEWAY: u16 = 5;
const RTA_OIF: u16 = 4;
const RT_TABLE_MAIN: u8 = 254;
const RT_TABLE_LOCAL: u8 = 255;
const RTPROT_STATIC: u8 = 4;
const RTN_UNICAST: u8 = 1;
// linux/if_link.h, linux/veth.h, linux/if_addr.h
const IFLA_IFNAME: u16 = 3;
const IFLA_LINKINFO: u16 = 18;
const IFLA_NET_NS_FD: u16 = 28;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const VETH_INFO_PEER: u16 = 1;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFF_UP: u32 = 0x1;
// linux/fib_rules.h
const FRA_DST: u16 = 1;
const FRA_PRIORITY: u16 = 6;
const FRA_TABLE: u16 = 15;
const FRA_UID_RANGE: u16 = 20;
const FRA_IP_PROTO: u16 = 22;
const FRA_DPORT_RANGE: u16 = 24;
const FR_ACT_TO_TBL: u8 = 1;
const FR_ACT_PROHIBIT: u8 = 8;
// linux/netfilter/nfnetlink.h, linux/netfilter/nf_tables.h
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_GETTABLE: u16 = 1;
const NFTA_TABLE_NAME: u16 = 1;

/// A routing rule (`ip rule`) for IPv4 traffic of the namespace it is made
/// in: what it matches and what it does with it.
#[derive(Debug)]
pub struct Rule {
    pub priority: u32,
    /// Destinations: a network and its prefix length; None: any.
    pub to: Option<(Ipv4Addr, u8)>,
    /// Sockets of these uids, both included; None: any.
    pub uids: Option<(u32, u32)>,
    /// IP protocol (6 TCP, 17 UDP) and destination port; None: any.
    pub port: Option<(u8, u16)>,
    pub verdict: Verdict,
}

/// What a routing rule does with what it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Refused: the connection fails with "permission denied" (EACCES).
    Refuse,
    /// Routed by the main table.
    Main,
    /// Delivered by the local table: the namespace's own addresses.
    Local,
}

/// A netlink socket of the network namespace of the thread that opened it.
pub struct Socket {
    fd: OwnedFd,
    sequence: u32,
}

impl Socket {
    /// Routing: links, addresses, routes, rules.
    pub fn route() -> Result<Socket> {
        Socket::open(None) // NETLINK_ROUTE is protocol 0
    }

    /// nftables.
    pub fn netfilter() -> Result<Socket> {
        Socket::open(Some(rustix::net::netlink::NETFILTER))
    }

    fn open(protocol: Option<rustix::net::Protocol>) -> Result<Socket> {
        use rustix::net::{AddressFamily, SocketFlags, SocketType};
        let fd = rustix::net::socket_with(
            AddressFamily::NETLINK,
            SocketType::RAW,
            SocketFlags::CLOEXEC,
            protocol,
        )
        .context("cannot open a netlink socket")?;
        Ok(Socket { fd, sequence: 0 })
    }

    /// Sets the flags of link `index` to up (index 1 is `lo` in a new
    /// namespace).
    pub fn set_up(&mut self, index: u32) -> Result<()> {
        let mut message = Message::new(RTM_NEWLINK, 0);
        message.link_header(index, IFF_UP);
        self.request(message).with_context(|| format!("cannot set link {index} up"))
    }

    /// Makes a veth pair: `name` here, up, and `peer` in the network
    /// namespace `namespace`, down (the kernel cannot open it before its
    /// pair is complete: set it up there). Ok(false) when a link called
    /// `name` exists.
    pub fn add_veth(&mut self, name: &str, peer: &str, namespace: &OwnedFd) -> Result<bool> {
        let mut message = Message::new(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
        message.link_header(0, IFF_UP);
        message.string(IFLA_IFNAME, name);
        let info = message.begin(IFLA_LINKINFO);
        message.string(IFLA_INFO_KIND, "veth");
        let data = message.begin(IFLA_INFO_DATA);
        let peer_info = message.begin(VETH_INFO_PEER);
        message.link_header(0, 0);
        message.string(IFLA_IFNAME, peer);
        let fd = u32::try_from(namespace.as_raw_fd()).expect("descriptors are not negative");
        message.attribute(IFLA_NET_NS_FD, &fd.to_ne_bytes());
        message.end(peer_info);
        message.end(data);
        message.end(info);
        match self.request(message) {
            Err(err) if errno_of(&err) == Some(libc::EEXIST) => Ok(false),
            other => other.map(|()| true).with_context(|| format!("cannot create veth {name}")),
        }
    }

    /// Gives link `index` the address `address`/`prefix_length`.
    pub fn add_address(&mut self, index: u32, address: Ipv4Addr, prefix_length: u8) -> Result<()> {
        let mut message = Message::new(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL);
        // struct ifaddrmsg: family, prefix length, flags, scope, index.
        message.bytes(&[libc::AF_INET as u8, prefix_length, 0, 0]);
        message.bytes(&index.to_ne_bytes());
        message.attribute(IFA_LOCAL, &address.octets());
        message.attribute(IFA_ADDRESS, &address.octets());
        self.request(message).with_context(|| format!("cannot add address {address}"))
    }

    /// Routes everything through `gateway` on link `index`.
    pub fn add_default_route(&mut self, index: u32, gateway: Ipv4Addr) -> Result<()> {
        let mut message = Message::new(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL);
        // struct rtmsg: family, dst_len, src_len, tos, table, protocol,
        // scope (universe), type; flags.
        message.bytes(&[
            libc::AF_INET as u8,
            0,
            0,
            0,
            RT_TABLE_MAIN,
            RTPROT_STATIC,
            0,
            RTN_UNICAST,
        ]);
        message.bytes(&0u32.to_ne_bytes());
        message.attribute(RTA_GATEWAY, &gateway.octets());
        message.attribute(RTA_OIF, &index.to_ne_bytes());
        self.request(message).with_context(|| format!("cannot route through {gateway}"))
    }

    /// Adds routing rule `rule`.
    pub fn add_rule(&mut self, rule: &Rule) -> Result<()> {
        let message = rule_message(RTM_NEWRULE, NLM_F_CREATE, rule);
        self.request(message).context("cannot add a routing rule")
    }

    /// Deletes routing rule `rule`.
    pub fn delete_rule(&mut self, rule: &Rule) -> Result<()> {
        let message = rule_message(RTM_DELRULE, 0, rule);
        self.request(message).context("cannot delete a routing rule")
    }

    /// What the kernel tells of nftables table `name` of `family` (an
    /// NFPROTO_* number, nfgenmsg's family), its comment among it; None
    /// where there is no such table. One request (NFT_MSG_GETTABLE),
    /// answered in microseconds where `nft list` would cost a process.
    pub fn nft_table(&mut self, family: u8, name: &str) -> Result<Option<Vec<u8>>> {
        let mut message = Message::new((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETTABLE, 0);
        // struct nfgenmsg: family, version, resource id (big endian).
        message.bytes(&[family, 0, 0, 0]);
        message.string(NFTA_TABLE_NAME, name);
        let mut found = None;
        let result = self.exchange(message, |payload| found = Some(payload.to_vec()));
        match result {
            Ok(()) => Ok(found),
            Err(err) if errno_of(&err) == Some(libc::ENOENT) => Ok(None),
            Err(err) => Err(err).with_context(|| format!("cannot ask nftables for table {name}")),
        }
    }

    /// Sends `message` and waits for the kernel's acknowledgement.
    fn request(&mut self, message: Message) -> Result<()> {
        self.exchange(message, |_| {})
    }

    /// Sends `message`, hands each reply's payload to `on_reply` and
    /// returns the kernel's verdict on the request.
    fn exchange(&mut self, mut message: Message, mut on_reply: impl FnMut(&[u8])) -> Result<()> {
        self.sequence += 1;
        let bytes = message.finish(self.sequence);
        let kernel = rustix::net::netlink::SocketAddrNetlink::new(0, 0);
        rustix::net::sendto(&self.fd, bytes, rustix::net::SendFlags::empty(), &kernel)?;
        let mut buffer = vec![0u8; 32 * 1024];
        loop {
            let (received, _) =
                rustix::net::recv(&self.fd, &mut buffer[..], rustix::net::RecvFlags::empty())?;
            let mut rest = &buffer[..received.min(buffer.len())];
            while rest.len() >= 16 {
                let length = u32::from_ne_bytes(rest[0..4].try_into().unwrap()) as usize;
                let kind = u16::from_ne_bytes(rest[4..6].try_into().unwrap());
                let sequence = u32::from_ne_bytes(rest[8..12].try_into().unwrap());
                if length < 16 || length > rest.len() {
                    bail!("the kernel sent a netlink message this helper cannot read");
                }
                let payload = &rest[16..length];
                rest = &rest[align(length).min(rest.len())..];
                if sequence != self.sequence {
                    continue;
                }
                match kind {
                    NLMSG_ERROR => {
                        let code = i32::from_ne_bytes(
                            payload.get(0..4).context("a short netlink error")?.try_into().unwrap(),
                        );
                        return match code {
                            0 => Ok(()),
                            code => Err(io::Error::from_raw_os_error(-code).into()),
                        };
                    }
                    NLMSG_DONE => return Ok(()),
                    _ => on_reply(payload),
                }
            }
        }
    }
}

/// The request for routing rule `rule`.
fn rule_message(kind: u16, flags: u16, rule: &Rule) -> Message {
    let mut message = Message::new(kind, flags);
    let (action, table) = match rule.verdict {
        Verdict::Refuse => (FR_ACT_PROHIBIT, 0),
        Verdict::Main => (FR_ACT_TO_TBL, RT_TABLE_MAIN),
        Verdict::Local => (FR_ACT_TO_TBL, RT_TABLE_LOCAL),
    };
    let prefix_length = rule.to.map_or(0, |(_, length)| length);
    // struct fib_rule_hdr: family, dst_len, src_len, tos, table, two
    // reserved bytes, action; flags.
    message.bytes(&[libc::AF_INET as u8, prefix_length, 0, 0, table, 0, 0, action]);
    message.bytes(&0u32.to_ne_bytes());
    message.attribute(FRA_PRIORITY, &rule.priority.to_ne_bytes());
    if table != 0 {
        message.attribute(FRA_TABLE, &u32::from(table).to_ne_bytes());
    }
    if let Some((network, _)) = rule.to {
        message.attribute(FRA_DST, &network.octets());
    }
    if let Some((first, last)) = rule.uids {
        let range = [first.to_ne_bytes(), last.to_ne_bytes()].concat();
        message.attribute(FRA_UID_RANGE, &range);
    }
    if let Some((protocol, port)) = rule.port {
        message.attribute(FRA_IP_PROTO, &[protocol]);
        message.attribute(FRA_DPORT_RANGE, &[port.to_ne_bytes(), port.to_ne_bytes()].concat());
    }
    message
}

/// The errno behind a failed request, if that is what failed.
fn errno_of(err: &anyhow::Error) -> Option<i32> {
    err.downcast_ref::<io::Error>().and_then(io::Error::raw_os_error)
}

/// Netlink aligns messages and attributes to 4 bytes.
fn align(length: usize) -> usize {
    length.div_ceil(4) * 4
}

/// A netlink request being written: its header, its fixed part and its
/// attributes, nested ones included.
struct Message {
    bytes: Vec<u8>,
}

impl Message {
    fn new(kind: u16, flags: u16) -> Message {
        let mut bytes = vec![0u8; 16];
        bytes[4..6].copy_from_slice(&kind.to_ne_bytes());
        bytes[6..8].copy_from_slice(&(flags | NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
        Message { bytes }
    }

    fn bytes(&mut self, bytes: &[u8]) {
        self.bytes.extend_from_slice(bytes);
    }

    /// struct ifinfomsg for link `index` (0: a new one), with `flags` set.
    fn link_header(&mut self, index: u32, flags: u32) {
        // family, padding, type (two bytes), index, flags, change.
        self.bytes(&[libc::AF_UNSPEC as u8, 0, 0, 0]);
        self.bytes(&index.to_ne_bytes());
        self.bytes(&flags.to_ne_bytes());
        self.bytes(&flags.to_ne_bytes());
    }

    fn attribute(&mut self, kind: u16, value: &[u8]) {
        let length = u16::try_from(4 + value.len()).expect("attributes are small");
        self.bytes(&length.to_ne_bytes());
        self.bytes(&kind.to_ne_bytes());
        self.bytes(value);
        self.bytes.resize(align(self.bytes.len()), 0);
    }

    fn string(&mut self, kind: u16, value: &str) {
        let mut bytes = value.as_bytes().to_vec();
        bytes.push(0);
        self.attribute(kind, &bytes);
    }

    /// Starts a nested attribute; `end` with what this returns closes it.
    fn begin(&mut self, kind: u16) -> usize {
        let start = self.bytes.len();
        self.bytes(&[0, 0]);
        self.bytes(&kind.to_ne_bytes());
        start
    }

    fn end(&mut self, start: usize) {
        let length = u16::try_from(self.bytes.len() - start).expect("attributes are small");
        self.bytes[start..start + 2].copy_from_slice(&length.to_ne_bytes());
    }

    fn finish(&mut self, sequence: u32) -> &[u8] {
        let length = u32::try_from(self.bytes.len()).expect("messages are small");
        self.bytes[0..4].copy_from_slice(&length.to_ne_bytes());
        self.bytes[8..12].copy_from_slice(&sequence.to_ne_bytes());
        &self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_attributes_have_their_lengths_and_are_aligned() {
        let mut message = Message::new(RTM_NEWLINK, 0);
        let outer = message.begin(IFLA_LINKINFO);
        message.string(IFLA_INFO_KIND, "veth");
        message.end(outer);
        let bytes = message.finish(7).to_vec();
        assert_eq!(bytes.len(), 16 + 4 + 12);
        assert_eq!(u32::from_ne_bytes(bytes[0..4].try_into().unwrap()), 32);
        assert_eq!(u32::from_ne_bytes(bytes[8..12].try_into().unwrap()), 7);
        // The nested attribute spans its child: "veth\0" padded to 8.
        assert_eq!(u16::from_ne_bytes(bytes[16..18].try_into().unwrap()), 16);
        assert_eq!(u16::from_ne_bytes(bytes[20..22].try_into().unwrap()), 9);
        assert_eq!(&bytes[24..29], b"veth\0");
    }
}
