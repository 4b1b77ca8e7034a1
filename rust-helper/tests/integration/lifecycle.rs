//! Container file -> spec -> generation -> LXC container, with generations:
//! the core lifecycle on real Nix and real LXC.

use crate::common::{path_str, Host, REPO};

/// The spec of a container file, as lib/cli.nix prints it.
fn spec_of(file: &std::path::Path) -> serde_json::Value {
    let output = std::process::Command::new("nix-instantiate")
        .args(["--eval", "--strict", "--json", &format!("{REPO}/lib/cli.nix"), "-A", "spec"])
        .args(["--argstr", "source", &serde_json::json!({ "file": file }).to_string()])
        .output()
        .expect("nix-instantiate runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("the spec is JSON")
}

#[test]
fn each_kind_of_container_file_gives_its_spec() {
    let host = Host::new();
    let module = host.file(
        "module.nix",
        "{ pkgs, ip, name, ... }: { environment.systemPackages = [ pkgs.vim ]; }",
    );
    assert_eq!(
        spec_of(&module),
        serde_json::json!({
            "kind": "nixos", "autostart": false, "nixDaemon": false, "wholeStore": false, "ephemeral": false,
            "network": { "bridge": null, "ip": null, "prefixLength": null, "gateway": null, "enableNat": false, "peers": [] },
            "limits": { "memoryMax": null, "memoryHigh": null, "cpuWeight": null, "cpuMax": null, "pidsMax": null, "ioWeight": null },
            "bindMounts": [], "forwardPorts": [], "devices": []
        })
    );

    let attrs = host.file(
        "attrs.nix",
        r#"{ autostart = true;
             network = { bridge = "myOwnBridge"; ip = "10.10.1.2"; enableNat = false; };
             configuration = { pkgs, ip, name, ... }: { services.openssh.enable = true; }; }"#,
    );
    assert_eq!(
        spec_of(&attrs),
        serde_json::json!({
            "kind": "nixos", "autostart": true, "nixDaemon": false, "wholeStore": false, "ephemeral": false,
            "network": { "bridge": "myOwnBridge", "ip": "10.10.1.2", "prefixLength": null, "gateway": null, "enableNat": false, "peers": [] },
            "limits": { "memoryMax": null, "memoryHigh": null, "cpuWeight": null, "cpuMax": null, "pidsMax": null, "ioWeight": null },
            "bindMounts": [], "forwardPorts": [], "devices": []
        })
    );

    let system = host.tiny("system.nix", "1", "network.enableNat = true;");
    let spec = spec_of(&system);
    assert_eq!(spec["kind"], "system");
    assert_eq!(spec["network"]["enableNat"], true);
    assert_eq!(spec.as_object().unwrap().len(), 10, "settings only: {spec}");
    // The spec is read without evaluating what is built.
    let lazy = host.file("lazy.nix", r#"{ autostart = true; system = throw "evaluated"; }"#);
    assert_eq!(spec_of(&lazy)["autostart"], true);

    // The seed's examples read as specs too, without nixpkgs.
    for example in ["example.nix", "autostartExample.nix", "networkExample.nix", "fullExample.nix"]
    {
        let file = std::path::Path::new(REPO).join("examples").join(example);
        if file.exists() {
            assert_eq!(spec_of(&file)["kind"], "nixos", "{example}");
        }
    }
}

#[test]
fn create_builds_generation_one_that_lxc_knows() {
    let host = Host::new();
    let file = host.tiny("web.nix", "1", "");
    let out = host.ok(&["create", "web", path_str(&file)]);
    assert!(out.contains("created container 'web' (10.101.0.2"), "{out}");

    let profile = host.profiles_dir().join("web");
    assert_eq!(host.current_generation("web"), "1");
    let generation = std::fs::read_link(profile.join("profile-1-link")).unwrap();
    for part in ["system/init", "lxc.conf", "spec.json"] {
        assert!(generation.join(part).exists(), "generation lacks {part}");
    }
    let config = std::fs::read_to_string(host.lxc_path().join("web/config")).unwrap();
    let fragment = format!("lxc.include = {}/profile/lxc.conf", profile.display());
    assert!(config.contains(&fragment), "{config}");

    let fragment = std::fs::read_to_string(profile.join("profile/lxc.conf")).unwrap();
    for line in [
        "lxc.idmap = u 0 100000 65536",
        "lxc.idmap = g 0 100000 65536",
        "lxc.init.cmd = /init/profile/system/init",
        "lxc.tty.max = 4",
        "lxc.environment = container_ttys=pts/1 pts/2 pts/3 pts/4",
        "lxc.net.0.name = hostonly",
        "lxc.net.0.link = brNC-hostonly",
        "lxc.net.0.ipv4.address = 10.101.0.2/16 10.101.255.255",
        "lxc.net.0.ipv4.gateway = 10.101.0.1",
        "lxc.start.auto = 0",
    ] {
        assert!(fragment.lines().any(|l| l == line), "missing {line:?} in\n{fragment}");
    }
    assert!(!fragment.contains("lxc.net.1"), "no internet interface without NAT");
    // The store and /init are the helper's to mount, at each start (lxc/mounts.rs).
    assert!(!fragment.contains("lxc.mount"), "{fragment}");

    use std::os::unix::fs::MetadataExt;
    let owned_by_the_container = |dirs: &[&str]| {
        for dir in dirs {
            let meta = std::fs::metadata(host.lxc_path().join("web/rootfs").join(dir)).unwrap();
            assert_eq!((meta.uid(), meta.gid()), (100000, 100000), "rootfs/{dir}");
        }
    };
    owned_by_the_container(&[""]);

    assert_eq!(host.lxc("lxc-ls -1").stdout.trim(), "web");
    assert_eq!(host.lxc("lxc-info -n web -sH").stdout.trim(), "STOPPED");

    let listed = host.ok(&["list"]);
    let row: Vec<&str> = listed.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(row, ["web", "STOPPED", "10.101.0.2", "-", "1", "no"]);

    host.start_booted("web");
    // The mount points, LXC's too, are made at each start (lxc/mounts.rs).
    owned_by_the_container(&["proc", "sys", "dev", "nix", "nix/store", "init"]);
}

#[test]
fn generations_update_roll_back_switch_and_delete_like_nix_env() {
    let host = Host::new();
    let v1 = host.tiny("v1.nix", "1", "");
    let v2 = host.tiny("v2.nix", "2", "autostart = true;");
    host.ok(&["create", "app", path_str(&v1)]);

    let out = host.ok(&["update", "app", path_str(&v2)]);
    assert!(out.contains("generation 2 is current"), "{out}");
    assert_eq!(host.current_generation("app"), "2");

    let listing = host.ok(&["list-generations", "app"]);
    let lines: Vec<&str> = listing.lines().collect();
    assert_eq!(lines.len(), 2, "{listing}");
    assert!(lines[0].trim_start().starts_with('1') && !lines[0].contains("(current)"), "{listing}");
    assert!(lines[1].trim_start().starts_with('2') && lines[1].ends_with("(current)"), "{listing}");
    assert!(lines[1].contains("-tiny-system-2"), "{listing}");
    let json: serde_json::Value =
        serde_json::from_str(&host.ok(&["list-generations", "app", "--json"])).unwrap();
    assert_eq!(json[1]["current"], true);
    assert_eq!(json[0]["current"], false);

    // LXC reads the generation's settings through the profile link:
    // generation 2 is the autostart one.
    let autostart = || {
        let listing = host.lxc("lxc-ls --fancy --fancy-format name,autostart").stdout;
        let row: Vec<String> =
            listing.lines().nth(1).unwrap().split_whitespace().map(String::from).collect();
        row[1] == "1"
    };
    assert!(autostart(), "generation 2 starts automatically");

    host.ok(&["rollback", "app"]);
    assert_eq!(host.current_generation("app"), "1");
    assert!(!autostart(), "the LXC config follows the rollback");

    host.ok(&["switch-generation", "app", "2"]);
    assert_eq!(host.current_generation("app"), "2");
    assert!(autostart());

    // update without a file rebuilds from the last one: nothing changed.
    let out = host.ok(&["update", "app"]);
    assert!(out.contains("unchanged: generation 2 stays current"), "{out}");

    let err = host.fails(&["delete-generations", "app", "2"], 1);
    assert!(err.contains("generation 2 of 'app' is current"), "{err}");
    let err = host.fails(&["delete-generations", "app", "7"], 2);
    assert!(err.contains("generation 7 does not exist"), "{err}");
    host.ok(&["delete-generations", "app", "1"]);
    let listing = host.ok(&["list-generations", "app"]);
    assert_eq!(listing.lines().count(), 1, "{listing}");
    assert!(!host.profiles_dir().join("app/profile-1-link").exists());

    let err = host.fails(&["rollback", "app"], 1);
    assert!(err.contains("no generation older than 2"), "{err}");
    let err = host.fails(&["switch-generation", "app", "1"], 2);
    assert!(err.contains("generation 1 does not exist"), "{err}");
}

#[test]
fn destroy_removes_the_container_and_frees_its_address() {
    let host = Host::new();
    let file = host.tiny("c.nix", "1", "");
    host.ok(&["create", "first", path_str(&file)]);
    host.ok(&["update", "first", path_str(&host.tiny("c2.nix", "2", ""))]);
    let out = host.ok(&["destroy", "first"]);
    assert!(out.contains("freed 10.101.0.2"), "{out}");
    assert!(!host.lxc_path().join("first").exists());
    assert!(!host.profiles_dir().join("first").exists());
    assert_eq!(host.lxc("lxc-ls -1").stdout.trim(), "");
    let state = std::fs::read_to_string(host.state_dir().join("state.json")).unwrap();
    assert!(!state.contains("first"), "{state}");

    let out = host.ok(&["create", "second", path_str(&file)]);
    assert!(out.contains("(10.101.0.2 "), "the address is reused: {out}");
    let err = host.fails(&["destroy", "first"], 1);
    assert!(err.contains("no container named 'first'"), "{err}");
}

#[test]
fn create_of_a_taken_name_fails_and_changes_nothing() {
    let host = Host::new();
    let file = host.tiny("a.nix", "1", "");
    assert_eq!(host.helper(&["exists", "dup"]).code, 1);
    host.ok(&["create", "dup", path_str(&file)]);
    assert_eq!(host.helper(&["exists", "dup"]).code, 0);

    let state_before = std::fs::read(host.state_dir().join("state.json")).unwrap();
    let config_before = std::fs::read(host.lxc_path().join("dup/config")).unwrap();
    let other = host.tiny("b.nix", "2", "");
    let err = host.fails(&["create", "dup", path_str(&other)], 1);
    assert!(err.contains("container 'dup' already exists"), "{err}");
    assert_eq!(std::fs::read(host.state_dir().join("state.json")).unwrap(), state_before);
    assert_eq!(std::fs::read(host.lxc_path().join("dup/config")).unwrap(), config_before);
    assert_eq!(host.current_generation("dup"), "1");
    assert!(!host.profiles_dir().join("dup/profile-2-link").exists());
}

#[test]
fn addresses_are_allocated_in_order_and_static_ones_are_kept() {
    let host = Host::new();
    let file = host.tiny("a.nix", "1", "");
    let fixed = host.tiny("fixed.nix", "1", r#"network.ip = "10.101.0.50";"#);
    host.ok(&["create", "one", path_str(&file)]);
    host.ok(&["create", "two", path_str(&file)]);
    host.ok(&["create", "pinned", path_str(&fixed)]);
    assert_eq!(host.ok(&["show-ip", "one"]).trim(), "10.101.0.2");
    assert_eq!(host.ok(&["show-ip", "two"]).trim(), "10.101.0.3");
    assert_eq!(host.ok(&["show-ip", "pinned"]).trim(), "10.101.0.50");
    let fragment =
        std::fs::read_to_string(host.profiles_dir().join("pinned/profile/lxc.conf")).unwrap();
    assert!(
        fragment.contains("lxc.net.0.ipv4.address = 10.101.0.50/16 10.101.255.255"),
        "{fragment}"
    );

    // Updating keeps the automatic address: it is fixed for the container's life.
    host.ok(&["update", "one", path_str(&host.tiny("b.nix", "2", ""))]);
    assert_eq!(host.ok(&["show-ip", "one"]).trim(), "10.101.0.2");
    let json: serde_json::Value =
        serde_json::from_str(&host.ok(&["show-ip", "two", "--json"])).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"name": "two", "ipv4": "10.101.0.3", "ipv6": [], "prefixLength": 16, "bridge": "brNC-hostonly"})
    );
}

