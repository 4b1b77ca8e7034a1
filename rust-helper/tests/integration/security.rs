//! A container file is data, never host code: whoever writes one gains
//! nothing on the host. Injection through every field of a container file
//! and of a flake output, generations with LXC settings the helper would not
//! write, restricted evaluation, and builds in Nix's sandbox.

use std::path::Path;

use crate::common::{as_host_user, built_by_script, path_str, Host, NOBODY, REPO};

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
    let conf = std::fs::read_to_string(path.join("lxc.conf")).unwrap();
    generations_with(host, path, &[format!("{conf}{extra}\n")]).remove(0)
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
    // Links inside its directory that lead out of it: Nix 2.8's restricted
    // evaluation checks a path as written, then again with its links
    // resolved (EvalState::checkSourcePath), and refuses both a read and an
    // import through them. The helper relies on that for the links a
    // container file's directory holds (spec.rs `in_named_directory`).
    std::os::unix::fs::symlink("/etc/hostname", host.dir.path().join("tenant/hostname")).unwrap();
    host.file("outside.nix", "\"outside\"");
    std::os::unix::fs::symlink("../outside.nix", host.dir.path().join("tenant/elsewhere.nix"))
        .unwrap();
    let cases = [
        ("shadow.nix", "builtins.readFile /etc/shadow", "forbidden in restricted mode"),
        ("climb.nix", "builtins.readFile ../secret-outside", "forbidden in restricted mode"),
        ("link.nix", "builtins.readFile ./hostname", "forbidden in restricted mode"),
        ("import-link.nix", "import ./elsewhere.nix", "forbidden in restricted mode"),
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

/// `path` added to the store (a file or a directory with all below it),
/// as its store path.
fn added_to_store(path: &Path) -> String {
    let added = std::process::Command::new("nix-store").args(["--add", path_str(path)]).output();
    let added = added.unwrap();
    assert!(added.status.success(), "{added:?}");
    String::from_utf8(added.stdout).unwrap().trim().to_string()
}

/// A container file that lies directly in the store (/nix/store/<hash>-x.nix,
/// as pkgs.writeText makes one) reads only itself: its directory, the store,
/// would be every store path. One in a store directory (an instance's
/// source, copied by the host module) reads that directory.
#[test]
fn a_container_file_in_the_store_reads_only_its_own_store_path() {
    let host = Host::new();
    let others = added_to_store(&host.file("others-secret", "secret"));
    let reading = |expression: &str| {
        format!(
            "{{ system = import <nixcloud-container/examples/tiny/system.nix> {{ version = {expression}; }}; }}"
        )
    };
    let thief = added_to_store(
        &host.file("thief.nix", &reading(&format!("builtins.readFile \"{others}\""))),
    );
    let err = host.fails(&["create", "thief", &thief], 1);
    assert!(err.contains("forbidden in restricted mode"), "{err}");
    host.assert_nothing_created();

    // A store file that is a link to another store path is refused before
    // anything is evaluated.
    let link = host.dir.path().join("link.nix");
    std::os::unix::fs::symlink(&others, &link).unwrap();
    let linked = added_to_store(&link);
    let err = host.fails(&["create", "linked", &linked], 1);
    assert!(err.contains("outside its own store path"), "{err}");
    host.assert_nothing_created();

    // A store file that reads nothing else works.
    let alone = added_to_store(&host.file("alone.nix", &reading("\"alone\"")));
    host.ok(&["create", "alone", &alone]);
    assert!(host.ok(&["list-generations", "alone"]).contains("tiny-system-alone"));

    // A file of a store directory reads what is beside it.
    let source = host.dir.path().join("source");
    std::fs::create_dir(&source).unwrap();
    std::fs::write(source.join("version"), "beside").unwrap();
    std::fs::write(source.join("web.nix"), reading("builtins.readFile ./version")).unwrap();
    let copied = added_to_store(&source);
    host.ok(&["create", "beside", &format!("{copied}/web.nix")]);
    assert!(host.ok(&["list-generations", "beside"]).contains("tiny-system-beside"));
}

/// Store paths whose name holds `marker`: what an evaluation or a build of
/// a file that names it left in the store.
fn store_paths_naming(marker: &str) -> Vec<String> {
    std::fs::read_dir("/nix/store")
        .unwrap()
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains(marker))
        .collect()
}

