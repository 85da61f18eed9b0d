"""Reading a stream through a durable pull consumer, for trio code.

``async with pull(bus, stream, durable) as messages: async for message in messages``
gives :class:`StreamDelivery` objects: the delivery (subject, payload, headers)
plus where it stands (how often delivered, its stream sequence) and the acks:
:meth:`~StreamDelivery.ack` once the work is done, :meth:`~StreamDelivery.in_progress`
to say "still working" before ``ack_wait`` runs out, :meth:`~StreamDelivery.nak`
to have it delivered again (after a delay), :meth:`~StreamDelivery.term` to give
up on it. A message not acknowledged within ``ack_wait`` is delivered again:
readers must be idempotent (JetStream is at least once).

How it pulls: messages arrive on an inbox subscription of the bus (the same fast
path as every subscription, one trio wake-up per batch), asked for by pull
requests (``$JS.API.CONSUMER.MSG.NEXT``) that a task of the block keeps topped
up: a new request of ``batch`` messages whenever fewer than half a batch are
still asked for, each expiring after ``expires`` seconds. The server answers an
expired request with a status (408) that says how many it did not send, and the
count goes down by that many. After a reconnect every request is gone with the
old connection: the count starts again from zero.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import attrs
import trio

from volta.core import open_nursery
from volta.protocol import encode_json

from ._errors import BusError
from ._events import ConnectionEventKind

if TYPE_CHECKING:
    from ._bus import Bus
    from ._subscription import Delivery, Subscription

log = logging.getLogger("volta.bus.pull")

_NS = 1_000_000_000
_PENDING_MESSAGES = "Nats-Pending-Messages"
_STATUS = "Status"
_DESCRIPTION = "Description"


class ConsumerGone(BusError):
    """The durable consumer was deleted (or the stream) while it was being read."""


@attrs.frozen
class AckMetadata:
    """Where a delivered message stands, from its ack subject
    (``$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<time>.<pending>``)."""

    stream: str
    consumer: str
    delivered: int
    """How many times it has been delivered (1 the first time)."""
    stream_sequence: int
    consumer_sequence: int
    timestamp_ns: int
    """When it was stored (nanoseconds since the epoch)."""
    pending: int
    """Messages after it not yet delivered."""


def ack_metadata(reply: str) -> AckMetadata | None:
    """The metadata in an ack subject, or None if it is not one."""
    tokens = reply.split(".")
    if len(tokens) < 9 or tokens[0] != "$JS" or tokens[1] != "ACK":
        return None
    # Newer servers put a domain and an account hash first: 12 tokens or more.
    if len(tokens) >= 12:
        tokens = tokens[:2] + tokens[4:]
    try:
        numbers = [int(token) for token in tokens[4:9]]
    except ValueError:
        return None
    return AckMetadata(tokens[2], tokens[3], *numbers)


class StreamDelivery:
    """One message from a stream, with its acks."""

    __slots__ = ("_acked", "_bus", "delivery", "metadata")

    def __init__(self, delivery: Delivery, metadata: AckMetadata, bus: Bus) -> None:
        self.delivery = delivery
        """The message: subject, payload, headers (its ``reply`` is the ack subject)."""
        self.metadata = metadata
        """Where it stands."""
        self._bus = bus
        self._acked = False

    @property
    def subject(self) -> str:
        """The subject it was published on."""
        return self.delivery.subject

    @property
    def data(self) -> bytes:
        """The payload."""
        return self.delivery.data

    @property
    def headers(self) -> Mapping[str, str] | None:
        """Its headers (``Nats-Msg-Id`` among them when the publisher set one)."""
        return self.delivery.headers

    @property
    def redelivered(self) -> bool:
        """Whether it was delivered before (and not acknowledged then)."""
        return self.metadata.delivered > 1

    async def _say(self, word: bytes, *, final: bool) -> None:
        if self._acked:
            return  # the first final word counts; a second one would be an error at the server
        if final:
            self._acked = True
        assert self.delivery.reply is not None
        await self._bus.publish(self.delivery.reply, word)

    async def ack(self) -> None:
        """Done with it: it is not delivered again."""
        await self._say(b"+ACK", final=True)

    async def nak(self, delay: float | None = None) -> None:
        """Not done: deliver it again (after ``delay`` seconds, if given)."""
        word = b"-NAK" if delay is None else b"-NAK " + encode_json({"delay": int(delay * _NS)})
        await self._say(word, final=True)

    async def in_progress(self) -> None:
        """Still working on it: ``ack_wait`` starts again."""
        await self._say(b"+WPI", final=False)

    async def term(self) -> None:
        """Never deliver it again (it cannot be handled)."""
        await self._say(b"+TERM", final=True)


@attrs.frozen(kw_only=True)
class PullOptions:
    """How a pull subscription asks for messages."""

    batch: int = 256
    """Messages asked for by one pull request."""
    expires: float = 5.0
    """Seconds a pull request stays open at the server."""
    max_messages: int = 65_536
    """Messages received and not yet taken that the subscription holds at most."""


class PullSubscription:
    """Messages of a durable consumer (made by :func:`pull`)."""

    def __init__(
        self, bus: Bus, subscription: Subscription, stream: str, durable: str, options: PullOptions
    ) -> None:
        self._bus = bus
        self._subscription = subscription
        self._inbox = subscription.subject
        self._next = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}"
        self._options = options
        self._asked = 0  # messages asked for and neither received nor given up
        self._wanted = trio.Event()
        self._gone: ConsumerGone | None = None
        self.received = 0
        """Messages received."""
        self.requests = 0
        """Pull requests sent."""

    @property
    def subscription(self) -> Subscription:
        """The inbox subscription the messages arrive on (its counters; ``malformed``)."""
        return self._subscription

    def __aiter__(self) -> PullSubscription:
        return self

    async def __anext__(self) -> StreamDelivery:
        while True:
            if self._gone is not None:
                raise self._gone
            delivery = await self._subscription.receive()
            headers = delivery.headers
            if headers and _STATUS in headers and not delivery.data:
                self._on_status(headers)
                continue
            metadata = ack_metadata(delivery.reply or "")
            if metadata is None:
                continue  # not from the consumer (someone published on our inbox)
            self.received += 1
            self._asked -= 1
            if self._asked <= self._options.batch // 2:
                self._wanted.set()
            return StreamDelivery(delivery, metadata, self._bus)

    def _on_status(self, headers: Mapping[str, str]) -> None:
        status = headers.get(_STATUS, "")
        description = headers.get(_DESCRIPTION, "")
        if status in ("404", "408", "409"):
            left = headers.get(_PENDING_MESSAGES)
            if left is not None and left.isdigit():
                self._asked -= int(left)
            elif status == "404":
                self._asked = 0
            if status == "409" and "deleted" in description.lower():
                self._gone = ConsumerGone(f"{self._next}: {description}")
            self._wanted.set()
        # 100 (idle heartbeat) says nothing we need.

    async def keep_asking(self) -> None:
        """Keep enough pull requests open (a task of the block)."""
        options = self._options
        request = encode_json({"batch": options.batch, "expires": int(options.expires * _NS)})
        async with self._bus.watch_events() as events, open_nursery() as nursery:
            nursery.start_soon(self._forget_on_reconnect, events)
            while True:
                while self._asked > options.batch // 2:
                    # Also wake when requests may have expired unanswered (a lost
                    # 408): then ask again rather than wait forever.
                    with trio.move_on_after(options.expires + 1.0) as idle:
                        await self._wanted.wait()
                    self._wanted = trio.Event()
                    if idle.cancelled_caught:
                        self._asked = 0
                self._asked += options.batch
                self.requests += 1
                await self._bus.publish(self._next, request, reply=self._inbox)

    async def _forget_on_reconnect(self, events: AsyncIterator[object]) -> None:
        async for event in events:
            if getattr(event, "kind", None) is ConnectionEventKind.RECONNECTED:
                self._asked = 0  # the requests went with the old connection
                self._wanted.set()


@asynccontextmanager
async def pull(
    bus: Bus, stream: str, durable: str, options: PullOptions | None = None
) -> AsyncIterator[PullSubscription]:
    """Read a durable consumer for the duration of the block.

    The consumer must exist (``JetStream.ensure_consumer``).
    """
    options = options or PullOptions()
    inbox = f"_INBOX.volta-pull.{uuid.uuid4().hex}"
    async with (
        bus.subscribe(inbox, max_messages=options.max_messages) as subscription,
        open_nursery() as nursery,
    ):
        messages = PullSubscription(bus, subscription, stream, durable, options)
        nursery.start_soon(messages.keep_asking)
        yield messages
        nursery.cancel_scope.cancel()
