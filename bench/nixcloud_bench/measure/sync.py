"""7. sync (issues 13 and 22): N tiny containers listed, once by a flake
and once by a list file of container files, made by one `sync`, synced
again with nothing changed and with one of them changed (and for the list
file, with an import that some of its files share changed), and removed;
the flake's against one `update` per container."""

import json
import os
import re
import subprocess

from ..commands import Ran, alternate, log
from ..project import REPO
from ..stats import med
from .growth import parts
from .nix import SYSTEM_TRACE, NixCalls
from .store_view import init_pid

# The tiny system as a flake imports it: by absolute path (a flake is
# evaluated purely, without the search path that container files use).
TINY_SYSTEM_PATH = os.path.join(REPO, "examples/tiny/system.nix")
# The timing lines of the helper processes sync started: sync prints every
# line of theirs named after its container.
CHILD_TIMING = re.compile(r"^([\w-]+): (timing: \S+ [\d.]+ ms)$", re.M)
TOTAL = re.compile(r"^timing: total ([\d.]+) ms$", re.M)
# Each system evaluation leaves `trace: <SYSTEM_TRACE> <container>`.
EVALUATED = re.compile(rf"trace: {SYSTEM_TRACE} ([\w-]+)")
SUMMARY_KEYS = ("created", "updated", "unchanged", "removed", "failed")
PARTS = ("total", "spec", "build", "switch", "lxc", "own")
# The syncs of a listing, in the order they are made.
CASES = {"create": "nothing there: all created", "unchanged": "nothing changed",
         "changed": "the first (running) changed",
         "shared": "the import every 20th reads changed"}
# Every this many of a list file's containers import shared.nix (issue 22:
# a shared import changed evaluates exactly those that read it).
SHARED_EVERY = 20


class Listing:
    """N containers listed for sync, each with a tiny version of its own
    and its system traced with its name. `set` gives some of them new
    versions; `argv` is the sync of the list."""

    kind = None

    def __init__(self, h, prefix, n):
        self.h = h
        self.names = [f"{prefix}{i:03d}" for i in range(n)]
        self.versions = {}

    def set(self, versions):
        self.versions.update(versions)
        self.write(versions)

    def traced(self, name):
        return f"{SYSTEM_TRACE} {name}"


class FlakeListing(Listing):
    """`nixcloudContainers.<name>` of a flake in the run's directory, as a
    flake holding many containers keeps them: flake.nix names each, and
    imports it from a file of its own (containers/<name>.nix); a change
    rewrites that container's file only."""

    kind = "flake"

    def __init__(self, h, n):
        super().__init__(h, "sf", n)
        self.dir = os.path.join(h.work, "sync-flake")
        os.makedirs(os.path.join(self.dir, "containers"))
        containers = "".join(f"    {name} = import ./containers/{name}.nix;\n" for name in self.names)
        with open(os.path.join(self.dir, "flake.nix"), "w") as f:
            f.write(f"{{\n  outputs = {{ self }}: {{\n  nixcloudContainers = {{\n{containers}  }};\n  }};\n}}\n")

    def write(self, changed):
        for name, version in changed.items():
            with open(os.path.join(self.dir, "containers", f"{name}.nix"), "w") as f:
                f.write(f'{{ system = builtins.trace "{self.traced(name)}"'
                        f' (import {TINY_SYSTEM_PATH} {{ version = "{version}"; }}); }}\n')

    def argv(self):
        return ["sync", "--flake", self.dir]

    def emptied(self):
        """The flake with no containers, and what puts its own back."""
        path = os.path.join(self.dir, "flake.nix")
        with open(path) as f:
            full = f.read()
        with open(path, "w") as f:
            f.write("{ outputs = { self }: { nixcloudContainers = { }; }; }\n")

        def restore():
            with open(path, "w") as f:
                f.write(full)
        return restore


