# The names of a container's files, defined once on the Nix side
# (rust-helper/src/layout.rs names them on the helper's).
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
  # What LXC starts: the current generation's system, through the profile.
  guestInit = "/${profileMount}/${profileLink}/${system}/init";
}
