# What the host module gives the helper: the ids it delegates to containers
# (root's subordinate ranges), LXC, the helper itself, and the host file
# /etc/nixcloud-container/host.json that tells it all of this.
{ config, lib, ... }:
let
  inherit (lib) mkIf;
  inherit (import ./derived.nix { inherit config lib; }) cfg withIPv6 lxcPackage lxcPath;
  spec = import ../../lib/spec.nix;
  ipv6 = cfg.ipv6;
in
{
  # Containers are started by root and drop to this range (lxc.idmap);
  # lxc-start's newuidmap/newgidmap accept only what /etc/subuid and
  # /etc/subgid grant.
  users.users.root = {
    subUidRanges = [ { startUid = cfg.idmap.hostId; count = cfg.idmap.count; } ];
    subGidRanges = [ { startGid = cfg.idmap.hostId; count = cfg.idmap.count; } ];
  };

  # Root-started containers need neither lxc-user-nic nor lxc-net
  # (virtualisation.lxc.unprivilegedContainers): the bridges are ours.
  virtualisation.lxc.enable = true;
  virtualisation.lxc.systemConfig = mkIf (lxcPath != "/var/lib/lxc") ''
    lxc.lxcpath = ${lxcPath}
  '';

  environment.systemPackages = [ cfg.package ];

  # What the helper reads (rust-helper/src/settings.rs): exactly the keys
  # of lib/host-defaults.json, as the helper refuses any other.
  environment.etc."nixcloud-container/host.json".text = builtins.toJSON {
    hostonly = { inherit (cfg.hostonly) bridge address prefixLength; };
    internet = { inherit (cfg.internet) bridge address prefixLength; };
    extraBridges = lib.mapAttrs (_: bridge: { inherit (bridge) address prefixLength; }) cfg.extraBridges;
    idmap = { inherit (cfg.idmap) hostId count perContainer isolated; };
    nixDaemonSocketDir = toString cfg.nixDaemonSocketDir;
    inherit (cfg) idmappedMounts allowNixDaemon allowWholeStore allowedHostPaths allowedForwardPorts
      allowedEgress allowedDevices antiSpoofing;
    # The prefix DHCPv6 hands out addresses from: the helper pins one of
    # them to each container's internet interface.
    internetIPv6 = if withIPv6 then { prefix = ipv6.ipv6Prefix; prefixLength = ipv6.ipv6PrefixLength; } else null;
    inherit (cfg) allowedFlakeInputPaths;
    names = { inherit (cfg.names) suffix hostsFile; };
    builds = {
      inherit (cfg.builds) allowInternet evaluationTimeout buildTimeout;
      network = { inherit (cfg.builds.network) address prefixLength; };
      # Sizes and limits as the options take them: the helper reads the
      # options' shapes (one schema, docs/host-options.md).
      inherit (cfg.builds) memory;
    };
    dataDir = if cfg.dataDir == null then null else toString cfg.dataDir;
    # LXC's generated profile for each container where AppArmor is on
    # (nixpkgs' LXC module loads LXC's own policies then).
    appArmor = config.security.apparmor.enable;
    # Checked as a container file's limits are (lib/spec.nix), written as set.
    limits = builtins.seq (spec.normalizeLimits "nixcloud.containers.limits" cfg.limits)
      (lib.filterAttrs (_: group: group != { })
        (lib.mapAttrs (_: lib.filterAttrs (_: value: value != null)) cfg.limits));
    inherit lxcPath;
    profilesDir = toString cfg.profilesDir;
    stateDir = toString cfg.stateDir;
    lxcConfigDir = "${lxcPackage}/share/lxc/config";
  };
}
