"""The targets of issues 6, 11, 13, 20, 21, 22, 24 and 25, and the check of a run's figures against
them: one (passed, what it was judged on) per target and case."""

from .measure import build_network, guard, sync
from .measure.isolation import summary
from .measure.nix import KINDS, named
from .stats import med, span

SLACK_MS = 5.0      # a runtime command: at most its bare lxc-* call + 5 ms
LIST_RATIO = 1.1    # list: at most 1.1 x one lxc-ls --fancy ... name,state,ipv4
GROWTH_RATIO = 1.2  # create/update at the largest N within 1.2 x N = 1
# The Nix processes of a create/update: the spec evaluation, the build, the
# profile switch (a nixpkgs lookup with --find-file is shown, not judged).
NIX_PROCESSES = {"nix-instantiate": 1, "nix-build": 1, "nix-env": 1, "nix-store": 0}
VIEW_MS = 100.0     # a store view of 2,000 paths adds under 100 ms to a start
SYNC_RATIO = 10.0   # sync of N unchanged flake containers: at least 10 x faster than N updates
FILE_TO_FLAKE = 2.0  # sync of N unchanged container files: within 2 x the flake's time (issue 22)
# Id ranges: start, stop and list with a range per container within noise of
# the shared range: less than 5 % or 1 ms apart, whichever is more.
NOISE_SHARE, NOISE_MS = 0.05, 1.0
BUILD_NETWORK_MS = 10.0  # the build network adds at most 10 ms to a create or an update
TRANSFER_RATIO = 1.3  # export and import of 1 GiB: within 1.3 x tar of the same directories


def runtime_checks(res):
    """Every runtime command but list at the largest N: what the helper adds
    to its own lxc-* call, or, where it makes none, its wall time against
    the bare call that answers the same question; and list against the
    issue's reference, with half of the others running."""
    top = max(res["sizes"]["runtime_sizes"])
    at_top = [r for r in res["runtime"] if r["n"] == top]
    checks = []
    for r in at_top:
        if r["command"] == "list":
            continue
        what = f"{r['command']} at N={top} ({r['where']}, {r['others_running']} others running): "
        walls = f"helper {med(r['helper']):.1f} ms, bare {med(r['bare']):.1f} ms"
        if max(r["lxc_inside"]) > 0:
            ok = med(r["added"]) <= SLACK_MS
            text = f"adds {med(r['added']):.1f} ms to its {r['bare_label'].split()[0]} (<= {SLACK_MS:.0f}); {walls}"
        else:
            ok = med(r["helper"]) <= med(r["bare"]) + SLACK_MS
            text = f"no lxc call: {walls} (<= bare + {SLACK_MS:.0f})"
        checks.append((ok, what + text))
    for r in at_top:
        if r["command"] == "list" and r["others_running"]:
            ref, calls = med(r["extra"]["ipv4"]), med(r["bare"])
            shows = {"GENERATION", "AUTOSTART"} <= set(r["extra"]["columns"])
            ok = med(r["helper"]) <= LIST_RATIO * ref and shows
            checks.append((ok, f"list at N={top}, {r['others_running']} running: helper {med(r['helper']):.1f} ms"
                               f" = {med(r['helper']) / ref:.2f} x lxc-ls --fancy name,state,ipv4 ({ref:.1f} ms)"
                               f" (limit {LIST_RATIO}); lxc-ls --active -1 {calls:.1f} ms,"
                               f" adds {med(r['added']):.1f} ms; columns {' '.join(r['extra']['columns'])}"))
    return checks


def growth_checks(res):
    growth = {g["n"]: g for g in res["growth"]}
    low, high = min(growth), max(growth)
    checks = []
    for command in ("create", "update"):
        a = med([x["total"] for x in growth[low][command]])
        b = med([x["total"] for x in growth[high][command]])
        checks.append((b <= GROWTH_RATIO * a, f"{command} at N={high}: {b:.1f} ms = {b / a:.2f} x N={low} ({a:.1f} ms)"
                                               f" (limit {GROWTH_RATIO})"))
    return checks


def nixpkgs_check(res):
    nixpkgs = res["nixpkgs"]
    ok = all(f["ok"] and not f["nixpkgs_files"] for f in nixpkgs["files"]) and nixpkgs["create_ok"]
    return (ok, "spec evaluation never loads nixpkgs: "
                + "; ".join(f"{f['kind']}: {'ok' if f['ok'] else 'failed'}, "
                            f"{len(f['nixpkgs_files'])} nixpkgs files" for f in nixpkgs["files"])
                + f"; create without nixpkgs {'ok' if nixpkgs['create_ok'] else 'failed'}")


