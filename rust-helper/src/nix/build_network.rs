//! The network of the Nix processes that evaluate and build container files.
//!
//! Nix gives fixed-output derivations (fetchers) the network of the Nix
//! process, sandbox or not, and the Nix process itself fetches a flake's
//! inputs: in the host's network namespace both would reach the host's
//! loopback, the containers' bridges and the host's private networks. So
//! this helper runs its Nix processes (nix/mod.rs: `Nix::confined`) in a network
//! namespace of its own, kept between commands (below), whose only way out is
//! a veth to the host with NAT:
//! - inside, routing rules refuse every private, loopback, link-local,
//!   multicast and reserved IPv4 destination and each of the host's own
//!   addresses (the connection fails at once with "permission denied"),
//!   except DNS to the host's name servers; IPv6 is off;
//! - sockets of the build users (any uid but root's: Nix's own process is
//!   root) are refused everything unless the host allows builds the
//!   internet (`builds.allowInternet`), so that by default only Nix itself
//!   reaches out, to substitute from binary caches and fetch flake inputs;
//! - on the host's side the table `ip nixcloud-container-builds`
//!   (lib/build-network.nft) NATs the namespaces' subnet and drops what
//!   they send to any of the host's addresses, including ones it gains
//!   later.
//!
//! The namespace is made once and kept between commands, bind-mounted at
//! `<state dir>/build-network/namespace` as `ip netns` keeps its: removing a
//! veth holds the kernel's routing lock for tens of milliseconds on a busy
//! host (grace periods), which a namespace per command would make every
//! next command wait for. It is made again where what it was made for
//! changes (the subnet, whether builds reach the internet, the name servers,
//! the host's addresses, the host's namespace). A helper in a mount
//! namespace of its own (`ip netns exec`, as the tests run it) keeps it only
//! for its own life: the mount goes with its mount namespace, the build
//! namespace and its veth with the mount.

// What the bench's build without the build network leaves unused.
#![cfg_attr(feature = "bench-without-build-network", allow(dead_code))]

use std::ffi::CString;
use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};

use crate::settings::{Builds, Settings};
use crate::system::netlink::{Rule, Socket, Verdict};
use crate::system::nft::{Family, NetworkLock, Table};
use crate::system::process::Namespace;

/// The host's table (its content: lib/build-network.nft).
const TABLE: Table = Table { family: Family::Ip, name: "nixcloud-container-builds" };
const TABLE_CONTENT: &str = include_str!("../../../lib/build-network.nft");
/// The host's ends of the veths: `nxcb<slot>`.
pub const LINK_PREFIX: &str = "nxcb";
/// The build namespace's end.
const INSIDE_LINK: &str = "host";

/// IPv4 destinations no Nix process of this helper reaches: this network,
/// private networks (RFC 1918), shared address space (RFC 6598), loopback,
/// link-local, IETF protocol assignments, benchmarking, multicast and the
/// reserved rest up to the broadcast address.
const REFUSED: [(Ipv4Addr, u8); 11] = [
    (Ipv4Addr::new(0, 0, 0, 0), 8),
    (Ipv4Addr::new(10, 0, 0, 0), 8),
    (Ipv4Addr::new(100, 64, 0, 0), 10),
    (Ipv4Addr::new(127, 0, 0, 0), 8),
    (Ipv4Addr::new(169, 254, 0, 0), 16),
    (Ipv4Addr::new(172, 16, 0, 0), 12),
    (Ipv4Addr::new(192, 0, 0, 0), 24),
    (Ipv4Addr::new(192, 168, 0, 0), 16),
    (Ipv4Addr::new(198, 18, 0, 0), 15),
    (Ipv4Addr::new(224, 0, 0, 0), 4),
    (Ipv4Addr::new(240, 0, 0, 0), 4),
];

