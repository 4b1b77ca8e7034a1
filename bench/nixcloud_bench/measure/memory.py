"""The host memory that containers take: MemAvailable once it settled, the
kernel's unreclaimable memory, the PSS and private memory of their
processes, their memory cgroups."""

import os
import re
import time

from ..host import lxc_monitors, processes
from ..stats import med


def meminfo_kib(*fields):
    """The sum of /proc/meminfo's `fields`, in KiB."""
    with open("/proc/meminfo") as f:
        text = f.read()
    return sum(int(re.search(rf"^{field}:\s+(\d+) kB", text, re.M).group(1)) for field in fields)


def mem_available_kib():
    return meminfo_kib("MemAvailable")


# The kernel's memory that reclaim cannot give back: mounts, tmpfs inodes,
# namespaces (slab), and per-CPU counters.
KERNEL_FIELDS = ("SUnreclaim", "Percpu")


def settled_mem_available(window=10, tolerance_kib=3 * 1024, timeout=120):
    """MemAvailable once it stopped moving: the median of the last `window`
    readings, half a second apart, when they lie within `tolerance_kib`.
    After many containers stopped at once the kernel goes on freeing their
    memory (network namespaces and the rest) for a while, and other work on
    the machine moves it too."""
    readings = []
    deadline = time.monotonic() + timeout
    while True:
        readings = (readings + [mem_available_kib()])[-window:]
        if len(readings) == window and (max(readings) - min(readings) <= tolerance_kib
                                        or time.monotonic() > deadline):
            return med(readings)
        time.sleep(0.5)


def container_processes(lxc_path):
    """pid -> role ('monitor' or 'inside') of every process of this run's
    containers: LXC's monitors and everything below them."""
    parent = {}
    for pid in processes():
        try:
            with open(f"/proc/{pid}/stat") as f:
                parent[pid] = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError):
            continue
    roles = {pid: "monitor" for pid in lxc_monitors(lxc_path)}
    changed = True
    while changed:
        changed = False
        for pid, ppid in parent.items():
            if ppid in roles and pid not in roles:
                roles[pid] = "inside"
                changed = True
    return roles


def smaps_kib(pid):
    """A process's proportional (Pss) and private memory, in KiB."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            text = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return {"pss": 0, "private": 0}
    field = lambda name: int((re.search(rf"^{name}:\s+(\d+) kB", text, re.M) or [0, 0])[1])
    return {"pss": field("Pss"), "private": field("Private_Clean") + field("Private_Dirty")}


def container_memory(h):
    """PSS and private memory of this run's containers' processes, summed by
    role: LXC's monitor (one per container, on the host) and everything
    inside. PSS shares the pages several processes map among them (busybox,
    the libraries), so the sum is what they take together."""
    roles = container_processes(h.lxc_path)
    memory = {role: {"pss": 0, "private": 0} for role in ("monitor", "inside")}
    for pid, role in roles.items():
        for key, kib in smaps_kib(pid).items():
            memory[role][key] += kib
    return dict(processes=len(roles), **memory)


def memory_cgroups(h, names):
    """Sum of the containers' memory cgroups, when LXC made them (cgroup v1
    memory controller); None when the containers stay in their caller's."""
    total = 0
    for name in names:
        pid = h.lxc("lxc-info", "-p", "-H", name=name, check=False).out.strip()
        if not pid.isdigit():
            continue
        with open(f"/proc/{pid}/cgroup") as f:
            memory = [l.split(":", 2)[2].strip() for l in f if l.split(":")[1] in ("memory", "")]
        path = next((p for p in memory if "lxc" in p), None)
        if path is None:
            return None
        for candidate in (f"/sys/fs/cgroup/memory{path}/memory.usage_in_bytes",
                          f"/sys/fs/cgroup{path}/memory.current",
                          f"/sys/fs/cgroup/unified{path}/memory.current"):
            if os.path.exists(candidate):
                with open(candidate) as f:
                    total += int(f.read())
                break
    return total / 1024
