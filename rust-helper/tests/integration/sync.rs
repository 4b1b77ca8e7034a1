//! `sync`: a host's containers made those of a list, only what changed, each
//! failing alone; and the health gate of live switches.

use crate::common::{path_str, tiny_file, Host, REPO};

/// Writes the list `entries` (name → JSON object) as list.json.
fn list(host: &Host, entries: &[(&str, String)]) -> String {
    let body: Vec<String> =
        entries.iter().map(|(name, entry)| format!("\"{name}\": {entry}")).collect();
    path_str(&host.file("list.json", &format!("{{ {} }}", body.join(", ")))).to_string()
}

fn file_entry(host: &Host, file: &str, version: &str, attrs: &str) -> String {
    format!("{{ \"file\": \"{}\" }}", path_str(&host.file(file, &tiny_file(version, attrs, ""))))
}

fn generation(host: &Host, name: &str) -> String {
    host.current_generation(name)
}

#[test]
fn a_list_is_synced_from_nothing_and_again_with_only_what_changed() {
    let host = Host::new();
    let first = list(
        &host,
        &[
            ("alpha", file_entry(&host, "a.nix", "1", "")),
            (
                "beta",
                format!(
                    "{{ \"file\": \"{}\", \"autostart\": true }}",
                    path_str(&host.file("b.nix", &tiny_file("1", "", "")))
                ),
            ),
        ],
    );
    let synced = host.helper(&["sync", "--file", &first, "-j", "2"]);
    assert_eq!(synced.code, 0, "{synced:?}");
    assert!(
        synced.stdout.contains("sync: 2 created, 0 updated, 0 unchanged, 0 removed, 0 failed"),
        "{synced:?}"
    );
    assert_eq!(host.state("alpha"), "STOPPED");
    assert_eq!(host.state("beta"), "RUNNING", "the host says beta starts with it");

    // Nothing changed: nothing is built or switched.
    let again = host.ok(&["sync", "--file", &first]);
    assert!(again.contains("0 created, 0 updated, 2 unchanged"), "{again}");
    assert_eq!((generation(&host, "alpha"), generation(&host, "beta")), ("1".into(), "1".into()));

    // One changed, one added, one no longer listed: kept without --prune.
    let second = list(
        &host,
        &[
            ("alpha", file_entry(&host, "a.nix", "2", "")),
            ("gamma", file_entry(&host, "c.nix", "1", "")),
        ],
    );
    let changed = host.ok(&["sync", "--file", &second, "--json"]);
    let summary: serde_json::Value = serde_json::from_str(&changed).unwrap();
    assert_eq!(summary["created"], serde_json::json!(["gamma"]));
    assert_eq!(summary["updated"], serde_json::json!(["alpha"]));
    assert_eq!(summary["removed"], serde_json::json!([]));
    assert_eq!(generation(&host, "alpha"), "2");
    host.ok(&["exists", "beta"]);
    let dry = host.ok(&["sync", "--file", &second, "--prune", "--dry-run"]);
    assert!(dry.contains("beta: would destroy (no longer listed)"), "{dry}");
    host.ok(&["exists", "beta"]);
    let pruned = host.ok(&["sync", "--file", &second, "--prune"]);
    assert!(pruned.contains("1 removed"), "{pruned}");
    assert_eq!(host.helper(&["exists", "beta"]).code, 1);

    // A container made by hand is never pruned.
    host.ok(&["create", "manual", path_str(&host.file("m.nix", &tiny_file("1", "", "")))]);
    host.ok(&["sync", "--file", &second, "--prune"]);
    host.ok(&["exists", "manual"]);
}

/// The tiny system of version `version`, built, as the host module builds
/// an inline instance's system.
fn built_system(version: &str) -> String {
    let build = std::process::Command::new("nix-build")
        .args([&format!("{REPO}/examples/tiny/system.nix"), "--no-out-link"])
        .args(["--argstr", "version", version])
        .output()
        .unwrap();
    assert!(build.status.success(), "{}", String::from_utf8_lossy(&build.stderr));
    String::from_utf8(build.stdout).unwrap().trim().to_string()
}

