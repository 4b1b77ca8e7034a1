//! The NixOS path of the helper, end to end: a container file holding a
//! NixOS configuration goes through lib/nixos-system.nix and eval-config with
//! the guest module, `ip` and `name` as module arguments, once per build.
//!
//! No nixpkgs exists here, so `-n "-I nixpkgs=<repo>/tests/fake-nixpkgs"` names a
//! stand-in eval-config that evaluates the modules with nixpkgs' lib and
//! returns the tiny system (see its header). It needs NIXPKGS_LIB, a copy of
//! nixpkgs' lib (nix-community/nixpkgs.lib); without it the test says so and
//! passes.

use crate::common::{Host, REPO};

fn nixpkgs_lib() -> Option<String> {
    let lib = std::env::var("NIXPKGS_LIB")
        .ok()
        .filter(|dir| std::path::Path::new(dir).join("default.nix").exists());
    if lib.is_none() {
        eprintln!("skipped: set NIXPKGS_LIB to a copy of nixpkgs' lib to test the NixOS path");
    }
    lib
}

/// Runs the helper with the stand-in nixpkgs; returns stdout and how many
/// NixOS evaluations it made.
fn with_fake_nixpkgs(host: &Host, lib: &str, args: &[&str]) -> (String, usize) {
    let fake = format!("-I nixpkgs={REPO}/tests/fake-nixpkgs -I nixpkgs-lib={lib}");
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["-n", &fake, "--verbose"]);
    let output = host.helper_command(&all).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{args:?}: {stderr}");
    let evaluations = stderr.matches("trace: nixos-evaluation of").count();
    (String::from_utf8_lossy(&output.stdout).into_owned(), evaluations)
}

#[test]
fn a_nixos_configuration_is_evaluated_once_per_build_with_ip_and_name() {
    let Some(lib) = nixpkgs_lib() else { return };
    let host = Host::new();
    let example = format!("{REPO}/examples/example.nix");
    let (_, evaluations) = with_fake_nixpkgs(&host, &lib, &["create", "ex", &example]);
    assert_eq!(evaluations, 1, "one NixOS evaluation for create");
    // The guest module named the host after the container and gave it its address.
    assert_eq!(host.start_booted("ex"), "ex_10.101.0.2");

    // The seed's autostart example sets its own host name; `ip` reaches it too.
    let autostart = format!("{REPO}/examples/autostartExample.nix");
    let (_, evaluations) = with_fake_nixpkgs(&host, &lib, &["update", "ex", &autostart]);
    assert_eq!(evaluations, 1, "one NixOS evaluation for update");
    let activated = host.ok(&["run", "ex", "cat", "/var/lib/tiny/activated"]);
    assert_eq!(activated.trim(), "switch autostartExample_10.101.0.2");
    let rows: serde_json::Value = serde_json::from_str(&host.ok(&["list", "--json"])).unwrap();
    assert_eq!(rows[0]["autostart"], true);

    // Without nixpkgs, the error says how to give it.
    let bare =
        host.helper_command(&["create", "bare", &example]).env("NIX_PATH", "").output().unwrap();
    let stderr = String::from_utf8_lossy(&bare.stderr);
    assert_eq!(bare.status.code(), Some(1));
    assert!(stderr.contains("needs nixpkgs: pass -n \"-I nixpkgs="), "{stderr}");
    assert_eq!(host.helper(&["exists", "bare"]).code, 1);
}
