# The host module's units: the sync of the declared containers
# (instances), the containers' network rules, and the boot service that
# starts the autostart containers and stops every container at shutdown.
{ config, lib, pkgs, ... }:
let
  inherit (lib) mkIf mkMerge optional;
  inherit (import ./derived.nix { inherit config lib; }) cfg nftables lxcPackage lxcPath;

  # The list `nixcloud-container sync` reads (rust-helper/src/commands/
  # sync.rs): name -> { file or flake, autostart }.
  instancesFile = pkgs.writeText "nixcloud-container-instances.json" (builtins.toJSON
    (lib.mapAttrs (_: instance:
      (if instance.file != null then { file = toString instance.file; } else { inherit (instance) flake; })
      // lib.optionalAttrs (instance.autostart != null) { inherit (instance) autostart; })
      cfg.instances));
  # What restarts the sync when a container file changes in place: its
  # bytes, hashed (never evaluated).
  instanceFileHashes = lib.mapAttrsToList (_: instance: builtins.hashFile "sha256" instance.file)
    (lib.filterAttrs (_: instance: builtins.isPath instance.file) cfg.instances);
in
mkMerge [
  {
    # The declared containers: the list, and the service that syncs it.
    environment.etc."nixcloud-container/instances.json".source = instancesFile;
    systemd.services.nixcloud-container-sync = mkIf (cfg.instances != { } || cfg.sync.prune) {
      description = "nixcloud-container: the containers of nixcloud.containers.instances";
      wantedBy = [ "multi-user.target" ];
      after = [ "network.target" "nixcloud-container-autostart.service" ];
      path = [ cfg.package lxcPackage "/run/wrappers" ];
      # A new list, or a changed container file, runs it again.
      restartTriggers = [ instancesFile ] ++ instanceFileHashes;
      serviceConfig = {
        Type = "oneshot";
        RemainAfterExit = true;
        ExecStart = lib.concatStringsSep " " ([
          "${cfg.package}/bin/nixcloud-container" "sync" "--file" "${instancesFile}"
          "--keep-going" "--jobs" (toString cfg.sync.jobs)
        ] ++ optional cfg.sync.prune "--prune"
          ++ lib.optionals (cfg.sync.nixParams != null) [ "-n" (lib.escapeShellArg cfg.sync.nixParams) ]);
      };
    };

    # The helper's network rules (the ports' guard, the egress policy, the
    # filter between peers, forwarded ports) as the state says, before the
    # boot service starts containers, again when the host file changes (the
    # guard follows antiSpoofing and the IPv6 prefix, the egress policy
    # allowedEgress) and, with nftables, after each load of the ruleset,
    # which flushes them.
    systemd.services.nixcloud-container-network = {
      description = "nixcloud-container: the containers' network rules";
      wantedBy = [ "multi-user.target" ];
      before = [ "nixcloud-container-autostart.service" ];
      restartTriggers = [ (builtins.hashString "sha256" config.environment.etc."nixcloud-container/host.json".text) ];
      serviceConfig = {
        Type = "oneshot";
        RemainAfterExit = true;
        ExecStart = "${cfg.package}/bin/nixcloud-container repair-network";
        ExecReload = "${cfg.package}/bin/nixcloud-container repair-network";
      };
    };

    # Starts the containers marked autostart once the bridges are up, and
    # shuts every container of the LXC path down cleanly before the host
    # goes down (otherwise they would be killed with the rest).
    systemd.services.nixcloud-container-autostart = {
      description = "nixcloud-container: start autostart containers, stop all at shutdown";
      wantedBy = [ "multi-user.target" ];
      after = [ "network.target" ];
      # /run/wrappers: lxc-start uses newuidmap/newgidmap where they exist,
      # as it does when root starts a container from a shell.
      path = [ cfg.package lxcPackage "/run/wrappers" ];
      # A restart would stop every container; a changed unit applies at
      # the next boot.
      restartIfChanged = false;
      # The helper's autostart (rust-helper/src/commands/autostart.rs)
      # starts what lxc-autostart --all would, in its order (lxc.start.order,
      # lxc.start.delay), 32 at a time within an order, each through
      # `nixcloud-container start`, which refuses LXC settings it would not
      # write and mounts what the container sees. Not lxc-autostart itself:
      # the monitor of a container it starts keeps a copy of its heap, which
      # holds every container's config (docs/performance.md). It names the
      # containers that did not start; the service stays up regardless, so
      # that its preStop stops every container at shutdown.
      script = ''
        nixcloud-container --lxc-path ${lxcPath} autostart --jobs 32 ||
          echo "some autostart containers did not start" >&2
      '';
      # Every running container, not only the autostart ones, 32 at a time,
      # each given 30 s to shut down before it is killed: one after the
      # other, 500 slow containers would outlast the stop timeout.
      preStop = ''
        lxc-ls --lxcpath ${lxcPath} --running -1 |
          xargs --no-run-if-empty -n 1 -P 32 lxc-stop --lxcpath ${lxcPath} --timeout 30 --name
      '';
      serviceConfig = {
        Type = "oneshot";
        RemainAfterExit = true;
        TimeoutStopSec = "15min";
        # LXC manages cgroups for the containers it starts from here.
        Delegate = true;
      };
    };
  }

  # With nftables, each load of the ruleset flushes the helper's rules
  # (firewall.nix declares its tables, without what the helper fills in):
  # the network service runs again after it.
  (mkIf nftables {
    systemd.services.nixcloud-container-network = {
      after = [ "nftables.service" ];
      partOf = [ "nftables.service" ];
      unitConfig.ReloadPropagatedFrom = [ "nftables.service" ];
    };
  })
]
