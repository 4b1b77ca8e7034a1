"""6. What the isolation between containers costs (issue 11): the store
view at start and stop (a tiny closure and one of 2,000 paths, against the
whole store), at a live update and in host memory (store_view.py); an id
range per container against the shared one; the bridge port's script.up
hook; the hook at the stop of a container with forwarded ports that takes
them away."""

import os
import re
import time

from ..commands import alternate, log, run
from ..stats import med
from .store_view import (init_pid, measure_live_update, measure_view_memory, monitor_of,
                         view_entries)

BIG_VIEW = 2000     # closure paths of the big container
UPDATE_PATHS = 500  # paths a live update adds
ALLOW_WHOLE = {"allowWholeStore": True}
SHARED_RANGE = dict(ALLOW_WHOLE, idmap={"isolated": False})
CLEAR_HOOK = ("-l", "-s lxc.net.0.script.up=")  # lxc-start -s: the key set empty
CLEAR_STOP_HOOK = ("-l", "-s lxc.hook.stop=")
FORWARD_PORT = 8080
FORWARDING = dict(ALLOW_WHOLE, allowedForwardPorts=[{"from": FORWARD_PORT, "to": FORWARD_PORT}])
# The id ranges and the hook are judged on differences of a few ms between
# tiny containers, whose cycles are cheap: they get this many times the reps.
SMALL_DIFFERENCE_REPS = 3


def exited(pid):
    """Whether process `pid` ended (gone, or a zombie: its namespaces are
    released by then)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, ProcessLookupError):
        return True


def cycle(h, name, start_args=()):
    """One start and one stop of a stopped container by the helper: the
    start (until RUNNING: lxc-start returns then) with its lxc-start and
    its own time (the store view is mounted there), the stop, and the time
    from the stop's beginning until LXC's monitor exited, which drops the
    mount namespace that holds the view's mounts; and the store paths the
    container saw."""
    h.forget_boot(name)
    start = h.helper("start", name, *start_args)
    h.wait_booted([name])
    entries = view_entries(h, name)
    monitor = monitor_of(init_pid(h, name))
    began = time.perf_counter()
    stop = h.helper("stop", name)
    while not exited(monitor):
        time.sleep(0.0005)
    return dict(start=start.ms, lxc_start=start.waited_ms("lxc-start"), start_own=start.own_ms(),
                stop=stop.ms, monitor_gone=(time.perf_counter() - began) * 1000, entries=entries)


def cycles_of(h, variants, reps):
    """label -> (container, start arguments, host file): `reps` cycles of
    each, rotating; label -> list of cycle()."""
    def one(name, args, host):
        h.host_file(host)
        return cycle(h, name, args)
    return alternate({label: (lambda v=v: one(*v)) for label, v in variants.items()}, reps)


def created(h, name, file, host=ALLOW_WHOLE):
    h.host_file(host)
    h.helper("create", name, file)
    return name


def measure_views(h, reps):
    """Start and stop of a tiny container and of one whose closure has
    BIG_VIEW more paths, each with its store view and with the whole store."""
    log(f"store view: start and stop, tiny and {BIG_VIEW} paths, view and whole store, x{reps}")
    big = dict(paths=BIG_VIEW, tag="iv-big")
    variants = {
        "tiny, view": h.tiny_file("iv-tiny.nix", "1"),
        "tiny, whole store": h.tiny_file("iv-tiny-whole.nix", "1", whole_store=True),
        f"{BIG_VIEW} paths, view": h.tiny_file("iv-big.nix", "1", **big),
        f"{BIG_VIEW} paths, whole store": h.tiny_file("iv-big-whole.nix", "1", whole_store=True, **big),
    }
    names = {label: created(h, f"iv{i}", file) for i, (label, file) in enumerate(variants.items())}
    samples = cycles_of(h, {label: (name, (), ALLOW_WHOLE) for label, name in names.items()}, reps)
    return names, variants, samples


def measure_ranges(h, reps):
    """A container with a range of its own (the default) against one made
    while the host file said `"idmap": {"isolated": false}` (the first
    range, shared): start and stop, each with its host file; and list with
    either host file."""
    log(f"id ranges: start, stop and list, own range against the shared one, x{reps}")
    file = h.tiny_file("ir.nix", "1")
    variants = {"own range": (created(h, "ir-own", file), (), ALLOW_WHOLE),
                "shared range": (created(h, "ir-shared", file, SHARED_RANGE), (), SHARED_RANGE)}
    uids = h.helper("list", "--columns", "name,uids", "--no-header").out.split()
    samples = cycles_of(h, variants, reps)
    listing = alternate({label: (lambda host=host: (h.host_file(host), h.helper("list"))[1])
                         for label, (_, _, host) in variants.items()}, reps)
    return dict(cycles=samples, list={label: [r.ms for r in runs] for label, runs in listing.items()},
                uids=dict(zip(uids[::2], uids[1::2])))


def script_up(h, name):
    """The hook of the container's first veth and its bridge, from its
    generation's LXC settings."""
    with open(os.path.join(h.work, "profiles", name, "profile", "lxc.conf")) as f:
        conf = dict(re.findall(r"^(lxc\.net\.0\.(?:script\.up|link)) = (.*)$", f.read(), re.M))
    return conf["lxc.net.0.script.up"], conf["lxc.net.0.link"]


