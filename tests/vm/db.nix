# The VM test's db container: the peer of `web`, and a container that names
# no one else (lone does not reach it).
{
  network = {
    ip = "10.101.0.31";
    peers = [ "web" ];
  };
  configuration = import ./probe-configuration.nix "db";
}
