//! The runtime commands on real unprivileged LXC: start, stop, terminate,
//! login, run, state, list, show-ip, autostart and live updates.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::common::{path_str, tiny_file, Host, Run};

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

/// A tiny container file whose guest boots only once `/boot-gate` exists
/// in it (examples/tiny/system.nix's bootGate): until then it has no
/// /bin/sh, no /run/current-system and no boot record, as a NixOS guest
/// early in its boot.
fn gated(host: &Host, file: &str, version: &str) -> PathBuf {
    host.file(file, &tiny_file(version, "", r#"bootGate = "/boot-gate";"#))
}

/// Runs the helper with `args` in the background until it says `waiting`,
/// checks that the tiny guest of container `name` has not been switched
/// (since its boot), calls `go_on`, and returns what the helper did.
fn run_until_waiting(
    host: &Host,
    name: &str,
    args: &[&str],
    waiting: &str,
    go_on: impl FnOnce(),
) -> Run {
    use std::io::BufRead;
    let mut helper = host
        .helper_command(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the helper starts");
    let mut stderr = std::io::BufReader::new(helper.stderr.take().unwrap());
    let mut said = String::new();
    while !said.contains(waiting) {
        let read = stderr.read_line(&mut said).unwrap();
        assert!(read > 0, "{args:?} ended without saying {waiting:?}: {said}");
    }
    // It has switched nothing so far.
    let activated = host.lxc_path().join(name).join("rootfs/var/lib/tiny/activated");
    assert!(!activated.exists(), "{args:?} switched before it was done waiting");
    go_on();
    std::io::Read::read_to_string(&mut stderr, &mut said).unwrap();
    let output = helper.wait_with_output().unwrap();
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: said,
    }
}

#[test]
fn an_update_of_a_guest_that_still_boots_waits_for_the_boot_then_switches() {
    let host = Host::new();
    host.ok(&["create", "slow", path_str(&gated(&host, "s1.nix", "1"))]);
    host.ok(&["start", "slow"]);
    let v2 = host.tiny("s2.nix", "2", "");
    let rootfs = host.lxc_path().join("slow/rootfs");
    let waiting = "waiting for 'slow' to finish booting";
    let updated =
        run_until_waiting(&host, "slow", &["update", "slow", path_str(&v2)], waiting, || {
            assert!(!rootfs.join("bin/sh").exists(), "the guest has no shell yet");
            std::fs::write(rootfs.join("boot-gate"), "").unwrap();
        });
    assert_eq!(updated.code, 0, "{updated:?}");
    assert!(
        updated.stdout.contains("activated generation 2 in running container 'slow'"),
        "{updated:?}"
    );
    assert_eq!(host.wait_booted(&["slow"]), ["1"], "it booted generation 1, then switched");
    assert_eq!(host.ok(&["run", "slow", "cat", "/var/lib/tiny/activated"]).trim(), "switch 2");
    assert_eq!(host.current_generation("slow"), "2");
    assert_eq!(host.ok(&["logs", "slow"]), "tiny: booted version 1\ntiny: switch to version 2\n");
}

#[test]
fn a_guest_that_does_not_finish_booting_is_not_switched() {
    let host = Host::new();
    host.ok(&["create", "stuck", path_str(&gated(&host, "s1.nix", "1"))]);
    host.ok(&["start", "stuck"]);
    let rootfs = host.lxc_path().join("stuck/rootfs");
    let v2 = host.tiny("s2.nix", "2", "");
    let error = host.fails(&["update", "stuck", path_str(&v2), "--health-timeout", "2"], 1);
    assert!(
        error.contains("generation 1 of 'stuck' is current again: generation 2 was not activated")
            && error.contains("'stuck' did not finish booting within 2 s")
            && error.contains("(--health-timeout 0 switches without waiting)"),
        "{error}"
    );
    assert_eq!(host.current_generation("stuck"), "1");
    assert!(!host.profiles_dir().join("stuck/profile-2-link").exists(), "the new one is gone");
    // --no-rollback keeps it current, for the next start.
    let error = host
        .fails(&["update", "stuck", path_str(&v2), "--health-timeout", "1", "--no-rollback"], 1);
    assert!(
        error.contains("generation 2 of 'stuck' stays current, as --no-rollback asks"),
        "{error}"
    );
    assert_eq!(host.current_generation("stuck"), "2");
    // Nothing was switched in the guest meanwhile; once booted, it runs
    // what it booted, and a start boots the current one.
    assert!(!rootfs.join("var/lib/tiny/activated").exists());
    std::fs::write(rootfs.join("boot-gate"), "").unwrap();
    assert_eq!(host.wait_booted(&["stuck"]), ["1"]);
    assert!(!rootfs.join("var/lib/tiny/activated").exists());
    host.ok(&["stop", "stuck"]);
    assert_eq!(host.start_booted("stuck"), "2");
}

#[test]
fn a_switch_comes_after_one_still_running_inside() {
    let host = Host::new();
    host.ok(&["create", "app", path_str(&host.tiny("a1.nix", "1", ""))]);
    host.start_booted("app");
    // A switch-to-configuration of a killed helper, as NixOS's holds its
    // lock (the tiny guest's busybox has no flock: the host's holds the
    // guest's file, which is the same lock).
    host.ok(&[
        "run",
        "app",
        "sh",
        "-c",
        "mkdir -p /run/nixos && touch /run/nixos/switch-to-configuration.lock",
    ]);
    let lock = host.lxc_path().join("app/rootfs/run/nixos/switch-to-configuration.lock");
    let mut earlier = Command::new("flock")
        .arg(&lock)
        .args(["head", "-c", "1"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let held =
        || !Command::new("flock").arg("-n").arg(&lock).arg("true").status().unwrap().success();
    host.wait_for("the earlier switch to hold the lock", held);
    let v2 = host.tiny("a2.nix", "2", "");
    let waiting = "waiting for the switch-to-configuration still running in 'app' to finish";
    let updated =
        run_until_waiting(&host, "app", &["update", "app", path_str(&v2)], waiting, || {
            drop(earlier.stdin.take());
            assert!(earlier.wait().unwrap().success());
        });
    assert_eq!(updated.code, 0, "{updated:?}");
    assert_eq!(host.ok(&["run", "app", "cat", "/var/lib/tiny/activated"]).trim(), "switch 2");

    // A link the guest put there instead is not followed (the file it
    // names stays held, and is no lock of a switch).
    let earlier = Command::new("flock")
        .arg(&lock)
        .args(["head", "-c", "1"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    host.wait_for("the lock to be held again", held);
    host.ok(&["run", "app", "mv", "/run/nixos/switch-to-configuration.lock", "/run/nixos/held"]);
    host.ok(&["run", "app", "ln", "-s", "held", "/run/nixos/switch-to-configuration.lock"]);
    let updated = host.helper(&["update", "app", path_str(&host.tiny("a3.nix", "3", ""))]);
    assert_eq!(updated.code, 0, "{updated:?}");
    assert!(!updated.stderr.contains("waiting for the switch"), "{updated:?}");
    assert_eq!(host.ok(&["run", "app", "cat", "/var/lib/tiny/activated"]).trim(), "switch 3");
    drop(earlier);
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
    host.wait_booted(&["fg"]);
    // Other commands do not wait for the foreground start.
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

/// `list` answers from the containers' command sockets and cgroups, with no
/// lxc-ls (one on PATH fails here): in each state the tests can make, it
/// says what `lxc-ls` says. The hand-started container has none of the
/// helper's records (no monitor pidfile), as one that root started with
/// lxc-start.
#[test]
fn list_says_what_lxc_ls_says_without_running_it() {
    let host = Host::new();
    let names = ["by-hand", "ended", "frozen", "running", "stopped"];
    for name in names {
        host.ok(&["create", name, path_str(&host.tiny(&format!("{name}.nix"), "1", ""))]);
    }
    host.ok(&["start", "running", "frozen", "ended"]);
    host.wait_booted(&["running", "frozen", "ended"]);
    // LXC freezes through the container's cgroup; where it has none of its
    // own (this test machine: "LXC did not find usable cgroup hierarchies"),
    // lxc-freeze fails and the container stays RUNNING for both.
    let froze = host.lxc("lxc-freeze -n frozen").code == 0;
    if !froze {
        eprintln!("not checked: lxc-freeze cannot freeze here (no cgroup of LXC's own)");
    }
    // The tiny init exits on SIGTERM: the container stops by itself.
    let init = host.lxc("lxc-info -n ended -pH").stdout.trim().parse::<i32>().unwrap();
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(init).unwrap(),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    host.wait_for("'ended' to stop by itself", || {
        host.lxc("lxc-info -n ended -sH").stdout.trim() == "STOPPED"
    });
    // lxc-start by hand, LXC mounting what the helper would mount.
    let profile = host.profiles_dir().join("by-hand");
    let by_hand = host.lxc(&format!(
        "lxc-start -n by-hand -s 'lxc.mount.entry=/nix/store nix/store none ro,bind,create=dir 0 0' \
         -s 'lxc.mount.entry={} init none ro,bind,create=dir 0 0'",
        profile.display()
    ));
    assert_eq!(by_hand.code, 0, "{by_hand:?}");
    host.wait_booted(&["by-hand"]);
    assert!(!host.lxc_path().join("by-hand").join("monitor.pid").exists(), "no helper record");

    let frozen = if froze { "frozen FROZEN" } else { "frozen RUNNING" };
    let expected =
        ["by-hand RUNNING", "ended STOPPED", frozen, "running RUNNING", "stopped STOPPED"];
    let fancy = host.lxc("lxc-ls --fancy --fancy-format name,state").stdout;
    let by_lxc_ls: Vec<String> =
        fancy.lines().skip(1).map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).collect();
    assert_eq!(by_lxc_ls, expected, "{fancy}");

    let no_lxc_ls = host.dir.path().join("no-lxc-ls");
    std::fs::create_dir(&no_lxc_ls).unwrap();
    std::fs::write(no_lxc_ls.join("lxc-ls"), "#!/bin/sh\necho lxc-ls ran >&2\nexit 99\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(no_lxc_ls.join("lxc-ls"), std::fs::Permissions::from_mode(0o755))
        .unwrap();
    let path = format!("{}:{}", no_lxc_ls.display(), std::env::var("PATH").unwrap());
    let listed: Run = host
        .helper_command(&["list", "--format", "csv", "--columns", "name,state", "--no-header"])
        .env("PATH", path)
        .output()
        .unwrap()
        .into();
    assert_eq!(listed.code, 0, "{listed:?}");
    let by_list: Vec<String> = listed.stdout.lines().map(|l| l.replace(',', " ")).collect();
    assert_eq!(by_list, expected, "{listed:?}");
    if froze {
        assert_eq!(host.lxc("lxc-unfreeze -n frozen").code, 0);
    }
}

/// What a container was started with is recorded beside the state
/// (`started/<name>.json`, read by list, show-ip and the network rules)
/// while it runs, and goes when it stops: a stop, or a start that fails.
/// One that stopped by itself keeps it until its next start, which writes
/// what it starts with now.
#[test]
fn a_start_record_lives_while_its_container_runs() {
    let host = Host::new();
    host.ok(&["create", "rec", path_str(&host.tiny("rec.nix", "1", ""))]);
    let record = host.state_dir().join("started/rec.json");
    let recorded = || std::fs::read_to_string(&record).ok();
    assert_eq!(recorded(), None, "never started");
    host.ok(&["start", "rec"]);
    assert!(recorded().is_some_and(|text| text.contains("\"generation\":1")), "{:?}", recorded());
    host.ok(&["stop", "rec"]);
    assert_eq!(recorded(), None, "stopped");

    host.ok(&["start", "rec"]);
    host.wait_booted(&["rec"]);
    // LXC's log of the start is a memory file (lxc/mod.rs `start`), which
    // its monitor keeps open to log into, and no process of the container.
    let holds_log = |pid: &str| {
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).into_iter().flatten().flatten();
        fds.filter_map(|fd| std::fs::read_link(fd.path()).ok())
            .any(|target| target.to_string_lossy().starts_with("/memfd:lxc-start.log"))
    };
    let monitor = std::fs::read_to_string(host.lxc_path().join("rec/monitor.pid")).unwrap();
    assert!(holds_log(monitor.trim()), "the monitor logs into it");
    let inside = host.pids("rec");
    assert!(!inside.is_empty());
    for pid in inside {
        assert!(!holds_log(&pid.to_string()), "process {pid} of the container holds LXC's log");
    }
    // The tiny init exits on SIGTERM: the container stops by itself.
    let init = host.lxc("lxc-info -n rec -pH").stdout.trim().parse::<i32>().unwrap();
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(init).unwrap(),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    host.wait_for("'rec' to stop by itself", || host.state("rec") == "STOPPED");
    assert!(recorded().is_some(), "nothing ran when it stopped by itself");
    host.ok(&["update", "rec", path_str(&host.tiny("rec2.nix", "2", ""))]);
    host.ok(&["start", "rec"]);
    assert!(recorded().is_some_and(|text| text.contains("\"generation\":2")), "{:?}", recorded());
    // A start that fails for one already running leaves that run's record.
    let err = host.fails(&["start", "rec", "-l", "--bogus"], 1);
    assert!(err.contains("unrecognized option '--bogus'"), "{err}");
    assert!(recorded().is_some_and(|text| text.contains("\"generation\":2")), "{:?}", recorded());
    host.ok(&["terminate", "rec"]);
    assert_eq!(recorded(), None, "terminated");

    // A start that fails leaves no record, an old one included.
    std::fs::write(&record, "{\"generation\":1}").unwrap();
    let err = host.fails(&["start", "rec", "-l", "junk"], 1);
    assert!(err.contains("Failed to exec \"junk\""), "{err}");
    assert_eq!(recorded(), None, "the start failed");
}

/// `autostart` starts the containers LXC would autostart, in LXC's order: a
/// group (one lxc.start.order) starts only after the group before it has
/// started and that group's lxc.start.delay has passed. The times are the
/// kernel's start times of the containers' inits (init starts before its
/// lxc-start returns). A container that cannot start is named, and the
/// others start regardless; one without autostart stays stopped.
#[test]
fn autostart_starts_each_group_after_the_one_before_and_its_delay() {
    let host = Host::new();
    let create = |name: &str, autostart: &str, settings: &str| {
        let file = host.tiny(&format!("{name}.nix"), "1", autostart);
        let conf = host.file(&format!("{name}.conf"), settings);
        host.ok(&["create", name, path_str(&file), "--lxc-config", path_str(&conf)]);
    };
    create("first", "autostart = true;", "lxc.start.order = 1\nlxc.start.delay = 2\n");
    create("second-a", "autostart = true;", "lxc.start.order = 5\n");
    create("second-b", "autostart = true;", "lxc.start.order = 5\n");
    create("broken", "autostart = true;", "lxc.start.order = 5\n");
    create("manual", "", "lxc.start.order = 5\n");
    // Root's say (--autostart yes) counts as it does for lxc-autostart.
    create("third", "", "lxc.start.order = 9\n");
    host.ok(&["update", "third", "--autostart", "yes"]);
    // LXC's order of what it would autostart, before 'broken' loses its
    // LXC directory (its start then fails).
    let lxc_order = host.lxc("lxc-autostart --all --list").stdout;
    let lxc_order: Vec<&str> =
        lxc_order.lines().filter_map(|l| l.split_whitespace().next()).collect();
    assert_eq!(lxc_order, ["first", "broken", "second-a", "second-b", "third"]);
    std::fs::rename(host.lxc_path().join("broken"), host.dir.path().join("broken-away")).unwrap();

    let run = host.ns_with_helper("nixcloud-container autostart --jobs 4");
    assert_eq!(run.code, 1, "{run:?}");
    let last = run.stderr.lines().last().unwrap_or_default();
    assert_eq!(last, "error: 1 of 5 autostart containers did not start: broken", "{run:?}");
    assert_eq!(host.state("manual"), "STOPPED");

    let clock = Command::new("getconf").arg("CLK_TCK").output().unwrap();
    let ticks_per_second: f64 = String::from_utf8_lossy(&clock.stdout).trim().parse().unwrap();
    let started = |name: &str| -> f64 {
        assert_eq!(host.state(name), "RUNNING", "{name}");
        let init = host.lxc(&format!("lxc-info -n {name} -pH")).stdout.trim().to_string();
        let stat = std::fs::read_to_string(format!("/proc/{init}/stat")).unwrap();
        // Field 22, starttime, in clock ticks after boot; fields from 3 on
        // follow the command's closing parenthesis.
        let after_command = stat.rsplit_once(')').unwrap().1;
        let ticks: f64 = after_command.split_whitespace().nth(19).unwrap().parse().unwrap();
        ticks / ticks_per_second
    };
    let first = started("first");
    let second = [started("second-a"), started("second-b")];
    let third = started("third");
    let tick = 1.0 / ticks_per_second;
    for at in second {
        assert!(at - first >= 2.0 - tick, "second group {at} s, first {first} s: no 2 s delay");
        assert!(third >= at, "third {third} s started before the second group ({at} s)");
    }
}
