# The resource limits, defined once: limits.json, which the helper compiles
# in as well (rust-helper/src/capabilities/limits/types.rs), so that the
# container file's checks, the host module's options, the LXC settings and
# the helper's checks and live changes all read the same table.
#
#   units.<unit>: what a limit's value may be in a container file (from
#     `min`, up to `max` where there is one) and what the spec holds:
#       size: bytes, a number matching `pattern`, or a string matching
#         `withSuffixPattern`, a number with one of `suffixes` (powers of
#         1024); the spec holds bytes;
#       weight: a share against other containers (cgroup2's weights);
#       cpus: a number of CPUs; the spec holds the quota in microseconds per
#         `period` (cpu.max's period: the kernel's default), written to
#         cpu.max as "<quota> <period>";
#       count: a number of processes.
#   limits: each limit: `limits.<group>.<key>` in a container file and in
#     the host's option, `<name>` in the spec (a number of its unit, or
#     null), the cgroup2 file `<group>.<key>` of the controller `<group>`
#     (LXC's key `lxc.cgroup2.<group>.<key>`), and `unlimited`, the value
#     that lifts it in a running container.
let
  table = builtins.fromJSON (builtins.readFile ./limits.json);

  limits = map (limit: limit // { file = "${limit.group}.${limit.key}"; controller = limit.group; }) table.limits;
in
{
  inherit (table) units;
  inherit limits;

  # Each limit by its spec name.
  byName = builtins.listToAttrs (map (limit: { inherit (limit) name; value = limit; }) limits);

  # What a limit's cgroup2 file is given for `value`, a number of the spec.
  fileValue = limit: value:
    if limit.unit == "cpus" then "${toString value} ${toString table.units.cpus.period}" else toString value;
}
