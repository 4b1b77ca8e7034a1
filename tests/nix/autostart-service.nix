# The host module's autostart service, as the shell it runs: for
# rust-helper/tests/integration/runtime.rs, which runs it against real LXC containers.
#
#   nix-instantiate --eval --strict --json tests/nix/autostart-service.nix \
#     --argstr nixpkgsLib <nixpkgs' lib> --argstr lxcPath <dir>
{ nixpkgsLib, lxcPath }:
let
  lib = import (/. + nixpkgsLib);
  harness = import ./harness.nix { inherit lib; };
  config = harness.evalHost [ { nixcloud.containers = { enable = true; inherit lxcPath; }; } ];
  service = config.systemd.services.nixcloud-container-autostart;
in
{
  inherit (service) script preStop;
}
