# The host module's options for declared containers: the list, and how the
# sync service (services.nix) deploys it.
{ lib, ... }:
let
  inherit (lib) literalExpression mkOption types;
in
{
  options.nixcloud.containers = {
    instances = mkOption {
      type = types.attrsOf (types.submodule {
        options = {
          file = mkOption {
            type = types.nullOr (types.either types.path types.str);
            default = null;
            example = literalExpression "./containers/web.nix";
            description = ''
              The container file, used where it is (not copied). Its content
              is hashed, not evaluated, so that a change restarts the sync.
            '';
          };
          flake = mkOption {
            type = types.nullOr types.str;
            default = null;
            example = "github:example/containers#web";
            description = ''
              A flake's container (`<ref>#<name>`) instead of a file. Pin the
              reference (a flake input's path, a locked URL) so that a new one
              reaches the list and restarts the sync.
            '';
          };
          autostart = mkOption {
            type = types.nullOr types.bool;
            default = null;
            description = "Whether it starts with the host, whatever its file says; `null`: as its file says.";
          };
        };
      });
      default = { };
      example = literalExpression ''
        {
          web = { file = ./containers/web.nix; autostart = true; };
          db.flake = "github:example/containers#db";
        }
      '';
      description = ''
        The containers of this host. Its evaluation reads none of them: it
        writes the list, and after each switch that changes it,
        `nixcloud-container-sync.service` runs `nixcloud-container sync`,
        which evaluates and builds each container in a process of its own
        (`sync.jobs` at a time), creates the missing, updates those that
        changed and leaves the others alone; one that fails fails alone
        (`systemctl status nixcloud-container-sync` says which).
      '';
    };

    sync = {
      prune = mkOption {
        type = types.bool;
        default = false;
        description = ''
          Whether the sync destroys the containers it created that
          {option}`instances` no longer names, with their data directories
          (their source is `nixos-module`; a container made by hand or by
          another sync source is never pruned).
        '';
      };
      jobs = mkOption {
        type = types.ints.positive;
        default = 2;
        description = "How many containers the sync evaluates and builds side by side.";
      };
      nixParams = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = literalExpression ''"-I nixpkgs=''${pkgs.path}"'';
        description = ''
          Parameters for Nix (the helper's `-n`) when the sync builds
          containers: where a container file's NixOS configuration finds
          `<nixpkgs>` (a flake brings its own), as the service has no
          `NIX_PATH`.
        '';
      };
    };
  };
}