class FileListing(Listing):
    """A list file naming a container file per container, all in one
    directory; every SHARED_EVERY-th of them (`readers`) puts what
    shared.nix there says into its version. A change rewrites that
    container's file only; `share` rewrites shared.nix."""

    kind = "file"

    def __init__(self, h, n):
        super().__init__(h, "sl", n)
        os.makedirs(os.path.join(h.work, "sync-files"))
        self.readers = self.names[::SHARED_EVERY]
        self.share("initial")
        self.list = h.write("sync-list.json", json.dumps(
            {name: {"file": os.path.join(h.work, "sync-files", f"{name}.nix")} for name in self.names}))

    def share(self, tag):
        self.h.write("sync-files/shared.nix", f'{{ tag = "{self.h.token}-{tag}"; }}\n')

    def write(self, changed):
        for name, version in changed.items():
            if name in self.readers:
                version += "-${(import ./shared.nix).tag}"
            self.h.tiny_file(f"sync-files/{name}.nix", version, trace=self.traced(name))

    def argv(self):
        return ["sync", "--file", self.list]

    def emptied(self):
        """The list file with no containers, and what puts its own back."""
        with open(self.list) as f:
            full = f.read()
        self.h.write("sync-list.json", "{}")
        return lambda: self.h.write("sync-list.json", full)


def running_pid(h, name):
    """The container's init, None when it does not run."""
    try:
        return init_pid(h, name)
    except ValueError:
        return None


def helpers(err):
    """The parts (section 2's) of each helper process that a sync started,
    from their timing lines in its stderr."""
    lines = {}
    for name, line in CHILD_TIMING.findall(err):
        lines.setdefault(name, []).append(line)
    found = []
    for name, own in lines.items():
        text = "\n".join(own)
        total = TOTAL.search(text)
        if total:
            found.append(parts(Ran([name], float(total.group(1)), subprocess.CompletedProcess(name, 0, "", text))))
    return found


def observe(h, listing, jobs, running, calls=None):
    """One sync of `listing` with -j `jobs`: its wall time, its summary,
    its own Nix calls, the helper processes it started (how many, and the
    median of each part of theirs), the containers whose current
    generation changed, and those of `running` whose init is another after
    it (restarted, or stopped), or that were switched live (the tiny
    system's activation record changed). With `calls` (NixCalls) it runs
    with the Nix wrappers, and the Nix processes, system evaluations and
    builds are counted too."""
    generations = {name: h.current_generation(name) for name in listing.names}
    inits = {name: running_pid(h, name) for name in running}
    activations = {name: h.activated(name) for name in running}
    env = calls.env(h.env) if calls else None
    ran = h.helper(*listing.argv(), "-j", str(jobs), "--json", env=env)
    summary = json.loads(ran.out)
    started = helpers(ran.err)
    seen = dict(ms=ran.ms, own_nix=[tool for tool, _ in ran.calls if tool.startswith("nix-")],
                own_nix_ms=ran.waited_ms("nix-"), helpers=len(started),
                helper_parts={part: med([p[part] for p in started]) for part in PARTS},
                switched=sum(h.current_generation(n) != g for n, g in generations.items()),
                restarted=sum(running_pid(h, n) != pid for n, pid in inits.items()),
                activated=sum(h.activated(n) != a for n, a in activations.items()),
                **{key: len(summary[key]) for key in SUMMARY_KEYS})
    if calls:
        seen.update(counts(calls))
    return seen


def counts(calls):
    """What the Nix processes of a counted command did."""
    text = calls.stderr()
    builds = calls.builds()
    return dict(processes=calls.processes(), evaluations=len(EVALUATED.findall(text)),
                evaluated=len(set(EVALUATED.findall(text))), building_calls=len(builds),
                derivations_built=sum(builds))


def synced(h, listing, case, jobs_order, rounds, running, calls, prepare):
    """A row of the table: `rounds` syncs with each -j of `jobs_order`
    (the order turning every round), each after `prepare(tag)`; and one
    more before them, counted (calls), with the first -j."""
    log(f"sync --{listing.kind}, {len(listing.names)} listed, {CASES[case]}: counted, then"
        f" -j {' and '.join(map(str, jobs_order))} x{rounds}")
    prepare("counted")
    counted = observe(h, listing, jobs_order[0], running, calls)
    tags = iter(range(10 ** 6))

    def once(jobs):
        prepare(f"r{next(tags)}")
        return observe(h, listing, jobs, running)

    got = alternate({jobs: (lambda j=jobs: once(j)) for jobs in jobs_order}, rounds)
    return [dict(case=case, jobs=jobs, runs=runs, counted=counted if jobs == jobs_order[0] else None)
            for jobs, runs in got.items()]


