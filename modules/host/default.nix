# The host side of nixcloud-container.
#
#   nixcloud.containers.enable = true;
#
# prepares a NixOS host for unprivileged LXC containers that share its
# /nix/store: root's subordinate id range, LXC and the helper, the hostonly
# and internet bridges, NAT, DNS and DHCP (v4 and v6) for the internet bridge,
# forwarding rules, a boot service for autostart containers, and the host file
# that tells the helper all of this. The seed's spelling `nixcloud.container.*`
# is the same set of options.
#
# Each concern has a file of its own:
#
#   options/        the options, by area (their defaults: lib/host-defaults.json)
#   host-file.nix   what the helper is given: the delegated ids, LXC, its
#                   package, /etc/nixcloud-container/host.json
#   network.nix     the bridges, forwarding, NAT, DNS and DHCP (v4 and v6)
#   firewall.nix    what is forwarded (both backends), the helper's nftables tables
#   services.nix    the units: sync of the declared containers, network rules, autostart
#   assertions.nix  assertions and warnings
#   derived.nix     what several of them derive from the options
{ ... }:
let
  # Each file of the config is a function of the module's arguments, made a
  # module here: whether any of it applies is said once, and NixOS still
  # names the file a definition comes from (in a conflict, in nixos-option).
  enabledPart = file: { config, lib, pkgs, utils, ... }: {
    _file = file;
    config = lib.mkIf config.nixcloud.containers.enable (import file { inherit config lib pkgs utils; });
  };
in
{
  imports = [ ./options ] ++ map enabledPart [
    ./assertions.nix
    ./host-file.nix
    ./network.nix
    ./firewall.nix
    ./services.nix
  ];
}
