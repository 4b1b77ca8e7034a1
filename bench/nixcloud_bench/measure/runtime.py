"""1. The runtime commands (list, state, exists, show-ip, start, stop, run)
next to the bare lxc-* calls each makes."""

from ..commands import alternate, log
from ..stats import med


def row(command, n, where, helper_runs, bare_runs, bare_label, extra=None, side_by_side=False):
    """One line of the runtime table, with the raw samples. `side_by_side`:
    the helper makes its lxc-* calls at once, so it waits only for the
    longest."""
    helper_ms = [r.ms for r in helper_runs]
    bare_ms = [r.ms for r in bare_runs]
    own = [r.own_ms(side_by_side) for r in helper_runs if r.own_ms() is not None]
    lxc_inside = [r.waited_ms("lxc-", side_by_side) for r in helper_runs]
    paired = [h - b for h, b in zip(helper_ms, bare_ms)]
    # What the helper adds to the lxc-* calls it makes, per run: its wall
    # time minus the time it waited for them, as the helper saw it. Unlike
    # the difference of two wall times this does not carry the variance of
    # the calls themselves.
    added = [w - l for w, l in zip(helper_ms, lxc_inside)]
    return dict(command=command, n=n, where=where, helper=helper_ms, bare=bare_ms,
                bare_label=bare_label, own=own, lxc_inside=lxc_inside, added=added,
                diff=med(paired) if paired else None, extra=extra or {})


def measure_queries(h, n, target, reps, running):
    """state, exists, show-ip (and run when the target runs)."""
    where = "running" if running else "stopped"
    info = lambda: h.lxc("lxc-info", "--state", "--no-humanize", name=target)
    checks = {
        "state": ({"helper": lambda: h.helper("state", target), "bare": info},
                  "lxc-info --state --no-humanize"),
        "exists": ({"helper": lambda: h.helper("exists", target), "bare": info},
                   "no lxc call; vs lxc-info --state"),
        "show-ip": ({"helper": lambda: h.helper("show-ip", target),
                     "bare": lambda: h.lxc("lxc-info", "-i", "-H", name=target)},
                    "no lxc call; vs lxc-info -iH"),
    }
    if running:
        checks["run"] = ({"helper": lambda: h.helper("run", target, "true"),
                          "bare": lambda: h.lxc("lxc-attach", "--clear-env", "--", "true", name=target)},
                         "lxc-attach --clear-env -- true")
    rows = []
    for command, (variants, bare_label) in checks.items():
        got = alternate(variants, reps)
        rows.append(row(command, n, where, got["helper"], got["bare"], bare_label))
    return rows


def measure_list(h, n, where, reps):
    """The helper's list next to `lxc-ls --active -1`, which names the same
    containers (issue 25's anchor: the helper asks no lxc-ls any more, it
    reads the command sockets and cgroups itself), and next to the issue 6
    reference, `lxc-ls --fancy` with name, state and ipv4 (which enters
    every running container for its addresses)."""
    got = alternate({
        "helper": lambda: h.helper("list"),
        "bare": lambda: h.lxc("lxc-ls", "--active", "-1"),
        "ipv4": lambda: h.lxc("lxc-ls", "--fancy", "--fancy-format", "name,state,ipv4"),
    }, reps)
    header = got["helper"][0].out.splitlines()[0].split()
    extra = {"ipv4": [r.ms for r in got["ipv4"]], "columns": header}
    return row("list", n, where, got["helper"], got["bare"], "lxc-ls --active -1", extra)


def measure_start_stop(h, n, target, cycles):
    """start and stop, each by the helper and bare. A cycle is: helper start,
    bare stop, bare start, helper stop (the order flips every cycle), so that
    every start and stop is a sample and none is wasted on resetting."""
    samples = {k: [] for k in ("helper start", "bare start", "helper stop", "bare stop")}

    def start(by):
        h.forget_boot(target)
        ran = h.helper("start", target) if by == "helper" else h.lxc_start_bare(target)
        samples[f"{by} start"].append(ran)
        h.wait_booted([target])

    def stop(by):
        ran = h.helper("stop", target) if by == "helper" else h.lxc("lxc-stop", name=target)
        samples[f"{by} stop"].append(ran)

    for cycle in range(cycles):
        first, second = ("helper", "bare") if cycle % 2 == 0 else ("bare", "helper")
        start(first)
        stop(second)
        start(second)
        stop(first)
    return [row("start", n, "stopped -> running", samples["helper start"], samples["bare start"],
                "lxc-start -s lxc.mount.entry=<store, /init>"),
            row("stop", n, "running -> stopped", samples["helper stop"], samples["bare stop"], "lxc-stop")]


def measure_runtime(h, n, target, reps, cycles, others_running=0):
    """Every runtime command at N containers; `others_running` of them (not
    the target) run meanwhile."""
    where = f"{others_running} others running" if others_running else "all others stopped"
    log(f"runtime commands at N = {n} ({where})")
    rows = [measure_list(h, n, f"{others_running} running" if others_running else "all stopped", reps)]
    rows += measure_queries(h, n, target, reps, running=False)
    h.start([target])
    rows += measure_queries(h, n, target, reps, running=True)
    h.kill_all([target])
    rows += measure_start_stop(h, n, target, cycles)
    for r in rows:
        r["others_running"] = others_running
    return rows
