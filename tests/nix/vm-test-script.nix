# The Python test script of tests/vm-test.nix, made without nixpkgs: its
# containers' systems come from the stand-in eval-config (tests/fake-nixpkgs), its
# nodes are the few values the script reads. tests/nix/run compiles it.
{ lib, h }:
let
  fake = h.fakePkgs { };
  pkgs = fake // {
    inherit lib;
    path = ../fake-nixpkgs;
    stdenv.hostPlatform.system = builtins.currentSystem;
    testers.runNixOSTest = test: test;
  };
  test = import ../vm-test.nix { inherit pkgs; };
in
test.testScript {
  nodes = {
    machine.virtualisation.lxc.package = fake.lxc;
    machine.networking.primaryIPAddress = "192.168.1.1";
    outside.networking.primaryIPAddress = "192.168.1.2";
  };
}
