# nixcloud-container without flakes.
#
#   nix-build -A nixcloud-container          # the helper
#   imports = [ (import /path/to/nixcloud-container { }).nixosModules.host ];
#
# pkgs is only evaluated for the package; the modules and lib need none.
{ pkgs ? import <nixpkgs> { } }:
rec {
  nixcloud-container = pkgs.callPackage ./package.nix { };
  package = nixcloud-container;

  nixosModules = import ./modules;

  lib = import ./lib;
}
