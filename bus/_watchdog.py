"""The watchdog between Volta and its embedded nats-server.

:class:`~volta.bus.NatsServer` does not start ``nats-server`` itself. It starts
this module as a script (``python -I -S _watchdog.py --log-fd N --grace S --
nats-server ARGS...``), in a session of its own, and the watchdog starts the
server as *its* child. The server is tied to Volta three ways:

- **Lifeline.** The watchdog's stdin is the read end of a pipe whose only write
  end Volta holds. However Volta ends, ``kill -9`` included, the kernel closes
  that end; the watchdog reads EOF, terminates the server (SIGTERM, ``--grace``
  seconds, SIGKILL), waits for it and exits. Nothing in Volta has to run.
- **Signals.** Volta signals the watchdog, never the server: SIGTERM and SIGINT
  are forwarded as they are, :data:`KILL_SERVER` (SIGUSR1) means "SIGKILL the
  server now". The watchdog's own exit mirrors the server's (the same exit code,
  or death by the same signal), so waiting for the watchdog reads like waiting
  for the server, and it returns only once the server has been reaped: its port
  is free by then.
- **Death of the watchdog.** On Linux the server gets ``PR_SET_PDEATHSIG``
  (SIGKILL), so if the watchdog itself is SIGKILLed the server goes too. That is
  safe here and not in Volta: the flag follows the *thread* that forked, and
  this script forks from its only thread, while trio spawns from worker threads
  that come and go.

The server writes its log straight into the pipe Volta reads (no copy through
this process). The watchdog holds a second read end of that pipe (``--log-fd``)
and, once the lifeline is gone, drains it until the server has exited: a Go
program whose stderr is a pipe without a reader dies of SIGPIPE on its next
line, which would otherwise be its own shutdown message.

Two simpler shapes were tried on paper and rejected. Starting nats-server
directly and a watchdog beside it leaves a window between the two spawns in
which a ``kill -9`` of Volta orphans the server, and a watchdog that is not the
server's parent can only signal it by pid. A launcher that forks the watchdog
and then execs the server keeps the server as Volta's child, but makes the
watchdog the *server's* child: when the server exits the watchdog is handed to
PID 1, and where PID 1 does not reap (a container whose init is a plain program,
or this sandbox), every restart would leave a zombie. Here every process has a
parent that waits for it: Volta for the watchdog, the watchdog for the server.

The script imports the standard library only (it runs with ``-I -S``, so it
starts in milliseconds and cannot pick up Volta's dependencies); Volta imports
it as a module for :data:`KILL_SERVER` and :data:`PID_LINE`.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from types import FrameType

KILL_SERVER = signal.SIGUSR1
"""Sent to the watchdog: SIGKILL the server at once (fault injection, last resort)."""

FORWARDED = (signal.SIGTERM, signal.SIGINT)
"""Signals the watchdog passes on to the server unchanged."""

PID_LINE = b"volta watchdog: nats-server pid "
"""The first line of the server's log, followed by its process id."""

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_LIFELINE = 0  # stdin


class UsageError(Exception):
    """The command line is not ``--log-fd N --grace SECONDS -- COMMAND...``."""


def parse_args(argv: Sequence[str]) -> tuple[int | None, float, list[str]]:
    """Read ``[--log-fd N] [--grace SECONDS] -- COMMAND...``.

    Returns:
        The log pipe's extra read end (None if not given), the grace period,
        and the server's command line.

    Raises:
        UsageError: anything else.
    """
    log_fd: int | None = None
    grace = 5.0
    args = list(argv)
    try:
        while args and args[0] != "--":
            option, value = args[0], args[1]
            del args[:2]
            if option == "--log-fd":
                log_fd = int(value)
            elif option == "--grace":
                grace = float(value)
            else:
                raise UsageError(f"unknown option {option}")
    except (IndexError, ValueError) as error:
        raise UsageError(str(error)) from None
    if len(args) < 2:
        raise UsageError("expected -- COMMAND...")
    return log_fd, grace, args[1:]


