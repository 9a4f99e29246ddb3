"""The processes of a run meet before JAX's distributed runtime starts, so that waiting is bounded
and a missing process is named.

`jax.distributed.initialize` waits for every process and, when its timeout passes, aborts the
whole interpreter (SIGABRT) with no word of who is missing. Before it, process 0 listens on the
coordinator's address and each other process connects and says its rank and the process count;
when all have come, process 0 tells them to go and closes the port, which JAX's coordination
service then takes. A process that does not come within `--peer-timeout` seconds is named by
process 0; a process that cannot reach process 0 in that time says so. Both are `ConfigError`s
(exit 2): the run never started.
"""

from __future__ import annotations

import socket
import time

from ..errors import ConfigError

HELLO = "dlrun-rendezvous"
POLL = 0.2  # seconds between connection attempts, and the accept loop's tick


def meet(host: str, port: int, num_processes: int, process_id: int, timeout: float) -> None:
    """Return once all `num_processes` processes have met at `host:port` (process 0 listens).

    Raises:
        ConfigError: a process missing after `timeout` seconds, process 0 out of reach, a rank
            given twice, another process count, or the port taken.
    """
    if num_processes == 1:
        return
    deadline = time.monotonic() + timeout
    if process_id == 0:
        _host(port, num_processes, deadline, timeout, f"{host}:{port}")
    else:
        _join(host, port, num_processes, process_id, deadline, timeout)


def _host(port: int, n: int, deadline: float, timeout: float, address: str) -> None:
    try:
        server = socket.create_server(("", port))
    except OSError as err:
        raise ConfigError(f"--coordinator {address}: process 0 cannot listen on port {port} ({err.strerror or err}); "
                          "choose a free port") from None
    joined: dict[int, socket.socket] = {}
    try:
        server.settimeout(POLL)
        while len(joined) < n - 1:
            if time.monotonic() > deadline:
                missing = ", ".join(str(i) for i in range(1, n) if i not in joined)
                raise ConfigError(f"--peer-timeout {timeout:g}: after {timeout:g} s, process(es) {missing} of "
                                  f"--num-processes {n} had not joined at {address}; start each with --coordinator "
                                  f"{address} --num-processes {n} --process-id K, or wait longer with --peer-timeout")
            try:
                conn, _ = server.accept()
            except (socket.timeout, TimeoutError):
                continue
            rank = _greeting(conn, n, joined)
            if rank is not None:
                joined[rank] = conn
        for conn in joined.values():
            conn.sendall(b"go\n")
    finally:
        for conn in joined.values():
            conn.close()
        server.close()


def _greeting(conn: socket.socket, n: int, joined: dict[int, socket.socket]) -> int | None:
    """The rank a connecting process says it is, or None (refused, told why) for a bad greeting."""
    conn.settimeout(5)
    try:
        words = conn.recv(128).decode(errors="replace").split()
    except OSError:
        conn.close()
        return None
    if len(words) != 3 or words[0] != HELLO or not words[1].isdigit() or not words[2].isdigit():
        conn.close()  # not one of ours (a port scanner, another program)
        return None
    rank, count = int(words[1]), int(words[2])
    problem = (f"--num-processes {count} disagrees with process 0's {n}" if count != n else
               f"--process-id {rank} is already taken" if rank in joined else
               f"--process-id {rank} is out of range 1 to {n - 1}" if not 1 <= rank < n else "")
    if problem:
        conn.sendall(f"refused {problem}\n".encode())
        conn.close()
        return None
    return rank


def _join(host: str, port: int, n: int, rank: int, deadline: float, timeout: float) -> None:
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise ConfigError(f"--peer-timeout {timeout:g}: process {rank} could not reach process 0 at {host}:{port} "
                              f"within {timeout:g} s; is process 0 running (--process-id 0), and is the port open?")
        try:
            conn = socket.create_connection((host, port), timeout=min(2.0, left))
        except OSError:
            time.sleep(POLL)
            continue
        try:
            conn.sendall(f"{HELLO} {rank} {n}\n".encode())
            conn.settimeout(max(left, 0.1))
            reply = conn.recv(256).decode(errors="replace").strip()
        except OSError:
            reply = ""
        finally:
            conn.close()
        if reply == "go":
            return
        if reply.startswith("refused"):
            raise ConfigError(f"process 0 at {host}:{port} refused process {rank}: {reply.removeprefix('refused').strip()}")
        time.sleep(POLL)  # process 0 went away, or this attempt timed out: try again while time is left
