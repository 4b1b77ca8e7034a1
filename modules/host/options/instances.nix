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
              The container file. A path (`./containers/web.nix`) is copied
              into the store with its directory, which is all it may read
              (the helper evaluates it restricted to that directory): the
              sync reads that copy, which the system keeps alive, and a
              change of any file in the directory restarts the sync. Keep
              container files in a directory of their own, as all of it is
              copied. A string is a file on the host, used where it is.
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
          config = mkOption {
            type = types.nullOr types.deferredModule;
            default = null;
            example = literalExpression "{ pkgs, ... }: { services.nginx.enable = true; }";
            description = ''
              The container's NixOS configuration inline, instead of a file
              or a flake, as `containers.<name>.config` of nixos-container:
              evaluated with the host's own evaluation, with the host's
              `pkgs.path` as nixpkgs, and built with the host's system; the
              sync gets the built system and updates the container only
              when its store path changes. Its cost is nixos-container's
              (NixOS/nixpkgs#65690): every host evaluation evaluates every
              inline guest, so a rebuild of the host takes longer with each,
              and an error in one fails the host's rebuild. With many
              containers, or containers a tenant writes, prefer files or a
              flake. The container has the settings of a container file
              that names only a `system` (its hostonly address is the one
              the helper allocates, which LXC configures).
            '';
          };
          specialArgs = mkOption {
            type = types.attrsOf types.raw;
            default = { };
            description = "Extra module arguments of {option}`config` (`name` is given already).";
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