#[test]
fn a_prebuilt_system_is_deployed_with_create_system() {
    let host = Host::new();
    let build = std::process::Command::new("nix-build")
        .args([
            &format!("{REPO}/examples/tiny/system.nix"),
            "--no-out-link",
            "--argstr",
            "version",
            "prebuilt",
        ])
        .output()
        .unwrap();
    assert!(build.status.success(), "{}", String::from_utf8_lossy(&build.stderr));
    let system = String::from_utf8(build.stdout).unwrap().trim().to_string();
    host.ok(&["create", "pre", "--system", &system]);
    let listing = host.ok(&["list-generations", "pre"]);
    assert!(listing.contains(&system), "{listing}");
    let err = host.fails(&["create", "bad", "--system", "/nonexistent/system"], 1);
    assert!(err.contains("/nonexistent/system"), "{err}");
    assert_eq!(host.helper(&["exists", "bad"]).code, 1);
}

#[test]
fn help_prints_the_manual_and_each_command_its_help() {
    let host = Host::new();
    let manual = host.ok(&["help"]);
    for command in [
        "create",
        "update",
        "destroy",
        "list-generations",
        "delete-generations",
        "switch-generation",
        "rollback",
        "start",
        "login",
        "stop",
        "terminate",
        "list",
        "show-ip",
        "exists",
        "state",
        "run",
    ] {
        assert!(
            manual.contains(&format!("nixcloud-container {command} ")),
            "manual lacks {command}"
        );
        let help = host.ok(&[command, "--help"]);
        assert!(help.contains("Usage: nixcloud-container"), "{command} --help: {help}");
        assert_eq!(host.ok(&["help", command]), help, "help {command} is {command} --help");
    }
    for topic in
        ["EXIT STATUS", "FILES", "CONTAINER FILES", "10.101.0.1/16", "brNC-internet", "100000"]
    {
        assert!(manual.contains(topic), "manual lacks {topic}");
    }
    assert!(host.ok(&["--help"]).contains("nixcloud-container help"));
    let err = host.fails(&["help", "frobnicate"], 2);
    assert!(err.contains("no command named"), "{err}");
}

