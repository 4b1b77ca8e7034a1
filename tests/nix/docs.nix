# The reference pages of docs/ against what they describe (run by
# tests/nix/run): docs/host-options.md against the host module and
# lib/host-defaults.json (every option of the module is a row of the page's
# tables, with the type and default the module gives it; every key of the
# host file is named, with the default the helper compiles in), and
# docs/container-file.md against lib/spec.nix (every key of a container file
# has a section).
{ lib, h }:
let
  inherit (lib) attrNames concatStringsSep elemAt filter hasPrefix hasInfix splitString;
  inherit (h) eq that hostDefaults;

  page = builtins.readFile ../../docs/host-options.md;
  containerFilePage = builtins.readFile ../../docs/container-file.md;
  spec = import ../../lib/spec.nix;
  formats = builtins.fromJSON (builtins.readFile ../../lib/formats.json);

  # The headers of the page's two kinds of table.
  optionHeader = "| option (`nixcloud.containers.…`) | host file key | type | default | meaning |";
  keyHeader = "| host file key | set by the module from | type | default | meaning |";

  # Every row of a table, as its cells, with the header of its table.
  cellsOf = line: map lib.strings.trim (splitString " | " (lib.removeSuffix " |" (lib.removePrefix "| " line)));
  rows = (builtins.foldl'
    (table: line:
      if !(hasPrefix "| " line) then table // { header = null; }
      else if table.header == null then table // { header = line; }
      else if hasPrefix "| ---" line then table
      else table // { rows = table.rows ++ [ { inherit (table) header; cells = cellsOf line; } ]; })
    { header = null; rows = [ ]; }
    (splitString "\n" page)).rows;

  # `code` and what follows it in a cell, or null where it starts otherwise.
  code = cell:
    let parts = builtins.match "`([^`]*)`(.*)" cell; in
    if parts == null then null else { text = elemAt parts 0; rest = elemAt parts 1; };

  optionRows = map
    (row: {
      name = (code (elemAt row.cells 0)).text;
      key = code (elemAt row.cells 1);
      type = elemAt row.cells 2;
      default = elemAt row.cells 3;
    })
    (filter (row: row.header == optionHeader) rows);
  keyRows = map
    (row: { key = code (elemAt row.cells 0); default = elemAt row.cells 3; })
    (filter (row: row.header == keyHeader) rows);

  # The module's options as the page writes them: the type as the module
  # system describes it, with the patterns of lib/formats.json by their
  # name; the default as the NixOS manual shows it, on one line.
  oneLine = text: concatStringsSep " " (filter (word: word != "") (splitString " " (builtins.replaceStrings [ "\n" ] [ " " ] text)));
  typeText = type: builtins.foldl'
    (text: name: builtins.replaceStrings
      [ "string matching the pattern ${formats.${name}.pattern}" ] [ "`${name}` (lib/formats.json)" ] text)
    type (attrNames formats);
  prefix = "nixcloud.containers.";
  options = map
    (option: {
      name = lib.removePrefix prefix option.name;
      type = typeText option.type;
      default = if option ? default then "`${oneLine option.default.text}`" else "—";
    })
    (filter (option: hasPrefix prefix option.name && option.visible && !(hasInfix "._module." option.name)) h.hostOptions);

  byName = list: builtins.listToAttrs (map (entry: { inherit (entry) name; value = entry; }) list);
  documented = byName optionRows;
  declared = byName options;
  namesOf = list: lib.sort (a: b: a < b) (map (entry: entry.name) list);
  # What differs between the page's row and the module's option, by name.
  differences = field: filter (difference: difference.page != difference.module)
    (map (name: { inherit name; page = documented.${name}.${field}; module = declared.${name}.${field}; })
      (filter (name: documented ? ${name}) (attrNames declared)));

  # The host file's keys the page names, as paths; those with an attribute
  # name (`<name>`) or a list element (`*`) in them stand for many.
  keyPaths = map (row: splitString "." row.key.text) (filter (row: row.key != null) (optionRows ++ keyRows));
  isPattern = path: lib.any (part: part == "<name>" || part == "*") path;
  # A row whose cell is the key alone says that the option's value is the
  # key's as it is, so that both have the same default.
  exactRows = filter (row: row.key != null && row.key.rest == "" && lib.hasAttrByPath (splitString "." row.key.text) hostDefaults)
    (optionRows ++ keyRows);
  shown = value: "`${lib.generators.toPretty { } value}`";

  # The host file of a host that sets every option the helper reads.
  everythingHost = h.evalHost [ {
    nixcloud.containers = {
      enable = true;
      internetInterface = "enp0s3";
      ipv6 = { enable = true; ipv6InternetInterfaceAddress = "2001:db8::1"; ipv6Prefix = "2001:db8::"; };
      extraBridges.br0 = { address = "10.10.0.1"; prefixLength = 16; };
      allowedHostPaths."/srv/media" = { };
      allowedForwardPorts = [ { from = 8000; to = 8999; } ];
      allowedEgress = [ { network = "192.168.1.0/24"; ports = [ { from = 5432; to = 5432; } ]; } ];
      allowedDevices = [ "tun" ];
      limits = { memory = { max = "2G"; high = "1G"; }; cpu = { weight = 100; max = 1.5; }; pids.max = 4096; io.weight = 100; };
      builds.memory = "4G";
      dataDir = "/srv/data";
    };
  } ];
  everything = builtins.fromJSON everythingHost.environment.etc."nixcloud-container/host.json".text;
  # One schema: an option the helper reads is its host file key, by the
  # same name, holding the value as the option is set (sizes with their
  # units, limits grouped as the options are). The rows that say otherwise:
  renamedRows = filter (row: row.key != null && row.key.text != row.name) optionRows;
  asSetRows = filter (row: row.key != null && row.key.rest == "" && row.key.text == row.name
    && !(isPattern (splitString "." row.name))) optionRows;
  writtenOtherwise = filter
    (row: let path = splitString "." row.name; in
      builtins.toJSON (lib.attrByPath path null everything)
        != builtins.toJSON (lib.getAttrFromPath path everythingHost.nixcloud.containers))
    asSetRows;
  # Its keys, down to the values, or to the keys the page names as a whole.
  hostFileKeys = path: value:
    if builtins.isAttrs value && !(lib.elem path keyPaths)
    then lib.concatLists (lib.mapAttrsToList (name: hostFileKeys (path ++ [ name ])) value)
    else [ path ];
  show = path: concatStringsSep "." path;

  # The keys docs/container-file.md gives a section (`### \`key\``) below
  # "## The keys", and the network keys it lists there (`- \`network.key\``).
  keysPart = lib.head (splitString "\n## " (lib.elemAt (splitString "\n## The keys\n" containerFilePage) 1));
  quotedAfter = start: line:
    let parts = builtins.match "${start}`([^`]*)`.*" line; in
    if parts == null then [ ] else parts;
  keyLines = splitString "\n" keysPart;
  sectionKeys = lib.concatMap (quotedAfter "### ") keyLines;
  networkKeys = map (lib.removePrefix "network.")
    (filter (hasPrefix "network.") (lib.concatMap (quotedAfter "- ") keyLines));
  sorted = lib.sort (a: b: a < b);
in
{
  host-options-page = [
    (eq "options the page lacks" (lib.subtractLists (namesOf optionRows) (namesOf options)) [ ])
    (eq "rows of options the module does not have" (lib.subtractLists (namesOf options) (namesOf optionRows)) [ ])
    (eq "options with two rows" (lib.length optionRows) (lib.length (attrNames documented)))
    (eq "types that differ from the module's" (differences "type") [ ])
    (eq "defaults that differ from the module's" (differences "default") [ ])
    (eq "host file keys the page lacks"
      (map show (lib.subtractLists keyPaths (hostFileKeys [ ] everything))) [ ])
    (eq "host file keys the helper does not read"
      (map show (filter (path: !(isPattern path) && !(lib.hasAttrByPath path everything)) keyPaths)) [ ])
    (eq "keys with an attribute name or a list element that the host file does not have"
      (map show (filter (path: isPattern path && !(hostDefaults ? ${lib.head path})) keyPaths)) [ ])
    (eq "options the host file names otherwise (the IPv6 prefix is derived from them)"
      (map (row: row.name) renamedRows) [ "ipv6.enable" "ipv6.ipv6Prefix" "ipv6.ipv6PrefixLength" ])
    (eq "options the host file holds otherwise than as they are set"
      (map (row: row.name) writtenOtherwise) [ ])
    (eq "defaults that differ from lib/host-defaults.json"
      (filter (row: row.default != shown (lib.getAttrFromPath (splitString "." row.key.text) hostDefaults)) exactRows) [ ])
  ];

  container-file-page = [
    (eq "a section for each key of a container file (lib/spec.nix: containerKeys)"
      (sorted sectionKeys) (sorted spec.containerKeys))
    (eq "each key of `network` listed in its section (lib/spec.nix: networkKeys)"
      (sorted networkKeys) (sorted spec.networkKeys))
  ];

  # The flake says which nixpkgs it pins, and the README says it too, and how
  # a system replaces it.
  readme-flake = let
    readme = builtins.readFile ../../README.md;
    pinned = (import ../../flake.nix).inputs.nixpkgs.url;
  in [
    (that "the README names the flake's own nixpkgs" readme "a text naming `${pinned}` as the flake's own input"
      (hasInfix "This flake's own `nixpkgs` input is `${pinned}`"))
    (that "the README's flake follows the system's nixpkgs" readme "an input of nixcloud-container with inputs.nixpkgs.follows"
      (hasInfix "url = \"github:nixcloud/nixcloud-container\";\n    inputs.nixpkgs.follows = \"nixpkgs\";"))
  ];
}
