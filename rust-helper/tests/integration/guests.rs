//! What a NixOS guest meets under LXC, shown with tiny systems: the store and
//! /init owned by root inside and locked read-only; Nix through the host's
//! daemon where the host allows it; the terminals named for systemd's getty
//! generator; the sysctls of its own network namespace; update results by
//! switch-to-configuration's exit code; a stateVersion fixed at create.

use std::path::Path;
use std::process::Command;

use crate::common::{path_str, tiny_file, Host, REPO};

#[test]
fn the_store_and_init_are_roots_inside_and_locked_read_only() {
    let host = Host::new();
    host.ok(&["create", "owner", path_str(&host.tiny("o.nix", "1", ""))]);
    host.start_booted("owner");
    let store_file =
        std::fs::read_link(host.profiles_dir().join("owner/profile/system")).unwrap().join("init");
    let owners = host.ok(&[
        "run",
        "owner",
        "stat",
        "-c",
        "%u",
        "/nix/store",
        path_str(&store_file),
        "/init",
        "/init/profile",
    ]);
    assert_eq!(owners.split_whitespace().collect::<Vec<_>>(), ["0", "0", "0", "0"], "{owners}");
    for attempt in [
        "touch /nix/store/escape",
        "touch /init/escape",
        "mount -o remount,rw,bind /nix/store",
        "mount -o remount,rw /init",
        "umount /nix/store",
        "umount -l /init",
    ] {
        let run = host.helper(&["run", "owner", "sh", "-c", attempt]);
        assert_ne!(run.code, 0, "{attempt} must fail: {run:?}");
    }
    assert!(!Path::new("/nix/store/escape").exists());
    // Mounted where the container starts, not in the host's mount table.
    assert_eq!(host.mounts_in_host_table(), Vec::<String>::new());

    // Where the host has no idmapped mounts, the store's paths are nobody's
    // inside, and still read-only.
    host.ok(&["stop", "owner"]);
    std::fs::write(host.dir.path().join("host.json"), r#"{"idmappedMounts": false}"#).unwrap();
    host.start_booted("owner");
    assert_eq!(
        host.ok(&["run", "owner", "stat", "-c", "%u", path_str(&store_file)]).trim(),
        "65534"
    );
    assert_ne!(host.helper(&["run", "owner", "touch", "/nix/store/escape"]).code, 0);
}

#[test]
fn the_terminals_are_named_for_systemds_getty_generator() {
    let host = Host::new();
    host.ok(&["create", "ttys", path_str(&host.tiny("t.nix", "1", ""))]);
    host.start_booted("ttys");
    let environment = host.ok(&["run", "ttys", "sh", "-c", "tr '\\0' '\\n' < /proc/1/environ"]);
    assert!(
        environment.lines().any(|l| l == "container_ttys=pts/1 pts/2 pts/3 pts/4"),
        "{environment}"
    );
    // tty1 to tty4 are those terminals, one each.
    let devices = host.ok(&["run", "ttys", "stat", "-c", "%t:%T", "/dev/tty1", "/dev/pts/1"]);
    let devices: Vec<&str> = devices.split_whitespace().collect();
    assert_eq!(devices[0], devices[1], "/dev/tty1 is pts/1");
}

#[test]
fn a_guest_sets_the_sysctls_of_its_own_network_only() {
    let host = Host::new();
    host.ok(&["create", "tuned", path_str(&host.tiny("s.nix", "1", ""))]);
    host.start_booted("tuned");
    host.ok(&["run", "tuned", "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"]);
    assert_eq!(host.ok(&["run", "tuned", "cat", "/proc/sys/net/ipv4/ip_forward"]).trim(), "1");
    let outside = host.ns("cat /proc/sys/net/ipv4/ip_forward");
    assert_eq!(outside.stdout.trim(), "0", "the host's own network is untouched");
    let kernel = host.helper(&["run", "tuned", "sh", "-c", "echo 1 > /proc/sys/vm/swappiness"]);
    assert_ne!(kernel.code, 0, "the host kernel's sysctls are read-only: {kernel:?}");
}

#[test]
fn update_results_say_what_failed_and_roll_back_unless_kept() {
    let host = Host::new();
    host.ok(&["create", "app", path_str(&host.tiny("v1.nix", "1", ""))]);
    host.start_booted("app");
    let activated =
        || host.ok(&["run", "app", "cat", "/var/lib/tiny/activated"]).trim().to_string();

    let snippets = host.file(
        "snippets.nix",
        &tiny_file("2", "", r#"switchExit = 2; failedSnippets = [ "specialfs" "users" ];"#),
    );
    let err = host.fails(&["update", "app", path_str(&snippets)], 1);
    assert!(err.contains("activation snippets failed: specialfs, users"), "{err}");
    assert!(err.contains("generation 1 of 'app' is current again"), "{err}");
    assert_eq!((host.current_generation("app"), activated()), ("1".into(), "switch 1".into()));

    let units = host.file(
        "units.nix",
        &tiny_file("3", "", r#"switchExit = 4; failedUnits = [ "web.service" "db.service" ];"#),
    );
    let err = host.fails(&["update", "app", path_str(&units)], 1);
    assert!(err.contains("units failed: web.service, db.service"), "{err}");
    assert_eq!(host.current_generation("app"), "1");

    let could_not = host.file("could-not.nix", &tiny_file("4", "", "switchExit = 1;"));
    let err = host.fails(&["update", "app", path_str(&could_not)], 1);
    assert!(err.contains("switch-to-configuration could not switch"), "{err}");

    // --no-rollback keeps what failed, as nixos-rebuild does.
    let err = host.fails(&["update", "app", path_str(&units), "--no-rollback"], 1);
    assert!(err.contains("stays current, as --no-rollback asks"), "{err}");
    let kept = host.current_generation("app");
    assert_ne!(kept, "1");
    assert_eq!(activated(), "switch 3");
    host.ok(&["rollback", "app"]);
    assert_eq!((host.current_generation("app"), activated()), ("1".into(), "switch 1".into()));

    // 100: the new init takes effect at the next start; nothing failed.
    let restart = host.file("restart.nix", &tiny_file("5", "", "switchExit = 100;"));
    let out = host.ok(&["update", "app", path_str(&restart)]);
    assert!(out.contains("has a new init: it runs from the container's next start"), "{out}");
    assert_eq!(
        host.helper(&["list-generations", "app"])
            .stdout
            .lines()
            .last()
            .map(|l| l.contains("(current)")),
        Some(true)
    );
}

/// Copies a host program with its libraries into the container's rootfs,
/// at the same paths (Debian's nix is no store path a container sees).
fn copy_into_rootfs(host: &Host, container: &str, program: &str) {
    let rootfs = host.lxc_path().join(container).join("rootfs");
    let libraries = Command::new("ldd").arg(program).output().unwrap();
    let mut files = vec![program.to_string()];
    for line in String::from_utf8_lossy(&libraries.stdout).lines() {
        let path = line.split("=>").last().unwrap().split_whitespace().next().unwrap_or("");
        if path.starts_with('/') {
            files.push(path.to_string());
        }
    }
    for file in files {
        let target = rootfs.join(file.trim_start_matches('/'));
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(&file, &target).unwrap_or_else(|err| panic!("{file}: {err}"));
    }
}

/// Runs Debian's nix-daemon for a test, on the host's store, listening at
/// `<dir>/socket` (Nix 2.8 reads NIX_DAEMON_SOCKET_PATH), as a daemon that a
/// host runs for its containers would; stops it when dropped.
struct NixDaemon {
    child: std::process::Child,
    socket: std::path::PathBuf,
}

impl NixDaemon {
    fn start(host: &Host, dir: &Path) -> NixDaemon {
        let socket = dir.join("socket");
        let child = Command::new("nix-daemon")
            .env("NIX_DAEMON_SOCKET_PATH", &socket)
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("Debian's nix-daemon starts");
        host.wait_for("nix-daemon's socket", || socket.exists());
        NixDaemon { child, socket }
    }
}

impl Drop for NixDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.socket);
    }
}

