//! The command line as people meet it: the manual, the man page and the
//! completions from one definition (docs.rs checks docs/commands.md against
//! it); Nix's progress on a terminal; list's formats; several containers at
//! once.

use std::process::Command;

use crate::common::{built_by_script, path_str, Host, HELPER};

#[test]
fn the_man_page_renders() {
    let host = Host::new();
    let page = host.dir.path().join("nixcloud-container.1");
    std::fs::write(&page, host.ok(&["help", "--man"])).unwrap();
    let rendered = Command::new("man")
        .args(["--warnings", "-P", "cat", "-l", path_str(&page)])
        .env("MANWIDTH", "80")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&rendered.stdout);
    let warnings = String::from_utf8_lossy(&rendered.stderr);
    assert!(rendered.status.success(), "{warnings}");
    assert!(warnings.trim().is_empty(), "man warns: {warnings}");
    for part in
        ["NIXCLOUD-CONTAINER(1)", "SYNOPSIS", "CONTAINER FILES", "EXIT STATUS", "repair-state"]
    {
        assert!(text.contains(part), "the rendered page lacks {part}");
    }
}

#[test]
fn bash_completes_a_command_name() {
    let host = Host::new();
    let script = host.file("completions.bash", &host.ok(&["completions", "bash"]));
    let completed = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source {}; function=$(complete -p nixcloud-container | sed 's/.*-F \\([^ ]*\\).*/\\1/'); \
             COMP_WORDS=(nixcloud-container repa); COMP_CWORD=1; \
             $function nixcloud-container repa nixcloud-container; echo \"${{COMPREPLY[@]}}\"",
            path_str(&script)
        ))
        .output()
        .unwrap();
    let words = String::from_utf8_lossy(&completed.stdout);
    assert!(completed.status.success(), "{}", String::from_utf8_lossy(&completed.stderr));
    assert_eq!(words.trim(), "repair-state repair-network repair-names");
    for shell in ["zsh", "fish"] {
        assert!(host.ok(&["completions", shell]).contains("repair-state"), "{shell}");
    }
}

/// A system whose build takes a few seconds and says what it does.
fn slow_build(host: &Host, token: &str) -> std::path::PathBuf {
    built_by_script(
        host,
        token,
        "echo compiling the first part; ${bb} sleep 1
         echo compiling the second part; ${bb} sleep 1
         ${bb} mkdir $out
         printf '#!%s sh\\nexec %s sleep 1000\\n' ${bb} ${bb} > $out/init
         ${bb} chmod +x $out/init",
    )
}

#[test]
fn a_terminal_shows_what_is_built_and_nothing_else_does() {
    let host = Host::new();
    let token = format!("progress-{}", std::process::id());
    // `script` gives the helper a pseudo-terminal.
    let mut env = String::new();
    for (key, value) in host.helper_env() {
        env.push_str(&format!("{key}={} ", value.display()));
    }
    let file = slow_build(&host, &token);
    let on_terminal = Command::new("script")
        .args(["-qec"])
        .arg(format!(
            "ip netns exec {} env {env} {HELPER} create shown {}",
            host.netns,
            path_str(&file)
        ))
        .arg("/dev/null")
        .output()
        .unwrap();
    let seen = String::from_utf8_lossy(&on_terminal.stdout);
    assert!(on_terminal.status.success(), "{seen}");
    assert!(seen.contains(&format!("\r\x1b[Kbuilding {token}")), "no progress line: {seen:?}");
    assert!(seen.contains(": compiling the second part"), "the build's last words: {seen:?}");
    assert!(seen.contains("created container 'shown'"));

    // The same without a terminal: no progress line.
    let file = slow_build(&host, &format!("{token}-piped"));
    let piped = host.helper(&["create", "piped", path_str(&file)]);
    assert_eq!(piped.code, 0, "{piped:?}");
    assert!(!piped.stderr.contains("building") && !piped.stderr.contains('\r'), "{piped:?}");
    // -v streams Nix's log as it comes; -q shows nothing on a terminal either.
    host.ok(&["destroy", "piped"]);
    let verbose = host.helper(&["create", "piped", path_str(&file), "-v"]);
    assert!(
        verbose.stderr.contains("compiling the second part") || verbose.code == 0,
        "{verbose:?}"
    );
    let quiet_file = slow_build(&host, &format!("{token}-quiet"));
    let quiet = Command::new("script")
        .args(["-qec"])
        .arg(format!(
            "ip netns exec {} env {env} {HELPER} create quiet -q {}",
            host.netns,
            path_str(&quiet_file)
        ))
        .arg("/dev/null")
        .output()
        .unwrap();
    let seen = String::from_utf8_lossy(&quiet.stdout);
    assert!(quiet.status.success() && !seen.contains("building"), "{seen:?}");
}

