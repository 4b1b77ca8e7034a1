# What the NixOS of every nixcloud-container gets (lib/nixos-system.nix sets
# these options from what the helper resolved).
#
# The guest runs under LXC as an unprivileged container: its /nix/store is
# the host's, mounted read-only (and owned by root inside, where the host has
# idmapped mounts), and LXC runs `<system>/init` of the current generation
# (lxc.init.cmd = /init/profile/system/init). This is not nixpkgs'
# virtualisation/lxc-container.nix, which builds an image that owns its store
# (a tarball, a Nix database, /sbin/init rewritten on switch).
{ config, lib, pkgs, ... }:
let
  inherit (lib) mkDefault mkIf mkOption mkOverride optional types;

  cfg = config.nixcloud.guest;

  # NixOS's defaults for sysctls outside a network namespace
  # (nixos/modules/config/sysctl.nix, system/boot/systemd.nix).
  hostKernelDefaults = [
    "kernel.kptr_restrict" "kernel.pid_max" "vm.max_map_count"
    "fs.inotify.max_user_instances" "fs.inotify.max_user_watches"
    "fs.protected_fifos" "fs.protected_hardlinks" "fs.protected_regular" "fs.protected_symlinks"
  ];
  hostKernelSysctls = lib.attrNames (lib.filterAttrs
    (key: value: value != null && !(lib.hasPrefix "net." key))
    config.boot.kernel.sysctl);
  defaults = builtins.fromJSON (builtins.readFile ../lib/host-defaults.json);
  formats = import ../lib/formats.nix;
  ipv4Address = types.strMatching formats.ipv4Address.pattern;
