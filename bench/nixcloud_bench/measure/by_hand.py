"""3. Build + profile switch of a fresh generation by hand: one nix-env call
against nix-build followed by nix-env --set (what the helper does)."""

import json
import os

from ..commands import log, run
from ..project import CLI_NIX, TOOLKIT_SEARCH_PATH


def measure_by_hand(h, reps):
    """Builds fresh generations of one container by hand, both ways, with
    the helper's arguments for lib/cli.nix (the resolved params of a real
    container), but without the helper's confinement (restricted
    evaluation, its PID namespace): what building and switching in two
    processes costs over one. Each build is of a tiny version never built
    before, so both ways do the same work."""
    log(f"build + switch: one nix-env call vs nix-build then nix-env --set, x{reps}")
    h.helper("create", "byhand", h.tiny_file("byhand.nix", "1"))
    params = h.generation_meta("byhand")["params"]
    profiles = {v: os.path.join(h.work, f"byhand-{v}", "profile") for v in ("one", "two")}
    for profile in profiles.values():
        os.makedirs(os.path.dirname(profile))
    samples = {"one call": [], "nix-build": [], "nix-env --set": [], "two calls": []}

    def cli_args(variant, i):
        source = {"file": h.tiny_file(f"byhand-{variant}-{i}.nix", f"{h.token}-hand-{variant}-{i}")}
        return [*TOOLKIT_SEARCH_PATH, "--argstr", "source", json.dumps(source),
                "--argstr", "params", json.dumps(dict(params, source=source)),
                "--argstr", "busybox", h.busybox]

    def one_call(i):
        ran = run(["nix-env", "--profile", profiles["one"], "--file", CLI_NIX, *cli_args("one", i),
                   "--set", "--attr", "generation"])
        samples["one call"].append(ran.ms)

    def two_calls(i):
        build = run(["nix-build", CLI_NIX, *cli_args("two", i), "--attr", "generation", "--no-out-link"])
        switch = run(["nix-env", "--profile", profiles["two"], "--set", build.out.strip()])
        samples["nix-build"].append(build.ms)
        samples["nix-env --set"].append(switch.ms)
        samples["two calls"].append(build.ms + switch.ms)

    for i in range(reps):
        for do in ((one_call, two_calls) if i % 2 == 0 else (two_calls, one_call)):
            do(i)
    h.helper("destroy", "byhand")
    return samples
