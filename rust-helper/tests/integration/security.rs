//! A container file is data, never host code: whoever writes one gains
//! nothing on the host. Injection through every field of a container file
//! and of a flake output, generations with LXC settings the helper would not
//! write, restricted evaluation, and builds in Nix's sandbox.

use std::path::Path;

use crate::common::{built_by_script, path_str, Host, REPO};

/// What an attacker would have LXC run as root on the host: a script that
/// leaves a mark.
fn canary(host: &Host) -> (std::path::PathBuf, std::path::PathBuf) {
    let mark = host.dir.path().join("hook-ran");
    let script = host.file("canary.sh", &format!("#!/bin/sh\ntouch {}\n", mark.display()));
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    (script, mark)
}

/// Every line of every LXC config and generation setting on this host.
fn all_lxc_settings(host: &Host) -> String {
    let mut text = String::new();
    for root in [host.lxc_path(), host.profiles_dir()] {
        let Ok(entries) = std::fs::read_dir(&root) else { continue };
        for entry in entries.flatten() {
            for file in ["config", "profile/lxc.conf"] {
                if let Ok(content) = std::fs::read_to_string(entry.path().join(file)) {
                    text.push_str(&content);
                }
            }
        }
    }
    text
}

/// The keys of a container file and of its `network`, as lib/spec.nix
/// defines them: a field added there is tried here too.
fn spec_keys() -> (Vec<String>, Vec<String>) {
    let output = std::process::Command::new("nix-instantiate")
        .args(["--eval", "--strict", "--json", "--expr"])
        .arg(format!("let s = import {REPO}/lib/spec.nix; in [ s.containerKeys s.networkKeys ]"))
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let keys: (Vec<String>, Vec<String>) = serde_json::from_slice(&output.stdout).unwrap();
    keys
}

const TINY: &str = "import <nixcloud-container/examples/tiny/system.nix> { }";

#[test]
fn no_field_of_a_container_file_or_flake_reaches_lxc_as_a_setting() {
    let host = Host::new();
    let (script, mark) = canary(&host);
    let hook = format!("lxc.hook.pre-start = {}", script.display());
    let payloads = [
        format!("br0\n{hook}"),
        format!("10.101.0.5\n{hook}"),
        format!("16\n{hook}"),
        format!("x\r{hook}"),
        "../../../sys/class/net/lo".to_string(),
        "br0/..".to_string(),
        "x".repeat(5000),
    ];
    let (container_keys, network_keys) = spec_keys();
    let mut tried = Vec::new();
    for payload in &payloads {
        let value = serde_json::to_string(payload).unwrap();
        for key in &network_keys {
            tried.push(format!("{{ system = {TINY}; network.{key} = {value}; }}"));
        }
        for key in &container_keys {
            match key.as_str() {
                // A NixOS module: nothing of it reaches LXC or the host (the
                // guest module sets what does, from the helper's values).
                "configuration" => {}
                "system" => tried.push(format!("{{ system = {value}; }}")),
                _ => tried.push(format!("{{ system = {TINY}; {key} = {value}; }}")),
            }
        }
        tried.push(format!("{{ system = {TINY}; network = {value}; }}"));
    }
    // Numbers and strings where the other is wanted.
    tried.push(format!("{{ system = {TINY}; network.prefixLength = \"16\"; }}"));
    tried.push(format!("{{ system = {TINY}; network.ip = 174391301; }}"));
    tried.push(format!("{{ system = {TINY}; network.prefixLength = 0; }}"));
    tried.push(format!("{{ system = {TINY}; network.prefixLength = 33; }}"));
    tried.push(format!("{{ system = {TINY}; autostart = \"yes\"; }}"));
    // A fake derivation pointing at a host directory.
    tried.push("{ system = { type = \"derivation\"; outPath = \"/etc\"; }; }".to_string());

    for (index, text) in tried.iter().enumerate() {
        let file = host.file(&format!("evil{index}.nix"), text);
        let err = host.fails(&["create", "evil", path_str(&file)], 1);
        assert!(err.contains(path_str(&file)), "names the file: {err}");
        host.assert_nothing_created();
    }

    // A flake's output is the same format, checked the same way.
    let flake = host.dir.path().join("flake");
    std::fs::create_dir(&flake).unwrap();
    for key in &network_keys {
        let value = serde_json::to_string(&payloads[0]).unwrap();
        std::fs::write(
            flake.join("flake.nix"),
            format!(
                "{{ outputs = {{ self }}: {{ nixcloudContainers.evil = {{ system = import {REPO}/examples/tiny/system.nix {{ }}; network.{key} = {value}; }}; }}; }}"
            ),
        )
        .unwrap();
        let err = host.fails(&["create", "evil", "--flake", path_str(&flake)], 1);
        assert!(err.contains(&format!("network.{key}")), "names the field: {err}");
        host.assert_nothing_created();
    }

    assert!(!all_lxc_settings(&host).contains("lxc.hook"));
    assert!(!mark.exists(), "a hook ran on the host");
    eprintln!("{} container files and {} flake outputs refused", tried.len(), network_keys.len());
}

