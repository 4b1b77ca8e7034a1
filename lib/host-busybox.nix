# The host's static busybox (Debian and Ubuntu: package busybox-static), for
# container files that build a tiny system without nixpkgs. On merged-/usr
# systems /bin is a symlink, and importing needs the real directory.
let
  candidates = builtins.filter builtins.pathExists [ "/usr/bin/busybox" "/bin/busybox" ];
in
if candidates == [ ] then
  throw "no busybox found at /usr/bin/busybox or /bin/busybox (Debian: apt-get install busybox-static)"
else
  import ./busybox.nix (builtins.head candidates)