#[test]
fn nix_inside_works_through_the_hosts_daemon_only_where_allowed() {
    let host = Host::new();
    let with_daemon = host.tiny("daemon.nix", "1", "nixDaemon = true;");
    let err = host.fails(&["create", "builder", path_str(&with_daemon)], 1);
    assert!(err.contains("which this host does not allow"), "{err}");
    host.assert_nothing_created();

    // The daemon's socket directory as Debian makes the host's (root:nix-users
    // 0770, here root:root): only its owner and group may enter it, and a
    // container's root is neither.
    use std::os::unix::fs::PermissionsExt;
    let sockets = host.dir.path().join("daemon-socket");
    std::fs::create_dir(&sockets).unwrap();
    std::fs::set_permissions(&sockets, std::fs::Permissions::from_mode(0o770)).unwrap();
    std::fs::write(
        host.dir.path().join("host.json"),
        serde_json::json!({ "allowNixDaemon": true, "nixDaemonSocketDir": sockets }).to_string(),
    )
    .unwrap();
    let _daemon = NixDaemon::start(&host, &sockets);
    host.ok(&["create", "builder", path_str(&with_daemon)]);
    host.ok(&["create", "plain", path_str(&host.tiny("plain.nix", "1", ""))]);
    let started = host.helper(&["start", "builder"]);
    assert_eq!(started.code, 0, "{started:?}");
    let warnings: Vec<&str> = started
        .stderr
        .lines()
        .filter(|line| line.contains("cannot reach the nix-daemon"))
        .collect();
    assert_eq!(warnings.len(), 1, "{started:?}");
    assert!(warnings[0].contains("does not let others in"), "{started:?}");
    host.wait_for("builder to boot", || {
        host.helper(&["run", "builder", "cat", "/var/lib/tiny/booted"]).code == 0
    });
    host.start_booted("plain");
    for name in ["builder", "plain"] {
        copy_into_rootfs(&host, name, "/usr/bin/nix");
        let rootfs = host.lxc_path().join(name).join("rootfs");
        std::os::unix::fs::symlink("nix", rootfs.join("usr/bin/nix-build")).unwrap();
    }
    let busybox = std::fs::read_to_string(host.state_dir().join("busybox.json")).unwrap();
    let busybox: serde_json::Value = serde_json::from_str(&busybox).unwrap();
    let token = format!("built-inside-{}", std::process::id());
    let expression = format!(
        r#"let bb = "${{builtins.storePath "{store}"}}/busybox"; in derivation {{ name = "{token}"; system = builtins.currentSystem; builder = bb; args = [ "sh" "-c" "echo from inside > $out" ]; }}"#,
        store = busybox["storePath"].as_str().unwrap(),
    );
    let build = |name: &str| {
        host.helper(&[
            "run",
            name,
            "--",
            "env",
            "NIX_REMOTE=daemon",
            "HOME=/root",
            "/usr/bin/nix-build",
            "--no-out-link",
            "-E",
            &expression,
        ])
    };
    // The mount keeps the directory's group rule: inside it is nobody's, and
    // root there is let in as any other host user would be.
    let listed = host.helper(&["run", "builder", "--", "ls", "/nix/var/nix/daemon-socket"]);
    assert!(listed.code != 0 && listed.stderr.contains("Permission denied"), "{listed:?}");
    let closed = build("builder");
    assert!(closed.code != 0 && closed.stderr.contains("Permission denied"), "{closed:?}");

    // Opened to others (as NixOS makes the host's, 0755), at once.
    std::fs::set_permissions(&sockets, std::fs::Permissions::from_mode(0o755)).unwrap();
    let built = build("builder");
    assert_eq!(built.code, 0, "{built:?}");
    let out = built.stdout.trim();
    assert!(out.starts_with("/nix/store/") && out.ends_with(&token), "{built:?}");
    assert_eq!(std::fs::read_to_string(out).unwrap(), "from inside\n", "the host's store has it");

    let refused = build("plain");
    assert_ne!(refused.code, 0);
    assert!(refused.stderr.contains("daemon-socket/socket"), "{refused:?}");
}

