# The VM test's probe container, second version (`update` switches to it).
{
  network.ip = "10.101.0.10";
  configuration = import ./probe-configuration.nix "2";
}
