# The helper's entry points. Every argument arrives as a string (--argstr),
# so no path, name or value the user gives is ever read as Nix code.
#
#   source:    JSON, one of { "file": "/abs/container.nix" },
#              { "system": "/nix/store/..." } or { "flake": "<flake ref>#<attr>" }
#   params:    JSON, what the helper resolved (generation.nix) - generation only
#   busybox:   a busybox binary in the store (busybox.nix) - generation only
#   fetchFrom: JSON, where a flake's source is (tenant-flake.nix's fetch) -
#              flakeSources only
#   fetched:   JSON, what flakeSources gave - a flake's spec, generation and
#              flakeInfo
#   spec:      JSON, the spec recorded with an imported generation, whose
#              source is then { "system": <the system it was built around> }
#              (the helper's import; spec.nix's fromSpec checks it) -
#              generation only
#
#   nix-instantiate --eval --strict --json cli.nix -A spec --argstr source ...
#   nix-build cli.nix -A generation --argstr source ... --argstr params ...
#
# The helper runs both in Nix's restricted evaluation mode (rust-helper/src/
# rust-helper/src/nix/mod.rs), without Nix's experimental features: a container file may be
# anyone's, and reads only its own directory, nixpkgs, its flake's inputs and
# this toolkit. A flake's sources are fetched before, by flakeSources, which
# evaluates nothing of the flake (tenant-flake.nix).
{ source, params ? "null", busybox ? "", fetchFrom ? "null", fetched ? "null", spec ? "null" }:
let
  specs = import ./spec.nix;
  src = builtins.fromJSON source;
  resolved = builtins.fromJSON params;

  origin =
    if src ? file then "container file ${src.file}"
    else if src ? flake then "flake ${src.flake}"
    else "system ${src.system}";

  # A container file and the files it imports from its own directory are
  # evaluated with a builtins.getEnv that fails and says why: restricted
  # evaluation would quietly give "" (as it does for what nixpkgs imports).
  containerImport =
    let
      dir = builtins.dirOf src.file;
      refuse = name: throw
        "${origin}: builtins.getEnv \"${name}\" is refused: container files cannot read the host's environment";
      scope = {
        builtins = builtins // { getEnv = refuse; import = importer; };
        __getEnv = refuse;
        import = importer;
      };
      importer = path:
        let text = toString path; in
        if builtins.substring 0 (builtins.stringLength dir + 1) text == "${dir}/"
        then scopedImport scope path
        else import path;
    in
    importer;

  tenantFlake = import ./tenant-flake.nix;
  # The flake's outputs, called with the sources flakeSources fetched.
  flakeOutputs = tenantFlake.call origin (builtins.fromJSON fetched);

  # `--flake <ref>#<attr>`: the flake's output nixcloudContainers.<attr> is a
  # container, in the format of a container file (spec.nix).
  flake =
    let
      parts = builtins.match "(.*)#([^#]+)" src.flake;
      outputs = flakeOutputs;
      attr = builtins.elemAt parts 1;
      containers = outputs.nixcloudContainers
        or (throw "${origin}: the flake has no output nixcloudContainers");
    in
    if parts == null then throw "${origin}: name the container as <flake ref>#<name>"
    else {
      inherit outputs;
      value = containers.${attr} or (throw "${origin}: the flake has no nixcloudContainers.${attr}");
    };

  recordedSpec = builtins.fromJSON spec;

  fromSource =
    if recordedSpec != null then
      let plain = specs.fromSystemPath src.system; in
      plain // { spec = specs.fromSpec origin plain.system recordedSpec; }
    else if src ? file then specs.fromValue origin (containerImport (/. + src.file))
    else if src ? flake then specs.fromValue origin flake.value
    else if src ? system then specs.fromSystemPath src.system
    else throw "cli.nix: the source names no file, flake or system";

  # A flake's container is built with the flake's own nixpkgs; anything else
  # with <nixpkgs>, which fails without saying how to provide it: look first.
  nixpkgs =
    let
      provides = entry: entry.prefix == "nixpkgs"
        || (entry.prefix == "" && builtins.pathExists "${entry.path}/nixpkgs");
    in
    if src ? flake && flake.outputs.inputs ? nixpkgs then flake.outputs.inputs.nixpkgs
    else if builtins.any provides builtins.nixPath then <nixpkgs>
    else throw ("${origin} has a NixOS configuration, which needs nixpkgs: pass "
      + "-n \"-I nixpkgs=/path/to/nixpkgs\" or set NIX_PATH"
      + (if src ? flake then ", or give the flake an input named nixpkgs" else ""));

  # The release of the nixpkgs a NixOS configuration is built with, which
  # `create` fixes as the container's system.stateVersion (as an installer
  # does; the configuration may still set its own): the parameters of a new
  # NixOS container get it here, and its first generation records it.
  release = builtins.replaceStrings [ "\n" ] [ "" ]
    (builtins.readFile (import ./nixpkgs-file.nix nixpkgs "lib/.version"));
  withStateVersion =
    if resolved == null || fromSource.spec.kind != "nixos" || (resolved.stateVersion or null) != null
      || recordedSpec != null
    then resolved
    else resolved // { stateVersion = release; };

  # An imported NixOS generation keeps the system it was built with.
  system =
    if fromSource.spec.kind == "system" || recordedSpec != null then fromSource.system
    else import ./nixos-system.nix {
      inherit nixpkgs;
      inherit (fromSource) configuration;
      params = withStateVersion;
    };
in
{
  inherit (fromSource) spec;

  # `sync --flake`: the flake's containers by name, and what they are built
  # from (its source with its flake.lock, which locks its inputs), without
  # evaluating any of them. The source names the flake alone: { "flake": "<ref>" }.
  flakeInfo =
    let outputs = flakeOutputs; in
    {
      containers = builtins.attrNames (outputs.nixcloudContainers
        or (throw "${origin}: the flake has no output nixcloudContainers"));
      inherit (outputs) narHash;
      path = outputs.outPath;
      # A generation holding one of these, or the source's store path,
      # depends on all of the source (rust-helper/src/nix/source_reads.rs). A
      # short revision is a prefix of the revision: its first seven
      # characters find both.
      identifiers =
        [ outputs.narHash ]
        # Shorter ones (a time of 0 or 1, where a fetcher knows none)
        # would be found anywhere and name nothing.
        ++ builtins.filter (id: builtins.stringLength id >= 7) [
          (builtins.substring 0 7 (outputs.rev or ""))
          (outputs.lastModifiedDate or "")
          (toString (outputs.lastModified or ""))
        ];
    };

  # A flake's source and its locked inputs, fetched and checked
  # (tenant-flake.nix): run by the helper with the flakes feature and
  # without restricted evaluation, evaluating no code of the flake.
  flakeSources = tenantFlake.fetch ({ inherit origin; } // builtins.fromJSON fetchFrom);

  generation = import ./generation.nix {
    builder = import ./busybox.nix busybox;
    inherit (fromSource) spec;
    inherit system;
    params = withStateVersion;
  };
}
