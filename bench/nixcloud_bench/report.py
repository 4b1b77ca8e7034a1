"""The printed report: one section per measurement, then PASS/MISS for each
target."""

import os

from collections import Counter

from .measure import build_network, guard, sync, transfer
from .measure.isolation import summary
from .measure.nix import FIND_FILE, KINDS, NIX_TOOLS, named
from .project import REPO
from .stats import med, span


def table(headers, rows):
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(headers, widths)).rstrip()]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines)


def fmt(x, digits=1):
    return "-" if x is None else f"{x:.{digits}f}"


def spread(samples, digits=1):
    """'median [min-max]' of a list of milliseconds."""
    if not samples:
        return "-"
    f = f"{{:.{digits}f}}"
    return f"{f.format(med(samples))} [{f.format(min(samples))}-{f.format(max(samples))}]"


def report_runtime(rows):
    out = ["== 1. Runtime commands: the helper next to the bare lxc-* call it makes",
           "   wall ms, median [min-max] (both started the same way, from Python);",
           "   diff = median of (helper - bare) per round; added = median of the helper's wall time",
           "   minus its own lxc-* call (from NIXCLOUD_CONTAINER_TIMINGS; list makes none, it reads",
           "   LXC's command sockets and the cgroups: its bare call is lxc-ls --active, which names the",
           "   same containers): process start, state file, checks; own = the part of `added` inside main()"]
    lines = []
    for r in rows:
        lines.append([r["command"], r["n"], r["where"], spread(r["helper"]), spread(r["bare"]),
                      fmt(r["diff"]), fmt(med(r["added"])), fmt(med(r["own"])), r["bare_label"]])
        if r["command"] == "list":
            lines.append(["", "", "", "", spread(r["extra"]["ipv4"]), "", "", "",
                          "reference: lxc-ls --fancy --fancy-format name,state,ipv4"])
    out.append(table(["command", "N", "container", "helper", "bare", "diff", "added", "own", "bare call"], lines))
    return "\n".join(out)


def report_growth(growth):
    out = ["== 2. create and update of the tiny example, and list, as N grows",
           "   ms, median [min-max] of the probes; parts from NIXCLOUD_CONTAINER_TIMINGS:",
           "   spec = nix-instantiate (spec evaluation), build = nix-build (evaluation and build),",
           "   switch = nix-env --set (profile switch), lxc = its lxc-* calls (create: lxc-create;",
           "   update: lxc-info; destroy: lxc-info, lxc-destroy; list: none), own = the rest (the",
           "   helper itself: state file, locks, checks); create/update/destroy on a stopped container"]
    parts = ("spec", "build", "switch", "lxc", "own")
    lines = []
    for g in growth:
        for command in ("create", "update", "destroy"):
            p = g[command]
            lines.append([g["n"], command, spread([x["total"] for x in p]),
                          *[fmt(med([x[part] for x in p])) for part in parts]])
        lines.append([g["n"], "list", spread(g["list"]["helper"]), "", "", "",
                      fmt(med(g["list"]["lxc_inside"])), fmt(med(g["list"]["own"]))])
    out.append(table(["N", "command", "total", *parts], lines))
    return "\n".join(out)


def report_by_hand(samples, helper_updates):
    one, two = med(samples["one call"]), med(samples["two calls"])
    lines = [["helper update: its nix-build (TIMINGS)", spread([x["build"] for x in helper_updates])],
             ["helper update:   then its nix-env --set", spread([x["switch"] for x in helper_updates])],
             ["helper update: the two together", spread([x["build"] + x["switch"] for x in helper_updates])],
             ["by hand: nix-env -f lib/cli.nix -A generation --set", spread(samples["one call"])],
             ["by hand: nix-build -A generation --no-out-link", spread(samples["nix-build"])],
             ["by hand:   then nix-env --set <path>", spread(samples["nix-env --set"])],
             ["by hand: the two together", spread(samples["two calls"])],
             ["one call instead of two would save", f"{two - one:.1f} ms ({(two - one) / two * 100:.0f} %)"]]
    return "\n".join(["== 3. Build + profile switch of a fresh generation: one call vs two (ms)",
                      table(["variant", "median [min-max]"], lines)])


