# Stands in for nixpkgs' nixos/lib/eval-config.nix in the helper's tests
# (tests/nixos_configuration.rs), where no nixpkgs exists: the container's
# modules, the guest module among them, are evaluated with nixpkgs' lib
# (<nixpkgs-lib>) against the option stubs of tests/nix, and the
# toplevel is the tiny system, whose version records what the evaluation
# decided: "<host name>_<hostonly address>". Each evaluation leaves a trace
# on stderr, so that a test can count them. The helper evaluates in
# restricted mode, so nixpkgs' lib comes as `-n "-I nixpkgs-lib=<dir>"`.
{ system ? builtins.currentSystem, modules, specialArgs ? { } }:
let
  repo = ../../../../..;
  lib = import <nixpkgs-lib>;
  harness = import (repo + "/tests/nix/harness.nix") { inherit lib; };
  config = harness.evalWith { inherit specialArgs; } modules;
  version = "${config.networking.hostName}_${config.nixcloud.guest.hostonly.address}";
in
builtins.trace "nixos-evaluation of ${config.networking.hostName}" {
  config.system.build.toplevel = import (repo + "/examples/tiny/system.nix") { inherit version; };
}
