# One generation of a container: a store path holding (names from layout.nix)
#   system     -> the guest's system (with an executable `init`)
#   lxc.conf      the container's LXC settings (lxc-config.nix)
#   lxc-root.conf root's own LXC settings for it, where root gave some
#   spec.json     the spec it was built from and what the helper resolved
#   closure       the system's closure, one store path per line: the store
#                 the container sees (with the generation itself)
#
# builder: a busybox that can run as a builder (busybox.nix).
# params:  what the helper resolved for this container (Params in the
#   helper's spec.rs):
#   { name; source; profileDir; rootfs; idmap = { hostId; count; };
#     hostonly = { bridge; address; prefixLength; broadcast; gateway; };
#     internet = null or { bridge; }; }
{ builder, spec, system, params }:
let
  layout = import ./layout.nix;
  # Root's say (the helper's --autostart) over the container file's.
  autostart = let chosen = params.autostart or null; in if chosen == null then spec.autostart else chosen;
  metadata = {
    version = 1;
    inherit spec params;
    system = "${system}";
  };
in
derivation {
  name = "nixcloud-container-${params.name}";
  system = builtins.currentSystem;
  inherit builder;
  args = [ "sh" "-e" ./generation-builder.sh ];
  guestSystem = system;
  # Nix writes the closure's references graph into the build directory.
  exportReferencesGraph = [ "system-graph" system ];
  lxcConf = import ./lxc-config.nix { inherit params autostart; forwards = spec.forwardPorts != [ ]; };
  specJson = builtins.toJSON metadata;
  passAsFile = [ "lxcConf" "specJson" "rootLxcConf" ];
  systemName = layout.system;
  lxcConfName = layout.lxcConf;
  rootLxcConf = if params.rootSettings or null == null then "" else params.rootSettings;
  rootLxcConfName = layout.rootLxcConf;
  specJsonName = layout.specJson;
  closureName = layout.closure;
  # Nothing to fetch or compute: building it elsewhere only costs a copy.
  preferLocalBuild = true;
  allowSubstitutes = false;
}
