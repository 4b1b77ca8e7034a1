# What several parts of the host module's config derive from its options.
{ config, lib }:
let
  cfg = config.nixcloud.containers;
  addresses = import ../../lib/addresses.nix { inherit lib; };
in
rec {
  inherit cfg addresses;

  withInternet = cfg.internetInterface != null;
  withIPv6 = withInternet && cfg.ipv6.enable;
  nftables = config.networking.nftables.enable;

  lxcPackage = config.virtualisation.lxc.package;
  lxcPath = toString cfg.lxcPath;

  hostonlyBridge = cfg.hostonly.bridge;
  internetBridge = cfg.internet.bridge;
  # Every bridge containers may join.
  containerBridges = [ hostonlyBridge internetBridge ] ++ lib.attrNames cfg.extraBridges;
  # The names the helper gives the host's ends of its links.
  interfaceNames = builtins.fromJSON (builtins.readFile ../../lib/interface-names.json);
  # The host's ends of the links to the helper's build namespaces
  # (rust-helper/src/nix/build_network.rs: LINK_PREFIX).
  buildLinks = interfaceNames.buildLinkPrefix;

  # dnsmasq hands out the addresses above the host's own.
  dhcp4Range = addresses.ipv4DhcpRange cfg.internet.address cfg.internet.prefixLength;
}
