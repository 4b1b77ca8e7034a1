//! The runtime commands on real unprivileged LXC: start, stop, terminate,
//! login, run, state, list, show-ip, autostart and live updates.

use crate::common::{path_str, tiny_file, Host};

#[test]
fn a_running_container_answers_and_runs_unprivileged() {
    let host = Host::new();
    let file = host.tiny("web.nix", "1", "");
    host.ok(&["create", "web", path_str(&file)]);
    assert_eq!(host.state("web"), "STOPPED");
    assert_eq!(host.start_booted("web"), "1");
    assert_eq!(host.state("web"), "RUNNING");
    let json: serde_json::Value =
        serde_json::from_str(&host.ok(&["state", "web", "--json"])).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"name": "web", "state": "RUNNING", "uids": "100000-165535", "limits": {}})
    );

    assert!(host.pings("10.101.0.2"), "the host reaches the container on brNC-hostonly");
    assert_eq!(host.helper(&["run", "web", "--", "sh", "-c", "exit 7"]).code, 7);
    let inside = host.ok(&["run", "web", "sh", "-c", "echo $PATH; ip -4 addr show hostonly"]);
    assert!(inside.contains("/run/current-system/sw/bin"), "{inside}");
    assert!(inside.contains("inet 10.101.0.2/16"), "{inside}");

    let login = host.helper_with_stdin(&["login", "web"], "echo logged in as $(id -u)\nexit 3\n");
    assert!(login.stdout.contains("logged in as 0"), "{login:?}");
    assert_eq!(login.code, 3, "login exits with the shell's status");

    // Root inside is uid 100000 outside, for init and for what `run` starts.
    host.ok(&["run", "web", "sh", "-c", "sleep 60 >/dev/null 2>&1 &"]);
    let processes = host.processes("web");
    assert!(processes.len() >= 2, "init and the sleep: {processes:?}");
    assert!(
        processes.iter().all(|(_, uid)| *uid >= 100000),
        "container processes run as host uids: {processes:?}"
    );

    // The store and the profile directory are read-only inside.
    let write = host.helper(&["run", "web", "sh", "-c", "touch /nix/store/x"]);
    assert_ne!(write.code, 0);
    assert!(write.stderr.contains("Read-only file system"), "{write:?}");
    assert_ne!(host.helper(&["run", "web", "touch", "/init/x"]).code, 0);

    let listed = host.ok(&["list", "--json"]);
    let rows: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(
        rows,
        serde_json::json!([{"name": "web", "state": "RUNNING", "ipv4": "10.101.0.2", "ipv6": [], "generation": 1, "autostart": false}])
    );
}

#[test]
fn updates_are_activated_in_a_running_container() {
    let host = Host::new();
    let v1 = host.tiny("v1.nix", "1", "");
    let v2 = host.tiny("v2.nix", "2", "");
    host.ok(&["create", "app", path_str(&v1)]);
    host.start_booted("app");
    let activated =
        || host.ok(&["run", "app", "cat", "/var/lib/tiny/activated"]).trim().to_string();

    let out = host.ok(&["update", "app", path_str(&v2)]);
    assert!(out.contains("activated generation 2"), "{out}");
    assert_eq!(activated(), "switch 2");
    host.ok(&["rollback", "app"]);
    assert_eq!(activated(), "switch 1");
    host.ok(&["switch-generation", "app", "2"]);
    assert_eq!(activated(), "switch 2");

    // A failed activation leaves the current generation, and what runs, as they were.
    let broken = host.file("broken.nix", &tiny_file("3", "", "switchExit = 3;"));
    let err = host.fails(&["update", "app", path_str(&broken)], 1);
    assert!(err.contains("activating generation 3 in 'app' failed with exit code 3"), "{err}");
    assert!(err.contains("failed on purpose"), "the activation's output is reported: {err}");
    assert!(err.contains("generation 2 of 'app' is current again"), "{err}");
    assert_eq!(host.current_generation("app"), "2");
    assert_eq!(activated(), "switch 2");
    assert!(
        !host.profiles_dir().join("app/profile-3-link").exists(),
        "the failed generation is gone"
    );
    let out = host.ok(&["update", "app"]);
    assert!(out.contains("unchanged"), "update without a file keeps the last good one: {out}");

    host.ok(&["stop", "app"]);
    assert_eq!(host.state("app"), "STOPPED");
    host.ok(&["rollback", "app"]);
    assert_eq!(host.start_booted("app"), "1", "a start boots the current generation");

    host.ok(&["terminate", "app"]);
    assert_eq!(host.state("app"), "STOPPED");
    let out = host.ok(&["stop", "app"]);
    assert!(out.contains("is not running"), "{out}");
}