def evaluation_checks(res):
    """One evaluation of the system per create and update, in the spec
    evaluation, the build and the profile switch."""
    checks = []
    for kind, by_command in res["nix_counts"].items():
        for command, v in by_command.items():
            p = v["processes"]
            ok = v["system_evaluations"] == 1 and all(p[t] == n for t, n in NIX_PROCESSES.items())
            checks.append((ok, f"one system evaluation per {command}, {KINDS[kind][0]}: "
                               f"{sum(p.values())} Nix processes ({named(p)}), "
                               f"system evaluated {v['system_evaluations']} x"))
    return checks


# Issue 25: the module's autostart at least 2 x faster than lxc-autostart;
# list with all running at most 0.3 x lxc-ls --active.
AUTOSTART_RATIO = 0.5
ACTIVE_RATIO = 0.3


def density_checks(res):
    d = res["density"]
    module, plain = d["module"]["start"], d["lxc_autostart"]["start"]
    n = d["n"]
    checks = [(min(module["running"], plain["running"]) >= n >= res["sizes"]["density"],
               f"{res['sizes']['density']} tiny containers running at once: "
               f"{module['running']} ran (the module's script), {plain['running']} ran (lxc-autostart)")]
    ratio = module["start_ms"] / plain["start_ms"]
    checks.append((ratio <= AUTOSTART_RATIO,
                   f"autostart of {n} (issue 25): the module's script {module['start_ms'] / 1000:.1f} s ="
                   f" {ratio:.2f} x lxc-autostart ({plain['start_ms'] / 1000:.1f} s) (limit {AUTOSTART_RATIO});"
                   f" every init ran after {module['booted_ms'] / 1000:.1f} s against"
                   f" {plain['booted_ms'] / 1000:.1f} s"))
    helper, active = med(d["list"]["helper"]), med(d["list"]["bare"])
    checks.append((helper <= ACTIVE_RATIO * active,
                   f"list with {n} running (issue 25): {helper:.1f} ms = {helper / active:.2f} x"
                   f" lxc-ls --active -1 ({active:.1f} ms) (limit {ACTIVE_RATIO})"))
    return checks


def isolation_checks(res):
    """The store view's cost at start, and the id ranges' at start, stop
    and list (issue 11); the stop hook's at stop (issue 21)."""
    s, big = summary(res["isolation"]), res["isolation"]["big"]
    checks = [(s["view_cost"] < VIEW_MS,
               f"a view of {big} store paths adds {s['view_cost']:.1f} ms to a start (< {VIEW_MS:.0f})")]
    for command, by in s["ranges"].items():
        own, shared = by["own range"], by["shared range"]
        limit = max(NOISE_MS, NOISE_SHARE * shared)
        checks.append((abs(own - shared) < limit,
                       f"{command} with a range per container: {own:.1f} ms against {shared:.1f} ms shared,"
                       f" {own - shared:+.1f} ms (within noise: < {limit:.1f} ms, 5 % or 1 ms)"))
    hook = res["isolation"]["stop_hook"]
    plain, emptied = hook["without_forwards"], hook["alone"]["emptied"]
    checks.append((plain is None and emptied,
                   f"forwards at stop (issue 21): a container without forwarded ports stops without a hook"
                   f" ({'none' if plain is None else 'it has one'}); the hook of one with them empties its chain"
                   f" ({'yes' if emptied else 'NO'}) and adds {s['stop_hook']['stop']:.1f} ms to its stop"))
    return checks


# The ports' guard (issue 21): start and stop within 2 ms of them without it,
# TCP throughput within 5 %.
GUARD_MS, GUARD_SHARE = 2.0, 0.95


def guard_checks(res):
    s = guard.summary(res["guard"])
    checks = [(abs(s["added"][key]) <= GUARD_MS,
               f"the ports' guard: {key} {s['added'][key]:+.1f} ms against none (within {GUARD_MS:.0f})")
              for key in ("start", "stop")]
    for path, share in s["shares"].items():
        checks.append((share >= GUARD_SHARE,
                       f"the ports' guard: TCP {path} {s['speeds']['guard'][path]:.0f} MB/s ="
                       f" {share * 100:.1f} % of {s['speeds']['no guard'][path]:.0f} MB/s without it"
                       f" (at least {GUARD_SHARE * 100:.0f} %)"))
    return checks


def spans(s, kind, case):
    """Generations changed, running containers switched live and
    restarted, over every sync of a case, each as 'n' or 'min-max'."""
    seen = sync.observed(s, kind, case)
    return tuple(span([x[key] for x in seen]) for key in ("switched", "activated", "restarted"))


