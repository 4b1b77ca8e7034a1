//! What keeps containers apart: an id range each (and, below, the store
//! view, the bridges' isolation and the limits).

use std::os::unix::fs::MetadataExt;

use crate::common::{path_str, Host};

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
