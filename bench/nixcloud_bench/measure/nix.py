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
# The two kinds of container file counted: label, and the trace line that
# each evaluation of its system leaves.
KINDS = {
    "system": ("`system =` file (tiny example)", f"trace: {SYSTEM_TRACE}"),
    "nixos": ("NixOS `configuration =` file, stand-in nixpkgs", NIXOS_EVALUATION_TRACE),
}


def nix_wrappers(h):
    """Scripts named like the Nix tools, first on PATH, that log their name
    and exec the real tool: how many Nix processes a command starts. The
    helper runs its evaluating and building ones as `unshare ... -- nix-*`,
    and unshare too finds them on PATH."""
    wrap_dir = os.path.join(h.work, "nix-wrappers")
    os.makedirs(wrap_dir)
    for tool in NIX_TOOLS:
        with open(os.path.join(wrap_dir, tool), "w") as f:
            f.write("#!/bin/sh\n"
                    "what=%s\n"
                    'for arg in "$@"; do [ "$arg" = --find-file ] && what="$what --find-file"; done\n'
                    'echo "$what" >>"$NCBENCH_NIX_LOG"\n'
                    'exec %s "$@"\n' % (tool, shutil.which(tool)))
        os.chmod(os.path.join(wrap_dir, tool), 0o755)
    return wrap_dir


def count_nix(h, wrap_dir, kind, lib):
    """Nix processes and evaluations of the system for one create and one
    update. kind "system": the tiny example's `system =` file, its system
    traced, the update to a new version; kind "nixos": a `configuration =`
    file, evaluated by tests/fake-nixpkgs (nixpkgs' lib `lib`), the update
    to another host name."""
    log(f"counting Nix processes and system evaluations per create/update ({kind})")
    nix_log = os.path.join(h.work, "nix-calls.log")
    env = dict(h.env, PATH=f"{wrap_dir}:{os.environ['PATH']}", NCBENCH_NIX_LOG=nix_log)
    name = f"counted-{kind}"
    nix_args = ["-n", fake_nixpkgs_args(lib)] if kind == "nixos" else []
    host_names = {"create": "", "update": 'networking.hostName = "updated";'}
    results = {}
    for command in ("create", "update"):
        open(nix_log, "w").close()
        if kind == "nixos":
            path = h.write(f"{name}.nix", f"{{ configuration = {{ ... }}: {{ {host_names[command]} }}; }}\n")
        else:
            path = h.tiny_file(f"{name}.nix", f"{h.token}-{name}-{command}", trace=SYSTEM_TRACE)
        ran = h.helper("-v", command, name, path, *nix_args, env=env)
        with open(nix_log) as f:
            calls = f.read().splitlines()
        results[command] = dict(
            processes={t: calls.count(t) for t in NIX_TOOLS + (FIND_FILE,)},
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
    wrap_dir = nix_wrappers(h)
    return dict(nix_counts={kind: count_nix(h, wrap_dir, kind, lib) for kind in KINDS},
                nixpkgs=spec_without_nixpkgs(h), spec_cost=spec_cost_by_kind(h, reps))
