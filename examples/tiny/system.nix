# A tiny guest system built by a real Nix build without nixpkgs: the host's
# static busybox, an init, a switch-to-configuration and a systemctl that
# answers what the helper asks of a NixOS guest. It boots under LXC in
# milliseconds, so the demo and the tests can run many of them.
#
# Like a NixOS toplevel, it keeps its systemd tools in systemd/bin (which the
# helper runs by their store paths, so they work before the guest has set up
# /bin or /run/current-system) and links them into sw/bin (the guest's PATH).
# Every program it runs is busybox by its store path, until init has made
# /bin.
#
# version:        recorded at boot and at activation, so a test can tell
#                 which generation runs.
# switchExit:     the exit code of switch-to-configuration, as NixOS's:
#                 1 could not switch, 2 an activation snippet failed, 4 units
#                 failed, 100 the new init needs a restart; others for tests.
# failedSnippets: activation snippets it reports as failed (with exit 2).
# failedUnits:    units `systemctl --failed` lists after it ran (with exit 4).
# bootState:      what `systemctl is-system-running` says once it booted:
#                 "running", "degraded" (with failedUnits failed) or
#                 "starting" (a boot that never ends, its job still running).
# switchState:    what it says after switch-to-configuration ran (null:
#                 bootState), as bootState: a switch that exits 0 and leaves
#                 the system degraded or starting, for health gates.
# bootGate:       null, or a path inside the guest that init waits for before
#                 it boots: until something (a test, from the host) makes it,
#                 the guest has no /bin, no /run/current-system and no boot
#                 record, and `systemctl is-system-running` says "starting",
#                 as a NixOS guest early in its boot.
# extraPaths:     store paths the system refers to (listed in its
#                 `extra-paths`), so that its closure holds them too: a
#                 closure as large as a NixOS system's, for tests of store views.
{ version ? "1", switchExit ? 0, failedSnippets ? [ ], failedUnits ? [ ], bootState ? "running"
, switchState ? null, bootGate ? null, extraPaths ? [ ] }:
let
  # This toolkit's busybox: through `<nixcloud-container>` where the search
  # path has it (the helper gives it to every evaluation), so that a copy
  # of this directory beside a container file works (restricted evaluation
  # reads nothing above that file's directory); by its place in the
  # repository for `nix-build examples/tiny/system.nix` by hand.
  fromHelper = builtins.any (entry: entry.prefix == "nixcloud-container") builtins.nixPath;
  busybox = if fromHelper then import <nixcloud-container/lib/host-busybox.nix>
    else import ../../lib/host-busybox.nix;
  shebang = "#!${busybox} sh";
  lines = builtins.concatStringsSep "\n";

  init = builtins.toFile "init" ''
    ${shebang}
    # PID 1: waits for its boot gate (if any), installs busybox's applets,
    # records how the boot ended, then idles until lxc-stop's signal (SIGPWR,
    # or SIGRTMIN+3 = 37 as sent to systemd). The kernel drops signals to a
    # PID 1 without a handler, so the trap comes first.
    trap 'exit 0' PWR TERM INT 37
    ${if bootGate == null then "" else ''
      while [ ! -e ${bootGate} ]; do ${busybox} sleep 0.05; done
    ''}
    ${busybox} mkdir -p /bin /tmp /var/lib/tiny /var/log /run
    ${busybox} --install -s /bin 2>/dev/null
    export PATH=/bin
    # Where a NixOS guest's tools are: /run/current-system/sw/bin.
    ln -sfn /init/profile/system /run/current-system
    echo "tiny: booted version ${version}" >> /var/log/tiny.log
    # How the boot ended, for systemctl is-system-running (below).
    printf '%s' "${lines failedUnits}" > /var/lib/tiny/failed-units
    ${if bootState == "starting" then "echo 'tiny-slow.service start running' > /var/lib/tiny/jobs" else ""}
    echo ${bootState} > /var/lib/tiny/system-state
    # Last: the record that it booted (tests and benchmarks wait for it).
    echo ${version} > /var/lib/tiny/booted
    while :; do sleep 3600 & wait $!; done
  '';

  switchToConfiguration = builtins.toFile "switch-to-configuration" ''
    ${shebang}
    # Activation, as NixOS's switch-to-configuration <action> would do it.
    [ -d /var/lib/tiny ] && [ -d /var/log ] || ${busybox} mkdir -p /var/lib/tiny /var/log
    echo "$1 ${version}" > /var/lib/tiny/activated
    echo "tiny: $1 to version ${version}" >> /var/log/tiny.log
    ${lines (map (snippet: "echo \"Activation script snippet '${snippet}' failed (1)\" >&2") failedSnippets)}
    printf '%s' "${lines failedUnits}" > /var/lib/tiny/failed-units
    echo ${if switchState == null then bootState else switchState} > /var/lib/tiny/system-state
    ${if switchState == "starting" then "echo 'tiny-slow.service start running' > /var/lib/tiny/jobs" else ""}
    ${if switchExit == 0 then "" else ''
      echo "activation of version ${version} failed on purpose" >&2
      exit ${toString switchExit}
    ''}
  '';

  # The journal: what init and activation logged, as `journalctl
  # --no-pager [--lines=N] [--follow]` prints it.
  journalctl = builtins.toFile "journalctl" ''
    ${shebang}
    lines= follow=
    for argument; do
      case "$argument" in
        --lines=*) lines=''${argument#--lines=} ;;
        --follow) follow=1 ;;
      esac
    done
    [ -n "$follow" ] && exec ${busybox} tail -n "''${lines:-10}" -f /var/log/tiny.log
    [ -n "$lines" ] && exec ${busybox} tail -n "$lines" /var/log/tiny.log
    exec ${busybox} cat /var/log/tiny.log
  '';

  # What the helper asks systemctl, answered as systemd does:
  # `is-system-running [--wait]` (waits while the boot goes on), `list-jobs`,
  # and `--failed --plain --no-legend --no-pager`.
  systemctl = builtins.toFile "systemctl" ''
    ${shebang}
    case "$1" in
      is-system-running)
        while :; do
          read -r state < /var/lib/tiny/system-state 2>/dev/null || state=starting
          [ "$state" = starting ] && [ "$2" = --wait ] && { ${busybox} sleep 0.1; continue; }
          echo "$state"
          [ "$state" = running ] && exit 0 || exit 1
        done ;;
      list-jobs) ${busybox} cat /var/lib/tiny/jobs 2>/dev/null ;;
      *)
        while read -r unit || [ -n "$unit" ]; do
          [ -n "$unit" ] && echo "$unit loaded failed failed $unit"
        done < /var/lib/tiny/failed-units ;;
    esac
  '';
in
derivation {
  name = "tiny-system-${version}";
  system = builtins.currentSystem;
  builder = busybox;
  args = [ "sh" "-e" ./build.sh ];
  inherit init switchToConfiguration systemctl journalctl;
  extraPaths = lines (map toString extraPaths);
  passAsFile = [ "extraPaths" ];
}
