# The containers' network on the host: the bridges, IPv4 forwarding, and,
# with an uplink (internetInterface), NAT, DNS and DHCP for the internet
# bridge and, with ipv6.enable, the IPv6 prefix routed to it with DHCPv6 and
# router advertisements. (firewall.nix keeps what is forwarded in bounds.)
{ config, lib, ... }:
let
  inherit (lib) concatMapStringsSep mkDefault mkIf mkMerge optional;
  inherit (import ./derived.nix { inherit config lib; })
    cfg addresses withInternet withIPv6 hostonlyBridge internetBridge interfaceNames dhcp4Range;
  ipv6 = cfg.ipv6;

  # Where the helper pins each container's DHCP addresses (one file each).
  dhcpHostsDir = "${toString cfg.stateDir}/${(import ../../lib/layout.nix).dhcpHosts}";
  # Where the helper keeps each container's name (one hosts line each;
  # rust-helper/src/capabilities/network/names.rs).
  namesDir = "${toString cfg.stateDir}/hosts";

  # DHCPv6 leases come from the last 16 bits of the prefix (see ipv6PrefixLength).
  dhcp6Range = {
    start = addresses.ipv6WithLowGroup ipv6.ipv6Prefix 4096; # <prefix>::1000
    end = addresses.ipv6WithLowGroup ipv6.ipv6Prefix 65535; # <prefix>::ffff
  };