/// An inline instance reaches sync as its built system (modules/host/
/// services.nix: `system` in instances.json): deployed as `create --system`,
/// left alone, with no helper process at all, while the list names the same
/// store path, and updated when it names another.
#[test]
fn a_built_system_of_the_list_is_updated_only_when_its_path_changes() {
    let host = Host::new();
    let entry = |system: &str| format!("{{ \"system\": \"{system}\", \"autostart\": true }}");
    let first = built_system("inline-1");
    let listed = list(&host, &[("inline", entry(&first))]);
    let created = host.ok(&["sync", "--file", &listed]);
    assert!(created.contains("1 created"), "{created}");
    assert_eq!(host.state("inline"), "RUNNING");
    assert!(host.ok(&["list-generations", "inline"]).contains(&first));

    let dry = host.ok(&["sync", "--file", &listed, "--dry-run"]);
    assert!(dry.contains("inline: would leave alone"), "{dry}");
    let again = host.ok(&["sync", "--file", &listed]);
    assert!(again.contains("0 updated, 1 unchanged"), "{again}");
    assert_eq!(generation(&host, "inline"), "1");

    let second = built_system("inline-2");
    let updated = host.ok(&["sync", "--file", &list(&host, &[("inline", entry(&second))])]);
    assert!(updated.contains("1 updated"), "{updated}");
    assert_eq!(generation(&host, "inline"), "2");
    assert!(host.ok(&["list-generations", "inline"]).contains(&second));

    // Only store paths: the list is root's, but a typo is one clear error.
    // It fails alone, as any entry wrong by itself, and the summary says so.
    let odd = host.helper(&["sync", "--file", &list(&host, &[("odd", entry("/srv/system"))])]);
    assert_eq!(odd.code, 1, "{odd:?}");
    assert!(odd.stderr.contains("odd: the system /srv/system is not in /nix/store"), "{odd:?}");
    assert_eq!(host.helper(&["exists", "odd"]).code, 1);
}

