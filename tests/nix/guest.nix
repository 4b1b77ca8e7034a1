# Evaluation tests of modules/guest.nix and of lib/nixos-system.nix, which
# gives it the helper's parameters (run by tests/nix/run).
{ lib, h }:
let
  inherit (h) eq that contains evalGuest evalWith fakePkgs;

  specs = import ../../lib/spec.nix;

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

  # lib/nixos-system.nix as the helper runs it, with a stand-in for nixpkgs'
  # eval-config (tests/fake-nixpkgs): the container file's configuration, the
  # guest module and the parameters, `ip` and `name` as module arguments.
  # The configuration it evaluated, and the platform it evaluated it for.
  built = { file, name, address, gateway ? null, internet ? false, system ? null, stateVersion ? "26.05" }:
    let toplevel = import ../../lib/nixos-system.nix ({
      nixpkgs = ../fake-nixpkgs;
      configuration = (specs.fromValue "container file ${toString file}" (import file)).configuration;
      params = {
        inherit name stateVersion;
        nixDaemon = false;
        hostonly = { inherit address gateway; prefixLength = 16; };
        internet = if internet then { bridge = "brNC-internet"; } else null;
      };
    } // lib.optionalAttrs (system != null) { inherit system; });
    in toplevel.nixosConfig // { inherit (toplevel) evaluatedFor; };

  example = built { file = ../../examples/example.nix; name = "example"; address = "10.101.0.2"; gateway = "10.101.0.1"; };
  autostartExample = built { file = ../../examples/autostartExample.nix; name = "auto"; address = "10.101.0.3"; gateway = "10.101.0.1"; };
  specOf = file: (specs.fromValue "container file ${toString file}" (import file)).spec;
  webSpec = specOf ../../examples/webExample.nix;
  dbSpec = specOf ../../examples/dbExample.nix;
  networkExample = built { file = ../../examples/networkExample.nix; name = "net"; address = "10.10.1.2"; };
  fullExample = built { file = ../../examples/fullExample.nix; name = "full"; address = "10.101.0.4"; internet = true; };
  # The packages of a configuration, without the guest module's nix shims.
  pkgNames = config: map (p: p.name) (lib.filter (p: !(p ? text)) config.environment.systemPackages);
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
  ];

  guest-state-version = [
    (eq "the release the container was created with, as a default"
      (guest { name = "web"; hostonly.address = "10.101.0.5"; stateVersion = "24.11"; } [ ]).system.stateVersion "24.11")
    (eq "the configuration's own wins"
      (guest { name = "web"; hostonly.address = "10.101.0.5"; stateVersion = "24.11"; }
        [ { system.stateVersion = "23.05"; } ]).system.stateVersion "23.05")
    (eq "without one, NixOS's default (which warns)" hostonlyOnly.system.stateVersion "unset-defaults-to-the-release")
    (eq "the examples set their own" (map (c: c.system.stateVersion) [ example autostartExample networkExample fullExample ])
      [ "25.11" "25.11" "25.11" "25.11" ])
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

  nixos-system = [
    (eq "example.nix: vim" (pkgNames example) [ "vim-9.1" ])
    (eq "example.nix: the guest's settings from the parameters" {
      inherit (example.networking) hostName defaultGateway;
      hostonly = example.networking.interfaces.hostonly.ipv4.addresses;
      isContainer = example.boot.isContainer;
    } {
      hostName = "example";
      defaultGateway = { address = "10.101.0.1"; interface = "hostonly"; };
      hostonly = [ { address = "10.101.0.2"; prefixLength = 16; } ];
      isContainer = true;
    })
    (eq "the machine's platform unless given" example.evaluatedFor builtins.currentSystem)
    (eq "a given platform" (built {
      file = ../../examples/example.nix; name = "example"; address = "10.101.0.2"; system = "aarch64-linux";
    }).evaluatedFor "aarch64-linux")
    (eq "autostartExample.nix: its own host name, dfc and vim"
      { inherit (autostartExample.networking) hostName; packages = pkgNames autostartExample; ssh = autostartExample.services.openssh.enable; }
      { hostName = "autostartExample"; packages = [ "dfc-3.1.1" "vim-9.1" ]; ssh = true; })
    (eq "networkExample.nix: `ip` reaches the configuration"
      networkExample.networking.hostName "10-10-1-2")
    (eq "networkExample.nix: no gateway on its own bridge" networkExample.networking.defaultGateway null)
    (eq "networkExample.nix: a key only from an id_rsa.pub beside it"
      networkExample.users.users.root.openssh.authorizedKeys.keys
      (lib.optional (builtins.pathExists ../../examples/id_rsa.pub) (builtins.readFile ../../examples/id_rsa.pub)))
    (eq "webExample.nix: its site in its own data, port 8080, db as peer" {
      inherit (webSpec) bindMounts forwardPorts;
      inherit (webSpec.network) peers;
      memoryMax = webSpec.limits.memoryMax;
    } {
      bindMounts = [ { mountPoint = "/var/www"; hostPath = "www"; isReadOnly = false; } ];
      forwardPorts = [ { protocol = "tcp"; hostPort = 8080; containerPort = 80; hostAddress = null; } ];
      peers = [ "db" ];
      memoryMax = 1073741824;
    })
    (eq "dbExample.nix: web as peer" dbSpec.network.peers [ "web" ])
    (eq "fullExample.nix: internet by DHCP"
      (lib.mapAttrs (_: i: i.useDHCP) fullExample.networking.interfaces)
      { hostonly = false; internet = true; })
    (contains "fullExample.nix: ssh" true [ fullExample.services.openssh.enable ])
  ];
}
