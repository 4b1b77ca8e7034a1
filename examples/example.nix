# The seed's first container: NixOS with vim. As root on the host:
#
#   nixcloud-container create example example.nix
#   nixcloud-container start example
#   nixcloud-container login example
{ pkgs, ip, name, ... }:
{
  environment.systemPackages = [ pkgs.vim ];
}
