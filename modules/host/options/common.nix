# What the files of the host module's options share: the defaults, and the
# types that more than one of them uses.
{ lib }:
let
  inherit (lib) types;
  formats = import ../../../lib/formats.nix;
in
{
  # The defaults of every option the helper reads from the host file. The
  # helper compiles the same file in, so that the module and the helper never
  # disagree.
  defaults = builtins.fromJSON (builtins.readFile ../../../lib/host-defaults.json);

  # The largest uid; the helper refuses delegated ids beyond it.
  maxId = 4294967295;

  # A size with K, M, G or T (powers of 1024), as lib/spec.nix reads it.
  sizeString = types.strMatching "[1-9][0-9]{0,6}[KMGT]";

  ipv4Address = types.strMatching formats.ipv4Address.pattern;
  # The names the helper accepts for bridges (lib/formats.json).
  interfaceName = types.strMatching formats.interfaceName.pattern;
}