/// Rule priorities, lowest first: the build users' refusals, the
/// namespace's own addresses (the kernel's rule for them, moved from 0 to
/// after the build users' so that those reach none of them), DNS to the
/// host's name servers, then the refused destinations (the kernel's main
/// table after all).
const BUILD_USERS_PRIORITY: u32 = 100;
const LOCAL_PRIORITY: u32 = 150;
const DNS_PRIORITY: u32 = 200;
const REFUSED_PRIORITY: u32 = 300;
/// The kernel's rule for the local table, in every new namespace.
const KERNEL_LOCAL_PRIORITY: u32 = 0;

/// Every uid but root's: the build users, whichever Nix picks.
const BUILD_USERS: (u32, u32) = (1, u32::MAX - 1);

/// The host's resolver configuration, and the list of the upstream servers
/// of a resolver on the host's loopback (systemd-resolved's).
const RESOLV_CONF: &str = "/etc/resolv.conf";
const RESOLVED_UPSTREAMS: &str = "/run/systemd/resolve/resolv.conf";

/// A network namespace for this process's Nix commands.
pub struct BuildNetwork {
    namespace: OwnedFd,
    /// What the Nix commands see as /etc/resolv.conf, where the host's own
    /// names only servers on its loopback (unreachable from the namespace).
    resolv_conf: Option<CString>,
}

/// The build network of this helper process, made when the first Nix
/// command needs it and kept for the others.
#[derive(Default)]
pub struct Shared(Mutex<Option<Arc<BuildNetwork>>>);

impl Shared {
    pub fn get(&self, settings: &Settings) -> Result<Arc<BuildNetwork>> {
        let mut made = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(network) = made.as_ref() {
            return Ok(network.clone());
        }
        let started = std::time::Instant::now();
        let network = Arc::new(
            BuildNetwork::new(&settings.host.builds, &settings.state_dir)
                .context("cannot give the builds of container files a network of their own")?,
        );
        crate::system::process::report_timing("build-network", started.elapsed());
        *made = Some(network.clone());
        Ok(network)
    }
}

impl BuildNetwork {
    /// bench/ only (feature bench-without-build-network): the helper's own
    /// namespace, as before there was a build network, for comparison.
    #[cfg(feature = "bench-without-build-network")]
    pub fn new(_builds: &Builds, _state_dir: &Path) -> Result<BuildNetwork> {
        let namespace = File::open("/proc/thread-self/ns/net").context("no network namespace")?;
        Ok(BuildNetwork { namespace: namespace.into(), resolv_conf: None })
    }

    /// The kept namespace where it was made for what the host is now, else
    /// a new one (kept from now on), with its link to the host and its rules.
    #[cfg(not(feature = "bench-without-build-network"))]
    pub fn new(builds: &Builds, state_dir: &Path) -> Result<BuildNetwork> {
        let subnet = builds.network.subnet();
        ensure_host_table(&subnet.to_string(), state_dir)?;
        let resolver = Resolver::of_host(Path::new(RESOLV_CONF), Path::new(RESOLVED_UPSTREAMS));
        let links = (subnet.network(), subnet.prefix_len());
        let rules = rules(builds.allow_internet, links, &resolver.servers, &host_addresses()?);
        let plan = plan_digest(&subnet.to_string(), &rules, &resolver)?;
        let resolv_conf = resolver.file.map(|file| {
            use std::os::unix::ffi::OsStringExt;
            CString::new(file.into_os_string().into_vec()).expect("a path from a constant")
        });
        let kept = Kept::at(state_dir)?;
        if let Some(namespace) = kept.find(&plan, false)? {
            return Ok(BuildNetwork { namespace, resolv_conf });
        }
        let _making = kept.lock(true)?;
        if let Some(namespace) = kept.find(&plan, true)? {
            return Ok(BuildNetwork { namespace, resolv_conf }); // made meanwhile
        }
        let (namespace, link) = make_namespace(builds, &rules)?;
        kept.keep(&namespace, &plan, &link)?;
        Ok(BuildNetwork { namespace, resolv_conf })
    }
}

