"""8. What the ports' guard costs (issue 21): start and stop of a
container, create and destroy, and TCP throughput between the host and a
container and between two peers, with the guard (the default) against a
host file that says `"antiSpoofing": false` (repair-network then takes the
guard's table away), side by side in one run.

The throughput is measured by the host's python3 in the network namespaces
of the containers (entered with nsenter) and of the bench: a sender writes
`mib` MiB in 1 MiB writes to a receiver that reads and drops them, and the
time from its connect until the receiver closed after the last byte
counts."""

import subprocess

from ..commands import alternate, log, run
from ..stats import med
from .isolation import SMALL_DIFFERENCE_REPS, cycle
from .store_view import init_pid

# Rounds of transfers per round of a query.
TRANSFER_ROUNDS = 10
GUARD_ON = {}
GUARD_OFF = {"antiSpoofing": False}
PORT = 5001

RECEIVER = """
import socket
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(('0.0.0.0', {port}))
listener.listen(4)
print('listening', flush=True)
while True:
    connection, _ = listener.accept()
    while connection.recv(1 << 20):
        pass
    connection.close()
"""

SENDER = """
import socket, sys, time
address, mib = sys.argv[1], int(sys.argv[2])
chunk = bytes(1 << 20)
began = time.perf_counter()
connection = socket.create_connection((address, {port}))
for _ in range(mib):
    connection.sendall(chunk)
connection.shutdown(socket.SHUT_WR)
connection.recv(1)
print(time.perf_counter() - began)
"""


def in_namespace_of(h, name):
    """The prefix that runs a command in container `name`'s network
    namespace; the bench's own for None (the host)."""
    return [] if name is None else ["nsenter", "-t", str(init_pid(h, name)), "-n"]


def receiver(h, name):
    """A receiver in `name`'s network namespace (None: the host's), once it
    listens; the caller ends it."""
    proc = subprocess.Popen([*in_namespace_of(h, name), "python3", "-c", RECEIVER.format(port=PORT)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    if proc.stdout.readline().strip() != "listening":
        proc.kill()
        raise RuntimeError(f"the receiver in {name or 'the host'} did not start")
    return proc


def throughput(h, sender, address, mib):
    """MB/s (10^6 bytes) of `mib` MiB sent from `sender`'s namespace (None:
    the host's) to `address`."""
    ran = run([*in_namespace_of(h, sender), "python3", "-c", SENDER.format(port=PORT), address, str(mib)])
    return mib * (1 << 20) / float(ran.out) / 1e6


def guarded(h, settings):
    """The host file `settings`, and the tables as it says (repair-network)."""
    h.host_file(settings)
    h.helper("repair-network")


def measure_guard(h, reps, mib):
    """Section 8. Two NAT containers that are each other's peers (their
    hostonly addresses 10.101.0.x), and the host at 10.101.0.1."""
    names = ("gd-a", "gd-b")
    variants = {"guard": GUARD_ON, "no guard": GUARD_OFF}
    # Differences of a few ms: more rounds, as section 6 gives its small
    # differences. A few % of a throughput that a busy machine moves by a
    # third from one transfer to the next: many short transfers.
    rounds = SMALL_DIFFERENCE_REPS * reps
    transfers_rounds = TRANSFER_ROUNDS * reps
    try:
        guarded(h, GUARD_ON)
        for name, peer in (names, names[::-1]):
            h.helper("create", name, h.write(f"{name}.nix", (
                "{ network = { enableNat = true; peers = [ \"%s\" ]; };\n"
                "  system = import <nixcloud-container/examples/tiny/system.nix> { version = \"1\"; }; }\n")
                % peer))
        addresses = {name: h.generation_meta(name)["params"]["hostonly"]["address"] for name in names}

        log(f"port guard: start and stop with and without it, x{rounds}")
        cycles = alternate({label: (lambda s=settings: (guarded(h, s), cycle(h, names[0]))[1])
                            for label, settings in variants.items()}, rounds)

        log(f"port guard: create and destroy with and without it, x{reps}")
        file = h.write("gd-c.nix", "{ network.enableNat = true; system = import"
                                   " <nixcloud-container/examples/tiny/system.nix> { version = \"1\"; }; }\n")
        h.helper("create", "gd-c", file)
        h.helper("destroy", "gd-c")

        def create_destroy(settings):
            guarded(h, settings)
            return dict(create=h.helper("create", "gd-c", file).ms, destroy=h.helper("destroy", "gd-c").ms)
        lifecycle = alternate({label: (lambda s=settings: create_destroy(s)) for label, settings in variants.items()},
                              reps)

        log(f"port guard: TCP throughput, {mib} MiB a run, host <-> container and peer -> peer,"
            f" x{transfers_rounds}")
        h.start(list(names))
        servers = [receiver(h, None), receiver(h, names[1])]
        try:
            paths = {"container -> host": (names[0], "10.101.0.1"),
                     "host -> container": (None, addresses[names[1]]),
                     "peer -> peer": (names[0], addresses[names[1]])}
            for path, (sender, address) in paths.items():  # warm-up, not counted
                throughput(h, sender, address, 16)

            def transfers(settings):
                guarded(h, settings)
                return {path: throughput(h, sender, address, mib) for path, (sender, address) in paths.items()}
            speeds = alternate({label: (lambda s=settings: transfers(s)) for label, settings in variants.items()},
                               transfers_rounds)
        finally:
            for server in servers:
                server.kill()
                server.wait()
        h.kill_all(list(names))
        for name in names:
            h.helper("destroy", name)
    finally:
        guarded(h, None)
    return dict(cycles=cycles, lifecycle=lifecycle, speeds=speeds, mib=mib)


def summary(guard):
    """The figures that sum the section up, for the report and the targets:
    what the guard adds to each time (ms) and each path's throughput with it
    as a share of the one without it, both as the median over the rounds of
    `alternate`, whose two variants ran one right after the other (a busy
    machine's drift hits both alike)."""
    def paired(samples, key, compare):
        return med([compare(on[key], off[key]) for on, off in zip(samples["guard"], samples["no guard"])])
    difference = lambda on, off: on - off
    added = {key: paired(guard["cycles"], key, difference) for key in ("start", "stop")}
    added.update({key: paired(guard["lifecycle"], key, difference) for key in ("create", "destroy")})
    speeds = {label: {path: med([x[path] for x in runs]) for path in runs[0]}
              for label, runs in guard["speeds"].items()}
    shares = {path: paired(guard["speeds"], path, lambda on, off: on / off) for path in speeds["guard"]}
    # The ratio of the two medians, beside it: where both move apart, the
    # machine's noise is larger than what the guard costs.
    of_medians = {path: speeds["guard"][path] / speeds["no guard"][path] for path in speeds["guard"]}
    return dict(added=added, speeds=speeds, shares=shares, of_medians=of_medians)