def report_nix(counts, spec_cost, nixpkgs):
    tools = (*NIX_TOOLS, FIND_FILE)
    rows = [[command, KINDS[kind][0], *[v["processes"][t] for t in tools], v["system_evaluations"]]
            for kind, by_command in counts.items() for command, v in by_command.items()]
    out = ["== 4. Nix processes and evaluations of the system per command",
           table(["command", "container file", *tools, "system evaluations"], rows),
           "   system evaluations: `trace:` lines, from the container file's system wrapped in",
           "   builtins.trace, or from tests/fake-nixpkgs' eval-config, which traces each evaluation",
           "",
           "   spec evaluation (nix-instantiate --eval --strict --json lib/cli.nix -A spec), ms:"]
    labels = {"system": "`system =` file (tiny)", "nixos": "NixOS `configuration =` file",
              "floor": "nix-instantiate --eval -E null (Nix's floor)"}
    out += [f"   {labels[k]:<46} {spread(v)}" for k, v in spec_cost.items()]
    out += ["", "   spec evaluation with NIX_PATH='' and -I nixpkgs=/nonexistent:"]
    for f in nixpkgs["files"]:
        opened = (f"{len(f['nix_files'])} .nix files among {f['files_opened']} opened: "
                  + ", ".join(os.path.relpath(p, REPO) if p.startswith(REPO) else os.path.basename(p)
                              for p in f["nix_files"])
                  if f["strace"] else "strace missing: files not listed")
        out.append(f"   {f['kind']:<30} {'ok' if f['ok'] else 'FAILED: ' + f['error']}; {opened}")
    out.append("   helper create with NIX_PATH='' -n '-I nixpkgs=/nonexistent': "
               + ("ok" if nixpkgs["create_ok"] else "FAILED: " + nixpkgs["create_error"]))
    return "\n".join(out)


def density_column(n, start, stop):
    """One way of starting and stopping all n containers, as table cells."""
    per = lambda value: value / max(start["running"], 1)
    m, cg = start["memory"], start["cgroups_kib"]
    return [
        f"{start['running']} of {n}" + (f" (exit {start['code']}: {start['err']})" if start["code"] else ""),
        f"{start['start_ms'] / 1000:.1f} s = {start['start_ms'] / n:.1f} ms each",
        f"{start['booted_ms'] / 1000:.1f} s",
        f"{per(start['mem_drop_kib']) / 1024:.2f} MiB ({start['mem_drop_kib'] / 1024:.0f} MiB)",
        f"{per(m['monitor']['pss'] + m['inside']['pss']) / 1024:.2f} MiB",
        f"{per(m['monitor']['pss']):.0f} KiB",
        f"{per(m['monitor']['private']):.0f} KiB",
        f"{per(m['inside']['pss']):.0f} KiB",
        "n/a: LXC made none on this host" if cg is None else f"{per(cg) / 1024:.2f} MiB",
        f"{stop['ms'] / 1000:.1f} s = {stop['ms'] / max(stop['stopped'], 1):.0f} ms each"
        + (f" (exit {stop['code']}: {stop['err']})" if stop["code"] else "")
        + (f"; {stop['still_running']} still running, killed" if stop["still_running"] else ""),
    ]


def report_density(d, hooks):
    n = d["n"]
    labels = ["containers running at once", "start all", "  until every init ran",
              "host memory: MemAvailable drop / container", "  PSS of their processes / container",
              "    LXC monitor (PSS)", "    LXC monitor (private)", "    inside (PSS)",
              "memory cgroups / container", "stop all"]
    module = density_column(n, d["module"]["start"], d["module"]["stop"])
    plain = density_column(n, d["lxc_autostart"]["start"], d["lxc_autostart"]["stop"])
    listing = d["list"]
    out = [f"== 5. Density: {n} tiny containers",
           table(["", "modules/host/services.nix: script (autostart), preStop", "lxc-autostart, lxc-autostart --shutdown"],
                 [[label, x, y] for label, x, y in zip(labels, module, plain)]),
           "",
           "   the module's shell (modules/host/services.nix, evaluated), run with bash -e:",
           *[f"     {line}" for key in ("script", "preStop") for line in d["service"][key].splitlines()],
           "",
           f"   list with all {n} running (module's start), ms:",
           f"     helper {spread(listing['helper'])}; lxc-ls --active -1 {spread(listing['bare'])};"
           f" lxc-ls --fancy ... name,state,ipv4 {spread(listing['extra']['ipv4'])}"]
    if hooks:
        x = hooks["samples"]
        out.append("")
        out.append("   LXC's distribution hooks (common.conf.d): " + "; ".join(hooks["hooks"]))
        for op in ("start", "stop"):
            saved = med(x[f"as is {op}"]) - med(x[f"cleared {op}"])
            out.append(f"   lxc-{op}: {spread(x[f'as is {op}'])} ms as configured, "
                       f"{spread(x[f'cleared {op}'])} ms with them cleared ({saved:.1f} ms less)")
    return "\n".join(out)


