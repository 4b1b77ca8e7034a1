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
# The defaults live in ../lib/host-defaults.json, which the helper compiles
# in too, so that the module and the helper never disagree.
{ config, lib, pkgs, ... }:
let
  inherit (lib)
    concatMapStringsSep literalExpression mkDefault mkEnableOption mkIf mkMerge mkOption optional
    types;

  cfg = config.nixcloud.containers;
  defaults = builtins.fromJSON (builtins.readFile ../lib/host-defaults.json);
  addresses = import ../lib/addresses.nix { inherit lib; };
  formats = import ../lib/formats.nix;
  spec = import ../lib/spec.nix;

  # One of the host's resource limits: unset by default.
  limitOption = type: example: description: mkOption {
    type = types.nullOr type;
    default = null;
    inherit example;
    description = description + ''

      Containers are capped at this where they ask for more; LXC enforces
      it through cgroup2 (`lxc.cgroup2.*`).
    '';
  };
  sizeString = types.strMatching "[1-9][0-9]{0,6}[KMGT]";

  # Ports from `from` to `to`, both included.
  portRange = types.submodule {
    options = {
      from = mkOption { type = types.port; description = "The first port."; };
      to = mkOption { type = types.port; description = "The last port."; };
    };
  };

  lxcPackage = config.virtualisation.lxc.package;
  ipv6 = cfg.ipv6;
  withInternet = cfg.internetInterface != null;
  withIPv6 = withInternet && ipv6.enable;
  nftables = config.networking.nftables.enable;

  lxcPath = toString cfg.lxcPath;
  hostonlyBridge = cfg.hostonly.bridge;
  internetBridge = cfg.internet.bridge;

  ipv4Address = types.strMatching formats.ipv4Address.pattern;
  # The names the helper accepts for bridges (lib/formats.json).
  interfaceName = types.strMatching formats.interfaceName.pattern;

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
      type = types.ints.between 1 30;
      default = defaults.${which}.prefixLength;
      description = "Prefix length of the ${which} subnet around {option}`nixcloud.containers.${which}.address`.";
    };
  };

  # dnsmasq hands out the addresses above the host's own.
  dhcp4Range = addresses.ipv4DhcpRange cfg.internet.address cfg.internet.prefixLength;
  # Where the helper pins each container's DHCP addresses (one file each).
  dhcpHostsDir = "${toString cfg.stateDir}/dhcp-hosts";

  # DHCPv6 leases come from the last 16 bits of the prefix (see ipv6PrefixLength).
  dhcp6Range = {
    start = addresses.ipv6WithLowGroup ipv6.ipv6Prefix 4096; # <prefix>::1000
    end = addresses.ipv6WithLowGroup ipv6.ipv6Prefix 65535; # <prefix>::ffff
  };

  # Forwarding: the hostonly bridge is never a way anywhere, and no bridge of
  # the containers is a way from one container to another: their ports are
  # isolated on the bridge (lib/isolate-port.sh), which would mean nothing
  # if the host routed between them. What peers send each other is bridged,
  # not routed; it meets these rules only where br_netfilter is loaded, and
  # iptables lets it through (physdev; nftables cannot tell it from routed
  # traffic, so with br_netfilter peers do not reach each other there).
  fwdChain = "nixcloud-container-fwd";
  # The host's ends of the links to the helper's build namespaces
  # (rust-helper/src/build_network.rs: LINK_PREFIX).
  buildLinks = "nxcb";
  containerBridges = [ hostonlyBridge internetBridge ] ++ lib.attrNames cfg.extraBridges;
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

  # NixOS hands out automatic subordinate ranges (autoSubUidGidRange, on for
  # every normal user without explicit ranges) from 100000 upwards in blocks
  # of 65536 and does not skip explicit ranges such as root's below.
  # The list `nixcloud-container sync` reads (rust-helper/src/commands/
  # sync.rs): name -> { file or flake, autostart }.
  instancesFile = pkgs.writeText "nixcloud-container-instances.json" (builtins.toJSON
    (lib.mapAttrs (_: instance:
      (if instance.file != null then { file = toString instance.file; } else { inherit (instance) flake; })
      // lib.optionalAttrs (instance.autostart != null) { inherit (instance) autostart; })
      cfg.instances));
  # What restarts the sync when a container file changes in place: its
  # bytes, hashed (never evaluated).
  instanceFileHashes = lib.mapAttrsToList (_: instance: builtins.hashFile "sha256" instance.file)
    (lib.filterAttrs (_: instance: builtins.isPath instance.file) cfg.instances);

  # The largest uid; the helper refuses delegated ids beyond it.
  maxId = 4294967295;
  # Every delegated id lies at or above 100000, where automatic ranges begin.
  idmapEnd = cfg.idmap.hostId + cfg.idmap.count;
  overlapsIdmap = start: count: start < idmapEnd && cfg.idmap.hostId < start + count;
  sharingUsers = lib.filter
    (user: user.name != "root" && (
      user.autoSubUidGidRange
      || lib.any (r: overlapsIdmap r.startUid r.count) user.subUidRanges
      || lib.any (r: overlapsIdmap r.startGid r.count) user.subGidRanges))
    (lib.attrValues config.users.users);
in
{
  imports = [
    # The seed's spelling. An alias, not a rename: both keep working silently.
    (lib.mkAliasOptionModule [ "nixcloud" "container" ] [ "nixcloud" "containers" ])
  ];

  options.nixcloud.containers = {
    enable = mkEnableOption ''
      nixcloud-container: unprivileged LXC containers running NixOS that share
      this host's /nix/store, managed with the `nixcloud-container` command'';

    package = mkOption {
      type = types.package;
      default = pkgs.callPackage ../package.nix {
        lxc = config.virtualisation.lxc.package;
        nix = config.nix.package;
      };
      defaultText = literalExpression ''
        pkgs.callPackage <nixcloud-container/package.nix> {
          lxc = config.virtualisation.lxc.package;
          nix = config.nix.package;
        }'';
      description = ''
        The `nixcloud-container` helper. The default runs the LXC and the Nix
        of this system.
      '';
    };

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
        type = types.ints.between 64 112;
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

    idmap = {
      hostId = mkOption {
        type = types.ints.between 100000 maxId;
        default = defaults.idmap.hostId;
        description = ''
          The first host uid and gid delegated to containers: root inside the
          first container is this uid outside (`lxc.idmap`), and every
          container's ids lie above it. The delegated ids
          (`hostId` to `hostId + count - 1`) are given to root in /etc/subuid
          and /etc/subgid.

          NixOS also hands out subordinate ranges automatically: every normal
          user without explicit ranges gets
          {option}`users.users.<name>.autoSubUidGidRange`, allocated from
          100000 upwards in blocks of 65536 without regard to root's explicit
          range, so such a user could map containers' ids. The module warns
          about every user that can overlap; give them explicit
          {option}`users.users.<name>.subUidRanges` / `subGidRanges` outside
          the delegated ids or turn their automatic range off, or, before
          creating containers, move the delegated ids far above the automatic
          ones.
        '';
      };
      count = mkOption {
        type = types.ints.positive;
        default = defaults.idmap.count;
        description = ''
          How many host uids and gids from {option}`hostId` are delegated to
          containers. Each container takes {option}`perContainer` of them for
          its life, so the default has room for 1000 containers; creating one
          more is refused until a container is destroyed.
        '';
      };
      perContainer = mkOption {
        type = types.ints.between 65536 maxId;
        default = defaults.idmap.perContainer;
        description = ''
          How many uids and gids each container has (a NixOS system uses ids
          up to 65534, nobody). Containers keep the size they were created
          with.
        '';
      };
      isolated = mkOption {
        type = types.bool;
        default = defaults.idmap.isolated;
        description = ''
          Whether each container gets a range of ids of its own, so that no
          container's root is anyone of another container on the host's
          files. `false` gives every new container the first range (the
          original's behaviour).
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
            type = types.ints.between 1 30;
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

    idmappedMounts = mkOption {
      type = types.bool;
      default = defaults.idmappedMounts;
      description = ''
        Whether what a container sees of the host (the store, its profile at
        /init) is idmapped, so that the host's root owns it inside too (sudo
        and others insist on that). Idmapped mounts need Linux 5.12 or newer
        and a filesystem that has them (ext4, xfs, btrfs, tmpfs; not
        overlayfs): where /nix/store has none, set this to false, and the
        store shows as owned by nobody inside.
      '';
    };

    allowNixDaemon = mkOption {
      type = types.bool;
      default = defaults.allowNixDaemon;
      description = ''
        Whether container files may ask for Nix inside (`nixDaemon = true`),
        through the nix-daemon whose socket is in `nixDaemonSocketDir`. Such a
        container is an untrusted client of that daemon (its uids are never
        in `nix.settings.trusted-users`), on this host's store: it reads any
        store path, adds paths and builds (as the build users, in the
        sandbox), runs the garbage collector (which deletes any path nothing
        roots, other containers' fresh builds included) and `--optimise`,
        and adds links to `gcroots/auto` that the collector follows on the
        host; it can fill the disk and keep the builders busy. Allow it only
        where the containers that ask for it may do that to each other and
        to the host (README, Security).
      '';
    };

    nixDaemonSocketDir = mkOption {
      type = types.path;
      default = defaults.nixDaemonSocketDir;
      example = "/run/nix-daemon-containers";
      description = ''
        The directory whose nix-daemon `socket` containers with
        `nixDaemon = true` get, at /nix/var/nix/daemon-socket inside: the
        host's own daemon's by default, or the socket of a daemon this host
        runs for containers (`NIX_DAEMON_SOCKET_PATH=<dir>/socket nix-daemon`),
        whose service limits (CPU, memory, IO of every build it runs) and
        `nix.conf` (`NIX_CONF_DIR`: a `build-users-group` of its own, the
        container uids it admits in `allowed-users`) are the containers'
        alone; `max-jobs` and `cores` each client sets for itself. It is the
        same store: a second daemon does not keep them from collecting
        garbage. The directory is bound as it is: containers are neither its
        owner nor in its group, so it must let others in (`0755`), and the
        socket must be writable by others (`0666`, as nix-daemon makes it);
        `start` says so where it is not.
      '';
    };

    limits = {
      memory.max = limitOption (types.either types.ints.positive sizeString) "2G" ''
        The most memory (`memory.max`) any container may use, and what one
        gets whose file sets no `limits.memory.max`: bytes, or a size with K,
        M, G or T (powers of 1024).
      '';
      memory.high = limitOption (types.either types.ints.positive sizeString) "1536M" ''
        The memory above which a container's processes are slowed down and
        reclaimed from (`memory.high`): a ceiling and default, as `memory.max`.
      '';
      cpu.weight = limitOption (types.ints.between 1 10000) 100 ''
        The highest CPU share (`cpu.weight`, 100 is the default share) a
        container may ask for, and what one gets that asks for none.
      '';
      cpu.max = limitOption (types.either types.ints.positive types.float) 1.5 ''
        The most CPUs' worth of time (`cpu.max`) a container may use, and
        what one gets that sets no `limits.cpu.max`.
      '';
      pids.max = limitOption types.ints.positive 4096 ''
        The most processes and threads (`pids.max`) a container may have,
        and what one gets that sets no `limits.pids.max`.
      '';
      io.weight = limitOption (types.ints.between 1 10000) 100 ''
        The highest IO share (`io.weight`) a container may ask for, and what
        one gets that asks for none.
      '';
    };

    instances = mkOption {
      type = types.attrsOf (types.submodule {
        options = {
          file = mkOption {
            type = types.nullOr (types.either types.path types.str);
            default = null;
            example = literalExpression "./containers/web.nix";
            description = ''
              The container file, used where it is (not copied). Its content
              is hashed, not evaluated, so that a change restarts the sync.
            '';
          };
          flake = mkOption {
            type = types.nullOr types.str;
            default = null;
            example = "github:example/containers#web";
            description = ''
              A flake's container (`<ref>#<name>`) instead of a file. Pin the
              reference (a flake input's path, a locked URL) so that a new one
              reaches the list and restarts the sync.
            '';
          };
          autostart = mkOption {
            type = types.nullOr types.bool;
            default = null;
            description = "Whether it starts with the host, whatever its file says; `null`: as its file says.";
          };
        };
      });
      default = { };
      example = literalExpression ''
        {
          web = { file = ./containers/web.nix; autostart = true; };
          db.flake = "github:example/containers#db";
        }
      '';
      description = ''
        The containers of this host. Its evaluation reads none of them: it
        writes the list, and after each switch that changes it,
        `nixcloud-container-sync.service` runs `nixcloud-container sync`,
        which evaluates and builds each container in a process of its own
        (`sync.jobs` at a time), creates the missing, updates those that
        changed and leaves the others alone; one that fails fails alone
        (`systemctl status nixcloud-container-sync` says which).
      '';
    };

    sync = {
      prune = mkOption {
        type = types.bool;
        default = false;
        description = ''
          Whether the sync destroys the containers it made that
          {option}`instances` no longer names, with their data directories.
        '';
      };
      jobs = mkOption {
        type = types.ints.positive;
        default = 2;
        description = "How many containers the sync evaluates and builds side by side.";
      };
      nixParams = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = literalExpression ''"-I nixpkgs=''${pkgs.path}"'';
        description = ''
          Parameters for Nix (the helper's `-n`) when the sync builds
          containers: where a container file's NixOS configuration finds
          `<nixpkgs>` (a flake brings its own), as the service has no
          `NIX_PATH`.
        '';
      };
    };

    dataDir = mkOption {
      type = types.nullOr types.path;
      default = defaults.dataDir;
      example = "/srv/containers";
      description = ''
        Where each container's own data directory is (`<dataDir>/<name>`,
        made with the container, root's and closed to other users, removed
        by `destroy` unless `--keep-data`): below it the host paths of its
        `bindMounts` with a relative `hostPath`, which are its root's.
        `null`: `<stateDir>/data`. It must be root's and writable by root
        only, as every directory above it.
      '';
    };

    allowedHostPaths = mkOption {
      type = types.attrsOf (types.submodule {
        options.writable = mkOption {
          type = types.bool;
          default = false;
          description = ''
            Whether containers may bind it writable. Their files there are
            then their own uids on the host (not idmapped, so that no
            container root writes as the host's root): give the directory to
            a container's range (`list --columns name,uids`) for it to write.
          '';
        };
      });
      default = { };
      example = literalExpression ''{ "/srv/media" = { }; "/srv/shared" = { writable = true; }; }'';
      description = ''
        Host paths container files may bind (`bindMounts.<path>.hostPath`),
        each with what is below it: read-only (owned as on the host, by
        idmapped mounts), or writable where allowed. Any other host path is
        refused at create and update.
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

    allowedDevices = mkOption {
      type = types.listOf (types.enum [ "tun" "fuse" ]);
      default = [ ];
      example = [ "tun" "fuse" ];
      description = ''
        Host devices container files may ask for (`devices`): `tun`
        (/dev/net/tun, for VPNs) and `fuse` (/dev/fuse).
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

    allowedFlakeInputPaths = mkOption {
      type = types.listOf (types.strMatching formats.absolutePath.pattern);
      default = defaults.allowedFlakeInputPaths;
      example = [ "/srv/shared-flakes" ];
      description = ''
        Host paths a tenant's flake (`--flake`, `sync --flake`, instances
        naming a flake) may name as inputs in its flake.lock, at or below
        each, besides what lies inside the flake's own directory; any other
        input that reads the host (a `path:`, `git+file:`, `file://` or
        tarball input) is refused before anything is fetched. What such an
        input names is copied into the store, which every host user and every
        container build reads: allow only directories that hold nothing
        secret, and that no tenant can write (a symlink put there is refused,
        but one swapped in while Nix copies is not).
      '';
    };

    builds = {
      allowInternet = mkOption {
        type = types.bool;
        default = defaults.builds.allowInternet;
        description = ''
          Whether fixed-output builds of container files (fetchers: the only
          builds Nix does not cut off from the network) may reach the public
          internet. Never the host itself, its loopback, the containers'
          bridges or private networks (RFC 1918, 100.64.0.0/10,
          169.254.0.0/16, IPv6): the helper runs its Nix processes in a
          network namespace of their own, whose only way out is a link to this
          host, NATed, with those destinations refused. Nix itself reaches the
          internet either way, to substitute from binary caches and to fetch a
          flake's inputs. With `false` a build that needs the network fails and
          names this option.
        '';
      };
      network = {
        address = mkOption {
          type = ipv4Address;
          default = defaults.builds.network.address;
          description = ''
            The network address of the subnet the links between this host and
            the helper's build namespaces take their addresses from, a /30 per
            helper process. Pick one that no network of this host uses.
          '';
        };
        prefixLength = mkOption {
          type = types.ints.between 8 30;
          default = defaults.builds.network.prefixLength;
          description = "Prefix length of {option}`nixcloud.containers.builds.network.address`.";
        };
      };
      memory = mkOption {
        type = types.nullOr (types.either types.ints.positive sizeString);
        default = defaults.builds.memory;
        example = "4G";
        description = ''
          The memory each Nix process evaluating or building a container
          file (and each process of its builds) may take: bytes, or a size
          with K, M, G or T (powers of 1024); `null`, a quarter of this host's
          memory. The helper sets it as the processes' data limit
          (RLIMIT_DATA), which needs no cgroup; a container whose evaluation
          or build reaches it fails and names this option. `sync` runs no
          more jobs at once than fit twice into this host's memory.
        '';
      };
      evaluationTimeout = mkOption {
        type = types.ints.positive;
        default = defaults.builds.evaluationTimeout;
        description = ''
          Seconds that evaluating a container file's settings (or a flake's
          list of containers) may take before the helper kills it.
        '';
      };
      buildTimeout = mkOption {
        type = types.ints.positive;
        default = defaults.builds.buildTimeout;
        description = ''
          Seconds that fetching a flake's inputs, or evaluating and building a
          container's generation, may take before the helper kills it (each
          build of it is limited to the same by Nix's `timeout`).
        '';
      };
    };

    allowWholeStore = mkOption {
      type = types.bool;
      default = defaults.allowWholeStore;
      description = ''
        Whether container files may ask to see this host's whole /nix/store
        (`wholeStore = true`) instead of the closure of their own system:
        every other container's generations, and whatever secrets went into
        the store.
      '';
    };

    lxcPath = mkOption {
      type = types.path;
      default = defaults.lxcPath;
      description = "LXC's container directory (`lxc-* -P`): each container's config and rootfs.";
    };

    profilesDir = mkOption {
      type = types.path;
      default = defaults.profilesDir;
      description = "Where the helper keeps one Nix profile (the generations) per container.";
    };

    stateDir = mkOption {
      type = types.path;
      default = defaults.stateDir;
      description = "The helper's state: which containers exist and which addresses they hold.";
    };
  };

  config = mkIf cfg.enable (mkMerge [
    {
      assertions = [
        {
          assertion = lib.all (instance: (instance.file == null) != (instance.flake == null)) (lib.attrValues cfg.instances);
          message = "nixcloud.containers.instances: give each a file or a flake, one of them (${concatMapStringsSep ", " (name: name) (lib.attrNames (lib.filterAttrs (_: instance: (instance.file == null) == (instance.flake == null)) cfg.instances))}).";
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
      }) cfg.extraBridges;

      warnings = optional (sharingUsers != [ ]) ''
        nixcloud.containers: the containers' ids ${toString cfg.idmap.hostId} to ${toString (idmapEnd - 1)} (root's range in /etc/subuid and /etc/subgid) can also be given to ${concatMapStringsSep ", " (u: u.name) sharingUsers}: NixOS allocates automatic subordinate ranges (autoSubUidGidRange) from 100000 upwards without skipping root's. Such a user could map the containers' ids and own their files. Give them explicit users.users.<name>.subUidRanges and subGidRanges outside this range (or autoSubUidGidRange = false), or move nixcloud.containers.idmap.hostId far above the automatic ranges before creating containers.'';

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
        builds = {
          inherit (cfg.builds) allowInternet evaluationTimeout buildTimeout;
          network = { inherit (cfg.builds.network) address prefixLength; };
          memory = if cfg.builds.memory == null then null else spec.sizeInBytes cfg.builds.memory;
        };
        dataDir = if cfg.dataDir == null then null else toString cfg.dataDir;
        # LXC's generated profile for each container where AppArmor is on
        # (nixpkgs' LXC module loads LXC's own policies then).
        appArmor = config.security.apparmor.enable;
        limits = lib.filterAttrs (_: value: value != null)
          (spec.normalizeLimits "nixcloud.containers.limits" cfg.limits);
        inherit lxcPath;
        profilesDir = toString cfg.profilesDir;
        stateDir = toString cfg.stateDir;
        lxcConfigDir = "${lxcPackage}/share/lxc/config";
      };

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
      # The host ends of the containers' veths (vethXXXXXX) are bridge ports;
      # those of the helper's build namespaces (nxcb<slot>) have addresses
      # of the helper's.
      networking.dhcpcd.denyInterfaces = [ "veth*" "${buildLinks}*" ];

      # Evaluations and builds of container files reach binary caches (and,
      # where allowed, fetchers the internet) from network namespaces of the
      # helper's, NATed through this host (rust-helper/src/build_network.rs):
      # what they send is routed, and so are the replies that come in on the
      # uplink. The helper keeps them off the host and its private networks.
      boot.kernel.sysctl."net.ipv4.conf.all.forwarding" = mkDefault true;

      # The declared containers: the list, and the service that syncs it.
      environment.etc."nixcloud-container/instances.json".source = instancesFile;
      systemd.services.nixcloud-container-sync = mkIf (cfg.instances != { } || cfg.sync.prune) {
        description = "nixcloud-container: the containers of nixcloud.containers.instances";
        wantedBy = [ "multi-user.target" ];
        after = [ "network.target" "nixcloud-container-autostart.service" ];
        path = [ cfg.package lxcPackage "/run/wrappers" ];
        # A new list, or a changed container file, runs it again.
        restartTriggers = [ instancesFile ] ++ instanceFileHashes;
        serviceConfig = {
          Type = "oneshot";
          RemainAfterExit = true;
          ExecStart = lib.concatStringsSep " " ([
            "${cfg.package}/bin/nixcloud-container" "sync" "--file" "${instancesFile}"
            "--keep-going" "--jobs" (toString cfg.sync.jobs)
          ] ++ optional cfg.sync.prune "--prune"
            ++ lib.optionals (cfg.sync.nixParams != null) [ "-n" (lib.escapeShellArg cfg.sync.nixParams) ]);
        };
      };

      # The helper's network rules (the ports' guard, the filter between
      # peers, forwarded ports) as the state says, before the boot service
      # starts containers, again when the host file changes (the guard
      # follows antiSpoofing and the IPv6 prefix) and, with nftables, after
      # each load of the ruleset, which flushes them.
      systemd.services.nixcloud-container-network = {
        description = "nixcloud-container: the containers' network rules";
        wantedBy = [ "multi-user.target" ];
        before = [ "nixcloud-container-autostart.service" ];
        restartTriggers = [ (builtins.hashString "sha256" config.environment.etc."nixcloud-container/host.json".text) ];
        serviceConfig = {
          Type = "oneshot";
          RemainAfterExit = true;
          ExecStart = "${cfg.package}/bin/nixcloud-container repair-network";
          ExecReload = "${cfg.package}/bin/nixcloud-container repair-network";
        };
      };

      # Starts the containers marked autostart once the bridges are up, and
      # shuts every container of the LXC path down cleanly before the host
      # goes down (otherwise they would be killed with the rest).
      systemd.services.nixcloud-container-autostart = {
        description = "nixcloud-container: start autostart containers, stop all at shutdown";
        wantedBy = [ "multi-user.target" ];
        after = [ "network.target" ];
        # /run/wrappers: lxc-start uses newuidmap/newgidmap where they exist,
        # as it does when root starts a container from a shell.
        path = [ cfg.package lxcPackage "/run/wrappers" ];
        # A restart would stop every container; a changed unit applies at
        # the next boot.
        restartIfChanged = false;
        # lxc-autostart picks the containers (lxc.start.auto, lxc.group,
        # lxc.start.order) and names each one's lxc.start.delay, which --list
        # does not wait; each then starts with `nixcloud-container start`,
        # which refuses LXC settings it would not write (a generation older
        # than the checks, or tampered with) and runs an lxc-start of its own.
        # The monitor of a container that lxc-autostart starts itself keeps a
        # copy of lxc-autostart's heap, which holds every container's config
        # (docs/performance.md).
        script = ''
          lxc-autostart --lxcpath ${lxcPath} --all --list | while read -r name delay; do
            nixcloud-container start "$name" || echo "container $name did not start" >&2
            if [ "$delay" -gt 0 ]; then sleep "$delay"; fi
          done
        '';
        # Every running container, not only the autostart ones, 32 at a time,
        # each given 30 s to shut down before it is killed: one after the
        # other, 500 slow containers would outlast the stop timeout.
        preStop = ''
          lxc-ls --lxcpath ${lxcPath} --running -1 |
            xargs --no-run-if-empty -n 1 -P 32 lxc-stop --lxcpath ${lxcPath} --timeout 30 --name
        '';
        serviceConfig = {
          Type = "oneshot";
          RemainAfterExit = true;
          TimeoutStopSec = "15min";
          # LXC manages cgroups for the containers it starts from here.
          Delegate = true;
        };
      };
    }

    # The hostonly bridge is never forwarded: with NAT or IPv6 on, the kernel
    # forwards between all interfaces, so the firewall says no. Both
    # backends: iptables through the NixOS firewall, nftables through a table
    # of our own, whose chain accepts by default and leaves all other
    # forwarding to whatever else filters it.
    (mkIf (!nftables) {
      warnings = optional (withInternet && !config.networking.firewall.enable) ''
        nixcloud.containers: with networking.firewall.enable = false and without nftables, nothing stops the host from forwarding packets from and to ${hostonlyBridge}; enable the firewall (or networking.nftables).'';
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
              (builtins.readFile ../lib/build-network.nft);
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

      # The filter between peers (rust-helper/src/commands/peers.rs), declared
      # so that a reload, which flushes the whole ruleset, leaves it in place
      # without pairs (peers cannot reach each other, nobody else can either)
      # until the service below puts the pairs back.
      networking.nftables.tables.nixcloud-container-peers = {
        family = "bridge";
        content = builtins.replaceStrings [ "@ELEMENTS@" ] [ "" ] (builtins.readFile ../lib/peers.nft);
      };
      # The ports' guard (rust-helper/src/commands/port_guard.rs), declared
      # for the same reason with empty sets: after a reload, containers' ports
      # pass nothing until the service below fills the sets again.
      networking.nftables.tables.nixcloud-container-guard = mkIf cfg.antiSpoofing {
        family = "bridge";
        content = builtins.readFile ../lib/port-guard.nft;
      };
      # Where containers' forwarded traffic may go (rust-helper/src/commands/
      # egress.rs), declared for the same reason without the host's
      # allowances: after a reload, containers reach no private network
      # until the service below puts them back. (With the iptables backend
      # the helper's table stands beside the firewall's, which reloads leave
      # alone.)
      networking.nftables.tables.nixcloud-container-egress = {
        family = "inet";
        content = builtins.replaceStrings [ "@BRIDGES@" "@SAME_BRIDGE@" "@ALLOWED@\n" ] [
          (concatMapStringsSep ", " (bridge: ''"${bridge}"'') containerBridges)
          (concatMapStringsSep ", " (bridge: ''"${bridge}" . "${bridge}"'') containerBridges)
          ""
        ] (builtins.readFile ../lib/egress.nft);
      };
      systemd.services.nixcloud-container-network = {
        after = [ "nftables.service" ];
        partOf = [ "nftables.service" ];
        unitConfig.ReloadPropagatedFrom = [ "nftables.service" ];
      };
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
          # by a file the helper writes (rust-helper/src/commands/port_guard.rs),
          # which dnsmasq reads as it comes: the ports' guard knows it.
          dhcp-hostsdir = dhcpHostsDir;
        };
      };
      # dnsmasq reads it as its own user, and must find it when it starts.
      systemd.tmpfiles.rules = [ "d ${dhcpHostsDir} 0755 root root -" ];
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
      assertions = [
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

      # Only where forwarding is filtered (nftables with filterForward): let
      # containers out, and connections in to their public addresses (their
      # own NixOS firewall guards them).
      networking.firewall.extraForwardRules = mkIf nftables ''
        iifname "${internetBridge}" oifname "${cfg.internetInterface}" accept comment "nixcloud-container: IPv6 out"
        iifname "${cfg.internetInterface}" oifname "${internetBridge}" ip6 daddr ${ipv6.ipv6Prefix}/${toString ipv6.ipv6PrefixLength} accept comment "nixcloud-container: IPv6 in"
      '';
    })
  ]);
}