#[test]
fn a_container_file_linking_out_of_its_directory_is_refused() {
    let host = Host::new();
    let dir = host.dir.path();
    for tenant in ["tenant1", "tenant2"] {
        std::fs::create_dir(dir.join(tenant)).unwrap();
    }
    // Tenant 2's container embeds its secret, unique to this test run so
    // that the store shows whether anything of it was evaluated or built.
    let secret = format!("secret-{}", host.netns);
    std::fs::write(dir.join("tenant2/secret.txt"), &secret).unwrap();
    std::fs::write(
        dir.join("tenant2/b.nix"),
        "{ system = import <nixcloud-container/examples/tiny/system.nix> \
         { version = builtins.readFile ./secret.txt; }; }",
    )
    .unwrap();
    let linked = dir.join("tenant1/a.nix");
    std::os::unix::fs::symlink("../tenant2/b.nix", &linked).unwrap();
    let refused = |err: &str| {
        assert!(err.contains("is a link to") && err.contains("outside its directory"), "{err}");
    };

    refused(&host.fails(&["create", "t1", path_str(&linked)], 1));
    host.assert_nothing_created();

    let list =
        host.file("list.json", &format!("{{ \"t1\": {{ \"file\": \"{}\" }} }}", linked.display()));
    let synced = host.helper(&["sync", "--file", path_str(&list)]);
    assert_eq!(synced.code, 1, "{synced:?}");
    refused(&synced.stderr);
    host.assert_nothing_created();

    // `update` with the link, and with a recorded file that became one.
    let own = dir.join("tenant1/own.nix");
    std::fs::write(&own, crate::common::tiny_file("1", "", "")).unwrap();
    host.ok(&["create", "t1", path_str(&own)]);
    refused(&host.fails(&["update", "t1", path_str(&linked)], 1));
    std::fs::remove_file(&own).unwrap();
    std::os::unix::fs::symlink("../tenant2/b.nix", &own).unwrap();
    refused(&host.fails(&["update", "t1"], 1));
    assert_eq!(host.current_generation("t1"), "1");
    assert_eq!(store_paths_naming(&secret), Vec::<String>::new(), "tenant 2's secret was built");
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

/// Each entry below `dir` (`dir` itself first) with its owner, group, mode
/// and, for a link, its target: what tells that nothing changed there.
fn tree(dir: &Path) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(dir).unwrap();
    let target = std::fs::read_link(dir).map(|t| t.display().to_string()).unwrap_or_default();
    let mut entries =
        vec![format!("{} {}:{} {:o} {target}", dir.display(), meta.uid(), meta.gid(), meta.mode())];
    if meta.is_dir() {
        let mut children: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().collect();
        children.sort_by_key(|entry| entry.file_name());
        for child in children {
            entries.extend(tree(&child.path()));
        }
    }
    entries
}

/// The owner, group and mode (permission bits) of `path`, not following a link.
fn shape(path: &Path) -> (u32, u32, u32) {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(path).unwrap();
    (meta.uid(), meta.gid(), meta.mode() & 0o7777)
}

const WITH_DATA: &str = r#"bindMounts."/var/lib/app" = { hostPath = "app"; isReadOnly = false; };"#;

