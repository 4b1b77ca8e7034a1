"""Running and timing commands.

Every timed command, the helper and the bare lxc-* calls alike, is started
the same way (Python's subprocess), so that the cost of starting a process
is on both sides of every comparison."""

import re
import subprocess
import sys
import time

TIMEOUT = 300  # seconds for any single command; the density's start and stop get more


def log(message):
    """Progress on stderr, so that stdout carries only the report."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Ran:
    """A finished command: wall time, exit code, output, and the helper's
    `timing: <tool> <ms> ms` lines (NIXCLOUD_CONTAINER_TIMINGS), one
    (tool, ms) per call."""

    def __init__(self, argv, ms, proc):
        self.argv, self.ms, self.code = argv, ms, proc.returncode
        self.out, self.err = proc.stdout, proc.stderr
        self.calls = [(tool, float(took))
                      for tool, took in re.findall(r"^timing: (\S+) ([\d.]+) ms$", self.err, re.M)]

    def waited_ms(self, prefix="", side_by_side=False):
        """How long the helper waited for the tools whose names start with
        `prefix`: the sum of their calls, or the longest of them when the
        helper made them side by side (list's two lxc-ls)."""
        took = [ms for tool, ms in self.calls if tool != "total" and tool.startswith(prefix)]
        if not took:
            return 0.0
        return max(took) if side_by_side else sum(took)

    def own_ms(self, side_by_side=False):
        """The helper's own time: its total minus the tools it waited for."""
        total = [ms for tool, ms in self.calls if tool == "total"]
        if not total:
            return None
        return total[0] - self.waited_ms(side_by_side=side_by_side)

    def describe(self):
        return f"{' '.join(self.argv)} exited {self.code}: {self.err.strip()[-600:]}"


def run(argv, env=None, check=True, timeout=TIMEOUT):
    """Runs argv with captured output and measures its wall time."""
    started = time.perf_counter_ns()
    proc = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=timeout)
    ran = Ran(argv, (time.perf_counter_ns() - started) / 1e6, proc)
    if check and ran.code != 0:
        raise RuntimeError(ran.describe())
    return ran


def run_side_by_side(argvs, env=None):
    """Starts every argv at once and waits for all, as the helper's list runs
    its two lxc-ls calls; one Ran for the lot, with the first one's output."""
    started = time.perf_counter_ns()
    procs = [subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for argv in argvs]
    outputs = [p.communicate(timeout=TIMEOUT) for p in procs]
    ms = (time.perf_counter_ns() - started) / 1e6
    label = " & ".join(" ".join(argv) for argv in argvs)
    failed = [(p.args, err.strip()) for p, (_, err) in zip(procs, outputs) if p.returncode]
    if failed:
        raise RuntimeError(f"{label} failed: {failed}")
    return Ran([label], ms, subprocess.CompletedProcess(label, 0, outputs[0][0], ""))


def alternate(variants, reps):
    """Runs each variant (label -> function running it once) `reps` times,
    rotating the order every round so that drift of a noisy machine hits all
    alike. Returns label -> list of what the functions returned."""
    labels = list(variants)
    results = {label: [] for label in labels}
    for rep in range(reps):
        shift = rep % len(labels)
        for label in labels[shift:] + labels[:shift]:
            results[label].append(variants[label]())
    return results