#[test]
fn a_broken_container_fails_alone() {
    let host = Host::new();
    let broken = host.file("broken.nix", "{ system = ; }");
    let entries = [
        ("good", file_entry(&host, "g.nix", "1", "")),
        ("broken", format!("{{ \"file\": \"{}\" }}", path_str(&broken))),
        ("other", file_entry(&host, "o.nix", "1", "")),
    ];
    let the_list = list(&host, &entries);
    let run = host.helper(&["sync", "--file", &the_list, "--keep-going"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stdout.contains("2 created, 0 updated, 0 unchanged, 0 removed, 1 failed"),
        "{run:?}"
    );
    assert!(
        run.stderr.contains("broken: ") && run.stderr.contains("sync failed for broken"),
        "{run:?}"
    );
    host.ok(&["exists", "good"]);
    host.ok(&["exists", "other"]);
    assert_eq!(host.helper(&["exists", "broken"]).code, 1);
    // Without --keep-going it stops at the first failure (in list order:
    // broken comes first).
    let stopped = host.helper(&[
        "sync",
        "--file",
        &list(
            &host,
            &[("broken", entries[1].1.clone()), ("zeta", file_entry(&host, "z.nix", "1", ""))],
        ),
    ]);
    assert_eq!(stopped.code, 1, "{stopped:?}");
    assert!(stopped.stdout.contains("1 not tried"), "{stopped:?}");
}

#[test]
fn a_flakes_containers_are_not_even_evaluated_while_it_is_unchanged() {
    let host = Host::new();
    let flake = host.dir.path().join("flake");
    std::fs::create_dir(&flake).unwrap();
    let write_flake = |version: &str| {
        std::fs::write(
            flake.join("flake.nix"),
            format!(
                "{{ outputs = {{ self }}: {{ nixcloudContainers = {{\n\
                   web = {{ system = import {REPO}/examples/tiny/system.nix {{ version = \"{version}\"; }}; }};\n\
                   db = {{ system = import {REPO}/examples/tiny/system.nix {{ version = \"db\"; }}; }};\n\
                 }}; }}; }}"
            ),
        )
        .unwrap();
    };
    write_flake("1");
    let reference = path_str(&flake).to_string();
    let first = host.ok(&["sync", "--flake", &reference]);
    assert!(first.contains("2 created"), "{first}");
    // Unchanged: no helper of its own runs for either (it would say so).
    let again = host.helper(&["sync", "--flake", &reference]);
    assert!(again.stdout.contains("0 created, 0 updated, 2 unchanged"), "{again:?}");
    assert!(!again.stderr.contains("is unchanged: generation"), "not evaluated: {again:?}");
    // The flake changed: both are evaluated, the one that changed is updated.
    write_flake("2");
    let changed = host.ok(&["sync", "--flake", &reference]);
    assert!(changed.contains("0 created, 1 updated, 1 unchanged"), "{changed}");
    assert_eq!(generation(&host, "web"), "2");
    assert_eq!(generation(&host, "db"), "1");
}

#[test]
fn a_flakes_container_is_evaluated_again_only_when_what_it_read_changed() {
    let host = Host::new();
    let flake = host.dir.path().join("flake");
    std::fs::create_dir_all(flake.join("containers")).unwrap();
    let tiny = format!("{REPO}/examples/tiny/system.nix");
    let write_container = |name: &str, version: &str| {
        std::fs::write(
            flake.join("containers").join(format!("{name}.nix")),
            format!("{{ system = import {tiny} {{ version = \"{version}\"; }}; }}"),
        )
        .unwrap();
    };
    // web and db read a file each; stamped and whole depend on all of the
    // source, through its time and its store path, which no read shows.
    std::fs::write(
        flake.join("flake.nix"),
        format!(
            "{{ outputs = {{ self }}: {{ nixcloudContainers = {{\n\
               web = import ./containers/web.nix;\n\
               db = import ./containers/db.nix;\n\
               stamped = {{ system = import {tiny} {{ version = toString self.lastModified; }}; }};\n\
               whole = {{ system = import {tiny} {{ extraPaths = [ \"${{self}}\" ]; }}; }};\n\
             }}; }}; }}"
        ),
    )
    .unwrap();
    write_container("web", "1");
    write_container("db", "1");
    let reference = path_str(&flake).to_string();
    let evaluated = |said: &str, name: &str| said.contains(&format!("{name}: container '{name}'"));

    let first = host.ok(&["sync", "--flake", &reference]);
    assert!(first.contains("4 created"), "{first}");
    let again = host.helper(&["sync", "--flake", &reference]);
    assert!(again.stdout.contains("0 created, 0 updated, 4 unchanged"), "{again:?}");

    // web's file changed: web is updated, and so are the two that depend on
    // all of the source; db is not even evaluated.
    write_container("web", "2");
    let changed = host.helper(&["sync", "--flake", &reference, "--json"]);
    assert_eq!(changed.code, 0, "{changed:?}");
    let summary: serde_json::Value = serde_json::from_str(&changed.stdout).unwrap();
    assert_eq!(summary["updated"], serde_json::json!(["stamped", "web", "whole"]), "{changed:?}");
    assert_eq!(summary["unchanged"], serde_json::json!(["db"]), "{changed:?}");
    assert!(!evaluated(&changed.stderr, "db"), "db was evaluated: {changed:?}");
    assert_eq!(generation(&host, "db"), "1");
    assert_eq!(generation(&host, "web"), "2");

    // A file added anywhere changes the source's shape (what pathExists and
    // readDir see): every container is evaluated again, db stays as it is.
    std::fs::write(flake.join("containers/README"), "new").unwrap();
    let added = host.helper(&["sync", "--flake", &reference, "--json"]);
    assert_eq!(added.code, 0, "{added:?}");
    assert!(evaluated(&added.stderr, "db"), "db was not evaluated: {added:?}");
    assert_eq!(generation(&host, "db"), "1");
    assert_eq!(generation(&host, "web"), "2");
    let summary: serde_json::Value = serde_json::from_str(&added.stdout).unwrap();
    assert!(summary["updated"].as_array().unwrap().contains(&"whole".into()), "{added:?}");

    // And unchanged again after it: nothing is evaluated.
    let settled = host.helper(&["sync", "--flake", &reference]);
    assert!(settled.stdout.contains("0 updated, 4 unchanged"), "{settled:?}");
    assert!(!settled.stderr.contains("container '"), "{settled:?}");

    // A list file naming the flake's containers (as the host module's
    // instances do) is the same to sync.
    write_container("db", "2");
    let listed = list(
        &host,
        &[
            ("web", format!("{{ \"flake\": \"{reference}#web\" }}")),
            ("db", format!("{{ \"flake\": \"{reference}#db\" }}")),
        ],
    );
    let from_list = host.helper(&["sync", "--file", &listed, "--json"]);
    assert_eq!(from_list.code, 0, "{from_list:?}");
    let summary: serde_json::Value = serde_json::from_str(&from_list.stdout).unwrap();
    assert_eq!(summary["updated"], serde_json::json!(["db"]), "{from_list:?}");
    assert_eq!(summary["unchanged"], serde_json::json!(["web"]), "{from_list:?}");
    assert!(!evaluated(&from_list.stderr, "web"), "web was evaluated: {from_list:?}");
    assert_eq!(generation(&host, "db"), "2");
}

#[test]
fn a_switch_that_leaves_the_guest_unhealthy_is_rolled_back() {
    let host = Host::new();
    host.ok(&["create", "app", path_str(&host.file("v1.nix", &tiny_file("1", "", "")))]);
    host.start_booted("app");
    // switch-to-configuration exits 0, but a unit fails afterwards.
    let degraded = host.file(
        "v2.nix",
        &tiny_file("2", "", r#"switchState = "degraded"; failedUnits = [ "web.service" ];"#),
    );
    let error = host.fails(&["update", "app", path_str(&degraded)], 1);
    assert!(
        error.contains("not healthy: units failed after the switch: web.service")
            && error.contains("generation 1 of 'app' is current again"),
        "{error}"
    );
    assert_eq!(generation(&host, "app"), "1");
    // A switch after which the guest never finishes starting.
    let stuck = host.file("v3.nix", &tiny_file("3", "", r#"switchState = "starting";"#));
    let error = host.fails(&["update", "app", path_str(&stuck), "--health-timeout", "2"], 1);
    assert!(
        error.contains("did not finish booting within 2 s") && error.contains("tiny-slow.service"),
        "{error}"
    );
    assert_eq!(generation(&host, "app"), "1");
    // Without the gate it stays.
    host.ok(&["update", "app", path_str(&stuck), "--health-timeout", "0"]);
    assert_eq!(generation(&host, "app"), "2", "the failed ones were taken away again");
}

#[test]
fn a_container_made_by_hand_survives_prune_once_listed_unless_adopted() {
    let host = Host::new();
    host.ok(&["create", "r3", path_str(&host.tiny("r3.nix", "1", ""))]);
    // A list that names it updates it, but does not make it the list's.
    let naming = list(&host, &[("r3", file_entry(&host, "r3.nix", "2", ""))]);
    let synced = host.helper(&["sync", "--file", &naming]);
    assert_eq!(synced.code, 0, "{synced:?}");
    assert!(synced.stderr.contains("note: r3 was made by hand"), "{synced:?}");
    assert_eq!(generation(&host, "r3"), "2");
    // The list no longer names it: --prune leaves it (and its data).
    let without = list(&host, &[("other", file_entry(&host, "o.nix", "1", ""))]);
    let pruned = host.ok(&["sync", "--file", &without, "--prune"]);
    assert!(pruned.contains("1 created, 0 updated, 0 unchanged, 0 removed"), "{pruned}");
    host.ok(&["exists", "r3"]);
    // Taken over explicitly, it is the list's: shown, and pruned once dropped.
    let both = list(
        &host,
        &[
            ("r3", file_entry(&host, "r3.nix", "2", "")),
            ("other", file_entry(&host, "o.nix", "1", "")),
        ],
    );
    let adopted = host.ok(&["sync", "--file", &both, "--adopt", "--json"]);
    let summary: serde_json::Value = serde_json::from_str(&adopted).unwrap();
    assert_eq!(summary["adopted"], serde_json::json!(["r3"]), "{adopted}");
    let without = list(&host, &[("other", file_entry(&host, "o.nix", "1", ""))]);
    let pruned = host.ok(&["sync", "--file", &without, "--prune"]);
    assert!(pruned.contains("1 removed"), "{pruned}");
    assert_eq!(host.helper(&["exists", "r3"]).code, 1);
}

#[test]
fn one_sources_prune_leaves_another_sources_containers() {
    let host = Host::new();
    let write_list = |file: &str, entries: &[(&str, &str)]| {
        let body: Vec<String> = entries
            .iter()
            .map(|(name, container)| {
                format!(
                    "\"{name}\": {{ \"file\": \"{}\" }}",
                    path_str(&host.tiny(container, "1", ""))
                )
            })
            .collect();
        path_str(&host.file(file, &format!("{{ {} }}", body.join(", ")))).to_string()
    };
    let flake = host.dir.path().join("flake");
    std::fs::create_dir(&flake).unwrap();
    std::fs::write(
        flake.join("flake.nix"),
        format!(
            "{{ outputs = {{ self }}: {{ nixcloudContainers.fromflake = \
               {{ system = import {REPO}/examples/tiny/system.nix {{ version = \"1\"; }}; }}; }}; }}"
        ),
    )
    .unwrap();
    host.ok(&["sync", "--flake", path_str(&flake)]);
    let first = write_list("first.json", &[("one", "one.nix")]);
    host.ok(&["sync", "--file", &first]);
    // Another list, pruning: neither the first list's nor the flake's go.
    let second = write_list("second.json", &[("two", "two.nix")]);
    let pruned = host.ok(&["sync", "--file", &second, "--prune"]);
    assert!(pruned.contains("1 created, 0 updated, 0 unchanged, 0 removed"), "{pruned}");
    for name in ["one", "fromflake", "two"] {
        host.ok(&["exists", name]);
    }
    // Each source prunes its own.
    let emptied = write_list("first.json", &[]);
    let pruned = host.ok(&["sync", "--file", &emptied, "--prune", "--json"]);
    let summary: serde_json::Value = serde_json::from_str(&pruned).unwrap();
    assert_eq!(summary["removed"], serde_json::json!(["one"]), "{pruned}");
    host.ok(&["exists", "fromflake"]);
    host.ok(&["exists", "two"]);
}

#[test]
fn a_list_that_names_a_container_twice_is_refused_before_anything() {
    let host = Host::new();
    let a = path_str(&host.tiny("a.nix", "1", "")).to_string();
    let b = path_str(&host.tiny("b.nix", "1", "")).to_string();
    for (twice, said) in [
        (
            format!("{{ \"web\": {{ \"file\": \"{a}\" }}, \"web\": {{ \"file\": \"{b}\" }} }}"),
            "container 'web' is named twice",
        ),
        (
            format!("{{ \"Web\": {{ \"file\": \"{a}\" }}, \"web\": {{ \"file\": \"{b}\" }} }}"),
            "containers 'Web' and 'web' are one name",
        ),
    ] {
        let file = path_str(&host.file("twice.json", &twice)).to_string();
        for dry_run in [true, false] {
            let mut args = vec!["sync", "--file", &file, "--keep-going"];
            if dry_run {
                args.push("--dry-run");
            }
            let error = host.fails(&args, 1);
            assert!(error.contains(said), "{error}");
            assert_eq!(error.trim().lines().count(), 1, "one line: {error}");
        }
        host.assert_nothing_created();
    }
}

#[test]
fn two_syncs_of_one_list_at_once_both_succeed() {
    use std::process::{Command, Stdio};
    let host = Host::new();
    let the_list = list(
        &host,
        &[
            ("alpha", file_entry(&host, "a.nix", "1", "")),
            ("beta", file_entry(&host, "b.nix", "1", "")),
        ],
    );
    // beta's lock held here: the first sync's create of beta waits for it,
    // so that the first sync is under way for as long as this test says.
    let locks = host.state_dir().join("locks");
    std::fs::create_dir_all(&locks).unwrap();
    let beta_lock = locks.join("beta.lock");
    let mut holder = Command::new("flock")
        .arg(&beta_lock)
        .args(["-c", "read line"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    host.wait_for("the test to hold beta's lock", || {
        !Command::new("flock").arg("-n").arg(&beta_lock).arg("true").status().unwrap().success()
    });
    let first = host
        .helper_command(&["sync", "--file", &the_list])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The second starts while the first is creating.
    let state = host.state_dir().join("state.json");
    host.wait_for("the first sync to create alpha", || {
        std::fs::read_to_string(&state).is_ok_and(|text| text.contains("\"alpha\""))
    });
    let said = host.dir.path().join("second.stderr");
    let second = host
        .helper_command(&["sync", "--file", &the_list])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&said).unwrap())
        .spawn()
        .unwrap();
    host.wait_for("the second sync to say it waits", || {
        std::fs::read_to_string(&said).unwrap().contains("sync: waiting for another sync to finish")
    });
    drop(holder.stdin.take());
    holder.wait().unwrap();
    let first: crate::common::Run = first.wait_with_output().unwrap().into();
    let second: crate::common::Run = second.wait_with_output().unwrap().into();
    assert_eq!(first.code, 0, "{first:?}");
    assert!(first.stdout.contains("2 created"), "{first:?}");
    assert_eq!(second.code, 0, "{second:?} {}", std::fs::read_to_string(&said).unwrap());
    assert!(second.stdout.contains("0 created, 0 updated, 2 unchanged"), "{second:?}");
}

#[test]
fn every_entry_fails_alone_and_every_sync_ends_with_its_summary() {
    let host = Host::new();
    // A relative path is the list file's: beside it.
    host.tiny("beside.nix", "1", "");
    let the_list = list(
        &host,
        &[
            ("rel", "{ \"file\": \"beside.nix\" }".to_string()),
            ("bad_name", file_entry(&host, "x.nix", "1", "")),
        ],
    );
    let run = host.helper(&["sync", "--file", &the_list, "--keep-going"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stdout.contains("1 created, 0 updated, 0 unchanged, 0 removed, 1 failed"),
        "{run:?}"
    );
    assert!(run.stderr.contains("bad_name: invalid container name"), "{run:?}");
    host.ok(&["exists", "rel"]);
    // Without --keep-going a refused entry stops the others, summarized.
    let stopped = host.helper(&["sync", "--file", &the_list]);
    assert_eq!(stopped.code, 1, "{stopped:?}");
    assert!(stopped.stdout.contains("1 failed, 1 not tried"), "{stopped:?}");
    // A flake's invalid name fails alone too.
    let flake = host.dir.path().join("flake");
    std::fs::create_dir(&flake).unwrap();
    std::fs::write(
        flake.join("flake.nix"),
        format!(
            "{{ outputs = {{ self }}: {{ nixcloudContainers = {{\n\
               good = {{ system = import {REPO}/examples/tiny/system.nix {{ version = \"1\"; }}; }};\n\
               not_a_name = {{ system = import {REPO}/examples/tiny/system.nix {{ version = \"1\"; }}; }};\n\
             }}; }}; }}"
        ),
    )
    .unwrap();
    let run = host.helper(&["sync", "--flake", path_str(&flake), "--keep-going"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stdout.contains("1 created, 0 updated, 0 unchanged, 0 removed, 1 failed"),
        "{run:?}"
    );
    host.ok(&["exists", "good"]);
}

/// The containers whose files `sync -v` evaluated: each file traces
/// `evaluating <name>` (builtins.trace) when Nix evaluates it.
fn evaluated(run: &crate::common::Run) -> std::collections::BTreeSet<String> {
    run.stderr
        .lines()
        .filter_map(|line| {
            line.split_once("trace: evaluating ").map(|(_, name)| name.trim().to_string())
        })
        .collect()
}

#[test]
fn container_files_are_evaluated_again_only_when_what_they_read_changed() {
    let host = Host::new();
    let dir = host.dir.path().join("containers");
    std::fs::create_dir(&dir).unwrap();
    let write = |file: &str, text: &str| std::fs::write(dir.join(file), text).unwrap();
    // a and b import shared.nix; c and d read only themselves.
    let container = |name: &str, version: &str| {
        format!(
            "builtins.trace \"evaluating {name}\" {{\n  system = import \
             <nixcloud-container/examples/tiny/system.nix> {{ version = {version}; }};\n}}\n"
        )
    };
    write("shared.nix", "{ version = \"1\"; }");
    write("a.nix", &container("a", "(import ./shared.nix).version"));
    write("b.nix", &container("b", "(import ./shared.nix).version + \"b\""));
    write("c.nix", &container("c", "\"1\""));
    write("d.nix", &container("d", "\"1\""));
    let entries: Vec<(&str, String)> = ["a", "b", "c", "d"]
        .iter()
        .map(|name| (*name, format!("{{ \"file\": \"{}/{name}.nix\" }}", path_str(&dir))))
        .collect();
    let the_list = list(&host, &entries);
    let sync = || {
        let run = host.helper(&["sync", "--file", &the_list, "-v", "--json"]);
        assert_eq!(run.code, 0, "{run:?}");
        let summary: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
        (evaluated(&run), summary)
    };
    let names = |list: &[&str]| list.iter().map(|name| name.to_string()).collect();

    let (first, summary) = sync();
    assert_eq!(first, names(&["a", "b", "c", "d"]));
    assert_eq!(summary["created"], serde_json::json!(["a", "b", "c", "d"]));
    // Nothing changed: none is evaluated.
    let (again, summary) = sync();
    assert_eq!(again, names(&[]), "{summary}");
    assert_eq!(summary["unchanged"], serde_json::json!(["a", "b", "c", "d"]));
    // One file changed: that one.
    write("c.nix", &container("c", "\"2\""));
    let (one, summary) = sync();
    assert_eq!(one, names(&["c"]));
    assert_eq!(summary["updated"], serde_json::json!(["c"]));
    assert_eq!(generation(&host, "c"), "2");
    // The shared import changed: exactly those that read it.
    write("shared.nix", "{ version = \"2\"; }");
    let (shared, summary) = sync();
    assert_eq!(shared, names(&["a", "b"]));
    assert_eq!(summary["updated"], serde_json::json!(["a", "b"]));
    // A file added to the directory changes what readDir and pathExists
    // see there: every one is evaluated, none changes.
    write("notes.txt", "");
    let (added, summary) = sync();
    assert_eq!(added, names(&["a", "b", "c", "d"]));
    assert_eq!(summary["updated"], serde_json::json!([]));
    let (settled, _) = sync();
    assert_eq!(settled, names(&[]));
    // A generation that is not the one sync made (rolled back by hand) is
    // evaluated again, and made the list's again.
    host.ok(&["rollback", "c"]);
    let (rolled, summary) = sync();
    assert_eq!(rolled, names(&["c"]));
    assert_eq!(summary["updated"], serde_json::json!(["c"]));
}
