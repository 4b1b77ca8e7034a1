# Makes a busybox binary usable as a Nix builder and returns the builder's path.
#
# busybox picks its applet from argv[0], and Nix runs a builder with argv[0]
# set to the builder's file name, so the binary must reach the store as a
# file called `busybox` inside a directory, not as a store path of its own.
#
# path: an absolute path to a busybox binary with symlinks resolved. A store
# path (nixpkgs' busybox, for instance) is used where it is, keeping its
# closure; any other file (Debian's busybox-static) is imported.
path:
let
  inStore = builtins.match "(${builtins.storeDir}/[^/]+)(/.*)" path;
in
if builtins.baseNameOf path != "busybox" then
  throw "busybox: '${path}' must be a file named busybox (with symlinks resolved)"
else if inStore != null then
  "${builtins.storePath (builtins.head inStore)}${builtins.elemAt inStore 1}"
else
  "${builtins.path {
    name = "busybox-static";
    path = builtins.dirOf path;
    filter = file: _type: file == path;
  }}/busybox"
