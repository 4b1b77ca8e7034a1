# What the files of the host module's options share: the defaults, the
# vocabularies of lib/ (read from the same tables as lib/spec.nix and the
# helper), and the types that more than one of them uses.
{ lib }:
let
  inherit (lib) types;
  formats = import ../../../lib/formats.nix;
  rangesTable = builtins.fromJSON (builtins.readFile ../../../lib/ranges.json);
  limitsTable = import ../../../lib/limits.nix;
  # The largest uid; the helper refuses delegated ids beyond it.
  maxId = 4294967295;
in
{
  # The defaults of every option the helper reads from the host file. The
  # helper compiles the same file in, so that the module and the helper never
  # disagree.
  defaults = builtins.fromJSON (builtins.readFile ../../../lib/host-defaults.json);

  # The resource limits (lib/limits.nix).
  inherit limitsTable;

  # The host devices containers may ask for (lib/devices.json): each with
  # its name, node and use.
  devices = builtins.fromJSON (builtins.readFile ../../../lib/devices.json);

  inherit maxId;

  # A size: bytes, or a number with K, M, G or T (powers of 1024), as
  # lib/spec.nix reads it.
  size = types.either types.ints.positive (types.strMatching limitsTable.units.size.withSuffixPattern);

  # The ranges of lib/ranges.json (the helper checks the same): a type for
  # each, up to the largest id where the table gives no maximum.
  ranges = builtins.mapAttrs (_: range: types.ints.between range.min (range.max or maxId)) rangesTable;

  ipv4Address = types.strMatching formats.ipv4Address.pattern;
  # The names the helper accepts for bridges (lib/formats.json).
  interfaceName = types.strMatching formats.interfaceName.pattern;
}
