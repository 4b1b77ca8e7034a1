# A NixOS configuration -> the guest's system (config.system.build.toplevel),
# evaluated once through nixpkgs' eval-config with the guest module.
#
# nixpkgs: a nixpkgs source tree (`<nixpkgs>`, a path, or a flake's `nixpkgs`).
# configuration: the container file's NixOS module.
# params: what the helper resolved (see generation.nix); `name` and `ip`
#   reach the configuration as module arguments, as the seed's examples expect.
# system: the platform; the machine's own unless given (pure evaluation, as
#   in a flake, has no builtins.currentSystem and must give it).
{ nixpkgs, configuration, params, system ? builtins.currentSystem }:
(import (import ./nixpkgs-file.nix nixpkgs "nixos/lib/eval-config.nix") {
  inherit system;
  modules = [
    ../modules/guest.nix
    configuration
    {
      nixcloud.guest = {
        enable = true;
        inherit (params) name nixDaemon stateVersion;
        hostonly = { inherit (params.hostonly) address prefixLength gateway; };
        internet.enable = params.internet != null;
      };
    }
  ];
  specialArgs = {
    inherit (params) name;
    ip = params.hostonly.address;
  };
}).config.system.build.toplevel
