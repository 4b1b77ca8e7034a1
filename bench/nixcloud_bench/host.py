"""The test host inside the namespace: the helper and LXC in the run's
directory, the container files, waiting for containers to boot, and the
containers that make up N. Also finds the LXC monitors of a run, for the
density figures and for the cleanup."""

import concurrent.futures
import json
import os
import shutil
import subprocess
import time

from .commands import log, run
from .project import HELPER, TINY_SYSTEM

PREFIX = "ncbench-"  # the names of a run's namespace and directory; the tests use others


class Host:
    def __init__(self, work):
        self.work = work
        # In every tiny version, so that no store path of an earlier run is reused.
        self.token = os.path.basename(work)[len(PREFIX):]
        self.lxc_path = os.path.join(work, "lxc")
        self.env = dict(os.environ,
                        NIXCLOUD_CONTAINER_LXC_PATH=self.lxc_path,
                        NIXCLOUD_CONTAINER_PROFILES_DIR=os.path.join(work, "profiles"),
                        NIXCLOUD_CONTAINER_STATE_DIR=os.path.join(work, "state"),
                        NIXCLOUD_CONTAINER_HOST_CONFIG=os.path.join(work, "host.json"),
                        NIXCLOUD_CONTAINER_TIMINGS="1")
        # As the NixOS module's services run: the helper on PATH as nixcloud-container.
        self.service_env = dict(self.env, PATH=f"{os.path.dirname(HELPER)}:{os.environ['PATH']}")
        self.busybox = os.path.realpath(shutil.which("busybox"))

    def helper(self, *args, env=None, check=True):
        return run([HELPER, *args], env=env or self.env, check=check)

    def lxc(self, tool, *args, name=None, check=True):
        argv = [tool, "-P", self.lxc_path] + (["-n", name] if name else []) + list(args)
        return run(argv, env=self.env, check=check)

    def write(self, file_name, text):
        """A file in the run's directory; returns its path."""
        path = os.path.join(self.work, file_name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def tiny_file(self, file_name, version, autostart=False, trace=None, paths=0, tag=None,
                  whole_store=False, forward_port=None):
        """A container file for the tiny system (examples/tiny), imported as
        the helper's restricted evaluation allows it; with `trace`, every
        evaluation of its system prints that line. `paths` more store paths
        in its closure (builtins.toFile, named `tag`-<i>, by default after
        the file: files with one tag share them); `whole_store`: it sees the
        host's whole store instead of its closure (where the host file
        allows it); `forward_port`: that host port forwarded to it (where the
        host file allows it)."""
        extra = ""
        if paths:
            tag = tag or os.path.splitext(file_name)[0]
            extra = (f' extraPaths = builtins.genList (i: builtins.toFile "{tag}-${{toString i}}"'
                     f' "{self.token} {tag} ${{toString i}}") {paths};')
        system = f'import {TINY_SYSTEM} {{ version = "{version}";{extra} }}'
        if trace:
            system = f'builtins.trace "{trace}" ({system})'
        return self.write(file_name, f"{{\n  autostart = {'true' if autostart else 'false'};\n"
                                     + ("  wholeStore = true;\n" if whole_store else "")
                                     + (f"  forwardPorts = [ {{ hostPort = {forward_port}; }} ];\n"
                                        if forward_port else "")
                                     + f"  system = {system};\n}}\n")

    def host_file(self, settings=None):
        """The host file the helper reads (NIXCLOUD_CONTAINER_HOST_CONFIG):
        `settings` over lib/host-defaults.json; None: no file, the
        defaults."""
        path = self.env["NIXCLOUD_CONTAINER_HOST_CONFIG"]
        if settings is None:
            if os.path.exists(path):
                os.unlink(path)
            return
        with open(path, "w") as f:
            json.dump(settings, f)

    def current_generation(self, name):
        """The profile link's target (profile-<n>-link), None without one."""
        try:
            return os.readlink(os.path.join(self.work, "profiles", name, "profile"))
        except FileNotFoundError:
            return None

    def generation_meta(self, name):
        with open(os.path.join(self.work, "profiles", name, "profile", "spec.json")) as f:
            return json.load(f)

    # -- a container's life, waited for through the tiny init's boot file

    def booted_file(self, name):
        return os.path.join(self.lxc_path, name, "rootfs/var/lib/tiny/booted")

    def activated(self, name):
        """What the tiny system's switch-to-configuration last recorded
        (`<action> <version>`), None before any live switch."""
        try:
            with open(os.path.join(self.lxc_path, name, "rootfs/var/lib/tiny/activated")) as f:
                return f.read().strip()
        except FileNotFoundError:
            return None

    def forget_boot(self, name):
        try:
            os.unlink(self.booted_file(name))
        except FileNotFoundError:
            pass

    def wait_booted(self, names, timeout=120):
        """The tiny init writes its boot file after it set its signal trap:
        stopping it earlier would leave lxc-stop waiting for its timeout."""
        pending = set(names)
        deadline = time.monotonic() + timeout
        while pending:
            pending = {n for n in pending if not os.path.exists(self.booted_file(n))}
            if pending and time.monotonic() > deadline:
                raise RuntimeError(f"{len(pending)} containers did not boot within {timeout} s")
            if pending:
                time.sleep(0.005)

    def start(self, names, one_command=False):
        """Starts the containers with the helper and waits until they
        booted: one `start` per container, as the module's script does;
        with `one_command`, one `start` naming them all. (Such a start
        mounts each container's store view in a namespace copied from the
        one before's, so every monitor holds the views of all before it.)"""
        for name in names:
            self.forget_boot(name)
        for group in ([names] if one_command else [[name] for name in names]):
            self.helper("start", *group)
        self.wait_booted(names)

    def bare_mounts(self, name):
        """What the helper mounts before lxc-start, as LXC's own mount
        entries: the host's whole store and the container's profile at
        /init, bound read-only (not idmapped: inside they belong to nobody,
        which the tiny init does not mind). Without them a bare lxc-start
        has nothing to boot."""
        return ["/nix/store nix/store none ro,bind,create=dir 0 0",
                f"{os.path.join(self.work, 'profiles', name)} init none ro,bind,create=dir 0 0"]

    def lxc_start_bare(self, name, check=True):
        """lxc-start as the helper calls it, with LXC mounting what the
        helper would (bare_mounts), given as -s lxc.mount.entry=..."""
        defines = [arg for entry in self.bare_mounts(name) for arg in ("-s", f"lxc.mount.entry={entry}")]
        return self.lxc("lxc-start", *defines, name=name, check=check)

    def add_bare_mounts(self, names):
        """Appends bare_mounts to the containers' LXC configs, for
        lxc-autostart, which takes no -s; the helper writes the config
        again at its next start."""
        for name in names:
            with open(os.path.join(self.lxc_path, name, "config"), "a") as f:
                f.write("".join(f"\nlxc.mount.entry = {entry}" for entry in self.bare_mounts(name)) + "\n")

    def kill_all(self, names):
        kill_containers(self.lxc_path, names)
        deadline = time.monotonic() + 120
        while self.active_names() & set(names):
            if time.monotonic() > deadline:
                raise RuntimeError("containers still running 120 s after lxc-stop -k")
            time.sleep(0.05)

    def active_names(self):
        return set(self.lxc("lxc-ls", "--active").out.split())


class Population:
    """The containers c0001, c0002, ... that make up N; all autostart, so
    that lxc-autostart, and the module's script through lxc-autostart
    --list, start them for the density figures."""

    def __init__(self, h):
        self.h = h
        self.names = []
        self.file = h.tiny_file("population.nix", "1", autostart=True)

    def grow_to(self, n):
        if len(self.names) < n:
            log(f"creating containers {len(self.names) + 1}..{n}")
        while len(self.names) < n:
            name = f"c{len(self.names) + 1:04d}"
            self.h.helper("create", name, self.file)
            self.names.append(name)


def kill_containers(lxc_path, names, prefix=()):
    """`lxc-stop -k --nowait` for every container, 16 at a time, without
    waiting for each (LXC's post-stop hooks run in every monitor in
    parallel); `prefix` runs it elsewhere (ip netns exec <name>)."""
    def kill(name):
        subprocess.run([*prefix, "lxc-stop", "-P", lxc_path, "-n", name, "-k", "--nowait"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        list(pool.map(kill, names))


def processes():
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def lxc_monitors(lxc_path):
    """The LXC monitors of the containers in `lxc_path`: LXC titles each
    `[lxc monitor] <lxc path> <name>`."""
    found = []
    for pid in processes():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                title = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if title.startswith(f"[lxc monitor] {lxc_path} "):
            found.append(pid)
    return found