#[test]
fn no_host_user_reaches_into_a_container_and_its_uid_changes_none_of_roots_files() {
    let host = Host::new();
    let root_settings = host.file("root-settings.conf", "lxc.environment = SET_BY_ROOT=1\n");
    let file = host.tiny("t.nix", "1", WITH_DATA);
    host.ok(&["create", "t", path_str(&file), "--lxc-config", path_str(&root_settings)]);
    host.start_booted("t");
    // Root inside leaves setuid programs, in directories open to all, in its
    // rootfs and in its data.
    host.ok(&[
        "run",
        "t",
        "sh",
        "-c",
        "for d in /tmp /var/lib/app; do cp /bin/sh $d/suid && chmod 4755 $d/suid && chmod 777 $d; done",
    ]);
    let dir = host.lxc_path().join("t");
    let data = host.state_dir().join("data/t");
    let planted = [dir.join("rootfs/tmp/suid"), data.join("app/suid")];
    for program in &planted {
        assert_eq!(shape(program), (100000, 100000, 0o4755), "{}", program.display());
    }

    // An unprivileged host user lists nothing and runs nothing below them.
    let below =
        [dir.clone(), dir.join("rootfs"), dir.join("rootfs/tmp"), data.clone(), data.join("app")];
    for path in &below {
        let listed = as_host_user(NOBODY, &format!("ls {}", path.display()));
        assert_ne!(listed.code, 0, "nobody lists {}: {listed:?}", path.display());
    }
    for program in &planted {
        let ran = as_host_user(NOBODY, &format!("{} -c 'id -u'", program.display()));
        assert_ne!(ran.code, 0, "nobody runs {}: {ran:?}", program.display());
        assert!(!ran.stdout.contains("100000"), "{ran:?}");
    }

    // The container's host uid (as a setuid program of its would make a
    // host user) creates, replaces and links nothing where root keeps LXC's
    // config, root's settings, the pidfile and the state.
    let roots = ["config", "root.conf", "monitor.pid"].map(|name| dir.join(name));
    for file in &roots {
        assert!(file.is_file(), "{} is there while it runs", file.display());
    }
    let state = host.state_dir();
    let before: Vec<Vec<String>> = [&dir, &state].iter().map(|d| tree(d)).collect();
    let victim = host.file("victim", "root's\n");
    let (d, v, s) = (dir.display(), victim.display(), state.display());
    let attempts = [
        format!("touch {d}/new"),
        format!("ln -s {v} {d}/new"),
        format!("ln {d}/rootfs/tmp/suid {d}/new"),
        format!("ln -sf {v} {d}/monitor.pid"),
        format!("rm -f {d}/monitor.pid"),
        format!("echo 1 > {d}/monitor.pid"),
        format!("mv -f {d}/rootfs/tmp/suid {d}/config"),
        format!("echo lxc.hook.pre-start = {v} >> {d}/config"),
        format!("rm -f {d}/config"),
        format!("ln -sf {v} {d}/root.conf"),
        format!("rm -f {d}/root.conf"),
        format!("chmod 755 {d}"),
        format!("chmod 755 {}", data.display()),
        format!("touch {s}/new {s}/locks/new {s}/builds/new {s}/data/new {s}/tmp/new"),
        format!("ln -sf {v} {s}/locks/t.lock"),
    ];
    for attempt in &attempts {
        let run = as_host_user(100000, attempt);
        assert_ne!(run.code, 0, "the container's uid did `{attempt}`: {run:?}");
    }
    let after: Vec<Vec<String>> = [&dir, &state].iter().map(|d| tree(d)).collect();
    assert_eq!(before, after, "nothing changed where root keeps the container's files");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "root's\n");

    // LXC does all it does with the directory closed: attach, the console,
    // stop, start again, destroy.
    assert_eq!(host.helper(&["run", "t", "true"]).code, 0);
    // It reads its stdin until it ends (a pipe; /dev/null cannot be polled).
    let console =
        host.ns(&format!("echo | lxc-console -P {} -n t -t 0", host.lxc_path().display()));
    assert!(console.code == 0 && console.stderr.contains("Connected to tty 0"), "{console:?}");
    host.ok(&["stop", "t"]);
    // lxc-start removes its pidfile as it exits, a moment after the
    // container is STOPPED (and the stop returns).
    host.wait_for("LXC to remove its pidfile after the stop", || !roots[2].exists());
    host.start_booted("t");
    host.ok(&["destroy", "t", "--force"]);
    host.assert_nothing_created();
}

