# The options of the host module, nixcloud.containers.*, one file per area.
# The seed's spelling `nixcloud.container.*` is the same set of options.
{ lib, ... }:
{
  imports = [
    ./general.nix
    ./network.nix
    ./grants.nix
    ./builds.nix
    ./instances.nix
    # The seed's spelling. An alias, not a rename: both keep working silently.
    (lib.mkAliasOptionModule [ "nixcloud" "container" ] [ "nixcloud" "containers" ])
  ];
}
