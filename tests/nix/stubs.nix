# Declarations of the NixOS options that modules/host/ and
# modules/guest.nix (and the examples' configurations) set, with the types
# and defaults NixOS gives them, so that lib.evalModules can evaluate the
# modules without nixpkgs. Where NixOS itself sets one of them in a way that
# matters here, that is mirrored too (see `config`).
{ lib, config, pkgs, ... }:
let
  inherit (lib) mkDefault mkIf mkOption types;

  opt = type: default: mkOption { inherit type default; };
  lines = opt types.lines "";
  strs = opt (types.listOf types.str) [ ];

  addressList = bits: opt (types.listOf (types.submodule {
    options = {
      address = mkOption { type = types.str; };
      prefixLength = mkOption { type = types.ints.between 0 bits; };
    };
  })) [ ];

  # pkgs.formats.keyValue { listsAsDuplicateKeys = true; }, as dnsmasq uses it.
  dnsmasqAtom = types.nullOr (types.oneOf [ types.bool types.int types.float types.str types.path ]);
  dnsmasqValue = types.coercedTo dnsmasqAtom lib.singleton (types.listOf dnsmasqAtom);
in
{
  # systemd.services and systemd.targets, typed and checked as on NixOS.
  imports = [ ./systemd-units.nix ];

  options = {
    assertions = opt (types.listOf types.unspecified) [ ];
    warnings = opt (types.listOf types.str) [ ];

    boot.isContainer = opt types.bool false;
    boot.kernel.sysctl = opt (types.attrsOf types.anything) { };

    environment.systemPackages = opt (types.listOf types.package) [ ];
    environment.etc = opt (types.attrsOf (types.submodule {
      options.text = opt (types.nullOr types.lines) null;
      options.source = opt (types.nullOr types.path) null;
      # As nixos/modules/system/etc/etc.nix: other than "symlink", a copy
      # with this mode.
      options.mode = opt types.str "symlink";
    })) { };

    nix.enable = opt types.bool true;
    nix.package = opt types.package pkgs.nix;
    nix.settings = opt (types.submodule {
      freeformType = types.attrsOf types.anything;
      options.sandbox = opt (types.either types.bool (types.enum [ "relaxed" ])) true;
    }) { };

    users.users = opt (types.attrsOf (types.submodule ({ name, config, ... }: {
      options = {
        name = opt types.str name;
        isNormalUser = opt types.bool false;
        autoSubUidGidRange = opt types.bool false;
        subUidRanges = opt (types.listOf (types.submodule {
          options.startUid = mkOption { type = types.int; };
          options.count = opt types.int 1;
        })) [ ];
        subGidRanges = opt (types.listOf (types.submodule {
          options.startGid = mkOption { type = types.int; };
          options.count = opt types.int 1;
        })) [ ];
        openssh.authorizedKeys.keys = strs;
      };
      # As nixos/modules/config/users-groups.nix does.
      config = mkIf (config.isNormalUser && config.subUidRanges == [ ] && config.subGidRanges == [ ]) {
        autoSubUidGidRange = mkDefault true;
      };
    }))) { };

    security.apparmor.enable = opt types.bool false;

    virtualisation.lxc = {
      enable = opt types.bool false;
      package = opt types.package pkgs.lxc;
      systemConfig = lines;
    };

    networking = {
      hostName = opt (types.strMatching "^$|^[[:alnum:]]([[:alnum:]_-]{0,61}[[:alnum:]])?$") "nixos";
      enableIPv6 = opt types.bool true;
      useDHCP = opt types.bool true;
      useHostResolvConf = opt types.bool false;
      defaultGateway = opt (types.nullOr (types.submodule {
        options.address = mkOption { type = types.str; };
        options.interface = opt (types.nullOr types.str) null;
      })) null;
      bridges = opt (types.attrsOf (types.submodule {
        options.interfaces = mkOption { type = types.listOf types.str; };
        options.rstp = opt types.bool false;
      })) { };
      interfaces = opt (types.attrsOf (types.submodule {
        options.ipv4.addresses = addressList 32;
        options.ipv6.addresses = addressList 128;
        options.useDHCP = opt (types.nullOr types.bool) null;
      })) { };
      dhcpcd.denyInterfaces = strs;
      networkmanager.enable = opt types.bool false;
      nat = {
        enable = opt types.bool false;
        enableIPv6 = opt types.bool false;
        externalInterface = opt (types.nullOr types.str) null;
        internalInterfaces = strs;
        internalIPs = strs;
      };
      nftables = {
        enable = opt types.bool false;
        tables = opt (types.attrsOf (types.submodule {
          options.family = mkOption { type = types.enum [ "ip" "ip6" "inet" "arp" "bridge" "netdev" ]; };
          options.content = mkOption { type = types.lines; };
        })) { };
      };
      firewall = {
        enable = opt types.bool true;
        filterForward = opt types.bool false;
        extraCommands = lines;
        extraStopCommands = lines;
        extraForwardRules = lines;
        interfaces = opt (types.attrsOf (types.submodule {
          options.allowedTCPPorts = opt (types.listOf types.port) [ ];
          options.allowedUDPPorts = opt (types.listOf types.port) [ ];
        })) { };
      };
    };

    services.dnsmasq = {
      enable = opt types.bool false;
      resolveLocalQueries = opt types.bool true;
      settings = opt (types.submodule { freeformType = types.attrsOf dnsmasqValue; }) { };
    };
    services.udev.extraRules = lines;
    services.getty.autologinUser = opt (types.nullOr types.str) null;
    services.openssh = {
      enable = opt types.bool false;
      ports = opt (types.listOf types.port) [ 22 ];
    };

    system.stateVersion = mkOption {
      type = types.str;
      # As nixos/modules/misc/version.nix: the release, with a warning when
      # nothing set it (here: a marker to check for).
      default = "unset-defaults-to-the-release";
    };

    # As nixos/modules/system/activation/activation-script.nix (snippets,
    # with or without deps).
    system.activationScripts = opt (types.attrsOf types.unspecified) { };

    systemd.package = opt types.package pkgs.systemd;
    systemd.tmpfiles.rules = strs;
  };

  # As nixos/modules/virtualisation/container-config.nix does.
  config = mkIf config.boot.isContainer {
    networking.useHostResolvConf = mkDefault true;
  };
}
