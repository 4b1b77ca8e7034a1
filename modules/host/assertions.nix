# The host module's assertions and warnings: settings that cannot work
# together, and hosts where containers would be less confined than they look.
{ config, lib, ... }:
let
  inherit (lib) concatMapStringsSep optional optionals;
  inherit (import ./derived.nix { inherit config lib; })
    cfg addresses withInternet withIPv6 nftables hostonlyBridge internetBridge dhcp4Range;
  inherit (import ./options/common.nix { inherit lib; }) maxId;
  ipv6 = cfg.ipv6;

  # NixOS hands out automatic subordinate ranges (autoSubUidGidRange, on for
  # every normal user without explicit ranges) from 100000 upwards in blocks
  # of 65536 and does not skip explicit ranges such as root's
  # (host-file.nix). Every delegated id lies at or above 100000, where
  # automatic ranges begin.
  idmapEnd = cfg.idmap.hostId + cfg.idmap.count;
  overlapsIdmap = start: count: start < idmapEnd && cfg.idmap.hostId < start + count;
  sharingUsers = lib.filter
    (user: user.name != "root" && (
      user.autoSubUidGidRange
      || lib.any (r: overlapsIdmap r.startUid r.count) user.subUidRanges
      || lib.any (r: overlapsIdmap r.startGid r.count) user.subGidRanges))
    (lib.attrValues config.users.users);
  # Whether an instance names exactly one source: a file, a flake or a config.
  sourcedOnce = instance: lib.count (source: source != null) [ instance.file instance.flake instance.config ] == 1;
in
{
  assertions = [
    {
      assertion = lib.all sourcedOnce (lib.attrValues cfg.instances);
      message = "nixcloud.containers.instances: give each a file, a flake or a config, one of them (${concatMapStringsSep ", " (name: name) (lib.attrNames (lib.filterAttrs (_: instance: !sourcedOnce instance) cfg.instances))}).";
    }
    {
      assertion = hostonlyBridge != internetBridge;
      message = "nixcloud.containers: the hostonly and the internet bridge must be two bridges, both are ${hostonlyBridge}.";
    }
    {
      assertion = !(addresses.ipv4SubnetsOverlap cfg.hostonly cfg.internet);
      message = "nixcloud.containers: the hostonly subnet ${cfg.hostonly.address}/${toString cfg.hostonly.prefixLength} and the internet subnet ${cfg.internet.address}/${toString cfg.internet.prefixLength} overlap.";
    }
    {
      # The helper checks the same (rust-helper/src/settings.rs).
      assertion = (addresses.ipv4Subnet cfg.builds.network.address cfg.builds.network.prefixLength).network
          == addresses.ipv4ToInt cfg.builds.network.address
        && lib.all (bridge: !(addresses.ipv4SubnetsOverlap cfg.builds.network bridge))
          ([ cfg.hostonly cfg.internet ] ++ lib.attrValues cfg.extraBridges);
      message = "nixcloud.containers.builds.network: ${cfg.builds.network.address}/${toString cfg.builds.network.prefixLength} must be a network address, apart from the subnets of the bridges.";
    }
    {
      assertion = cfg.idmap.count >= cfg.idmap.perContainer && idmapEnd <= maxId;
      message = "nixcloud.containers.idmap: ${toString cfg.idmap.count} ids from ${toString cfg.idmap.hostId} must hold perContainer (${toString cfg.idmap.perContainer}) ids and end below ${toString maxId}.";
    }
    {
      assertion = dhcp4Range != null;
      message = "nixcloud.containers.internet: no addresses above ${cfg.internet.address} in its /${toString cfg.internet.prefixLength} are left for DHCP.";
    }
    {
      assertion = ipv6.enable -> withInternet;
      message = "nixcloud.containers.ipv6.enable needs nixcloud.containers.internetInterface.";
    }
    {
      assertion = !(cfg.extraBridges ? ${hostonlyBridge} || cfg.extraBridges ? ${internetBridge});
      message = "nixcloud.containers.extraBridges must not name the hostonly or the internet bridge.";
    }
    {
      # Container files may come from users who are not root: the helper
      # builds them in Nix's sandbox as the build users, and a host that
      # cannot do so cannot build them.
      assertion = config.nix.settings.sandbox == true
        && (config.nix.settings.build-users-group or "nixbld") != "";
      message = "nixcloud.containers: container builds run in Nix's sandbox as the build users (group nixbld); keep nix.settings.sandbox = true (not \"relaxed\" or false) and a build-users-group.";
    }
  ] ++ lib.mapAttrsToList (name: bridge: {
    assertion = let subnet = addresses.ipv4Subnet bridge.address bridge.prefixLength;
      own = addresses.ipv4ToInt bridge.address; in
      own != subnet.network && own != subnet.broadcast;
    message = "nixcloud.containers.extraBridges.${name}: ${bridge.address} is the network or broadcast address of its /${toString bridge.prefixLength}.";
  }) cfg.extraBridges
  # IPv6: the bridge's address, in the prefix it serves.
  ++ optionals withIPv6 [
    {
      assertion = ipv6.ipv6InternetInterfaceAddress != null && ipv6.ipv6Prefix != null;
      message = "nixcloud.containers.ipv6 needs ipv6InternetInterfaceAddress and ipv6Prefix.";
    }
    {
      assertion = ipv6.ipv6InternetInterfaceAddress == null || ipv6.ipv6Prefix == null
        || addresses.ipv6InPrefix ipv6.ipv6InternetInterfaceAddress ipv6.ipv6Prefix ipv6.ipv6PrefixLength;
      message = "nixcloud.containers.ipv6: ipv6InternetInterfaceAddress ${toString ipv6.ipv6InternetInterfaceAddress} is not in ${toString ipv6.ipv6Prefix}/${toString ipv6.ipv6PrefixLength}; dnsmasq serves DHCPv6 only on an interface with an address in the prefix.";
    }
    {
      assertion = config.networking.enableIPv6;
      message = "nixcloud.containers.ipv6 needs networking.enableIPv6.";
    }
  ];

  warnings = optional (sharingUsers != [ ]) ''
    nixcloud.containers: the containers' ids ${toString cfg.idmap.hostId} to ${toString (idmapEnd - 1)} (root's range in /etc/subuid and /etc/subgid) can also be given to ${concatMapStringsSep ", " (u: u.name) sharingUsers}: NixOS allocates automatic subordinate ranges (autoSubUidGidRange) from 100000 upwards without skipping root's. Such a user could map the containers' ids and own their files. Give them explicit users.users.<name>.subUidRanges and subGidRanges outside this range (or autoSubUidGidRange = false), or move nixcloud.containers.idmap.hostId far above the automatic ranges before creating containers.''
  # With iptables, the NixOS firewall is what keeps the hostonly bridge from
  # being forwarded (firewall.nix).
  ++ optional (!nftables && withInternet && !config.networking.firewall.enable) ''
    nixcloud.containers: with networking.firewall.enable = false and without nftables, nothing stops the host from forwarding packets from and to ${hostonlyBridge}; enable the firewall (or networking.nftables).'';
}
