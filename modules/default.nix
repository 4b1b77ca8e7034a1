# The NixOS modules, listed once for the flake's nixosModules and default.nix.
{
  # The host: nixcloud.containers.* (and the seed's nixcloud.container.*).
  default = ./host;
  host = ./host;
  # What every container's NixOS gets; lib/nixos-system.nix imports it.
  guest = ./guest.nix;
}
