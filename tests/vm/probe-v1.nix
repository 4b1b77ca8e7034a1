# The VM test's probe container, first version. A fixed address makes its
# system the same in the VM as outside it, where the test builds it.
{
  network.ip = "10.101.0.10";
  # Enforced by LXC through cgroup2 (the test reads them back).
  limits = { memory.max = "512M"; pids.max = 2048; };
  configuration = import ./probe-configuration.nix "1";
}
