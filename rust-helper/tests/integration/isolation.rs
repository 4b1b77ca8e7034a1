//! What keeps containers apart: an id range each (and, below, the store
//! view, the bridges' isolation and the limits).

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::common::{built_by_script, path_str, Host};

/// The host uids of container `name`'s processes, all within one range.
fn uid_range_of(host: &Host, name: &str) -> (u32, u32) {
    let uids: Vec<u32> = host.processes(name).into_iter().map(|(_, uid)| uid).collect();
    (*uids.iter().min().unwrap(), *uids.iter().max().unwrap())
}

/// Host uid:gid `id` appending to `file`: whether it may.
fn may_append(host: &Host, id: u32, file: &std::path::Path) -> bool {
    let command = format!(
        "setpriv --reuid={id} --regid={id} --clear-groups sh -c 'echo more >> {}' 2>/dev/null",
        file.display()
    );
    host.ns(&command).code == 0
}

fn state_json(host: &Host) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(host.state_dir().join("state.json")).unwrap())
        .unwrap()
}

#[test]
fn each_container_has_an_id_range_of_its_own() {
    let host = Host::new();
    let file = host.tiny("c.nix", "1", "");
    host.ok(&["create", "one", path_str(&file)]);
    host.ok(&["create", "two", path_str(&file)]);
    let conf = std::fs::read_to_string(host.profiles_dir().join("two/profile/lxc.conf")).unwrap();
    assert!(conf.contains("lxc.idmap = u 0 165536 65536\nlxc.idmap = g 0 165536 65536"), "{conf}");
    let rootfs = host.lxc_path().join("two/rootfs");
    assert_eq!(std::fs::metadata(&rootfs).unwrap().uid(), 165536, "LXC gave two's rootfs its root");
    assert_eq!(
        host.ok(&["list", "--columns", "name,uids", "--format", "csv", "--no-header"]),
        "one,100000-165535\ntwo,165536-231071\n"
    );

    host.start_booted("one");
    host.start_booted("two");
    for name in ["one", "two"] {
        host.ok(&["run", name, "sh", "-c", "sleep 60 >/dev/null 2>&1 &"]);
    }
    let one = uid_range_of(&host, "one");
    let two = uid_range_of(&host, "two");
    assert!(one.0 >= 100000 && one.1 < 165536, "one runs as {one:?}");
    assert!(two.0 >= 165536 && two.1 < 231072, "two runs as {two:?}");

    // What one's root writes is its own: two's root (and anyone of two) is
    // someone else on the host.
    host.ok(&["run", "one", "sh", "-c", "echo secret > /owned-by-one; chmod 644 /owned-by-one"]);
    let owned = host.lxc_path().join("one/rootfs/owned-by-one");
    assert_eq!(std::fs::metadata(&owned).unwrap().uid(), 100000);
    assert!(may_append(&host, 100000, &owned), "one's root writes its own file");
    assert!(!may_append(&host, 165536, &owned), "two's root cannot write one's file");
    assert!(!may_append(&host, 165536 + 1000, &owned), "nor can a user of two");

    // A destroyed container's range is given out again.
    host.ok(&["destroy", "one", "--force"]);
    host.ok(&["create", "three", path_str(&file)]);
    let state = state_json(&host);
    assert_eq!(
        state["containers"]["three"]["ids"],
        serde_json::json!({"hostId": 100000, "count": 65536})
    );
    let three: serde_json::Value =
        serde_json::from_str(&host.ok(&["state", "three", "--json"])).unwrap();
    assert_eq!(three["uids"], "100000-165535");
}

