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
if [ -s "$rootLxcConfPath" ]; then
  $bb cp "$rootLxcConfPath" "$out/$rootLxcConfName"
fi
# The closure of the system, from the graph Nix wrote (exportReferencesGraph),
# which holds for each path: the path, its deriver (an empty line here), the
# number of its references, the references.
$bb awk '
  BEGIN { expect = "path" }
  expect == "path" { print; expect = "deriver"; next }
  expect == "deriver" { expect = "count"; next }
  expect == "count" { left = $0; expect = left > 0 ? "reference" : "path"; next }
  { if (--left == 0) expect = "path" }
' system-graph >closure.unsorted
$bb sort closure.unsorted >"$out/$closureName"