in
mkMerge [
  {
    # Both bridges exist from boot on, without ports until containers join
    # (LXC adds each container's veth). Static addresses, no DHCP client.
    # The extra bridges too, by default: a configuration of their own wins.
    networking.bridges = mkMerge [
      {
        ${hostonlyBridge}.interfaces = [ ];
        ${internetBridge}.interfaces = [ ];
      }
      (lib.mapAttrs (_: _: { interfaces = mkDefault [ ]; }) cfg.extraBridges)
    ];
    networking.interfaces = mkMerge [
      {
        ${hostonlyBridge} = {
          ipv4.addresses = [ { inherit (cfg.hostonly) address prefixLength; } ];
          useDHCP = false;
        };
        ${internetBridge} = {
          ipv4.addresses = [ { inherit (cfg.internet) address prefixLength; } ];
          useDHCP = false;
        };
      }
      (lib.mapAttrs (_: bridge: {
        ipv4.addresses = mkDefault [ { inherit (bridge) address prefixLength; } ];
        useDHCP = mkDefault false;
      }) cfg.extraBridges)
    ];
    # The host's ends of the containers' veths (nc<hash>h and nc<hash>i)
    # are bridge ports, and those of the helper's build namespaces
    # (nxcb<slot>) have addresses of the helper's: no DHCP client on them
    # (NixOS's dhcpcd runs on every interface this list does not match, by
    # its globs), and no NetworkManager either, which, as nixpkgs'
    # nixos-containers.nix does for its ve-* ports, udev tells with
    # NM_UNMANAGED (networking.networkmanager.unmanaged would need NM's own
    # match syntax). The globs are lib/interface-names.json's, which the
    # helper's tests tie to the names it gives.
    networking.dhcpcd.denyInterfaces = interfaceNames.globs;
    services.udev.extraRules = mkIf config.networking.networkmanager.enable
      (concatMapStringsSep "\n" (glob: ''ENV{INTERFACE}=="${glob}", ENV{NM_UNMANAGED}="1"'') interfaceNames.globs);

    # Evaluations and builds of container files reach binary caches (and,
    # where allowed, fetchers the internet) from network namespaces of the
    # helper's, NATed through this host (rust-helper/src/nix/build_network.rs):
    # what they send is routed, and so are the replies that come in on the
    # uplink. The helper keeps them off the host and its private networks.
    boot.kernel.sysctl."net.ipv4.conf.all.forwarding" = mkDefault true;
  }

  # The helper keeps a block of the containers' names in /etc/hosts, which
  # NixOS links into the store unless the file has a mode, with which it is
  # a copy (nixos/modules/system/etc/etc.nix: `mode`), made afresh at each
  # activation: services.nix writes the block again after it.
  (mkIf (cfg.names.hostsFile == "/etc/hosts") {
    environment.etc.hosts.mode = mkDefault "0644";
  })

  # Ports forwarded to containers are routed from the host's addresses.
  (mkIf (cfg.allowedForwardPorts != [ ]) {
    boot.kernel.sysctl."net.ipv4.conf.all.forwarding" = mkDefault true;
  })

  (mkIf withInternet {
    # IPv4: NAT from the internet bridge only. networking.nat works with
    # both firewall backends and turns IPv4 forwarding on.
    networking.nat = {
      enable = true;
      externalInterface = cfg.internetInterface;
      internalInterfaces = [ internetBridge ];
    };

    # DNS and DHCPv4 (and, below, DHCPv6 and router advertisements) for the
    # internet bridge, from dnsmasq only on that bridge. A dnsmasq that
    # serves other interfaces too must list them in settings.interface.
    services.dnsmasq = {
      enable = true;
      # Serve the containers, not this host: its resolver stays as it is
      # (dnsmasq forwards to what /etc/resolv.conf names).
      resolveLocalQueries = mkDefault false;
      settings = {
        interface = [ internetBridge ];
        # Bind the bridge's addresses as they come and go, never the
        # wildcard: no clash with another resolver on this host, and no
        # answers on other interfaces.
        bind-dynamic = true;
        except-interface = mkIf (!config.services.dnsmasq.resolveLocalQueries) [ "lo" ];
        # dnsmasq names its own address as router and DNS server.
        dhcp-range = [ "${dhcp4Range.start},${dhcp4Range.end},12h" ];
        # The only DHCP server on this bridge: after a reboot of the host,
        # containers get their addresses back without waiting.
        dhcp-authoritative = true;
        # Each container's address, pinned to its interface's MAC address
        # by a file the helper writes (rust-helper/src/capabilities/network/port_guard.rs),
        # which dnsmasq reads as it comes: the ports' guard knows it.
        dhcp-hostsdir = dhcpHostsDir;
        # Each container's name (<name>.<names.suffix>), which dnsmasq
        # follows as files come, change and go (dnsmasq(8): hostsdir): the
        # containers it serves DNS to reach their peers by name.
        hostsdir = namesDir;
      };
    };
    # dnsmasq reads it as its own user, and must find it when it starts.
    systemd.tmpfiles.rules = [ "d ${dhcpHostsDir} 0755 root root -" "d ${namesDir} 0755 root root -" ];
    # dnsmasq adds what a new or changed file says, but forgets what a
    # removed or changed one said only at SIGHUP (services.dnsmasq reloads
    # with it): a destroyed container's address would stay with its MAC.
    systemd.paths.nixcloud-container-dhcp-hosts = {
      wantedBy = [ "multi-user.target" ];
      pathConfig.PathChanged = dhcpHostsDir;
    };
    systemd.services.nixcloud-container-dhcp-hosts = {
      description = "nixcloud-container: dnsmasq reads the containers' DHCP addresses again";
      serviceConfig.Type = "oneshot";
      script = "systemctl try-reload-or-restart dnsmasq.service";
    };

    networking.firewall.interfaces.${internetBridge} = {
      allowedUDPPorts = [ 53 67 ] ++ optional withIPv6 547;
      allowedTCPPorts = [ 53 ];
    };
  })

  (mkIf withIPv6 {
    # The prefix is routed to the bridge: the kernel adds the route to
    # <prefix>/<length> on the bridge with this address.
    networking.interfaces.${internetBridge}.ipv6.addresses =
      optional (ipv6.ipv6InternetInterfaceAddress != null)
        { address = ipv6.ipv6InternetInterfaceAddress; prefixLength = ipv6.ipv6PrefixLength; };

    boot.kernel.sysctl = {
      "net.ipv6.conf.all.forwarding" = true;
      # A router ignores router advertisements unless accept_ra is 2; keep
      # the host's own IPv6 on its uplink working. Written with slashes so
      # that interface names with dots (VLANs) stay one component.
      "net/ipv6/conf/${cfg.internetInterface}/accept_ra" = mkDefault 2;
    };

    # ISC dhcpd6 (services.dhcpd6), which the seed used, was removed in
    # NixOS 23.11; its successor Kea sends no router advertisements, and
    # guests need one to learn their router and that DHCPv6 is on. dnsmasq
    # does both, and already serves DHCPv4 and DNS here.
    services.dnsmasq.settings = {
      enable-ra = true;
      # Stateful DHCPv6 (the RA's managed flag), which, unlike SLAAC,
      # works with prefixes longer than 64 bits.
      dhcp-range = [ "${dhcp6Range.start},${dhcp6Range.end},${toString ipv6.ipv6PrefixLength},12h" ];
      # Also sent as RDNSS in the router advertisements.
      dhcp-option = mkIf (ipv6.ipv6NameServers != [ ]) [
        "option6:dns-server,${concatMapStringsSep "," (server: "[${server}]") ipv6.ipv6NameServers}"
      ];
    };
  })
]
