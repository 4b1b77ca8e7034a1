"""10. export, import and move (issue 24): a tiny container with 1 GiB in its
data directory (64 files of random bytes) exported and imported, through a
pipe and through a file, against GNU tar of the same two directories (its
rootfs and its data directory) piped into tar, and written to a file and
read back; and a running tiny container moved to a second host that shares
this machine's store (its own LXC path, profiles, state and data, in this
namespace), through a stand-in for ssh, counting the store paths it sent."""

import json
import os
import re
import shutil
import stat

from ..commands import alternate, log, run
from ..project import HELPER, TINY_SYSTEM

FILE_SIZE = 16 << 20
SENT = re.compile(r"moved container '[\w-]+' to \S+(?: \(started there\))?: (\d+) store paths sent")
# The variants timed against each other, each as (label, what it is compared with).
PAIRS = (("export | import", "tar | tar"),
         ("export to a file", "tar -cf"),
         ("import of it", "tar -xf"))


def shell(h, command, env=None):
    """A shell pipeline, timed as a whole; both sides of a comparison go
    through the same shell."""
    return run(["sh", "-c", command], env=env or h.env).ms


def measure_transfer(h, reps, data_mib):
    name, copy = "tx", "tx2"
    h.write("tx.nix", "{\n  system = import " + TINY_SYSTEM + ' { version = "tx"; };\n'
            '  bindMounts."/var/lib/app" = { hostPath = "app"; isReadOnly = false; };\n}\n')
    h.helper("create", name, os.path.join(h.work, "tx.nix"))
    with open(os.path.join(h.work, "state", "state.json")) as f:
        host_id = json.load(f)["containers"][name]["ids"]["hostId"]
    data = os.path.join(h.work, "state", "data", name)
    app = os.path.join(data, "app")
    os.makedirs(app)
    log(f"writing {data_mib} MiB of random data into {name}'s data directory")
    for index in range(data_mib * (1 << 20) // FILE_SIZE):
        path = os.path.join(app, f"file{index:03d}")
        with open(path, "wb") as f:
            f.write(os.urandom(FILE_SIZE))
        os.chown(path, host_id, host_id)
    os.chown(app, host_id, host_id)
    file = os.path.join(h.work, "tx.export")
    tar_file = os.path.join(h.work, "tx.tar")
    unpacked = os.path.join(h.work, "unpacked")
    trees = f"lxc/{name}/rootfs state/data/{name}"
    helper = f"{HELPER} "

    def settled():
        # Each variant starts with nothing of the one before left to write back.
        run(["sync"])

    def through_pipe():
        settled()
        ms = shell(h, f"{helper}export {name} - | {helper}import - {copy} >/dev/null")
        h.helper("destroy", copy)
        return ms

    def tar_through_pipe():
        settled()
        os.mkdir(unpacked)
        ms = shell(h, f"tar -C {h.work} -cf - {trees} | tar -C {unpacked} -xpf -")
        shutil.rmtree(unpacked)
        return ms

    def through_file():
        settled()
        written = shell(h, f"{helper}export {name} {file} >/dev/null")
        settled()
        read = shell(h, f"{helper}import {file} {copy} >/dev/null")
        h.helper("destroy", copy)
        os.unlink(file)
        return written, read

    def tar_through_file():
        settled()
        written = shell(h, f"tar -C {h.work} -cf {tar_file} {trees}")
        settled()
        os.mkdir(unpacked)
        read = shell(h, f"tar -C {unpacked} -xpf {tar_file}")
        shutil.rmtree(unpacked)
        os.unlink(tar_file)
        return written, read

    log(f"export and import of {data_mib} MiB against tar, {reps} rounds")
    rounds = alternate({"pipe": through_pipe, "tar pipe": tar_through_pipe,
                        "file": through_file, "tar file": tar_through_file}, reps)
    res = dict(data_mib=data_mib, reps=reps, samples={
        "export | import": rounds["pipe"],
        "tar | tar": rounds["tar pipe"],
        "export to a file": [w for w, _ in rounds["file"]],
        "import of it": [r for _, r in rounds["file"]],
        "tar -cf": [w for w, _ in rounds["tar file"]],
        "tar -xf": [r for _, r in rounds["tar file"]],
        "export + import": [w + r for w, r in rounds["file"]],
        "tar -cf + tar -xf": [w + r for w, r in rounds["tar file"]],
    })
    h.helper("destroy", name)
    res["move"] = measure_move(h, reps)
    return res


def measure_move(h, reps):
    """A running tiny container moved to a second host and back, `reps`
    times each way: the time of each move and the store paths it sent."""
    second = os.path.join(h.work, "second")
    os.makedirs(second)
    envs = {"first": h.env, "second": dict(h.env,
                                           NIXCLOUD_CONTAINER_LXC_PATH=os.path.join(second, "lxc"),
                                           NIXCLOUD_CONTAINER_PROFILES_DIR=os.path.join(second, "profiles"),
                                           NIXCLOUD_CONTAINER_STATE_DIR=os.path.join(second, "state"),
                                           NIXCLOUD_CONTAINER_HOST_CONFIG=os.path.join(second, "host.json"))}
    keys = [key for key in envs["second"] if key.startswith("NIXCLOUD_CONTAINER_")]
    transports = {}
    for side, env in envs.items():
        # As sshd runs a command: a shell, with that host's settings.
        settings = " ".join(f"{key}={env[key]}" for key in keys)
        path = h.write(f"ssh-to-{side}", "#!/bin/sh\nwhile [ \"$1\" != -- ]; do shift; done\nshift 2\n"
                                         f"exec env {settings} sh -c \"$1\"\n")
        os.chmod(path, stat.S_IRWXU)
        transports[side] = path
    name = "mv"
    h.helper("create", name, h.tiny_file("mv.nix", "mv"))
    h.helper("start", name)
    moves = []
    where = "first"
    log(f"moving a running tiny container between two hosts, {2 * reps} times")
    for _ in range(2 * reps):
        to = "second" if where == "first" else "first"
        ran = run([HELPER, "move", name, f"root@{to}", "--ssh", transports[to], "--remote", HELPER],
                  env=envs[where])
        found = SENT.search(ran.out)
        moves.append(dict(ms=ran.ms, to=to, sent=int(found.group(1)) if found else None))
        where = to
    run([HELPER, "destroy", "--force", name], env=envs[where])
    return moves