def prune(h, listing):
    """Removes every container of `listing`: `sync --prune` of its source
    (the flake, the list file) emptied, as only the source that created a
    container prunes it (issue 22); its wall time."""
    restore = listing.emptied()
    try:
        return h.helper(*listing.argv(), "--prune", "-j", "2", "--json").ms
    finally:
        restore()


def measure_updates(h, listing, rounds, calls):
    """`update <name>` of every container of the list, one after the other,
    `rounds` times, with nothing changed: what the sync of an unchanged
    list saves; and one more update, counted."""
    log(f"{len(listing.names)} separate updates, nothing changed, x{rounds}")
    ran = h.helper("update", listing.names[-1], env=calls.env(h.env))
    counted = dict(counts(calls), ms=ran.ms)
    each, totals = [], []
    for _ in range(rounds):
        took = [parts(h.helper("update", name)) for name in listing.names]
        each += took
        totals.append(sum(p["total"] for p in took))
    return dict(each=each, totals=totals, counted=counted)


def measure_listing(h, listing, rounds, reps, running_count, calls):
    """The rows for one listing: all created (fresh versions each time,
    after removing those of the time before), then synced again unchanged,
    then with its first container (running) changed. Ends with the
    listing's containers on the host, `running_count` of them running."""
    versions = lambda tag: {name: f"{h.token}-{tag}-{name}" for name in listing.names}
    removals = []

    def fresh(tag):
        if any(h.current_generation(name) for name in listing.names):
            removals.append(prune(h, listing))
        listing.set(versions(f"create-{tag}"))

    rows = synced(h, listing, "create", (2, 1), rounds, [], calls, fresh)
    running = listing.names[:running_count]
    h.start(running)
    # Unchanged containers start no helper process (a flake's since issue
    # 13, a container file's since issue 22), so -j does not matter.
    rows += synced(h, listing, "unchanged", (1,), reps, running, calls, lambda tag: None)
    first = listing.names[0]
    rows += synced(h, listing, "changed", (1, 2), rounds, running, calls,
                   lambda tag: listing.set({first: f"{h.token}-changed-{tag}-{first}"}))
    if listing.kind == "file":
        rows += synced(h, listing, "shared", (1, 2), rounds, running, calls,
                       lambda tag: listing.share(f"shared-{tag}"))
    return dict(rows=rows, removals=removals, running=running)


def measure_sync(h, n, rounds, reps, running_count):
    """Section 7: the flake's listing, then the list file's, each removed
    (by sync --prune) before the next; the separate updates with the
    flake's."""
    calls = NixCalls(h, "sync")
    results = dict(n=n)
    for listing in (FlakeListing(h, n), FileListing(h, n)):
        got = measure_listing(h, listing, rounds, reps, running_count, calls)
        if listing.kind == "flake":
            got["updates"] = measure_updates(h, listing, rounds, calls)
        else:
            got["readers"] = len(listing.readers)
        h.kill_all(got["running"])
        got["removals"].append(prune(h, listing))
        results[listing.kind] = got
    return results


def row(s, kind, case, jobs):
    return next(r for r in s[kind]["rows"] if r["case"] == case and r["jobs"] == jobs)


def observed(s, kind, case):
    """Every sync of a case, with each -j, the counted one first."""
    rows = [r for r in s[kind]["rows"] if r["case"] == case]
    return [r["counted"] for r in rows if r["counted"]] + [x for r in rows for x in r["runs"]]


def counted(s, kind, case):
    return observed(s, kind, case)[0]


def summary(s):
    """The figures that sum the section up, for the report and the
    targets: the median syncs with nothing changed, in ms, against the N
    separate updates (the median of their totals)."""
    ms = lambda r: med([x["ms"] for x in r["runs"]])
    updates = med(s["flake"]["updates"]["totals"])
    unchanged = {(kind, r["jobs"]): ms(r) for kind in ("flake", "file") for r in s[kind]["rows"]
                 if r["case"] == "unchanged"}
    return dict(updates=updates, unchanged=unchanged,
                ratios={key: updates / took for key, took in unchanged.items()})
