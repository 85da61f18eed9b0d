"""Connecting, reconnecting, and turning nats-py's callbacks into events.

nats-py reconnects on its own; :class:`ConnectionMonitor` gives it our policy
(exponential backoff with jitter, forever by default, round robin over the
servers) and reports what happens as :class:`ConnectionEvent` objects. Every text
that leaves here passes through the options' secret scrubber.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from typing import Any

import trio
import trio_asyncio
from nats import errors as nats_errors
from nats.aio.client import Client, Server

from volta.core import Fanout

from ._errors import ConnectFailed
from ._events import ConnectionEvent, ConnectionEventKind
from ._options import BusOptions, SecretScrubber, redact_url

log = logging.getLogger("volta.bus")

# How often the first connect tries each server before the attempt counts as failed.
_INITIAL_TRIES_PER_SERVER = 1
_INITIAL_RETRY_WAIT = 0.05


class ConnectionMonitor:
    """nats-py's callbacks for one connection, and the reconnect policy."""

    def __init__(
        self,
        options: BusOptions,
        events: Fanout[ConnectionEvent],
        rng: random.Random | None = None,
    ) -> None:
        self._options = options
        self._events = events
        self._scrub: SecretScrubber = options.scrubber()
        self._rng = rng or random.Random()
        self._attempt = 0
        self._last_error = ""
        self._auth_error = ""
        self._give_up: asyncio.Future[None] | None = None
        self._client: Client | None = None
        self.online = asyncio.Event()
        self.reconnects = 0
        self.when_closed: Callable[[str], None] | None = None
        """Called once the connection is closed for good (set by the bus)."""

    def _server(self) -> str | None:
        client = self._client
        url = client.connected_url if client is not None else None
        return redact_url(url.geturl()) if url is not None else None

    def emit(self, kind: ConnectionEventKind, detail: str = "") -> None:
        """Send an event to the watchers (detail is scrubbed)."""
        self._events.emit(ConnectionEvent(kind, self._server(), self._scrub(detail)))

    # nats-py callbacks (asyncio side; nats-py requires coroutines) -----------------

    async def on_error(self, error: Exception) -> None:
        text = self._scrub(str(error) or type(error).__name__)
        if isinstance(error, nats_errors.SlowConsumerError):
            self.emit(ConnectionEventKind.SLOW_CONSUMER, text)
            return
        self._last_error = text
        if "authorization" in text.lower() or "authentication" in text.lower():
            # The server may reset the next attempt before it says why: keep the why.
            self._auth_error = text
        log.info("nats: %s", text)
        self.emit(ConnectionEventKind.ERROR, text)

    async def on_disconnected(self) -> None:
        self.online.clear()
        if self._client is not None and self._client.is_closed:
            return
        log.warning("disconnected from NATS; reconnecting")
        self.emit(ConnectionEventKind.DISCONNECTED)

    async def on_reconnected(self) -> None:
        self._attempt = 0
        self.reconnects += 1
        self.online.set()
        log.info("reconnected to NATS at %s", self._server())
        self.emit(ConnectionEventKind.RECONNECTED)

    async def on_closed(self) -> None:
        self.online.clear()
        reason = "connection closed"
        if self._give_up is not None:
            reason = f"gave up after {self._attempt - 1} reconnect attempts"
            if self._last_error:
                reason = self._scrub(f"{reason}; last error: {self._last_error}")
        self.emit(ConnectionEventKind.CLOSED, reason)
        if self.when_closed is not None:
            self.when_closed(reason)

    def choose_server(
        self, servers: list[Server], _server_info: dict[str, Any]
    ) -> tuple[Server | None, float]:
        """nats-py's reconnect hook: round robin, exponential backoff with jitter.

        Giving up is decided here too. nats-py's own limit closes the client from
        inside its reconnect task, which cancels itself half way and never calls
        ``closed_cb``; closing from a task of our own completes normally.
        """
        self._attempt += 1
        policy = self._options.reconnect
        if 0 <= policy.max_attempts < self._attempt and self._client is not None:
            if self._give_up is None:
                self._give_up = asyncio.ensure_future(self._client.close())
            return None, policy.max_delay + 1.0  # close() cancels this wait
        delay = policy.delay(self._attempt, self._rng)
        server = servers[(self._attempt - 1) % len(servers)] if servers else None
        return server, delay

    # connecting ---------------------------------------------------------------

    def _connect_arguments(self) -> dict[str, Any]:
        options = self._options
        arguments: dict[str, Any] = {
            "servers": list(options.servers),
            "name": options.name,
            "connect_timeout": options.connect_timeout,
            "allow_reconnect": True,
            # The first connect tries each server a bounded number of times; the
            # real policy is installed once connected (see connect()).
            "max_reconnect_attempts": _INITIAL_TRIES_PER_SERVER,
            "reconnect_time_wait": _INITIAL_RETRY_WAIT,
            "reconnect_to_server_handler": self.choose_server,
            "ping_interval": options.ping_interval,
            "max_outstanding_pings": options.max_outstanding_pings,
            "pending_size": options.reconnect_buffer_bytes,
            "error_cb": self.on_error,
            "disconnected_cb": self.on_disconnected,
            "reconnected_cb": self.on_reconnected,
            "closed_cb": self.on_closed,
            # The bus validates subjects itself (and caches the verdict).
            "skip_subject_validation": True,
        }
        if options.user is not None:
            arguments["user"] = options.user
        if options.password is not None:
            arguments["password"] = options.password
        if options.token is not None:
            arguments["token"] = options.token
        if options.creds_file is not None:
            arguments["user_credentials"] = str(options.creds_file)
        return arguments

    async def _connect_once(self) -> Client:
        client = Client()
        self._client = client
        await trio_asyncio.aio_as_trio(client.connect)(**self._connect_arguments())
        # From now on: reconnect over the full pool; choose_server() applies the
        # policy's limit (see there why nats-py's own limit is not used).
        client.options["max_reconnect_attempts"] = -1
        client.set_server_pool(list(self._options.servers))
        return client

    async def connect(self) -> Client:
        """Connect, retrying the first connection if the options say so.

        Raises:
            ConnectFailed: no server could be reached (message redacted).
        """
        options = self._options
        attempt = 0
        while True:
            attempt += 1
            try:
                client = await self._connect_once()
            except (TimeoutError, OSError, nats_errors.Error) as error:
                text = self._scrub(str(error) or type(error).__name__)
                cause = self._auth_error or self._last_error
                if cause and cause not in text:
                    text = f"{text} (last error: {cause})"
                servers = ", ".join(options.redacted_servers())
                limit = options.reconnect.max_attempts
                if not options.retry_initial_connect or (0 <= limit <= attempt):
                    raise ConnectFailed(f"could not connect to {servers}: {text}") from None
                delay = options.reconnect.delay(attempt, self._rng)
                log.warning(
                    "NATS at %s is not reachable yet (%s); retrying in %.1f s",
                    servers,
                    text,
                    delay,
                )
                self._events.emit(
                    ConnectionEvent(ConnectionEventKind.ERROR, None, f"connect failed: {text}")
                )
                await trio.sleep(delay)
                continue
            self.online.set()
            log.info("connected to NATS at %s", self._server())
            self.emit(ConnectionEventKind.CONNECTED)
            return client