#[test]
fn a_failed_build_shows_the_end_of_its_log() {
    let host = Host::new();
    let file = host.file(
        "failing.nix",
        r#"let bb = import <nixcloud-container/lib/host-busybox.nix>; in {
          system = derivation { name = "failing-build"; system = builtins.currentSystem; builder = bb;
            args = [ "sh" "-c" "for i in 1 2 3 4 5 6 7 8 9 10 11 12; do echo line $i; done; echo the real cause >&2; exit 4" ]; };
        }"#,
    );
    let run = host.helper(&["create", "failing", path_str(&file)]);
    assert_eq!(run.code, 1);
    let errors: Vec<&str> = run.stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{run:?}");
    assert!(
        errors[0].contains("failed with exit code 4; the build said: the real cause"),
        "{run:?}"
    );
    assert!(run.stderr.contains("the last lines of the build of failing-build"), "{run:?}");
    assert!(run.stderr.contains("  > line 12") && !run.stderr.contains("  > line 2\n"), "{run:?}");
    host.assert_nothing_created();
}

#[test]
fn list_prints_the_columns_asked_for_in_the_format_asked_for() {
    let host = Host::new();
    let file = host.tiny("l.nix", "1", "");
    host.ok(&["create", "alpha", path_str(&file)]);
    host.ok(&["create", "beta", path_str(&host.tiny("b.nix", "1", "autostart = true;"))]);
    let csv = host.ok(&["list", "--format", "csv"]);
    assert_eq!(
        csv,
        "name,state,ipv4,ipv6,generation,autostart\n\
         alpha,STOPPED,10.101.0.2,,1,false\n\
         beta,STOPPED,10.101.0.3,,1,true\n"
    );
    let picked = host.ok(&["list", "--format", "csv", "--columns", "ipv4,name", "--no-header"]);
    assert_eq!(picked, "10.101.0.2,alpha\n10.101.0.3,beta\n");
    let table = host.ok(&["list", "--columns", "name,autostart"]);
    assert_eq!(table, "NAME   AUTOSTART\nalpha  no\nbeta   yes\n");
    assert_eq!(host.ok(&["list", "--no-header", "--columns", "name"]), "alpha\nbeta\n");
    let json: serde_json::Value = serde_json::from_str(&host.ok(&[
        "list",
        "--format",
        "json",
        "--columns",
        "name,generation",
    ]))
    .unwrap();
    assert_eq!(
        json,
        serde_json::json!([{"name": "alpha", "generation": 1}, {"name": "beta", "generation": 1}])
    );
    assert_eq!(host.ok(&["list", "--json"]), host.ok(&["list", "--format", "json"]));
    host.fails(&["list", "--format", "xml"], 2);
    host.fails(&["list", "--columns", "name,colour"], 2);
}

#[test]
fn several_containers_or_all_of_them() {
    let host = Host::new();
    let file = host.tiny("m.nix", "1", "");
    for name in ["m1", "m2", "m3"] {
        host.ok(&["create", name, path_str(&file)]);
    }
    host.ok(&["start", "m1", "m2"]);
    assert_eq!(
        (host.state("m1"), host.state("m2"), host.state("m3")),
        ("RUNNING".into(), "RUNNING".into(), "STOPPED".into())
    );
    host.ok(&["start", "--all"]);
    assert_eq!(host.state("m3"), "RUNNING");
    host.ok(&["stop", "m1", "m3"]);
    assert_eq!((host.state("m1"), host.state("m3")), ("STOPPED".into(), "STOPPED".into()));
    host.ok(&["terminate", "--all"]);
    assert_eq!(host.state("m2"), "STOPPED");
    // One that fails does not stop the others, and the error says which.
    let err = host.fails(&["start", "m1", "ghost", "m2"], 1);
    assert!(err.contains("start failed for 1 of 3 containers: ghost"), "{err}");
    assert_eq!((host.state("m1"), host.state("m2")), ("RUNNING".into(), "RUNNING".into()));
    host.fails(&["start", "m1", "m2", "-l", "-F"], 2);
    host.ok(&["stop", "--all"]);

    let v2 = host.tiny("m2.nix", "2", "");
    host.ok(&["update", "m1", path_str(&v2)]);
    host.ok(&["update", "m1", "m2"]);
    assert_eq!(host.current_generation("m1"), "2", "m1 rebuilt from its last file: unchanged");
    assert_eq!(host.current_generation("m2"), "1");
    host.ok(&["update", "--all"]);
    let err = host.fails(&["update", "m1", "m2", "x.nix"], 2);
    assert!(err.contains("only a single container takes"), "{err}");
}
