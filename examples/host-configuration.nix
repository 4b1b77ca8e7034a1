# A NixOS host for nixcloud-container (a part of configuration.nix). With the
# flake, import nixcloud-container.nixosModules.default instead of the path.
{ ... }:
{
  imports = [ ../modules/host.nix ];

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
  };

  # The bridge of networkExample.nix.
  networking.bridges.myOwnBridge.interfaces = [ ];
  networking.interfaces.myOwnBridge = {
    ipv4.addresses = [ { address = "10.10.0.1"; prefixLength = 16; } ];
    useDHCP = false;
  };
}
