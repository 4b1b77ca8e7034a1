# The toolkit's Nix functions, for flakes (`nixcloud-container.lib`) and
# other Nix code. The helper's own entry point is cli.nix.
{
  # Container file -> spec: `spec.fromValue origin value`, `spec.fromSystemPath path`.
  spec = import ./spec.nix;

  # A busybox binary -> a builder for generations (busybox.nix).
  busybox = import ./busybox.nix;

  # { builder, spec, system, params } -> one generation (a derivation).
  generation = import ./generation.nix;

  # { nixpkgs, configuration, params, system? } -> the guest's toplevel.
  nixosSystem = import ./nixos-system.nix;

  # The seed's host defaults (bridges, subnets, id range, directories).
  hostDefaults = builtins.fromJSON (builtins.readFile ./host-defaults.json);
}