def _tie_to(watchdog_pid: int) -> Callable[[], None]:
    """What the server's process runs between fork and exec."""
    prctl = None
    if sys.platform == "linux":
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl

    def prepare() -> None:
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != watchdog_pid:
            # The watchdog died before the tie was made: do not run untied.
            os._exit(1)
        # Written before exec, so it comes before anything the server prints.
        os.write(2, PID_LINE + str(os.getpid()).encode() + b"\n")

    return prepare


def _discard(fd: int) -> None:
    """Read and drop what is waiting on ``fd`` (non-blocking or not)."""
    with contextlib.suppress(BlockingIOError):
        os.read(fd, 65536)


def watch(
    server: subprocess.Popen[bytes],
    *,
    log_fd: int | None,
    grace: float,
    wakeup: int,
    pending: list[int],
) -> int | None:
    """Run until the server has exited; return its exit status (Popen style).

    Args:
        server: the nats-server process.
        log_fd: a read end of the server's stderr, drained once the lifeline is gone.
        grace: seconds between SIGTERM and SIGKILL after the lifeline is gone,
            and again between SIGKILL and giving up.
        wakeup: the read end of the signal wake-up pipe.
        pending: signal numbers the handlers have queued.

    Returns:
        The server's return code, or None if it outlived SIGKILL by ``grace``
        seconds (stuck in the kernel); the watchdog then exits anyway.
    """
    lifeline_open = True
    deadline: float | None = None
    killed = False
    while (code := server.poll()) is None:
        if deadline is not None and time.monotonic() >= deadline:
            if killed:
                return None
            server.kill()
            killed = True
            deadline = time.monotonic() + grace
        watched = [wakeup]
        if lifeline_open:
            watched.append(_LIFELINE)
        elif log_fd is not None:
            watched.append(log_fd)
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        readable, _, _ = select.select(watched, [], [], timeout)
        if wakeup in readable:
            _discard(wakeup)
        while pending:
            signum = pending.pop(0)
            if signum == KILL_SERVER:
                server.kill()
            elif signum in FORWARDED:
                server.send_signal(signum)
        if _LIFELINE in readable and not os.read(_LIFELINE, 4096):
            # Volta is gone: nobody reads the server's log from now on but us.
            lifeline_open = False
            server.terminate()
            deadline = time.monotonic() + grace
        if log_fd is not None and log_fd in readable:
            _discard(log_fd)
    return code


def exit_like(code: int | None) -> int:
    """End this process the way the server ended: same code, or same signal.

    Returns:
        The exit code to use if dying by the signal did not end the process.
    """
    if code is None:
        return 1
    if code >= 0:
        return code
    signum = -code
    signal.set_wakeup_fd(-1)
    if signum not in (signal.SIGKILL, signal.SIGSTOP):  # these cannot be caught anyway
        signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
    return 128 + signum


def main(argv: Sequence[str]) -> int:
    """Start the server, watch it, and return (or die by) its exit status."""
    try:
        log_fd, grace, command = parse_args(argv)
    except UsageError as error:
        os.write(2, f"volta watchdog: {error}\n".encode())
        return 2
    wakeup_read, wakeup_write = os.pipe()
    os.set_blocking(wakeup_read, False)
    os.set_blocking(wakeup_write, False)
    signal.set_wakeup_fd(wakeup_write, warn_on_full_buffer=False)
    pending: list[int] = []

    def queue(signum: int, _frame: FrameType | None) -> None:
        pending.append(signum)

    # Python handlers (not SIG_IGN), so exec resets them to the default for the
    # server; SIGCHLD's handler only wakes the select() below.
    for signum in (*FORWARDED, KILL_SERVER, signal.SIGCHLD):
        signal.signal(signum, queue)
    try:
        server = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            preexec_fn=_tie_to(os.getpid()),  # safe: this process has one thread
        )
    except OSError as error:
        os.write(2, f"volta watchdog: cannot run {command[0]}: {error}\n".encode())
        return 127
    return exit_like(watch(server, log_fd=log_fd, grace=grace, wakeup=wakeup_read, pending=pending))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
