# Stands in for nixpkgs' nixos/lib/eval-config.nix where no nixpkgs exists:
# for tests/nix, the helper's integration tests and bench/. It takes the same
# arguments and gives them to lib.evalModules with the option declarations
# of tests/nix/stubs.nix; nixpkgs' lib comes as <nixpkgs-lib>
# (-I nixpkgs-lib=$NIXPKGS_LIB), the helper evaluating in restricted mode.
#
# The toplevel is the tiny system of examples/tiny, whose version records
# what the evaluation decided ("<host name>_<hostonly address>"), with the
# configuration (`nixosConfig`) and the platform (`evaluatedFor`) beside it.
# Each evaluation leaves a trace on stderr, for counting them, with the
# system.stateVersion it decided.
{ system ? builtins.currentSystem, modules, specialArgs ? { } }:
let
  lib = import <nixpkgs-lib>;
  harness = import ../../../nix/harness.nix { inherit lib; };
  config = harness.evalWith { inherit specialArgs; } modules;
  version = "${config.networking.hostName}_${toString config.nixcloud.guest.hostonly.address}";
in
builtins.trace "nixos-evaluation of ${config.networking.hostName} (stateVersion ${config.system.stateVersion})" {
  config.system.build.toplevel = import ../../../../examples/tiny/system.nix { inherit version; } // {
    nixosConfig = config;
    evaluatedFor = system;
  };
}
