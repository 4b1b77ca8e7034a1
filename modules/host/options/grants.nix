# The host module's options for what container files may ask of the host
# beyond the network (network.nix has the bridges and ports they may have):
# host paths to bind, devices, Nix inside, the whole store, and the ceilings
# of their resources.
{ lib, ... }:
let
  inherit (lib) concatMapStringsSep literalExpression mkOption types;
  inherit (import ./common.nix { inherit lib; }) defaults devices limitsTable size;

  # The option type of each unit of lib/limits.nix, as the host file takes it
  # (lib/spec.nix checks the values again): sizes and counts from 1, weights
  # in their range, CPUs as a number.
  unitTypes = {
    size = size;
    weight = types.ints.between limitsTable.units.weight.min limitsTable.units.weight.max;
    cpus = types.either types.ints.positive types.float;
    count = types.ints.positive;
  };

  # What each limit's option says, by its spec name: an example and its
  # meaning (lib/limits.nix has the rest).
  limitDocs = {
    memoryMax = {
      example = "2G";
      description = ''
        The most memory (`memory.max`) any container may use, and what one
        gets whose file sets no `limits.memory.max`: bytes, or a size with K,
        M, G or T (powers of 1024).
      '';
    };
    memoryHigh = {
      example = "1536M";
      description = ''
        The memory above which a container's processes are slowed down and
        reclaimed from (`memory.high`): a ceiling and default, as `memory.max`.
      '';
    };
    cpuWeight = {
      example = 100;
      description = ''
        The highest CPU share (`cpu.weight`, 100 is the default share) a
        container may ask for, and what one gets that asks for none.
      '';
    };
    cpuMax = {
      example = 1.5;
      description = ''
        The most CPUs' worth of time (`cpu.max`) a container may use, and
        what one gets that sets no `limits.cpu.max`.
      '';
    };
    pidsMax = {
      example = 4096;
      description = ''
        The most processes and threads (`pids.max`) a container may have,
        and what one gets that sets no `limits.pids.max`.
      '';
    };
    ioWeight = {
      example = 100;
      description = ''
        The highest IO share (`io.weight`) a container may ask for, and what
        one gets that asks for none.
      '';
    };
  };

  # One of the host's resource limits: unset by default.
  limitOption = limit: mkOption {
    type = types.nullOr unitTypes.${limit.unit};
    default = null;
    inherit (limitDocs.${limit.name}) example;
    description = limitDocs.${limit.name}.description + ''

      Containers are capped at this where they ask for more; LXC enforces
      it through cgroup2 (`lxc.cgroup2.*`).
    '';
  };

  # `limits.<group>.<key>` for each limit.
  limitOptions = builtins.foldl'
    (groups: limit: groups // {
      ${limit.group} = (groups.${limit.group} or { }) // { ${limit.key} = limitOption limit; };
    })
    { }
    limitsTable.limits;
in
{
  options.nixcloud.containers = {
    allowedHostPaths = mkOption {
      type = types.attrsOf (types.submodule {
        options.writable = mkOption {
          type = types.bool;
          default = false;
          description = ''
            Whether containers may bind it writable. Their files there are
            then their own uids on the host (not idmapped, so that no
            container root writes as the host's root): give the directory to
            a container's range (`list --columns name,uids`) for it to write.
          '';
        };
      });
      default = { };
      example = literalExpression ''{ "/srv/media" = { }; "/srv/shared" = { writable = true; }; }'';
      description = ''
        Host paths container files may bind (`bindMounts.<path>.hostPath`),
        each with what is below it: read-only (owned as on the host, by
        idmapped mounts), or writable where allowed. Any other host path is
        refused at create and update.
      '';
    };

    allowedDevices = mkOption {
      type = types.listOf (types.enum (map (device: device.name) devices));
      default = [ ];
      example = [ "tun" "fuse" ];
      description = "Host devices container files may ask for (`devices`): "
        + concatMapStringsSep ", " (device: "`${device.name}` (${device.node}, for ${device.use})") devices + ".";
    };

    allowNixDaemon = mkOption {
      type = types.bool;
      default = defaults.allowNixDaemon;
      description = ''
        Whether container files may ask for Nix inside (`nixDaemon = true`),
        through the nix-daemon whose socket is in `nixDaemonSocketDir`. Such a
        container is an untrusted client of that daemon (its uids are never
        in `nix.settings.trusted-users`), on this host's store: it reads any
        store path, adds paths and builds (as the build users, in the
        sandbox), runs the garbage collector (which deletes any path nothing
        roots, other containers' fresh builds included) and `--optimise`,
        and adds links to `gcroots/auto` that the collector follows on the
        host; it can fill the disk and keep the builders busy. Allow it only
        where the containers that ask for it may do that to each other and
        to the host (docs/security.md, Nix inside).
      '';
    };

    nixDaemonSocketDir = mkOption {
      type = types.path;
      default = defaults.nixDaemonSocketDir;
      example = "/run/nix-daemon-containers";
      description = ''
        The directory whose nix-daemon `socket` containers with
        `nixDaemon = true` get, at /nix/var/nix/daemon-socket inside: the
        host's own daemon's by default, or the socket of a daemon this host
        runs for containers (`NIX_DAEMON_SOCKET_PATH=<dir>/socket nix-daemon`),
        whose service limits (CPU, memory, IO of every build it runs) and
        `nix.conf` (`NIX_CONF_DIR`: a `build-users-group` of its own, the
        container uids it admits in `allowed-users`) are the containers'
        alone; `max-jobs` and `cores` each client sets for itself. It is the
        same store: a second daemon does not keep them from collecting
        garbage. The directory is bound as it is: containers are neither its
        owner nor in its group, so it must let others in (`0755`), and the
        socket must be writable by others (`0666`, as nix-daemon makes it);
        `start` says so where it is not.
      '';
    };

    allowWholeStore = mkOption {
      type = types.bool;
      default = defaults.allowWholeStore;
      description = ''
        Whether container files may ask to see this host's whole /nix/store
        (`wholeStore = true`) instead of the closure of their own system:
        every other container's generations, and whatever secrets went into
        the store.
      '';
    };

    limits = limitOptions;
  };
}
