# What the host forwards for containers, with either firewall backend:
# never from or to the hostonly bridge, never from one container to another;
# and, with nftables, the tables the helper fills (the build namespaces' NAT,
# the filter between peers, the ports' guard, the egress policy), declared so
# that a reload of the ruleset keeps them.
{ config, lib, ... }:
let
  inherit (lib) concatMapStringsSep mkIf mkMerge;
  inherit (import ./derived.nix { inherit config lib; })
    cfg withIPv6 nftables hostonlyBridge internetBridge containerBridges buildLinks;
  ipv6 = cfg.ipv6;

  # Forwarding: the hostonly bridge is never a way anywhere, and no bridge of
  # the containers is a way from one container to another: their ports are
  # isolated on the bridge (lib/isolate-port.sh), which would mean nothing
  # if the host routed between them. What peers send each other is bridged,
  # not routed; it meets these rules only where br_netfilter is loaded, and
  # iptables lets it through (physdev; nftables cannot tell it from routed
  # traffic, so with br_netfilter peers do not reach each other there).
  fwdChain = "nixcloud-container-fwd";
  iptablesForwardRules =
    # Forwarded ports (the helper's DNAT) reach containers, and their replies go back.
    [ "-m conntrack --ctstate DNAT -j RETURN" ]
    ++ lib.concatMap (bridge: [
      "-i ${bridge} -o ${bridge} -m physdev --physdev-is-bridged -j RETURN"
      "-i ${bridge} -o ${bridge} -j REJECT"
    ]) containerBridges
    ++ [
      "-i ${hostonlyBridge} -j REJECT"
      "-o ${hostonlyBridge} -j REJECT"
    ];
  iptablesRemoveChain = ''
    ip46tables -D FORWARD -j ${fwdChain} 2>/dev/null || true
    ip46tables -F ${fwdChain} 2>/dev/null || true
    ip46tables -X ${fwdChain} 2>/dev/null || true
  '';
in
mkMerge [
  # The hostonly bridge is never forwarded: with NAT or IPv6 on, the kernel
  # forwards between all interfaces, so the firewall says no. Both
  # backends: iptables through the NixOS firewall, nftables through a table
  # of our own, whose chain accepts by default and leaves all other
  # forwarding to whatever else filters it.
  (mkIf (!nftables) {
    networking.firewall.extraCommands = ''
      # nixcloud-container: ${hostonlyBridge} is never forwarded.
      ${iptablesRemoveChain}
      ip46tables -N ${fwdChain}
      ${concatMapStringsSep "\n" (rule: "ip46tables -A ${fwdChain} ${rule}") iptablesForwardRules}
      ip46tables -I FORWARD -j ${fwdChain}
    '';
    networking.firewall.extraStopCommands = iptablesRemoveChain;
  })
  (mkIf nftables {
    networking.nftables.tables.nixcloud-container = {
      family = "inet";
      content = ''
        chain forward {
          type filter hook forward priority filter; policy accept;
          ct status dnat accept comment "ports forwarded to containers"
          ${concatMapStringsSep "\n    " (bridge: ''iifname "${bridge}" oifname "${bridge}" reject comment "not from one container to another"'') containerBridges}
          iifname "${hostonlyBridge}" reject comment "${hostonlyBridge} is never forwarded"
          oifname "${hostonlyBridge}" reject comment "${hostonlyBridge} is never forwarded"
        }
      '';
    };

    # The NAT of the build namespaces and their guard against the host's
    # own addresses, declared so that a reload keeps it (the helper writes
    # the same where it is missing).
    networking.nftables.tables.nixcloud-container-builds = {
      family = "ip";
      content =
        let
          # As the helper fills it in (build_network.rs: host_table).
          content = builtins.replaceStrings [ "@SUBNET@" ]
            [ "${cfg.builds.network.address}/${toString cfg.builds.network.prefixLength}" ]
            (builtins.readFile ../../lib/build-network.nft);
          digest = builtins.substring 0 12 (builtins.hashString "sha1" content);
        in
        builtins.replaceStrings [ "@DIGEST@" ] [ digest ] content;
    };
    # Where forwarding is filtered (filterForward): what the build
    # namespaces send out, and the replies.
    networking.firewall.extraForwardRules = ''
      iifname "${buildLinks}*" accept comment "nixcloud-container: builds of container files"
      oifname "${buildLinks}*" ct state established,related accept comment "nixcloud-container: builds of container files"
    '';

    # The filter between peers (rust-helper/src/capabilities/network/rules.rs), declared
    # so that a reload, which flushes the whole ruleset, leaves it in place
    # without pairs (peers cannot reach each other, nobody else can either)
    # until the network service (services.nix) puts the pairs back.
    networking.nftables.tables.nixcloud-container-peers = {
      family = "bridge";
      content = builtins.replaceStrings [ "@ELEMENTS@" ] [ "" ] (builtins.readFile ../../lib/peers.nft);
    };
    # The ports' guard (rust-helper/src/capabilities/network/port_guard.rs), declared
    # for the same reason with empty sets: after a reload, containers' ports
    # pass nothing until the network service fills the sets again.
    networking.nftables.tables.nixcloud-container-guard = mkIf cfg.antiSpoofing {
      family = "bridge";
      content = builtins.readFile ../../lib/port-guard.nft;
    };
    # Where containers' forwarded traffic may go (rust-helper/src/capabilities/
    # network/egress.rs), declared for the same reason without the host's
    # allowances: after a reload, containers reach no private network
    # until the network service puts them back. (With the iptables backend
    # the helper's table stands beside the firewall's, which reloads leave
    # alone.)
    networking.nftables.tables.nixcloud-container-egress = {
      family = "inet";
      content = builtins.replaceStrings [ "@BRIDGES@" "@SAME_BRIDGE@" "@ALLOWED@\n" ] [
        (concatMapStringsSep ", " (bridge: ''"${bridge}"'') containerBridges)
        (concatMapStringsSep ", " (bridge: ''"${bridge}" . "${bridge}"'') containerBridges)
        ""
      ] (builtins.readFile ../../lib/egress.nft);
    };
  })

  (mkIf withIPv6 {
    # Only where forwarding is filtered (nftables with filterForward): let
    # containers out, and connections in to their public addresses (their
    # own NixOS firewall guards them).
    networking.firewall.extraForwardRules = mkIf nftables ''
      iifname "${internetBridge}" oifname "${cfg.internetInterface}" accept comment "nixcloud-container: IPv6 out"
      iifname "${cfg.internetInterface}" oifname "${internetBridge}" ip6 daddr ${ipv6.ipv6Prefix}/${toString ipv6.ipv6PrefixLength} accept comment "nixcloud-container: IPv6 in"
    '';
  })
]
