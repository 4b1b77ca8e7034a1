# A static busybox for systems built without nixpkgs (examples/tiny): the
# one the helper builds generations with when it evaluates a container file
# (`<nixcloud-busybox>`, a store path; restricted evaluation reads nothing
# else of the host), else the host's (Debian and Ubuntu: package
# busybox-static), for `nix-build examples/tiny/system.nix` by hand.
let
  fromHelper = builtins.any (entry: entry.prefix == "nixcloud-busybox") builtins.nixPath;
  # Where a store path keeps its busybox: at its top (the helper's import of
  # a host busybox) or in bin/ (nixpkgs' package).
  inStore = root:
    let found = builtins.filter builtins.pathExists [ "${root}/busybox" "${root}/bin/busybox" ]; in
    if found == [ ] then throw "${root} holds no busybox" else builtins.head found;
  # On merged-/usr systems /bin is a symlink, and importing needs the real directory.
  onHost = builtins.filter builtins.pathExists [ "/usr/bin/busybox" "/bin/busybox" ];
in
if fromHelper then
  import ./busybox.nix (inStore (toString <nixcloud-busybox>))
else if onHost == [ ] then
  throw "no busybox found at /usr/bin/busybox or /bin/busybox (Debian: apt-get install busybox-static)"
else
  import ./busybox.nix (builtins.head onHost)
