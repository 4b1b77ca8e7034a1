# Builder of system.nix, run by busybox sh; no PATH is set.
bb=$builder
$bb mkdir -p "$out/bin" "$out/systemd/bin" "$out/sw/bin"
$bb cp "$init" "$out/init"
$bb cp "$switchToConfiguration" "$out/bin/switch-to-configuration"
$bb cp "$systemctl" "$out/systemd/bin/systemctl"
$bb cp "$journalctl" "$out/systemd/bin/journalctl"
$bb chmod 555 "$out/init" "$out/bin/switch-to-configuration" "$out/systemd/bin/systemctl" "$out/systemd/bin/journalctl"
# As NixOS's sw/bin holds its systemd's tools.
$bb ln -s ../../systemd/bin/systemctl "$out/sw/bin/systemctl"
$bb ln -s ../../systemd/bin/journalctl "$out/sw/bin/journalctl"
$bb cp "$extraPathsPath" "$out/extra-paths"
