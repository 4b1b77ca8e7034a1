"""The measurements, one module per section of the report, and the order in
which the inner process makes them as the host grows:

    runtime    1. runtime commands next to their bare lxc-* calls
    growth     2. create, update, destroy and list as N grows
    by_hand    3. build + switch in one nix-env call against two
    nix        4. Nix processes, system evaluations, the spec without nixpkgs
    density    5. all containers started and stopped, host memory, LXC's hooks
    memory        the host memory readings that density and store_view take
    isolation  6. what the isolation between containers costs: store view,
                  id ranges, the bridge port's hook
    store_view    the store view's live update and host memory, for isolation
    sync       7. sync of a list of containers (a flake's, a list file's),
                  made, unchanged and with one changed, against updates
    guard      8. what the ports' guard costs: start, stop, create, destroy,
                  TCP throughput, with it and without it
    build_network
               9. create and update with the build network and without it
    transfer  10. export and import of 1 GiB of data against tar, and a move
                  to a host that has the closure

bench/run --only picks some of them (SECTIONS); the others are not made.
"""

import datetime
import os
import platform
import re
import subprocess

from ..host import Population
from ..project import REPO
from .build_network import measure_build_network
from .by_hand import measure_by_hand
from .density import measure_density, measure_without_hooks
from .growth import measure_create_update
from .guard import measure_guard
from .isolation import measure_isolation
from .nix import measure_nix
from .runtime import measure_runtime
from .sync import measure_sync
from .transfer import measure_transfer

# The sections --only can pick, in the report's order.
SECTIONS = ("runtime", "growth", "by_hand", "nix", "density", "isolation", "sync", "guard",
            "build_network", "transfer")

# Sizes of a full run, and of --quick (for working on the bench).
SIZES = {
    "full": dict(runtime_sizes=[1, 50, 200], growth_sizes=[1, 50, 200, 500], density=500,
                 reps=15, cycles=7, probes=7, isolation_memory=20,
                 sync=200, sync_rounds=3, sync_running=10, guard_mib=64,
                 transfer_mib=1024, transfer_reps=5),
    "quick": dict(runtime_sizes=[1, 10, 20], growth_sizes=[1, 10, 20, 40], density=40,
                  reps=7, cycles=3, probes=3, isolation_memory=10,
                  sync=20, sync_rounds=2, sync_running=3, guard_mib=32,
                  transfer_mib=256, transfer_reps=2),
}


def measure_all(h, sizes, lib, sections=SECTIONS):
    """The figures of `sections` (all by default), as a dict (also what
    --json writes). The host grows to each N once; what does not depend on
    N is measured at the smallest; the runtime commands at the largest
    runtime N also with half of the others running; the density last, with
    all containers."""
    population = Population(h)
    res = dict(sizes=sizes, machine=machine(), sections=list(sections))
    runtime_sizes = sizes["runtime_sizes"] if "runtime" in sections else []
    growth_sizes = sizes["growth_sizes"] if "growth" in sections else []
    smallest = min(sizes["growth_sizes"])
    runtime_top = max(sizes["runtime_sizes"])
    for n in sorted(set(runtime_sizes + growth_sizes + [smallest])):
        population.grow_to(n)
        target = population.names[0]
        if n == smallest:
            if "nix" in sections:
                res.update(measure_nix(h, sizes["reps"], lib))
            if "by_hand" in sections:
                res["by_hand"] = measure_by_hand(h, sizes["probes"])
            if "density" in sections:
                res["hooks"] = measure_without_hooks(h, target, sizes["cycles"])
            if "isolation" in sections:
                res["isolation"] = measure_isolation(h, sizes["reps"], sizes["cycles"],
                                                     sizes["isolation_memory"])
            if "sync" in sections:
                res["sync"] = measure_sync(h, sizes["sync"], sizes["sync_rounds"], sizes["reps"],
                                           sizes["sync_running"])
            if "guard" in sections:
                res["guard"] = measure_guard(h, sizes["reps"], sizes["guard_mib"])
            if "build_network" in sections:
                res["build_network"] = measure_build_network(h, sizes["reps"])
            if "transfer" in sections:
                res["transfer"] = measure_transfer(h, sizes["transfer_reps"], sizes["transfer_mib"])
        if n in runtime_sizes:
            res.setdefault("runtime", [])
            res["runtime"] += measure_runtime(h, n, target, sizes["reps"], sizes["cycles"])
        if n in runtime_sizes and n == runtime_top:
            half = population.names[1:1 + n // 2]
            h.start(half)
            res["runtime"] += measure_runtime(h, n, target, sizes["reps"], sizes["cycles"],
                                              others_running=len(half))
            h.kill_all(half)
        if n in growth_sizes:
            res.setdefault("growth", []).append(measure_create_update(h, n, sizes["probes"], sizes["reps"]))
    if "density" in sections:
        population.grow_to(sizes["density"])
        res["density"] = measure_density(h, population.names, max(3, sizes["reps"] // 3), lib)
    return res


def machine():
    """When, where and at which commit: the report's first line."""
    def out(argv):
        try:
            return subprocess.run(argv, capture_output=True, text=True).stdout.strip()
        except OSError:
            return "?"
    commit = out(["git", "--no-optional-locks", "-C", REPO, "rev-parse", "--short", "HEAD"])
    dirty = out(["git", "--no-optional-locks", "-C", REPO, "status", "--porcelain", "--",
                 "rust-helper", "lib", "modules"])
    with open("/proc/meminfo") as f:
        mem = int(re.search(r"MemTotal:\s+(\d+)", f.read()).group(1)) / 1024 / 1024
    return (f"{datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}, {platform.node()}: "
            f"Linux {platform.release()}, {os.cpu_count()} cores, {mem:.0f} GiB; "
            f"LXC {out(['lxc-start', '--version'])}, {out(['nix-env', '--version'])}; "
            f"commit {commit}{' + local changes' if dirty else ''}")
