# The host module's options for the containers' network: the bridges, the
# uplink with NAT, DNS, DHCP and IPv6, the ports forwarded to containers,
# where their forwarded traffic may go, and the guard on their ports.
{ lib, ... }:
let
  inherit (lib) literalExpression mkOption types;
  inherit (import ./common.nix { inherit lib; }) defaults ipv4Address interfaceName ranges;
  formats = import ../../../lib/formats.nix;

  # Ports from `from` to `to`, both included.
  portRange = types.submodule {
    options = {
      from = mkOption { type = types.port; description = "The first port."; };
      to = mkOption { type = types.port; description = "The last port."; };
    };
  };

  bridgeOptions = which: purpose: {
    bridge = mkOption {
      type = interfaceName;
      default = defaults.${which}.bridge;
      description = "Name of the ${which} bridge, which ${purpose}";
    };
    address = mkOption {
      type = ipv4Address;
      default = defaults.${which}.address;
      description = "The host's IPv4 address on the ${which} bridge.";
    };
    prefixLength = mkOption {
      type = ranges.prefixLength;
      default = defaults.${which}.prefixLength;
      description = "Prefix length of the ${which} subnet around {option}`nixcloud.containers.${which}.address`.";
    };
  };
in
{
  options.nixcloud.containers = {
    hostonly = bridgeOptions "hostonly" ''
      every container joins with its `hostonly` interface
      (unless its file names another `network.bridge`). The host reaches the
      containers through it and they reach each other; it is never forwarded
      or NATed anywhere. The helper allocates container addresses in this
      subnet.
    '';

    internet = bridgeOptions "internet" ''
      containers with `network.enableNat = true` join with an
      `internet` interface. With {option}`nixcloud.containers.internetInterface`
      set, it is NATed to the outside, dnsmasq serves DNS and DHCP on it, and
      IPv6 is routed to it when {option}`nixcloud.containers.ipv6.enable` is
      set.
    '';

    internetInterface = mkOption {
      type = types.nullOr interfaceName;
      default = null;
      example = "enp0s3";
      description = ''
        The host's interface to the outside world. When set, containers on the
        internet bridge get IPv4 by DHCP and reach the outside through NAT on
        this interface (never those on the hostonly bridge). When null, the
        internet bridge exists but nothing serves or forwards it.
      '';
    };

    ipv6 = {
      enable = mkOption {
        type = types.bool;
        default = false;
        description = ''
          Whether to give containers on the internet bridge IPv6: the prefix
          below is routed to the bridge, and dnsmasq hands out addresses from
          it by DHCPv6, announces the bridge as their router and gives them
          name servers. The prefix must reach this host (routed to it by your
          provider, or proxied with NDP). Needs
          {option}`nixcloud.containers.internetInterface`.
        '';
      };

      ipv6InternetInterfaceAddress = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "2a01:4f8:221:3744:4000::1";
        description = ''
          The host's address on the internet bridge. It must lie in
          {option}`nixcloud.containers.ipv6.ipv6Prefix`: the bridge's route to
          the prefix comes from this address, and dnsmasq serves DHCPv6 only
          on an interface with an address in the prefix.
        '';
      };

      ipv6Prefix = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "2a01:4f8:221:3744:4000::";
        description = "The prefix whose addresses the containers get.";
      };

      ipv6PrefixLength = mkOption {
        # dnsmasq takes no DHCPv6 prefix shorter than 64 bits, and leases come
        # from the last 16 bits (<prefix>::1000 to <prefix>::ffff).
        type = ranges.ipv6PrefixLength;
        default = 64;
        example = 66;
        description = ''
          Length of {option}`nixcloud.containers.ipv6.ipv6Prefix`, 64 to 112.
          Containers lease addresses from `<prefix>::1000` to
          `<prefix>::ffff` by DHCPv6 (stateful: SLAAC needs exactly 64 bits,
          this works with any length).
        '';
      };

      ipv6NameServers = mkOption {
        type = types.listOf types.str;
        default = [ ];
        example = [ "2a01:4f8:0:1::add:1010" "2a01:4f8:0:1::add:9999" "2a01:4f8:0:1::add:9898" ];
        description = ''
          The IPv6 name servers announced to the containers (by DHCPv6 and in
          router advertisements). Empty: the host's dnsmasq itself.
        '';
      };
    };

    extraBridges = mkOption {
      type = types.attrsOf (types.submodule {
        options = {
          address = mkOption {
            type = ipv4Address;
            example = "10.10.0.1";
            description = "The host's IPv4 address on the bridge.";
          };
          prefixLength = mkOption {
            type = ranges.prefixLength;
            example = 16;
            description = "Prefix length of the bridge's subnet, where containers take their fixed addresses.";
          };
        };
      });
      default = { };
      example = literalExpression ''
        { myOwnBridge = { address = "10.10.0.1"; prefixLength = 16; }; }
      '';
      description = ''
        Other bridges of this host that container files may name as
        `network.bridge`, each with the host's address on it. A container
        file may come from someone who is not root, so it joins only the
        bridges listed here (and the hostonly one), with a fixed
        `network.ip` of the bridge's subnet that is neither the host's nor
        another container's. The module creates each bridge with its address
        (both by default, so that a configuration of its own wins).
      '';
    };

    allowedForwardPorts = mkOption {
      type = types.listOf portRange;
      default = [ ];
      example = [ { from = 8000; to = 8999; } ];
      description = ''
        Host ports (TCP and UDP) container files may have forwarded to them
        (`forwardPorts`); none by default, so that no container takes a port
        of the host's own. The helper forwards them (nftables) while the
        container runs; a port one container has is refused to another.
      '';
    };

    allowedEgress = mkOption {
      type = types.listOf (types.submodule {
        options = {
          network = mkOption {
            # The helper checks it strictly (an address without bits beyond
            # the prefix); a wrong one fails every helper command with the
            # host file's error.
            type = types.strMatching "[0-9A-Fa-f.:]+/[0-9]{1,3}";
            example = "192.168.1.0/24";
            description = "An IPv4 or IPv6 network, by its address and prefix length.";
          };
          ports = mkOption {
            type = types.listOf portRange;
            default = [ ];
            example = [ { from = 5432; to = 5432; } ];
            description = "The TCP and UDP ports of it containers may reach; none: all of it, whatever the protocol.";
          };
        };
      });
      default = [ ];
      example = [ { network = "192.168.1.0/24"; ports = [ { from = 5432; to = 5432; } ]; } ];
      description = ''
        What traffic that containers send through this host (forwarded, as
        with NAT) may reach besides the internet. By default it reaches no
        private network (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16,
        100.64.0.0/10, fc00::/7) beyond the containers' own bridges and no
        link-local address (169.254.0.0/16, where most clouds answer with the
        host's credentials at 169.254.169.254, and fe80::/10); each entry
        lets containers reach a network of those. Container files have no
        say in it. The helper keeps the rules (the nftables table
        `inet nixcloud-container-egress`) with both firewall backends; what
        containers reach on this host itself stays the firewall's business.
      '';
    };

    antiSpoofing = mkOption {
      type = types.bool;
      default = defaults.antiSpoofing;
      description = ''
        Whether each container's ports on the bridges pass only frames from
        its own MAC address, IPv4 and ARP from its own addresses, IPv6 from
        the link-local address of its MAC and the address DHCPv6 gives it, and
        no router advertisements, redirects or DHCP and DHCPv6 servers'
        answers (the nftables table `bridge nixcloud-container-guard`, which
        the helper fills). A container cannot pose as another, or as the
        host, to the host or its peers. Turn it off only where containers
        route or bridge traffic of others through their own interfaces.
      '';
    };

    names = {
      suffix = mkOption {
        type = types.strMatching formats.dnsLabel.pattern;
        default = defaults.names.suffix;
        example = "lan";
        description = ''
          The host reaches container `web` as `web.<suffix>` (one label of a
          host name: no dots), at the hostonly address of its current
          generation, kept in step by the helper as containers are made,
          change address and go: in its block of
          {option}`nixcloud.containers.names.hostsFile`, and in
          `<stateDir>/hosts/`, which dnsmasq reads (with an
          {option}`nixcloud.containers.internetInterface`), so that
          containers that use it as their DNS server reach their peers by
          name.
        '';
      };
      hostsFile = mkOption {
        type = types.nullOr (types.strMatching formats.absolutePath.pattern);
        default = "/etc/hosts";
        description = ''
          The hosts file in which the helper keeps a block of the containers'
          names, between two marker lines, the rest left as it is; `null`:
          none. /etc/hosts is then a file (copied at each activation instead
          of linked into the store), and each activation writes the block
          again (`nixcloud-container repair-names`). Without the module the
          helper writes none unless the host file names one.
        '';
      };
    };
  };
}
