"""The nats-server watchdog on its own, with small stand-in servers.

Rules: real processes, every wait bounded by ``trio.fail_after``. The watchdog's
stdout is the stand-in's stdout (it says "ready" there once its signal handling
is set up); its stderr carries the pid line.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import trio

from volta.bus import _watchdog

from ..processes import is_gone, wait_until_gone

# A stand-in server that ignores SIGTERM.
STUBBORN = [
    sys.executable,
    "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('ready', flush=True); time.sleep(60)",
]
# One that does not.
SLEEPER = [sys.executable, "-c", "import time; print('ready', flush=True); time.sleep(60)"]


class Watched:
    """A watchdog process with the write end of its lifeline."""

    def __init__(self, process: trio.Process, lifeline: int, server_pid: int) -> None:
        self.process = process
        self.lifeline: int | None = lifeline
        self.server_pid = server_pid

    def cut_lifeline(self) -> None:
        assert self.lifeline is not None
        os.close(self.lifeline)
        self.lifeline = None

    async def wait(self) -> int:
        with trio.fail_after(10):
            code = await self.process.wait()
        if self.lifeline is not None:
            self.cut_lifeline()
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                await stream.aclose()
        return code


async def read_line(stream: trio.abc.ReceiveStream | None) -> bytes:
    assert stream is not None
    line = b""
    with trio.fail_after(10):
        while not line.endswith(b"\n"):
            chunk = await stream.receive_some(1)
            assert chunk, f"stream closed after {line!r}"
            line += chunk
    return line


async def start_watchdog(*command: str, grace: float = 5.0) -> Watched:
    life_read, life_write = os.pipe()
    try:
        process = await trio.lowlevel.open_process(
            [sys.executable, "-I", "-S", _watchdog.__file__, "--grace", str(grace), "--", *command],
            stdin=life_read,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    finally:
        os.close(life_read)
    first = await read_line(process.stderr)
    assert first.startswith(_watchdog.PID_LINE), first
    watched = Watched(process, life_write, int(first.removeprefix(_watchdog.PID_LINE)))
    assert await read_line(process.stdout) == b"ready\n"
    return watched


async def test_it_exits_with_the_servers_code() -> None:
    watched = await start_watchdog(sys.executable, "-c", "print('ready'); raise SystemExit(3)")
    assert await watched.wait() == 3


async def test_it_dies_of_the_signal_the_server_died_of() -> None:
    watched = await start_watchdog(
        sys.executable, "-c", "import os; print('ready', flush=True); os.kill(os.getpid(), 9)"
    )
    assert await watched.wait() == -signal.SIGKILL


async def test_sigterm_is_forwarded() -> None:
    watched = await start_watchdog(*SLEEPER)
    watched.process.terminate()
    assert await watched.wait() == -signal.SIGTERM
    assert is_gone(watched.server_pid)


async def test_kill_server_sigkills_a_server_that_ignores_sigterm() -> None:
    watched = await start_watchdog(*STUBBORN)
    watched.process.terminate()
    watched.process.send_signal(_watchdog.KILL_SERVER)
    assert await watched.wait() == -signal.SIGKILL
    assert is_gone(watched.server_pid)


async def test_a_cut_lifeline_terminates_the_server() -> None:
    watched = await start_watchdog(*SLEEPER)
    watched.cut_lifeline()
    assert await watched.wait() == -signal.SIGTERM
    assert is_gone(watched.server_pid)


async def test_a_cut_lifeline_kills_a_stubborn_server_after_the_grace_period() -> None:
    watched = await start_watchdog(*STUBBORN, grace=0.2)
    cut = trio.current_time()
    watched.cut_lifeline()
    assert await watched.wait() == -signal.SIGKILL
    assert 0.2 <= trio.current_time() - cut < 5
    await wait_until_gone(watched.server_pid)


async def test_a_program_that_cannot_run_is_reported() -> None:
    result = await trio.run_process(
        [sys.executable, "-I", "-S", _watchdog.__file__, "--", "/no/such/server"],
        stdin=subprocess.DEVNULL,
        capture_stderr=True,
        check=False,
    )
    assert result.returncode == 127
    assert b"volta watchdog: cannot run /no/such/server" in result.stderr


async def test_a_bad_command_line_is_a_usage_error() -> None:
    result = await trio.run_process(
        [sys.executable, "-I", "-S", _watchdog.__file__, "--grace", "soon", "--", "x"],
        stdin=subprocess.DEVNULL,
        capture_stderr=True,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.startswith(b"volta watchdog: ")
