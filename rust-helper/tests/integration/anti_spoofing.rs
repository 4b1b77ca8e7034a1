//! The ports' guard (capabilities/network/port_guard.rs, lib/port-guard.nft): a
//! container cannot pose as another container, as the host's router or as a
//! DHCP server on the bridges, whatever its root does to its interfaces.

use std::process::{Child, Command, Stdio};

use crate::common::{path_str, Host};
use crate::isolation::internet_address;

/// Creates and starts tiny container `name` with `attrs`.
fn started(host: &Host, name: &str, attrs: &str) {
    host.ok(&["create", name, path_str(&host.tiny(&format!("{name}.nix"), "1", attrs))]);
    host.start_booted(name);
}

/// Container `name`'s MAC address on its interface `interface`.
fn mac_of(host: &Host, name: &str, interface: &str) -> String {
    host.ok(&["run", name, "cat", &format!("/sys/class/net/{interface}/address")])
        .trim()
        .to_string()
}

/// The MAC address the host's neighbour table has for `address` on `bridge`.
fn neighbour(host: &Host, address: &str, bridge: &str) -> Option<String> {
    let shown = host.ns_ok(&format!("ip neigh show {address} dev {bridge}"));
    let words: Vec<&str> = shown.split_whitespace().collect();
    words.iter().position(|w| *w == "lladdr").map(|at| words[at + 1].to_string())
}

/// Container `name` and the host forget what they knew of each other's MAC
/// addresses on the hostonly bridge: an entry that the guard kept from an
/// answer is given up only after its probes, which would fail the next ping.
fn forget_neighbours(host: &Host, name: &str) {
    host.ok(&["run", name, "ip", "neigh", "flush", "dev", "hostonly"]);
    host.ns_ok("ip neigh flush dev brNC-hostonly");
}

/// Whether container `name` reaches `address` by ping (one packet).
fn pings_from(host: &Host, name: &str, address: &str) -> bool {
    host.helper(&["run", name, "ping", "-c", "1", "-W", "2", address]).code == 0
}

#[test]
fn an_address_taken_over_stays_with_its_owner() {
    let host = Host::new();
    started(&host, "attacker", "");
    started(&host, "victim", "");
    let victim_mac = mac_of(&host, "victim", "hostonly");
    let attacker_mac = mac_of(&host, "attacker", "hostonly");
    assert!(host.pings("10.101.0.3"), "the host reaches the victim");
    assert_eq!(neighbour(&host, "10.101.0.3", "brNC-hostonly").as_deref(), Some(&*victim_mac));

    // The attack of issue 21: the attacker takes the victim's address and
    // announces it to the host, and listens where the victim listens.
    let victim = host.listen_in("victim", 7001);
    host.ok(&["run", "attacker", "ip", "addr", "add", "10.101.0.3/32", "dev", "hostonly"]);
    let attacker = host.listen_in("attacker", 7001);
    let _ = host.helper(&[
        "run",
        "attacker",
        "arping",
        "-U",
        "-c",
        "2",
        "-s",
        "10.101.0.3",
        "-I",
        "hostonly",
        "10.101.0.1",
    ]);
    // Its announcements went out before this ping, whose answer comes back:
    // the host has seen them.
    assert!(pings_from(&host, "attacker", "10.101.0.1"), "the attacker reaches the host as itself");

    assert_eq!(
        neighbour(&host, "10.101.0.3", "brNC-hostonly").as_deref(),
        Some(&*victim_mac),
        "the host's neighbour entry stays with the victim, not the attacker ({attacker_mac})"
    );
    host.ns_ok("echo hello | busybox nc -w 2 10.101.0.3 7001");
    // What the connection sent went to one of them: once the victim has it,
    // the attacker cannot have it too.
    assert_eq!(victim.received("hello"), "hello", "the victim answers");
    assert_eq!(attacker.arrived(), "", "the attacker does not");
    assert!(attacker.untouched(), "nor did anything connect to the attacker");
}

