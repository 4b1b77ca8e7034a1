# systemd.services, systemd.targets and systemd.paths as NixOS declares them, for the
# stubs: the unit options with NixOS's types (read in nixpkgs'
# nixos/lib/systemd-unit-options.nix: sharedOptions, commonUnitOptions,
# stage2CommonUnitOptions, serviceOptions, stage2ServiceOptions; and
# nixos/lib/systemd-lib.nix: unitNameType, checkUnitConfig), so that an
# unknown option or a value of the wrong type fails the evaluation as on
# NixOS. Beyond NixOS, a key of serviceConfig, unitConfig or pathConfig that systemd
# does not know (systemd-directives.nix) fails too: NixOS writes it into the
# unit, where systemd ignores it, and the setting is silently lost.
{ lib, pkgs, ... }:
let
  inherit (lib) mkIf mkMerge mkOption types;

  directives = import ./systemd-directives.nix;

  opt = type: default: mkOption { inherit type default; };

  # systemd-lib.nix's unitNameType.
  unitName = types.strMatching "[a-zA-Z0-9@%:_.\\-]+[.](service|socket|device|mount|automount|swap|target|path|timer|scope|slice)";
  unitNames = opt (types.listOf unitName) [ ];

  # systemd-unit-options.nix's unitOption: lists (repeated directives) are
  # concatenated, other values must agree.
  unitOption = lib.mkOptionType {
    name = "systemd option";
    merge = loc: defs:
      let
        defs' = lib.filterOverrides defs;
      in
      if lib.any (def: lib.isList def.value) defs' then lib.concatMap (def: lib.toList def.value) defs'
      else lib.mergeEqualOption loc defs';
  };

  # The keys of a [section] that systemd knows: its directives, and the X-
  # ones it leaves to others (NixOS's X-Restart-Triggers among them).
  knownIn = section: key: lib.elem key directives.${section} || lib.hasPrefix "X-" key;

  # attrsOf unitOption whose keys must be `section`'s, and whose values
  # pass `check` (as checkUnitConfig applies it: to the values under
  # mkIf/mkOverride).
  sectionOf = section: check: types.addCheck (types.attrsOf unitOption) (attrs:
    let
      unknown = lib.filter (key: !knownIn section key) (lib.attrNames attrs);
      values = lib.mapAttrs (_: value: if lib.elem (value._type or "") [ "override" "if" ] then value.content else value) attrs;
    in
    if unknown != [ ] then
      throw "systemd knows no [${section}] directive ${lib.concatStringsSep ", " unknown} (tests/nix/systemd-directives.nix lists those it knows)"
    else check values);

  valueOneOf = key: allowed: values: !(values ? ${key}) || lib.elem values.${key} allowed;

  # checkService of systemd-unit-options.nix.
  serviceSection = sectionOf "Service" (values:
    valueOneOf "Type" [ "exec" "simple" "forking" "oneshot" "dbus" "notify" "notify-reload" "idle" ] values
    && valueOneOf "Restart" [ "no" "on-success" "on-failure" "on-abnormal" "on-abort" "always" ] values);

  # sharedOptions, commonUnitOptions and stage2CommonUnitOptions.
  unitOptions = {
    enable = opt types.bool true;
    wantedBy = unitNames;
    requiredBy = unitNames;
    aliases = unitNames;
    description = opt types.singleLineStr "";
    documentation = opt (types.listOf types.str) [ ];
    requires = unitNames;
    wants = unitNames;
    upholds = unitNames;
    after = unitNames;
    before = unitNames;
    bindsTo = unitNames;
    partOf = unitNames;
    conflicts = unitNames;
    requisite = unitNames;
    onFailure = unitNames;
    onSuccess = unitNames;
    unitConfig = opt (sectionOf "Unit" (_: true)) { };
    startLimitBurst = mkOption { type = types.int; };
    startLimitIntervalSec = mkOption { type = types.int; };
    restartTriggers = opt (types.listOf types.unspecified) [ ];
    reloadTriggers = opt (types.listOf unitOption) [ ];
  };

  # serviceOptions and stage2ServiceOptions, with the serviceConfig
  # entries NixOS makes of the scripts (so that a script beside its
  # directive conflicts here as it does there).
  service = { name, config, ... }: {
    options = unitOptions // {
      environment = opt (types.attrsOf (types.nullOr (types.oneOf [ types.str types.path types.package ]))) { };
      path = opt (types.listOf (types.oneOf [ types.package types.str ])) [ ];
      serviceConfig = opt serviceSection { };
      script = opt types.lines "";
      scriptArgs = opt types.str "";
      preStart = opt types.lines "";
      postStart = opt types.lines "";
      reload = opt types.lines "";
      preStop = opt types.lines "";
      postStop = opt types.lines "";
      restartIfChanged = opt types.bool true;
      reloadIfChanged = opt types.bool false;
      stopIfChanged = opt types.bool true;
      startAt = opt (types.either types.str (types.listOf types.str)) [ ];
    };
    config.serviceConfig =
      let
        job = suffix: text: "${pkgs.writeShellScriptBin "${name}-${suffix}" text}/bin/${name}-${suffix}";
      in
      mkMerge [
        (mkIf (config.preStart != "") { ExecStartPre = [ (job "pre-start" config.preStart) ]; })
        (mkIf (config.script != "") { ExecStart = "${job "start" config.script} ${config.scriptArgs}"; })
        (mkIf (config.postStart != "") { ExecStartPost = [ (job "post-start" config.postStart) ]; })
        (mkIf (config.reload != "") { ExecReload = job "reload" config.reload; })
        (mkIf (config.preStop != "") { ExecStop = job "pre-stop" config.preStop; })
        (mkIf (config.postStop != "") { ExecStopPost = job "post-stop" config.postStop; })
      ];
  };
in
{
  options.systemd = {
    services = opt (types.attrsOf (types.submodule service)) { };
    targets = opt (types.attrsOf (types.submodule { options = unitOptions; })) { };
    # pathOptions of systemd-unit-options.nix.
    paths = opt (types.attrsOf (types.submodule { options = unitOptions // { pathConfig = opt (sectionOf "Path" (_: true)) { }; }; })) { };
  };
}
