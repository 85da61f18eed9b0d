"""Outbound: trio code queues, one long-lived asyncio task sends.

``publish`` from trio only appends to a deque and, if the pump sleeps, sets one
asyncio event; the pump then hands the whole batch to nats-py in one go. So a
publish costs no loop hop, and nats-py writes a batch with one socket write.

Commands that are not publishes (subscribe, unsubscribe, flush) travel through
the same deque, so they keep their order with the publishes around them, and
their result comes back to the waiting trio task through a :class:`Completion`.

While the client is reconnecting the pump holds everything (instead of letting
nats-py drop what overflows its reconnect buffer); publishers wait once
``max_bytes`` are queued. That turns an outage into backpressure, not loss.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import trio
from nats import errors as nats_errors
from nats.protocol.command import pub_cmd

from ._errors import BusClosed

if TYPE_CHECKING:
    from nats.aio.client import Client

log = logging.getLogger("volta.bus")

T = TypeVar("T")

_YIELD_EVERY = 1024
_RUN_LENGTH = 256
_WRITE_THROUGH_SPACING_NS = 100_000


class Completion(Generic[T]):
    """A result produced on the asyncio side and awaited by one trio task."""

    __slots__ = ("_done", "_error", "_value")

    def __init__(self) -> None:
        self._done = trio.Event()
        self._value: T | None = None
        self._error: BaseException | None = None

    def set_result(self, value: T) -> None:
        """Deliver the value (sync; callable from asyncio callbacks)."""
        if not self._done.is_set():
            self._value = value
            self._done.set()

    def set_error(self, error: BaseException) -> None:
        """Deliver an error instead."""
        if not self._done.is_set():
            self._error = error
            self._done.set()

    @property
    def done(self) -> bool:
        """True once a result or error was delivered."""
        return self._done.is_set()

    async def wait(self) -> T:
        """The value, or raise the error."""
        await self._done.wait()
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]


class Command:
    """Work for the pump other than a plain publish."""

    def __init__(
        self, run: Callable[[Client], Awaitable[Any]], completion: Completion[Any] | None
    ) -> None:
        self.run = run
        self.completion = completion

    async def execute(self, client: Client) -> None:
        """Run on the asyncio side; report the outcome to the completion."""
        try:
            result = await self.run(client)
        except Exception as error:
            if self.completion is None:
                log.warning("bus command failed: %r", error)
            else:
                self.completion.set_error(error)
        else:
            if self.completion is not None:
                self.completion.set_result(result)


Publish = tuple[str, bytes, str, "dict[str, str] | None"]
"""A queued publish: subject, payload, reply subject ('' for none), headers."""


class Outbox:
    """The queue from trio to the pump, bounded in bytes."""

    def __init__(self, max_bytes: int, on_error: Callable[[str], None]) -> None:
        self._items: deque[Publish | Command] = deque()
        self._bytes = 0
        self._max_bytes = max_bytes
        self._on_error = on_error
        self._wakeup = asyncio.Event()
        self._room = trio.lowlevel.ParkingLot()
        self._empty = trio.lowlevel.ParkingLot()
        self._closed: BaseException | None = None
        self.published = 0
        self.failed = 0
        self._last_write_through = 0
        self.direct = True
        """Write runs of publishes straight into nats-py's buffer (False: the
        pump found the hooks missing, or a test turned it off)."""

    # trio side ------------------------------------------------------------------

    @property
    def queued_bytes(self) -> int:
        """Payload bytes queued and not yet handed to nats-py."""
        return self._bytes

    def try_write_through(self, client: Client, subject: str, payload: bytes, reply: str) -> bool:
        """Write one publish straight to the socket if nothing is queued anywhere.

        A publish after a quiet spell would otherwise wait for the asyncio loop
        to wake the pump (one trip through trio's scheduler each way, most of a
        request's overhead). When the outbox is empty, the pump has handed out
        everything since it last slept, and nats-py holds nothing unsent, writing
        now keeps the order of everything published. Only when the last such write
        is more than ``_WRITE_THROUGH_SPACING_NS`` old: a burst goes through the
        pump instead and leaves in batches, one socket write for many messages.
        And only while the socket takes what it is given: once asyncio holds a
        backlog (a stalled server or link), writing here would grow it without
        bound; through the pump, nats-py's pending limit and ours push back.

        Returns:
            True if written; False to queue it as usual.
        """
        if self._items:
            return False
        now = time.monotonic_ns()
        if now - self._last_write_through < _WRITE_THROUGH_SPACING_NS:
            return False
        transport = getattr(client, "_transport", None)
        if (
            not self.direct
            or transport is None
            or client._pending_data_size
            or not client.is_connected
            or _has_backlog(transport)
        ):
            return False
        self._last_write_through = now
        try:
            transport.write(pub_cmd(subject, reply, payload))
        except Exception:  # a transport closing under us: let the pump deal with it
            return False
        client.stats["out_msgs"] += 1
        client.stats["out_bytes"] += len(payload)
        self.published += 1
        return True

    def try_put(self, item: Publish) -> bool:
        """Queue a publish if there is room; False if the outbox is full.

        Raises:
            BusClosed: the bus is closed.
        """
        if self._bytes >= self._max_bytes or self._closed is not None:
            if self._closed is not None:
                raise BusClosed("the bus is closed") from self._closed
            return False
        self._items.append(item)
        self._bytes += len(item[1])
        if not self._wakeup.is_set():
            self._wakeup.set()
        return True

    async def put(self, item: Publish) -> None:
        """Queue a publish, waiting while ``max_bytes`` are already queued.

        Raises:
            BusClosed: the bus is closed.
        """
        while not self.try_put(item):
            await self._room.park()

    def put_command(self, command: Command) -> None:
        """Queue a command behind everything queued before it.

        Raises:
            BusClosed: the bus is closed.
        """
        if self._closed is not None:
            raise BusClosed("the bus is closed") from self._closed
        self._items.append(command)
        if not self._wakeup.is_set():
            self._wakeup.set()

    async def wait_empty(self) -> None:
        """Wait until the pump has handed everything to nats-py."""
        while self._items and self._closed is None:
            await self._empty.park()

    def close(self, error: BaseException) -> None:
        """Refuse new work, fail queued commands, wake every waiter."""
        if self._closed is None:
            self._closed = error
        while self._items:
            item = self._items.popleft()
            if isinstance(item, Command) and item.completion is not None:
                item.completion.set_error(BusClosed("the bus is closed"))
        self._bytes = 0
        self._room.unpark_all()
        self._empty.unpark_all()

    # asyncio side -----------------------------------------------------------------

    async def pump(self, client: Client, online: asyncio.Event) -> None:
        """Drain the queue into nats-py until the outbox is closed (one asyncio task).

        It ends by itself once closed, not only when cancelled: nats-py swallows
        a cancellation that reaches its forced flush (``_flush_pending``), where
        the pump can wait for good when an outage kills nats-py's flusher.
        """
        items = self._items
        self.direct = self.direct and _supports_direct_writes(client)
        handed = 0
        while True:
            if not items:
                if self._closed is not None:
                    return
                self._room.unpark_all()
                self._empty.unpark_all()
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            if not online.is_set() or client.is_closed:
                if client.is_closed:
                    return
                await online.wait()
                continue
            item = items[0]
            if isinstance(item, Command):
                items.popleft()
                await item.execute(client)
                handed += 1
            elif self.direct and item[3] is None:
                handed += await self._write_run(client)
            else:
                items.popleft()
                handed += 1
                if not await self._publish_one(client, item, online):
                    if client.is_closed:
                        return
                    continue
            if handed >= _YIELD_EVERY:
                # Let nats-py's flusher and readers, and waiting publishers, run
                # during a long batch.
                handed = 0
                self._room.unpark_all()
                await asyncio.sleep(0)

    async def _write_run(self, client: Client) -> int:
        """Hand a run of header-less publishes to nats-py as one write.

        nats-py's ``publish`` does per message what this does per run: encode
        (with nats-py's own ``pub_cmd``), append to the pending buffer, kick the
        flusher. Doing it once per run is what lets the bus keep up with plain
        nats-py. Uses nats-py's private ``_send_command``/``_flush_pending``;
        see :func:`_supports_direct_writes` for the fallback.
        """
        items = self._items
        commands: list[bytes] = []
        size = 0
        while items and len(commands) < _RUN_LENGTH:
            item = items[0]
            if isinstance(item, Command) or item[3] is not None:
                break
            items.popleft()
            subject, payload, reply, _ = item
            commands.append(pub_cmd(subject, reply, payload))
            size += len(payload)
        self._bytes -= size
        client.stats["out_msgs"] += len(commands)
        client.stats["out_bytes"] += size
        await client._send_command(b"".join(commands))
        if client._flush_queue is not None and client._flush_queue.empty():
            await client._flush_pending()
        self.published += len(commands)
        return len(commands)

    async def _publish_one(self, client: Client, item: Publish, online: asyncio.Event) -> bool:
        """Publish through nats-py's public API; False if it must wait for a reconnect."""
        subject, payload, reply, headers = item
        self._bytes -= len(payload)
        try:
            await client.publish(subject, payload, reply=reply, headers=headers)
        except (nats_errors.OutboundBufferLimitError, nats_errors.ConnectionReconnectingError):
            # The link dropped under us: keep the message for after the reconnect.
            self._items.appendleft(item)
            self._bytes += len(payload)
            online.clear()
            return False
        except nats_errors.ConnectionClosedError:
            self._items.appendleft(item)
            self._bytes += len(payload)
            return False
        except Exception as error:
            self.failed += 1
            self._on_error(f"publish to {subject!r} failed: {error!r}")
        else:
            self.published += 1
        return True


def _has_backlog(transport: object) -> bool:
    """Whether asyncio holds bytes the socket has not taken yet (True if unknown).

    Reads the asyncio transport under nats-py's ``TcpTransport._io_writer`` (a
    private attribute); a transport without one never gets write-through.
    """
    writer = getattr(transport, "_io_writer", None)
    if writer is None:
        return True
    return bool(writer.transport.get_write_buffer_size())


def _supports_direct_writes(client: Client) -> bool:
    """Whether this nats-py has the private hooks :meth:`Outbox._write_run` uses."""
    return all(
        callable(getattr(client, name, None)) for name in ("_send_command", "_flush_pending")
    ) and hasattr(client, "_flush_queue")