def report_cycles(title, cycles, keys):
    """Start/stop cycles (isolation.cycle), a line per variant: `keys`
    (sample key -> column), median [min-max]."""
    rows = [[label, *[spread([c[k] for c in samples]) for k in keys]] for label, samples in cycles.items()]
    return table([title, *keys.values()], rows)


def report_views(iso, s):
    big = iso["big"]
    seen = {f"{label} ({samples[0]['entries']})": samples for label, samples in iso["views"].items()}
    return "\n".join([
        "   start = the helper's start (lxc-start returns once RUNNING), lxc-start and own (the rest, the",
        "   store view's mounts included) from its TIMINGS lines; stop = the helper's stop; monitor gone =",
        "   from the stop's beginning until LXC's monitor exited (its mount namespace goes with it)",
        report_cycles("container (store paths it sees)", seen,
                      {"start": "start", "lxc_start": "lxc-start", "start_own": "own", "stop": "stop",
                       "monitor_gone": "monitor gone"}),
        f"   a view of {big} paths adds {s['view_cost']:.1f} ms to a start ({s['view_cost'] / big * 1000:.1f} ms"
        f" per 1000 paths); {s['view_vs_whole']:.1f} ms more than the whole store; with the whole store,"
        f" {big} paths more add {s['whole_cost']:.1f} ms"])


def report_update(iso, s):
    rows = [[f"adds {label} paths", spread([x["total"] for x in samples]),
             *[fmt(med([x[part] for x in samples])) for part in ("spec", "build", "switch", "lxc", "own")],
             f"{min(x['added'] for x in samples)}-{max(x['added'] for x in samples)}"]
            for label, samples in iso["update"].items()]
    return "\n".join([
        "   live update of a running tiny container, ms; parts from TIMINGS as in section 2 (lxc: lxc-info,",
        "   lxc-attach for the activation; own includes adding the paths to the view)",
        table(["update", "total", "spec", "build", "switch", "lxc", "own", "paths added"], rows),
        f"   {iso['update_paths']} paths more: own {s['update_own']:.1f} ms more, total {s['update_total']:.1f} ms more"])


def report_memory(iso):
    rows = [[label, m["n"], f"{m['entries']}", f"{m['mem_drop_kib'] / m['n'] / 1024:.2f} MiB",
             f"{m['kernel_kib'] / m['n'] / 1024:.2f} MiB",
             f"{(m['memory']['monitor']['pss'] + m['memory']['inside']['pss']) / m['n']:.0f} KiB",
             f"{m['mounts'] / m['n']:.0f}", f"{m['start_ms'] / 1000:.2f} s"] for label, m in iso["memory"].items()]
    return "\n".join([
        "   host memory of running containers, per container: the drop of MemAvailable once settled, the",
        "   growth of SUnreclaim + Percpu (kernel), the PSS of their processes (as in section 5), the",
        "   mounts in their monitors' and inits' namespaces; started by one `start` each (as the module's",
        "   script does), the last by one `start` naming all",
        table(["container", "running", "store paths", "MemAvailable drop", "kernel", "PSS", "mounts",
               "start all"], rows)])


def report_ranges(iso, s):
    r = iso["ranges"]
    return "\n".join([
        "   id ranges: " + ", ".join(f"{name} has uids {uids}" for name, uids in r["uids"].items()),
        report_cycles("container", r["cycles"], {"start": "start", "lxc_start": "lxc-start", "stop": "stop"}),
        *[f"   list, host file with {'the default idmap' if label == 'own range' else 'idmap.isolated = false'}:"
          f" {spread(x)}" for label, x in r["list"].items()]])


