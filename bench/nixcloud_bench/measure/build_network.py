"""9. What the build network (rust-helper/src/nix/build_network.rs) costs a
create and an update: the helper against the same helper built without it
(feature bench-without-build-network: its Nix commands stay in the helper's
own network namespace), alternated in one run; the Nix processes of each;
and the first command after the kept namespace, or the host's table, is
gone, which makes it again."""

import os

from ..commands import alternate, log, run
from ..project import HELPER, HELPER_WITHOUT_BUILD_NETWORK
from ..stats import med
from .growth import parts
from .nix import NixCalls

VARIANTS = {"with the build network": HELPER, "without": HELPER_WITHOUT_BUILD_NETWORK}
HOST_TABLE = ("ip", "nixcloud-container-builds")


def with_network_parts(ran):
    """A command's parts (section 2) and what the build network took: its
    setup (the helper's `build-network` timing line) and nft, which writes
    the host's table where it is missing."""
    return dict(parts(ran), network=ran.waited_ms("build-network"), nft=ran.waited_ms("nft"))


def life(h, helper, name, create_file, version, env=None):
    """create (its generation is built; the system is in the store), update
    to a version never built (system and generation built), destroy."""
    env = env or h.env
    created = run([helper, "create", name, create_file], env=env)
    update_file = h.tiny_file(f"bn-{name}.nix", version)
    updated = run([helper, "update", name, update_file], env=env)
    run([helper, "destroy", name], env=env)
    return created, updated


def measure_build_network(h, reps):
    log(f"build network: create and update with and without it, x{reps}")
    create_file = h.tiny_file("bn-probe.nix", "1")
    counter = iter(range(10 ** 6))

    def one(label, helper):
        def go():
            i = next(counter)
            created, updated = life(h, helper, f"bn{i}", create_file, f"{h.token}-bn{i}")
            return dict(create=with_network_parts(created), update=with_network_parts(updated))
        return go

    samples = alternate({label: one(label, helper) for label, helper in VARIANTS.items()}, reps)

    log("build network: the Nix processes of a create and an update, with and without it")
    processes = {}
    for label, helper in VARIANTS.items():
        calls = NixCalls(h, "build-network")
        i = next(counter)
        env = calls.env(h.env)
        created = run([helper, "create", f"bn{i}", create_file], env=env)
        processes[label] = {"create": calls.processes()}
        env = calls.env(h.env)
        updated = run([helper, "update", f"bn{i}", h.tiny_file(f"bn-c{i}.nix", f"{h.token}-bn{i}")], env=env)
        processes[label]["update"] = calls.processes()
        processes[label]["nft"] = sum(1 for tool, _ in created.calls + updated.calls if tool == "nft")
        run([helper, "destroy", f"bn{i}"], env=h.env)

    def first_create(undo):
        """A create right after `undo` took away what the commands before
        left: it makes that again."""
        samples = []
        for _ in range(max(3, reps // 5)):
            undo()
            i = next(counter)
            created, _ = life(h, HELPER, f"bn{i}", create_file, f"{h.token}-bn{i}")
            samples.append(with_network_parts(created))
        return samples

    log("build network: the first create without the kept namespace, and without the host's table")
    kept = os.path.join(h.work, "state", "build-network", "namespace")
    first = {"namespace": first_create(lambda: run(["umount", kept])),
             "table": first_create(lambda: run(["nft", "delete", "table", *HOST_TABLE]))}
    return dict(samples=samples, processes=processes, first=first)


def summary(bn):
    """Per command: the medians with and without the build network, what it
    adds (the median of the differences of the alternated rounds), its
    setup inside the helper, and the Nix processes of each variant."""
    with_, without = (bn["samples"][label] for label in VARIANTS)
    out = {}
    for command in ("create", "update"):
        pairs = list(zip(with_, without))
        out[command] = dict(
            with_ms=med([w[command]["total"] for w in with_]),
            without_ms=med([w[command]["total"] for w in without]),
            added=med([w[command]["total"] - o[command]["total"] for w, o in pairs]),
            setup=med([w[command]["network"] for w in with_]),
            processes={label: bn["processes"][label][command] for label in VARIANTS})
    return out
