# A file of a nixpkgs source tree: `<nixpkgs>` (a path), a path, or a
# flake's `nixpkgs` (a store path). A path is joined, not interpolated:
# "${<nixpkgs>}" would copy all of nixpkgs into the store on every evaluation.
nixpkgs: relative:
if builtins.typeOf nixpkgs == "path" then nixpkgs + "/${relative}"
else "${nixpkgs}/${relative}"
