# The nixcloud-container helper: pkgs.callPackage ./package.nix { }
{
  lib,
  stdenv,
  rustPlatform,
  rustc,
  makeWrapper,
  installShellFiles,
  lxc,
  nix,
  util-linux,
  nftables,
  apparmor-parser,
  busybox,
}:
let
  cargoToml = lib.importTOML ./rust-helper/Cargo.toml;

  # The crate's source, the helper's Nix library and the tools the unit
  # tests run, declared once for this file and tests/package-source.
  source = import ./package-source.nix;
in
# The locked crates need the Rust that Cargo.toml names (nixpkgs 25.05 or newer).
assert lib.assertMsg (lib.versionAtLeast rustc.version cargoToml.package.rust-version)
  "nixcloud-container needs Rust ${cargoToml.package.rust-version} or newer (nixpkgs 25.05 or newer); this nixpkgs has ${rustc.version}";
rustPlatform.buildRustPackage {
  pname = "nixcloud-container";
  inherit (cargoToml.package) version;

  # The repository with only what the build and the unit tests read.
  src = source.crate;
  sourceRoot = "source/rust-helper";
  cargoLock.lockFile = ./rust-helper/Cargo.lock;

  # Read by option_env! in src/settings.rs: where the helper finds cli.nix.
  env.NIXCLOUD_CONTAINER_NIX_LIB = "${source.nixLibrary}/lib";

  nativeBuildInputs = [ makeWrapper installShellFiles ];

  # Only the unit tests: the integration tests (tests/) drive real LXC
  # containers and a real Nix store, which the build sandbox has not.
  cargoTestFlags = [ "--bins" ];
  nativeCheckInputs = map (tool: { inherit util-linux; }.${tool}) source.checkTools;

  # The tools it drives, from the same package set (util-linux: unshare, which
  # gives each Nix build a PID namespace of its own; nftables: nft, for the
  # filter between peers; apparmor_parser, which lxc-start runs for the
  # profile it generates on AppArmor hosts); the busybox that builds
  # generations (a store path, so generations keep it alive) unless the
  # environment names another.
  # The man page and the completions come from the command line's definition.
  postInstall = lib.optionalString (stdenv.buildPlatform.canExecute stdenv.hostPlatform) ''
    $out/bin/nixcloud-container help --man > nixcloud-container.1
    installManPage nixcloud-container.1
    installShellCompletion --cmd nixcloud-container \
      --bash <($out/bin/nixcloud-container completions bash) \
      --zsh <($out/bin/nixcloud-container completions zsh) \
      --fish <($out/bin/nixcloud-container completions fish)
  '' + ''
    wrapProgram $out/bin/nixcloud-container \
      --prefix PATH : ${lib.makeBinPath [ lxc nix util-linux nftables apparmor-parser ]} \
      --set-default NIXCLOUD_CONTAINER_BUSYBOX ${busybox}/bin/busybox
  '';

  meta = {
    description = cargoToml.package.description;
    homepage = cargoToml.package.repository;
    license = lib.licenses.mit;
    mainProgram = "nixcloud-container";
    platforms = lib.platforms.linux;
  };
}
