# The container file format, defined once.
#
# A container file evaluates to one of:
#   - a NixOS module function:   { pkgs, ip, name, ... }: { ... }
#   - a container attribute set: { autostart ? false; network ? { ... }; configuration = <module>; }
#   - a container attribute set naming a ready system instead of a configuration:
#                                { autostart ? false; network ? { ... }; system = <store path>; }
#
# `fromValue` turns such a value into
#   { spec = <plain data that `nix-instantiate --eval --json` prints>;
#     configuration = <the NixOS module, or null>;
#     system = <the ready system, or null>; }
# The spec holds the settings, not what gets built: reading it never costs a
# NixOS evaluation (nixpkgs is not imported), nor an evaluation of `system`.
# Type errors are thrown here, naming the file; what needs the host's state
# (is the address free, is it inside the subnet) is checked by the helper.
let
  inherit (builtins) attrNames concatStringsSep elem filter isAttrs isBool isFunction
    isInt isString typeOf;

  containerKeys = [ "autostart" "network" "configuration" "system" ];
  networkKeys = [ "bridge" "ip" "prefixLength" "gateway" "enableNat" ];

  unknownKeys = allowed: attrs: filter (k: !(elem k allowed)) (attrNames attrs);

  # The value of `attr` in `attrs`, or `default`; thrown at when present with the wrong type.
  typed = origin: attrs: attr: check: expected: default:
    if !(attrs ? ${attr}) || attrs.${attr} == null then default
    else if check attrs.${attr} then attrs.${attr}
    else throw "${origin}: ${attr} must be ${expected}, got ${typeOf attrs.${attr}}";

  isDerivation = v: isAttrs v && (v.type or null) == "derivation";

  # A store path as a string that keeps its context, so that whatever
  # depends on it also depends on the path (and keeps it from the GC).
  # A derivation stays a derivation output; anything else must name an
  # existing store path (symlinks such as ./result are followed).
  storePathOf = origin: value:
    if isDerivation value then value.outPath
    else if isString value || typeOf value == "path" then builtins.storePath (toString value)
    else throw "${origin}: system must be a derivation or a store path, got ${typeOf value}";

  normalizeNetwork = origin: network:
    let
      where = "${origin}: network";
      bad = unknownKeys networkKeys network;
    in
    if !(isAttrs network) then throw "${where} must be an attribute set, got ${typeOf network}"
    else if bad != [ ] then
      throw "${where}: unknown attribute '${builtins.head bad}' (known: ${concatStringsSep ", " networkKeys})"
    else {
      bridge = typed where network "bridge" isString "a bridge name (a string)" null;
      ip = typed where network "ip" isString "an IPv4 address (a string like \"10.101.0.5\")" null;
      prefixLength = typed where network "prefixLength" isInt "an integer" null;
      gateway = typed where network "gateway" isString "an IPv4 address (a string)" null;
      enableNat = typed where network "enableNat" isBool "true or false" false;
    };

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
        autostart = typed origin attrs "autostart" isBool "true or false" false;
        network = normalizeNetwork origin (attrs.network or { });
      };
      configuration = attrs.configuration or null;
      system = if attrs ? system then storePathOf origin attrs.system else null;
    };
in
{
  inherit containerKeys networkKeys;

  # origin: how errors name the value, e.g. "container file /etc/containers/web.nix".
  fromValue = origin: value:
    if isFunction value then fromAttrs origin { configuration = value; }
    else if isAttrs value then fromAttrs origin value
    else throw "${origin}: must evaluate to a NixOS module function or an attribute set, got ${typeOf value}";

  # `create --system <path>`: a ready system with every other setting at its default.
  fromSystemPath = path: fromAttrs "system ${path}" { system = path; };
}
