"""4. The Nix processes a create and an update start, how often they
evaluate the container's system, what the spec evaluation costs next to
Nix's floor, and that it never needs nixpkgs."""

import json
import os
import re
import shutil

from ..commands import alternate, log, run
from ..project import CLI_NIX, NIXOS_EVALUATION_TRACE, TOOLKIT_SEARCH_PATH, fake_nixpkgs_args

NIX_TOOLS = ("nix-instantiate", "nix-build", "nix-env", "nix-store")
# A lookup (`nix-instantiate --find-file nixpkgs`), counted apart: it evaluates nothing.
FIND_FILE = "nix-instantiate --find-file"
SYSTEM_TRACE = "ncbench-system-evaluated"
# A build's start in Nix's internal-json log (activity type 105, actBuild).
BUILD_STARTED = re.compile(r'^@nix \{"action":"start",.*"type":105\}$', re.M)
# The two kinds of container file counted: label, and the trace line that
# each evaluation of its system leaves.
KINDS = {
    "system": ("`system =` file (tiny example)", f"trace: {SYSTEM_TRACE}"),
    "nixos": ("NixOS `configuration =` file, stand-in nixpkgs", NIXOS_EVALUATION_TRACE),
}


def nix_wrappers(h):
    """Scripts named like the Nix tools, first on PATH, that log their name
    and run the real tool: how many Nix processes a command starts. The
    helper runs its evaluating and building ones as `unshare ... -- nix-*`,
    and unshare too finds them on PATH. Where NCBENCH_NIX_STDERR names a
    directory, each call's stderr is also kept there, a file per call, and
    then handed on: the helper shows Nix's messages only with -v, and the
    helper processes that sync starts run without it."""
    wrap_dir = os.path.join(h.work, "nix-wrappers")
    os.makedirs(wrap_dir, exist_ok=True)
    for tool in NIX_TOOLS:
        with open(os.path.join(wrap_dir, tool), "w") as f:
            f.write("#!/bin/sh\n"
                    "what=%s\n"
                    'for arg in "$@"; do [ "$arg" = --find-file ] && what="$what --find-file"; done\n'
                    'echo "$what" >>"$NCBENCH_NIX_LOG"\n'
                    '[ -n "$NCBENCH_NIX_STDERR" ] || exec %s "$@"\n'
                    'kept=$(mktemp "$NCBENCH_NIX_STDERR/%s.XXXXXX")\n'
                    '%s "$@" 2>"$kept"\n'
                    "code=$?\n"
                    'cat "$kept" >&2\n'
                    "exit $code\n" % (tool, shutil.which(tool), tool, shutil.which(tool)))
        os.chmod(os.path.join(wrap_dir, tool), 0o755)
    return wrap_dir


class NixCalls:
    """The Nix processes of the commands run with `env()`, through the
    wrappers, and what they printed: system evaluations (`trace:` lines)
    and derivations built (Nix's internal-json log, which the helper asks
    for, has a start of type 105, actBuild, per build)."""

    def __init__(self, h, label):
        self.wrap_dir = nix_wrappers(h)
        self.log = os.path.join(h.work, f"{label}-nix-calls.log")
        self.kept = os.path.join(h.work, f"{label}-nix-stderr")

    def env(self, base):
        """`base` with the wrappers first on PATH; forgets earlier calls."""
        open(self.log, "w").close()
        shutil.rmtree(self.kept, ignore_errors=True)
        os.makedirs(self.kept)
        return dict(base, PATH=f"{self.wrap_dir}:{os.environ['PATH']}", NCBENCH_NIX_LOG=self.log,
                    NCBENCH_NIX_STDERR=self.kept)

    def processes(self):
        with open(self.log) as f:
            calls = f.read().splitlines()
        return {t: calls.count(t) for t in NIX_TOOLS + (FIND_FILE,)}

    def texts(self):
        """What each call printed on stderr."""
        found = []
        for entry in sorted(os.listdir(self.kept)):
            with open(os.path.join(self.kept, entry), errors="replace") as f:
                found.append(f.read())
        return found

    def stderr(self):
        return "\n".join(self.texts())

    def builds(self):
        """The derivations each call that built any built."""
        return [n for n in (len(BUILD_STARTED.findall(text)) for text in self.texts()) if n]


def named(processes):
    """'1 nix-instantiate, 1 nix-build' for the counts of NixCalls.processes."""
    return ", ".join(f"{n} {tool}" for tool, n in processes.items() if n) or "none"


