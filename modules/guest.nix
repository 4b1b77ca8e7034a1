# What the NixOS of every nixcloud-container gets (lib/nixos-system.nix sets
# these options from what the helper resolved).
#
# The guest runs under LXC as an unprivileged container: its /nix/store is
# the host's, bind-mounted read-only, and LXC runs `<system>/init` of the
# current generation (lxc.init.cmd = /init/profile/system/init). This is not
# nixpkgs' virtualisation/lxc-container.nix, which builds an image that owns
# its store (a tarball, a Nix database, /sbin/init rewritten on switch).
{ config, lib, pkgs, ... }:
let
  inherit (lib) mkDefault mkIf mkOption mkOverride optional types;

  cfg = config.nixcloud.guest;
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
        type = ipv4Address;
        example = "10.101.0.2";
        description = ''
          The container's IPv4 address on its `hostonly` interface (on the
          host's hostonly bridge, or the container's own `network.bridge`).
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

    ttys = mkOption {
      type = types.listOf types.str;
      default = [ "tty1" "tty2" "tty3" "tty4" ];
      description = ''
        The terminals LXC gives the container for `lxc-console` (four with
        LXC's common.conf, `lxc.tty.max = 4`), each with a getty. systemd
        starts none there by itself: in a container its getty generator only
        serves /dev/console and pseudo terminals, and getty@.service requires
        /dev/tty0, a virtual console no container has. (/dev/console, which
        `lxc-console -t 0` and `lxc-start -F` show, has NixOS's own
        console-getty.)
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
      ipv4.addresses = [ { inherit (cfg.hostonly) address prefixLength; } ];
      useDHCP = false;
    };
    networking.interfaces.internet = mkIf cfg.internet.enable { useDHCP = true; };
    networking.defaultGateway = mkIf (cfg.hostonly.gateway != null) {
      address = cfg.hostonly.gateway;
      interface = "hostonly";
    };

    # Whoever can reach the container's console is root on the host already.
    services.getty.autologinUser = mkDefault "root";
    # getty@ (NixOS's, with the autologin above) on LXC's ttys: an empty
    # assignment resets the unit's conditions, the second keeps it off
    # terminals that do not exist.
    systemd.services."getty@".unitConfig.ConditionPathExists = [ "" "/dev/%I" ];
    systemd.targets.getty.wants = map (tty: "getty@${tty}.service") cfg.ttys;

    systemd.package = mkIf (cfg.systemdPatches != [ ]) (pkgs.systemd.overrideAttrs (old: {
      patches = (old.patches or [ ]) ++ cfg.systemdPatches;
    }));

    warnings = optional
      (cfg.systemdPatches == [ ] && lib.versionOlder (lib.getVersion config.systemd.package) "238")
      ''
        nixcloud.guest: this guest's systemd ${lib.getVersion config.systemd.package} is older than 238 and needs a patch to boot in an unprivileged LXC container (lxc/lxc#2226): set nixcloud.guest.systemdPatches, or use a newer nixpkgs.'';
  };
}
