//! The host's limits on evaluating and building a container's code
//! (build_limits.rs): an endless evaluation, an endless build and a string
//! that doubles itself each end at the limit the host file sets, with one
//! error that names it, and the container is as it was.

use crate::common::{built_by_script, path_str, Host, REPO};

/// Sets `builds` (a JSON object) in the test host's host file.
fn limit_builds(host: &Host, builds: serde_json::Value) {
    let file = host.dir.path().join("host.json");
    std::fs::write(file, serde_json::json!({ "builds": builds }).to_string()).unwrap();
}

/// A container file of the tiny system whose `autostart` is `expression`:
/// the spec's evaluation forces it.
fn evaluating(host: &Host, name: &str, expression: &str) -> std::path::PathBuf {
    host.file(
        name,
        &format!(
            "{{ autostart = {expression};\n  system = import {REPO}/examples/tiny/system.nix {{ }}; }}\n"
        ),
    )
}

/// Runs forever in constant memory: each outer step folds over a list the
/// collector takes back (10^10 steps).
const ENDLESS: &str = "let l = builtins.genList (x: x) 100000; in \
    builtins.foldl' (a: _: builtins.foldl' (b: _: b + 1) a l) 0 l > 0";

/// Doubles a string 40 times: a TiB.
const DOUBLING: &str =
    "builtins.stringLength (builtins.foldl' (s: _: s + s) \"x\" (builtins.genList (x: x) 40)) > 0";

/// Whether a process whose command line contains `needle` runs.
fn runs(needle: &str) -> bool {
    std::fs::read_dir("/proc").unwrap().flatten().any(|entry| {
        std::fs::read(entry.path().join("cmdline"))
            .is_ok_and(|cmdline| String::from_utf8_lossy(&cmdline).contains(needle))
    })
}

#[test]
fn an_endless_evaluation_ends_at_the_hosts_time_limit() {
    let host = Host::new();
    limit_builds(&host, serde_json::json!({ "evaluationTimeout": 2 }));
    let endless = evaluating(&host, "endless.nix", ENDLESS);
    let err = host.fails(&["create", "web", path_str(&endless)], 1);
    assert!(err.contains("stopped after 2 s") && err.contains("builds.evaluationTimeout"), "{err}");
    host.assert_nothing_created();
    host.wait_for("the evaluation to be gone", || !runs(path_str(&endless)));

    // An update that does so keeps the current generation.
    host.ok(&["create", "web", path_str(&host.tiny("v1.nix", "1", ""))]);
    let err = host.fails(&["update", "web", path_str(&endless)], 1);
    assert!(err.contains("builds.evaluationTimeout"), "{err}");
    assert_eq!(host.current_generation("web"), "1");
    assert!(host.ok(&["list-generations", "web"]).contains("tiny-system-1"));
}

#[test]
fn an_endless_build_ends_at_the_hosts_time_limit() {
    let host = Host::new();
    limit_builds(&host, serde_json::json!({ "buildTimeout": 3 }));
    let marker = format!("endless-build-{}", std::process::id());
    let file = built_by_script(&host, &marker, "while :; do :; done");
    let err = host.fails(&["create", "web", path_str(&file)], 1);
    assert!(err.contains("3 s") && err.contains("builds.buildTimeout"), "{err}");
    host.assert_nothing_created();
    host.wait_for("the build to be gone", || !runs(&marker));
}

#[test]
fn a_doubling_string_ends_at_the_hosts_memory_limit() {
    let host = Host::new();
    // As the module writes it (docs/host-options.md): a size with its unit.
    limit_builds(&host, serde_json::json!({ "memory": "256M", "evaluationTimeout": 600 }));
    let bomb = evaluating(&host, "bomb.nix", DOUBLING);
    let err = host.fails(&["create", "web", path_str(&bomb)], 1);
    assert!(
        err.contains("out of memory") && err.contains("256 MiB") && err.contains("builds.memory"),
        "{err}"
    );
    host.assert_nothing_created();

    // Under the limit, a container is evaluated and built as ever.
    host.ok(&["create", "web", path_str(&host.tiny("v1.nix", "1", ""))]);
    let err = host.fails(&["update", "web", path_str(&bomb)], 1);
    assert!(err.contains("builds.memory"), "{err}");
    assert_eq!(host.current_generation("web"), "1");
}

#[test]
fn sync_runs_no_more_jobs_than_fit_into_half_the_memory() {
    let host = Host::new();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
    let total: u64 =
        meminfo.lines().next().unwrap().split_whitespace().nth(1).unwrap().parse::<u64>().unwrap()
            * 1024;
    // Each job may take the host's whole memory: one at a time.
    limit_builds(&host, serde_json::json!({ "memory": total }));
    let entry = |file: &str| format!("{{ \"file\": \"{}\" }}", path_str(&host.tiny(file, "1", "")));
    let list = host
        .file("list.json", &format!("{{ \"a\": {}, \"b\": {} }}", entry("a.nix"), entry("b.nix")));
    let run = host.helper(&["sync", "--file", path_str(&list), "-j", "2"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stderr.contains("sync: runs 1 at once, not 2"), "{run:?}");
    assert!(run.stdout.contains("2 created"), "{run:?}");
}
