# The VM test's probe container, first version. A fixed address makes its
# system the same in the VM as outside it, where the test builds it.
{
  network.ip = "10.101.0.10";
  configuration = import ./probe-configuration.nix "1";
}
