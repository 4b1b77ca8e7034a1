//! Network confinement: where a container's forwarded traffic may go, and
//! that a container's forwarded ports go with it, whatever stopped it.

use std::time::Duration;

use crate::common::{path_str, tiny_file, Host};

fn allow(host: &Host, json: &str) {
    std::fs::write(host.dir.path().join("host.json"), json).unwrap();
}

/// The forwards' table as nft lists it (nothing where there is none).
fn forwards(host: &Host) -> String {
    host.ns("nft list table ip nixcloud-container-forwards 2>/dev/null").stdout
}

/// Whether a connection to host port 8080 from the host reaches `web`'s
/// listener on port 80 (started here, ended by the connection).
fn reaches_web(host: &Host) -> bool {
    host.ok(&[
        "run",
        "web",
        "sh",
        "-c",
        "nc -l -p 80 >/dev/null 2>&1 & \
         for i in $(seq 100); do grep -qE ':0050 [0-9A-F]+:0000 0A' /proc/net/tcp /proc/net/tcp6 && exit 0; sleep 0.02; done; exit 1",
    ]);
    host.ns("echo hello | busybox nc -w 2 10.101.0.1 8080").code == 0
}

#[test]
fn a_forward_goes_within_two_seconds_whatever_stopped_its_container() {
    let host = Host::new();
    allow(&host, r#"{"allowedForwardPorts": [{"from": 8000, "to": 8999}]}"#);
    let file = host.file(
        "web.nix",
        &tiny_file("1", "forwardPorts = [ { hostPort = 8080; containerPort = 80; } ];", ""),
    );
    host.ok(&["create", "web", path_str(&file)]);
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
fn a_container_that_reboots_keeps_its_forwards() {
    let host = Host::new();
    allow(&host, r#"{"allowedForwardPorts": [{"from": 8000, "to": 8999}]}"#);
    let file = host.file(
        "web.nix",
        &tiny_file("1", "forwardPorts = [ { hostPort = 8080; containerPort = 80; } ];", ""),
    );
    host.ok(&["create", "web", path_str(&file)]);
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
