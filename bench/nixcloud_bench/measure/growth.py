"""2. create, update and destroy of the tiny example, and list, as N grows;
create and update split into their parts."""

from ..commands import log
from .runtime import measure_list


def parts(ran):
    """The parts of a command from the helper's timing lines: the spec
    evaluation (nix-instantiate), the build (nix-build), the profile switch
    (nix-env --set), its lxc-* calls, and the helper's own time."""
    return dict(total=ran.ms, spec=ran.waited_ms("nix-instantiate"), build=ran.waited_ms("nix-build"),
                switch=ran.waited_ms("nix-env"), lxc=ran.waited_ms("lxc-"), own=ran.own_ms())


def measure_create_update(h, n, probes, reps):
    """With N containers on the host: create a probe container (its own
    generation is built; the tiny system of version 1 is already in the
    store, as for any container after the first made from one file), update
    it to a tiny version never built before (the system and the generation
    are built), destroy it. The probe's name is new every time, so no
    generation is ever found ready in the store."""
    log(f"create/update/destroy x{probes} and list at N = {n}")
    create_file = h.tiny_file("probe.nix", "1")
    got = {"create": [], "update": [], "destroy": []}
    for i in range(probes):
        name = f"p{n}-{i}"
        got["create"].append(parts(h.helper("create", name, create_file)))
        update_file = h.tiny_file(f"probe-{name}.nix", f"{h.token}-u{n}-{i}")
        got["update"].append(parts(h.helper("update", name, update_file)))
        got["destroy"].append(parts(h.helper("destroy", name)))
    listing = measure_list(h, n, "all stopped", reps)
    return dict(n=n, **got, list=listing)
