# The database of webExample.nix: its data in a directory of its own on the
# host, reached by the container `web` (which names it too) and no other
# container.
#
#   nixcloud-container create db dbExample.nix
{
  bindMounts."/var/lib/postgresql" = { hostPath = "postgresql"; isReadOnly = false; };
  network.peers = [ "web" ];
  limits.memory = { max = "2G"; high = "1536M"; };
  configuration = { ... }: {
    services.postgresql = {
      enable = true;
      enableTCPIP = true;
      authentication = "host all all 10.101.0.0/16 scram-sha-256";
    };
    networking.firewall.allowedTCPPorts = [ 5432 ];
    system.stateVersion = "25.11";
  };
}