/// Builds a copy of generation `path` whose lxc.conf has `extra` added: what
/// a helper before the checks, or someone with access to the store, made.
fn tampered_generation(host: &Host, path: &Path, extra: &str) -> String {
    let expression = format!(
        r#"let
          bb = import {REPO}/lib/host-busybox.nix;
          gen = builtins.storePath "{gen}";
        in derivation {{
          name = "tampered-generation";
          system = builtins.currentSystem;
          builder = bb;
          args = [ "sh" "-ec" ''
            ${{bb}} mkdir $out
            ${{bb}} ln -s $(${{bb}} readlink ${{gen}}/system) $out/system
            ${{bb}} cp ${{gen}}/spec.json $out/spec.json
            ${{bb}} cat ${{gen}}/lxc.conf > $out/lxc.conf
            echo "$extra" >> $out/lxc.conf
          '' ];
          extra = "{extra}";
        }}"#,
        gen = path.display(),
    );
    let built = std::process::Command::new("nix-build")
        .args(["--no-out-link", "--expr", &expression])
        .output()
        .unwrap();
    assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
    let _ = host;
    String::from_utf8(built.stdout).unwrap().trim().to_string()
}

#[test]
fn a_generation_with_settings_the_helper_would_not_write_is_never_used() {
    let host = Host::new();
    let (script, mark) = canary(&host);
    host.ok(&["create", "victim", path_str(&host.tiny("v1.nix", "1", ""))]);
    let profile = host.profiles_dir().join("victim");
    let good = std::fs::read_link(profile.join("profile-1-link")).unwrap();
    let extra = format!(
        "lxc.hook.pre-start = {script}\nlxc.hook.destroy = {script}\nlxc.mount.entry = /root root none bind,create=dir 0 0",
        script = script.display()
    );
    let tampered = tampered_generation(&host, &good, &extra);
    // As a helper without the checks would have made it current.
    let set = std::process::Command::new("nix-env")
        .args(["--profile", path_str(&profile.join("profile")), "--set", &tampered])
        .output()
        .unwrap();
    assert!(set.status.success());
    assert_eq!(host.current_generation("victim"), "2");

    let err = host.fails(&["start", "victim"], 1);
    assert!(
        err.contains("refusing to start 'victim'") && err.contains("lxc.hook.pre-start"),
        "{err}"
    );
    assert_eq!(host.state("victim"), "STOPPED");

    host.ok(&["switch-generation", "victim", "1"]);
    let err = host.fails(&["switch-generation", "victim", "2"], 1);
    assert!(err.contains("refusing to switch 'victim' to generation 2"), "{err}");
    host.ok(&["update", "victim", path_str(&host.tiny("v3.nix", "3", ""))]);
    host.ok(&["switch-generation", "victim", "3"]);
    let err = host.fails(&["rollback", "victim"], 1);
    assert!(err.contains("refusing to roll 'victim' back to generation 2"), "{err}");
    assert_eq!(host.current_generation("victim"), "3");
    host.start_booted("victim");
    host.ok(&["stop", "victim"]);

    // The host module's boot service starts through the helper, which refuses it too.
    std::process::Command::new("nix-env")
        .args(["--profile", path_str(&profile.join("profile")), "--switch-generation", "2"])
        .status()
        .unwrap();
    let autostart = host.ns_with_helper("nixcloud-container start victim");
    assert_eq!(autostart.code, 1, "{autostart:?}");

    // destroy removes it without LXC reading its settings (lxc.hook.destroy).
    host.ok(&["destroy", "victim"]);
    host.assert_nothing_created();
    assert!(!mark.exists(), "a hook of the tampered generation ran on the host");
}