#[test]
fn a_container_made_before_the_gates_moves_behind_them_at_its_next_start_with_its_files() {
    let host = Host::new();
    let (script, mark) = canary(&host);
    let file = host.tiny("old.nix", "1", WITH_DATA);
    host.ok(&["create", "old", path_str(&file)]);
    host.start_booted("old");
    host.ok(&["run", "old", "sh", "-c", "echo data > /var/lib/app/kept; echo rootfs > /kept"]);
    host.ok(&["stop", "old"]);
    let dir = host.lxc_path().join("old");
    let data = host.state_dir().join("data/old");
    // The shape earlier versions left: the container's directory and its
    // data directory its root's (LXC hands the first to it).
    for (path, mode) in [(&dir, 0o755), (&data, 0o700)] {
        std::os::unix::fs::chown(path, Some(100000), Some(100000)).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    // What its uid could then do in root's places: a config that LXC reads
    // at the next start (with a hook), root's settings and the pidfile that
    // are links to a file of root's.
    let victim = host.file("victim", "root's\n");
    let evil = dir.join("rootfs/evil.conf");
    let config = std::fs::read_to_string(dir.join("config")).unwrap();
    std::fs::write(&evil, format!("{config}lxc.hook.pre-start = {}\n", script.display())).unwrap();
    std::os::unix::fs::chown(&evil, Some(100000), Some(100000)).unwrap();
    let (d, v) = (dir.display(), victim.display());
    let planted = as_host_user(
        100000,
        &format!(
            "ln -sf {} {d}/config && ln -sf {v} {d}/monitor.pid && ln -sf {v} {d}/root.conf",
            evil.display()
        ),
    );
    assert_eq!(planted.code, 0, "the old shape let its uid do it: {planted:?}");

    host.start_booted("old");
    assert!(!mark.exists(), "the planted config's hook ran");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "root's\n", "root wrote through a link");
    assert_eq!(shape(&dir), (0, 100000, 0o710));
    assert_eq!(shape(&data), (0, 0, 0o700));
    for name in ["config", "monitor.pid"] {
        let (uid, _, _) = shape(&dir.join(name));
        assert!(dir.join(name).symlink_metadata().unwrap().is_file() && uid == 0, "{name}");
    }
    assert!(!dir.join("root.conf").exists(), "root gave it no settings");
    // Nothing of it is lost.
    let kept = host.ok(&["run", "old", "cat", "/var/lib/app/kept", "/kept"]);
    assert_eq!(kept, "data\nrootfs\n");
    assert_eq!(host.current_generation("old"), "1");
    host.ok(&["stop", "old"]);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "root's\n");
}

