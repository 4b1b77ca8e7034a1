//! What users ask of every container tool: bind mounts, port forwards,
//! devices, root's own LXC settings, restart, start --wait, logs, IPv6,
//! ephemeral roots.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::common::{built_by_script, listens_on, path_str, tiny_file, Host};

/// A tiny container file with `attrs` besides its system.
fn with(host: &Host, file: &str, version: &str, attrs: &str) -> std::path::PathBuf {
    host.file(file, &tiny_file(version, attrs, ""))
}

fn allow(host: &Host, json: &str) {
    std::fs::write(host.dir.path().join("host.json"), json).unwrap();
}

#[test]
fn bind_mounts_show_host_paths_and_the_containers_own_data() {
    let host = Host::new();
    let shared = host.dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::write(shared.join("hello"), "from the host\n").unwrap();
    allow(
        &host,
        &format!(r#"{{"allowedHostPaths": {{"{}": {{"writable": false}}}}}}"#, shared.display()),
    );
    let file = with(
        &host,
        "b.nix",
        "1",
        &format!(
            r#"bindMounts."/srv/shared" = {{ hostPath = "{}"; }};
               bindMounts."/var/lib/app" = {{ hostPath = "app"; isReadOnly = false; }};"#,
            shared.display()
        ),
    );
    host.ok(&["create", "binds", path_str(&file)]);
    let data = host.state_dir().join("data/binds");
    let meta = std::fs::metadata(&data).unwrap();
    assert_eq!((meta.uid(), meta.mode() & 0o777), (0, 0o700), "its data directory is a gate");
    host.start_booted("binds");

    // A host file read inside, owned by root there too (idmapped), read-only.
    assert_eq!(host.ok(&["run", "binds", "cat", "/srv/shared/hello"]), "from the host\n");
    assert_eq!(host.ok(&["run", "binds", "stat", "-c", "%u", "/srv/shared/hello"]).trim(), "0");
    assert_ne!(host.helper(&["run", "binds", "touch", "/srv/shared/new"]).code, 0);
    assert_ne!(host.helper(&["run", "binds", "mount", "-o", "remount,rw", "/srv/shared"]).code, 0);
    // A file written inside its own data is its root's on the host.
    host.ok(&["run", "binds", "sh", "-c", "echo from inside > /var/lib/app/note"]);
    let note = data.join("app/note");
    assert_eq!(std::fs::read_to_string(&note).unwrap(), "from inside\n");
    assert_eq!(std::fs::metadata(&note).unwrap().uid(), 100000);
    assert_eq!(host.mounts_in_host_table(), Vec::<String>::new());

    // Its own symlink out of its data directory leads nowhere.
    host.ok(&["run", "binds", "ln", "-s", "/", "/var/lib/app/escape"]);
    host.ok(&["stop", "binds"]);
    let escaping =
        with(&host, "e.nix", "2", r#"bindMounts."/mnt" = { hostPath = "app/escape"; };"#);
    host.ok(&["update", "binds", path_str(&escaping)]);
    let error = host.fails(&["start", "binds"], 1);
    let said = format!(
        "app/escape in {} is, or passes through, a symbolic link, which is never followed there",
        data.display()
    );
    assert!(error.contains("cannot mount") && error.contains(&said), "{error}");
    // A symlink in an allowed host path that leads out of it: refused, and
    // said so (not the errno's "Invalid cross-device link").
    std::os::unix::fs::symlink("/etc", shared.join("out")).unwrap();
    let out = format!(r#"bindMounts."/mnt" = {{ hostPath = "{}/out"; }};"#, shared.display());
    host.ok(&["update", "binds", path_str(&with(&host, "o.nix", "3", &out))]);
    let error = host.fails(&["start", "binds"], 1);
    let said =
        format!("out leads out of {} (through a symbolic link or a mount)", shared.display());
    assert!(error.contains(&said), "{error}");

    // destroy removes its data, unless it keeps it; a new container of its
    // name is refused while kept data is there.
    host.ok(&["destroy", "binds", "--keep-data"]);
    assert!(note.exists());
    let error = host.fails(&["create", "binds", path_str(&file)], 1);
    assert!(error.contains("holds the data of an earlier container named 'binds'"), "{error}");
    std::fs::remove_dir_all(&data).unwrap();
    host.ok(&["create", "binds", path_str(&file)]);
    host.ok(&["destroy", "binds"]);
    assert!(!data.exists());
}

#[test]
fn what_the_host_does_not_allow_is_refused_and_nothing_is_made() {
    let host = Host::new();
    allow(
        &host,
        r#"{"allowedHostPaths": {"/srv/ro": {"writable": false}}, "allowedForwardPorts": [{"from": 8000, "to": 8099}]}"#,
    );
    for (attrs, message) in [
        (
            r#"bindMounts."/x" = { hostPath = "/etc"; };"#,
            "host path \"/etc\" is not one this host lets containers see",
        ),
        (
            r#"bindMounts."/x" = { hostPath = "/srv/ro2"; };"#,
            "is not one this host lets containers see",
        ),
        (
            r#"bindMounts."/x" = { hostPath = "/srv/ro/a"; isReadOnly = false; };"#,
            "may be seen read-only only",
        ),
        (r#"bindMounts."/nix/x" = { hostPath = "data"; };"#, "is below /nix"),
        (r#"bindMounts."/proc" = { hostPath = "data"; };"#, "is below /proc"),
        (r#"bindMounts."/x/../etc" = { hostPath = "data"; };"#, "is not an absolute path"),
        (r#"bindMounts."/x" = { hostPath = "../data"; };"#, "is not an absolute path"),
        (
            "forwardPorts = [ { hostPort = 22; } ];",
            "host port 22 is not one this host lets containers have",
        ),
        ("forwardPorts = [ { hostPort = 8080; } { hostPort = 8080; } ];", "is named twice"),
        (
            r#"forwardPorts = [ { hostPort = 8080; hostAddress = "127.0.0.1"; } ];"#,
            r#"hostAddress "127.0.0.1" is not an IPv4 address of this host that connections can come to"#,
        ),
        (r#"devices = [ "tun" ];"#, "devices: tun is not a device this host lets containers have"),
    ] {
        let error = host.fails(&["create", "asks", path_str(&with(&host, "a.nix", "1", attrs))], 1);
        assert!(error.contains(message), "{attrs}: {error}");
    }
    host.assert_nothing_created();
}

#[test]
fn forwarded_ports_reach_a_running_container_and_go_when_it_stops() {
    let host = Host::new();
    allow(&host, r#"{"allowedForwardPorts": [{"from": 8000, "to": 8999}]}"#);
    host.ok(&[
        "create",
        "web",
        path_str(&with(
            &host,
            "w.nix",
            "1",
            "forwardPorts = [ { hostPort = 8080; containerPort = 80; } ];",
        )),
    ]);
    host.start_booted("web");

    // From the host itself, to one of its addresses.
    let listener = host.listen_in("web", 80);
    host.ns_ok("echo from-the-host | busybox nc -w 2 10.101.0.1 8080");
    assert_eq!(listener.received("from-the-host"), "from-the-host");

    // A client whose input comes only once the listener has the connection
    // is heard too: the listener keeps its side open until the client ends
    // it (common.rs Listener; a listener that ended its side at once made a
    // late client exit 0 having sent nothing). The client writes once the
    // listener no longer listens: busybox nc closes its listening socket
    // when it accepts.
    let listener = host.listen_in("web", 80);
    let late_input = host.dir.path().join("late-input");
    host.ns_with_helper(&format!(
        "mkfifo {input}\n\
         busybox nc -w 2 10.101.0.1 8080 <{input} >/dev/null 2>&1 &\n\
         exec 3>{input}\n\
         for i in $(seq 400); do \
           nixcloud-container run web sh -c \"! {listening}\" && break; \
           sleep 0.05; done\n\
         echo from-a-late-client >&3",
        input = late_input.display(),
        listening = listens_on(80),
    ));
    assert_eq!(listener.received("from-a-late-client"), "from-a-late-client");

    // From outside: another network namespace behind a veth, routed by the host.
    let outside = format!("{}o", host.netns);
    assert!(std::process::Command::new("ip")
        .args(["netns", "add", &outside])
        .status()
        .unwrap()
        .success());
    host.ns_ok(&format!(
        "ip link add uplink type veth peer name client netns {outside} && \
         ip addr add 192.0.2.1/24 dev uplink && ip link set uplink up && sysctl -qw net.ipv4.ip_forward=1"
    ));
    let in_outside = |command: &str| {
        std::process::Command::new("ip")
            .args(["netns", "exec", &outside, "sh", "-c", command])
            .status()
            .unwrap()
            .success()
    };
    assert!(in_outside(
        "ip link set lo up && ip addr add 192.0.2.2/24 dev client && ip link set client up && \
         ip route add default via 192.0.2.1"
    ));
    let listener = host.listen_in("web", 80);
    assert!(in_outside("echo from-outside | busybox nc -w 2 192.0.2.1 8080"));
    assert_eq!(listener.received("from-outside"), "from-outside");

    // Another container cannot have the same host port.
    let error = host.fails(
        &[
            "create",
            "other",
            path_str(&with(&host, "o.nix", "1", "forwardPorts = [ { hostPort = 8080; } ];")),
        ],
        1,
    );
    assert!(
        error.contains("host port tcp 8080 is forwarded to container 'web' already"),
        "{error}"
    );

    // Gone when it stops.
    host.ok(&["stop", "web"]);
    let rules = host.ns_ok("nft list table ip nixcloud-container-forwards");
    assert!(!rules.contains("8080"), "{rules}");
    assert!(!in_outside("echo late | busybox nc -w 1 192.0.2.1 8080"));
    std::process::Command::new("ip").args(["netns", "del", &outside]).status().unwrap();
}

#[test]
fn devices_the_host_allows_are_there_inside() {
    let host = Host::new();
    allow(&host, r#"{"allowedDevices": ["tun"]}"#);
    host.ok(&["create", "vpn", path_str(&with(&host, "v.nix", "1", r#"devices = [ "tun" ];"#))]);
    host.start_booted("vpn");
    host.ok(&["run", "vpn", "test", "-c", "/dev/net/tun"]);
    let open_to_all = std::fs::metadata("/dev/net/tun").unwrap().mode() & 0o006 == 0o006;
    let opened = host.helper(&["run", "vpn", "sh", "-c", "exec 3<>/dev/net/tun"]);
    assert_eq!(opened.code == 0, open_to_all, "{opened:?}");
    host.ok(&["create", "plain", path_str(&with(&host, "p.nix", "1", ""))]);
    host.start_booted("plain");
    assert_ne!(host.helper(&["run", "plain", "test", "-e", "/dev/net/tun"]).code, 0);
}

#[test]
fn root_gives_one_container_lxc_settings_of_its_own() {
    let host = Host::new();
    let settings = host.file("extra.conf", "lxc.environment = GREETING=from-root\n");
    let file = with(&host, "r.nix", "1", "");
    host.ok(&["create", "rooted", path_str(&file), "--lxc-config", path_str(&settings)]);
    let generation = std::fs::canonicalize(host.profiles_dir().join("rooted/profile")).unwrap();
    assert_eq!(
        std::fs::read_to_string(generation.join("lxc-root.conf")).unwrap(),
        "lxc.environment = GREETING=from-root\n",
        "recorded in the generation"
    );
    host.start_booted("rooted");
    let environment = host.ok(&["run", "rooted", "sh", "-c", "tr '\\0' '\\n' < /proc/1/environ"]);
    assert!(environment.contains("GREETING=from-root"), "{environment}");

    // Kept by updates, dropped when root says so.
    host.ok(&["update", "rooted", path_str(&with(&host, "r2.nix", "2", ""))]);
    let generation = std::fs::canonicalize(host.profiles_dir().join("rooted/profile")).unwrap();
    assert!(generation.join("lxc-root.conf").exists());
    host.ok(&["update", "rooted", "--no-lxc-config"]);
    let generation = std::fs::canonicalize(host.profiles_dir().join("rooted/profile")).unwrap();
    assert!(!generation.join("lxc-root.conf").exists());

    // Settings root did not give are never included.
    host.ok(&["stop", "rooted"]);
    host.ok(&["rollback", "rooted"]);
    let state_file = host.state_dir().join("state.json");
    let mut state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state_file).unwrap()).unwrap();
    state["containers"]["rooted"].as_object_mut().unwrap().remove("rootSettingsDigests");
    std::fs::write(&state_file, state.to_string()).unwrap();
    let error = host.fails(&["start", "rooted"], 1);
    assert!(error.contains("LXC settings that root did not give"), "{error}");
}

#[test]
fn restart_start_wait_and_logs() {
    let host = Host::new();
    host.ok(&["create", "up", path_str(&with(&host, "u.nix", "1", ""))]);
    let started = host.helper(&["start", "up", "--wait"]);
    assert_eq!(started.code, 0, "{started:?}");
    assert!(started.stdout.contains("container 'up' has booted"), "{started:?}");
    assert_eq!(host.ok(&["logs", "up"]), "tiny: booted version 1\n");
    let restarted = host.ok(&["restart", "up", "--wait"]);
    assert!(restarted.contains("has booted"), "{restarted}");
    assert_eq!(host.ok(&["logs", "up"]), "tiny: booted version 1\ntiny: booted version 1\n");
    assert_eq!(host.ok(&["logs", "up", "-n", "1"]), "tiny: booted version 1\n");
    // -f goes on until stopped.
    let follow = host.ns_with_helper("timeout 1 nixcloud-container logs up -f");
    assert_eq!(follow.code, 124, "{follow:?}");
    assert!(follow.stdout.contains("booted version 1"), "{follow:?}");

    // A boot that never ends is one error naming what is still starting; a
    // degraded one names the failed units.
    let slow = host.file("s.nix", &tiny_file("1", "", r#"bootState = "starting";"#));
    host.ok(&["create", "slow", path_str(&slow)]);
    let error = host.fails(&["start", "slow", "--wait", "--timeout", "2"], 1);
    assert!(
        error.contains("'slow' did not finish booting within 2 s")
            && error.contains("still starting: tiny-slow.service"),
        "{error}"
    );
    let degraded = host.file(
        "d.nix",
        &tiny_file("1", "", r#"bootState = "degraded"; failedUnits = [ "db.service" ];"#),
    );
    host.ok(&["create", "degraded", path_str(&degraded)]);
    let started = host.helper(&["start", "degraded", "--wait"]);
    assert_eq!(started.code, 0, "{started:?}");
    assert!(
        started.stderr.contains("'degraded' has booted, degraded: db.service failed"),
        "{started:?}"
    );

    // The journal is read with the system's own journalctl (by its store
    // path), whatever the guest did to its PATH.
    host.ok(&["run", "up", "rm", "/run/current-system"]);
    assert_eq!(host.ok(&["logs", "up", "-n", "1"]), "tiny: booted version 1\n");
    // A system without a journal says so.
    let bare = built_by_script(
        &host,
        "bare",
        "${bb} mkdir $out
         printf '#!%s sh\\nexec %s sleep 1000\\n' ${bb} ${bb} > $out/init
         ${bb} chmod +x $out/init",
    );
    host.ok(&["create", "bare", path_str(&bare)]);
    host.ok(&["start", "bare"]);
    let error = host.fails(&["logs", "bare"], 1);
    assert!(error.contains("has no journal"), "{error}");
    assert!(Path::new("/nix/store").exists());
}

#[test]
fn ipv6_addresses_are_shown_where_a_container_has_some() {
    let host = Host::new();
    host.ok(&["create", "six", path_str(&with(&host, "s.nix", "1", ""))]);
    host.start_booted("six");
    assert_eq!(host.ok(&["show-ip", "six"]), "10.101.0.2\n");
    host.ok(&["run", "six", "ip", "addr", "add", "2001:db8::6/64", "dev", "hostonly"]);
    assert_eq!(host.ok(&["show-ip", "six"]), "10.101.0.2\n2001:db8::6\n");
    let shown: serde_json::Value =
        serde_json::from_str(&host.ok(&["show-ip", "six", "--json"])).unwrap();
    assert_eq!(shown["ipv6"], serde_json::json!(["2001:db8::6"]));
    let listed: serde_json::Value = serde_json::from_str(&host.ok(&["list", "--json"])).unwrap();
    assert_eq!(listed[0]["ipv6"], serde_json::json!(["2001:db8::6"]));
    assert!(host.ok(&["list"]).contains("2001:db8::6"));
    host.ok(&["stop", "six"]);
    let listed: serde_json::Value = serde_json::from_str(&host.ok(&["list", "--json"])).unwrap();
    assert_eq!(listed[0]["ipv6"], serde_json::json!([]));
    assert_eq!(host.ok(&["show-ip", "six"]), "10.101.0.2\n");
}

#[test]
fn an_ephemeral_root_starts_empty_and_its_data_stays() {
    let host = Host::new();
    // A value that is not true or false is one error, and nothing is made.
    let error = host.fails(
        &["create", "eph", path_str(&with(&host, "bad.nix", "1", r#"ephemeral = "yes";"#))],
        1,
    );
    assert!(error.contains(r#"ephemeral "yes" is not true or false"#), "{error}");
    host.assert_nothing_created();

    // A host directory that the container's links name: emptying its root
    // removes the links, never what they name.
    let precious = host.dir.path().join("precious");
    std::fs::create_dir(&precious).unwrap();
    std::fs::write(precious.join("file"), "the host's\n").unwrap();
    let file = with(
        &host,
        "eph.nix",
        "1",
        r#"ephemeral = true;
           bindMounts."/var/lib/app" = { hostPath = "app"; isReadOnly = false; };"#,
    );
    host.ok(&["create", "eph", path_str(&file)]);
    let rootfs = host.lxc_path().join("eph/rootfs");
    let made = std::fs::metadata(&rootfs).unwrap();
    host.start_booted("eph");
    host.ok(&["run", "eph", "sh", "-c", "echo root > /note && echo data > /var/lib/app/note"]);
    // Links, and a tree deeper than the descriptors the helper may hold.
    let plant = format!(
        "ln -s {p} /escape && mkdir -p /var/deep && ln -s {p} /var/deep/dir && \
         ln -s {p}/file /var/deep/file && cd /var/deep && \
         i=0; while [ $i -lt 1200 ]; do mkdir d && cd d && i=$((i+1)) || exit 1; done",
        p = precious.display()
    );
    host.ok(&["run", "eph", "sh", "-c", &plant]);
    host.ok(&["stop", "eph"]);
    assert!(rootfs.join("note").exists(), "a stopped container's root is as it left it");

    // stop + start: its root is empty again, its data and the host's files stay.
    host.start_booted("eph");
    assert_ne!(host.helper(&["run", "eph", "test", "-e", "/note"]).code, 0, "/note is gone");
    for gone in ["note", "escape", "var/deep"] {
        assert!(std::fs::symlink_metadata(rootfs.join(gone)).is_err(), "{gone} is gone");
    }
    assert_eq!(host.ok(&["run", "eph", "cat", "/var/lib/app/note"]), "data\n");
    assert_eq!(std::fs::read_to_string(precious.join("file")).unwrap(), "the host's\n");
    assert_eq!(std::fs::read_dir(&precious).unwrap().count(), 1, "the host's directory is whole");
    // One boot in the guest's log (/var/log/tiny.log): the first one's is gone.
    assert_eq!(host.ok(&["logs", "eph"]), "tiny: booted version 1\n");
    // The rootfs itself is the one LXC and the helper made, as they made it.
    let now = std::fs::metadata(&rootfs).unwrap();
    assert_eq!(
        (now.ino(), now.uid(), now.gid(), now.mode()),
        (made.ino(), made.uid(), made.gid(), made.mode())
    );

    // restart empties it too.
    host.ok(&["run", "eph", "touch", "/again"]);
    host.forget_boot("eph");
    host.ok(&["restart", "eph"]);
    host.wait_booted(&["eph"]);
    assert!(!rootfs.join("again").exists(), "/again is gone after restart");
    assert_eq!(host.ok(&["run", "eph", "cat", "/var/lib/app/note"]), "data\n");
    // A start of a running container leaves its root alone.
    host.ok(&["run", "eph", "touch", "/running"]);
    assert!(host.ok(&["start", "eph"]).contains("already running"));
    assert!(rootfs.join("running").exists(), "a running container's root stays");
    // Nor does a start from another network namespace, where LXC's commands
    // do not reach the container's monitor and it looks stopped.
    let elsewhere: crate::common::Run = std::process::Command::new("ip")
        .args(["netns", "exec", &host.netns, "unshare", "--net", crate::common::HELPER])
        .args(["start", "eph"])
        .envs(host.helper_env())
        .current_dir(host.dir.path())
        .output()
        .expect("unshare runs")
        .into();
    assert_eq!(elsewhere.code, 1, "{elsewhere:?}");
    assert!(elsewhere.stderr.contains("runs in another network namespace"), "{elsewhere:?}");
    assert!(rootfs.join("running").exists(), "a container running elsewhere keeps its root");
    assert_eq!(host.ok(&["run", "eph", "cat", "/var/lib/app/note"]), "data\n");
}
