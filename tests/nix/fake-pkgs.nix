# Stand-ins for the packages the modules name: attribute sets that the module
# system takes for derivations, and that nothing ever builds.
{ systemdVersion ? "257.5" }:
let
  fake = name: {
    type = "derivation";
    inherit name;
    outPath = "/nix/store/00000000000000000000000000000000-${name}";
  };
in
{
  inherit fake;

  # Where the modules find nixpkgs' files (eval-config.nix): the stand-in.
  path = ../fake-nixpkgs;
  stdenv.hostPlatform.system = "x86_64-linux";

  lxc = fake "lxc-7.0.0";
  nix = fake "nix-2.31.0";
  vim = fake "vim-9.1";
  dfc = fake "dfc-3.1.1";

  systemd = fake "systemd-${systemdVersion}" // {
    version = systemdVersion;
    overrideAttrs = f: fake "systemd-${systemdVersion}-patched" // {
      version = systemdVersion;
      inherit (f { patches = [ ]; }) patches;
    };
  };

  # A script as a package: its name and text, for checks.
  writeShellScriptBin = name: text: fake name // { inherit text; };
  # A file as a package: its name and text, for checks.
  writeText = name: text: fake name // { inherit text; };

  # What the host module's `package` default calls; records its arguments.
  callPackage = file: args: fake "nixcloud-container" // {
    callPackageFile = toString file;
    callPackageArgs = builtins.attrNames args;
    lxcName = args.lxc.name;
    nixName = args.nix.name;
  };
}
