# A tiny container that needs no nixpkgs: its system is busybox and an init,
# built from the host's busybox-static (see tiny/system.nix). The demo and the
# tests use it.
#
#   nixcloud-container create tiny examples/tiny.nix
{
  system = import ./tiny/system.nix { };
}
