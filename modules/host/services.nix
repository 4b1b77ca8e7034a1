# The host module's units: the sync of the declared containers
# (instances), the containers' network rules, and the boot service that
# starts the autostart containers and stops every container at shutdown.
{ config, lib, pkgs, utils, ... }:
let
  inherit (lib) mkIf mkMerge optional;
  inherit (import ./derived.nix { inherit config lib; }) cfg nftables lxcPackage lxcPath;

  # An instance's container file as the sync reads it. A path is copied
  # into the store with its directory, which is what the helper lets the
  # file read (rust-helper/src/spec.rs: readable_root): the list refers to
  # the copy, so the system keeps it alive (a path of a flake's source,
  # /nix/store/...-source/..., is kept by nothing, and with lazy trees need
  # not exist), and a change of any file the container may import changes
  # the list, which restarts the sync. A string is a host file, used where
  # it is.
  instanceFile = instance:
    if builtins.isPath instance.file then
      "${builtins.path { path = dirOf instance.file; name = "nixcloud-container-source"; }}/${baseNameOf instance.file}"
    else instance.file;

  # An inline instance's guest (its `config`), built with the host's
  # nixpkgs, as lib/nixos-system.nix builds a container file's: only its
  # hostonly address is left to LXC, as the helper allocates it.
  instanceSystem = name: instance: import ../../lib/nixos-system.nix {
    nixpkgs = pkgs.path;
    configuration = instance.config;
    system = pkgs.stdenv.hostPlatform.system;
    inherit (instance) specialArgs;
    params = {
      inherit name;
      nixDaemon = false;
      stateVersion = null;
      hostonly.address = null;
      internet = null;
    };
  };

  # The list `nixcloud-container sync` reads (rust-helper/src/commands/
  # sync/list.rs): name -> { file, flake or system; autostart }. Each
  # entry refers to what it is built from (a copied directory, a built
  # system, a flake reference), so that any change of it is a new list.
  instancesFile = pkgs.writeText "nixcloud-container-instances.json" (builtins.toJSON
    (lib.mapAttrs (name: instance:
      (if instance.file != null then { file = instanceFile instance; }
       else if instance.config != null then { system = "${instanceSystem name instance}"; }
       else { inherit (instance) flake; })
      // lib.optionalAttrs (instance.autostart != null) { inherit (instance) autostart; })
      cfg.instances));

  # Whether an instance names a flake, which the sync may fetch from the
  # network.
  fetchesFlakes = lib.any (instance: instance.flake != null) (lib.attrValues cfg.instances);
in
mkMerge [
  {
    # The declared containers: the list, and the service that syncs it.
    environment.etc."nixcloud-container/instances.json".source = instancesFile;
    systemd.services.nixcloud-container-sync = mkIf (cfg.instances != { } || cfg.sync.prune) {
      description = "nixcloud-container: the containers of nixcloud.containers.instances";
      wantedBy = [ "multi-user.target" ];
      # A flake reference (github:...) is fetched: the network must be up.
      wants = optional fetchesFlakes "network-online.target";
      after = [ "network.target" "nixcloud-container-autostart.service" ]
        ++ optional fetchesFlakes "network-online.target";
      path = [ cfg.package lxcPackage "/run/wrappers" ];
      # A new list restarts it: the list refers to every source (above).
      restartTriggers = [ instancesFile ];
      serviceConfig = {
        # Neither boot nor a switch waits for the containers' builds: with
        # Type=exec a start job is done once the helper runs (systemd.service(5)),
        # and switch-to-configuration waits only for the jobs of the units it
        # starts or restarts. A oneshot's start job lasts until it exits.
        # RemainAfterExit keeps it active after a sync: a switch restarts an
        # active unit whose file changed (the list is in its command line),
        # and starts multi-user.target again, which would start an inactive
        # one anew at every switch (nixos/doc/manual/development/
        # unit-handling.section.md).
        Type = "exec";
        RemainAfterExit = true;
        ExecStart = utils.escapeSystemdExecArgs ([
          # The list moves with each configuration (a store path): the
          # instances are one source by name, the one --prune speaks for.
          "${cfg.package}/bin/nixcloud-container" "sync" "--file" "${instancesFile}"
          "--source" "nixos-module" "--keep-going" "--jobs" (toString cfg.sync.jobs)
        ] ++ optional cfg.sync.prune "--prune"
          ++ lib.optionals (cfg.sync.nixParams != null) [ "-n" cfg.sync.nixParams ]);
      };
    };

    # What the switch says where the list changed: that the sync starts, in
    # the background, and how to follow it. Activation snippets run before
    # the activation makes the new system /run/current-system
    # (nixos/modules/system/activation/activation-script.nix), and before
    # switch-to-configuration restarts units.
    system.activationScripts.nixcloud-container-sync = mkIf (cfg.instances != { } || cfg.sync.prune) ''
      if [ "$(readlink -f /run/current-system/etc/nixcloud-container/instances.json)" != ${instancesFile} ]; then
        echo "nixcloud-container: the declared containers changed; nixcloud-container-sync.service applies them in the background: journalctl -fu nixcloud-container-sync"
      fi
    '';

    # The containers' names in /etc/hosts, which the activation has just
    # copied afresh (network.nix): after the snippet that writes /etc.
    system.activationScripts.nixcloud-container-names = mkIf (cfg.names.hostsFile == "/etc/hosts") {
      deps = [ "etc" ];
      text = ''
        ${cfg.package}/bin/nixcloud-container repair-names \
          || echo "nixcloud-container: the containers' names are not in /etc/hosts (see above)" >&2
      '';
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
      # lxc.start.delay), twice the host's CPUs at a time within an order,
      # each as `nixcloud-container start` starts one (it refuses LXC
      # settings it would not write and mounts what the container sees). Not lxc-autostart itself:
      # the monitor of a container it starts keeps a copy of its heap, which
      # holds every container's config (docs/performance.md). It names the
      # containers that did not start; the service stays up regardless, so
      # that its preStop stops every container at shutdown.
      script = ''
        nixcloud-container --lxc-path ${lxcPath} autostart ||
          echo "some autostart containers did not start" >&2
      '';
      # Every running container, not only the autostart ones, 32 at a time,
      # each given 30 s to shut down before it is killed: one after the
      # other, 500 slow containers would outlast the stop timeout.
      preStop = ''
        lxc-ls --lxcpath ${lxcPath} --running -1 |
          xargs --no-run-if-empty -n 1 -P 32 lxc-stop --lxcpath ${lxcPath} --timeout 30 --name
      '';
      # The containers' configs, state and profiles must be there before
      # it starts them (and stay until it has stopped them), wherever the
      # host keeps them.
      unitConfig.RequiresMountsFor = [ lxcPath (toString cfg.stateDir) (toString cfg.profilesDir) ];
      serviceConfig = {
        Type = "oneshot";
        RemainAfterExit = true;
        TimeoutStopSec = "15min";
        # No Delegate: LXC started by root leaves this unit's cgroup for
        # cgroups of its own at the root of the hierarchy (lxc.monitor.<name>,
        # lxc.payload.<name>) unless lxc.cgroup.relative = 1, which the
        # generated settings do not set (lxc.container.conf(5)): nothing of a
        # container stays here for a delegated subtree to hold, and stopping
        # this unit leaves them to preStop's lxc-stop, not to systemd's kill.
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
