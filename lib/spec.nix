# The container file format, defined once.
#
# A container file evaluates to one of:
#   - a NixOS module function:   { pkgs, ip, name, ... }: { ... }
#   - a container attribute set: { autostart ? false; nixDaemon ? false; wholeStore ? false;
#                                  ephemeral ? false; network ? { ... }; limits ? { ... };
#                                  configuration = <module>; }
#   - a container attribute set naming a ready system instead of a configuration:
#                                { autostart ? false; network ? { ... }; system = <store path>; }
#
# `fromValue` turns such a value into
#   { spec = <plain data that `nix-instantiate --eval --json` prints>;
#     configuration = <the NixOS module, or null>;
#     system = <the ready system, or null>; }
# The spec holds the settings, not what gets built: reading it never costs a
# NixOS evaluation (nixpkgs is not imported), nor an evaluation of `system`.
#
# A container file may come from someone who is not root on the host, so
# every setting is checked here against its type (lib/formats.json for the
# strings), and the helper checks the spec again when it reads it. What
# needs the host's state (is the address free, is the bridge one the host
# allows) is checked by the helper.
let
  inherit (builtins) all attrNames concatStringsSep elem filter hasContext isAttrs isBool isFunction
    isInt isList isString match storeDir substring toJSON typeOf;

  formats = import ./formats.nix;
  ranges = builtins.fromJSON (builtins.readFile ./ranges.json);
  # The host devices a container may ask for (lib/devices.json).
  deviceNames = map (device: device.name) (builtins.fromJSON (builtins.readFile ./devices.json));

  # A type: `check` says whether a value fits, `expected` says in words what fits.
  types = {
    bool = { check = isBool; expected = "true or false"; };
    # A string of a format of lib/formats.json.
    format = name: { check = formats.${name}.matches; expected = formats.${name}.description; };
    intBetween = low: high: {
      check = v: isInt v && v >= low && v <= high;
      expected = "an integer from ${toString low} to ${toString high}";
    };
    listOf = element: {
      check = v: isList v && all element.check v;
      expected = "a list of ${element.expected}";
    };
    enum = values: {
      check = v: elem v values;
      expected = "one of ${concatStringsSep ", " (map toJSON values)}";
    };
    either = one: other: {
      check = v: one.check v || other.check v;
      expected = "${one.expected}, or ${other.expected}";
    };
    port = types.intBetween 1 65535;
    any = { check = _: true; expected = "anything"; };
  };

  # An attribute set of the container file at `path` ("network",
  # "bindMounts./srv"), each attribute checked against `fields`
  # ({ <name> = { type; default; }; }).
  record = origin: path: fields: value:
    let bad = unknownKeys (attrNames fields) value; in
    if !(isAttrs value) then throw "${origin}: ${path} must be an attribute set, got ${typeOf value}"
    else if bad != [ ] then
      throw "${origin}: ${path}: unknown attribute '${builtins.head bad}' (known: ${concatStringsSep ", " (attrNames fields)})"
    else builtins.mapAttrs (key: f: field origin "${path}." value key f.type f.default) fields;

  # Host paths a container sees: `bindMounts.<path inside> = { hostPath;
  # isReadOnly; }`, as nixos-container has them. A relative hostPath is in
  # the container's own data directory; an absolute one must be one the
  # host allows (the helper checks).
  normalizeBindMounts = origin: value:
    if !(isAttrs value) then throw "${origin}: bindMounts must be an attribute set, got ${typeOf value}"
    else map
      (mountPoint:
        if !(formats.absolutePath.matches mountPoint) then
          throw "${origin}: bindMounts: ${show mountPoint} is not ${formats.absolutePath.description}"
        else { inherit mountPoint; } // record origin "bindMounts.${mountPoint}" {
          hostPath = { type = types.either (types.format "absolutePath") (types.format "relativePath"); default = throw "${origin}: bindMounts.${mountPoint}: hostPath is missing"; };
          isReadOnly = { type = types.bool; default = true; };
        } value.${mountPoint})
      (attrNames value);

  # The host address a forward takes connections to. The helper's DNAT
  # rules match only the host's own addresses; connections to loopback's are
  # never routed to a container (the kernel drops them as martians), and
  # 0.0.0.0/8, multicast (224.0.0.0/4) and the broadcast address are no
  # host's: a forward to one of them could never take a connection
  # (rust-helper/src/spec.rs ForwardAddress refuses the same).
  forwardAddress =
    let ipv4 = types.format "ipv4Address"; in
    {
      check = v: ipv4.check v && (
        let first = builtins.fromJSON (builtins.head (match "([0-9]+)[.].*" v)); in
        first != 0 && first != 127 && (first < 224 || first > 239) && v != "255.255.255.255");
      expected = "an IPv4 address of this host that connections can come to, like 192.0.2.1 (not 0.0.0.0/8, loopback 127.0.0.0/8, multicast 224.0.0.0/4 or 255.255.255.255)";
    };

  # Host ports forwarded to the container, as nixos-container's forwardPorts.
  normalizeForwardPorts = origin: value:
    if !(isList value) then throw "${origin}: forwardPorts must be a list, got ${typeOf value}"
    else builtins.genList
      (index:
        let
          forward = record origin "forwardPorts.${toString index}" {
            protocol = { type = types.enum [ "tcp" "udp" ]; default = "tcp"; };
            hostPort = { type = types.port; default = throw "${origin}: forwardPorts.${toString index}: hostPort is missing"; };
            containerPort = { type = types.port; default = null; };
            hostAddress = { type = forwardAddress; default = null; };
          } (builtins.elemAt value index);
        in
        forward // { containerPort = if forward.containerPort == null then forward.hostPort else forward.containerPort; })
      (builtins.length value);

  # Resource limits (`limits`, lib/limits.nix): each unit a type as above,
  # with `number` turning a value that fits into the spec's number.
  limitsTable = import ./limits.nix;
  units = limitsTable.units;
  limitTypes = {
    size = {
      check = v: (isInt v && v >= units.size.min)
        || (isString v && (match units.size.pattern v != null || match units.size.withSuffixPattern v != null));
      expected = ''a size: a positive number of bytes, or a string like "512M" or "2G" (''
        + concatStringsSep ", " (builtins.sort (a: b: units.size.suffixes.${a} < units.size.suffixes.${b}) (attrNames units.size.suffixes))
        + ": powers of 1024)";
      number = v:
        if isInt v then v
        else
          let
            parts = match "([0-9]+)(.?)" v;
            suffix = builtins.elemAt parts 1;
          in
          builtins.fromJSON (builtins.elemAt parts 0) * (if suffix == "" then 1 else units.size.suffixes.${suffix});
    };
    weight = types.intBetween units.weight.min units.weight.max // { number = v: v; };
    cpus = {
      check = v: (isInt v || builtins.isFloat v) && v >= units.cpus.min && v <= units.cpus.max;
      expected = "a number of CPUs from ${toJSON units.cpus.min} up, like 1 or 1.5";
      number = v: builtins.floor (v * units.cpus.period + 0.5);
    };
    count = { check = v: isInt v && v >= units.count.min; expected = "a positive integer"; number = v: v; };
  };

  # Each limit's group and key in a container file, with its spec name and type.
  limits = builtins.foldl'
    (groups: limit: groups // {
      ${limit.group} = (groups.${limit.group} or { }) // {
        ${limit.key} = { inherit (limit) name; type = limitTypes.${limit.unit}; };
      };
    })
    { }
    limitsTable.limits;

  # `limits` of a container file (or the host's): every limit by its spec
  # name, a number or null where it is not set.
  normalizeLimits = origin: value:
    let
      # Each group's attributes checked, then turned into their numbers.
      group = groupName: definitions:
        let
          checked = record origin "limits.${groupName}"
            (builtins.mapAttrs (_: definition: { inherit (definition) type; default = null; }) definitions)
            (value.${groupName} or { });
        in
        builtins.listToAttrs (map
          (key: {
            inherit (definitions.${key}) name;
            value = if checked.${key} == null then null else definitions.${key}.type.number checked.${key};
          })
          (attrNames definitions));
      groups = record origin "limits" (builtins.mapAttrs (_: _: { type = types.any; default = null; }) limits) value;
    in
    builtins.deepSeq groups
      (builtins.foldl' (all: groupName: all // group groupName limits.${groupName}) { } (attrNames limits));

  # How a rejected value is shown: briefly, and on one line.
  show = value:
    if isString value || isInt value || builtins.isFloat value || isBool value || (isList value && all isString value) then
      let text = toJSON value; in
      if builtins.stringLength text > 60 then "${substring 0 60 text}...\"" else text
    else "a ${typeOf value}";

  # Keys the container file sets and the format does not know.
  unknownKeys = allowed: attrs: filter (k: !(elem k allowed)) (attrNames attrs);

  # The value of `attrs.${key}`, checked against `type`; `default` when it is
  # not set or null. Errors name the origin and the attribute: `prefix` is
  # the path of `attrs` in the container file ("" or "network.").
  field = origin: prefix: attrs: key: type: default:
    if !(attrs ? ${key}) || attrs.${key} == null then default
    else if type.check attrs.${key} then attrs.${key}
    else throw "${origin}: ${prefix}${key} ${show attrs.${key}} is not ${type.expected}";

  containerKeys = [
    "autostart" "nixDaemon" "wholeStore" "ephemeral" "network" "limits" "bindMounts" "forwardPorts"
    "devices" "configuration" "system"
  ];

  network = {
    bridge = types.format "interfaceName";
    ip = types.format "ipv4Address";
    # A container's subnet is its bridge's; 31 and 32 leave no room for it
    # (lib/ranges.json).
    prefixLength = types.intBetween ranges.prefixLength.min ranges.prefixLength.max;
    gateway = types.format "ipv4Address";
    enableNat = types.bool;
    # Containers this one may reach on a bridge they share, and be reached
    # by, where they name this one too.
    peers = types.listOf (types.format "containerName");
  };

  isDerivation = v: isAttrs v && (v.type or null) == "derivation";

  # A store path as a string that keeps its context, so that whatever
  # depends on it also depends on the path (and keeps it from the GC). A
  # derivation must be a real one: its output path a store path that carries
  # its derivation with it. Anything else must name an existing store path
  # (symlinks such as ./result are followed), which restricted evaluation
  # allows only where the helper allows it (`create --system`).
  storePathOf = origin: value:
    let
      outPath = value.outPath or null;
      isStorePath = isString outPath && match "${storeDir}/[0-9a-z]{32}-[^/]+" outPath != null;
    in
    if isDerivation value then
      if isStorePath && hasContext outPath then outPath
      else throw "${origin}: system is not a derivation Nix built (its outPath is ${show outPath})"
    else if isString value || typeOf value == "path" then builtins.storePath (toString value)
    else throw "${origin}: system must be a derivation or a store path, got ${typeOf value}";

  normalizeNetwork = origin: record origin "network" (builtins.mapAttrs
    (key: type: { inherit type; default = networkDefaults.${key}; })
    network);
  networkDefaults = { bridge = null; ip = null; prefixLength = null; gateway = null; enableNat = false; peers = [ ]; };

  fromAttrs = origin: attrs:
    let bad = unknownKeys containerKeys attrs; in
    if bad != [ ] then
      throw ("${origin}: unknown attribute '${builtins.head bad}' (a container file sets "
        + "${concatStringsSep ", " containerKeys}; a bare NixOS module must be a function "
        + "{ pkgs, ip, name, ... }: { ... })")
    else if attrs ? configuration && attrs ? system then
      throw "${origin}: set either configuration or system, not both"
    else if !(attrs ? configuration) && !(attrs ? system) then
      throw "${origin}: set configuration (a NixOS module) or system (a store path with an init)"
    else {
      spec = {
        kind = if attrs ? system then "system" else "nixos";
        autostart = field origin "" attrs "autostart" types.bool false;
        # Nix inside through the host's nix-daemon, where the host allows it.
        nixDaemon = field origin "" attrs "nixDaemon" types.bool false;
        # The host's whole store inside instead of the closure, where the host allows it.
        wholeStore = field origin "" attrs "wholeStore" types.bool false;
        # Its root starts empty at every start (capabilities/ephemeral/ in the helper).
        ephemeral = field origin "" attrs "ephemeral" types.bool false;
        network = normalizeNetwork origin (attrs.network or { });
        limits = normalizeLimits origin (attrs.limits or { });
        bindMounts = normalizeBindMounts origin (attrs.bindMounts or { });
        forwardPorts = normalizeForwardPorts origin (attrs.forwardPorts or [ ]);
        # Host devices inside, where the host allows them.
        devices = field origin "" attrs "devices" (types.listOf (types.enum deviceNames)) [ ];
      };
      configuration = attrs.configuration or null;
      system = if attrs ? system then storePathOf origin attrs.system else null;
    };
in
{
  inherit containerKeys normalizeLimits;
  # A size (a number of bytes, or "4G") in bytes: for the host module's sizes.
  sizeInBytes = limitTypes.size.number;
  networkKeys = attrNames network;

  # origin: how errors name the value, e.g. "container file /etc/containers/web.nix".
  fromValue = origin: value:
    if isFunction value then fromAttrs origin { configuration = value; }
    else if isAttrs value then fromAttrs origin value
    else throw "${origin}: must evaluate to a NixOS module function or an attribute set, got ${typeOf value}";

  # `create --system <path>`: a ready system with every other setting at its default.
  fromSystemPath = path: fromAttrs "system ${path}" { system = path; };

  # An imported generation (the helper's `import`): `system`, the store path
  # it was built around where it was exported, and `spec`, the spec recorded
  # beside it (the helper's JSON of it: unset limits left out). An export may
  # come from anywhere, so the spec is checked as a container file's: turned
  # back into the container attribute set it stands for and normalized
  # again, which must give it back.
  fromSpec = origin: system: spec:
    let
      given = if isAttrs spec then spec else throw "${origin}: the recorded spec is not an attribute set";
      limits = given.limits or { };
      limit = name: limits.${name} or null;
      asFile = {
        inherit system;
        autostart = given.autostart or null;
        nixDaemon = given.nixDaemon or null;
        wholeStore = given.wholeStore or null;
        ephemeral = given.ephemeral or null;
        network = given.network or { };
        # Each limit of the table back where a container file sets it: the
        # spec's number is a container file's value of its unit, but for
        # CPUs (a quota per period in the spec).
        limits = builtins.foldl'
          (groups: l: groups // {
            ${l.group} = (groups.${l.group} or { }) // {
              ${l.key} =
                if l.unit == "cpus" && limit l.name != null then limit l.name * 1.0 / units.cpus.period
                else limit l.name;
            };
          })
          { }
          limitsTable.limits;
        bindMounts = builtins.listToAttrs (map
          (bind: { name = bind.mountPoint or ""; value = removeAttrs bind [ "mountPoint" ]; })
          (given.bindMounts or [ ]));
        forwardPorts = given.forwardPorts or [ ];
        devices = given.devices or [ ];
      };
      normalized = (fromAttrs origin asFile).spec // { kind = given.kind or null; };
      filled = given // { limits = builtins.mapAttrs (_: _: null) normalized.limits // limits; };
    in
    if !(elem (given.kind or null) [ "nixos" "system" ]) then
      throw "${origin}: the recorded spec's kind is neither \"nixos\" nor \"system\""
    else if normalized != filled then
      throw "${origin}: the recorded spec is not one lib/spec.nix writes"
    else normalized;
}