#[test]
fn a_changed_mac_address_gets_nothing_through() {
    let host = Host::new();
    started(&host, "moved", "");
    let own = mac_of(&host, "moved", "hostonly");
    assert!(pings_from(&host, "moved", "10.101.0.1"));

    host.ok(&["run", "moved", "ip", "link", "set", "hostonly", "address", "02:00:00:00:00:99"]);
    // The host asks again who has the container's address.
    host.ns_ok("ip neigh flush dev brNC-hostonly");
    assert!(!pings_from(&host, "moved", "10.101.0.1"), "nothing from 02:00:00:00:00:99 passes");
    assert_ne!(
        neighbour(&host, "10.101.0.2", "brNC-hostonly").as_deref(),
        Some("02:00:00:00:00:99"),
        "nor does its answer to the host's question"
    );

    // Its own MAC address passes again.
    host.ok(&["run", "moved", "ip", "link", "set", "hostonly", "address", &own]);
    forget_neighbours(&host, "moved");
    assert!(pings_from(&host, "moved", "10.101.0.1"));
}

/// A dnsmasq in the test host's namespace, serving DHCP on brNC-internet with
/// the addresses the helper pins (`<state dir>/dhcp-hosts`), as the NixOS
/// module's does (with `ipv6`, a prefix of it: DHCPv6 from its
/// `<prefix>::1000` to `::ffff` and router advertisements); killed when
/// dropped.
struct Dnsmasq {
    child: Child,
}

impl Dnsmasq {
    fn start(host: &Host, ipv6: Option<&str>) -> Dnsmasq {
        let dir = host.dir.path();
        let ipv6_args = match ipv6 {
            Some(prefix) => {
                vec![format!("--dhcp-range={prefix}1000,{prefix}ffff,64,12h"), "--enable-ra".into()]
            }
            None => Vec::new(),
        };
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &host.netns,
                "dnsmasq",
                "--keep-in-foreground",
                "--conf-file=/dev/null",
            ])
            .arg("--port=0") // DHCP only: no DNS
            .args(["--interface=brNC-internet", "--bind-dynamic", "--except-interface=lo"])
            .args(["--dhcp-range=10.202.0.2,10.202.255.254,12h", "--dhcp-authoritative"])
            .args(ipv6_args)
            .arg(format!("--dhcp-hostsdir={}", host.state_dir().join("dhcp-hosts").display()))
            .arg(format!("--dhcp-leasefile={}", dir.join("dnsmasq.leases").display()))
            .arg(format!("--pid-file={}", dir.join("dnsmasq.pid").display()))
            .arg(format!("--log-facility={}", dir.join("dnsmasq.log").display()))
            .arg("--log-dhcp")
            .stdout(Stdio::null())
            .spawn()
            .expect("dnsmasq runs (scripts/setup-debian installs dnsmasq-base)");
        let dnsmasq = Dnsmasq { child };
        // Serving once it listens on the DHCP port (67 is 0043).
        host.wait_for("dnsmasq to serve DHCP", || {
            host.ns("grep -q ' 00000000:0043 ' /proc/net/udp").code == 0
        });
        dnsmasq
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The address container `name`'s DHCP client gets on its internet
/// interface within a few tries (None: no offer came).
fn dhcp_lease(host: &Host, name: &str) -> Option<String> {
    let run = host.helper(&[
        "run",
        name,
        "udhcpc",
        "-i",
        "internet",
        "-n",
        "-q",
        "-t",
        "3",
        "-T",
        "1",
        "-s",
        "/bin/true",
    ]);
    let said = format!("{}{}", run.stdout, run.stderr);
    let lease = said.lines().find_map(|line| {
        let rest = line.split("lease of ").nth(1)?;
        Some(rest.split_whitespace().next()?.to_string())
    });
    assert_eq!(lease.is_some(), run.code == 0, "udhcpc says what it got: {run:?}");
    lease
}

/// Where an ICMPv6 message comes from: container `name`'s network
/// namespace, or the test host's.
#[derive(Clone, Copy)]
enum Sender<'a> {
    Container(&'a str),
    Host,
}

/// Sends ICMPv6 `message` (a Python expression of its bytes; the kernel
/// adds the checksum) to all nodes (ff02::1) on `interface`, with the hop
/// limit 255 of neighbour discovery. The tiny guest has no tool for it: the
/// host's python3 sends it from the container's network namespace, as the
/// container's root could.
fn send_icmpv6(host: &Host, from: Sender, interface: &str, message: &str) {
    let script = format!(
        "import socket, struct\n\
         s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)\n\
         s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)\n\
         s.sendto({message}, ('ff02::1', 0, 0, socket.if_nametoindex('{interface}')))\n"
    );
    let mut command = match from {
        Sender::Container(name) => {
            let init = host.lxc(&format!("lxc-info -n {name} -pH")).stdout.trim().to_string();
            let mut command = Command::new("nsenter");
            command.args(["-t", &init, "-n"]);
            command
        }
        Sender::Host => {
            let mut command = Command::new("ip");
            command.args(["netns", "exec", &host.netns]);
            command
        }
    };
    let sent = command.args(["python3", "-c", &script]).status().expect("python3 runs");
    assert!(sent.success(), "the message went out");
}