impl Namespace for BuildNetwork {
    /// Moves the calling process into the build network: its namespace,
    /// and a mount namespace of its own where /etc/resolv.conf names
    /// servers the namespace reaches. For a child between fork and exec
    /// (`Tool::in_namespace`): it only makes system calls, allocating
    /// nothing.
    fn enter(&self) -> std::io::Result<()> {
        use rustix::mount::{mount_bind, mount_change, MountPropagationFlags};
        use rustix::thread::{move_into_link_name_space, LinkNameSpaceType, UnshareFlags};
        move_into_link_name_space(self.namespace.as_fd(), Some(LinkNameSpaceType::Network))?;
        if let Some(resolv_conf) = &self.resolv_conf {
            // SAFETY: the child has one thread, and only its mounts change.
            unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWNS) }?;
            // Nothing mounted here reaches the host's mount namespace.
            mount_change(c"/", MountPropagationFlags::DOWNSTREAM | MountPropagationFlags::REC)?;
            mount_bind(resolv_conf.as_c_str(), c"/etc/resolv.conf")?;
        }
        Ok(())
    }
}

/// What name servers the build namespace uses and may reach.
#[derive(Debug, PartialEq)]
struct Resolver {
    /// A file to show its Nix processes as /etc/resolv.conf; None: the host's.
    file: Option<PathBuf>,
    servers: Vec<Ipv4Addr>,
}

impl Resolver {
    /// The host's name servers that a namespace can reach (not on the
    /// host's loopback, which is the namespace's own there). Where the host
    /// names only servers on its loopback, those upstream of them that
    /// systemd-resolved lists (`upstreams`), and that list as the file.
    fn of_host(resolv_conf: &Path, upstreams: &Path) -> Resolver {
        let (reachable, local) = name_servers(resolv_conf);
        if reachable.is_empty() && local {
            let (servers, _) = name_servers(upstreams);
            if !servers.is_empty() {
                return Resolver { file: Some(upstreams.to_path_buf()), servers };
            }
        }
        Resolver { file: None, servers: reachable }
    }
}

/// The namespace's routing rules: the build users' refusals (of everything,
/// or where they may reach the internet, of the namespace's own addresses:
/// its loopback and `links`, where builds running at the same time would
/// meet), the local table, DNS to `name_servers`, every refused destination
/// and the host's addresses.
fn rules(
    allow_internet: bool,
    links: (Ipv4Addr, u8),
    name_servers: &[Ipv4Addr],
    host_addresses: &[Ipv4Addr],
) -> Vec<Rule> {
    let rule = |priority, to, uids, port, verdict| Rule { priority, to, uids, port, verdict };
    let build_users: Vec<Option<(Ipv4Addr, u8)>> = if allow_internet {
        vec![Some((Ipv4Addr::new(127, 0, 0, 0), 8)), Some(links)]
    } else {
        vec![None]
    };
    let build_users = build_users
        .into_iter()
        .map(|to| rule(BUILD_USERS_PRIORITY, to, Some(BUILD_USERS), None, Verdict::Refuse));
    let local = rule(LOCAL_PRIORITY, None, None, None, Verdict::Local);
    let dns = name_servers.iter().flat_map(|&server| {
        [libc::IPPROTO_UDP, libc::IPPROTO_TCP].map(|protocol| {
            rule(DNS_PRIORITY, Some((server, 32)), None, Some((protocol as u8, 53)), Verdict::Main)
        })
    });
    let refused = REFUSED.into_iter().chain(host_addresses.iter().map(|&address| (address, 32)));
    let refused = refused.map(|to| rule(REFUSED_PRIORITY, Some(to), None, None, Verdict::Refuse));
    build_users.chain([local]).chain(dns).chain(refused).collect()
}