def report_hook(iso, s):
    alone = iso["hook_alone"]
    return "\n".join([
        "   bridge isolation: the helper's start with lxc.net.0.script.up, and with it cleared",
        "   (-l '-s lxc.net.0.script.up=')",
        report_cycles("start", iso["hook"], {"start": "start", "lxc_start": "lxc-start"}),
        f"   the hook adds {s['hook']['start']:.1f} ms to a start ({s['hook']['lxc_start']:.1f} ms to lxc-start)",
        f"   the hook alone, /bin/sh -c 'exec <script> ...' started from Python, {len(alone['ms'])} x:"
        f" {spread(alone['ms'], 2)} ms; /bin/true so: {spread(alone['floor_ms'], 2)} ms;"
        f" the port isolated after it: {'yes' if alone['isolated'] else 'NO'}"])


def report_stop_hook(iso, s):
    hook = iso["stop_hook"]
    alone, plain = hook["alone"], hook["without_forwards"]
    return "\n".join([
        "   forwards at stop: the helper's stop of a container with a forwarded port, with its lxc.hook.stop",
        "   (lib/drop-forwards.sh: nft empties its chain of forwards) and with it cleared (-l '-s lxc.hook.stop='",
        "   at the start)",
        report_cycles("stop", hook["cycles"], {"stop": "stop", "monitor_gone": "monitor gone"}),
        f"   the hook adds {s['stop_hook']['stop']:.1f} ms to the stop of a container with forwarded ports"
        f" ({s['stop_hook']['monitor_gone']:.1f} ms until the monitor is gone)",
        f"   the hook alone, /bin/sh -c 'exec <script> <name> lxc stop' started from Python, {len(alone['ms'])} x:"
        f" {spread(alone['ms'], 2)} ms; /bin/true so: {spread(alone['floor_ms'], 2)} ms; the chain emptied by"
        f" it: {'yes' if alone['emptied'] else 'NO'}",
        f"   a container without forwarded ports has {'the hook: ' + plain if plain else 'no stop hook'}"])


def report_isolation(iso):
    s = summary(iso)
    return "\n\n".join(["== 6. Isolation: store view, id ranges, bridge isolation, forwards at stop"
                         " (ms, median [min-max])\n"
                         + report_views(iso, s), report_update(iso, s), report_memory(iso),
                         report_ranges(iso, s), report_hook(iso, s), report_stop_hook(iso, s)])


