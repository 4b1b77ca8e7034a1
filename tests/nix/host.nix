# Evaluation tests of modules/host/ (run by tests/nix/run).
{ lib, h }:
let
  inherit (h) eq that hasInfix lacksInfix contains assertionFails rejects failedAssertions evalHost hostDefaults;

  lxc = (h.fakePkgs { }).lxc;
  hostJson = config: builtins.fromJSON config.environment.etc."nixcloud-container/host.json".text;
  autostart = config: config.systemd.services.nixcloud-container-autostart;
  dnsmasq = config: config.services.dnsmasq.settings;

  enabled = extra: evalHost [ { nixcloud.containers = { enable = true; } // extra; } ];

  seedIPv6 = {
    enable = true;
    ipv6InternetInterfaceAddress = "2a01:4f8:221:3744:4000::1";
    ipv6Prefix = "2a01:4f8:221:3744:4000::";
    ipv6PrefixLength = 66;
    ipv6NameServers = [ "2a01:4f8:0:1::add:1010" "2a01:4f8:0:1::add:9999" "2a01:4f8:0:1::add:9898" ];
  };

  disabled = evalHost [ ];
  defaults = enabled { };
  nat = enabled { internetInterface = "enp0s3"; };
  ipv6 = enabled { internetInterface = "enp0s3"; ipv6 = seedIPv6; };

  withNftables = on: evalHost [
    { nixcloud.containers = { enable = true; internetInterface = "enp0s3"; ipv6 = seedIPv6; }; }
    { networking.nftables.enable = on; }
  ];
  nftablesOn = withNftables true;
  nftablesOff = withNftables false;

  custom = enabled {
    hostonly = { bridge = "brX-only"; address = "10.50.0.1"; prefixLength = 24; };
    internet = { bridge = "brX-net"; address = "10.60.0.1"; prefixLength = 20; };
    internetInterface = "eth0";
    idmap = { hostId = 200000; count = 655360; perContainer = 131072; isolated = false; };
    limits = { memory.max = "2G"; cpu.max = 1.5; pids.max = 4096; };
    allowedFlakeInputPaths = [ "/srv/shared-flakes" ];
    names = { suffix = "lan"; hostsFile = null; };
    builds = {
      allowInternet = true;
      network = { address = "10.70.0.0"; prefixLength = 24; };
      memory = "3G";
      evaluationTimeout = 60;
      buildTimeout = 600;
    };
    lxcPath = "/srv/lxc";
    profilesDir = "/srv/profiles";
    stateDir = "/srv/state";
  };

  # The seed's spelling next to ours, with the same settings.
  bothSpellings = settings: {
    ours = evalHost [ { nixcloud.containers = settings; } ];
    seed = evalHost [ { nixcloud.container = settings; } ];
  };
  spelled = bothSpellings { enable = true; internetInterface = "enp0s3"; ipv6 = seedIPv6; };
  # What the host module sets, for comparing two evaluations.
  effect = config: {
    inherit (config.networking) bridges interfaces nat nftables;
    inherit (config.networking.firewall) extraCommands;
    firewallInterfaces = config.networking.firewall.interfaces;
    inherit (config.services) dnsmasq;
    inherit (config.boot.kernel) sysctl;
    subuid = config.users.users.root.subUidRanges;
    hostJson = config.environment.etc."nixcloud-container/host.json".text;
    # NixOS declares the start limits without a default: they are read
    # only where defined, so they are left out of the comparison.
    autostart = removeAttrs (autostart config) [ "startLimitBurst" "startLimitIntervalSec" ];
  };

  example = evalHost [ ../../examples/host-configuration.nix ];

  # The names the helper gives the host's ends of its links (its unit test
  # interface_names_table_is_the_helpers checks them against port_name).
  interfaceNames = builtins.fromJSON (builtins.readFile ../../lib/interface-names.json);
  helperLinkNames = lib.concatMap lib.attrValues (lib.attrValues interfaceNames.examples.containerPorts)
    ++ interfaceNames.examples.buildLinks;
  # Whether shell glob `glob` (`?` and `*`, as dhcpcd's fnmatch and udev
  # read them) matches the whole of `name`.
  globMatches = glob: name:
    builtins.match (lib.replaceStrings [ "?" "*" "." ] [ "." ".*" "[.]" ] glob) name != null;

  withUsers = users: evalHost [ { nixcloud.containers.enable = true; users.users = users; } ];
in
{
  disabled = [
    (eq "nothing without enable" {
      inherit (disabled.networking) bridges interfaces;
      lxc = disabled.virtualisation.lxc.enable;
      etc = disabled.environment.etc;
    } { bridges = { }; interfaces = { }; lxc = false; etc = { }; })
  ];

  defaults = [
    (eq "no failed assertions" (failedAssertions defaults) [ ])
    (eq "no warnings" defaults.warnings [ ])
    (eq "root's subuid range: room for 1000 containers" defaults.users.users.root.subUidRanges [ { startUid = 100000; count = 65536000; } ])
    (eq "root's subgid range" defaults.users.users.root.subGidRanges [ { startGid = 100000; count = 65536000; } ])
    (eq "host.json's idmap" (hostJson defaults).idmap hostDefaults.idmap)
    (eq "LXC enabled" defaults.virtualisation.lxc.enable true)
    (eq "default LXC path needs no lxc.conf" defaults.virtualisation.lxc.systemConfig "")
    (eq "the helper on PATH" (map (p: p.name) defaults.environment.systemPackages) [ "nixcloud-container" ])
    (eq "the helper is package.nix with this system's LXC and Nix" {
      inherit (defaults.nixcloud.containers.package) callPackageFile lxcName nixName;
    } {
      callPackageFile = toString ../../package.nix;
      lxcName = "lxc-7.0.0";
      nixName = "nix-2.31.0";
    })
    (eq "two bridges without ports" defaults.networking.bridges {
      brNC-hostonly = { interfaces = [ ]; rstp = false; };
      brNC-internet = { interfaces = [ ]; rstp = false; };
    })
    (eq "bridge addresses, no DHCP client" defaults.networking.interfaces {
      brNC-hostonly = { ipv4.addresses = [ { address = "10.101.0.1"; prefixLength = 16; } ]; ipv6.addresses = [ ]; useDHCP = false; };
      brNC-internet = { ipv4.addresses = [ { address = "10.202.0.1"; prefixLength = 16; } ]; ipv6.addresses = [ ]; useDHCP = false; };
    })
    (that "dhcpcd leaves alone every link the helper names (lib/interface-names.json's examples, the helper's real names)"
      defaults.networking.dhcpcd.denyInterfaces "globs matching ${lib.concatStringsSep ", " helperLinkNames}"
      (globs: lib.all (name: lib.any (glob: globMatches glob name) globs) helperLinkNames))
    (that "dhcpcd still runs on the host's own interfaces"
      defaults.networking.dhcpcd.denyInterfaces "globs matching none of eth0, enp0s3, wlan0, veth0, nc0, brNC-hostonly"
      (globs: !lib.any (name: lib.any (glob: globMatches glob name) globs)
        [ "eth0" "enp0s3" "wlan0" "veth0" "nc0" "brNC-hostonly" ]))
    (eq "no udev rule for NetworkManager where it is off" defaults.services.udev.extraRules "")
    (that "NetworkManager, where it runs, leaves the same links alone (udev's NM_UNMANAGED, as nixos-containers.nix does)"
      (evalHost [ { nixcloud.containers.enable = true; networking.networkmanager.enable = true; } ]).services.udev.extraRules
      "a rule per glob of dhcpcd's"
      (rules: lib.all (glob: lib.hasInfix ''ENV{INTERFACE}=="${glob}", ENV{NM_UNMANAGED}="1"'' rules)
        defaults.networking.dhcpcd.denyInterfaces))
    (eq "no NAT without internetInterface" defaults.networking.nat.enable false)
    (eq "no dnsmasq without internetInterface" defaults.services.dnsmasq.enable false)
    (eq "no IPv6 forwarding" (defaults.boot.kernel.sysctl ? "net.ipv6.conf.all.forwarding") false)
    (eq "host.json has exactly the keys of lib/host-defaults.json"
      (lib.attrNames (hostJson defaults)) (lib.attrNames hostDefaults))
    (eq "host.json holds the defaults, and LXC's config directory, and the hosts file the module makes writable"
      (hostJson defaults) (hostDefaults // {
        lxcConfigDir = "${lxc}/share/lxc/config";
        appArmor = false;
        names = hostDefaults.names // { hostsFile = "/etc/hosts"; };
      }))
    (eq "/etc/hosts is a copy the helper can write its block into" defaults.environment.etc.hosts.mode "0644")
    (that "each activation writes the containers' names again, after /etc"
      defaults.system.activationScripts.nixcloud-container-names "a snippet after etc running repair-names"
      (snippet: snippet.deps == [ "etc" ] && lib.hasInfix "/bin/nixcloud-container repair-names" snippet.text))
    (eq "without a hosts file, /etc/hosts stays NixOS's link, and no snippet"
      (let c = enabled { names.hostsFile = null; }; in {
        etc = c.environment.etc ? hosts;
        snippet = c.system.activationScripts ? nixcloud-container-names;
        hostsFile = (hostJson c).names.hostsFile;
      })
      { etc = false; snippet = false; hostsFile = null; })
    (rejects "a suffix is one label of a host name: no dots, no control characters, no capitals"
      (suffix: (hostJson (enabled { names.suffix = suffix; })).names.suffix) "lan" "lan.example")
    (rejects "a suffix with a newline (a line of its own in /etc/hosts) is refused"
      (suffix: (hostJson (enabled { names.suffix = suffix; })).names.suffix) "lan" "lan\n10.6.6.6 bank.example")
    (eq "AppArmor follows security.apparmor.enable"
      (hostJson (evalHost [ { nixcloud.containers.enable = true; security.apparmor.enable = true; } ])).appArmor true)
    (eq "autostart service runs after the network"
      { inherit (autostart defaults) wantedBy after restartIfChanged; }
      { wantedBy = [ "multi-user.target" ]; after = [ "network.target" ]; restartIfChanged = false; })
    (eq "autostart has the helper, lxc and the setuid wrappers on its PATH"
      (map (p: p.name or p) (autostart defaults).path) [ "nixcloud-container" "lxc-7.0.0" "/run/wrappers" ])
    (hasInfix "autostart starts through the helper, 32 at a time in LXC's order, and stays up when one fails"
      "nixcloud-container --lxc-path /var/lib/lxc autostart ||\n  echo \"some autostart containers did not start\" >&2" (autostart defaults).script)
    (hasInfix "autostart shuts every running container down, 32 at a time"
      "lxc-ls --lxcpath /var/lib/lxc --running -1 |\n  xargs --no-run-if-empty -n 1 -P 32 lxc-stop --lxcpath /var/lib/lxc --timeout 30 --name"
      (autostart defaults).preStop)
    (eq "autostart is a oneshot that stays up, gives the containers 15 min to stop, and delegates nothing (root's LXC leaves its cgroup)"
      (removeAttrs (autostart defaults).serviceConfig [ "ExecStart" "ExecStop" ])
      { Type = "oneshot"; RemainAfterExit = true; TimeoutStopSec = "15min"; })
    (eq "autostart needs the mounts of the LXC path, the state and the profiles"
      (autostart custom).unitConfig.RequiresMountsFor [ "/srv/lxc" "/srv/state" "/srv/profiles" ])
  ];

  # The stubs type systemd's units as NixOS does and know systemd's
  # directives (systemd-units.nix): a misspelt or mistyped unit setting
  # fails the evaluation. Tried on a unit of its own, that nothing else
  # defines.
  systemd-units =
    let
      probe = part: settings: (evalHost [ { systemd.services.probe = settings; } ]).systemd.services.probe.${part} or null;
    in
    [
      (rejects "a misspelt [Service] key" (probe "serviceConfig")
        { serviceConfig.Delegate = true; } { serviceConfig.Delegat = true; })
      (rejects "a misspelt [Unit] key" (probe "unitConfig")
        { unitConfig.ReloadPropagatedFrom = [ "nftables.service" ]; } { unitConfig.ReloadPropagatedFron = [ "nftables.service" ]; })
      (rejects "an unknown unit option" (probe "wantedBy")
        { wantedBy = [ "multi-user.target" ]; } { wantedby = [ "multi-user.target" ]; })
      (rejects "a value of the wrong type" (probe "restartIfChanged")
        { restartIfChanged = false; } { restartIfChanged = "no"; })
      (rejects "a unit name without its type" (probe "after")
        { after = [ "network.target" ]; } { after = [ "network" ]; })
      (rejects "a Type that systemd does not have" (probe "serviceConfig")
        { serviceConfig.Type = "oneshot"; } { serviceConfig.Type = "oneshoot"; })
      (rejects "an ExecStart beside the script that makes it" (probe "serviceConfig")
        { script = "true"; } { script = "true"; serviceConfig.ExecStart = "/bin/true"; })
    ];

  spellings = [
    (eq "nixcloud.container sets nixcloud.containers"
      spelled.seed.nixcloud.containers.internetInterface "enp0s3")
    (eq "both spellings have the same effect" (effect spelled.seed) (effect spelled.ours))
    (eq "no warning about the seed's spelling" spelled.seed.warnings [ ])
  ];

  # The module is the folder modules/host/; configurations of earlier
  # releases import modules/host.nix.
  import-paths = [
    (eq "modules/host.nix has the effect of modules/host/"
      (effect (h.evalWith { } [
        ../../modules/host.nix
        { nixcloud.containers = { enable = true; internetInterface = "enp0s3"; ipv6 = seedIPv6; }; }
      ]))
      (effect spelled.ours))
    (eq "nixosModules.default and .host are modules/host/"
      { inherit (import ../../modules) default host; }
      { default = ../../modules/host; host = ../../modules/host; })
  ];

  custom-bridges = [
    (eq "no failed assertions" (failedAssertions custom) [ ])
    (eq "bridges" (lib.attrNames custom.networking.bridges) [ "brX-net" "brX-only" ])
    (eq "hostonly address" custom.networking.interfaces.brX-only.ipv4.addresses [ { address = "10.50.0.1"; prefixLength = 24; } ])
    (eq "internet address" custom.networking.interfaces.brX-net.ipv4.addresses [ { address = "10.60.0.1"; prefixLength = 20; } ])
    (eq "host.json follows the options" (hostJson custom) {
      hostonly = { bridge = "brX-only"; address = "10.50.0.1"; prefixLength = 24; };
      internet = { bridge = "brX-net"; address = "10.60.0.1"; prefixLength = 20; };
      extraBridges = { };
      idmap = { hostId = 200000; count = 655360; perContainer = 131072; isolated = false; };
      idmappedMounts = true;
      allowNixDaemon = false;
      nixDaemonSocketDir = "/nix/var/nix/daemon-socket";
      allowWholeStore = false;
      # The options' own shapes: the helper reads them (settings.rs).
      limits = { memory.max = "2G"; cpu.max = 1.5; pids.max = 4096; };
      appArmor = false;
      dataDir = null;
      allowedHostPaths = { };
      allowedForwardPorts = [ ];
      allowedEgress = [ ];
      allowedDevices = [ ];
      antiSpoofing = true;
      internetIPv6 = null;
      allowedFlakeInputPaths = [ "/srv/shared-flakes" ];
      names = { suffix = "lan"; hostsFile = null; };
      builds = {
        allowInternet = true;
        network = { address = "10.70.0.0"; prefixLength = 24; };
        memory = "3G";
        evaluationTimeout = 60;
        buildTimeout = 600;
      };
      lxcPath = "/srv/lxc";
      profilesDir = "/srv/profiles";
      stateDir = "/srv/state";
      lxcConfigDir = "${lxc}/share/lxc/config";
    })
    (eq "root's range follows idmap" custom.users.users.root.subUidRanges [ { startUid = 200000; count = 655360; } ])
    (eq "DHCP range of the /20" (dnsmasq custom).dhcp-range [ "10.60.0.2,10.60.15.254,12h" ])
    (eq "NAT from the custom internet bridge" custom.networking.nat.internalInterfaces [ "brX-net" ])
    (hasInfix "the custom hostonly bridge is not forwarded" "-i brX-only -j REJECT" custom.networking.firewall.extraCommands)
    (eq "lxc.conf names the LXC path" custom.virtualisation.lxc.systemConfig "lxc.lxcpath = /srv/lxc\n")
    (hasInfix "autostart uses the LXC path" "--lxc-path /srv/lxc" (autostart custom).script)
    (assertionFails "one bridge for both is refused"
      (enabled { internet.bridge = "brNC-hostonly"; }) "must be two bridges")
    (assertionFails "overlapping subnets are refused"
      (enabled { internet = { address = "10.101.200.1"; prefixLength = 24; }; }) "overlap")
    (assertionFails "build links overlapping a bridge's subnet are refused"
      (enabled { builds.network = { address = "10.0.0.0"; prefixLength = 8; }; }) "apart from the subnets of the bridges")
    (assertionFails "build links given by an address that is not the network's are refused"
      (enabled { builds.network.address = "10.203.0.1"; }) "must be a network address")
    (assertionFails "a subnet without room for DHCP is refused"
      (enabled { internet = { address = "10.0.0.2"; prefixLength = 30; }; }) "no addresses above 10.0.0.2")
    (eq "examples/host-configuration.nix: no failed assertions" (failedAssertions example) [ ])
    (eq "examples/host-configuration.nix: the bridges"
      (lib.attrNames example.networking.bridges) [ "brNC-hostonly" "brNC-internet" "myOwnBridge" ])
    (eq "examples/host-configuration.nix: myOwnBridge" example.networking.interfaces.myOwnBridge {
      ipv4.addresses = [ { address = "10.10.0.1"; prefixLength = 16; } ];
      ipv6.addresses = [ ];
      useDHCP = false;
    })
  ];

  nat = [
    (eq "no failed assertions" (failedAssertions nat) [ ])
    (eq "NAT from the internet bridge only, to internetInterface" {
      inherit (nat.networking.nat) enable externalInterface internalInterfaces internalIPs;
    } {
      enable = true;
      externalInterface = "enp0s3";
      internalInterfaces = [ "brNC-internet" ];
      internalIPs = [ ];
    })
    (eq "dnsmasq runs" nat.services.dnsmasq.enable true)
    (eq "dnsmasq leaves the host's resolver alone" nat.services.dnsmasq.resolveLocalQueries false)
    (eq "dnsmasq: DNS and DHCPv4 on the internet bridge only" (dnsmasq nat) {
      interface = [ "brNC-internet" ];
      bind-dynamic = [ true ];
      except-interface = [ "lo" ];
      dhcp-range = [ "10.202.0.2,10.202.255.254,12h" ];
      dhcp-authoritative = [ true ];
      dhcp-hostsdir = [ "/var/lib/nixcloud-container/dhcp-hosts" ];
      hostsdir = [ "/var/lib/nixcloud-container/hosts" ];
    })
    (eq "firewall: DNS and DHCP on the internet bridge" nat.networking.firewall.interfaces {
      brNC-internet = { allowedUDPPorts = [ 53 67 ]; allowedTCPPorts = [ 53 ]; };
    })
    (eq "no IPv6 forwarding without ipv6" (nat.boot.kernel.sysctl ? "net.ipv6.conf.all.forwarding") false)
    (eq "resolveLocalQueries = true keeps lo"
      ((dnsmasq (evalHost [
        { nixcloud.containers = { enable = true; internetInterface = "enp0s3"; }; }
        { services.dnsmasq.resolveLocalQueries = true; }
      ])) ? except-interface)
      false)
  ];

  ipv6 = [
    (eq "no failed assertions" (failedAssertions ipv6) [ ])
    (eq "the prefix is routed to the internet bridge"
      ipv6.networking.interfaces.brNC-internet.ipv6.addresses
      [ { address = "2a01:4f8:221:3744:4000::1"; prefixLength = 66; } ])
    (eq "IPv6 forwarding" ipv6.boot.kernel.sysctl."net.ipv6.conf.all.forwarding" true)
    (eq "the uplink still takes router advertisements" ipv6.boot.kernel.sysctl."net/ipv6/conf/enp0s3/accept_ra" 2)
    (eq "dnsmasq sends router advertisements" (dnsmasq ipv6).enable-ra [ true ])
    (eq "dnsmasq: DHCPv4 and DHCPv6 ranges" (lib.sort lib.lessThan (dnsmasq ipv6).dhcp-range) [
      "10.202.0.2,10.202.255.254,12h"
      "2a01:4f8:221:3744:4000:0:0:1000,2a01:4f8:221:3744:4000:0:0:ffff,66,12h"
    ])
    (eq "dnsmasq hands out the name servers" (dnsmasq ipv6).dhcp-option [
      "option6:dns-server,[2a01:4f8:0:1::add:1010],[2a01:4f8:0:1::add:9999],[2a01:4f8:0:1::add:9898]"
    ])
    (eq "without name servers, dnsmasq names itself"
      ((dnsmasq (enabled { internetInterface = "enp0s3"; ipv6 = seedIPv6 // { ipv6NameServers = [ ]; }; })) ? dhcp-option)
      false)
    (contains "firewall: DHCPv6" 547 ipv6.networking.firewall.interfaces.brNC-internet.allowedUDPPorts)
    (eq "no IPv6 NAT" ipv6.networking.nat.enableIPv6 false)
    (assertionFails "an interface address outside the prefix is refused"
      (enabled { internetInterface = "enp0s3"; ipv6 = seedIPv6 // { ipv6InternetInterfaceAddress = "2a01:4f8:221:3744:8000::1"; }; })
      "is not in 2a01:4f8:221:3744:4000::/66")
    (assertionFails "ipv6 without internetInterface is refused"
      (enabled { ipv6 = seedIPv6; }) "needs nixcloud.containers.internetInterface")
    (assertionFails "ipv6 without a prefix is refused"
      (enabled { internetInterface = "enp0s3"; ipv6.enable = true; }) "needs ipv6InternetInterfaceAddress and ipv6Prefix")
  ];

  nftables-off = [
    (eq "no failed assertions" (failedAssertions nftablesOff) [ ])
    (hasInfix "iptables: a forward chain of our own" "ip46tables -I FORWARD -j nixcloud-container-fwd"
      nftablesOff.networking.firewall.extraCommands)
    (hasInfix "iptables: bridged traffic between peers passes (with br_netfilter)"
      "ip46tables -A nixcloud-container-fwd -i brNC-hostonly -o brNC-hostonly -m physdev --physdev-is-bridged -j RETURN"
      nftablesOff.networking.firewall.extraCommands)
    (hasInfix "iptables: nothing is routed from a container to another on hostonly"
      "ip46tables -A nixcloud-container-fwd -i brNC-hostonly -o brNC-hostonly -j REJECT"
      nftablesOff.networking.firewall.extraCommands)
    (hasInfix "iptables: nor on internet"
      "ip46tables -A nixcloud-container-fwd -i brNC-internet -o brNC-internet -j REJECT"
      nftablesOff.networking.firewall.extraCommands)
    (hasInfix "iptables: nothing is forwarded from hostonly"
      "ip46tables -A nixcloud-container-fwd -i brNC-hostonly -j REJECT" nftablesOff.networking.firewall.extraCommands)
    (hasInfix "iptables: nothing is forwarded to hostonly"
      "ip46tables -A nixcloud-container-fwd -o brNC-hostonly -j REJECT" nftablesOff.networking.firewall.extraCommands)
    (hasInfix "iptables: the chain goes when the firewall stops" "ip46tables -X nixcloud-container-fwd"
      nftablesOff.networking.firewall.extraStopCommands)
    (eq "iptables: no nftables table" nftablesOff.networking.nftables.tables { })
    (eq "iptables: no nftables forward rules" nftablesOff.networking.firewall.extraForwardRules "")
    (lacksInfix "iptables: the internet bridge is forwarded elsewhere" "-i brNC-internet -j" nftablesOff.networking.firewall.extraCommands)
    (eq "iptables: the network rules at boot and when the host file changes, not tied to nftables"
      (let unit = nftablesOff.systemd.services.nixcloud-container-network; in {
        inherit (unit) wantedBy before;
        tied = unit.partOf != [ ] || unit.after != [ ];
        restarts = builtins.length unit.restartTriggers;
        inherit (unit.serviceConfig) ExecStart;
      })
      {
        wantedBy = [ "multi-user.target" ];
        before = [ "nixcloud-container-autostart.service" ];
        tied = false;
        restarts = 1;
        ExecStart = "${nftablesOff.nixcloud.containers.package}/bin/nixcloud-container repair-network";
      })
    (eq "iptables: no nftables table for the guard, which nothing flushes" (nftablesOff.networking.nftables.tables ? nixcloud-container-guard) false)
    (that "iptables without a firewall: a warning"
      (evalHost [
        { nixcloud.containers = { enable = true; internetInterface = "enp0s3"; }; }
        { networking.firewall.enable = false; }
      ]).warnings
      "a warning that nothing stops forwarding"
      (lib.any (lib.hasInfix "nothing stops the host from forwarding")))
  ];

  nftables-on = [
    (eq "no failed assertions" (failedAssertions nftablesOn) [ ])
    (eq "nftables: no iptables commands (the nftables firewall asserts that)" {
      inherit (nftablesOn.networking.firewall) extraCommands extraStopCommands;
    } { extraCommands = ""; extraStopCommands = ""; })
    (eq "nftables: a table of our own for both families"
      nftablesOn.networking.nftables.tables.nixcloud-container.family "inet")
    (hasInfix "nftables: an accepting forward chain" "type filter hook forward priority filter; policy accept;"
      nftablesOn.networking.nftables.tables.nixcloud-container.content)
    (hasInfix "nftables: nothing is routed from a container to another"
      ''iifname "brNC-internet" oifname "brNC-internet" reject''
      nftablesOn.networking.nftables.tables.nixcloud-container.content)
    (eq "nftables: the filter between peers, declared" nftablesOn.networking.nftables.tables.nixcloud-container-peers.family "bridge")
    (that "nftables: declared without pairs" nftablesOn.networking.nftables.tables.nixcloud-container-peers.content
      "the filter of lib/peers.nft without @ELEMENTS@"
      (content: lib.hasInfix ''iifname "nc*" oifname "nc*" iifname . oifname != @pairs drop'' content && !(lib.hasInfix "@" (lib.replaceStrings [ "@pairs" ] [ "" ] content))))
    (eq "nftables: the pairs come back after each reload"
      (let unit = nftablesOn.systemd.services.nixcloud-container-network; in {
        inherit (unit) after partOf;
        inherit (unit.unitConfig) ReloadPropagatedFrom;
        inherit (unit.serviceConfig) ExecReload;
      })
      {
        after = [ "nftables.service" ];
        partOf = [ "nftables.service" ];
        ReloadPropagatedFrom = [ "nftables.service" ];
        ExecReload = "${nftablesOn.nixcloud.containers.package}/bin/nixcloud-container repair-network";
      })
    (hasInfix "nftables: nothing is forwarded from hostonly" ''iifname "brNC-hostonly" reject''
      nftablesOn.networking.nftables.tables.nixcloud-container.content)
    (hasInfix "nftables: nothing is forwarded to hostonly" ''oifname "brNC-hostonly" reject''
      nftablesOn.networking.nftables.tables.nixcloud-container.content)
    (hasInfix "nftables: IPv6 to the prefix passes a filtered forward chain"
      ''iifname "enp0s3" oifname "brNC-internet" ip6 daddr 2a01:4f8:221:3744:4000::/66 accept''
      nftablesOn.networking.firewall.extraForwardRules)
    (eq "nftables: the build namespaces' NAT, declared with the subnet"
      (let table = nftablesOn.networking.nftables.tables.nixcloud-container-builds; in {
        inherit (table) family;
        nat = lib.hasInfix "ip saddr 10.203.0.0/16 oifname != \"nxcb*\" masquerade" table.content;
        # The helper finds its own rules in it (build_network.rs tests the same digest).
        comment = lib.hasInfix ("comment \"builds of container files: NAT of 10.203.0.0/16, rules "
          + lib.removeSuffix "\n" (builtins.readFile ./build-network.digest) + "\"") table.content;
        guard = lib.hasInfix "iifname \"nxcb*\" fib daddr type { local, broadcast, multicast } drop" table.content;
      })
      { family = "ip"; nat = true; comment = true; guard = true; })
    (hasInfix "nftables: a filtered forward chain lets the builds out"
      ''iifname "nxcb*" accept'' nftablesOn.networking.firewall.extraForwardRules)
    (eq "nftables: NAT as with iptables" nftablesOn.networking.nat nftablesOff.networking.nat)
    (eq "nftables: dnsmasq as with iptables" nftablesOn.services.dnsmasq nftablesOff.services.dnsmasq)
  ];

  instances =
    let
      declaring = enabled {
        instances = {
          web = { file = ./instance-sources/v1/web.nix; autostart = true; };
          db.flake = "github:example/containers#db";
          host.file = "/srv/containers/host.nix";
        };
        sync = { prune = true; jobs = 4; nixParams = "-I nixpkgs=/srv/100%/$HOME"; };
      };
      unit = declaring.systemd.services.nixcloud-container-sync;
      listOf = config: builtins.fromJSON (builtins.unsafeDiscardStringContext
        config.environment.etc."nixcloud-container/instances.json".source.text);
      list = listOf declaring;
      withFile = file: enabled { instances.web.file = file; };
      v1 = withFile ./instance-sources/v1/web.nix;
      v2 = withFile ./instance-sources/v2/web.nix;
      filesOnly = enabled { instances.web.file = ./instance-sources/v1/web.nix; };
      text = config: config.environment.etc."nixcloud-container/instances.json".source.text;
    in
    [
      (eq "no failed assertions (the host never evaluates a container file)" (failedAssertions declaring) [ ])
      (eq "the list names each by its file (a host path as it is) or flake"
        (removeAttrs list [ "web" ] // { web = removeAttrs list.web [ "file" ]; }) {
        web.autostart = true;
        db.flake = "github:example/containers#db";
        host.file = "/srv/containers/host.nix";
      })
      (that "a path is copied with its directory into the store, which the list refers to (keeping it alive)"
        { file = list.web.file; context = builtins.attrNames (builtins.getContext (text declaring)); }
        "/nix/store/<hash>-nixcloud-container-source/web.nix, a dependency of the list"
        (r: builtins.match "/nix/store/[a-z0-9]{32}-nixcloud-container-source/web.nix" r.file != null
          && lib.elem (dirOf r.file) r.context))
      (that "a change of a file the container file imports is a new list, which restarts the sync"
        { v1 = text v1; v2 = text v2; triggers = map (c: c.systemd.services.nixcloud-container-sync.restartTriggers) [ v1 v2 ]; }
        "two lists, each the unit's restart trigger"
        (r: r.v1 != r.v2 && r.triggers == [ [ (withFile ./instance-sources/v1/web.nix).environment.etc."nixcloud-container/instances.json".source ] [ (withFile ./instance-sources/v2/web.nix).environment.etc."nixcloud-container/instances.json".source ] ]))
      (eq "the unit syncs the list, each failing alone, its command line escaped for systemd (% and $ doubled)"
        unit.serviceConfig.ExecStart
        (lib.concatStringsSep " " [
          ''"/nix/store/00000000000000000000000000000000-nixcloud-container/bin/nixcloud-container"''
          ''"sync" "--file" "/nix/store/00000000000000000000000000000000-nixcloud-container-instances.json"''
          ''"--source" "nixos-module" "--keep-going" "--jobs" "4" "--prune" "-n" "-I nixpkgs=/srv/100%%/$$HOME"''
        ]))
      (eq "neither boot nor a switch waits for the builds: the start job ends when the helper runs; active after, so that a new list restarts it"
        { inherit (unit.serviceConfig) Type RemainAfterExit; } { Type = "exec"; RemainAfterExit = true; })
      (eq "with a flake to fetch, it runs once the network is online" { inherit (unit) wantedBy wants after; } {
        wantedBy = [ "multi-user.target" ];
        wants = [ "network-online.target" ];
        after = [ "network.target" "nixcloud-container-autostart.service" "network-online.target" ];
      })
      (eq "without one, it waits for no network"
        (lib.getAttrs [ "wants" "after" ] filesOnly.systemd.services.nixcloud-container-sync)
        { wants = [ ]; after = [ "network.target" "nixcloud-container-autostart.service" ]; })
      (that "the switch says that a sync starts, and how to follow it" declaring.system.activationScripts.nixcloud-container-sync
        "a snippet comparing the running system's list with the new one, naming journalctl -fu nixcloud-container-sync"
        (snippet: lib.hasInfix "/run/current-system/etc/nixcloud-container/instances.json" snippet
          && lib.hasInfix "journalctl -fu nixcloud-container-sync" snippet))
      (eq "no instances, no unit" (defaults.systemd.services ? nixcloud-container-sync) false)
      (assertionFails "an instance with a file and a config is refused"
        (enabled { instances.two = { file = "/x.nix"; config = { }; }; }) "one of them (two)")
      (assertionFails "an instance needs a file or a flake"
        (enabled { instances.both = { file = "/x.nix"; flake = "y#z"; }; }) "one of them (both)")
    ];

  grants =
    let
      granting = enabled {
        dataDir = "/srv/containers";
        allowedHostPaths = { "/srv/media" = { }; "/srv/shared" = { writable = true; }; };
        allowedForwardPorts = [ { from = 8000; to = 8999; } ];
        allowedDevices = [ "tun" ];
      };
    in
    [
      (eq "no failed assertions" (failedAssertions granting) [ ])
      (eq "host.json says what containers may have" (lib.getAttrs [ "dataDir" "allowedHostPaths" "allowedForwardPorts" "allowedDevices" ] (hostJson granting)) {
        dataDir = "/srv/containers";
        allowedHostPaths = { "/srv/media" = { writable = false; }; "/srv/shared" = { writable = true; }; };
        allowedForwardPorts = [ { from = 8000; to = 8999; } ];
        allowedDevices = [ "tun" ];
      })
      (eq "forwarded ports are routed" granting.boot.kernel.sysctl."net.ipv4.conf.all.forwarding" true)
      (eq "builds of container files are routed (build_network.rs), and so forwarding is on"
        defaults.boot.kernel.sysctl."net.ipv4.conf.all.forwarding" true)
      (hasInfix "iptables: forwarded ports reach containers on hostonly"
        "ip46tables -A nixcloud-container-fwd -m conntrack --ctstate DNAT -j RETURN" nftablesOff.networking.firewall.extraCommands)
      (hasInfix "nftables: forwarded ports reach containers on hostonly" "ct status dnat accept"
        nftablesOn.networking.nftables.tables.nixcloud-container.content)
      (that "an unknown device is refused"
        (builtins.tryEval (builtins.deepSeq (enabled { allowedDevices = [ "kvm" ]; }).environment.etc true)).success
        "a failed evaluation" (success: !success))
    ];

  idmap = [
    (that "a normal user with an automatic range: a warning naming them"
      (withUsers { alice.isNormalUser = true; }).warnings
      "a warning naming alice"
      (lib.any (lib.hasInfix "given to alice")))
    (eq "a normal user with ranges elsewhere: no warning" (withUsers {
      alice = {
        isNormalUser = true;
        subUidRanges = [ { startUid = 70000000; count = 65536; } ];
        subGidRanges = [ { startGid = 70000000; count = 65536; } ];
      };
    }).warnings [ ])
    (that "an explicit range inside the containers' range: a warning"
      (withUsers { bob.subGidRanges = [ { startGid = 150000; count = 10; } ]; }).warnings
      "a warning naming bob"
      (lib.any (lib.hasInfix "given to bob")))
    (that "a range below 100000 is refused"
      (builtins.tryEval (builtins.deepSeq (enabled { idmap.hostId = 30000; }).environment.etc true)).success
      "a failed evaluation" (success: !success))
    (that "fewer than 65536 ids per container are refused"
      (builtins.tryEval (builtins.deepSeq (enabled { idmap.perContainer = 1000; }).environment.etc true)).success
      "a failed evaluation" (success: !success))
    (assertionFails "delegated ids without room for one container are refused"
      (enabled { idmap.count = 1000; }) "must hold perContainer")
    (assertionFails "delegated ids beyond the largest uid are refused"
      (enabled { idmap.hostId = 4294000000; }) "end below")
  ];

  extra-bridges =
    let
      own = enabled { extraBridges.myOwnBridge = { address = "10.10.0.1"; prefixLength = 16; }; };
      byHand = evalHost [
        { nixcloud.containers = { enable = true; extraBridges.myOwnBridge = { address = "10.10.0.1"; prefixLength = 16; }; }; }
        { networking.interfaces.myOwnBridge.ipv4.addresses = [ { address = "10.10.0.1"; prefixLength = 16; } ]; }
      ];
    in
    [
      (eq "no failed assertions" (failedAssertions own) [ ])
      (eq "host.json lets containers join it" (hostJson own).extraBridges
        { myOwnBridge = { address = "10.10.0.1"; prefixLength = 16; }; })
      (eq "the module makes the bridge" own.networking.bridges.myOwnBridge.interfaces [ ])
      (eq "with the host's address" own.networking.interfaces.myOwnBridge.ipv4.addresses
        [ { address = "10.10.0.1"; prefixLength = 16; } ])
      (eq "an address set by hand wins, once" byHand.networking.interfaces.myOwnBridge.ipv4.addresses
        [ { address = "10.10.0.1"; prefixLength = 16; } ])
      (eq "none by default" (hostJson defaults).extraBridges { })
      (assertionFails "not the hostonly bridge"
        (enabled { extraBridges.brNC-hostonly = { address = "10.10.0.1"; prefixLength = 16; }; }) "must not name")
      (assertionFails "not a network address"
        (enabled { extraBridges.br1 = { address = "10.10.0.0"; prefixLength = 16; }; }) "network or broadcast")
    ];

  port-guard =
    let
      unguarded = evalHost [
        { nixcloud.containers = { enable = true; internetInterface = "enp0s3"; antiSpoofing = false; }; }
        { networking.nftables.enable = true; }
      ];
      dir = "/var/lib/nixcloud-container/dhcp-hosts";
    in
    [
      (eq "on by default" (hostJson defaults).antiSpoofing true)
      (eq "nftables: the guard, declared with empty sets for reloads"
        nftablesOn.networking.nftables.tables.nixcloud-container-guard
        { family = "bridge"; content = builtins.readFile ../../lib/port-guard.nft; })
      (eq "nftables: the network rules come back after each load of the ruleset"
        (let unit = nftablesOn.systemd.services.nixcloud-container-network; in {
          inherit (unit) after partOf;
          inherit (unit.unitConfig) ReloadPropagatedFrom;
        })
        { after = [ "nftables.service" ]; partOf = [ "nftables.service" ]; ReloadPropagatedFrom = [ "nftables.service" ]; })
      (eq "antiSpoofing = false: no guard, and the helper takes its table away"
        { table = unguarded.networking.nftables.tables ? nixcloud-container-guard; inherit ((hostJson unguarded)) antiSpoofing; }
        { table = false; antiSpoofing = false; })
      (eq "the IPv6 prefix reaches the helper, which pins an address of it to each container"
        (hostJson ipv6).internetIPv6 { prefix = "2a01:4f8:221:3744:4000::"; prefixLength = 66; })
      (eq "no IPv6 prefix without ipv6" (hostJson nat).internetIPv6 null)
      (eq "dnsmasq reads the pinned addresses from the helper's directory" (dnsmasq nat).dhcp-hostsdir [ dir ])
      (contains "the directory is there before dnsmasq starts, readable by it" "d ${dir} 0755 root root -"
        nat.systemd.tmpfiles.rules)
      (eq "a changed or removed pin makes dnsmasq read them all again"
        {
          path = nat.systemd.paths.nixcloud-container-dhcp-hosts.pathConfig;
          script = nat.systemd.services.nixcloud-container-dhcp-hosts.script;
        }
        { path = { PathChanged = dir; }; script = "systemctl try-reload-or-restart dnsmasq.service"; })
      (eq "no pins without internetInterface" (defaults.systemd.paths ? nixcloud-container-dhcp-hosts) false)
    ];

  egress =
    let
      allowing = evalHost [
        {
          nixcloud.containers = {
            enable = true;
            allowedEgress = [
              { network = "192.168.7.0/24"; ports = [ { from = 5432; to = 5432; } ]; }
              { network = "fd00::/8"; }
            ];
            extraBridges.myOwnBridge = { address = "10.10.0.1"; prefixLength = 16; };
          };
        }
        { networking.nftables.enable = true; }
      ];
      table = allowing.networking.nftables.tables.nixcloud-container-egress;
    in
    [
      (eq "none allowed by default" (hostJson defaults).allowedEgress [ ])
      (eq "what the host allows reaches the helper, which keeps the table"
        (hostJson allowing).allowedEgress [
          { network = "192.168.7.0/24"; ports = [ { from = 5432; to = 5432; } ]; }
          { network = "fd00::/8"; ports = [ ]; }
        ])
      (eq "nftables: declared for reloads, for both families" table.family "inet")
      (that "nftables: every container bridge, no allowance until repair-network" table.content
        "lib/egress.nft with the bridges filled in and nothing allowed"
        (content: lib.hasInfix ''iifname != { "brNC-hostonly", "brNC-internet", "myOwnBridge" } accept'' content
          && lib.hasInfix ''"myOwnBridge" . "myOwnBridge" } accept'' content
          && lib.hasInfix "169.254.0.0/16 } reject with icmpx admin-prohibited" content
          && !(lib.hasInfix "@" content) && !(lib.hasInfix "192.168.7.0/24" content)))
      (eq "iptables: the helper's table alone, which iptables reloads leave alone"
        (nftablesOff.networking.nftables.tables ? nixcloud-container-egress) false)
    ];

  sandbox = [
    (eq "the default sandbox passes" (failedAssertions defaults) [ ])
    (assertionFails "no sandbox is refused"
      (evalHost [ { nixcloud.containers.enable = true; nix.settings.sandbox = false; } ]) "sandbox")
    (assertionFails "a relaxed sandbox is refused"
      (evalHost [ { nixcloud.containers.enable = true; nix.settings.sandbox = "relaxed"; } ]) "sandbox")
    (assertionFails "builds as root are refused"
      (evalHost [ { nixcloud.containers.enable = true; nix.settings.build-users-group = ""; } ]) "build-users-group")
  ];
}
