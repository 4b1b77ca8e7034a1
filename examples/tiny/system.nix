# A tiny guest system built by a real Nix build without nixpkgs: the host's
# static busybox, an init and a switch-to-configuration. It boots under LXC in
# milliseconds, so the demo and the tests can run many of them.
#
# version:         recorded at boot and at activation, so a test can tell
#                  which generation runs.
# failActivation:  make switch-to-configuration fail (exit 3), for tests of
#                  failed updates.
{ version ? "1", failActivation ? false }:
let
  busybox = import ../../lib/host-busybox.nix;
  shebang = "#!${busybox} sh";

  init = builtins.toFile "init" ''
    ${shebang}
    # PID 1: installs busybox's applets, records the boot, then idles until
    # lxc-stop's signal (SIGPWR, or SIGRTMIN+3 = 37 as sent to systemd). The
    # kernel drops signals to a PID 1 without a handler, so the trap comes first.
    trap 'exit 0' PWR TERM INT 37
    ${busybox} mkdir -p /bin /tmp /var/lib/tiny
    ${busybox} --install -s /bin 2>/dev/null
    export PATH=/bin
    echo ${version} > /var/lib/tiny/booted
    while :; do sleep 3600 & wait $!; done
  '';

  switchToConfiguration = builtins.toFile "switch-to-configuration" ''
    ${shebang}
    # Activation, as NixOS's switch-to-configuration <action> would do it.
    ${if failActivation then ''
      echo "activation of version ${version} failed on purpose" >&2
      exit 3
    '' else ''
      echo "$1 ${version}" > /var/lib/tiny/activated
    ''}
  '';
in
derivation {
  name = "tiny-system-${version}";
  system = builtins.currentSystem;
  builder = busybox;
  args = [ "sh" "-e" ./build.sh ];
  inherit init switchToConfiguration;
}
