# Started when the host boots (the nixcloud-container-autostart service, after
# network.target). Create or update the container with this file:
#
#   nixcloud-container create autostartExample autostartExample.nix
{
  autostart = true; # starts this container after host has booted
  configuration = { pkgs, ip, name, ... }: {
    services.openssh.enable = true;
    services.openssh.ports = [ 22 ];
    networking.hostName = "autostartExample";
    environment.systemPackages = [ pkgs.dfc pkgs.vim ];
    system.stateVersion = "25.11";
  };
}
