# Evaluation tests of lib/nixos-system.nix, which gives a container file's
# configuration the guest module and the helper's parameters, evaluated with
# a stand-in for nixpkgs' eval-config (tests/fake-nixpkgs), as the helper's
# tests evaluate it. Run by tests/nix/run; not by the flake's checks: the
# stand-in finds nixpkgs' lib on NIX_PATH (<nixpkgs-lib>) and the machine's
# platform (builtins.currentSystem), which a flake's pure evaluation has not.
{ lib, h }:
let
  inherit (h) eq that contains failedAssertions evalHost;

  specs = import ../../lib/spec.nix;

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
  nixos-system-state-version = [
    (eq "the examples set their own" (map (c: c.system.stateVersion) [ example autostartExample networkExample fullExample ])
      [ "25.11" "25.11" "25.11" "25.11" ])
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
  # The host module's inline configuration (instances.<name>.config), built
  # by the host's evaluation with its nixpkgs (pkgs.path: here the stand-in)
  # through lib/nixos-system.nix.
  inline-instances =
    let
      inline = greeting: evalHost [ { nixcloud.containers = { enable = true;
        instances.web = {
          config = { pkgs, name, greeting, ... }: {
            networking.hostName = "${name}-${greeting}";
            environment.systemPackages = [ pkgs.vim ];
            services.openssh.ports = [ 2222 ];
          };
          specialArgs = { inherit greeting; };
        };
      }; } ];
      first = inline "hello";
      list = config: builtins.fromJSON (builtins.unsafeDiscardStringContext
        config.environment.etc."nixcloud-container/instances.json".source.text);
      # The system the host built, as its evaluation made it.
      built = config: (import ../../lib/nixos-system.nix {
        nixpkgs = ../fake-nixpkgs;
        configuration = config.nixcloud.containers.instances.web.config;
        system = "x86_64-linux";
        inherit (config.nixcloud.containers.instances.web) specialArgs;
        params = { name = "web"; nixDaemon = false; stateVersion = null; hostonly.address = null; internet = null; };
      });
    in
    [
      (eq "no failed assertions" (failedAssertions first) [ ])
      (eq "instances.json names the built system" (list first) { web.system = (built first).outPath; })
      (eq "the guest was evaluated with the guest module, its name and specialArgs, and the host's pkgs"
        (let c = (built first).nixosConfig; in {
          inherit (c.networking) hostName;
          inherit (c.nixcloud.guest) enable name;
          address = c.nixcloud.guest.hostonly.address;
          hostonlyAddresses = c.networking.interfaces.hostonly.ipv4.addresses;
          ports = c.services.openssh.ports;
        })
        { hostName = "web-hello"; enable = true; name = "web"; address = null; hostonlyAddresses = [ ]; ports = [ 2222 ]; })
      (eq "the same configuration, the same list: the sync leaves the container alone"
        (list (inline "hello")) (list first))
      (that "a changed configuration is a new system, a new list" (list (inline "bye"))
        "a list naming another system" (other: other.web.system != (list first).web.system))
    ];

}