#[test]
fn a_flakes_container_is_built_with_create_flake() {
    let host = Host::new();
    let flake = host.dir.path().join("flake");
    std::fs::create_dir(&flake).unwrap();
    std::fs::write(
        flake.join("flake.nix"),
        format!(
            "{{ outputs = {{ self }}: {{ nixcloudContainers.web = {{ autostart = true; \
             system = import {REPO}/examples/tiny/system.nix {{ version = \"flake\"; }}; }}; }}; }}"
        ),
    )
    .unwrap();
    // Without `#<name>`, the container's name is the attribute.
    host.ok(&["create", "web", "--flake", path_str(&flake)]);
    let listing = host.ok(&["list", "--json"]);
    let rows: serde_json::Value = serde_json::from_str(&listing).unwrap();
    assert_eq!(rows[0]["autostart"], true, "{listing}");
    assert!(host.ok(&["list-generations", "web"]).contains("tiny-system-flake"));
    host.ok(&["update", "web"]);
    let err =
        host.fails(&["create", "other", "--flake", &format!("{}#missing", flake.display())], 1);
    assert!(err.contains("has no nixcloudContainers.missing"), "{err}");
}

#[test]
fn a_copy_of_the_tiny_example_beside_a_container_file_builds() {
    // As users do: examples/tiny/ copied into the directory of their own
    // container file, which imports it by a relative path.
    let host = Host::new();
    let mine = host.dir.path().join("mine");
    std::fs::create_dir_all(mine.join("tiny")).unwrap();
    for file in ["system.nix", "build.sh"] {
        std::fs::copy(format!("{REPO}/examples/tiny/{file}"), mine.join("tiny").join(file))
            .unwrap();
    }
    let file = mine.join("web.nix");
    std::fs::write(&file, "{ system = import ./tiny/system.nix { version = \"copied\"; }; }\n")
        .unwrap();
    host.ok(&["create", "copied", path_str(&file)]);
    host.start_booted("copied");
    assert_eq!(host.ok(&["run", "copied", "cat", "/var/lib/tiny/booted"]).trim(), "copied");
}
