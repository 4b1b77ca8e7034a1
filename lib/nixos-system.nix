# A NixOS configuration -> the guest's system (config.system.build.toplevel),
# evaluated once through nixpkgs' eval-config with the guest module.
#
# nixpkgs: a nixpkgs source tree (`<nixpkgs>`, a path, or a flake's `nixpkgs`).
# configuration: the container file's NixOS module.
# params: what the helper resolved (see generation.nix); `name` and `ip`
#   reach the configuration as module arguments, as the seed's examples expect.
# system: the platform; the machine's own unless given (pure evaluation, as
#   in a flake, has no builtins.currentSystem and must give it).
# specialArgs: more module arguments (an inline instance's of the host
#   module, modules/host/services.nix, which builds its guest with this
#   before the helper resolved anything: its params.hostonly.address is
#   null, and the hostonly interface is as LXC configures it).
{ nixpkgs, configuration, params, system ? builtins.currentSystem, specialArgs ? { } }:
(import (import ./nixpkgs-file.nix nixpkgs "nixos/lib/eval-config.nix") {
  inherit system;
  modules = [
    ../modules/guest.nix
    configuration
    {
      nixcloud.guest = {
        enable = true;
        inherit (params) name nixDaemon stateVersion;
        hostonly = if params.hostonly.address == null then { address = null; }
          else { inherit (params.hostonly) address prefixLength gateway; };
        internet.enable = params.internet != null;
      };
    }
  ];
  specialArgs = specialArgs // {
    inherit (params) name;
    ip = params.hostonly.address;
  };
}).config.system.build.toplevel
