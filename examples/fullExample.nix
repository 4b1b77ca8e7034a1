# Everything at once: started with the host, NATed internet access (an
# `internet` interface on brNC-internet, addressed by the host's DHCP, IPv6
# too where the host has it on), and ssh on the hostonly address. The host
# needs nixcloud.containers.internetInterface (see host-configuration.nix).
#
#   nixcloud-container create full fullExample.nix
{
  autostart = true;
  network.enableNat = true;
  configuration = { pkgs, ip, name, ... }: {
    services.openssh.enable = true;
    environment.systemPackages = [ pkgs.vim ];
    system.stateVersion = "25.11";
  };
}
