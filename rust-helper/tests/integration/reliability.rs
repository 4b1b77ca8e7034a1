//! Bad input, injection, races, crashes, collisions and isolation: one clear
//! error, nothing half-done, nothing lost, nothing widened.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

use crate::common::{path_str, tiny_file, Host};

#[test]
fn invalid_names_are_refused_before_anything_is_made() {
    let host = Host::new();
    let file = host.tiny("ok.nix", "1", "");
    let long = "x".repeat(64);
    for name in [
        "", "a/b", "..", ".", "a b", "-web", "web-", &long, "a\nb", "a\u{7}b", "wéb", "a.b",
        "$(id)", "a;b",
    ] {
        let err = host.fails(&["create", "--", name, path_str(&file)], 2);
        assert!(err.contains("invalid container name"), "{name:?}: {err}");
    }
    for args in [["start", "--", "../x"], ["destroy", "--", "a/b"], ["state", "--", "a b"]] {
        host.fails(&args, 2);
    }
    assert_eq!(host.helper(&["exists", "--", "a/b"]).code, 2);
    host.assert_nothing_created();
}

#[test]
fn container_file_errors_name_the_file_and_leave_nothing() {
    let host = Host::new();
    let dir = host.dir.path();
    std::fs::create_dir(dir.join("a-directory.nix")).unwrap();
    let syntax = host.file("syntax.nix", "{ autostart = true\n}\n");
    let undefined = host.file("undefined.nix", "{ system = doesNotExist; }");
    let typed = host.file("typed.nix", r#"{ network.ip = 5; configuration = { }; }"#);
    let unknown = host.file("unknown.nix", r#"{ autostrat = true; configuration = { }; }"#);
    let not_a_container = host.file("number.nix", "42");
    let no_init = host.file(
        "noinit.nix",
        "let bb = import <nixcloud-container/lib/host-busybox.nix>; in { system = derivation { name = \"noinit\"; \
         system = builtins.currentSystem; builder = bb; args = [ \"sh\" \"-c\" \"${bb} mkdir $out\" ]; }; }",
    );
    let nixos_without_nixpkgs = host.file("nixos.nix", "{ pkgs, ... }: { }");
    let cases: [(&Path, &str); 9] = [
        (&dir.join("missing.nix"), "No such file"),
        (&dir.join("a-directory.nix"), "is not a file"),
        (&syntax, "syntax error"),
        (&undefined, "undefined variable 'doesNotExist'"),
        (&typed, "network.ip 5 is not an IPv4 address"),
        (&unknown, "unknown attribute 'autostrat'"),
        (&not_a_container, "must evaluate to a NixOS module function or an attribute set"),
        (&no_init, "has no executable init"),
        (&nixos_without_nixpkgs, "needs nixpkgs: pass -n"),
    ];
    for (file, message) in cases {
        let err = host.fails(&["create", "web", path_str(file)], 1);
        assert!(err.contains(path_str(file)) || err.contains("noinit"), "names the file: {err}");
        assert!(err.contains(message), "{file:?}: expected {message:?} in {err}");
        host.assert_nothing_created();
    }
}

#[test]
fn paths_names_and_parameters_are_data_never_code() {
    let host = Host::new();
    // The helper runs in the host's directory: a shell that ran any of this
    // would leave `pwned` there.
    let canary = host.dir.path().join("pwned");
    let canary_str = "pwned";
    // A container file under a path full of what shells and Nix interpolate.
    let odd = host.dir.path().join("a dir 'q\" $HOME ${builtins.abort \"x\"} `touch pwned`\nline");
    std::fs::create_dir(&odd).unwrap();
    let file = odd.join("c $(touch x).nix");
    std::fs::write(&file, tiny_file("1", "", "")).unwrap();
    host.ok(&["create", "odd", path_str(&file)]);
    let listing = host.ok(&["list-generations", "odd"]);
    assert!(listing.contains("tiny-system-1"), "{listing}");
    host.ok(&["update", "odd"]);

    // -n and -l reach Nix and LXC as words; no shell ever sees them.
    let err = host
        .fails(&["update", "odd", "-n", &format!("$(touch {canary_str}) ; touch {canary_str}")], 1);
    assert!(!err.is_empty());
    let run = host.helper(&[
        "start",
        "odd",
        "-l",
        &format!("--logfile={canary_str}.log ; touch {canary_str}"),
    ]);
    assert_ne!(run.code, 0, "lxc-start takes no stray words: {run:?}");
    let run = host.helper(&["run", "odd", "--", "sh", "-c", &format!("touch {canary_str}")]);
    assert_ne!(run.code, 0, "the container is not running: {run:?}");
    assert!(!canary.exists(), "something ran a shell on user input");
    assert_eq!(host.current_generation("odd"), "1");
}

#[test]
fn unknown_generations_and_specifiers_are_clear_errors() {
    let host = Host::new();
    host.ok(&["create", "gen", path_str(&host.tiny("g1.nix", "1", ""))]);
    host.ok(&["update", "gen", path_str(&host.tiny("g2.nix", "2", ""))]);
    host.ok(&["delete-generations", "gen", "1"]);
    let err = host.fails(&["switch-generation", "gen", "1"], 2);
    assert!(err.contains("generation 1 does not exist"), "{err}");
    let err = host.fails(&["switch-generation", "gen", "99"], 2);
    assert!(err.contains("generation 99 does not exist"), "{err}");
    for bad in ["--dry-run", "all", "-1", "3x"] {
        let err = host.fails(&["delete-generations", "gen", bad], 2);
        assert!(err.contains("invalid generation"), "{bad}: {err}");
    }
    let err = host.fails(&["delete-generations", "gen", "2"], 1);
    assert!(err.contains("is current"), "{err}");
    assert_eq!(host.current_generation("gen"), "2");
}

fn spawn(host: &Host, args: &[&str]) -> Child {
    host.helper_command(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the helper starts")
}

fn finish(child: Child) -> crate::common::Run {
    child.wait_with_output().expect("the helper ends").into()
}

#[test]
fn ten_creates_at_once_get_ten_addresses_and_ten_containers() {
    let host = Host::new();
    let file = host.tiny("many.nix", "1", "");
    let names: Vec<String> = (0..10).map(|i| format!("c{i}")).collect();
    let children: Vec<Child> =
        names.iter().map(|n| spawn(&host, &["create", n, path_str(&file)])).collect();
    for child in children {
        let run = finish(child);
        assert_eq!(run.code, 0, "{run:?}");
    }
    let rows: serde_json::Value = serde_json::from_str(&host.ok(&["list", "--json"])).unwrap();
    let mut addresses: Vec<String> =
        rows.as_array().unwrap().iter().map(|r| r["ipv4"].as_str().unwrap().to_string()).collect();
    addresses.sort();
    addresses.dedup();
    assert_eq!(addresses.len(), 10, "distinct addresses: {rows}");
    let expected: Vec<String> = (2..12).map(|i| format!("10.101.0.{i}")).collect();
    let mut sorted_expected = expected.clone();
    sorted_expected.sort();
    assert_eq!(addresses, sorted_expected);
    for row in rows.as_array().unwrap() {
        assert_eq!(row["state"], "STOPPED");
        assert_eq!(row["generation"], 1);
    }
    assert_eq!(host.lxc("lxc-ls -1").stdout.lines().count(), 10);
}

#[test]
fn racing_create_and_destroy_or_two_updates_end_consistent() {
    let host = Host::new();
    let file = host.tiny("race.nix", "1", "");
    for round in 0..4 {
        let create = spawn(&host, &["create", "race", path_str(&file)]);
        if round % 2 == 1 {
            std::thread::sleep(Duration::from_millis(30));
        }
        let destroy = spawn(&host, &["destroy", "race"]);
        let (created, destroyed) = (finish(create), finish(destroy));
        for run in [&created, &destroyed] {
            assert!(
                run.code == 0
                    || run.stderr.lines().filter(|l| l.starts_with("error:")).count() == 1,
                "{run:?}"
            );
        }
        let exists = host.helper(&["exists", "race"]).code == 0;
        assert_eq!(
            exists,
            host.lxc_path().join("race/config").exists(),
            "LXC agrees with the state"
        );
        assert_eq!(exists, host.profiles_dir().join("race/profile").exists(), "the profile agrees");
        if exists {
            host.ok(&["destroy", "race"]);
        }
        host.assert_nothing_created();
    }

    host.ok(&["create", "twice", path_str(&file)]);
    let a = spawn(&host, &["update", "twice", path_str(&host.tiny("u2.nix", "2", ""))]);
    let b = spawn(&host, &["update", "twice", path_str(&host.tiny("u3.nix", "3", ""))]);
    let (a, b) = (finish(a), finish(b));
    assert_eq!((a.code, b.code), (0, 0), "{a:?} {b:?}");
    let generations: serde_json::Value =
        serde_json::from_str(&host.ok(&["list-generations", "twice", "--json"])).unwrap();
    assert_eq!(generations.as_array().unwrap().len(), 3, "{generations}");
    assert_eq!(host.ok(&["show-ip", "twice"]).trim(), "10.101.0.2");
}

/// When a sweep kills a command (as kill -9 would).
#[derive(Debug, Clone, Copy)]
enum Kill {
    /// This long after the command started: at first it has done nothing.
    AfterStart(Duration),
    /// This long after the command recorded its phase, so that the kills
    /// land in its work however slowly a loaded machine gets it there.
    InPhase(Duration),
    /// Not at all: the command finishes.
    Never,
}

/// Runs the helper with `args`, which records `working` as container
/// `name`'s phase while it works, and kills it as `kill` says.
fn kill_at(host: &Host, args: &[&str], name: &str, working: &str, kill: Kill) {
    let mut child = spawn(host, args);
    let delay = match kill {
        Kill::AfterStart(delay) => delay,
        Kill::InPhase(delay) => {
            // Polled closely, not with Host::wait_for: an update of the tiny
            // system is in its phase for a few milliseconds only.
            let bound = Duration::from_secs(60);
            let start = std::time::Instant::now();
            while phase(host, name) != working && child.try_wait().unwrap().is_none() {
                assert!(start.elapsed() < bound, "{args:?} never recorded {working}");
                std::thread::sleep(Duration::from_millis(1));
            }
            delay
        }
        Kill::Never => {
            finish(child);
            return;
        }
    };
    std::thread::sleep(delay);
    let _ = child.kill();
    let _ = child.wait();
}

/// The phase the state records for `name` ("none" without an entry).
fn phase(host: &Host, name: &str) -> String {
    let Ok(text) = std::fs::read_to_string(host.state_dir().join("state.json")) else {
        return "none".to_string();
    };
    let state: serde_json::Value = serde_json::from_str(&text).expect("the state file is whole");
    state["containers"][name]["phase"].as_str().unwrap_or("none").to_string()
}

/// The kills of a sweep: before the command did anything, all through its
/// work, and after it.
fn sweep() -> impl Iterator<Item = Kill> {
    let ms = Duration::from_millis;
    let in_phase = [0, 3, 8, 15, 25, 40, 60, 80, 110, 150, 200, 300].map(|d| Kill::InPhase(ms(d)));
    [Kill::AfterStart(ms(0)), Kill::AfterStart(ms(15))]
        .into_iter()
        .chain(in_phase)
        .chain([Kill::Never])
}

#[test]
fn a_killed_create_is_undone_by_the_next_command() {
    let host = Host::new();
    let file = host.tiny("k.nix", "1", "");
    let mut seen = std::collections::BTreeSet::new();
    for kill in sweep() {
        kill_at(&host, &["create", "victim", path_str(&file)], "victim", "creating", kill);
        seen.insert(phase(&host, "victim"));
        assert_eq!(host.helper(&["list"]).code, 0, "list works after {kill:?}");
        // The name is never blocked, no address leaks: creating again works
        // and gets the first address, unless the killed create had finished.
        if host.helper(&["exists", "victim"]).code != 0 {
            let out = host.ok(&["create", "victim", path_str(&file)]);
            assert!(out.contains("(10.101.0.2 "), "after {kill:?}: {out}");
        }
        assert!(host.lxc_path().join("victim/config").exists());
        assert_eq!(host.current_generation("victim"), "1");
        host.ok(&["destroy", "victim"]);
        host.assert_nothing_created();
    }
    eprintln!("phases left by the kills: {seen:?}");
    assert!(seen.contains("creating"), "some kill hit a create half-way: {seen:?}");
}

#[test]
fn a_killed_update_loses_no_generation_and_is_finished_by_the_next_command() {
    let host = Host::new();
    host.ok(&["create", "live", path_str(&host.tiny("l0.nix", "0", ""))]);
    host.start_booted("live");
    let mut seen = std::collections::BTreeSet::new();
    for (round, kill) in sweep().enumerate() {
        let file = host.tiny(&format!("l{}.nix", round + 1), &(round + 1).to_string(), "");
        kill_at(&host, &["update", "live", path_str(&file)], "live", "updating", kill);
        seen.insert(phase(&host, "live"));
        // Every generation link still leads to a complete generation.
        let listed = host.helper(&["list-generations", "live", "--json"]);
        let listing = listed.stdout.clone();
        let generations: serde_json::Value = serde_json::from_str(&listing).unwrap();
        for generation in generations.as_array().unwrap() {
            let system = generation["system"].as_str().unwrap();
            assert!(Path::new(system).join("init").exists(), "{generation}");
        }
        // Generation 1 and one for each finished round before this one.
        let kept = generations.as_array().unwrap().len();
        assert!(kept > round, "no generation lost at {kill:?}: {listing}");
        // The next command finishes the job: the container runs its current generation.
        let finished = host.helper(&["update", "live", path_str(&file)]);
        let activated = host.ok(&["run", "live", "cat", "/var/lib/tiny/activated"]);
        assert_eq!(
            activated.trim(),
            format!("switch {}", round + 1),
            "after {kill:?}, then {listed:?} and {finished:?}; log {}",
            host.ok(&["run", "live", "cat", "/var/log/tiny.log"])
        );
        assert_eq!(host.ok(&["show-ip", "live"]).trim(), "10.101.0.2");
        let state = std::fs::read_to_string(host.state_dir().join("state.json")).unwrap();
        assert!(
            state.contains("\"phase\": \"ready\"") && !state.contains("switchedFrom"),
            "{state}"
        );
    }
    eprintln!("phases left by the kills: {seen:?}");
    assert!(seen.contains("updating"), "some kill hit an update half-way: {seen:?}");
}

/// What a `nix-env --set` killed between making its generation link and
/// renaming it into place leaves, `profile-<N>-link.tmp-<pid>-<random>`
/// (Profile::interrupted_links), made here directly, as the kills
/// above make it now and then: the next update of that same system makes a
/// generation of it and activates it, where it once reported "unchanged".
#[test]
fn a_link_left_by_a_killed_nix_env_does_not_swallow_the_next_update() {
    let host = Host::new();
    host.ok(&["create", "live", path_str(&host.tiny("v0.nix", "0", ""))]);
    host.start_booted("live");
    // The generation an update to `next` builds: built once, then deleted.
    let next = host.tiny("v1.nix", "1", "");
    host.ok(&["update", "live", path_str(&next)]);
    let profile = host.profiles_dir().join("live");
    let built = std::fs::read_link(profile.join("profile-2-link")).unwrap();
    host.ok(&["rollback", "live"]);
    host.ok(&["delete-generations", "live", "2"]);
    std::os::unix::fs::symlink(&built, profile.join("profile-2-link.tmp-4242-1")).unwrap();

    let out = host.ok(&["update", "live", path_str(&next)]);
    assert_eq!(out.lines().last(), Some("container 'live': generation 2 is current"), "{out}");
    assert_eq!(std::fs::read_link(profile.join("profile")).unwrap(), Path::new("profile-2-link"));
    assert_eq!(std::fs::read_link(profile.join("profile-2-link")).unwrap(), built);
    let leftover = std::fs::symlink_metadata(profile.join("profile-2-link.tmp-4242-1"));
    assert!(leftover.is_err(), "the leftover is gone");
    let activated = host.ok(&["run", "live", "cat", "/var/lib/tiny/activated"]);
    assert_eq!(activated.trim(), "switch 1");
}

#[test]
fn a_killed_destroy_is_finished_by_the_next_command() {
    let host = Host::new();
    let file = host.tiny("d.nix", "1", "");
    let mut seen = std::collections::BTreeSet::new();
    for kill in sweep() {
        if host.helper(&["exists", "doomed"]).code != 0 {
            host.ok(&["create", "doomed", path_str(&file)]);
        }
        kill_at(&host, &["destroy", "doomed"], "doomed", "destroying", kill);
        seen.insert(phase(&host, "doomed"));
        assert_eq!(host.helper(&["list"]).code, 0);
        // Either it is whole, or it goes entirely at the next command.
        let whole = host.helper(&["exists", "doomed"]).code == 0;
        if whole {
            host.ok(&["destroy", "doomed"]);
        } else {
            host.ok(&["create", "other", path_str(&file)]);
            assert_eq!(
                host.ok(&["show-ip", "other"]).trim(),
                "10.101.0.2",
                "the address was freed"
            );
            host.ok(&["destroy", "other"]);
        }
        host.assert_nothing_created();
    }
    eprintln!("phases left by the kills: {seen:?}");
    assert!(seen.contains("ready") && seen.contains("none"), "kills before and after: {seen:?}");
}

#[test]
fn failed_updates_leave_the_container_as_it_was() {
    let host = Host::new();
    host.ok(&["create", "steady", path_str(&host.tiny("s1.nix", "1", ""))]);
    host.start_booted("steady");
    let state_before = std::fs::read(host.state_dir().join("state.json")).unwrap();

    let syntax = host.file("broken.nix", "{ system = ; }");
    let err = host.fails(&["update", "steady", path_str(&syntax)], 1);
    assert!(err.contains("broken.nix") && err.contains("syntax error"), "{err}");
    let no_init = host.file(
        "noinit.nix",
        "let bb = import <nixcloud-container/lib/host-busybox.nix>; in { system = derivation { name = \"noinit\"; \
         system = builtins.currentSystem; builder = bb; args = [ \"sh\" \"-c\" \"${bb} mkdir $out\" ]; }; }",
    );
    let err = host.fails(&["update", "steady", path_str(&no_init)], 1);
    assert!(err.contains("cannot build") && err.contains("has no executable init"), "{err}");
    let taken = host.tiny("outside.nix", "2", r#"network.ip = "10.102.0.9";"#);
    let err = host.fails(&["update", "steady", path_str(&taken)], 1);
    assert!(err.contains("outside brNC-hostonly's subnet"), "{err}");

    assert_eq!(host.current_generation("steady"), "1");
    assert_eq!(host.ok(&["list-generations", "steady"]).lines().count(), 1);
    assert_eq!(host.state("steady"), "RUNNING");
    assert_eq!(std::fs::read(host.state_dir().join("state.json")).unwrap(), state_before);
    // The last good file is still the one `update` rebuilds from.
    assert!(host.ok(&["update", "steady"]).contains("unchanged"));
}

#[test]
fn addresses_never_collide_and_the_pool_can_run_out() {
    let host = Host::new();
    let auto = host.tiny("auto.nix", "1", "");
    let fifty = host.tiny("fifty.nix", "1", r#"network.ip = "10.101.0.50";"#);
    let two = host.tiny("two.nix", "1", r#"network.ip = "10.101.0.2";"#);
    host.ok(&["create", "a", path_str(&auto)]);
    let err = host.fails(&["create", "b", path_str(&two)], 1);
    assert!(err.contains("10.101.0.2 on brNC-hostonly is already used by container 'a'"), "{err}");
    host.ok(&["create", "b", path_str(&fifty)]);
    let err = host.fails(&["create", "c", path_str(&fifty)], 1);
    assert!(err.contains("already used by container 'b'"), "{err}");
    for (ip, why) in [
        ("10.101.0.1", "host's own address"),
        ("10.101.255.255", "broadcast"),
        ("10.9.0.1", "outside"),
    ] {
        let file = host.tiny(&format!("{ip}.nix"), "1", &format!("network.ip = \"{ip}\";"));
        let err = host.fails(&["create", "c", path_str(&file)], 1);
        assert!(err.contains(why), "{ip}: {err}");
    }
    assert_eq!(host.helper(&["exists", "c"]).code, 1);

    // An address stays taken while any generation uses it.
    host.ok(&["update", "b", path_str(&auto)]);
    assert_eq!(host.ok(&["show-ip", "b"]).trim(), "10.101.0.3");
    let err = host.fails(&["create", "c", path_str(&fifty)], 1);
    assert!(err.contains("already used by container 'b'"), "generation 1 of b holds .50: {err}");
    host.ok(&["delete-generations", "b", "1"]);
    host.ok(&["create", "c", path_str(&fifty)]);
}

#[test]
fn an_exhausted_pool_is_a_clear_error_until_an_address_is_freed() {
    let host = Host::new();
    std::fs::write(host.dir.path().join("host.json"), r#"{"hostonly": {"prefixLength": 29}}"#)
        .unwrap();
    let file = host.tiny("p.nix", "1", "");
    for i in 2..=6 {
        let out = host.ok(&["create", &format!("p{i}"), path_str(&file)]);
        assert!(out.contains(&format!("(10.101.0.{i} ")), "{out}");
    }
    let err = host.fails(&["create", "p7", path_str(&file)], 1);
    assert!(err.contains("no free address left in 10.101.0.0/29"), "{err}");
    assert_eq!(host.helper(&["exists", "p7"]).code, 1);
    host.ok(&["destroy", "p4"]);
    let out = host.ok(&["create", "p7", path_str(&file)]);
    assert!(out.contains("(10.101.0.4 "), "{out}");
}

#[test]
fn a_container_sees_only_its_own_profile_and_nothing_writable_of_the_host() {
    let host = Host::new();
    host.ok(&["create", "a", path_str(&host.tiny("a.nix", "1", ""))]);
    host.ok(&["create", "b", path_str(&host.tiny("b.nix", "1", ""))]);
    host.start_booted("a");

    let mounts = host.ok(&["run", "a", "cat", "/proc/mounts"]);
    for target in [" /nix/store ", " /init "] {
        let line = mounts
            .lines()
            .find(|l| l.contains(target))
            .unwrap_or_else(|| panic!("{target} in {mounts}"));
        assert!(line.split_whitespace().nth(3).unwrap().split(',').any(|o| o == "ro"), "{line}");
    }
    let init = host.ok(&["run", "a", "ls", "/init"]);
    let mut entries: Vec<&str> = init.split_whitespace().collect();
    entries.sort();
    assert_eq!(entries, ["profile", "profile-1-link"]);
    let profiles_dir = path_str(&host.profiles_dir()).to_string();
    for path in ["/nix/var/nix/profiles", profiles_dir.as_str(), "/nix/var/nix/daemon-socket"] {
        assert_ne!(host.helper(&["run", "a", "ls", path]).code, 0, "{path} is not visible inside");
    }
    for attempt in [
        "touch /nix/store/escape",
        "mkdir /init/escape",
        "rm /init/profile",
        "mount -o remount,rw /nix/store",
        // Writing the host kernel's settings, even with the value they have.
        "cat /proc/sys/kernel/panic > /proc/sys/kernel/panic",
    ] {
        assert_ne!(host.helper(&["run", "a", "sh", "-c", attempt]).code, 0, "{attempt} must fail");
    }
    assert!(!Path::new("/nix/store/escape").exists());
    assert!(host.profiles_dir().join("a/profile").exists());
    assert!(!host.profiles_dir().join("a/escape").exists());

    // A login shell is container root, an unprivileged uid on the host.
    let mut login = host
        .helper_command(&["login", "a"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    let mut stdin = login.stdin.take().unwrap();
    stdin.write_all(b"echo ready; sleep 3\n").unwrap();
    host.wait_for("the login shell", || {
        let processes = host.processes("a");
        assert!(
            processes.iter().all(|(_, uid)| *uid >= 100000),
            "container processes run as host uids: {processes:?}"
        );
        // init's sleep and the login shell's
        processes.iter().filter(|(name, _)| name == "sleep").count() >= 2
    });
    drop(stdin);
    assert!(login.wait().unwrap().success());
}

#[test]
fn a_damaged_state_file_is_reported_never_reset_and_can_be_rebuilt() {
    let host = Host::new();
    host.ok(&["create", "kept", path_str(&host.tiny("k.nix", "1", ""))]);
    host.ok(&[
        "create",
        "pinned",
        path_str(&host.tiny("p.nix", "1", r#"network.ip = "10.101.0.40";"#)),
    ]);
    host.ok(&["update", "kept", path_str(&host.tiny("k2.nix", "2", ""))]);
    let file = host.state_dir().join("state.json");
    let whole = std::fs::read_to_string(&file).unwrap();
    let truncated = &whole[..whole.len() / 2];
    std::fs::write(&file, truncated).unwrap();

    for args in [
        vec!["list"],
        vec!["exists", "kept"],
        vec!["create", "new", path_str(&host.tiny("n0.nix", "1", ""))],
        vec!["destroy", "kept"],
    ] {
        let run = host.helper(&args);
        assert_ne!(run.code, 0, "{args:?}");
        assert!(
            run.stderr.contains("is damaged") && run.stderr.contains("repair-state"),
            "{args:?}: {run:?}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        truncated,
        "the damaged file is left as it is"
    );

    let out = host.ok(&["repair-state"]);
    assert!(out.contains("kept: recovered") && out.contains("pinned: recovered"), "{out}");
    let rebuilt: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let before: serde_json::Value = serde_json::from_str(&whole).unwrap();
    assert_eq!(rebuilt, before, "the rebuilt state is the one that was damaged");
    let kept_aside = std::fs::read_dir(host.state_dir())
        .unwrap()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().starts_with("state.json.before-repair."));
    assert!(kept_aside);
    let out = host.ok(&["create", "new", path_str(&host.tiny("n.nix", "1", ""))]);
    assert!(out.contains("(10.101.0.3 "), "allocation goes on where it was: {out}");
}

#[test]
fn delete_generations_takes_what_nix_env_takes() {
    let host = Host::new();
    host.ok(&["create", "gens", path_str(&host.tiny("g1.nix", "1", ""))]);
    for version in 2..=5 {
        let file = host.tiny(&format!("g{version}.nix"), &version.to_string(), "");
        host.ok(&["update", "gens", path_str(&file)]);
    }
    let numbers = || -> Vec<u64> {
        let rows: serde_json::Value =
            serde_json::from_str(&host.ok(&["list-generations", "gens", "--json"])).unwrap();
        rows.as_array().unwrap().iter().map(|r| r["generation"].as_u64().unwrap()).collect()
    };
    // `+3` keeps the last three counted from the current one, and those
    // after it (nix-env 2.8): with 3 current, all five stay.
    host.ok(&["switch-generation", "gens", "3"]);
    host.ok(&["delete-generations", "gens", "+3"]);
    assert_eq!(numbers(), [1, 2, 3, 4, 5], "nothing older than the current one beyond 3");
    host.ok(&["switch-generation", "gens", "5"]);
    host.ok(&["delete-generations", "gens", "+3"]);
    assert_eq!(numbers(), [3, 4, 5]);
    for bad in
        [&["0d"][..], &["+0"], &["0"], &["99999999999999999999"], &["+2", "4"], &["old", "3"]]
    {
        let mut args = vec!["delete-generations", "gens"];
        args.extend(bad);
        host.fails(&args, 2);
    }
    let err = host.fails(&["switch-generation", "gens", "+3"], 2);
    assert!(err.contains("invalid generation"), "{err}");
    assert_eq!(numbers(), [3, 4, 5]);
    host.ok(&["delete-generations", "gens", "old"]);
    assert_eq!(numbers(), [5]);
}

#[test]
fn a_container_whose_profile_is_gone_can_still_be_removed() {
    let host = Host::new();
    // Running, then its generations are deleted by hand.
    host.ok(&["create", "orphan", path_str(&host.tiny("o.nix", "1", ""))]);
    host.start_booted("orphan");
    std::fs::remove_dir_all(host.profiles_dir().join("orphan")).unwrap();
    let err = host.fails(&["destroy", "orphan"], 1);
    assert!(err.contains("is running"), "{err}");
    host.ok(&["destroy", "orphan", "--force"]);
    host.assert_nothing_created();
    assert_eq!(host.lxc("lxc-ls -1").stdout.trim(), "");

    // The state lost too: repair-state removes what nothing can start.
    host.ok(&["create", "lost", path_str(&host.tiny("l.nix", "1", ""))]);
    std::fs::remove_dir_all(host.profiles_dir().join("lost")).unwrap();
    std::fs::write(host.state_dir().join("state.json"), "garbage").unwrap();
    let out = host.ok(&["repair-state"]);
    assert!(out.contains("lost: its generations are gone"), "{out}");
    let listed = host.lxc("lxc-ls -1");
    assert_eq!((listed.stdout.trim(), listed.stderr.trim()), ("", ""), "{listed:?}");
    assert!(!host.lxc_path().join("lost").exists());
}

#[test]
fn a_path_that_is_not_utf8_is_a_usage_error() {
    use std::os::unix::ffi::OsStrExt;
    let host = Host::new();
    let name = std::ffi::OsStr::from_bytes(b"bad-\xff.nix");
    let path = host.dir.path().join(name);
    std::fs::write(&path, tiny_file("1", "", "")).unwrap();
    let output = host
        .helper_command(&[])
        .args([std::ffi::OsStr::new("create"), std::ffi::OsStr::new("web"), path.as_os_str()])
        .output()
        .unwrap();
    let run: crate::common::Run = output.into();
    assert_eq!(run.code, 2, "{run:?}");
    assert_eq!(run.stderr.lines().count(), 1, "one line, no panic: {run:?}");
    host.assert_nothing_created();
}

#[test]
fn list_with_lxc_parameters_lists_what_lxc_ls_selects() {
    let host = Host::new();
    let file = host.tiny("x.nix", "1", "");
    for name in ["xa", "xb", "yc"] {
        host.ok(&["create", name, path_str(&file)]);
    }
    host.ok(&["start", "xa"]);
    let rows = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["list", "--json"];
        all.extend(args);
        let rows: serde_json::Value = serde_json::from_str(&host.ok(&all)).unwrap();
        rows.as_array().unwrap().iter().map(|r| format!("{} {}", r["name"], r["state"])).collect()
    };
    assert_eq!(rows(&["-l", "--filter ^x"]), [r#""xa" "RUNNING""#, r#""xb" "STOPPED""#]);
    assert_eq!(rows(&["-l", "--stopped"]), [r#""xb" "STOPPED""#, r#""yc" "STOPPED""#]);
    assert_eq!(rows(&[]).len(), 3);
    let err = host.fails(&["list", "-l", "--bogus"], 1);
    assert!(err.contains("unrecognized option '--bogus'"), "{err}");
}

#[test]
fn errors_are_one_line_and_say_why() {
    let host = Host::new();
    host.ok(&["create", "idle", path_str(&host.tiny("i.nix", "1", ""))]);
    for args in [&["run", "idle", "true"][..], &["login", "idle"]] {
        let run = host.helper(args);
        assert_eq!(run.code, 1);
        assert_eq!(run.stderr.lines().count(), 1, "{args:?}: {run:?}");
        assert!(run.stderr.contains("container 'idle' is not running"), "{run:?}");
    }
    // A bad option of LXC's is named, whether the container runs or not.
    let err = host.fails(&["stop", "idle", "-l", "--bogus"], 1);
    assert!(err.contains("unrecognized option '--bogus'"), "{err}");
    let err = host.fails(&["start", "idle", "-l", "junk"], 1);
    assert!(err.contains("Failed to exec \"junk\""), "{err}");
    host.ok(&["start", "idle"]);
    let err = host.fails(&["stop", "idle", "-l", "--bogus"], 1);
    assert!(err.contains("unrecognized option '--bogus'"), "{err}");
    host.ok(&["stop", "idle"]);

    // A state file that is not UTF-8 is damaged, with the way out.
    let state = host.state_dir().join("state.json");
    let whole = std::fs::read(&state).unwrap();
    std::fs::write(&state, b"\xff\xfe{").unwrap();
    let err = host.fails(&["list"], 1);
    assert!(err.contains("is damaged") && err.contains("repair-state"), "{err}");
    std::fs::write(&state, whole).unwrap();

    // A bad host file is the host file's fault, not the container file's.
    std::fs::write(host.dir.path().join("host.json"), r#"{"hostonly": {"prefixLength": 40}}"#)
        .unwrap();
    let err = host.fails(&["create", "other", path_str(&host.tiny("o.nix", "1", ""))], 1);
    assert!(err.contains("host file") && err.contains("prefix length 40"), "{err}");
    assert!(!err.contains("o.nix"), "{err}");
}

#[test]
fn a_container_the_state_lost_is_pointed_to_repair_state_never_to_its_removal() {
    let host = Host::new();
    host.ok(&["create", "kept", path_str(&host.tiny("k.nix", "1", ""))]);
    std::fs::remove_file(host.state_dir().join("state.json")).unwrap();
    let err = host.fails(&["create", "kept", path_str(&host.tiny("k2.nix", "2", ""))], 1);
    assert!(err.contains("repair-state"), "{err}");
    assert!(!err.contains("lxc-destroy") && !err.contains("remove"), "{err}");
    assert!(host.lxc_path().join("kept/config").exists());
    host.ok(&["repair-state"]);
    assert_eq!(host.ok(&["show-ip", "kept"]).trim(), "10.101.0.2");

    // A foreign LXC container of the same name: choose another name.
    std::fs::create_dir_all(host.lxc_path().join("foreign")).unwrap();
    std::fs::write(host.lxc_path().join("foreign/config"), "lxc.uts.name = foreign\n").unwrap();
    let err = host.fails(&["create", "foreign", path_str(&host.tiny("f.nix", "1", ""))], 1);
    assert!(err.contains("not a container of nixcloud-container: choose another name"), "{err}");
    assert!(host.lxc_path().join("foreign/config").exists());
}

#[test]
fn static_addresses_that_are_not_container_addresses_are_refused() {
    let host = Host::new();
    host.allow_bridge("brOwn", "10.10.0.1", 16);
    for (network, message) in [
        (r#"ip = "10.101.0.255"; prefixLength = 24;"#, "is not brNC-hostonly's /16"),
        (r#"ip = "10.101.5.0"; prefixLength = 24;"#, "is not brNC-hostonly's /16"),
        (r#"ip = "10.101.0.7"; prefixLength = 0;"#, "is not an integer from 1 to 30"),
        (r#"ip = "10.101.0.7"; prefixLength = 32;"#, "is not an integer from 1 to 30"),
        (r#"ip = "10.101.0.7"; gateway = "8.8.8.8";"#, "network.gateway 8.8.8.8 is not an address"),
        (r#"ip = "10.101.0.7"; gateway = "10.101.0.7";"#, "is the container's own address"),
        (r#"bridge = "brOwn"; ip = "10.10.0.0";"#, "network or broadcast address"),
        (r#"bridge = "brOwn"; ip = "10.10.255.255";"#, "network or broadcast address"),
        (r#"bridge = "brOwn"; ip = "10.10.0.1";"#, "the host's own address on brOwn"),
        (r#"bridge = "brOwn"; ip = "10.11.0.2";"#, "outside brOwn's subnet"),
        (r#"bridge = "brOther"; ip = "10.10.0.2";"#, "not a bridge this host lets containers join"),
        (r#"bridge = "brNC-internet"; ip = "10.202.0.9";"#, "is the internet bridge"),
    ] {
        let file = host.tiny("addr.nix", "1", &format!("network = {{ {network} }};"));
        let err = host.fails(&["create", "addr", path_str(&file)], 1);
        assert!(err.contains(message), "{network}: {err}");
        host.assert_nothing_created();
    }
    let file = host.tiny("ok.nix", "1", r#"network = { bridge = "brOwn"; ip = "10.10.0.2"; };"#);
    host.ok(&["create", "ok", path_str(&file)]);
}

#[test]
fn no_file_stays_for_a_name_no_container_has() {
    let host = Host::new();
    for args in [
        &["start", "ghost"][..],
        &["stop", "ghost"],
        &["destroy", "ghost"],
        &["rollback", "ghost"],
        &["update", "ghost"],
        &["delete-generations", "ghost", "1"],
    ] {
        host.fails(args, 1);
    }
    let bad = host.file("bad.nix", "{ system = ; }");
    host.fails(&["create", "broken", path_str(&bad)], 1);
    host.ok(&["create", "brief", path_str(&host.tiny("b.nix", "1", ""))]);
    host.ok(&["update", "brief", path_str(&host.tiny("b2.nix", "2", ""))]);
    host.ok(&["destroy", "brief"]);
    host.assert_nothing_created();
    let left: Vec<String> = std::fs::read_dir(host.state_dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    // The host's own: its state, locks, scratch, busybox, the data root, the
    // build network kept between commands (build_network.rs), the lock of
    // the network rules (nft.rs) and the directory of the containers' names
    // (names.rs), empty.
    let host_files = [
        "state.json",
        "state.lock",
        "locks",
        "tmp",
        "builds",
        "busybox.json",
        "data",
        "build-network",
        "network.lock",
        "hosts",
    ];
    for file in &left {
        assert!(host_files.contains(&file.as_str()), "{file} stays in the state directory");
    }
    let names: Vec<_> = std::fs::read_dir(host.state_dir().join("hosts")).unwrap().collect();
    assert!(names.is_empty(), "names stay: {names:?}");
    // Nix's roots for the relocated profile and the build links are gone too.
    let dir = path_str(host.dir.path()).to_string();
    for entry in std::fs::read_dir("/nix/var/nix/gcroots/auto").unwrap().flatten() {
        let target = std::fs::read_link(entry.path()).unwrap_or_default();
        assert!(!target.starts_with(&dir), "{} stays a GC root", target.display());
    }
}

#[test]
fn small_things_said_plainly() {
    let host = Host::new();
    // Nothing side by side would do nothing: a usage error, before anything.
    for args in [["autostart", "-j", "0"], ["sync", "--jobs", "0"]] {
        let error = host.fails(&args, 2);
        assert!(error.contains("\"0\" is not a number from 1 up"), "{error}");
    }
    let file = host.tiny("web.nix", "1", "");
    host.ok(&["create", "web", path_str(&file)]);
    host.start_booted("web");
    let out = host.ok(&["start", "web"]);
    assert!(out.contains("container 'web' is already running"), "{out}");

    // Names are host names: the same in any case.
    let err = host.fails(&["create", "WEB", path_str(&file)], 1);
    assert!(err.contains("container 'web' already exists"), "{err}");
    assert_eq!(host.helper(&["exists", "WEB"]).code, 1);

    // The name is checked before the file is looked at.
    let err = host.fails(&["create", "bad/name", "/nonexistent.nix"], 2);
    assert!(err.contains("invalid container name"), "{err}");

    // A running container keeps its address until it is started again;
    // show-ip and list say both.
    let moved = host.tiny("moved.nix", "2", r#"network.ip = "10.101.0.77";"#);
    host.ok(&["update", "web", path_str(&moved)]);
    assert_eq!(host.ok(&["show-ip", "web"]).trim(), "10.101.0.2 (10.101.0.77 at next start)");
    let rows: serde_json::Value = serde_json::from_str(&host.ok(&["list", "--json"])).unwrap();
    assert_eq!(
        (rows[0]["ipv4"].clone(), rows[0]["ipv4NextStart"].clone()),
        ("10.101.0.2".into(), "10.101.0.77".into())
    );
    assert!(host.ok(&["run", "web", "ip", "-4", "addr"]).contains("10.101.0.2/16"));
    host.ok(&["stop", "web"]);
    assert_eq!(host.ok(&["show-ip", "web"]).trim(), "10.101.0.77");
    host.start_booted("web");
    assert_eq!(host.ok(&["show-ip", "web"]).trim(), "10.101.0.77");
    assert!(host.ok(&["run", "web", "ip", "-4", "addr"]).contains("10.101.0.77/16"));
}

/// The links in container `name`'s profile directory that are neither the
/// profile nor a generation: what a killed nix-env leaves.
fn stray_links(host: &Host, name: &str) -> Vec<String> {
    std::fs::read_dir(host.profiles_dir().join(name))
        .unwrap()
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|file| file.contains(".tmp-") || file.starts_with('.'))
        .collect()
}

/// Leaves in `name`'s profile what nix-env leaves when it is killed between
/// making a link and renaming it into place (Nix's makeSymlink names a new
/// generation's link `<link>.tmp-<pid>-<random>`, replaceSymlink the
/// profile's `.<n>_profile`): the next generation's, pointing at the current
/// one's system. The window is a few instructions wide; a kill from outside
/// hits it only by chance.
fn leave_nix_env_links(host: &Host, name: &str) {
    let profile = host.profiles_dir().join(name);
    let current: u64 = host.current_generation(name).parse().unwrap();
    let system = std::fs::read_link(profile.join(format!("profile-{current}-link"))).unwrap();
    // Where the kill before already left one, that one stays as it is.
    let plant = |target: &Path, link: PathBuf| match std::os::unix::fs::symlink(target, link) {
        Err(err) if err.kind() != std::io::ErrorKind::AlreadyExists => panic!("{err}"),
        _ => {}
    };
    let next = profile.join(format!("profile-{}-link.tmp-4242-1804289383", current + 1));
    plant(&system, next);
    plant(Path::new(&format!("profile-{current}-link")), profile.join(".0_profile"));
}

#[test]
fn a_killed_updates_links_are_removed_by_the_next_command_and_by_repair_state() {
    let host = Host::new();
    host.ok(&["create", "gens", path_str(&host.tiny("g0.nix", "0", ""))]);
    let mut seen = std::collections::BTreeSet::new();
    for (round, kill) in sweep().enumerate().step_by(3) {
        let file = host.tiny(&format!("g{}.nix", round + 1), &(round + 1).to_string(), "");
        kill_at(&host, &["update", "gens", path_str(&file)], "gens", "updating", kill);
        seen.insert(phase(&host, "gens"));
        leave_nix_env_links(&host, "gens");
        // The next command, whatever it is, leaves no such link, and
        // deleting generations works.
        let deleted = host.helper(&["delete-generations", "gens", "old"]);
        assert_eq!(deleted.code, 0, "after a kill {kill:?}: {deleted:?}");
        assert!(deleted.stderr.contains("an interrupted nix-env left"), "{deleted:?}");
        assert_eq!(stray_links(&host, "gens"), Vec::<String>::new(), "after a kill {kill:?}");
        let rows: serde_json::Value =
            serde_json::from_str(&host.ok(&["list-generations", "gens", "--json"])).unwrap();
        assert_eq!(rows.as_array().unwrap().len(), 1, "{rows}");
    }
    eprintln!("phases left by the kills: {seen:?}");
    // repair-state removes them too.
    leave_nix_env_links(&host, "gens");
    let repaired = host.helper(&["repair-state"]);
    assert_eq!(repaired.code, 0, "{repaired:?}");
    assert_eq!(stray_links(&host, "gens"), Vec::<String>::new());
    host.ok(&["delete-generations", "gens", "old"]);
}

#[test]
fn destroy_after_a_killed_create_removes_what_it_left_and_succeeds() {
    let host = Host::new();
    let file = host.tiny("k.nix", "1", "");
    let mut hit = false;
    for kill in sweep() {
        kill_at(&host, &["create", "victim", path_str(&file)], "victim", "creating", kill);
        match phase(&host, "victim").as_str() {
            "creating" => {
                hit = true;
                let destroyed = host.helper(&["destroy", "victim"]);
                assert_eq!(destroyed.code, 0, "after a kill {kill:?}: {destroyed:?}");
                assert!(
                    destroyed.stdout.contains("removed what an interrupted create left"),
                    "{destroyed:?}"
                );
            }
            // Killed before it recorded anything: there is nothing to
            // destroy (and its lock file goes).
            "none" => {
                host.fails(&["destroy", "victim"], 1);
            }
            _ => {
                host.ok(&["destroy", "victim"]);
            }
        }
        host.assert_nothing_created();
    }
    assert!(hit, "some kill hit a create half-way");
}

#[test]
fn repair_state_keeps_what_no_disk_shows() {
    let host = Host::new();
    let entry = format!(
        "{{ \"made\": {{ \"file\": \"{}\", \"autostart\": true }} }}",
        path_str(&host.tiny("m.nix", "1", ""))
    );
    let list = path_str(&host.file("list.json", &entry)).to_string();
    host.ok(&["sync", "--file", &list]);
    assert_eq!(host.state("made"), "RUNNING");
    let file = host.state_dir().join("state.json");
    let before: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert!(before["containers"]["made"]["syncSource"].is_string(), "{before}");
    // What it was started with is kept beside the state, which a repair
    // leaves alone.
    let started = host.state_dir().join("started/made.json");
    let started_before = std::fs::read_to_string(&started).unwrap();
    assert!(started_before.contains("\"generation\":1"), "{started_before}");
    host.ok(&["repair-state"]);
    let after: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(after, before, "nothing lost");
    assert_eq!(std::fs::read_to_string(&started).unwrap(), started_before);
    // Its source still prunes it.
    host.file("list.json", "{}");
    let pruned = host.ok(&["sync", "--file", &list, "--prune"]);
    assert!(pruned.contains("1 removed"), "{pruned}");
}