def sync_checks(res):
    """sync (issues 13 and 22): with nothing changed nothing is built,
    switched or restarted, and no container is evaluated (a flake's in one
    Nix process), that of container files within FILE_TO_FLAKE of the
    flake's time; that sync beats N updates by SYNC_RATIO; with one
    changed, that one is built and switched, and the only one evaluated;
    with a list file's shared import changed, exactly those that read it."""
    s = res["sync"]
    n, running = s["n"], len(s["flake"]["running"])
    checks = []
    for kind in ("flake", "file"):
        for case, built in (("unchanged", 0), ("changed", 1)):
            c = sync.counted(s, kind, case)
            switched, activated, restarted = spans(s, kind, case)
            ok = (switched, activated, restarted, c["building_calls"]) == (str(built), str(built), "0", built)
            limit = f"{built} built, changed and switched live, none restarted"
            if case == "unchanged":
                ok = ok and c["evaluations"] == 0
                limit = "none evaluated, " + limit
            checks.append((ok, f"sync --{kind}, {n} listed, {sync.CASES[case]}: {c['evaluated']} systems"
                               f" evaluated ({c['helpers']} helper processes), {c['building_calls']} built"
                               f" ({c['derivations_built']} derivations), {switched} generations changed;"
                               f" of {running} running: {activated} switched live, {restarted} restarted"
                               f" (limit: {limit})"))
    p = sync.counted(s, "flake", "unchanged")["processes"]
    checks.append((p["nix-instantiate"] == 1 and sum(p.values()) == 1,
                   f"sync --flake, nothing changed: {sum(p.values())} Nix processes ({named(p)})"
                   f" (limit: 1, the flake's nix-instantiate)"))
    for kind in ("flake", "file"):
        c = sync.counted(s, kind, "changed")
        checks.append((c["evaluated"] == 1, f"sync --{kind}, {sync.CASES['changed']}: {c['evaluated']} of {n}"
                                             f" systems evaluated (limit 1)"))
    c, readers = sync.counted(s, "file", "shared"), s["file"]["readers"]
    switched, _, restarted = spans(s, "file", "shared")
    checks.append(((c["evaluated"], switched, restarted) == (readers, str(readers), "0"),
                   f"sync --file, {n} listed, {sync.CASES['shared']}: {c['evaluated']} systems evaluated,"
                   f" {switched} generations changed, {restarted} restarted (limit: the {readers} that read it"
                   f" evaluated and changed, none restarted)"))
    m = sync.summary(s)
    files, flake = m["unchanged"][("file", 1)], m["unchanged"][("flake", 1)]
    checks.append((files <= FILE_TO_FLAKE * flake,
                   f"sync --file, {n} listed, nothing changed: {files:.0f} ms against the flake's {flake:.0f} ms:"
                   f" {files / flake:.1f} x (limit {FILE_TO_FLAKE:.0f} x)"))
    ratio = m["ratios"][("flake", 1)]
    checks.append((ratio >= SYNC_RATIO,
                   f"sync --flake, {n} listed, nothing changed: {m['unchanged'][('flake', 1)]:.0f} ms against"
                   f" {n} separate updates, {m['updates'] / 1000:.1f} s: {ratio:.0f} x faster"
                   f" (limit {SYNC_RATIO:.0f} x)"))
    return checks


def build_network_checks(res):
    """What the build network adds to a create and an update, and that it
    starts no Nix process (issue 20)."""
    checks = []
    for command, v in build_network.summary(res["build_network"]).items():
        with_, without = (v["processes"][label] for label in build_network.VARIANTS)
        checks.append((v["added"] <= BUILD_NETWORK_MS and with_ == without,
                       f"the build network adds {v['added']:+.1f} ms to a {command} ({v['with_ms']:.1f} against"
                       f" {v['without_ms']:.1f} ms; setup {v['setup']:.1f} ms) (limit +{BUILD_NETWORK_MS:.0f});"
                       f" Nix processes {named(with_)} against {named(without)} (limit: the same)"))
    return checks


def transfer_checks(res):
    """export | import against tar | tar, and export and import through a
    file against tar -cf and tar -xf, each within TRANSFER_RATIO; and a
    move to a host that has the closure sends no store path (issue 24)."""
    t = res["transfer"]
    checks = []
    for ours, theirs in (("export | import", "tar | tar"), ("export + import", "tar -cf + tar -xf")):
        a, b = med(t["samples"][ours]), med(t["samples"][theirs])
        checks.append((a <= TRANSFER_RATIO * b,
                       f"{ours} of {t['data_mib']} MiB of data: {a:.0f} ms = {a / b:.2f} x {theirs}"
                       f" ({b:.0f} ms) (limit {TRANSFER_RATIO})"))
    sent = [m["sent"] for m in t["move"]]
    checks.append((bool(sent) and all(n == 0 for n in sent),
                   f"move to a host that has the closure: store paths sent {', '.join(map(str, sent))}"
                   f" in {len(sent)} moves (limit 0)"))
    return checks


def check(res):
    """Every target of the sections measured, in the report's order."""
    groups = (("runtime", runtime_checks), ("growth", growth_checks),
              ("nixpkgs", lambda r: [nixpkgs_check(r)]), ("nix_counts", evaluation_checks),
              ("density", density_checks), ("isolation", isolation_checks),
              ("sync", sync_checks), ("guard", guard_checks),
              ("build_network", build_network_checks), ("transfer", transfer_checks))
    return [c for key, checks in groups if key in res for c in checks(res)]