def measure_hook_alone(h, name, runs):
    """The isolation hook by itself, as LXC runs it (`/bin/sh -c 'exec
    <script> <name> net up veth <bridge> <port>'`), `runs` times, on a veth
    of the bench's own on the container's bridge; and
    whether it made the port isolated; next to /bin/true started as often
    the same way, the cost of starting any process from Python."""
    script, bridge = script_up(h, name)
    port, peer = "ncbenchhookh", "ncbenchhooki"
    run(["ip", "link", "add", port, "type", "veth", "peer", "name", peer])
    try:
        run(["ip", "link", "set", port, "master", bridge, "up"])
        argv = ["/bin/sh", "-c", f"exec {script} {name} net up veth {bridge} {port}"]
        took = alternate({"hook": lambda: run(argv).ms, "true": lambda: run(["/bin/true"]).ms}, runs)
        with open(f"/sys/class/net/{port}/brport/isolated") as f:
            isolated = f.read().strip() == "1"
    finally:
        run(["ip", "link", "del", port], check=False)
    return dict(script=script, ms=took["hook"], floor_ms=took["true"], isolated=isolated)


def stop_hook(h, name):
    """The hook LXC runs at the container's stop, from its generation's LXC
    settings (lib/drop-forwards.sh in the store); None where it has none."""
    with open(os.path.join(h.work, "profiles", name, "profile", "lxc.conf")) as f:
        found = re.search(r"^lxc\.hook\.stop = (.*)$", f.read(), re.M)
    return found and found.group(1)


def measure_stop_hook_alone(h, name, runs):
    """The stop hook by itself, as LXC runs it (`/bin/sh -c 'exec <script>
    <name> lxc stop'`, with LXC_NAME and LXC_TARGET), `runs` times, on a
    chain of the bench's own in the forwards' table that holds a rule each
    time, next to /bin/true; and whether the chain was empty after it."""
    script, fake = stop_hook(h, name), "ncbench-stop-hook"
    chain = ["ip", "nixcloud-container-forwards", f"to-{fake}"]
    env = dict(os.environ, LXC_NAME=fake, LXC_TARGET="stop")
    argv = ["/bin/sh", "-c", f"exec {script} {fake} lxc stop"]
    fill = ["nft", "add", "rule", *chain, "tcp", "dport", "1", "dnat", "to", "192.0.2.1"]
    run(["nft", "add", "table", *chain[:2]])
    run(["nft", "add", "chain", *chain])
    try:
        took = alternate({"hook": lambda: (run(fill), run(argv, env=env).ms)[1],
                          "true": lambda: run(["/bin/true"]).ms}, runs)
        emptied = "dnat" not in run(["nft", "list", "chain", *chain]).out
    finally:
        run(["nft", "delete", "chain", *chain], check=False)
    return dict(script=script, ms=took["hook"], floor_ms=took["true"], emptied=emptied)


