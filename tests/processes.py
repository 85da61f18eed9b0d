"""Looking at processes and ports from the outside, through /proc (Linux).

A process counts as gone once it has exited, zombie or not: a zombie holds no
ports, and where PID 1 does not reap (this sandbox) an orphan stays a zombie.
"""

from __future__ import annotations

import itertools
import socket
from pathlib import Path

import trio


def free_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports that were free a moment ago."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def port_is_free(port: int) -> bool:
    """True if a server could bind ``port`` on loopback now (as nats-server does)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        sock.listen()
        return True


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name, or None if there is none."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return text.rsplit(")", 1)[1].split()


def is_gone(pid: int) -> bool:
    """True once ``pid`` has exited (a zombie counts as gone)."""
    fields = _stat(pid)
    return fields is None or fields[0] in ("Z", "X")


def parent_of(pid: int) -> int:
    """The parent process id of a live ``pid``."""
    fields = _stat(pid)
    assert fields is not None, f"no process {pid}"
    return int(fields[1])


def command_of(pid: int) -> list[str]:
    """The command line of ``pid`` (empty for a zombie or a process that is gone)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return []
    return [arg.decode(errors="replace") for arg in raw.split(b"\0") if arg]


def nats_processes_on(port: int) -> list[int]:
    """Live processes whose command line runs nats-server with ``-p PORT``.

    That is the server itself and its watchdog (whose arguments end with the
    server's command line).
    """
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or is_gone(int(entry.name)):
            continue
        args = command_of(int(entry.name))
        runs_nats = any(arg.endswith("nats-server") for arg in args)
        on_port = any(a == "-p" and b == str(port) for a, b in itertools.pairwise(args))
        if runs_nats and on_port:
            found.append(int(entry.name))
    return found


async def wait_until_gone(*pids: int, timeout: float = 2.0) -> None:
    """Return once every pid has exited; fail after ``timeout`` seconds."""
    with trio.fail_after(timeout):
        while not all(is_gone(pid) for pid in pids):
            await trio.sleep(0.01)