def report_sync(s):
    n, running = s["n"], len(s["flake"]["running"])
    rows = []
    for kind in ("flake", "file"):
        for r in s[kind]["rows"]:
            runs, c = r["runs"], r["counted"]
            said = lambda key: span([x[key] for x in runs])
            rows.append([kind, sync.CASES[r["case"]], r["jobs"], spread([x["ms"] for x in runs], 0),
                         said("helpers"), "/".join(said(key) for key in ("created", "updated", "unchanged")),
                         said("switched"), said("activated"), said("restarted"),
                         *([named(c["processes"]), c["evaluated"], f"{c['building_calls']} ({c['derivations_built']})"]
                           if c else ["", "", ""])])
    u, m = s["flake"]["updates"], sync.summary(s)
    unchanged = sync.row(s, "flake", "unchanged", 1)
    helper_rows = [[kind, sync.CASES[r["case"]], r["jobs"],
                    *[fmt(med([x["helper_parts"][part] for x in r["runs"]])) for part in sync.PARTS]]
                   for kind in ("flake", "file") for r in s[kind]["rows"] if r["runs"][0]["helpers"]]
    helper_rows.append(["flake", "separate `update <name>`", "", *[fmt(med([x[part] for x in u["each"]]))
                                                                  for part in sync.PARTS]])
    own = {kind: Counter(tuple(x["own_nix"]) for r in s[kind]["rows"] for x in r["runs"]) for kind in ("flake", "file")}
    return "\n".join([
        f"== 7. sync of {n} listed tiny containers (issues 13 and 22): a flake's, and a list file's"
        f" ({s['file']['readers']} of whose files import shared.nix)",
        "   ms, median [min-max] of the rounds; helpers = helper processes sync started (create or update,",
        "   one per container it does not leave alone); created/updated/unchanged as sync said; generations",
        f"   changed = containers whose profile link moved; of the {running} running ones: switched live = those whose",
        "   activation record (the tiny system's /var/lib/tiny/activated) changed, restarted = those whose init is",
        "   another after the sync. From one more sync per row before the rounds, with",
        "   the -j shown first, through section 4's Nix wrappers (each call's stderr kept): the Nix processes,",
        "   the systems evaluated (their trace lines, one name each) and the nix-build calls that built",
        "   (derivations built)",
        table(["list", "sync of", "-j", "ms", "helpers", "created/updated/unchanged", "generations changed",
               "switched live", "restarted", "Nix processes", "systems evaluated", "built"], rows),
        "",
        "   the helper processes that sync started, ms per process: the median over the syncs of a row of the",
        "   median process of each; parts from their timing lines as in section 2 (spec = nix-instantiate,",
        "   build = nix-build, switch = nix-env, lxc = lxc-*, own = the rest); last, the separate updates",
        table(["list", "sync of", "-j", *sync.PARTS], helper_rows),
        "",
        f"   {n} separate `update <name>` of the flake's containers, nothing changed, one after the other:"
        f" {spread([t / 1000 for t in u['totals']], 2)} s in all, {spread([x['total'] for x in u['each']])} ms each; one of them:"
        f" {named(u['counted']['processes'])}, {u['counted']['evaluated']} system evaluated,"
        f" {u['counted']['building_calls']} built",
        *[f"   sync --{kind} -j {jobs}, nothing changed: {m['unchanged'][(kind, jobs)]:.0f} ms, {ratio:.1f} x"
          f" faster than the {n} updates" for (kind, jobs), ratio in m["ratios"].items()],
        *[f"   sync --{kind}'s own Nix processes (its timing lines), per sync: "
          + "; ".join(f"{named(Counter(calls))} in {times}" for calls, times in seen.items())
          for kind, seen in own.items()],
        f"   sync --flake -j 1, nothing changed: {spread([x['own_nix_ms'] for x in unchanged['runs']])} ms of its"
        f" {spread([x['ms'] for x in unchanged['runs']])} ms in its own Nix processes",
        f"   removing all {n} (sync --prune of its source emptied, -j 2), ms: the flake's"
        f" {spread(s['flake']['removals'], 0)}, the list file's {spread(s['file']['removals'], 0)}"])


def report_guard(g):
    s = guard.summary(g)
    cycles = [[label, spread([c["start"] for c in runs]), spread([c["lxc_start"] for c in runs]),
               spread([c["stop"] for c in runs]), spread([c["monitor_gone"] for c in runs])]
              for label, runs in g["cycles"].items()]
    lifecycle = [[label, spread([x["create"] for x in runs]), spread([x["destroy"] for x in runs])]
                 for label, runs in g["lifecycle"].items()]
    paths = list(s["shares"])
    speeds = [[label, *[spread([x[path] for x in runs], 0) for path in paths]] for label, runs in g["speeds"].items()]
    return "\n".join([
        "== 8. The ports' guard (issue 21): with it (the default) and without it (antiSpoofing = false,",
        "   its table taken away by repair-network), side by side; ms, median [min-max]",
        "   start and stop of a tiny container (as in section 6)",
        table(["variant", "start", "lxc-start", "stop", "monitor gone"], cycles),
        "   create and destroy of a tiny NAT container (its elements added and deleted, its DHCP file)",
        table(["variant", "create", "destroy"], lifecycle),
        "   the guard adds " + ", ".join(f"{ms:+.1f} ms to a {key}" for key, ms in s["added"].items())
        + " (median of the rounds' differences)",
        f"   TCP throughput, MB/s, {g['mib']} MiB a run from the host's python3 in each namespace",
        table(["variant", *paths], speeds),
        "   with the guard: " + ", ".join(f"{path} {share * 100:.1f} %" for path, share in s["shares"].items())
        + " of the throughput without it (median of the rounds' ratios); ratio of the medians: "
        + ", ".join(f"{path} {ratio * 100:.1f} %" for path, ratio in s["of_medians"].items())])


