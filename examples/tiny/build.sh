# Builder of system.nix, run by busybox sh; no PATH is set.
bb=$builder
$bb mkdir -p "$out/bin" "$out/sw/bin"
$bb cp "$init" "$out/init"
$bb cp "$switchToConfiguration" "$out/bin/switch-to-configuration"
$bb cp "$systemctl" "$out/sw/bin/systemctl"
$bb cp "$journalctl" "$out/sw/bin/journalctl"
$bb chmod 555 "$out/init" "$out/bin/switch-to-configuration" "$out/sw/bin/systemctl" "$out/sw/bin/journalctl"
$bb cp "$extraPathsPath" "$out/extra-paths"
