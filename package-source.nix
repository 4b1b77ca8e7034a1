# What the helper's package (package.nix) is built and checked from, in one
# place: package.nix takes its sources and check tools from here, and
# tests/package-source builds the crate and runs its unit tests from exactly
# these sources with only these tools besides the compilers and stdenv's, so
# that a file the crate starts to read, or a tool its tests start to run,
# fails that test before it fails every NixOS user's build.
#
# Plain Nix without nixpkgs, so that the test evaluates the very sources the
# build gets: builtins.path with a filter, since nixpkgs' lib.fileset needs
# builtins.readFileType, which the Nix 2.8 of Debian 12 lacks.
let
  root = toString ./.;

  startsWith = prefix: text: builtins.substring 0 (builtins.stringLength prefix) text == prefix;

  # The files and directories (each with all below it) named in `paths`,
  # relative to this repository, copied into a store path `name` of their
  # own, laid out as here.
  only = name: paths: builtins.path {
    inherit name;
    path = ./.;
    filter = path: _type:
      let
        relative = builtins.substring (builtins.stringLength root + 1) (builtins.stringLength path) path;
      in
      builtins.any
        (wanted: relative == wanted || startsWith "${wanted}/" relative || startsWith "${relative}/" wanted)
        paths;
  };
in
rec {
  # Everything the crate's build and its unit tests read.
  crateFiles = [
    "rust-helper/Cargo.toml"
    "rust-helper/Cargo.lock"
    "rust-helper/src"
    # Compiled in with include_str! (formats.rs, settings.rs,
    # capabilities/limits/types.rs, capabilities/devices/types.rs,
    # capabilities/network/mod.rs, rules.rs, port_guard.rs, egress.rs,
    # capabilities/forward_ports/mod.rs, nix/build_network.rs).
    "lib/formats.json"
    "lib/ranges.json"
    "lib/limits.json"
    "lib/devices.json"
    "lib/host-defaults.json"
    "lib/isolate-port.sh"
    "lib/drop-forwards.sh"
    "lib/peers.nft"
    "lib/port-guard.nft"
    "lib/egress.nft"
    "lib/build-network.nft"
    # Compiled into unit tests, which compare the Rust side with them
    # (layout.rs, nix/build_network.rs).
    "lib/layout.nix"
    "lib/interface-names.json"
    "lib/generation.nix"
    "tests/nix/build-network.digest"
  ];

  # The helper's Nix library (lib/cli.nix and what it imports): modules/
  # beside lib/, because lib/nixos-system.nix imports ../modules/guest.nix,
  # and the examples, which container files reach as
  # <nixcloud-container/examples/...> (restricted evaluation allows this
  # directory and no other of the toolkit's).
  nixLibraryFiles = [ "lib" "modules" "examples" ];

  # What the unit tests run besides stdenv's tools (nixpkgs' attribute
  # names): util-linux for flock (guest_lock.rs's tests hold a lock as a
  # switch inside a guest does). coreutils (sleep, head, touch, mkfifo) is
  # stdenv's.
  checkTools = [ "util-linux" ];

  # The crate's source; the build's root is its rust-helper/ (sourceRoot
  # "source/rust-helper": the store path's name is the directory stdenv
  # unpacks it to).
  crate = only "source" crateFiles;

  nixLibrary = only "nixcloud-container-nix" nixLibraryFiles;
}