#[test]
fn container_files_read_only_what_is_theirs() {
    let host = Host::new();
    host.file("secret-outside", "outside");
    // Another tenant's secret, in the store.
    let added = std::process::Command::new("nix-store")
        .args(["--add", path_str(&host.file("others-secret", "secret"))])
        .output()
        .unwrap();
    let others = String::from_utf8(added.stdout).unwrap().trim().to_string();
    std::fs::create_dir(host.dir.path().join("tenant")).unwrap();
    let tenant = |name: &str, text: &str| {
        let path = host.dir.path().join("tenant").join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    tenant("version", "fromfile");
    std::os::unix::fs::symlink("/etc/hostname", host.dir.path().join("tenant/hostname")).unwrap();
    let cases = [
        ("shadow.nix", "builtins.readFile /etc/shadow", "forbidden in restricted mode"),
        ("climb.nix", "builtins.readFile ../secret-outside", "forbidden in restricted mode"),
        ("link.nix", "builtins.readFile ./hostname", "forbidden in restricted mode"),
        (
            "toolkit.nix",
            "builtins.toJSON (builtins.readDir <nixcloud-container/..>)",
            "forbidden in restricted mode",
        ),
        ("store.nix", &format!("builtins.readFile \"{}\"", others), "forbidden in restricted mode"),
        ("env.nix", "builtins.getEnv \"HOME\"", "builtins.getEnv \"HOME\" is refused"),
    ];
    for (file, expression, message) in cases {
        // The value is used where it is built: a derivation attribute.
        let path = tenant(
            file,
            &format!(
                "{{ system = import <nixcloud-container/examples/tiny/system.nix> {{ version = {expression}; }}; }}"
            ),
        );
        let err = host.fails(&["create", "reader", path_str(&path)], 1);
        assert!(err.contains(message), "{file}: {err}");
        host.assert_nothing_created();
    }
    // What is in its own directory is its to read.
    let own = tenant(
        "own.nix",
        "{ system = import <nixcloud-container/examples/tiny/system.nix> { version = builtins.readFile ./version; }; }",
    );
    host.ok(&["create", "reader", path_str(&own)]);
    assert!(host.ok(&["list-generations", "reader"]).contains("tiny-system-fromfile"));
}

#[test]
fn builders_run_unprivileged_in_the_sandbox() {
    let host = Host::new();
    let marker = format!("escaped-{}", std::process::id());
    let file = built_by_script(
        &host,
        "builder-probe",
        &format!(
            "${{bb}} mkdir $out
             ${{bb}} id -u > $out/uid
             ${{bb}} cat /etc/shadow > $out/shadow 2>&1
             ${{bb}} ls /root > $out/root 2>&1
             echo x > /tmp/{marker} 2> $out/tmp
             echo x > /nix/store/{marker} 2> $out/store
             printf '#!%s sh\\nexec %s sleep 1000\\n' ${{bb}} ${{bb}} > $out/init
             ${{bb}} chmod +x $out/init"
        ),
    );
    host.ok(&["create", "probe", path_str(&file)]);
    let system = std::fs::read_link(host.profiles_dir().join("probe/profile/system")).unwrap();
    let read = |name: &str| std::fs::read_to_string(system.join(name)).unwrap();
    let uid: u32 = read("uid").trim().parse().unwrap();
    assert_ne!(uid, 0, "the builder ran as root");
    assert!(!read("shadow").contains("root:"), "the builder read /etc/shadow: {}", read("shadow"));
    assert!(
        read("root").contains("No such file") || read("root").contains("denied"),
        "{}",
        read("root")
    );
    assert!(!Path::new("/tmp").join(&marker).exists(), "the builder wrote the host's /tmp");
    assert!(!Path::new("/nix/store").join(&marker).exists(), "the builder wrote into the store");
}

/// Processes whose command line contains `needle`.
fn processes_with(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(needle) {
                found.push(format!("{}: {cmdline}", entry.file_name().to_string_lossy()));
            }
        }
    }
    found
}

