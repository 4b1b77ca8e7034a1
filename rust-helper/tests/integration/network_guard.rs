//! Network confinement: where a container's forwarded traffic may go, and
//! that a container's forwarded ports go with it, whatever stopped it.

use std::process::{Child, Command};
use std::time::Duration;

use crate::common::{path_str, tiny_file, Host};

fn allow(host: &Host, json: &str) {
    std::fs::write(host.dir.path().join("host.json"), json).unwrap();
}

/// The forwards' table as nft lists it (nothing where there is none).
fn forwards(host: &Host) -> String {
    host.ns("nft list table ip nixcloud-container-forwards 2>/dev/null").stdout
}

/// Whether what a client on the host sends to host port 8080 reaches a
/// listener on `web`'s port 80.
fn reaches_web(host: &Host) -> bool {
    let listener = host.listen_in("web", 80);
    host.ns("echo hello | busybox nc -w 2 10.101.0.1 8080").code == 0
        && listener.received("hello") == "hello"
}

/// A host that allows forwards, with container `web` forwarding its port 80
/// from the host's 8080.
fn host_with_web() -> Host {
    let host = Host::new();
    allow(&host, r#"{"allowedForwardPorts": [{"from": 8000, "to": 8999}]}"#);
    let file = host.file(
        "web.nix",
        &tiny_file("1", "forwardPorts = [ { hostPort = 8080; containerPort = 80; } ];", ""),
    );
    host.ok(&["create", "web", path_str(&file)]);
    host
}

#[test]
fn a_forward_goes_within_two_seconds_whatever_stopped_its_container() {
    let host = host_with_web();
    let gone = || !forwards(&host).contains("dport 8080");

    // Its init exits (as at a poweroff inside): LXC's hook at its stop
    // takes the forward away, no command of the helper's.
    host.start_booted("web");
    assert!(reaches_web(&host), "the forward works while web runs: {}", forwards(&host));
    let _ = host.helper(&["run", "web", "kill", "-TERM", "1"]);
    host.wait_at_most(Duration::from_secs(2), "the forward to go after web's init exited", gone);
    assert_eq!(host.state("web"), "STOPPED");

    // Stopped by LXC alone, as when the helper's `stop` is killed after it
    // asked LXC to stop the container.
    host.start_booted("web");
    assert!(!gone(), "back at its start: {}", forwards(&host));
    host.lxc("lxc-stop -n web");
    host.wait_at_most(Duration::from_secs(2), "the forward to go after lxc-stop", gone);
    assert_ne!(host.ns("busybox nc -w 1 10.101.0.1 8080 </dev/null").code, 0, "nothing answers");

    // The helper's next command tidies the emptied chain away.
    host.ok(&["repair-network"]);
    assert!(!forwards(&host).contains("to-web"), "{}", forwards(&host));

    // LXC runs the hook before it calls the container stopped, so a restart
    // (stop, then start) keeps the forward that its start made.
    host.start_booted("web");
    host.ok(&["restart", "web"]);
    host.wait_for("web to boot again", || host.helper(&["run", "web", "true"]).code == 0);
    assert!(reaches_web(&host), "the forward works after a restart: {}", forwards(&host));
}

#[test]
fn forwards_an_update_gives_a_running_container_without_any_wait_for_its_next_start() {
    let host = Host::new();
    allow(&host, r#"{"allowedForwardPorts": [{"from": 8000, "to": 8999}]}"#);
    host.ok(&["create", "web", path_str(&host.file("web.nix", &tiny_file("1", "", "")))]);
    host.start_booted("web");
    // LXC runs the hooks of the generation it started with, which had none.
    let with_forwards =
        tiny_file("2", "forwardPorts = [ { hostPort = 8080; containerPort = 80; } ];", "");
    let updated = host.ok(&["update", "web", path_str(&host.file("web2.nix", &with_forwards))]);
    assert!(updated.contains("'web' gets its forwarded ports at its next start"), "{updated}");
    assert!(!reaches_web(&host), "not before its next start: {}", forwards(&host));
    host.ok(&["restart", "web"]);
    host.wait_for("web to boot again", || host.helper(&["run", "web", "true"]).code == 0);
    assert!(reaches_web(&host), "from its next start: {}", forwards(&host));
    // And from then on they go when it stops.
    let _ = host.helper(&["run", "web", "kill", "-TERM", "1"]);
    host.wait_at_most(Duration::from_secs(2), "the forward to go after web's init exited", || {
        !forwards(&host).contains("dport 8080")
    });
}

#[test]
fn a_container_that_reboots_keeps_its_forwards() {
    let host = host_with_web();
    host.start_booted("web");
    let init = || host.lxc("lxc-info -n web -pH").stdout.trim().to_string();
    let first = init();
    // LXC starts it again in the same monitor, which runs the stop hook
    // in between (with LXC_TARGET=reboot).
    let record = host.lxc_path().join("web/rootfs/var/lib/tiny/booted");
    std::fs::remove_file(&record).unwrap();
    let _ = host.helper(&["run", "web", "reboot", "-f"]);
    host.wait_for("web to boot again", || {
        let now = init();
        !now.is_empty() && now != first && record.exists()
    });
    assert!(reaches_web(&host), "the forward still works: {}", forwards(&host));
}

/// A network namespace behind the test host, routed to through a veth
/// (uplink 198.51.100.1 -- 198.51.100.2): what the host reaches besides
/// its bridges. It holds a private network (192.168.77.1) and a metadata
/// address (169.254.169.254), with a TCP listener on port 8000 for all of
/// them; gone when dropped.
struct Behind {
    netns: String,
    listener: Child,
}

impl Behind {
    fn new(host: &Host) -> Behind {
        let netns = format!("{}b", host.netns);
        run(&format!("ip netns add {netns}"));
        host.ns_ok(&format!(
            "ip link add uplink type veth peer name lan netns {netns} && \
             ip addr add 198.51.100.1/24 dev uplink && ip link set uplink up && \
             ip route add 192.168.77.0/24 via 198.51.100.2 && \
             ip route add 169.254.169.254/32 via 198.51.100.2 && \
             sysctl -qw net.ipv4.ip_forward=1"
        ));
        run(&format!(
            "ip -n {netns} link set lo up && ip -n {netns} link set lan up && \
             ip -n {netns} addr add 198.51.100.2/24 dev lan && \
             ip -n {netns} addr add 192.168.77.1/32 dev lo && \
             ip -n {netns} addr add 169.254.169.254/32 dev lo && \
             ip -n {netns} route add default via 198.51.100.1"
        ));
        let listener = Command::new("ip")
            .args(["netns", "exec", &netns, "python3", "-c"])
            .arg(
                "import socket\n\
                 s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
                 s.bind(('0.0.0.0', 8000)); s.listen(16)\n\
                 while True:\n    c, _ = s.accept(); c.sendall(b'here\\n'); c.close()\n",
            )
            .spawn()
            .expect("python3 runs");
        let behind = Behind { netns, listener };
        // Listening once it answers from its own namespace.
        host.wait_for("the listener behind the host", || {
            run_status(&format!(
                "ip netns exec {} busybox nc -w 1 198.51.100.2 8000 </dev/null | grep -q here",
                behind.netns
            ))
        });
        behind
    }
}

impl Drop for Behind {
    fn drop(&mut self) {
        let _ = self.listener.kill();
        let _ = self.listener.wait();
        let _ = Command::new("ip").args(["netns", "del", &self.netns]).status();
    }
}

fn run_status(command: &str) -> bool {
    Command::new("sh").args(["-c", command]).status().is_ok_and(|status| status.success())
}

fn run(command: &str) {
    assert!(run_status(command), "{command} failed");
}

/// Whether container `name` gets an answer from port 8000 at `address`.
fn answers(host: &Host, name: &str, address: &str) -> bool {
    let run =
        host.helper(&["run", name, "sh", "-c", &format!("nc -w 2 {address} 8000 </dev/null")]);
    run.stdout.trim() == "here"
}

#[test]
fn a_nat_container_reaches_the_internet_but_not_what_the_host_keeps_private() {
    let host = Host::new();
    let _behind = Behind::new(&host);
    allow(&host, r#"{"allowedForwardPorts": [{"from": 8000, "to": 8000}]}"#);
    host.ok(&["create", "nat", path_str(&host.tiny("n.nix", "1", "network.enableNat = true;"))]);
    host.start_booted("nat");
    // This host serves no DHCP: the address the helper pinned for its
    // internet interface, given by hand, and the host as its router.
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(host.state_dir().join("state.json")).unwrap(),
    )
    .unwrap();
    let address = state["containers"]["nat"]["internetIp"].as_str().expect("a pinned address");
    host.ok(&["run", "nat", "ip", "addr", "add", &format!("{address}/16"), "dev", "internet"]);
    host.ok(&["run", "nat", "ip", "route", "add", "default", "via", "10.202.0.1"]);

    // Its gateway, and what lies beyond the host on a public address.
    assert!(host.helper(&["run", "nat", "ping", "-c", "1", "-W", "2", "10.202.0.1"]).code == 0);
    assert!(answers(&host, "nat", "198.51.100.2"), "the internet is reached through the host");
    // Neither the metadata address nor a private network behind the host.
    assert!(!answers(&host, "nat", "169.254.169.254"), "the metadata address is not reached");
    assert!(!answers(&host, "nat", "192.168.77.1"), "a private network is not reached");

    // A port the host forwards to another container is the host's choice:
    // reached through the host's address, though the container's is private.
    let web = host.tiny("w.nix", "1", "forwardPorts = [ { hostPort = 8000; } ];");
    host.ok(&["create", "web", path_str(&web)]);
    host.start_booted("web");
    host.ok(&[
        "run",
        "web",
        "sh",
        "-c",
        "echo here | nc -l -p 8000 >/dev/null 2>&1 & \
         for i in $(seq 1000); do grep -qE ':1F40 [0-9A-F]+:0000 0A' /proc/net/tcp /proc/net/tcp6 && exit 0; sleep 0.02; done; exit 1",
    ]);
    assert!(
        answers(&host, "nat", "10.202.0.1"),
        "a forwarded port of another container is reached"
    );

    // Until the host allows the private network's port (the metadata
    // address stays out of reach).
    allow(
        &host,
        r#"{"allowedForwardPorts": [{"from": 8000, "to": 8000}],
            "allowedEgress": [{"network": "192.168.77.0/24", "ports": [{"from": 8000, "to": 8000}]}]}"#,
    );
    host.ok(&["repair-network"]);
    assert!(answers(&host, "nat", "192.168.77.1"), "the allowed network is reached");
    assert!(!answers(&host, "nat", "169.254.169.254"), "the metadata address is still not reached");
}