#[test]
fn links_a_container_plants_in_its_rootfs_are_not_followed() {
    let host = Host::new();
    host.ok(&["create", "t", path_str(&host.tiny("t.nix", "1", ""))]);
    host.start_booted("t");
    host.ok(&["stop", "t"]);
    let rootfs = host.lxc_path().join("t/rootfs");
    // A directory of root's the links lead to.
    let victim = host.dir.path().join("victim-dir");
    std::fs::create_dir(&victim).unwrap();
    std::fs::write(victim.join("file"), "root's\n").unwrap();
    let before = tree(&victim);
    // Where LXC mounts proc (its mount points are made at each start) and
    // where the helper mounts the store.
    for (place, mount_point) in [("proc", "proc"), ("nix", "nix/store")] {
        let planted = as_host_user(
            100000,
            &format!(
                "rm -r {r}/{place} && ln -s {} {r}/{place}",
                victim.display(),
                r = rootfs.display()
            ),
        );
        assert_eq!(planted.code, 0, "{planted:?}");
        let err = host.fails(&["start", "t"], 1);
        let refused = format!(
            "{mount_point} in the container's rootfs is, or passes through, a symbolic link"
        );
        assert!(err.contains(&refused), "{err}");
        assert_eq!(host.state("t"), "STOPPED");
        assert_eq!(tree(&victim), before, "root followed the link at {place}");
        std::fs::remove_file(rootfs.join(place)).unwrap();
    }
    // Mount points the container removed are made again, as its root's.
    as_host_user(100000, &format!("rmdir {r}/sys {r}/dev", r = rootfs.display()));
    host.start_booted("t");
    for place in ["proc", "sys", "dev", "nix"] {
        let (uid, gid, _) = shape(&rootfs.join(place));
        assert_eq!((uid, gid), (100000, 100000), "{place}");
    }
}

#[test]
fn directories_others_can_write_are_refused_for_roots_files() {
    let host = Host::new();
    let file = host.tiny("t.nix", "1", "");
    // A state directory of another user, an LXC path open to all.
    for (dir, owner, mode) in [(host.state_dir(), 100000, 0o755), (host.lxc_path(), 0, 0o777)] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir(&dir).unwrap();
        std::os::unix::fs::chown(&dir, Some(owner), Some(owner)).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).unwrap();
        let err = host.fails(&["create", "t", path_str(&file)], 1);
        assert!(err.contains(&format!("{} (owner uid {owner}", dir.display())), "{err}");
        host.assert_nothing_created();
        std::os::unix::fs::chown(&dir, Some(0), Some(0)).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    host.ok(&["create", "t", path_str(&file)]);
}

/// Host files `container_files_with_every_lxc_key` lets containers ask for.
const EVERY_KEY_HOST: &str = r#"{
    "allowedHostPaths": {"/srv": {"writable": false}},
    "allowedForwardPorts": [{"from": 8000, "to": 8099}],
    "allowedDevices": @DEVICES@,
    "limits": {"memory": {"max": "1G"}},
    "extraBridges": {"brOwn": {"address": "10.10.0.1", "prefixLength": 16}}
}"#;

/// A container file's `limits` with every limit of lib/limits.json set, and
/// its `devices` with every device of lib/devices.json (Nix), with the
/// cgroup2 files of the limits: what a limit or a device added there brings
/// into the LXC settings is checked here too.
fn every_limit_and_device() -> (String, Vec<String>, String) {
    let read = |file: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(format!("{REPO}/lib/{file}")).unwrap())
            .unwrap()
    };
    let mut limits = String::new();
    let mut files = Vec::new();
    for limit in read("limits.json")["limits"].as_array().unwrap() {
        let (group, key) = (limit["group"].as_str().unwrap(), limit["key"].as_str().unwrap());
        let value = match limit["unit"].as_str().unwrap() {
            "size" => r#""64M""#,
            "weight" => "50",
            "cpus" => "1.5",
            "count" => "100",
            unit => panic!("a limit of unit {unit}: give it a value here"),
        };
        limits.push_str(&format!("limits.{group}.{key} = {value}; "));
        files.push(format!("{group}.{key}"));
    }
    let devices: Vec<String> = read("devices.json")
        .as_array()
        .unwrap()
        .iter()
        .map(|device| device["name"].to_string())
        .collect();
    (limits, files, devices.join(" "))
}

/// The keys of an lxc.conf's settings.
fn keys_of(conf: &str) -> Vec<&str> {
    conf.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| line.split_once(" = ").expect("key = value").0)
        .collect()
}

