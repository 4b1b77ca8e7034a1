# A container on a bridge of its own with a fixed IPv4 address. The host must
# let containers join that bridge (see host-configuration.nix), which also
# creates it:
#
#   nixcloud.containers.extraBridges.myOwnBridge = { address = "10.10.0.1"; prefixLength = 16; };
#
# Put your public key beside this file as id_rsa.pub to log in with ssh as
# root (ssh root@10.10.1.2); without it the container has no authorized key.
{
  network = {
    # replaces brNC-hostonly with your own bridge
    bridge = "myOwnBridge";
    # sets an ip
    ip = "10.10.1.2";
    # disables the additional NAT interface (default)
    enableNat = false;
  };
  configuration = { pkgs, lib, ip, name, ... }: {
    services.openssh.enable = true;
    services.openssh.ports = [ 22 ];
    # The seed set the host name to the address itself; a host name cannot
    # contain dots, so 10.10.1.2 becomes 10-10-1-2.
    networking.hostName = builtins.replaceStrings [ "." ] [ "-" ] ip;
    users.users.root.openssh.authorizedKeys.keys =
      lib.optional (builtins.pathExists ./id_rsa.pub) (builtins.readFile ./id_rsa.pub);
    system.stateVersion = "25.11";
  };
}
