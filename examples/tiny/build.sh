# Builder of system.nix, run by busybox sh; no PATH is set.
bb=$builder
$bb mkdir -p "$out/bin" "$out/sw/bin"
$bb cp "$init" "$out/init"
$bb cp "$switchToConfiguration" "$out/bin/switch-to-configuration"
$bb cp "$systemctl" "$out/sw/bin/systemctl"
$bb chmod 555 "$out/init" "$out/bin/switch-to-configuration" "$out/sw/bin/systemctl"
$bb cp "$extraPathsPath" "$out/extra-paths"