def count_nix(h, kind, lib):
    """Nix processes and evaluations of the system for one create and one
    update. kind "system": the tiny example's `system =` file, its system
    traced, the update to a new version; kind "nixos": a `configuration =`
    file, evaluated by tests/fake-nixpkgs (nixpkgs' lib `lib`), the update
    to another host name."""
    log(f"counting Nix processes and system evaluations per create/update ({kind})")
    calls = NixCalls(h, "counted")
    name = f"counted-{kind}"
    nix_args = ["-n", fake_nixpkgs_args(lib)] if kind == "nixos" else []
    host_names = {"create": "", "update": 'networking.hostName = "updated";'}
    results = {}
    for command in ("create", "update"):
        if kind == "nixos":
            path = h.write(f"{name}.nix", f"{{ configuration = {{ ... }}: {{ {host_names[command]} }}; }}\n")
        else:
            path = h.tiny_file(f"{name}.nix", f"{h.token}-{name}-{command}", trace=SYSTEM_TRACE)
        ran = h.helper("-v", command, name, path, *nix_args, env=calls.env(h.env))
        results[command] = dict(processes=calls.processes(),
                                system_evaluations=ran.err.count(KINDS[kind][1]))
    h.helper("destroy", name)
    return results


def spec_argv(path):
    """The spec evaluation of lib/cli.nix for a container file, with the
    toolkit on the search path as the helper gives it (without the helper's
    confinement options)."""
    return ["nix-instantiate", "--eval", "--strict", "--json", *TOOLKIT_SEARCH_PATH,
            CLI_NIX, "-A", "spec", "--argstr", "source", json.dumps({"file": path})]


def spec_without_nixpkgs(h):
    """The spec evaluation with no way to find nixpkgs (NIX_PATH empty,
    nixpkgs=/nonexistent), for the three shapes of a container file; under
    strace when present, listing the .nix files it opened. Then a whole
    create by the helper in the same conditions."""
    log("spec evaluation without nixpkgs")
    files = {
        "tiny system (examples/tiny)": h.tiny_file("speconly-tiny.nix", "1"),
        "NixOS configuration in a set": h.write("speconly-set.nix",
                                                "{ configuration = { pkgs, ... }: { environment.systemPackages = [ pkgs.hello ]; }; }\n"),
        "bare NixOS module": h.write("speconly-module.nix",
                                     "{ pkgs, ip, name, ... }: { networking.hostName = name; }\n"),
    }
    env = dict(h.env, NIX_PATH="")
    strace = shutil.which("strace")
    trace = os.path.join(h.work, "spec.strace")
    results = []
    for kind, path in files.items():
        argv = spec_argv(path) + ["-I", "nixpkgs=/nonexistent"]
        if strace:
            argv = [strace, "-f", "-qq", "-e", "trace=open,openat", "-o", trace] + argv
        ran = run(argv, env=env, check=False)
        opened = []
        if strace:
            with open(trace) as f:
                opened = sorted(set(re.findall(r'open(?:at)?\([^"]*"([^"]+)"[^=]*= \d+', f.read())))
        results.append(dict(kind=kind, ok=ran.code == 0, error=ran.err.strip()[-300:],
                            nix_files=[p for p in opened if p.endswith(".nix")],
                            files_opened=len(opened),
                            nixpkgs_files=[p for p in opened if re.search(r"nixpkgs|/nixos/", p)
                                           and not p.startswith(h.work)],
                            strace=bool(strace)))
    create = h.helper("create", "speconly", files["tiny system (examples/tiny)"],
                      "-n", "-I nixpkgs=/nonexistent", env=env, check=False)
    if create.code == 0:
        h.helper("destroy", "speconly")
    return dict(files=results, create_ok=create.code == 0, create_error=create.err.strip()[-300:])


def spec_cost_by_kind(h, reps):
    """The spec evaluation for the tiny `system =` file and for a
    NixOS-configuration file, next to Nix's floor (an evaluation of `null`):
    the spec holds settings only, so neither should cost more than the
    floor, whatever the file builds."""
    log("spec evaluation cost by kind of container file")
    tiny = h.tiny_file("speccost-tiny.nix", "1")
    nixos = h.write("speccost-nixos.nix", "{ configuration = { ... }: { }; }\n")
    got = alternate({"system": lambda: run(spec_argv(tiny)), "nixos": lambda: run(spec_argv(nixos)),
                     "floor": lambda: run(["nix-instantiate", "--eval", "-E", "null"])}, reps)
    return {k: [r.ms for r in v] for k, v in got.items()}


def measure_nix(h, reps, lib):
    """Section 4: the counts, the spec without nixpkgs, the spec's cost."""
    return dict(nix_counts={kind: count_nix(h, kind, lib) for kind in KINDS},
                nixpkgs=spec_without_nixpkgs(h), spec_cost=spec_cost_by_kind(h, reps))