#[test]
fn containers_share_hostonly_and_nat_adds_an_internet_interface() {
    let host = Host::new();
    let plain = host.tiny("plain.nix", "1", "");
    let natted = host.tiny("nat.nix", "1", "network.enableNat = true;");
    host.ok(&["create", "one", path_str(&plain)]);
    host.ok(&["create", "two", path_str(&plain)]);
    host.ok(&["create", "nat", path_str(&natted)]);
    // Booted: the tiny init has installed the applets (ip, ping) the test runs inside.
    for name in ["one", "two", "nat"] {
        host.start_booted(name);
    }
    for address in ["10.101.0.2", "10.101.0.3", "10.101.0.4"] {
        host.wait_for(&format!("{address} to answer"), || host.pings(address));
    }
    // The hostonly bridge is shared, but its ports are isolated (isolation.rs
    // has more): containers do not reach each other.
    assert_ne!(host.helper(&["run", "one", "ping", "-c", "1", "-W", "1", "10.101.0.3"]).code, 0);

    let links = host.ok(&["run", "nat", "ip", "-o", "link"]);
    assert!(links.contains(" internet@"), "{links}");
    let on_internet = host.ns_ok("ip -o link show master brNC-internet");
    assert_eq!(on_internet.lines().count(), 1, "one veth on brNC-internet: {on_internet}");
    let plain_links = host.ok(&["run", "one", "ip", "-o", "link"]);
    assert!(!plain_links.contains("internet"), "{plain_links}");
    // With NAT the default route is not the hostonly bridge's.
    let routes = host.ok(&["run", "nat", "ip", "route"]);
    assert!(!routes.contains("default via 10.101.0.1"), "{routes}");
    assert!(host.ok(&["run", "one", "ip", "route"]).contains("default via 10.101.0.1"));

    // list tells running from stopped, and says so when LXC lost a container.
    host.ok(&["stop", "two"]);
    let states = || -> Vec<String> {
        let rows: serde_json::Value = serde_json::from_str(&host.ok(&["list", "--json"])).unwrap();
        rows.as_array().unwrap().iter().map(|r| format!("{} {}", r["name"], r["state"])).collect()
    };
    assert_eq!(states(), [r#""nat" "RUNNING""#, r#""one" "RUNNING""#, r#""two" "STOPPED""#]);
    let lxc_dir = host.lxc_path().join("two");
    std::fs::rename(&lxc_dir, host.dir.path().join("two-away")).unwrap();
    assert_eq!(states()[2], r#""two" "MISSING""#);
    std::fs::rename(host.dir.path().join("two-away"), &lxc_dir).unwrap();
}

#[test]
fn autostart_containers_come_up_under_lxc_autostart() {
    let host = Host::new();
    host.ok(&["create", "auto", path_str(&host.tiny("auto.nix", "1", "autostart = true;"))]);
    host.ok(&["create", "manual", path_str(&host.tiny("manual.nix", "1", ""))]);
    let list = host.ok(&["list"]);
    assert!(list.lines().any(|l| l.starts_with("auto ") && l.ends_with("yes")), "{list}");

    // lxc-autostart picks them; the helper starts them, mounting what they see.
    let picked = host.lxc("lxc-autostart --list");
    assert_eq!(picked.stdout.split_whitespace().next(), Some("auto"), "{picked:?}");
    host.ok(&["start", "auto"]);
    assert_eq!(host.state("auto"), "RUNNING");
    assert_eq!(host.state("manual"), "STOPPED");

    let stopped = host.lxc("lxc-autostart --shutdown --timeout 10");
    assert_eq!(stopped.code, 0, "{stopped:?}");
    assert_eq!(host.state("auto"), "STOPPED");

    // The host module's boot service does the same, with its own shell.
    let Some(service) = autostart_service(&host) else { return };
    let start = host.ns_with_helper(&format!("bash -euo pipefail -c {}", shell_quote(&service.0)));
    assert_eq!(start.code, 0, "{start:?}");
    assert_eq!(host.state("auto"), "RUNNING");
    assert_eq!(host.state("manual"), "STOPPED");
    host.ok(&["start", "manual"]);
    let stop = host.ns_with_helper(&format!("bash -euo pipefail -c {}", shell_quote(&service.1)));
    assert_eq!(stop.code, 0, "{stop:?}");
    assert_eq!((host.state("auto"), host.state("manual")), ("STOPPED".into(), "STOPPED".into()));
}

/// The script and preStop of modules/host.nix's autostart service for this
/// host's LXC path, evaluated with nixpkgs' lib (NIXPKGS_LIB); None, saying
/// why, without it.
fn autostart_service(host: &Host) -> Option<(String, String)> {
    let Some(lib) = std::env::var("NIXPKGS_LIB").ok() else {
        eprintln!("skipped: set NIXPKGS_LIB to run the host module's autostart service");
        return None;
    };
    let output = std::process::Command::new("nix-instantiate")
        .args([
            "--eval",
            "--strict",
            "--json",
            &format!("{}/tests/nix/autostart-service.nix", crate::common::REPO),
        ])
        .args(["--argstr", "nixpkgsLib", &lib, "--argstr", "lxcPath", path_str(&host.lxc_path())])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let service: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    Some((service["script"].as_str()?.to_string(), service["preStop"].as_str()?.to_string()))
}

fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

#[test]
fn destroy_refuses_a_running_container_unless_forced() {
    let host = Host::new();
    host.ok(&["create", "busy", path_str(&host.tiny("busy.nix", "1", ""))]);
    host.ok(&["start", "busy"]);
    let err = host.fails(&["destroy", "busy"], 1);
    assert!(err.contains("is running"), "{err}");
    assert_eq!(host.state("busy"), "RUNNING");
    host.ok(&["destroy", "busy", "--force"]);
    assert_eq!(host.helper(&["exists", "busy"]).code, 1);
    assert!(!host.lxc_path().join("busy").exists());
}

#[test]
fn start_in_the_foreground_runs_until_the_container_stops() {
    let host = Host::new();
    host.ok(&["create", "fg", path_str(&host.tiny("fg.nix", "1", ""))]);
    let mut foreground = host.helper_command(&["start", "fg", "-l", "-F"]).spawn().unwrap();
    host.wait_for("the foreground container", || host.state("fg") == "RUNNING");
    assert!(foreground.try_wait().unwrap().is_none(), "start -F waits while the container runs");
    // Other commands do not wait for the foreground start. The live update
    // runs its activation with the guest's /bin/sh, which the tiny system's
    // init makes as it boots: on a busy host an update as soon as LXC says
    // RUNNING came before it.
    host.wait_for("fg to boot", || {
        host.helper(&["run", "fg", "cat", "/var/lib/tiny/booted"]).code == 0
    });
    host.ok(&["update", "fg", path_str(&host.tiny("fg2.nix", "2", ""))]);
    host.ok(&["stop", "fg"]);
    assert!(foreground.wait().unwrap().success());
}

#[test]
fn runtime_commands_name_unknown_containers_and_stopped_ones() {
    let host = Host::new();
    for args in [
        vec!["start", "ghost"],
        vec!["stop", "ghost"],
        vec!["terminate", "ghost"],
        vec!["state", "ghost"],
        vec!["show-ip", "ghost"],
        vec!["login", "ghost"],
        vec!["run", "ghost", "true"],
        vec!["list-generations", "ghost"],
        vec!["rollback", "ghost"],
    ] {
        let err = host.fails(&args, 1);
        assert!(err.contains("no container named 'ghost'"), "{args:?}: {err}");
    }
    host.ok(&["create", "idle", path_str(&host.tiny("idle.nix", "1", ""))]);
    let err = host.fails(&["run", "idle", "true"], 1);
    assert!(err.contains("container 'idle' is not running"), "{err}");
}

#[test]
fn start_names_a_missing_bridge() {
    let host = Host::new();
    host.allow_bridge("brMissing", "10.10.0.1", 16);
    let file =
        host.tiny("own.nix", "1", r#"network = { bridge = "brMissing"; ip = "10.10.1.2"; };"#);
    host.ok(&["create", "own", path_str(&file)]);
    let err = host.fails(&["start", "own"], 1);
    assert!(err.contains("bridge brMissing does not exist"), "{err}");
    host.add_bridge("brMissing", "10.10.0.1/16");
    host.ok(&["start", "own"]);
    host.wait_for("10.10.1.2", || host.pings("10.10.1.2"));
}

#[test]
fn start_names_a_directory_the_container_cannot_reach() {
    let host = Host::new();
    host.ok(&["create", "shut", path_str(&host.tiny("shut.nix", "1", ""))]);
    use std::os::unix::fs::PermissionsExt;
    let dir = host.dir.path();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let err = host.fails(&["start", "shut"], 1);
    assert!(err.contains("cannot reach") && err.contains("chmod o+x"), "{err}");
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    host.ok(&["start", "shut"]);
}
