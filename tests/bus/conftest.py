"""Helpers for the bus's fault tests (the server fixture is in tests/conftest.py)."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio

from volta.bus import ConnectionEvent, ConnectionEventKind, NatsServer, ReconnectPolicy

FAST_RECONNECT = ReconnectPolicy(initial_delay=0.05, max_delay=0.2, jitter=0.1)


async def next_event(
    events: trio.MemoryReceiveChannel[ConnectionEvent], kind: ConnectionEventKind
) -> ConnectionEvent:
    """The next event of this kind (bound the wait with ``trio.fail_after``)."""
    async for event in events:
        if event.kind is kind:
            return event
    raise AssertionError(f"no {kind} event")  # pragma: no cover


@asynccontextmanager
async def stalled(server: NatsServer) -> AsyncIterator[None]:
    """SIGSTOP the server: its sockets stay open, it reads nothing (a stalled link).

    Enters once the kernel reports the process stopped (Linux ``/proc``).
    """
    pid = server.pid  # the nats-server itself, not its watchdog
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        with trio.fail_after(5):
            while _process_state(pid) != "T":
                await trio.sleep(0.001)
        yield
    finally:
        if server.running:
            os.kill(pid, signal.SIGCONT)


def _process_state(pid: int) -> str:
    """The state letter of ``/proc/<pid>/stat`` (R, S, T, Z, ...)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2]
