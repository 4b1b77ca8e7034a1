# A container file that imports a file beside it (tests/nix/host.nix: the
# same in v1/ and v2/, whose common.nix differ).
{ configuration = import ./common.nix; }
