# The host module's options for evaluations and builds of container files:
# what a tenant's flake may read of the host, the network of builds, and
# their memory and time.
{ lib, ... }:
let
  inherit (lib) mkOption types;
  inherit (import ./common.nix { inherit lib; }) defaults ipv4Address ranges size;
  formats = import ../../../lib/formats.nix;
in
{
  options.nixcloud.containers = {
    allowedFlakeInputPaths = mkOption {
      type = types.listOf (types.strMatching formats.absolutePath.pattern);
      default = defaults.allowedFlakeInputPaths;
      example = [ "/srv/shared-flakes" ];
      description = ''
        Host paths a tenant's flake (`--flake`, `sync --flake`, instances
        naming a flake) may name as inputs in its flake.lock, at or below
        each, besides what lies inside the flake's own directory; any other
        input that reads the host (a `path:`, `git+file:`, `file://` or
        tarball input) is refused before anything is fetched. What such an
        input names is copied into the store, which every host user and every
        container build reads: allow only directories that hold nothing
        secret, and that no tenant can write (a symlink put there is refused,
        but one swapped in while Nix copies is not).
      '';
    };

    builds = {
      allowInternet = mkOption {
        type = types.bool;
        default = defaults.builds.allowInternet;
        description = ''
          Whether fixed-output builds of container files (fetchers: the only
          builds Nix does not cut off from the network) may reach the public
          internet. Never the host itself, its loopback, the containers'
          bridges or private networks (RFC 1918, 100.64.0.0/10,
          169.254.0.0/16, IPv6): the helper runs its Nix processes in a
          network namespace of their own, whose only way out is a link to this
          host, NATed, with those destinations refused. Nix itself reaches the
          internet either way, to substitute from binary caches and to fetch a
          flake's inputs. With `false` a build that needs the network fails and
          names this option.
        '';
      };
      network = {
        address = mkOption {
          type = ipv4Address;
          default = defaults.builds.network.address;
          description = ''
            The network address of the subnet the links between this host and
            the helper's build namespaces take their addresses from, a /30 per
            helper process. Pick one that no network of this host uses.
          '';
        };
        prefixLength = mkOption {
          type = ranges.buildsPrefixLength;
          default = defaults.builds.network.prefixLength;
          description = "Prefix length of {option}`nixcloud.containers.builds.network.address`.";
        };
      };
      memory = mkOption {
        type = types.nullOr size;
        default = defaults.builds.memory;
        example = "4G";
        description = ''
          The memory each Nix process evaluating or building a container
          file (and each process of its builds) may take: bytes, or a size
          with K, M, G or T (powers of 1024); `null`, a quarter of this host's
          memory. The helper sets it as the processes' data limit
          (RLIMIT_DATA), which needs no cgroup; a container whose evaluation
          or build reaches it fails and names this option. `sync` runs no
          more jobs at once than fit twice into this host's memory.
        '';
      };
      evaluationTimeout = mkOption {
        type = types.ints.positive;
        default = defaults.builds.evaluationTimeout;
        description = ''
          Seconds that evaluating a container file's settings (or a flake's
          list of containers) may take before the helper kills it.
        '';
      };
      buildTimeout = mkOption {
        type = types.ints.positive;
        default = defaults.builds.buildTimeout;
        description = ''
          Seconds that fetching a flake's inputs, or evaluating and building a
          container's generation, may take before the helper kills it (each
          build of it is limited to the same by Nix's `timeout`).
        '';
      };
    };
  };
}