/// Makes a build namespace with `rules`, and its veth to the host on the
/// first free slot of `builds.network`. Returns the namespace and the
/// host's end of the veth.
fn make_namespace(builds: &Builds, rules: &[Rule]) -> Result<(OwnedFd, String)> {
    let subnet = builds.network.subnet();
    let slots = 1u32 << (30 - u32::from(builds.network.prefix_length.get()));
    let first = std::process::id() % slots;
    let base = u32::from(subnet.network());
    // The namespace is made and set up by a thread of its own, which
    // enters it: a network namespace is a thread's, and this process's
    // other threads stay in the host's.
    let (namespace, slot) = std::thread::scope(|scope| {
        scope
            .spawn(|| inside(slots, first, base, rules))
            .join()
            .unwrap_or_else(|_| bail!("setting up the build namespace panicked"))
    })?;
    let host_side = Ipv4Addr::from(base + 4 * slot + 1);
    let link = format!("{LINK_PREFIX}{slot}");
    let index = link_index(&link)?;
    Socket::route()?.add_address(index, host_side, 30)?;
    // What comes in from the namespace is routed on (replies come back
    // through the host's uplink, which must forward as well).
    write_sysctl(&format!("net/ipv4/conf/{link}/forwarding"), "1")?;
    Ok((namespace, link))
}

/// What a kept namespace must have been made for to serve now: the
/// subnet, the rules (the build users', the name servers, the host's
/// addresses), the resolver file and the host's network namespace, as
/// the SHA-1 of their description.
fn plan_digest(subnet: &str, rules: &[Rule], resolver: &Resolver) -> Result<String> {
    use sha1::{Digest, Sha1};
    use std::os::unix::fs::MetadataExt;
    let host = std::fs::metadata("/proc/thread-self/ns/net")
        .context("cannot tell the host's network namespace")?;
    let described = format!("{subnet} {rules:?} {:?} {}:{}", resolver.file, host.dev(), host.ino());
    Ok(Sha1::digest(described.as_bytes()).iter().map(|byte| format!("{byte:02x}")).collect())
}

/// Where the build namespace is kept between commands:
/// `<state dir>/build-network/`, with `namespace` (the bind mount),
/// `record` (what it was made for, and its veth) and `lock`.
struct Kept {
    dir: PathBuf,
}

/// What `record` says.
#[derive(serde::Serialize, serde::Deserialize)]
struct Record {
    plan: String,
    link: String,
}

/// The filesystem type of namespace files (linux/magic.h: NSFS_MAGIC).
const NSFS_MAGIC: u64 = 0x6e73_6673;

impl Kept {
    fn at(state_dir: &Path) -> Result<Kept> {
        let dir = state_dir.join(crate::layout::BUILD_NETWORK);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(Kept { dir })
    }

    /// Locks the kept namespace: shared to use it, exclusive to make one.
    fn lock(&self, exclusive: bool) -> Result<File> {
        use rustix::fs::{flock, FlockOperation};
        let path = self.dir.join(crate::layout::BUILD_NETWORK_LOCK);
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        let operation =
            if exclusive { FlockOperation::LockExclusive } else { FlockOperation::LockShared };
        flock(&file, operation).with_context(|| format!("cannot lock {}", path.display()))?;
        Ok(file)
    }

    /// The kept namespace, where it was made for `plan` and its veth is
    /// still there. `locked`: the caller holds the lock.
    fn find(&self, plan: &str, locked: bool) -> Result<Option<OwnedFd>> {
        let _reading = if locked { None } else { Some(self.lock(false)?) };
        let Ok(text) = std::fs::read_to_string(self.dir.join(crate::layout::BUILD_NETWORK_RECORD))
        else {
            return Ok(None);
        };
        let Ok(record) = serde_json::from_str::<Record>(&text) else { return Ok(None) };
        if record.plan != plan || link_index(&record.link).is_err() {
            return Ok(None);
        }
        let Ok(file) = File::open(self.dir.join(crate::layout::BUILD_NETWORK_NAMESPACE)) else {
            return Ok(None);
        };
        let is_namespace =
            rustix::fs::fstatfs(&file).is_ok_and(|found| found.f_type as u64 == NSFS_MAGIC);
        Ok(is_namespace.then(|| file.into()))
    }

