# The VM test's probe for the containers created with `--system` (first,
# second, third, lone): the configuration of probe-v1.nix without a fixed
# address, built by the test for each of them with its own name and no
# address of its own (lib/nixos-system.nix with hostonly.address = null):
# its hostonly interface holds only what LXC gives it, the address the
# helper allocates.
{
  configuration = import ./probe-configuration.nix "1";
}