#[test]
fn an_exhausted_or_undelegated_range_is_one_clear_error() {
    let host = Host::new();
    let file = host.tiny("c.nix", "1", "");
    let host_file = host.dir.path().join("host.json");
    std::fs::write(&host_file, r#"{"idmap": {"count": 131072}}"#).unwrap();
    host.ok(&["create", "a", path_str(&file)]);
    host.ok(&["create", "b", path_str(&file)]);
    let before = std::fs::read_to_string(host.state_dir().join("state.json")).unwrap();
    let error = host.fails(&["create", "c", path_str(&file)], 1);
    assert!(error.contains("every id range is taken") && error.contains("idmap.count"), "{error}");
    assert_eq!(std::fs::read_to_string(host.state_dir().join("state.json")).unwrap(), before);
    for leftover in [
        host.lxc_path().join("c"),
        host.profiles_dir().join("c"),
        host.state_dir().join("locks/c.lock"),
    ] {
        assert!(!leftover.exists(), "{} is left", leftover.display());
    }
    host.ok(&["destroy", "a"]);
    host.ok(&["destroy", "b"]);

    // Ids that root has not been given in /etc/subuid: newuidmap would
    // refuse them at every start.
    std::fs::write(&host_file, r#"{"idmap": {"hostId": 900000000}}"#).unwrap();
    let error = host.fails(&["create", "c", path_str(&file)], 1);
    assert!(
        error.contains("host ids 900000000-900065535 are not delegated to root in /etc/subuid")
            && error.contains("root:900000000:65536000"),
        "{error}"
    );
    host.assert_nothing_created();
}

#[test]
fn containers_made_before_ranges_keep_theirs() {
    let host = Host::new();
    let file = host.tiny("c.nix", "1", "");
    host.ok(&["create", "a", path_str(&file)]);
    host.ok(&["create", "b", path_str(&file)]);
    // The state as a helper before ranges wrote it: no ids.
    let mut state = state_json(&host);
    for name in ["a", "b"] {
        state["containers"][name].as_object_mut().unwrap().remove("ids");
    }
    std::fs::write(host.state_dir().join("state.json"), state.to_string()).unwrap();

    host.ok(&["create", "c", path_str(&file)]);
    let state = state_json(&host);
    let host_id = |name: &str| state["containers"][name]["ids"]["hostId"].as_u64().unwrap();
    assert_eq!(
        [host_id("a"), host_id("b"), host_id("c")],
        [100000, 165536, 231072],
        "a and b keep the ranges their generations map; c gets a free one"
    );
    assert_eq!(host.start_booted("b"), "1");
}

/// A container file for the tiny system whose closure also holds `count`
/// text files made for `tag` (store paths of their own).
fn tiny_with_paths(host: &Host, file: &str, version: &str, tag: &str, count: usize) -> PathBuf {
    host.file(
        file,
        &format!(
            "{{ system = import <nixcloud-container/examples/tiny/system.nix> {{\n  \
             version = \"{version}\";\n  \
             extraPaths = builtins.genList (i: builtins.toFile \"{tag}-${{toString i}}\" \"{tag} ${{toString i}}\") {count};\n\
             }}; }}\n"
        ),
    )
}

/// The names `ls /nix/store` prints inside container `name`.
fn store_inside(host: &Host, name: &str) -> BTreeSet<String> {
    host.ok(&["run", name, "ls", "/nix/store"]).lines().map(str::to_string).collect()
}

/// What container `name`'s current generation needs: the closure of its
/// system, by nix-store, and the generation itself.
fn closure_of_current(host: &Host, name: &str) -> BTreeSet<String> {
    let generation = std::fs::canonicalize(host.profiles_dir().join(name).join("profile")).unwrap();
    let system = std::fs::canonicalize(generation.join("system")).unwrap();
    let listed = host.ns_ok(&format!("nix-store --query --requisites {}", system.display()));
    listed
        .lines()
        .chain([path_str(&generation)])
        .map(|path| path.trim_start_matches("/nix/store/").to_string())
        .collect()
}

#[test]
fn a_container_sees_its_own_closure_and_nothing_else() {
    let host = Host::new();
    host.ok(&["create", "mine", path_str(&tiny_with_paths(&host, "m.nix", "1", "mine", 20))]);
    host.ok(&["create", "other", path_str(&tiny_with_paths(&host, "o.nix", "1", "other", 3))]);
    host.start_booted("mine");
    let seen = store_inside(&host, "mine");
    assert_eq!(seen, closure_of_current(&host, "mine"));
    assert_eq!(seen.len(), 20 + 3, "the 20 files, busybox, the system, the generation");
    let others_generation =
        std::fs::canonicalize(host.profiles_dir().join("other/profile")).unwrap();
    let others_name = others_generation.file_name().unwrap().to_str().unwrap();
    assert!(!seen.contains(others_name), "another container's generation is not there");
    assert!(Path::new("/nix/store").join(others_name).exists(), "though the host has it");
    let read = host.ok(&["run", "mine", "sh", "-c", "cat /nix/store/*-mine-7"]);
    assert_eq!(read, "mine 7");
    let missing =
        host.helper(&["run", "mine", "cat", &format!("/nix/store/{others_name}/spec.json")]);
    assert_ne!(missing.code, 0, "{missing:?}");

    // Read-only and locked, owned by root inside; nothing of it is in the
    // host's mount table.
    for attempt in [
        "touch /nix/store/new",
        "mkdir /nix/store/new",
        "chmod 777 /nix/store",
        "mount -o remount,rw /nix/store",
        "mount -o remount,rw,bind /nix/store/$(ls /nix/store | grep mine-7)",
        "umount /nix/store",
        "umount /nix/store/$(ls /nix/store | grep mine-7)",
    ] {
        let run = host.helper(&["run", "mine", "sh", "-c", attempt]);
        assert_ne!(run.code, 0, "{attempt} must fail: {run:?}");
    }
    assert_eq!(host.ok(&["run", "mine", "stat", "-c", "%u %a", "/nix/store"]).trim(), "0 755");
    assert_eq!(host.mounts_in_host_table(), Vec::<String>::new());
    // The host's store is untouched.
    assert!(!Path::new("/nix/store/new").exists());
}

#[test]
fn updates_switches_and_rollbacks_show_the_new_closure_before_activation() {
    let host = Host::new();
    let small = host.tiny("v1.nix", "1", "");
    let grown = tiny_with_paths(&host, "v2.nix", "2", "grown", 500);
    host.ok(&["create", "live", path_str(&small)]);
    host.start_booted("live");
    let first = store_inside(&host, "live");

    // A live update whose closure has 500 paths more: they are there before
    // switch-to-configuration (of the new system, itself a new path) runs.
    host.ok(&["update", "live", path_str(&grown)]);
    assert_eq!(host.ok(&["run", "live", "cat", "/var/lib/tiny/activated"]).trim(), "switch 2");
    let grown_view = store_inside(&host, "live");
    assert!(closure_of_current(&host, "live").is_subset(&grown_view));
    assert!(first.is_subset(&grown_view), "what left stays until the next start");
    assert_eq!(host.ok(&["run", "live", "sh", "-c", "cat /nix/store/*-grown-499"]), "grown 499");
    let locked = host.helper(&[
        "run",
        "live",
        "sh",
        "-c",
        "mount -o remount,rw,bind /nix/store/$(ls /nix/store | grep grown-0$)",
    ]);
    assert_ne!(locked.code, 0, "a path added live is locked read-only too: {locked:?}");

    // At the next start the view is the current closure alone.
    host.ok(&["stop", "live"]);
    host.start_booted("live");
    assert_eq!(store_inside(&host, "live"), closure_of_current(&host, "live"));

    // A rollback brings generation 1's closure back before activating it,
    // and switch-generation does the same the other way.
    host.ok(&["rollback", "live"]);
    assert_eq!(host.ok(&["run", "live", "cat", "/var/lib/tiny/activated"]).trim(), "switch 1");
    assert!(closure_of_current(&host, "live").is_subset(&store_inside(&host, "live")));
    host.ok(&["stop", "live"]);
    host.start_booted("live");
    assert_eq!(store_inside(&host, "live"), closure_of_current(&host, "live"));
    host.ok(&["switch-generation", "live", "2"]);
    assert_eq!(host.ok(&["run", "live", "cat", "/var/lib/tiny/activated"]).trim(), "switch 2");
    assert_eq!(host.mounts_in_host_table(), Vec::<String>::new());
}

#[test]
fn the_whole_store_is_for_containers_the_host_allows() {
    let host = Host::new();
    let whole = host.tiny("w.nix", "1", "wholeStore = true;");
    let error = host.fails(&["create", "whole", path_str(&whole)], 1);
    assert!(error.contains("wholeStore = true") && error.contains("allowWholeStore"), "{error}");
    host.assert_nothing_created();

    std::fs::write(host.dir.path().join("host.json"), r#"{"allowWholeStore": true}"#).unwrap();
    host.ok(&["create", "whole", path_str(&whole)]);
    host.ok(&["create", "other", path_str(&host.tiny("o.nix", "2", ""))]);
    host.start_booted("whole");
    let others_generation =
        std::fs::canonicalize(host.profiles_dir().join("other/profile")).unwrap();
    let listed = host.ok(&["run", "whole", "ls", "/nix/store"]);
    assert!(listed.contains(others_generation.file_name().unwrap().to_str().unwrap()));
    // An update while it runs has nothing to add.
    host.ok(&["update", "whole", path_str(&host.tiny("w2.nix", "2", "wholeStore = true;"))]);
    assert_eq!(host.ok(&["run", "whole", "cat", "/var/lib/tiny/activated"]).trim(), "switch 2");

    // A host that stops allowing it refuses to start it.
    host.ok(&["stop", "whole"]);
    std::fs::write(host.dir.path().join("host.json"), "{}").unwrap();
    let error = host.fails(&["start", "whole"], 1);
    assert!(error.contains("allowWholeStore"), "{error}");
}

/// Where a connection comes from: a container, or the host.
#[derive(Clone, Copy)]
enum From<'a> {
    Host,
    Container(&'a str),
}

/// Runs `command` in `from`'s shell; whether it succeeded.
fn succeeds(host: &Host, from: From, command: &str) -> bool {
    match from {
        From::Host => host.ns(command).code == 0,
        From::Container(name) => host.helper(&["run", name, "sh", "-c", command]).code == 0,
    }
}

/// Whether `from` reaches container `to` at `address`: by ping, and by a
/// TCP connection to a listener in `to` that receives what was sent. Both
/// must agree (on a busy host one may miss once: then both are tried again).
fn reaches(host: &Host, from: From, to: &str, address: &str) -> bool {
    let mut last = String::new();
    for _ in 0..3 {
        let (pings, connects, received) = try_reaching(host, from, to, address);
        if pings == connects {
            return pings;
        }
        last = format!("ping {pings}, TCP {connects} ({received:?})");
    }
    panic!("ping and TCP disagree about {address}: {last}");
}

fn try_reaching(host: &Host, from: From, to: &str, address: &str) -> (bool, bool, String) {
    let pings = succeeds(host, from, &format!("busybox ping -c 1 -W 1 {address}"));
    let listener = host.listen_in(to, 7000);
    let sent = succeeds(host, from, &format!("echo hello | busybox nc -w 3 {address} 7000"));
    let received = if sent { listener.received("hello") } else { listener.arrived() };
    let connects = sent && received == "hello";
    (pings, connects, received)
}

/// The address the helper pinned for container `name`'s internet interface.
pub fn internet_address(host: &Host, name: &str) -> String {
    let shown: serde_json::Value = serde_json::from_str(&host.ok(&["show-ip", name, "--json"]))
        .expect("show-ip --json is JSON");
    shown["internet"].as_str().expect("a container with NAT has an internet address").to_string()
}

/// Container `from` reaching the host at `address`.
fn reaches_host(host: &Host, from: &str, address: &str) -> bool {
    succeeds(host, From::Container(from), &format!("ping -c 1 -W 1 {address}"))
}

#[test]
fn containers_reach_the_host_and_not_each_other() {
    let host = Host::new();
    host.ok(&["create", "a", path_str(&host.tiny("a.nix", "1", "network.enableNat = true;"))]);
    host.ok(&["create", "b", path_str(&host.tiny("b.nix", "1", "network.enableNat = true;"))]);
    host.start_booted("a");
    host.start_booted("b");
    // Their interfaces on brNC-internet get their addresses by DHCP, which
    // this host does not serve: given by hand, the ones the helper pinned
    // for them (the ports' guard passes no other).
    let (a_internet, b_internet) = (internet_address(&host, "a"), internet_address(&host, "b"));
    assert_eq!((a_internet.as_str(), b_internet.as_str()), ("10.202.0.2", "10.202.0.3"));
    host.ok(&["run", "a", "ip", "addr", "add", &format!("{a_internet}/16"), "dev", "internet"]);
    host.ok(&["run", "b", "ip", "addr", "add", &format!("{b_internet}/16"), "dev", "internet"]);

    let check = |when: &str| {
        for (name, other, hostonly, internet) in [
            ("a", "b", "10.101.0.3", b_internet.as_str()),
            ("b", "a", "10.101.0.2", a_internet.as_str()),
        ] {
            assert!(
                !reaches(&host, From::Container(name), other, hostonly),
                "{when}: {name} reaches {other} on hostonly"
            );
            assert!(
                !reaches(&host, From::Container(name), other, internet),
                "{when}: {name} reaches {other} on internet"
            );
            assert!(
                reaches(&host, From::Host, other, hostonly),
                "{when}: the host reaches {other} on hostonly"
            );
            assert!(
                reaches(&host, From::Host, other, internet),
                "{when}: the host reaches {other} on internet"
            );
            assert!(reaches_host(&host, name, "10.101.0.1"), "{when}: {name} reaches the host");
            assert!(
                reaches_host(&host, name, "10.202.0.1"),
                "{when}: {name} reaches the host on internet"
            );
        }
    };
    check("after the start");

    // A live update keeps the ports as they are; a new start isolates the
    // new ones, which LXC makes anew.
    host.ok(&["update", "a", path_str(&host.tiny("a2.nix", "2", "network.enableNat = true;"))]);
    host.ok(&["stop", "b"]);
    host.start_booted("b");
    host.ok(&["run", "b", "ip", "addr", "add", &format!("{b_internet}/16"), "dev", "internet"]);
    check("after an update and a restart");
    let flags = host.ns_ok("cat /sys/class/net/nc*/brport/isolated");
    assert_eq!(flags.split_whitespace().collect::<Vec<_>>(), ["1"; 4], "every port is isolated");
    // No filter is needed while no container names peers (the ports' guard
    // is there all the same).
    assert_eq!(host.ns_ok("nft list tables bridge"), "table bridge nixcloud-container-guard\n");
}

#[test]
fn peers_reach_each_other_where_both_say_so() {
    let host = Host::new();
    let with_peers =
        |file: &str, peers: &str| host.tiny(file, "1", &format!("network.peers = [ {peers} ];"));
    host.ok(&["create", "a", path_str(&with_peers("a.nix", "\"B\" \"c\""))]);
    host.ok(&["create", "b", path_str(&with_peers("b.nix", "\"a\""))]);
    host.ok(&["create", "c", path_str(&host.tiny("c.nix", "1", ""))]);
    host.ok(&["create", "d", path_str(&with_peers("d.nix", "\"a\""))]);
    for name in ["a", "b", "c", "d"] {
        host.start_booted(name);
    }
    let address = |name: &str| {
        format!("10.101.0.{}", 2 + ["a", "b", "c", "d"].iter().position(|n| *n == name).unwrap())
    };
    let reaches_peer =
        |from: &str, to: &str| reaches(&host, From::Container(from), to, &address(to));

    // a and b name each other (names are the same in any case); a names c,
    // which does not name it; d names a, which does not name d.
    assert!(reaches_peer("a", "b") && reaches_peer("b", "a"));
    for (from, to) in
        [("a", "c"), ("c", "a"), ("a", "d"), ("d", "a"), ("c", "b"), ("d", "b"), ("c", "d")]
    {
        assert!(!reaches_peer(from, to), "{from} reaches {to}");
    }
    for name in ["a", "b", "c", "d"] {
        assert!(reaches(&host, From::Host, name, &address(name)), "the host reaches {name}");
    }

    // A live update that drops the peer, and one that names it again.
    host.ok(&["update", "b", path_str(&host.tiny("b2.nix", "2", ""))]);
    assert!(!reaches_peer("a", "b") && !reaches_peer("b", "a"));
    host.ok(&["update", "b", path_str(&with_peers("b3.nix", "\"A\""))]);
    assert!(reaches_peer("a", "b"));

    // A firewall reload that flushes the whole ruleset takes the filter;
    // repair-network puts it back.
    host.ns_ok("nft flush ruleset");
    host.ok(&["repair-network"]);
    assert!(reaches_peer("a", "b") && !reaches_peer("c", "a"));

    // A destroyed peer's pairs go with it: a new container of its name that
    // does not name a cannot reach it.
    host.ok(&["destroy", "b", "--force"]);
    host.ok(&["create", "b", path_str(&host.tiny("b4.nix", "4", ""))]);
    host.start_booted("b");
    assert!(!reaches_peer("a", "b") && !reaches_peer("b", "a"));

    // Once no container names peers, the filter goes.
    for name in ["a", "d"] {
        host.ok(&["update", name, path_str(&host.tiny(&format!("{name}5.nix"), "5", ""))]);
    }
    assert_eq!(host.ns_ok("nft list tables bridge"), "table bridge nixcloud-container-guard\n");
    assert!(!reaches_peer("a", "b"));
}

/// The limits of a generation's LXC settings, as lines.
fn limit_lines(host: &Host, name: &str) -> Vec<String> {
    let conf =
        std::fs::read_to_string(host.profiles_dir().join(name).join("profile/lxc.conf")).unwrap();
    conf.lines().filter(|line| line.starts_with("lxc.cgroup2.")).map(str::to_string).collect()
}

#[test]
fn limits_become_cgroup2_settings_capped_by_the_host() {
    let host = Host::new();
    std::fs::write(
        host.dir.path().join("host.json"),
        // As the module's options are written (docs/host-options.md).
        r#"{"limits": {"memory": {"max": "1G"}, "pids": {"max": 1000}}}"#,
    )
    .unwrap();
    let limited = host.tiny(
        "limited.nix",
        "1",
        r#"limits = { memory = { max = "2G"; high = "512M"; }; cpu = { max = 1.5; weight = 200; }; pids.max = 64; io.weight = 50; };"#,
    );
    host.ok(&["create", "limited", path_str(&limited)]);
    assert_eq!(
        limit_lines(&host, "limited"),
        [
            "lxc.cgroup2.cpu.max = 150000 100000",
            "lxc.cgroup2.cpu.weight = 200",
            "lxc.cgroup2.io.weight = 50",
            "lxc.cgroup2.memory.high = 536870912",
            "lxc.cgroup2.memory.max = 1073741824",
            "lxc.cgroup2.pids.max = 64",
        ],
        "the host caps memory.max at its 1G"
    );
    let state: serde_json::Value =
        serde_json::from_str(&host.ok(&["state", "limited", "--json"])).unwrap();
    assert_eq!(state["limits"]["memoryMax"], 1073741824_u64);
    assert_eq!(state["limits"]["cpuMax"], 150000);

    // A container that asks for nothing gets the host's limits.
    host.ok(&["create", "plain", path_str(&host.tiny("plain.nix", "1", ""))]);
    assert_eq!(
        limit_lines(&host, "plain"),
        ["lxc.cgroup2.memory.max = 1073741824", "lxc.cgroup2.pids.max = 1000"]
    );

    // Where LXC cannot enforce them (no cgroup2 with the controllers), start
    // says so; it runs all the same.
    let enforced = host.ns("cat /sys/fs/cgroup/cgroup.controllers").stdout.contains("pids");
    let started = host.helper(&["start", "limited"]);
    assert_eq!(started.code, 0, "{started:?}");
    if !enforced {
        assert!(started.stderr.contains("the limits of 'limited' are not enforced"), "{started:?}");
    }
    host.wait_booted(&["limited"]);

    // An update changes them in the running container where LXC can, and
    // says that they apply at the next start where it cannot.
    let changed = host.tiny("changed.nix", "2", "limits.pids.max = 32;");
    let update = host.helper(&["update", "limited", path_str(&changed)]);
    assert_eq!(update.code, 0, "{update:?}");
    let said = format!("{}{}", update.stdout, update.stderr);
    assert!(
        said.contains("changed the limits of running container 'limited': memory.max 1073741824")
            || said.contains("the new limits of 'limited' apply when it is next started"),
        "{said}"
    );
    assert_eq!(
        limit_lines(&host, "limited"),
        ["lxc.cgroup2.memory.max = 1073741824", "lxc.cgroup2.pids.max = 32"]
    );
}

#[test]
fn limits_that_are_not_limits_are_refused() {
    let host = Host::new();
    for (limits, message) in [
        (r#"limits.memory.max = "2X";"#, r#"limits.memory.max "2X" is not a size"#),
        ("limits.memory.max = -1;", "limits.memory.max -1 is not a size"),
        ("limits.cpu.max = 0;", "limits.cpu.max 0 is not a number of CPUs"),
        ("limits.cpu.max = 0.001;", "limits.cpu.max 0.001 is not a number of CPUs"),
        ("limits.cpu.weight = 10001;", "limits.cpu.weight 10001 is not an integer from 1 to 10000"),
        ("limits.pids.max = 0;", "limits.pids.max 0 is not a positive integer"),
        ("limits.io.weight = \"high\";", "limits.io.weight \"high\" is not an integer"),
        ("limits.memory.min = 1;", "limits.memory: unknown attribute 'min' (known: high, max)"),
        ("limits.swap = {};", "limits: unknown attribute 'swap' (known: cpu, io, memory, pids)"),
        ("limits = 5;", "limits must be an attribute set"),
    ] {
        let file = host.tiny("bad.nix", "1", limits);
        let error = host.fails(&["create", "bad", path_str(&file)], 1);
        assert!(error.contains(message), "{limits}: {error}");
    }
    host.assert_nothing_created();
}

/// Runs where LXC has cgroup2 with the memory and pids controllers (a pure
/// cgroup2 host, as NixOS is); elsewhere it says why it does not.
#[test]
fn limits_are_enforced_where_lxc_has_cgroup2() {
    let controllers =
        std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers").unwrap_or_default();
    if !(controllers.contains("memory") && controllers.contains("pids")) {
        eprintln!(
            "skipped: this machine's /sys/fs/cgroup is not cgroup2 with the memory and pids \
             controllers ({:?}), so LXC cannot enforce limits here",
            controllers.trim()
        );
        return;
    }
    let host = Host::new();
    let file = host.tiny("l.nix", "1", r#"limits = { memory.max = "64M"; pids.max = 20; };"#);
    host.ok(&["create", "limited", path_str(&file)]);
    // `ip netns exec` mounts a sysfs of its own, without cgroups: LXC gets the
    // host's cgroup2 back in that mount namespace.
    let start = host
        .ns_with_helper("mount -t cgroup2 none /sys/fs/cgroup && nixcloud-container start limited");
    assert_eq!(start.code, 0, "{start:?}");
    host.wait_booted(&["limited"]);
    let init = host.lxc("lxc-info -n limited -pH").stdout.trim().to_string();
    let cgroup = std::fs::read_to_string(format!("/proc/{init}/cgroup")).unwrap();
    let path = cgroup.lines().find_map(|line| line.strip_prefix("0::")).unwrap().trim().to_string();
    let memory_max = std::fs::read_to_string(format!("/sys/fs/cgroup{path}/memory.max")).unwrap();
    assert_eq!(memory_max.trim(), "67108864");
    let bomb =
        host.helper(&["run", "limited", "sh", "-c", "for i in $(seq 40); do sleep 5 & done; wait"]);
    assert!(
        bomb.stderr.contains("can't fork") || bomb.code != 0,
        "pids.max stops a fork bomb: {bomb:?}"
    );
}

#[test]
fn containers_run_under_apparmor_where_the_host_has_it() {
    let host = Host::new();
    let config = || std::fs::read_to_string(host.lxc_path().join("guarded/config")).unwrap();
    let kernel_has_it = std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|enabled| enabled.trim() == "Y");
    host.ok(&["create", "guarded", path_str(&host.tiny("g.nix", "1", ""))]);
    assert_eq!(
        config().contains("lxc.apparmor.profile = generated"),
        kernel_has_it,
        "by default: as the kernel"
    );

    // The host file says so: LXC's generated profile, without nesting. On a
    // kernel without AppArmor, LXC leaves it aside and the container runs.
    std::fs::write(host.dir.path().join("host.json"), r#"{"appArmor": true}"#).unwrap();
    host.start_booted("guarded");
    assert!(
        config().contains("lxc.apparmor.profile = generated\nlxc.apparmor.allow_nesting = 0\n"),
        "{}",
        config()
    );
    let init = host.lxc("lxc-info -n guarded -pH").stdout.trim().to_string();
    let confinement =
        std::fs::read_to_string(format!("/proc/{init}/attr/current")).unwrap_or_default();
    if kernel_has_it {
        assert!(confinement.contains("lxc-guarded"), "init runs under its profile: {confinement}");
    } else {
        eprintln!("skipped: this kernel has no AppArmor, so the profile itself is not checked");
    }

    // Each start writes the host's part of the config anew.
    host.ok(&["stop", "guarded"]);
    std::fs::write(host.dir.path().join("host.json"), r#"{"appArmor": false}"#).unwrap();
    host.start_booted("guarded");
    assert!(!config().contains("apparmor"), "{}", config());
}

/// One `start` naming several containers, and `autostart` starting them
/// side by side in threads of one process: each container's monitor holds
/// its own mounts and none of the others'.
#[test]
fn containers_started_together_do_not_hold_each_others_mounts() {
    let host = Host::new();
    let names = ["first", "second", "third"];
    for name in names {
        let file = tiny_with_paths(&host, &format!("{name}.nix"), "1", name, 50);
        host.ok(&["create", name, path_str(&file), "--autostart", "yes"]);
    }
    let each_holds_only_its_own = || {
        for name in names {
            let init = host.lxc(&format!("lxc-info -n {name} -pH")).stdout.trim().to_string();
            let status = std::fs::read_to_string(format!("/proc/{init}/status")).unwrap();
            let monitor =
                status.lines().find_map(|l| l.strip_prefix("PPid:")).unwrap().trim().to_string();
            let mounts = std::fs::read_to_string(format!("/proc/{monitor}/mountinfo")).unwrap();
            for other in names.iter().filter(|other| **other != name) {
                let rootfs = host.lxc_path().join(other).join("rootfs");
                assert!(
                    !mounts.contains(path_str(&rootfs)),
                    "{name}'s monitor holds {other}'s mounts"
                );
            }
            let own = host.lxc_path().join(name).join("rootfs");
            assert!(mounts.contains(&format!("{} ", path_str(&own.join("nix/store")))));
            // Its store paths are idmapped to its own ids: seen from the
            // host through its init, its generation belongs to the
            // container's root, as its rootfs does.
            use std::os::unix::fs::MetadataExt;
            let own_root = std::fs::metadata(host.lxc_path().join(name).join("rootfs")).unwrap();
            let generation =
                std::fs::read_link(host.profiles_dir().join(name).join("profile-1-link")).unwrap();
            let seen =
                std::fs::metadata(format!("/proc/{init}/root{}", generation.display())).unwrap();
            assert_eq!(seen.uid(), own_root.uid(), "{name}: its generation inside");
        }
    };
    host.ok(&["start", "first", "second", "third"]);
    each_holds_only_its_own();
    host.ok(&["stop", "--all"]);
    // Two threads for three: one of them starts two containers.
    let run = host.ns_with_helper("nixcloud-container autostart --jobs 2");
    assert_eq!(run.code, 0, "{run:?}");
    each_holds_only_its_own();
}

#[test]
fn a_generation_holding_another_containers_generation_is_refused() {
    let host = Host::new();
    host.ok(&["create", "db", path_str(&host.tiny("db.nix", "1", ""))]);
    let db = std::fs::read_link(host.profiles_dir().join("db/profile-1-link")).unwrap();
    let db = path_str(&db).to_string();
    // A container file names db's generation by its hash: its builder copies
    // db's spec, and its system keeps db's generation in its closure.
    let other = format!("builtins.appendContext \"{db}\" {{ \"{db}\" = {{ path = true; }}; }}");
    let script = format!(
        "${{bb}} mkdir $out
         ${{bb}} cp ${{{other}}}/spec.json $out/stolen
         ${{bb}} ln -s ${{{other}}} $out/db
         printf '#!%s sh\\nexec %s sleep 1000\\n' ${{bb}} ${{bb}} > $out/init
         ${{bb}} chmod +x $out/init"
    );
    let thief = built_by_script(&host, "thief", &script);
    let err = host.fails(&["create", "thief", path_str(&thief)], 1);
    assert!(err.contains("another container's generation") && err.contains(&db), "{err}");
    assert_eq!(host.helper(&["exists", "thief"]).code, 1);
    assert!(!host.profiles_dir().join("thief").exists());
    // An update to it keeps the current generation.
    host.ok(&["create", "web", path_str(&host.tiny("web.nix", "1", ""))]);
    let err = host.fails(&["update", "web", path_str(&thief)], 1);
    assert!(err.contains("another container's generation"), "{err}");
    assert_eq!(host.current_generation("web"), "1");
}