    /// Keeps `namespace`, made for `plan` with veth `link`, in place of the
    /// one kept before (which lives on while a command uses it).
    fn keep(&self, namespace: &OwnedFd, plan: &str, link: &str) -> Result<()> {
        use rustix::mount::{mount_bind, unmount, UnmountFlags};
        use std::os::fd::AsRawFd;
        let target = self.dir.join(crate::layout::BUILD_NETWORK_NAMESPACE);
        // Not mounted (the first time, or its mount namespace is gone): fine.
        let _ = unmount(&target, UnmountFlags::DETACH);
        File::create(&target).with_context(|| format!("cannot create {}", target.display()))?;
        let source = format!("/proc/self/fd/{}", namespace.as_raw_fd());
        mount_bind(source.as_str(), &target)
            .with_context(|| format!("cannot keep the build namespace at {}", target.display()))?;
        let record = Record { plan: plan.to_string(), link: link.to_string() };
        let text = serde_json::to_string(&record).expect("a record serializes");
        crate::system::files::write_atomically(
            &self.dir.join(crate::layout::BUILD_NETWORK_RECORD),
            &text,
        )
    }
}

/// In a thread that leaves the host's namespace: makes the build namespace,
/// the veth into it on the first free slot from `first`, and its addresses,
/// route and rules. Returns the namespace and the slot.
fn inside(slots: u32, first: u32, base: u32, rules: &[Rule]) -> Result<(OwnedFd, u32)> {
    let mut host = Socket::route()?;
    // SAFETY: only the network namespace is unshared, and only this thread's.
    unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNET) }
        .context("cannot make a network namespace")?;
    let namespace: OwnedFd = File::open("/proc/thread-self/ns/net")
        .context("cannot open the new network namespace")?
        .into();
    // No IPv6 inside, not even a link-local address to the host's end.
    for scope in ["default", "all"] {
        match write_sysctl(&format!("net/ipv6/conf/{scope}/disable_ipv6"), "1") {
            Err(err) if is_not_found(&err) => {} // a kernel without IPv6
            other => other?,
        }
    }
    let mut build = Socket::route()?;
    build.set_up(1)?; // lo, the first link of every namespace
    let slot = (0..slots)
        .map(|offset| (first + offset) % slots)
        .find_map(|slot| {
            let link = format!("{LINK_PREFIX}{slot}");
            match host.add_veth(&link, INSIDE_LINK, &namespace) {
                Ok(true) => Some(Ok(slot)),
                Ok(false) => None,
                Err(err) => Some(Err(err)),
            }
        })
        .with_context(|| format!("all {slots} build links are in use"))??;
    let index = link_index(INSIDE_LINK)?;
    build.set_up(index)?;
    let address = Ipv4Addr::from(base + 4 * slot + 2);
    let gateway = Ipv4Addr::from(base + 4 * slot + 1);
    build.add_address(index, address, 30)?;
    build.add_default_route(index, gateway)?;
    for rule in rules {
        build.add_rule(rule)?;
    }
    // The local table now comes after the build users' refusals.
    let kernel_local = Rule {
        priority: KERNEL_LOCAL_PRIORITY,
        to: None,
        uids: None,
        port: None,
        verdict: Verdict::Local,
    };
    build.delete_rule(&kernel_local)?;
    Ok((namespace, slot))
}

/// Makes sure the host's table is this helper's for `subnet`: it is asked
/// for over netlink (cheap), and written with nft only where it is missing
/// or another (after a reboot, a firewall reload that flushed it, a new
/// subnet, another version of its rules).
fn ensure_host_table(subnet: &str, state_dir: &Path) -> Result<()> {
    let (content, digest) = host_table(subnet);
    // nft keeps the table's comment with its terminating NUL.
    if TABLE.holds(format!("rules {digest}\0").as_bytes())? {
        return Ok(());
    }
    NetworkLock::take(state_dir)?.apply(&TABLE.replace(&format!("{content}\n")))
}

