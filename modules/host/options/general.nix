# The host module's options for the host itself: whether it is on, the
# helper's package, the ids delegated to containers, and the directories the
# helper keeps containers in.
{ config, lib, pkgs, ... }:
let
  inherit (lib) literalExpression mkEnableOption mkOption types;
  inherit (import ./common.nix { inherit lib; }) defaults ranges;
in
{
  options.nixcloud.containers = {
    enable = mkEnableOption ''
      nixcloud-container: unprivileged LXC containers running NixOS that share
      this host's /nix/store, managed with the `nixcloud-container` command'';

    package = mkOption {
      type = types.package;
      default = pkgs.callPackage ../../../package.nix {
        lxc = config.virtualisation.lxc.package;
        nix = config.nix.package;
      };
      defaultText = literalExpression ''
        pkgs.callPackage <nixcloud-container/package.nix> {
          lxc = config.virtualisation.lxc.package;
          nix = config.nix.package;
        }'';
      description = ''
        The `nixcloud-container` helper. The default runs the LXC and the Nix
        of this system.
      '';
    };

    idmap = {
      hostId = mkOption {
        type = ranges.hostId;
        default = defaults.idmap.hostId;
        description = ''
          The first host uid and gid delegated to containers: root inside the
          first container is this uid outside (`lxc.idmap`), and every
          container's ids lie above it. The delegated ids
          (`hostId` to `hostId + count - 1`) are given to root in /etc/subuid
          and /etc/subgid.

          NixOS also hands out subordinate ranges automatically: every normal
          user without explicit ranges gets
          {option}`users.users.<name>.autoSubUidGidRange`, allocated from
          100000 upwards in blocks of 65536 without regard to root's explicit
          range, so such a user could map containers' ids. The module warns
          about every user that can overlap; give them explicit
          {option}`users.users.<name>.subUidRanges` / `subGidRanges` outside
          the delegated ids or turn their automatic range off, or, before
          creating containers, move the delegated ids far above the automatic
          ones.
        '';
      };
      count = mkOption {
        type = types.ints.positive;
        default = defaults.idmap.count;
        description = ''
          How many host uids and gids from {option}`hostId` are delegated to
          containers. Each container takes {option}`perContainer` of them for
          its life, so the default has room for 1000 containers; creating one
          more is refused until a container is destroyed.
        '';
      };
      perContainer = mkOption {
        type = ranges.perContainer;
        default = defaults.idmap.perContainer;
        description = ''
          How many uids and gids each container has (a NixOS system uses ids
          up to 65534, nobody). Containers keep the size they were created
          with.
        '';
      };
      isolated = mkOption {
        type = types.bool;
        default = defaults.idmap.isolated;
        description = ''
          Whether each container gets a range of ids of its own, so that no
          container's root is anyone of another container on the host's
          files. `false` gives every new container the first range (the
          original's behaviour).
        '';
      };
    };

    idmappedMounts = mkOption {
      type = types.bool;
      default = defaults.idmappedMounts;
      description = ''
        Whether what a container sees of the host (the store, its profile at
        /init) is idmapped, so that the host's root owns it inside too (sudo
        and others insist on that). Idmapped mounts need Linux 5.12 or newer
        and a filesystem that has them (ext4, xfs, btrfs, tmpfs; not
        overlayfs): where /nix/store has none, set this to false, and the
        store shows as owned by nobody inside.
      '';
    };

    dataDir = mkOption {
      type = types.nullOr types.path;
      default = defaults.dataDir;
      example = "/srv/containers";
      description = ''
        Where each container's own data directory is (`<dataDir>/<name>`,
        made with the container, root's and closed to other users, removed
        by `destroy` unless `--keep-data`): below it the host paths of its
        `bindMounts` with a relative `hostPath`, which are its root's.
        `null`: `<stateDir>/data`. It must be root's and writable by root
        only, as every directory above it.
      '';
    };

    lxcPath = mkOption {
      type = types.path;
      default = defaults.lxcPath;
      description = "LXC's container directory (`lxc-* -P`): each container's config and rootfs.";
    };

    profilesDir = mkOption {
      type = types.path;
      default = defaults.profilesDir;
      description = "Where the helper keeps one Nix profile (the generations) per container.";
    };

    stateDir = mkOption {
      type = types.path;
      default = defaults.stateDir;
      description = "The helper's state: which containers exist and which addresses they hold.";
    };
  };
}
