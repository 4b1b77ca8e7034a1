# Evaluation tests of modules/guest.nix (run by tests/nix/run, and by the
# flake's checks); nixos-system.nix has those of lib/nixos-system.nix.
{ lib, h }:
let
  inherit (h) eq that evalGuest evalWith fakePkgs;


  guest = settings: extra: evalGuest ([ { nixcloud.guest = { enable = true; } // settings; } ] ++ extra);

  hostonlyOnly = guest {
    name = "web";
    hostonly = { address = "10.101.0.5"; prefixLength = 16; gateway = "10.101.0.1"; };
  } [ ];
  withNat = guest {
    name = "nat";
    hostonly = { address = "10.101.0.6"; prefixLength = 16; gateway = null; };
    internet.enable = true;
  } [ ];

  onSystemd = version: settings: evalWith { pkgs = fakePkgs { systemdVersion = version; }; } [
    ../../modules/guest.nix
    { nixcloud.guest = { enable = true; name = "old"; hostonly.address = "10.101.0.7"; } // settings; }
  ];

in
{
  guest-module = [
    (eq "a container: boots <system>/init as stage 2" hostonlyOnly.boot.isContainer true)
    (eq "no warnings" hostonlyOnly.warnings [ ])
    (eq "host name is the container's name" hostonlyOnly.networking.hostName "web")
    (eq "a configuration's own host name wins"
      (guest { name = "web"; hostonly.address = "10.101.0.5"; } [ { networking.hostName = "www"; } ]).networking.hostName
      "www")
    (eq "the hostonly interface with the container's address" hostonlyOnly.networking.interfaces {
      hostonly = { ipv4.addresses = [ { address = "10.101.0.5"; prefixLength = 16; } ]; ipv6.addresses = [ ]; useDHCP = false; };
    })
    (eq "default route via the gateway on hostonly" hostonlyOnly.networking.defaultGateway {
      address = "10.101.0.1";
      interface = "hostonly";
    })
    (eq "no DHCP without internet" hostonlyOnly.networking.useDHCP false)
    (eq "resolv.conf is the guest's own (container-config.nix would take the host's)"
      hostonlyOnly.networking.useHostResolvConf false)
    (eq "root logs in on the console by itself" hostonlyOnly.services.getty.autologinUser "root")
    (eq "autologin can be turned off"
      (guest { name = "web"; hostonly.address = "10.101.0.5"; } [ { services.getty.autologinUser = null; } ]).services.getty.autologinUser
      null)
    (eq "one getty per terminal: the module adds none beside systemd's container-getty@ and NixOS's console-getty"
      { services = lib.attrNames (lib.filterAttrs (n: _: lib.hasInfix "getty" n) hostonlyOnly.systemd.services);
        wants = hostonlyOnly.systemd.targets.getty.wants or [ ]; }
      { services = [ ]; wants = [ ]; })
    (eq "the stock systemd without patches" hostonlyOnly.systemd.package.name "systemd-257.5")
  ];

  guest-nix = [
    (eq "no Nix without the host's daemon" hostonlyOnly.nix.enable false)
    (that "nix says plainly that it is not there"
      (lib.findFirst (p: p.name == "nix-build") null hostonlyOnly.environment.systemPackages)
      "a nix-build that explains"
      (p: p != null && lib.hasInfix "Nix is not available in this container" p.text && lib.hasInfix "exit 1" p.text))
    (eq "with the daemon, the guest's Nix as NixOS has it"
      (let c = guest { name = "web"; hostonly.address = "10.101.0.5"; nixDaemon = true; } [ ]; in {
        inherit (c.nix) enable;
        shims = lib.filter (p: p ? text) c.environment.systemPackages;
      })
      { enable = true; shims = [ ]; })
    (eq "a configuration that enables Nix itself wins (a default, not a conflict), without the shims"
      (let
        c = guest { name = "web"; hostonly.address = "10.101.0.5"; } [ { nix.enable = true; } ];
        result = { enable = c.nix.enable; shims = lib.filter (p: p ? text) c.environment.systemPackages; };
      in if h.evaluates result then result else "a conflict")
      { enable = true; shims = [ ]; })
  ];

  guest-system-profile = [
    (that "the activation points the system profile at the system it activates"
      hostonlyOnly.system.activationScripts.nixcloud-system-profile or null
      "a snippet linking /nix/var/nix/profiles/system to $systemConfig"
      (snippet: snippet != null && lib.hasInfix "mkdir -p /nix/var/nix/profiles" snippet
        && lib.hasInfix ''ln -sfn "$systemConfig" /nix/var/nix/profiles/system'' snippet))
  ];

  guest-built-by-the-host = [
    (eq "without an address (an inline instance's), the hostonly interface is LXC's"
      (guest { name = "web"; hostonly.address = null; } [ ]).networking.interfaces.hostonly
      { ipv4.addresses = [ ]; ipv6.addresses = [ ]; useDHCP = false; })
  ];

  guest-state-version = [
    (eq "the release the container was created with, as a default"
      (guest { name = "web"; hostonly.address = "10.101.0.5"; stateVersion = "24.11"; } [ ]).system.stateVersion "24.11")
    (eq "the configuration's own wins"
      (guest { name = "web"; hostonly.address = "10.101.0.5"; stateVersion = "24.11"; }
        [ { system.stateVersion = "23.05"; } ]).system.stateVersion "23.05")
    (eq "without one, NixOS's default (which warns)" hostonlyOnly.system.stateVersion "unset-defaults-to-the-release")
  ];

  guest-sysctl = [
    (eq "systemd-sysctl runs where /proc/sys/net is writable"
      hostonlyOnly.systemd.services.systemd-sysctl.unitConfig.ConditionPathIsReadWrite [ "" "/proc/sys/net/" ])
    (eq "NixOS's defaults for the host kernel are dropped"
      (evalWith { } [
        ../../modules/guest.nix
        { nixcloud.guest = { enable = true; name = "w"; hostonly.address = "10.101.0.5"; }; }
        { boot.kernel.sysctl."kernel.kptr_restrict" = lib.mkDefault 1; }
      ]).boot.kernel.sysctl."kernel.kptr_restrict" null)
    (that "a container's own net.* keys stay, others are named in a warning"
      (let c = guest { name = "w"; hostonly.address = "10.101.0.5"; } [
        { boot.kernel.sysctl = { "net.ipv4.ip_forward" = 1; "vm.swappiness" = 10; }; }
      ]; in { inherit (c) warnings; forward = c.boot.kernel.sysctl."net.ipv4.ip_forward"; })
      "net.ipv4.ip_forward kept, vm.swappiness warned about"
      (r: r.forward == 1 && lib.any (lib.hasInfix "vm.swappiness") r.warnings
        && !(lib.any (lib.hasInfix "net.ipv4") r.warnings)))
  ];

  guest-internet = [
    (eq "internet by DHCP, hostonly static" (lib.mapAttrs (_: i: i.useDHCP) withNat.networking.interfaces) {
      hostonly = false;
      internet = true;
    })
    (eq "no gateway on hostonly: the default route comes by DHCP" withNat.networking.defaultGateway null)
  ];

  guest-systemd = [
    (that "systemd older than 238 without a patch: a warning" (onSystemd "237" { }).warnings
      "a warning naming lxc/lxc#2226" (lib.any (lib.hasInfix "lxc/lxc#2226")))
    (eq "systemd older than 238 with a patch: patched, no warning"
      (let c = onSystemd "237" { systemdPatches = [ ./stubs.nix ]; }; in {
        inherit (c) warnings;
        patches = map toString c.systemd.package.patches;
      })
      { warnings = [ ]; patches = [ (toString ./stubs.nix) ]; })
  ];
}
