# The seed's first container: NixOS with vim. As root on the host:
#
#   nixcloud-container create example example.nix
#   nixcloud-container start example
#   nixcloud-container login example
{ pkgs, ip, name, ... }:
{
  environment.systemPackages = [ pkgs.vim ];
  # The release whose defaults this configuration expects. Without it the
  # container keeps the release it was created with (`state --json`).
  system.stateVersion = "25.11";
}
