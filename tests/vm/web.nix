# The VM test's web container: a host directory bound in (bindMounts), served
# over HTTP on port 80, which the host forwards from its port 8080
# (forwardPorts), and the peer of `db` (network.peers).
{
  network = {
    ip = "10.101.0.30";
    peers = [ "db" ];
  };
  bindMounts."/srv/www" = { hostPath = "/srv/shared/www"; };
  forwardPorts = [ { hostPort = 8080; containerPort = 80; } ];
  configuration = { pkgs, ... }: {
    systemd.services.web = {
      description = "nixcloud-container test web server";
      wantedBy = [ "multi-user.target" ];
      serviceConfig.ExecStart = "${pkgs.busybox}/bin/httpd -f -p 80 -h /srv/www";
    };
  };
}