/// The entries of /tmp that a build named `name` would leave.
fn build_dirs_in_tmp(name: &str) -> Vec<String> {
    std::fs::read_dir("/tmp")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("nix-build-") && n.contains(name))
        .collect()
}

#[test]
fn a_killed_helper_leaves_no_build_running_and_nothing_in_tmp() {
    let host = Host::new();
    for signal in ["KILL", "INT", "TERM"] {
        // A distinct builder each time, so that none is built already.
        let seconds = 500 + std::process::id() % 400;
        let name = format!("slow-build-{signal}-{seconds}");
        let file =
            built_by_script(&host, &name, &format!("${{bb}} sleep {seconds}; ${{bb}} mkdir $out"));
        let mut command = host.helper_command(&["create", "slow", path_str(&file)]);
        command.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
        // As from a terminal or a service manager, whatever this test was
        // started from: a background job of a shell without job control
        // (or nohup) passes SIGINT (or SIGHUP) on ignored.
        // SAFETY: signal(2) is async-signal-safe.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut command, || {
                for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
                    libc::signal(signal, libc::SIG_DFL);
                }
                Ok(())
            });
        }
        let mut child = command.spawn().unwrap();
        let sleeper = format!("sleep {seconds}");
        host.wait_for("the builder to run", || !processes_with(&sleeper).is_empty());
        assert!(build_dirs_in_tmp(&name).is_empty(), "the build's directory is not in /tmp");
        let scratch = std::fs::read_dir(host.state_dir().join("tmp")).unwrap().flatten();
        let in_scratch =
            scratch.flat_map(|run| std::fs::read_dir(run.path()).into_iter().flatten().flatten());
        assert!(
            in_scratch.into_iter().any(|e| e.file_name().to_string_lossy().contains(&name)),
            "the build's directory is in the helper's scratch directory"
        );
        // `ip netns exec` passes the signal on to the helper it runs.
        let helper_pid = child.id();
        std::process::Command::new("kill")
            .args([&format!("-{signal}"), &helper_pid.to_string()])
            .status()
            .unwrap();
        let _ = child.wait();
        host.wait_for("the build to end with the helper", || processes_with(&sleeper).is_empty());
        assert!(build_dirs_in_tmp(&name).is_empty(), "{signal}: a build directory in /tmp");
    }
    // What the killed commands left in the state directory goes with a
    // later command: a scratch directory that nobody locks and that is older
    // than the moment between its making and its locking (scratch.rs: 5 s)
    // is abandoned. They are made older than that, instead of waiting.
    for left in std::fs::read_dir(host.state_dir().join("tmp")).unwrap().flatten() {
        let aged = std::process::Command::new("touch")
            .args(["-d", "1 minute ago"])
            .arg(left.path())
            .status()
            .unwrap();
        assert!(aged.success());
    }
    host.ok(&["create", "after", path_str(&host.tiny("after.nix", "1", ""))]);
    let left: Vec<_> = std::fs::read_dir(host.state_dir().join("tmp")).unwrap().flatten().collect();
    assert!(left.is_empty(), "{left:?}");
    assert_eq!(host.helper(&["exists", "slow"]).code, 1);
}
