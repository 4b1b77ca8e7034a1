# The names of a container's files, and of the state directory's files the
# host module reads, defined once on the Nix side
# (rust-helper/src/layout.rs names them on the helper's, and checks that
# these are the same).
rec {
  # <profiles dir>/<name>/profile, the link nix-env switches.
  profileLink = "profile";
  # Where the container's profile directory is mounted inside it.
  profileMount = "init";
  # A generation's guest system, LXC settings, and spec with the parameters.
  system = "system";
  lxcConf = "lxc.conf";
  # Root's own LXC settings for the container (create/update --lxc-config).
  rootLxcConf = "lxc-root.conf";
  specJson = "spec.json";
  # The store paths the container sees: its system's closure, one per line.
  closure = "closure";
  # <state dir>/dhcp-hosts: dnsmasq's dhcp-hostsdir, a file per container
  # with an internet address, written by the helper.
  dhcpHosts = "dhcp-hosts";
  # What LXC starts: the current generation's system, through the profile.
  guestInit = "/${profileMount}/${profileLink}/${system}/init";
}
