# The LXC settings one generation carries (lxc.container.conf(5)).
#
# The container's own config (written once by the helper) includes this
# fragment through the profile link, so switching a generation switches the
# guest system and these settings together.
#
# params: what the helper resolved for this container (see generation.nix).
# autostart: the spec's autostart.
# forwards: whether the spec forwards host ports to it.
{ params, autostart, forwards }:
let
  inherit (builtins) concatStringsSep toString;
  layout = import ./layout.nix;

  line = key: value: "${key} = ${toString value}";

  # One veth on a host bridge; `index` is LXC's network number, `interface`
  # its params (`port`: the host's end, `hwaddr`: its MAC address; null:
  # LXC picks them).
  veth = index: name: interface: extra:
    let key = "lxc.net.${toString index}"; in
    [
      (line "${key}.type" "veth")
      (line "${key}.name" name)
      (line "${key}.link" interface.bridge)
      (line "${key}.flags" "up")
      # Isolated from the bridge's other isolated ports (other containers)
      # from the start; the helper lets peers through (rust-helper/src/capabilities/network/rules.rs).
      (line "${key}.script.up" isolatePort)
    ]
    ++ (if (interface.port or null) == null then [ ] else [ (line "${key}.veth.pair" interface.port) ])
    ++ (if (interface.hwaddr or null) == null then [ ] else [ (line "${key}.hwaddr" interface.hwaddr) ])
    ++ map (kv: line "${key}.${kv.name}" kv.value) extra;

  isolatePort = "${./isolate-port.sh}";
  # Run by LXC as root on the host once the container's init ended, whatever
  # ended it: its forwarded ports go (rust-helper/src/capabilities/network/rules.rs).
  # Only where it has some: a container without them stops without it.
  dropForwards = "${./drop-forwards.sh}";

  hostonly = params.hostonly;

  # LXC derives a wrong broadcast address for prefixes other than /24 unless
  # it is given one.
  hostonlyAddress = [
    { name = "ipv4.address"; value = "${hostonly.address}/${toString hostonly.prefixLength} ${hostonly.broadcast}"; }
  ] ++ (if hostonly.gateway == null then [ ] else [ { name = "ipv4.gateway"; value = hostonly.gateway; } ]);

  inherit (params.idmap) hostId count;

  # The resource limits (the spec's, capped by the host's), as cgroup2 keys
  # (lib/limits.nix), in the order of their spec names.
  limitsTable = import ./limits.nix;
  limits = params.limits or { };
  limitLines = builtins.concatMap
    (limit: let value = limits.${limit.name} or null; in
      if value == null then [ ] else [ (line "lxc.cgroup2.${limit.file}" (limitsTable.fileValue limit value)) ])
    (builtins.attrValues limitsTable.byName);

  ttys = 4;
in
concatStringsSep "\n" ([
  "# nixcloud-container generation of '${params.name}'. Generated; do not edit."
  (line "lxc.uts.name" params.name)
  (line "lxc.rootfs.path" "dir:${params.rootfs}")
  # Root inside is an unprivileged uid range outside.
  (line "lxc.idmap" "u 0 ${toString hostId} ${toString count}")
  (line "lxc.idmap" "g 0 ${toString hostId} ${toString count}")
  # The host's store and this container's profile (at /init) are mounted by
  # the helper before LXC starts the container (rust-helper/src/lxc/mounts.rs),
  # so that they are locked read-only inside; the guest boots whatever
  # generation is current when it starts.
  (line "lxc.init.cmd" layout.guestInit)
  # The terminals of `lxc-console`: /dev/console is pts/0, /dev/tty1 to
  # tty4 are pts/1 to pts/4. systemd's getty generator starts one
  # container-getty@N on each pts/N that $container_ttys names, which LXC 5
  # does not set by itself.
  (line "lxc.tty.max" ttys)
  (line "lxc.environment" "container_ttys=${concatStringsSep " " (builtins.genList (i: "pts/${toString (i + 1)}") ttys)}")
  (line "lxc.start.auto" (if autostart then 1 else 0))
]
++ (if forwards then [ (line "lxc.hook.stop" dropForwards) ] else [ ])
++ limitLines
++ veth 0 "hostonly" hostonly hostonlyAddress
++ (if params.internet == null then [ ] else veth 1 "internet" params.internet [ ])
) + "\n"