/// The content of the host's table for `subnet`, and the digest it names
/// itself by in its comment: the first 12 hex digits of the SHA-1 of the
/// content with `@DIGEST@` still in it (the NixOS module computes the same).
fn host_table(subnet: &str) -> (String, String) {
    use sha1::{Digest, Sha1};
    let content = TABLE_CONTENT.replace("@SUBNET@", subnet);
    let hash = Sha1::digest(content.as_bytes());
    let digest: String = hash.iter().map(|byte| format!("{byte:02x}")).collect();
    let digest = digest[..12].to_string();
    (content.replace("@DIGEST@", &digest), digest)
}

/// The host's IPv4 addresses, of every interface but the build links, in
/// order.
fn host_addresses() -> Result<Vec<Ipv4Addr>> {
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list`, which is freed below and read only
    // in between.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return Err(std::io::Error::last_os_error()).context("cannot list the host's addresses");
    }
    let mut addresses = Vec::new();
    let mut entry = list;
    while !entry.is_null() {
        // SAFETY: entry is a node of the list getifaddrs made.
        let node = unsafe { &*entry };
        // SAFETY: getifaddrs names each interface with a C string.
        let name = unsafe { std::ffi::CStr::from_ptr(node.ifa_name) };
        // The build links are the namespaces' way out, not the host's own.
        let build_link = name.to_bytes().starts_with(LINK_PREFIX.as_bytes());
        if !build_link
            && !node.ifa_addr.is_null()
            && i32::from(unsafe { (*node.ifa_addr).sa_family }) == libc::AF_INET
        {
            // SAFETY: an AF_INET address is a sockaddr_in.
            let inet = unsafe { &*node.ifa_addr.cast::<libc::sockaddr_in>() };
            addresses.push(Ipv4Addr::from(u32::from_be(inet.sin_addr.s_addr)));
        }
        entry = node.ifa_next;
    }
    // SAFETY: list came from getifaddrs and is not used after this.
    unsafe { libc::freeifaddrs(list) };
    addresses.sort();
    addresses.dedup();
    Ok(addresses)
}

/// The IPv4 name servers of `resolv_conf` not on the loopback, and
/// whether it names any on the loopback.
fn name_servers(resolv_conf: &Path) -> (Vec<Ipv4Addr>, bool) {
    let text = std::fs::read_to_string(resolv_conf).unwrap_or_default();
    let servers: Vec<std::net::IpAddr> = text
        .lines()
        .filter_map(|line| line.trim().strip_prefix("nameserver"))
        .filter_map(|server| server.trim().parse().ok())
        .collect();
    let local = servers.iter().any(std::net::IpAddr::is_loopback);
    let reachable = servers
        .into_iter()
        .filter_map(|server| match server {
            std::net::IpAddr::V4(server) if !server.is_loopback() => Some(server),
            _ => None,
        })
        .collect();
    (reachable, local)
}

/// The index of link `name` in the calling thread's namespace.
fn link_index(name: &str) -> Result<u32> {
    let text = std::ffi::CString::new(name).expect("link names have no NUL");
    // SAFETY: a plain call with a valid C string.
    let index = unsafe { libc::if_nametoindex(text.as_ptr()) };
    if index == 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("no link {name}"));
    }
    Ok(index)
}

/// Writes a sysctl of the calling thread's network namespace.
fn write_sysctl(key: &str, value: &str) -> Result<()> {
    std::fs::write(Path::new("/proc/sys").join(key), value)
        .with_context(|| format!("cannot set {}", key.replace('/', ".")))
}

fn is_not_found(err: &anyhow::Error) -> bool {
    err.downcast_ref::<std::io::Error>()
        .is_some_and(|err| err.kind() == std::io::ErrorKind::NotFound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_servers_are_the_reachable_ipv4_ones() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("resolv.conf");
        std::fs::write(
            &file,
            "# generated\nnameserver 10.255.255.53\nnameserver 127.0.0.53\nnameserver ::1\n\
             options edns0\nnameserver   9.9.9.9  \n",
        )
        .unwrap();
        let upstreams = dir.path().join("upstreams");
        std::fs::write(&upstreams, "nameserver 192.168.1.1\n").unwrap();
        let servers = vec![Ipv4Addr::new(10, 255, 255, 53), Ipv4Addr::new(9, 9, 9, 9)];
        assert_eq!(Resolver::of_host(&file, &upstreams), Resolver { file: None, servers });
        assert_eq!(
            Resolver::of_host(&dir.path().join("missing"), &upstreams),
            Resolver { file: None, servers: vec![] }
        );
    }

    #[test]
    fn a_resolver_on_the_loopback_is_replaced_by_its_upstreams() {
        let dir = tempfile::tempdir().unwrap();
        let stub = dir.path().join("resolv.conf");
        std::fs::write(&stub, "nameserver 127.0.0.53\noptions edns0 trust-ad\n").unwrap();
        let upstreams = dir.path().join("upstreams");
        std::fs::write(&upstreams, "nameserver 192.168.1.1\nnameserver fe80::1%eth0\n").unwrap();
        assert_eq!(
            Resolver::of_host(&stub, &upstreams),
            Resolver {
                file: Some(upstreams.clone()),
                servers: vec![Ipv4Addr::new(192, 168, 1, 1)]
            }
        );
        // Without systemd-resolved's list there is nothing to reach.
        let missing = dir.path().join("missing");
        assert_eq!(Resolver::of_host(&stub, &missing), Resolver { file: None, servers: vec![] });
    }

    #[test]
    fn build_users_are_refused_first_unless_builds_reach_the_internet() {
        let server = Ipv4Addr::new(10, 255, 255, 53);
        let host = Ipv4Addr::new(203, 0, 113, 2);
        let links = (Ipv4Addr::new(10, 203, 0, 0), 16);
        let refused = |rule: &Rule| rule.verdict == Verdict::Refuse;
        let closed = rules(false, links, &[server], &[host]);
        assert_eq!(closed[0].uids, Some(BUILD_USERS));
        assert!(refused(&closed[0]) && closed[0].to.is_none());
        // Where they reach the internet: not the namespace's own addresses,
        // where builds of other containers would meet.
        let open = rules(true, links, &[server], &[host]);
        let build_users: Vec<_> = open.iter().filter(|rule| rule.uids.is_some()).collect();
        let own: Vec<_> = build_users.iter().filter_map(|rule| rule.to).collect();
        assert_eq!(own, [(Ipv4Addr::new(127, 0, 0, 0), 8), links]);
        assert!(build_users.iter().all(|rule| refused(rule)));
        // Before them nothing, after them the local table, then DNS to the
        // name server (UDP and TCP) before the refusal of its private
        // network; the host's own address is refused.
        let local = open.iter().find(|rule| rule.verdict == Verdict::Local).unwrap();
        assert!(local.priority > BUILD_USERS_PRIORITY && local.priority < DNS_PRIORITY);
        let dns: Vec<&Rule> = open.iter().filter(|rule| rule.verdict == Verdict::Main).collect();
        assert_eq!(dns.len(), 2);
        assert!(dns
            .iter()
            .all(|rule| rule.to == Some((server, 32)) && rule.priority < REFUSED_PRIORITY));
        let ten = Some((Ipv4Addr::new(10, 0, 0, 0), 8));
        assert!(open.iter().any(|rule| refused(rule) && rule.to == ten));
        assert!(open.iter().any(|rule| refused(rule) && rule.to == Some((host, 32))));
    }

    #[test]
    fn the_host_table_names_its_rules_where_the_helper_looks() {
        let (content, digest) = host_table("10.203.0.0/16");
        assert!(content.contains(&format!(
            "comment \"builds of container files: NAT of 10.203.0.0/16, rules {digest}\""
        )));
        assert!(content.contains(&format!("iifname \"{LINK_PREFIX}*\"")));
        assert!(!content.contains('@'), "every placeholder is filled");
        assert_ne!(host_table("10.204.0.0/16").1, digest, "another subnet, other rules");
        // What tests/nix/host.nix finds in the table the NixOS module
        // declares for the default subnet (lib/build-network.nft as it is).
        assert_eq!(digest, include_str!("../../../tests/nix/build-network.digest").trim());
    }
}
