"""Shared fixtures.

Rules for every test in this tree:
- Only loopback addresses; servers listen on 127.0.0.1 with a port the OS picks.
- Anything that touches the bus runs against a real nats-server (never a mock).
- Time-based logic runs on ``autojump_clock``; tests that wait on a real server
  do not use it (the clock would jump while the socket is busy).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
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
