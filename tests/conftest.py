"""Shared fixtures.

Rules for every test in this tree:
- Only loopback addresses; servers listen on 127.0.0.1 with a port the OS picks.
- Anything that touches the bus runs against a real nats-server (never a mock).
- Time-based logic runs on ``autojump_clock``; tests that wait on a real server
  do not use it (the clock would jump while the socket is busy).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from volta.bus import NatsServer, NatsServerConfig, run_nats_server


@pytest.fixture
async def nats_server() -> AsyncIterator[NatsServer]:
    """A fresh nats-server on a free loopback port, for one test."""
    async with run_nats_server(NatsServerConfig()) as server:
        yield server


@pytest.fixture
async def js_server(tmp_path: Path) -> AsyncIterator[NatsServer]:
    """A fresh nats-server with JetStream (file store in the test's folder), for one test."""
    config = NatsServerConfig(jetstream=True, store_dir=tmp_path / "store")
    async with run_nats_server(config) as server:
        yield server


@pytest.fixture
async def js_cluster(tmp_path: Path) -> AsyncIterator[list[NatsServer]]:
    """Three nats-servers with JetStream routed into one cluster on loopback, each with
    its own store; ready for streams with 3 replicas."""
    from .processes import free_ports

    ports = free_ports(6)
    clients, routes = ports[:3], ports[3:]
    async with AsyncExitStack() as stack:
        servers = []
        for n in range(3):
            others = ",".join(f"nats://127.0.0.1:{routes[m]}" for m in range(3) if m != n)
            config = NatsServerConfig(
                port=clients[n],
                jetstream=True,
                store_dir=tmp_path / f"store-{n}",
                extra_args=(
                    "--server_name", f"n{n}",
                    "--cluster_name", "volta",
                    "--cluster", f"nats://127.0.0.1:{routes[n]}",
                    "--routes", others,
                ),
            )  # fmt: skip
            servers.append(await stack.enter_async_context(run_nats_server(config)))
        await _wait_for_jetstream_cluster(servers[0].url)
        yield servers


async def _wait_for_jetstream_cluster(url: str) -> None:
    """Until the cluster has a JetStream meta leader (a stream with 3 replicas can be made)."""
    import trio

    from volta.bus import BusError, JetStream, StreamSpec, open_bus

    probe = StreamSpec(name="PROBE", subjects=("volta.probe",), replicas=3)
    async with open_bus(url) as bus:
        with trio.fail_after(30):
            while True:
                try:  # (no meta leader yet: no answer, or an error)
                    await JetStream(bus, timeout=1).ensure_stream(probe)
                except BusError:
                    await trio.sleep(0.2)
                    continue
                await JetStream(bus).delete_stream("PROBE")
                return
