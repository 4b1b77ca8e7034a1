"""6. (part) The store view of running containers: what a live update that
adds paths to it costs, and the host memory a view takes."""

import os
import re
import time

from ..commands import alternate, log
from .growth import parts
from .memory import KERNEL_FIELDS, container_memory, meminfo_kib, settled_mem_available


def init_pid(h, name):
    return int(h.lxc("lxc-info", "-p", "-H", name=name).out.strip())


def view_entries(h, name):
    """How many store paths the running container sees in its /nix/store
    (through its init's root): its view, or the host's whole store."""
    return len(os.listdir(f"/proc/{init_pid(h, name)}/root/nix/store"))


def measure_live_update(h, reps, paths):
    """`update` of a running container from the tiny example to a version
    whose closure has `paths` more paths, against an update to the same
    version without them (the system and the generation: 2 new paths).
    Every round makes a new container (create, start; killed and destroyed
    after), so that each update builds its generation and adds to a view
    that has only the tiny closure. The systems of both versions are built
    in a first round that is not counted."""
    log(f"store view: live update adding {paths} paths against one adding 2, x{reps}")
    base = h.tiny_file("iu-base.nix", "1")
    version = f"{h.token}-iu"
    files = {"2": h.tiny_file("iu-2.nix", version),
             str(paths): h.tiny_file(f"iu-{paths}.nix", version, paths=paths)}
    count = iter(range(10 ** 6))

    def update(file):
        name = f"iu{next(count)}"
        h.helper("create", name, base)
        h.start([name])
        before = view_entries(h, name)
        ran = h.helper("update", name, file)
        added = view_entries(h, name) - before
        h.kill_all([name])
        h.helper("destroy", name)
        return dict(parts(ran), added=added)

    got = alternate({label: (lambda f=file: update(f)) for label, file in files.items()}, reps + 1)
    return {label: samples[1:] for label, samples in got.items()}


def measure_view_memory(h, count, kinds):
    """The host memory `count` running containers take, for each kind
    (label -> (container file, started by one command)): the drop of
    MemAvailable once it settled and their processes' PSS (memory.py), as
    the density figures take them, and the growth of the kernel's
    unreclaimable memory, where the view's mounts are. Each kind's containers are created,
    started by the helper (one `start` each, as the module's script does,
    or one for all), killed and destroyed in turn. The first kind is
    started and killed once before, unmeasured: the first start of many
    containers leaves memory taken on the host after they stop."""
    results = {}
    for k, (label, (file, one_command)) in enumerate(kinds.items()):
        names = [f"im{k}-{i:02d}" for i in range(count)]
        log(f"store view: host memory of {count} running containers ({label})")
        for name in names:
            h.helper("create", name, file)
        if k == 0:
            h.start(names)
            h.kill_all(names)
        before = settled_mem_available(), meminfo_kib(*KERNEL_FIELDS)
        started = time.perf_counter()
        h.start(names, one_command)
        start_ms = (time.perf_counter() - started) * 1000
        seen = view_entries(h, names[0])
        after = settled_mem_available(), meminfo_kib(*KERNEL_FIELDS)
        results[label] = dict(n=count, mem_drop_kib=before[0] - after[0], kernel_kib=after[1] - before[1],
                              memory=container_memory(h), start_ms=start_ms, entries=seen,
                              mounts=mounts_held(h, names))
        h.kill_all(names)
        for name in names:
            h.helper("destroy", name)
    return results


def mounts_held(h, names):
    """The mounts in the mount namespaces of the containers' monitors and
    inits, summed: the store view's mounts are there, twice per
    container."""
    total = 0
    for name in names:
        pid = init_pid(h, name)
        for p in (pid, monitor_of(pid)):
            with open(f"/proc/{p}/mountinfo") as f:
                total += sum(1 for _ in f)
    return total


def monitor_of(pid):
    """LXC's monitor: the parent of the container's init."""
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"^PPid:\s+(\d+)", f.read(), re.M).group(1))
