# Runs under busybox sh as the builder of generation.nix; no PATH is set.
bb=$builder
if [ ! -x "$guestSystem/init" ]; then
  echo "the system $guestSystem has no executable init" >&2
  exit 1
fi
$bb mkdir "$out"
$bb ln -s "$guestSystem" "$out/system"
$bb cp "$lxcConfPath" "$out/lxc.conf"
$bb cp "$specJsonPath" "$out/spec.json"
