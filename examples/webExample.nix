# A web server that keeps its site in a directory of its own on the host,
# is reached through the host's port 8080, reaches the container `db`
# (dbExample.nix, which names it too) and no other, within limits. The host
# must allow the port (see host-configuration.nix):
#
#   nixcloud.containers.allowedForwardPorts = [ { from = 8000; to = 8999; } ];
#
#   nixcloud-container create web webExample.nix
#   nixcloud-container start web --wait
#   curl http://<the host's address>:8080/
{
  # <dataDir>/web/www on the host (owned by the container's root there),
  # writable inside as /var/www.
  bindMounts."/var/www" = { hostPath = "www"; isReadOnly = false; };
  forwardPorts = [ { hostPort = 8080; containerPort = 80; } ];
  network.peers = [ "db" ];
  limits = {
    memory.max = "1G";
    cpu.max = 1.5;
    pids.max = 2048;
  };
  configuration = { ... }: {
    services.nginx = {
      enable = true;
      virtualHosts.default.root = "/var/www";
    };
    networking.firewall.allowedTCPPorts = [ 80 ];
    system.stateVersion = "25.11";
  };
}
