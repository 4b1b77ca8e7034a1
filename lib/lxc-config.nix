# The LXC settings one generation carries (lxc.container.conf(5)).
#
# The container's own config (written once by the helper) includes this
# fragment through the profile link, so switching a generation switches the
# guest system and these settings together.
#
# params: what the helper resolved for this container (see generation.nix).
# autostart: the spec's autostart.
{ params, autostart }:
let
  inherit (builtins) concatStringsSep toString;
  layout = import ./layout.nix;

  line = key: value: "${key} = ${toString value}";

  # One veth on a host bridge; `index` is LXC's network number.
  veth = index: name: bridge: extra:
    let key = "lxc.net.${toString index}"; in
    [
      (line "${key}.type" "veth")
      (line "${key}.name" name)
      (line "${key}.link" bridge)
      (line "${key}.flags" "up")
    ] ++ map (kv: line "${key}.${kv.name}" kv.value) extra;

  hostonly = params.hostonly;

  # LXC derives a wrong broadcast address for prefixes other than /24 unless
  # it is given one.
  hostonlyAddress = [
    { name = "ipv4.address"; value = "${hostonly.address}/${toString hostonly.prefixLength} ${hostonly.broadcast}"; }
  ] ++ (if hostonly.gateway == null then [ ] else [ { name = "ipv4.gateway"; value = hostonly.gateway; } ]);

  inherit (params.idmap) hostId count;
in
concatStringsSep "\n" ([
  "# nixcloud-container generation of '${params.name}'. Generated; do not edit."
  (line "lxc.uts.name" params.name)
  (line "lxc.rootfs.path" "dir:${params.rootfs}")
  # Root inside is an unprivileged uid range outside.
  (line "lxc.idmap" "u 0 ${toString hostId} ${toString count}")
  (line "lxc.idmap" "g 0 ${toString hostId} ${toString count}")
  # The host's store, shared and read-only.
  (line "lxc.mount.entry" "/nix/store nix/store none ro,bind,create=dir 0 0")
  # This container's profile (and nothing of any other container's) at /init:
  # the guest boots whatever generation is current when it starts.
  (line "lxc.mount.entry" "${params.profileDir} ${layout.profileMount} none ro,bind,create=dir 0 0")
  (line "lxc.init.cmd" layout.guestInit)
  (line "lxc.start.auto" (if autostart then 1 else 0))
]
++ veth 0 "hostonly" hostonly.bridge hostonlyAddress
++ (if params.internet == null then [ ] else veth 1 "internet" params.internet.bridge [ ])
) + "\n"