/// A router advertisement of `prefix`/64, on-link and for SLAAC.
fn router_advertisement(prefix: &str) -> String {
    format!(
        "struct.pack('!BBHBBHII', 134, 0, 0, 64, 0, 1800, 0, 0) + \
         struct.pack('!BBBBIII', 3, 4, 64, 0xc0, 86400, 14400, 0) + \
         socket.inet_pton(socket.AF_INET6, '{prefix}')"
    )
}

/// An unsolicited neighbour advertisement that overrides what its
/// receivers have: `target` is at `mac`.
fn neighbour_advertisement(target: &str, mac: &str) -> String {
    format!(
        "struct.pack('!BBHI', 136, 0, 0, 0x20000000) + socket.inet_pton(socket.AF_INET6, \
         '{target}') + bytes([2, 1]) + bytes.fromhex('{}')",
        mac.replace(':', "")
    )
}

/// Container `name`'s IPv6 addresses on `interface`, as `ip` shows them.
fn ipv6_of(host: &Host, name: &str, interface: &str) -> String {
    host.ok(&["run", name, "ip", "-6", "addr", "show", "dev", interface])
}

/// Container `name`'s link-local IPv6 address on `interface`, once it is
/// usable (the kernel's duplicate address detection is over).
fn link_local_of(host: &Host, name: &str, interface: &str) -> String {
    let mut address = None;
    host.wait_for(&format!("{name}'s link-local address on {interface}"), || {
        let shown =
            host.ok(&["run", name, "ip", "-6", "addr", "show", "dev", interface, "scope", "link"]);
        let words: Vec<&str> = shown.split_whitespace().collect();
        address = words
            .iter()
            .position(|w| *w == "inet6")
            .filter(|_| !shown.contains("tentative"))
            .map(|at| words[at + 1].split('/').next().unwrap().to_string());
        address.is_some()
    });
    address.unwrap()
}