/// How a refused copy of a generation's lxc.conf differs from it.
enum Edit {
    /// This line added at the end.
    Add(String),
    /// The lines containing this left out.
    Drop(&'static str),
}

/// Builds, in one derivation, a copy of generation `path` for each of
/// `confs` with that lxc.conf instead of its own, and returns their paths in
/// order. In the texts, @EVIL@, @OTHER_SCRIPT@ and @OTHER_HOOK@ stand for
/// store files that are not the helper's scripts: one named otherwise, one
/// named as lib/isolate-port.sh and one as lib/drop-forwards.sh, each with
/// other text.
fn generations_with(host: &Host, path: &Path, confs: &[String]) -> Vec<String> {
    let outputs: Vec<String> = (0..confs.len()).map(|index| format!("v{index}")).collect();
    let texts: serde_json::Map<String, serde_json::Value> =
        outputs.iter().cloned().zip(confs.iter().map(|conf| conf.clone().into())).collect();
    let texts_file = host.file("confs.json", &serde_json::Value::Object(texts).to_string());
    let expression = format!(
        r##"let
          bb = import {REPO}/lib/host-busybox.nix;
          gen = builtins.storePath "{gen}";
          evil = "#!/bin/sh\nreboot\n";
          placeholders = {{
            "@EVIL@" = builtins.toFile "evil-isolate-port.sh" evil;
            "@OTHER_SCRIPT@" = builtins.toFile "isolate-port.sh" evil;
            "@OTHER_HOOK@" = builtins.toFile "drop-forwards.sh" evil;
          }};
          texts = builtins.mapAttrs
            (_: builtins.replaceStrings (builtins.attrNames placeholders) (builtins.attrValues placeholders))
            (builtins.fromJSON (builtins.readFile {texts}));
          generations = derivation ({{
          name = "tampered-generation";
          system = builtins.currentSystem;
          builder = bb;
          outputs = builtins.attrNames texts;
          args = [ "sh" "-ec" ''
            for output in $outputs; do
              eval dir=\$$output
              eval text=\$conf_$output
              ${{bb}} mkdir $dir
              ${{bb}} ln -s $(${{bb}} readlink ${{gen}}/system) $dir/system
              ${{bb}} cp ${{gen}}/spec.json $dir/spec.json
              printf '%s' "$text" > $dir/lxc.conf
            done
          '' ];
        }} // builtins.listToAttrs (map (output: {{ name = "conf_${{output}}"; value = texts.${{output}}; }}) (builtins.attrNames texts)));
        in map (output: generations.${{output}}) generations.outputs"##,
        gen = path.display(),
        texts = texts_file.display(),
    );
    let built = std::process::Command::new("nix-build")
        .args(["--no-out-link", "--expr", &expression])
        .output()
        .unwrap();
    assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
    // One path per output, each ending in its name.
    let mut paths: Vec<(usize, String)> = String::from_utf8(built.stdout)
        .unwrap()
        .lines()
        .map(|path| {
            let index = path.rsplit_once("-v").expect("an output path").1.parse().unwrap();
            (index, path.to_string())
        })
        .collect();
    paths.sort();
    paths.into_iter().map(|(_, path)| path).collect()
}

#[test]
fn the_lxc_settings_lib_lxc_config_nix_writes_are_checked_and_nothing_else_passes() {
    let host = Host::new();
    let (limits, cgroup_files, devices) = every_limit_and_device();
    std::fs::write(
        host.dir.path().join("host.json"),
        EVERY_KEY_HOST.replace("@DEVICES@", &format!("[{}]", devices.replace(' ', ", "))),
    )
    .unwrap();
    // Every key a container file can set that reaches lib/lxc-config.nix, in
    // each network form: the hostonly bridge with NAT (a second veth),
    // peers and a fixed address; a bridge of the host's with a gateway.
    let every = host.tiny(
        "every.nix",
        "1",
        &format!(
            r#"autostart = true; {limits}devices = [ {devices} ];
               bindMounts."/srv/ro" = {{ hostPath = "/srv"; }};
               bindMounts."/var/lib/app" = {{ hostPath = "app"; isReadOnly = false; }};
               forwardPorts = [ {{ hostPort = 8080; containerPort = 80; }} {{ protocol = "udp"; hostPort = 8053; }} ];
               network = {{ enableNat = true; ip = "10.101.0.9"; prefixLength = 16; peers = [ "own" ]; }};"#
        ),
    );
    let own = host.tiny(
        "own.nix",
        "1",
        r#"network = { bridge = "brOwn"; ip = "10.10.0.2"; prefixLength = 16; gateway = "10.10.0.1"; };"#,
    );
    // create builds each generation with lib/lxc-config.nix and checks its
    // settings before it makes it current.
    host.ok(&["create", "every", path_str(&every)]);
    host.ok(&["create", "own", path_str(&own)]);
    let generation = |name: &str| {
        std::fs::read_link(host.profiles_dir().join(name).join("profile-1-link")).unwrap()
    };
    let conf = std::fs::read_to_string(generation("every").join("lxc.conf")).unwrap();
    let own_conf = std::fs::read_to_string(generation("own").join("lxc.conf")).unwrap();
    let (keys, own_keys) = (keys_of(&conf), keys_of(&own_conf));
    for file in cgroup_files {
        let key = format!("lxc.cgroup2.{file}");
        assert!(keys.contains(&key.as_str()), "{key} in {conf}");
    }
    for key in [
        "lxc.start.auto",
        "lxc.hook.stop",
        "lxc.net.0.script.up",
        "lxc.net.0.veth.pair",
        "lxc.net.0.hwaddr",
        "lxc.net.0.ipv4.address",
        "lxc.net.1.type",
        "lxc.net.1.link",
        "lxc.net.1.script.up",
    ] {
        assert!(keys.contains(&key), "{key} in {conf}");
    }
    assert!(own_keys.contains(&"lxc.net.0.ipv4.gateway"), "{own_conf}");
    assert!(own_conf.contains("lxc.net.0.link = brOwn"), "{own_conf}");

    // Each setting the helper would not write, added to or left out of what
    // lib/lxc-config.nix wrote, is refused.
    let value_of = |key: &str| {
        conf.lines().find_map(|line| line.strip_prefix(&format!("{key} = "))).unwrap().to_string()
    };
    let (script, hook) = (value_of("lxc.net.0.script.up"), value_of("lxc.hook.stop"));
    let port = value_of("lxc.net.0.veth.pair");
    let add = |line: &str| Edit::Add(line.to_string());
    let cases = [
        (add("lxc.hook.pre-start = /some/script.sh"), "not a key"),
        (add("lxc.include = /etc/shadow"), "not a key"),
        (add("lxc.hook.start-host=/x"), "not a key"),
        (add("  lxc.apparmor.profile = unconfined"), "not a key"),
        (add("lxc.cap.keep = sys_admin"), "not a key"),
        (add("lxc.mount.entry = /root root none ro,bind,create=dir 0 0"), "not a key"),
        (add("lxc.mount.entry = /nix/store nix/store none ro,bind 0 0"), "not a key"),
        (add("lxc.mount.entry = /dev/fuse dev/fuse none bind,create=file 0 0"), "not a key"),
        (add("lxc.mount.auto = proc:rw"), "not a key"),
        (add("lxc.environment = LD_PRELOAD=/x"), "lxc.environment must be"),
        (add("lxc.tty.max = 1024"), "lxc.tty.max must be"),
        (add("lxc.net.0.link = br0"), "not a bridge of this host"),
        (add("lxc.net.0.script.up = /x"), "not lib/isolate-port.sh"),
        (add("lxc.net.0.script.up = @EVIL@"), "not lib/isolate-port.sh"),
        (add("lxc.net.1.script.up = @OTHER_SCRIPT@"), "is not lib/isolate-port.sh"),
        (add("lxc.hook.stop = /bin/sh -c reboot"), "not lib/drop-forwards.sh"),
        (add("lxc.hook.stop = @EVIL@"), "not lib/drop-forwards.sh"),
        (add("lxc.hook.stop = @OTHER_HOOK@"), "is not lib/drop-forwards.sh"),
        (add(&format!("lxc.hook.stop = {script}")), "not lib/drop-forwards.sh"),
        (add(&format!("lxc.net.0.script.up = {hook}")), "not lib/isolate-port.sh"),
        (add("lxc.hook.post-stop = /x"), "not a key"),
        (add("lxc.hook.stop.extra = /x"), "not a key"),
        (add("lxc.net.0.script.down = /x"), "not a setting"),
        (add("lxc.net.0.veth.pair = eth0"), &format!("must be {port}, not \"eth0\"")),
        (add("lxc.net.2.type = veth"), "not a key"),
        (add("lxc.net.0.type = phys"), "not a setting"),
        (add("lxc.init.cmd = /bin/sh"), "must be"),
        (add("lxc.rootfs.path = dir:/"), "must be"),
        (add("lxc.uts.name = other"), "must be"),
        (add("lxc.idmap = u 0 0 1"), "lxc.idmap must map exactly"),
        (add("lxc.start.auto = 2"), "lxc.start.auto must be 0 or 1"),
        (add("lxc.start.auto = 1\r"), "control character"),
        (add("lxc.start.auto 1"), "not `key = value`"),
        (add("lxc.cgroup2.devices.allow = a"), "not a limit nixcloud-container sets"),
        (add("lxc.cgroup2.memory.max = max"), "is not a number"),
        (add("lxc.cgroup2.memory.max = 1; reboot"), "is not a number"),
        (add("lxc.cgroup2.cpu.max = 150000 1000"), "is not \"<quota> 100000\""),
        (add("lxc.cgroup2.cpu.max = 999 100000"), "a quota of at least 1000 microseconds"),
        (add("lxc.cgroup2.io.weight = 10001"), "a weight from 1 to 10000"),
        (Edit::Drop("lxc.net.0.script.up"), "no script.up"),
        (Edit::Drop("lxc.net.1.script.up"), "no script.up"),
        (Edit::Drop("lxc.net.0.veth.pair"), "no veth.pair or no hwaddr"),
        (Edit::Drop("lxc.net.0.hwaddr"), "no veth.pair or no hwaddr"),
        (Edit::Drop("lxc.idmap = g"), "lxc.idmap must map exactly"),
    ];
    let confs: Vec<String> = cases
        .iter()
        .map(|(edit, _)| match edit {
            Edit::Add(line) => format!("{conf}{line}\n"),
            Edit::Drop(part) => conf
                .lines()
                .filter(|line| !line.contains(part))
                .map(|line| format!("{line}\n"))
                .collect(),
        })
        .collect();
    let tampered = generations_with(&host, &generation("every"), &confs);
    assert_eq!(tampered.len(), cases.len(), "{tampered:?}");
    let profile = host.profiles_dir().join("every").join("profile");
    for ((edit, message), path) in cases.iter().zip(&tampered) {
        let shown = match edit {
            Edit::Add(line) => format!("with {line:?}"),
            Edit::Drop(part) => format!("without {part:?}"),
        };
        let set = std::process::Command::new("nix-env")
            .args(["--profile", path_str(&profile), "--set", path])
            .output()
            .unwrap();
        assert!(set.status.success(), "{}", String::from_utf8_lossy(&set.stderr));
        let err = host.fails(&["start", "every"], 1);
        assert!(
            err.contains("refusing to start 'every'") && err.contains(message),
            "{shown}: {err}"
        );
    }
    assert_eq!(host.state("every"), "STOPPED");
    host.ok(&["switch-generation", "every", "1"]);
    host.ok(&["destroy", "every"]);
    host.ok(&["destroy", "own"]);
    host.assert_nothing_created();
}