def report_build_network(bn):
    s = build_network.summary(bn)
    labels = list(build_network.VARIANTS)
    rows = []
    for label in labels:
        for command in ("create", "update"):
            samples = [x[command] for x in bn["samples"][label]]
            rows.append([label, command, spread([x["total"] for x in samples]),
                         *[fmt(med([x[part] for x in samples])) for part in ("spec", "build", "switch", "own")],
                         fmt(med([x["network"] for x in samples])),
                         named(bn["processes"][label][command])])
    first = bn["first"]
    made = {"namespace": "the kept namespace was unmounted", "table": "the host's table was deleted"}
    return "\n".join([
        "== 9. The build network: create and update with it and without it (issue 20)",
        "   ms, median [min-max], the two helpers alternated in one run (the one without it built with",
        "   cargo's feature bench-without-build-network); parts from TIMINGS as in section 2; network =",
        "   the helper's `build-network` line (finding the kept namespace, or making it: its veth, addresses,",
        "   route and rules), not in own; Nix processes counted through section 4's wrappers",
        table(["helper", "command", "total", "spec", "build", "switch", "own", "network", "Nix processes"], rows),
        *[f"   {command}: {v['with_ms']:.1f} against {v['without_ms']:.1f} ms; the build network adds"
          f" {v['added']:+.1f} ms (median of the rounds' differences), its setup {v['setup']:.1f} ms"
          for command, v in s.items()],
        f"   nft calls of a create and an update with it, the host's table in place:"
        f" {bn['processes'][labels[0]]['nft']}",
        *[f"   the first create after {made[key]} ({len(samples)} x): network"
          f" {spread([x['network'] for x in samples])} ms, of which nft {spread([x['nft'] for x in samples])} ms;"
          f" create {spread([x['total'] for x in samples])} ms" for key, samples in first.items()]])


def report_transfer(t):
    """Section 10: export and import against tar, and the moves."""
    samples = t["samples"]
    pairs = transfer.PAIRS + (("export + import", "tar -cf + tar -xf"),)
    rows = [[ours, spread(samples[ours], 0), theirs, spread(samples[theirs], 0),
             f"{med(samples[ours]) / med(samples[theirs]):.2f}"] for ours, theirs in pairs]
    moves = t["move"]
    return "\n".join([
        f"== 10. export and import of a tiny container with {t['data_mib']} MiB in its data directory,"
        " against tar of its two directories (issue 24)",
        f"   ms, median [min-max] of {t['reps']} rounds, each after `sync`; export | import is"
        " `export - | import -`, as move streams it",
        table(["helper", "ms", "tar", "ms", "x"], rows),
        f"   move of a running tiny container between two hosts on this store ({len(moves)} moves,"
        f" stop, export, import, start, destroy): {spread([m['ms'] for m in moves], 0)} ms;"
        f" store paths sent: {', '.join(str(m['sent']) for m in moves)}"])


def report_targets(checks):
    return "\n".join(["== Targets (issues 6, 11, 13, 20, 21, 22, 24 and 25)"]
                     + [f"{'PASS' if ok else 'MISS'}  {text}" for ok, text in checks])


def report(res, checks):
    """The whole report: the sections of `res` (measure.measure_all) that
    were measured, and `checks` (targets.check)."""
    sections = [
        ("runtime", lambda: report_runtime(res["runtime"])),
        ("growth", lambda: report_growth(res["growth"])),
        ("by_hand", lambda: report_by_hand(res["by_hand"], res["growth"][0]["update"] if "growth" in res else [])),
        ("nix_counts", lambda: report_nix(res["nix_counts"], res["spec_cost"], res["nixpkgs"])),
        ("density", lambda: report_density(res["density"], res["hooks"])),
        ("isolation", lambda: report_isolation(res["isolation"])),
        ("sync", lambda: report_sync(res["sync"])),
        ("guard", lambda: report_guard(res["guard"])),
        ("build_network", lambda: report_build_network(res["build_network"])),
        ("transfer", lambda: report_transfer(res["transfer"])),
    ]
    return "\n\n".join(
        [f"nixcloud-container benchmark ({'quick' if res['quick'] else 'full'} run) - {res['machine']}"]
        + [section() for key, section in sections if key in res] + [report_targets(checks)])
