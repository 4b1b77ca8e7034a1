# The helper's entry points. Every argument arrives as a string (--argstr),
# so no path, name or value the user gives is ever read as Nix code.
#
#   source:  JSON, { "file": "/abs/container.nix" } or { "system": "/nix/store/..." }
#   params:  JSON, what the helper resolved (generation.nix) - generation only
#   busybox: a busybox binary, symlinks resolved (busybox.nix) - generation only
#
#   nix-instantiate --eval --strict --json cli.nix -A spec --argstr source ...
#   nix-env -p <profile> -f cli.nix -A generation --argstr source ... --set
{ source, params ? "null", busybox ? "" }:
let
  specs = import ./spec.nix;
  src = builtins.fromJSON source;
  resolved = builtins.fromJSON params;

  fromSource =
    if src ? file then specs.fromValue "container file ${src.file}" (import (/. + src.file))
    else if src ? system then specs.fromSystemPath src.system
    else throw "cli.nix: source names neither a file nor a system";

  # `<nixpkgs>` fails without saying how to provide it; look first.
  nixpkgs =
    let
      provides = entry: entry.prefix == "nixpkgs"
        || (entry.prefix == "" && builtins.pathExists "${entry.path}/nixpkgs");
    in
    if builtins.any provides builtins.nixPath then <nixpkgs>
    else throw ("${if src ? file then "container file ${src.file}" else "this container"} has a NixOS "
      + "configuration, which needs nixpkgs: pass -n \"-I nixpkgs=/path/to/nixpkgs\" or set NIX_PATH");

  system =
    if fromSource.spec.kind == "system" then fromSource.spec.system
    else import ./nixos-system.nix {
      inherit nixpkgs;
      inherit (fromSource) configuration;
      params = resolved;
    };
in
{
  inherit (fromSource) spec;

  generation = import ./generation.nix {
    builder = import ./busybox.nix busybox;
    inherit (fromSource) spec;
    inherit system;
    params = resolved;
  };
}
