# A NixOS configuration -> the guest's system (config.system.build.toplevel),
# evaluated once through nixpkgs' eval-config with the guest module.
#
# nixpkgs: a nixpkgs source tree (`<nixpkgs>`, or a flake's `nixpkgs`).
# configuration: the container file's NixOS module.
# params: what the helper resolved (see generation.nix); `name` and `ip`
#   reach the configuration as module arguments, as the seed's examples expect.
{ nixpkgs, configuration, params }:
(import "${nixpkgs}/nixos/lib/eval-config.nix" {
  modules = [
    ../modules/guest.nix
    configuration
    {
      nixcloud.guest = {
        enable = true;
        inherit (params) name;
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