def measure_stop_hook(h, tiny, reps):
    """A container with a forwarded port: its stop with lxc.hook.stop and
    with it cleared, and the hook alone; and whether the tiny container,
    which forwards no port, has the hook (it must not)."""
    log(f"forwards at stop: stop of a container with a forwarded port, with its lxc.hook.stop and with it"
        f" cleared, x{reps}")
    name = created(h, "iv-fwd", h.tiny_file("iv-fwd.nix", "1", forward_port=FORWARD_PORT), FORWARDING)
    cycles = cycles_of(h, {"with the stop hook": (name, (), FORWARDING),
                           "stop hook cleared": (name, CLEAR_STOP_HOOK, FORWARDING)}, reps)
    alone = measure_stop_hook_alone(h, name, reps)
    h.helper("destroy", name)
    return dict(cycles=cycles, alone=alone, without_forwards=stop_hook(h, tiny))


def measure_isolation(h, reps, cycles, count):
    """Section 6; the host file allows the whole store meanwhile, and is
    gone again after."""
    try:
        names, files, views = measure_views(h, reps)
        tiny, small = names["tiny, view"], SMALL_DIFFERENCE_REPS * reps
        log(f"bridge isolation: start with its script.up hook and with it cleared, x{small}")
        hook = cycles_of(h, {"with the hook": (tiny, (), ALLOW_WHOLE),
                             "hook cleared": (tiny, CLEAR_HOOK, ALLOW_WHOLE)}, small)
        hook_alone = measure_hook_alone(h, tiny, small)
        forwards_at_stop = measure_stop_hook(h, tiny, small)
        ranges = measure_ranges(h, small)
        h.host_file(ALLOW_WHOLE)
        update = measure_live_update(h, cycles, UPDATE_PATHS)
        big = f"{BIG_VIEW} paths, view"
        kinds = {label: (files[label], False) for label in ("tiny, view", "tiny, whole store", big)}
        memory = measure_view_memory(h, count, dict(kinds, **{f"{big}, one start for all": (files[big], True)}))
        for name in list(names.values()) + ["ir-own", "ir-shared"]:
            h.helper("destroy", name)
    finally:
        h.host_file(None)
    return dict(big=BIG_VIEW, update_paths=UPDATE_PATHS, views=views, hook=hook,
                hook_alone=hook_alone, stop_hook=forwards_at_stop, ranges=ranges, update=update,
                memory=memory)


def summary(iso):
    """The figures that sum the section up, for the report and the targets:
    medians and their differences, in ms."""
    start = lambda label: med([c["start"] for c in iso["views"][label]])
    big = iso["big"]
    update = {label: (med([x["total"] for x in xs]), med([x["own"] for x in xs]))
              for label, xs in iso["update"].items()}
    (small_total, small_own), (big_total, big_own) = update["2"], update[str(iso["update_paths"])]
    ranges = {key: {label: med([c[key] for c in xs]) for label, xs in iso["ranges"]["cycles"].items()}
              for key in ("start", "stop")}
    ranges["list"] = {label: med(xs) for label, xs in iso["ranges"]["list"].items()}
    hook = {key: med([c[key] for c in iso["hook"]["with the hook"]])
            - med([c[key] for c in iso["hook"]["hook cleared"]]) for key in ("start", "lxc_start")}
    stop_cycles = iso["stop_hook"]["cycles"]
    stop_hook = {key: med([c[key] for c in stop_cycles["with the stop hook"]])
                 - med([c[key] for c in stop_cycles["stop hook cleared"]]) for key in ("stop", "monitor_gone")}
    return dict(
        view_cost=start(f"{big} paths, view") - start("tiny, view"),
        whole_cost=start(f"{big} paths, whole store") - start("tiny, whole store"),
        view_vs_whole=start(f"{big} paths, view") - start(f"{big} paths, whole store"),
        update_total=big_total - small_total, update_own=big_own - small_own,
        ranges=ranges, hook=hook, hook_alone=med(iso["hook_alone"]["ms"]),
        hook_floor=med(iso["hook_alone"]["floor_ms"]), stop_hook=stop_hook,
        stop_hook_alone=med(iso["stop_hook"]["alone"]["ms"]))