#[test]
fn a_nixos_container_keeps_the_release_it_was_created_with() {
    let Some(lib) = std::env::var("NIXPKGS_LIB").ok() else {
        eprintln!("skipped: set NIXPKGS_LIB to evaluate NixOS configurations");
        return;
    };
    let host = Host::new();
    let fake = format!("-I nixpkgs={REPO}/tests/fake-nixpkgs -I nixpkgs-lib={lib}");
    let plain = host.file("versioned.nix", "{ pkgs, ip, name, ... }: { }");
    let example = path_str(&plain).to_string();
    let created = host.helper(&["create", "versioned", &example, "-n", &fake, "--verbose"]);
    assert_eq!(created.code, 0, "{created:?}");
    assert!(
        created.stderr.contains("nixos-evaluation of versioned (stateVersion 26.05)"),
        "{created:?}"
    );
    let state: serde_json::Value =
        serde_json::from_str(&host.ok(&["state", "versioned", "--json"])).unwrap();
    assert_eq!(state["stateVersion"], "26.05");

    // A newer nixpkgs later: the container keeps its release.
    let newer = host.dir.path().join("newer-nixpkgs");
    std::fs::create_dir_all(newer.join("lib")).unwrap();
    std::fs::create_dir_all(newer.join("nixos/lib")).unwrap();
    std::fs::write(newer.join("lib/.version"), "27.05").unwrap();
    std::fs::write(
        newer.join("nixos/lib/eval-config.nix"),
        format!("import {REPO}/tests/fake-nixpkgs/nixos/lib/eval-config.nix"),
    )
    .unwrap();
    let newer_args = format!("-I nixpkgs={} -I nixpkgs-lib={lib}", newer.display());
    let updated = host.helper(&["update", "versioned", "-n", &newer_args, "--verbose"]);
    assert_eq!(updated.code, 0, "{updated:?}");
    assert!(updated.stderr.contains("(stateVersion 26.05)"), "{updated:?}");
    // A new container gets the newer release.
    let other = host.helper(&["create", "fresh", &example, "-n", &newer_args, "--verbose"]);
    assert!(other.stderr.contains("nixos-evaluation of fresh (stateVersion 27.05)"), "{other:?}");
    // A configuration that sets its own keeps it.
    let own = format!("{REPO}/examples/example.nix");
    let seed = host.helper(&["create", "seed", &own, "-n", &fake, "--verbose"]);
    assert!(seed.stderr.contains("nixos-evaluation of seed (stateVersion 25.11)"), "{seed:?}");
}
