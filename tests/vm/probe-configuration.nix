# The NixOS configuration of the VM test's probe container: one service that
# records which version of the configuration started it.
version:
{ ... }:
{
  systemd.services.probe = {
    description = "nixcloud-container test probe, version ${version}";
    wantedBy = [ "multi-user.target" ];
    script = ''
      echo ${version} > /run/probe
      exec sleep infinity
    '';
  };
}
