"""5. Density: all containers started and stopped as the NixOS module's
autostart service does it, and by plain lxc-autostart, with the host memory
they take; and what LXC's distribution hooks add to every start and stop."""

import glob
import json
import os
import time

from ..commands import log, run
from ..project import AUTOSTART_SERVICE
from .memory import container_memory, memory_cgroups, settled_mem_available
from .runtime import measure_list

SERVICE_TIMEOUT = 3600  # seconds for starting or stopping all containers


def autostart_service(h, lib):
    """The shell that modules/host/services.nix's autostart service runs, for this
    run's LXC path: `script` starts the autostart containers (each with
    `nixcloud-container start`), `preStop` stops every running one.
    Evaluated from the module itself with nixpkgs' lib `lib`
    (tests/nix/autostart-service.nix), as for the tests."""
    ran = run(["nix-instantiate", "--eval", "--strict", "--json", AUTOSTART_SERVICE,
               "--argstr", "nixpkgsLib", lib, "--argstr", "lxcPath", h.lxc_path])
    return json.loads(ran.out)


def service_shell(h, text):
    """A snippet of the service, run as systemd runs a NixOS service's
    script (bash -e), with the helper on PATH and in the run's directories;
    returns a function that runs it once."""
    return lambda: run(["bash", "-e", "-c", text], env=h.service_env, check=False,
                       timeout=SERVICE_TIMEOUT)


def start_all(h, names, how, start):
    """Starts every container with `start` (a function running the command
    once), waits until every init ran, and measures the host memory they
    take: the drop of MemAvailable (all they cost the host, kernel included:
    namespaces, veths, page tables) and their processes' memory."""
    log(f"density: starting {len(names)} containers with {how}")
    for name in names:
        h.forget_boot(name)
    before = settled_mem_available()
    started = time.perf_counter()
    ran = start()
    h.wait_booted(names, timeout=600)
    booted_ms = (time.perf_counter() - started) * 1000
    running = len(h.active_names() & set(names))
    after = settled_mem_available()
    return dict(how=how, n=len(names), running=running, start_ms=ran.ms, code=ran.code,
                err=ran.err.strip()[-300:], booted_ms=booted_ms, mem_drop_kib=before - after,
                memory=container_memory(h), cgroups_kib=memory_cgroups(h, names))


def stop_all(h, names, how, stop):
    """Stops every container with `stop`; kills what it left running, so
    that the next start begins from all stopped."""
    running = len(h.active_names() & set(names))
    log(f"density: stopping {running} containers with {how}")
    ran = stop()
    still = h.active_names() & set(names)
    if still:
        h.kill_all(sorted(still))
    return dict(how=how, stopped=running - len(still), ms=ran.ms, code=ran.code,
                err=ran.err.strip()[-300:], still_running=len(still))


def warm_up(h, names, service):
    """Starts and stops all containers once, unmeasured. The first start of
    many containers leaves memory taken on the host after they stop,
    charged to whichever start came first, so without this the order of the
    two measured starts decides which one looks bigger."""
    log(f"density: a first start and stop of all {len(names)}, not measured")
    for name in names:
        h.forget_boot(name)
    service_shell(h, service["script"])()
    h.wait_booted(names, timeout=600)
    stop_all(h, names, "the module's preStop", service_shell(h, service["preStop"]))


def measure_density(h, names, reps, lib):
    """All containers (autostart = true) started and stopped as
    modules/host/services.nix's boot service does it (its script: `nixcloud-container
    autostart`, each container as `start` starts it, twice the CPUs side by side
    in threads of one process, in LXC's order; its preStop: lxc-stop, 32 at a time), with list while
    all run (next to lxc-ls --active, issue 25's anchor); then, for comparison,
    started by plain lxc-autostart (whose monitors keep a copy of its heap)
    and stopped by lxc-autostart --shutdown (one container after the
    other)."""
    service = autostart_service(h, lib)
    warm_up(h, names, service)
    module = start_all(h, names, "the module's script", service_shell(h, service["script"]))
    log(f"density: {module['running']} running; list while all run")
    listing = measure_list(h, len(names), f"all {len(names)} running", reps)
    module_stop = stop_all(h, names, "the module's preStop", service_shell(h, service["preStop"]))
    # lxc-autostart takes no -s: the store and /init go into the configs.
    h.add_bare_mounts(names)
    plain = start_all(h, names, "lxc-autostart", lambda: h.lxc("lxc-autostart", check=False))
    plain_stop = stop_all(h, names, "lxc-autostart --shutdown", lambda: run(
        ["lxc-autostart", "-P", h.lxc_path, "--shutdown"], env=h.env, check=False,
        timeout=SERVICE_TIMEOUT))
    return dict(n=len(names), service=service, list=listing,
                module=dict(start=module, stop=module_stop),
                lxc_autostart=dict(start=plain, stop=plain_stop))


def distribution_hooks():
    """The lxc.hook.* lines that LXC's common.conf pulls in from
    common.conf.d (on Debian, the lxcfs package adds a mount hook and a
    post-stop hook that sleeps)."""
    lines = []
    for path in sorted(glob.glob("/usr/share/lxc/config/common.conf.d/*.conf")):
        with open(path) as f:
            lines += [line.strip() for line in f if line.startswith("lxc.hook.")]
    return lines


def measure_without_hooks(h, name, cycles):
    """Bare lxc-start and lxc-stop of one container, as it is and with the
    distribution's hooks cleared in its config (`lxc.hook.<kind> =` after
    the includes): what those hooks cost every start and stop, and so every
    lxc-autostart --shutdown. The config is restored afterwards. None when
    there are no such hooks."""
    hooks = distribution_hooks()
    if not hooks:
        return None
    kinds = sorted({line.split("=")[0].strip() for line in hooks})
    config = os.path.join(h.lxc_path, name, "config")
    with open(config) as f:
        original = f.read()
    samples = {(variant, op): [] for variant in ("as is", "cleared") for op in ("start", "stop")}
    try:
        for cycle in range(cycles):
            for variant in (("as is", "cleared") if cycle % 2 == 0 else ("cleared", "as is")):
                with open(config, "w") as f:
                    f.write(original + ("".join(f"{k} =\n" for k in kinds) if variant == "cleared" else ""))
                h.forget_boot(name)
                samples[(variant, "start")].append(h.lxc_start_bare(name).ms)
                h.wait_booted([name])
                samples[(variant, "stop")].append(h.lxc("lxc-stop", name=name).ms)
    finally:
        with open(config, "w") as f:
            f.write(original)
    return dict(hooks=hooks, samples={f"{v} {op}": x for (v, op), x in samples.items()})
