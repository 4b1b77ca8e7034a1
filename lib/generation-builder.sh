# Runs under busybox sh as the builder of generation.nix; no PATH is set.
# The names of the generation's files come from lib/layout.nix.
bb=$builder
if [ ! -x "$guestSystem/init" ]; then
  echo "the system $guestSystem has no executable init" >&2
  exit 1
fi
$bb mkdir "$out"
$bb ln -s "$guestSystem" "$out/$systemName"
$bb cp "$lxcConfPath" "$out/$lxcConfName"
$bb cp "$specJsonPath" "$out/$specJsonName"
