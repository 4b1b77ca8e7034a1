# A NixOS host for nixcloud-container (a part of configuration.nix). With the
# flake, import nixcloud-container.nixosModules.default instead of the path.
{ ... }:
{
  imports = [ ../modules/host ];

  # The seed's spelling `nixcloud.container` works the same.
  nixcloud.containers = {
    enable = true;
    # NAT, DNS and DHCP for containers with network.enableNat = true.
    internetInterface = "enp0s3";
    # Fill in your own addresses: the prefix must be routed to this host.
    ipv6 = {
      enable = true;
      ipv6InternetInterfaceAddress = "2a01:4f8:221:3744:4000::1";
      ipv6Prefix = "2a01:4f8:221:3744:4000::";
      ipv6PrefixLength = 66;
      ipv6NameServers = [ "2a01:4f8:0:1::add:1010" "2a01:4f8:0:1::add:9999" "2a01:4f8:0:1::add:9898" ];
    };
    # The bridge of networkExample.nix: container files may join it, with a
    # fixed address of 10.10.0.0/16. The module creates it with this address
    # (as the seed did by hand with networking.interfaces.myOwnBridge).
    extraBridges.myOwnBridge = { address = "10.10.0.1"; prefixLength = 16; };
    # What container files may ask of this host (none of it by default):
    # host ports forwarded to them (webExample.nix), host paths they may bind
    # (read-only unless writable), devices.
    allowedForwardPorts = [ { from = 8000; to = 8999; } ];
    allowedHostPaths."/srv/media" = { };
    allowedDevices = [ "tun" ];
    # No container gets more than this, and one that asks for nothing gets it.
    limits = {
      memory.max = "4G";
      pids.max = 4096;
    };
  };
}
