# Stands in for nixpkgs' nixos/lib/eval-config.nix, so that tests/nix can
# evaluate lib/nixos-system.nix without nixpkgs: the same arguments, given to
# lib.evalModules with the option declarations of tests/nix/stubs.nix.
# tests/nix/run names nixpkgs' lib in NIXCLOUD_TEST_NIXPKGS_LIB.
{ system ? builtins.currentSystem, modules, specialArgs ? { } }:
let
  lib = import (/. + builtins.getEnv "NIXCLOUD_TEST_NIXPKGS_LIB");
  h = import ../../../harness.nix { inherit lib; };
  config = h.evalWith { inherit specialArgs; } modules;
in
{
  # The real toplevel is a derivation; here it is the configuration itself,
  # with the platform it was evaluated for and a made-up store path.
  config.system.build.toplevel = config // {
    evaluatedFor = system;
    outPath = "/nix/store/00000000000000000000000000000000-nixos-system-${config.networking.hostName}";
  };
}