in
{
  options.nixcloud.guest = {
    enable = lib.mkEnableOption "the settings of a nixcloud-container guest";

    name = mkOption {
      type = types.strMatching formats.containerName.pattern;
      example = "web";
      description = "The container's name; also its host name unless the configuration sets one.";
    };

    hostonly = {
      address = mkOption {
        type = types.nullOr ipv4Address;
        example = "10.101.0.2";
        description = ''
          The container's IPv4 address on its `hostonly` interface (on the
          host's hostonly bridge, or the container's own `network.bridge`);
          null for a system built before the helper allocated it (an inline
          instance of the host module): the interface stays as LXC
          configures it (lxc.net.0.ipv4.address and gateway).
        '';
      };
      prefixLength = mkOption {
        type = types.ints.between 1 32;
        default = defaults.hostonly.prefixLength;
        description = "Prefix length of {option}`nixcloud.guest.hostonly.address`.";
      };
      gateway = mkOption {
        type = types.nullOr ipv4Address;
        default = null;
        example = "10.101.0.1";
        description = ''
          The default route through the `hostonly` interface, if any. The
          helper sets the host's address for containers without NAT (which
          reach the host, and nothing beyond it, that way); containers with
          NAT get their default route by DHCP on `internet`.
        '';
      };
    };

    internet.enable = mkOption {
      type = types.bool;
      default = false;
      description = ''
        Whether the container has an `internet` interface on the host's
        internet bridge (`network.enableNat`), configured by DHCP (IPv4, and
        IPv6 by router advertisements and DHCPv6 where the host offers it).
      '';
    };

    nixDaemon = mkOption {
      type = types.bool;
      default = false;
      description = ''
        Whether Nix works inside through the host's nix-daemon (the container
        file's `nixDaemon`, where the host allows it): the helper mounts the
        daemon's socket, and the guest's nix commands (NIX_REMOTE=daemon)
        build and add paths to the host's store as an untrusted user.
        Without it the guest has no Nix: its nix commands say so.
      '';
    };

    stateVersion = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "25.11";
      description = ''
        The release the container was created with, as an installer fixes
        it: the default of {option}`system.stateVersion` for the container's
        life, which the configuration may still set itself.
      '';
    };

    systemdPatches = mkOption {
      type = types.listOf types.path;
      default = [ ];
      example = lib.literalExpression "[ ./systemd-lxc-cgroup.patch ]";
      description = ''
        Patches for the guest's systemd. The seed patched systemd for
        unprivileged LXC guests (lxc/lxc#2226), which systemd 238 fixed; a
        guest whose systemd is older warns unless patches are given here.
        When this list is not empty, the guest's systemd is pkgs.systemd with
        these patches added, built from source (and with it whatever
        depends on it).
      '';
    };
  };

  config = mkIf cfg.enable {
    # The rest of what a container needs follows from this: no kernel,
    # initrd, boot loader or udev, and `<system>/init` is stage 2.
    boot.isContainer = true;

    networking.hostName = mkDefault cfg.name;

    # nixos/modules/virtualisation/container-config.nix assumes the host
    # supplies /etc/resolv.conf (as nixos-container does); LXC does not, so
    # the guest's resolvconf keeps it, filled by DHCP on `internet`. A
    # priority between that mkDefault and a plain definition.
    networking.useHostResolvConf = mkOverride 900 false;

    # DHCP only where the helper says so: on `internet`.
    networking.useDHCP = mkDefault false;
    networking.interfaces.hostonly = {
      # LXC configures it already (lxc.net.0.ipv4.address); NixOS keeps it so.
      ipv4.addresses = mkIf (cfg.hostonly.address != null) [ { inherit (cfg.hostonly) address prefixLength; } ];
      useDHCP = false;
    };
    networking.interfaces.internet = mkIf cfg.internet.enable { useDHCP = true; };
    networking.defaultGateway = mkIf (cfg.hostonly.gateway != null) {
      address = cfg.hostonly.gateway;
      interface = "hostonly";
    };

    # Whoever can reach the container's console is root on the host already.
    # One getty per terminal: NixOS's console-getty on /dev/console, and
    # systemd's getty generator starts container-getty@N on each of LXC's
    # terminals, which the generated LXC settings name in $container_ttys
    # (pts/1 to pts/4, the same devices as LXC's /dev/tty1 to tty4); both
    # autologin. getty@tty1 stays off: it needs /dev/tty0, which no
    # container has.
    services.getty.autologinUser = mkDefault "root";

    system.stateVersion = mkIf (cfg.stateVersion != null) (mkDefault cfg.stateVersion);

    # Nix is the host's: through its daemon where the host allows it (the
    # socket is mounted by the helper; container-config.nix sets
    # NIX_REMOTE=daemon, and the guest's own nix-daemon units stay off while
    # the socket is there), else not at all, and nix says so plainly. A
    # default: a configuration that enables Nix itself wins.
    nix.enable = mkIf (!cfg.nixDaemon) (mkDefault false);
    environment.systemPackages = mkIf (!config.nix.enable) (map
      (command: pkgs.writeShellScriptBin command ''
        echo "${command}: Nix is not available in this container: its container file does not ask for the host's nix-daemon (nixDaemon = true), which the host must allow" >&2
        exit 1
      '')
      [ "nix" "nix-build" "nix-channel" "nix-collect-garbage" "nix-copy-closure" "nix-env"
        "nix-instantiate" "nix-shell" "nix-store" "nixos-rebuild" ]);

    # The system profile, /nix/var/nix/profiles/system, which tools read
    # for the system installed (system.autoUpgrade's nixos-rebuild, scripts):
    # the system this activation activates, i.e. the generation the guest
    # runs, at boot and at each switch. NixOS's activation sets only
    # /run/current-system (nixos/modules/system/activation/
    # activation-script.nix); nixos-rebuild and nixos-install set the profile,
    # and neither runs here: the container's generations are the host's
    # profile for it, which also keeps them from the garbage collector.
    system.activationScripts.nixcloud-system-profile = ''
      mkdir -p /nix/var/nix/profiles
      ln -sfn "$systemConfig" /nix/var/nix/profiles/system
    '';

    # A container's sysctls are those of its own network namespace: under
    # LXC (lxc.mount.auto proc:mixed) /proc/sys/net is writable and the rest
    # of /proc/sys, the host kernel's, read-only. systemd-sysctl applies the
    # net.* keys (an older systemd than 254 skips all unless its condition
    # looks at /proc/sys/net) and skips the others; NixOS's own defaults for
    # them are dropped, and the configuration's are named in a warning.
    systemd.services.systemd-sysctl.unitConfig.ConditionPathIsReadWrite = [ "" "/proc/sys/net/" ];
    boot.kernel.sysctl = lib.genAttrs hostKernelDefaults (_: mkOverride 900 null);

    systemd.package = mkIf (cfg.systemdPatches != [ ]) (pkgs.systemd.overrideAttrs (old: {
      patches = (old.patches or [ ]) ++ cfg.systemdPatches;
    }));

    warnings = optional
      (cfg.systemdPatches == [ ] && lib.versionOlder (lib.getVersion config.systemd.package) "238")
      ''
        nixcloud.guest: this guest's systemd ${lib.getVersion config.systemd.package} is older than 238 and needs a patch to boot in an unprivileged LXC container (lxc/lxc#2226): set nixcloud.guest.systemdPatches, or use a newer nixpkgs.''
      ++ optional (hostKernelSysctls != [ ]) ''
        nixcloud.guest: boot.kernel.sysctl sets ${lib.concatStringsSep ", " hostKernelSysctls}, which belong to the host's kernel: a container sets only the net.* keys of its own network namespace, and these are skipped.'';
  };
}