#[test]
fn no_container_takes_another_ones_dhcp_server_or_router_advertisement() {
    let host = Host::new();
    // Peers: without the guard nothing between their ports would stop a
    // frame (other containers' ports are isolated from each other anyway).
    started(&host, "rogue", r#"network = { enableNat = true; peers = [ "victim" ]; };"#);
    started(&host, "victim", r#"network = { enableNat = true; peers = [ "rogue" ]; };"#);
    let rogue_address = internet_address(&host, "rogue");
    let victim_address = internet_address(&host, "victim");
    host.ok(&[
        "run",
        "rogue",
        "ip",
        "addr",
        "add",
        &format!("{rogue_address}/16"),
        "dev",
        "internet",
    ]);

    // A DHCP server in the rogue, handing out addresses of its own.
    host.ok(&[
        "run",
        "rogue",
        "sh",
        "-c",
        "printf 'start 10.202.250.10\\nend 10.202.250.20\\ninterface internet\\n\
         lease_file /tmp/udhcpd.leases\\nopt router 10.202.250.1\\nopt subnet 255.255.0.0\\n' \
         >/tmp/udhcpd.conf && touch /tmp/udhcpd.leases && \
         (udhcpd -f /tmp/udhcpd.conf >/tmp/udhcpd.log 2>&1 &) && \
         for i in $(seq 100); do grep -q ' 00000000:0043 ' /proc/net/udp && exit 0; sleep 0.02; done; exit 1",
    ]);
    assert_eq!(dhcp_lease(&host, "victim"), None, "no offer of the rogue's reaches the victim");

    // The host's DHCP server gives the victim the address the helper
    // pinned to it; its request from 0.0.0.0 passes the guard.
    let mac = mac_of(&host, "victim", "internet");
    let pin = std::fs::read_to_string(host.state_dir().join("dhcp-hosts/victim")).unwrap();
    assert_eq!(pin, format!("{mac},{victim_address}\n"));
    let _dnsmasq = Dnsmasq::start(&host, None);
    assert_eq!(dhcp_lease(&host, "victim").as_deref(), Some(&*victim_address));
    // A container made while dnsmasq runs: dnsmasq reads its new file.
    started(&host, "late", "network.enableNat = true;");
    let late_address = internet_address(&host, "late");
    assert_eq!(dhcp_lease(&host, "late").as_deref(), Some(&*late_address));

    // A router advertisement from the rogue (from its link-local address,
    // as routers send them): the victim would take an address of its
    // prefix, and the rogue as its router.
    link_local_of(&host, "rogue", "internet");
    send_icmpv6(
        &host,
        Sender::Container("rogue"),
        "internet",
        &router_advertisement("2001:db8:bad::"),
    );
    // It went out before this ping, whose answer comes back through the
    // same ports: had it passed, the victim would have taken it by now.
    let victim_link_local = link_local_of(&host, "victim", "internet");
    assert!(
        host.helper(&[
            "run",
            "rogue",
            "ping",
            "-c",
            "1",
            "-W",
            "2",
            "-I",
            "internet",
            &victim_link_local
        ])
        .code
            == 0,
        "peers reach each other"
    );
    let addresses = ipv6_of(&host, "victim", "internet");
    assert!(!addresses.contains("2001:db8:bad:"), "the victim took no address of it: {addresses}");
    let routes = host.ok(&["run", "victim", "ip", "-6", "route"]);
    assert!(!routes.contains("default"), "nor a route through the rogue: {routes}");

    // The host's own advertisements (a router it runs) still reach it.
    send_icmpv6(&host, Sender::Host, "brNC-internet", &router_advertisement("2001:db8:600d::"));
    host.wait_for("the victim to take an address of the host's prefix", || {
        ipv6_of(&host, "victim", "internet").contains("2001:db8:600d:")
    });
}

/// Gives container `name`'s `interface` IPv6 address `address` (with its
/// prefix length), usable at once: no duplicate address detection, which
/// would hold it back for a second.
fn add_ipv6(host: &Host, name: &str, address: &str, interface: &str) {
    host.ok(&[
        "run",
        name,
        "sh",
        "-c",
        &format!(
            "echo 0 >/proc/sys/net/ipv6/conf/{interface}/accept_dad && \
             ip -6 addr add {address} dev {interface}"
        ),
    ]);
}

/// The test host's link-local address on `bridge`.
fn host_link_local(host: &Host, bridge: &str) -> String {
    let shown = host.ns_ok(&format!("ip -6 addr show dev {bridge} scope link"));
    let words: Vec<&str> = shown.split_whitespace().collect();
    let at = words.iter().position(|w| *w == "inet6").expect("the bridge has a link-local address");
    words[at + 1].split('/').next().unwrap().to_string()
}

#[test]
fn ipv6_passes_only_from_a_ports_own_addresses() {
    let host = Host::new();
    // A host that routes 2001:db8:2::/64 to the internet bridge, where DHCPv6
    // gives each container an address of it.
    std::fs::write(
        host.dir.path().join("host.json"),
        r#"{"internetIPv6": {"prefix": "2001:db8:2::", "prefixLength": 64}}"#,
    )
    .unwrap();
    host.ns_ok(
        "ip -6 addr add 2001:db8:2::1/64 dev brNC-internet nodad && \
         ip -6 addr add 2001:db8:1::1/64 dev brNC-hostonly nodad",
    );
    started(&host, "attacker", "network.enableNat = true;");
    started(&host, "victim", "");
    let attacker_mac = mac_of(&host, "attacker", "hostonly");
    let internet_mac = mac_of(&host, "attacker", "internet");
    let pinned = "2001:db8:2::1002";
    let pin = std::fs::read_to_string(host.state_dir().join("dhcp-hosts/attacker")).unwrap();
    assert_eq!(pin, format!("{internet_mac},{},[{pinned}]\n", internet_address(&host, "attacker")));

    // From its link-local address it reaches the host's; from an address
    // that is not its own, nothing passes.
    let pings6 = |address: &str, interface: &str| {
        host.helper(&["run", "attacker", "ping", "-c", "1", "-W", "2", "-I", interface, address])
            .code
            == 0
    };
    link_local_of(&host, "attacker", "hostonly");
    let host_hostonly = host_link_local(&host, "brNC-hostonly");
    assert!(pings6(&host_hostonly, "hostonly"), "its link-local address passes");
    add_ipv6(&host, "attacker", "2001:db8:1::66/64", "hostonly");
    assert!(!pings6("2001:db8:1::1", "hostonly"), "an address of its own making does not");

    // On the internet bridge its DHCPv6 address passes; another container's
    // does not.
    add_ipv6(&host, "attacker", &format!("{pinned}/64"), "internet");
    assert!(pings6("2001:db8:2::1", "internet"), "its DHCPv6 address passes");
    host.ok(&[
        "run",
        "attacker",
        "ip",
        "-6",
        "addr",
        "del",
        &format!("{pinned}/64"),
        "dev",
        "internet",
    ]);
    add_ipv6(&host, "attacker", "2001:db8:2::1003/64", "internet");
    assert!(!pings6("2001:db8:2::1", "internet"), "the next container's DHCPv6 address does not");

    // A neighbour advertisement from its own address that says the
    // victim's address is at the attacker's MAC address.
    let victim = link_local_of(&host, "victim", "hostonly");
    let victim_mac = mac_of(&host, "victim", "hostonly");
    host.ns_ok(&format!("busybox ping -c 1 -W 2 -I brNC-hostonly {victim}"));
    assert_eq!(neighbour(&host, &victim, "brNC-hostonly").as_deref(), Some(&*victim_mac));
    send_icmpv6(
        &host,
        Sender::Container("attacker"),
        "hostonly",
        &neighbour_advertisement(&victim, &attacker_mac),
    );
    // It went out before this ping, whose answer comes back: the host has seen it.
    assert!(pings6(&host_hostonly, "hostonly"));
    assert_eq!(
        neighbour(&host, &victim, "brNC-hostonly").as_deref(),
        Some(&*victim_mac),
        "the host's neighbour entry for the victim's address stays the victim's"
    );
}

/// The veth.pair (the port's name on the host) of container `name`'s
/// interface `index`, from its current generation.
fn port_of(host: &Host, name: &str, index: usize) -> String {
    let conf =
        std::fs::read_to_string(host.profiles_dir().join(name).join("profile/lxc.conf")).unwrap();
    let key = format!("lxc.net.{index}.veth.pair = ");
    conf.lines().find_map(|line| line.strip_prefix(&key)).expect("the port has a name").to_string()
}

#[test]
fn the_guard_follows_the_containers() {
    let host = Host::new();
    let set =
        |set: &str| host.ns(&format!("nft list set bridge nixcloud-container-guard {set}")).stdout;
    let web = |version: &str, attrs: &str| {
        path_str(&host.tiny(&format!("web{version}.nix"), version, attrs)).to_string()
    };
    host.ok(&["create", "web", &web("1", "network.enableNat = true;")]);
    let (hostonly, internet) = (port_of(&host, "web", 0), port_of(&host, "web", 1));
    let pin = host.state_dir().join("dhcp-hosts/web");
    // From its creation on: its MAC addresses and its addresses.
    assert!(set("macs").contains(&format!("\"{hostonly}\" . ")), "{}", set("macs"));
    assert!(set("ipv4").contains(&format!("\"{hostonly}\" . 10.101.0.2")), "{}", set("ipv4"));
    assert!(set("ipv4").contains(&format!("\"{internet}\" . 10.202.0.2")), "{}", set("ipv4"));
    assert!(pin.exists());

    // Updates to fixed addresses: each is its own while a generation has it,
    // and goes with the last generation that has it.
    host.ok(&[
        "update",
        "web",
        &web("2", r#"network = { enableNat = true; ip = "10.101.7.7"; };"#),
    ]);
    host.ok(&[
        "update",
        "web",
        &web("3", r#"network = { enableNat = true; ip = "10.101.8.8"; };"#),
    ]);
    assert!(set("ipv4").contains(&format!("\"{hostonly}\" . 10.101.7.7")), "{}", set("ipv4"));
    host.ok(&["delete-generations", "web", "2"]);
    let ipv4 = set("ipv4");
    assert!(!ipv4.contains("10.101.7.7") && ipv4.contains("10.101.8.8"), "{ipv4}");

    // A flushed ruleset (a firewall reload on a host without the NixOS
    // module): the next start puts the guard back before the ports exist.
    host.ns_ok("nft flush ruleset");
    host.start_booted("web");
    assert!(set("ipv4").contains(&format!("\"{hostonly}\" . 10.101.8.8")), "{}", set("ipv4"));
    host.ok(&["run", "web", "ip", "link", "set", "hostonly", "address", "02:00:00:00:00:99"]);
    host.ns_ok("ip neigh flush dev brNC-hostonly");
    assert!(!pings_from(&host, "web", "10.101.0.1"), "the guard is back");
    // And so does repair-network.
    host.ns_ok("nft flush ruleset");
    host.ok(&["repair-network"]);
    assert!(set("ipv4").contains(&format!("\"{hostonly}\" . 10.101.8.8")), "{}", set("ipv4"));

    // A host without the guard: repair-network takes the table away.
    std::fs::write(host.dir.path().join("host.json"), r#"{"antiSpoofing": false}"#).unwrap();
    host.ok(&["repair-network"]);
    assert_eq!(host.ns_ok("nft list tables bridge"), "");
    forget_neighbours(&host, "web");
    assert!(pings_from(&host, "web", "10.101.0.1"), "then nothing stops a changed MAC address");
    std::fs::write(host.dir.path().join("host.json"), "{}").unwrap();
    host.ok(&["repair-network"]);

    // Destroyed: nothing of it stays, in the sets or for DHCP.
    host.ok(&["destroy", "web", "--force"]);
    for name in ["macs", "ipv4", "ipv6", "nd_targets"] {
        let listed = set(name);
        assert!(!listed.contains(&hostonly) && !listed.contains(&internet), "{name}: {listed}");
    }
    assert!(!pin.exists());
}

/// Runs NixOS's DHCP client, dhcpcd (the host's), for container `name`'s
/// internet interface once, for `family` ("-4" or "-6"), in the container's
/// network namespace: as a NixOS guest would, where the tiny guest has none.
/// Its lease and run directories are made empty for it (a mount namespace of
/// its own); it runs no hooks (`-c /bin/true`), which would change the
/// host's resolv.conf, and in case one ran, /etc/resolv.conf is a file of
/// that namespace's own (a run of it with hooks once emptied this machine's).
fn dhcpcd(host: &Host, name: &str, family: &str) {
    let init = host.lxc(&format!("lxc-info -n {name} -pH")).stdout.trim().to_string();
    let ran = Command::new("nsenter")
        .args(["-t", &init, "-n", "unshare", "-m", "sh", "-c"])
        .arg(format!(
            "mount -t tmpfs none /var/lib/dhcpcd && mount -t tmpfs none /run && \
             : > /run/resolv.conf && mount --bind /run/resolv.conf /etc/resolv.conf && \
             exec dhcpcd {family} -B -1 -f /dev/null -c /bin/true -t 20 internet"
        ))
        .output()
        .expect("dhcpcd runs (scripts/setup-debian installs dhcpcd-base)");
    assert!(ran.status.success(), "dhcpcd {family}: {}", String::from_utf8_lossy(&ran.stderr));
}

#[test]
fn a_nixos_dhcp_client_gets_the_pinned_addresses_through_the_guard() {
    let host = Host::new();
    std::fs::write(
        host.dir.path().join("host.json"),
        r#"{"internetIPv6": {"prefix": "2001:db8:2::", "prefixLength": 64}}"#,
    )
    .unwrap();
    host.ns_ok("ip -6 addr add 2001:db8:2::1/64 dev brNC-internet nodad");
    host.ok(&[
        "create",
        "first",
        path_str(&host.tiny("first.nix", "1", "network.enableNat = true;")),
    ]);
    started(&host, "web", "network.enableNat = true;");
    let _dnsmasq = Dnsmasq::start(&host, Some("2001:db8:2::"));
    // Its ARP probes from 0.0.0.0 and its announcement, its DHCPv6 request
    // from its link-local address and its duplicate address detection pass;
    // dnsmasq knows it by its MAC address for DHCPv6 too.
    dhcpcd(&host, "web", "-4");
    dhcpcd(&host, "web", "-6");
    let addresses = host.ok(&["run", "web", "ip", "addr", "show", "dev", "internet"]);
    assert!(addresses.contains("inet 10.202.0.3/16"), "the second NAT container's: {addresses}");
    assert!(addresses.contains("inet6 2001:db8:2::1003/128"), "{addresses}");
    assert!(pings_from(&host, "web", "10.202.0.1"));
    assert!(pings_from(&host, "web", "2001:db8:2::1"));
}
