"""Inbound: messages from nats-py (asyncio) to trio code, without a loop hop each.

nats-py's reader hands each message to :meth:`SubscriptionBuffer.push` on the
asyncio side; it only appends to a bounded deque and, if the trio consumer is
parked, unparks it. The
trio consumer then takes everything that has arrived without calling into trio
for each message: a full checkpoint (cancellation and a yield to the scheduler)
happens every ``_YIELD_EVERY`` messages and whenever it has to wait, so a flood
cannot starve other tasks and a cancelled consumer stops within that many
messages. One wake-up serves a whole batch: that is what keeps the bridge cheap.

Overflow policy: a subscription holds at most ``max_messages`` messages and
``max_bytes`` bytes that its consumer has not taken yet. When a new message
does not fit, ``Overflow.DROP_NEWEST`` (the default, what NATS itself does to a
slow consumer) drops the new message; ``Overflow.DROP_OLDEST`` drops the oldest
ones instead. Either way the drop is counted in ``statistics().dropped`` and a
``slow_consumer`` connection event is emitted when dropping starts. Memory stays
bounded whatever the publisher does.

Direct delivery: with a callback, nats-py puts every message into an asyncio
queue of its own and wakes a task per subscription to call the callback: one
more asyncio hop per message, which measurably halves throughput once trio is on
the other side. So the bus subscribes without a callback and puts
:class:`NatsQueueAdapter` in the place of that queue (``Subscription._pending_queue``,
a private attribute of nats-py, pinned by the version range in pyproject.toml
and checked by tests). If a nats-py release no longer has it, the bus falls back
to the callback (:func:`attach`), slower but correct.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Generic, TypeVar

import attrs
import trio

from volta.protocol import Message, ProtocolError, decode_message, is_answerable

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.aio.subscription import Subscription as NatsSubscription

log = logging.getLogger("volta.bus")

_YIELD_EVERY = 256

T = TypeVar("T")

MalformedReport = Callable[[str, "Exception | str"], None]
"""How a subscription reports a payload it skipped (the bus's ``report_malformed``)."""
MalformedHook = Callable[["Delivery", ProtocolError], Awaitable[None]]
"""What the owner of a decoded subscription does with a payload that did not decode
(count it, refuse it to its sender), besides the bus's count and report."""


class Overflow(enum.Enum):
    """What a full subscription buffer does with one more message."""

    DROP_NEWEST = "drop_newest"
    DROP_OLDEST = "drop_oldest"


@attrs.frozen
class Delivery:
    """One message as it came off the wire."""

    subject: str
    """The subject it was published on."""
    data: bytes
    """The payload."""
    reply: str | None = None
    """Where the sender waits for an answer, if it does."""
    headers: Mapping[str, str] | None = None
    """NATS headers, if any."""

    @property
    def answerable(self) -> bool:
        """Whether its reply subject may receive an answer (``volta.protocol.is_answerable``)."""
        return is_answerable(self.reply)

    def decode(self) -> Message:
        """The payload as a Volta message.

        Raises:
            ProtocolError: the payload is not a valid message.
        """
        return decode_message(self.data)


@attrs.frozen
class SubscriptionStatistics:
    """Counters of one subscription."""

    subject: str
    """The subscribed subject."""
    queue: str | None
    """The queue group, if any."""
    delivered: int
    """Messages handed to the consumer."""
    pending: int
    """Messages waiting for the consumer."""
    pending_bytes: int
    """Payload bytes waiting for the consumer."""
    dropped: int
    """Messages lost to the overflow policy."""
    malformed: int
    """Messages skipped because they were not valid Volta messages."""
    direct_delivery: bool
    """True if nats-py hands messages straight to the buffer (the fast path)."""


class SubscriptionBuffer:
    """The bounded FIFO between nats-py's callback and one trio consumer."""

    def __init__(
        self,
        subject: str,
        queue: str | None,
        *,
        max_messages: int,
        max_bytes: int,
        overflow: Overflow,
        on_overflow: Callable[[str], None],
    ) -> None:
        self.subject = subject
        self.queue = queue
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self._overflow = overflow
        self._on_overflow = on_overflow
        self._items: deque[Msg] = deque()
        self._bytes = 0
        self._lot = trio.lowlevel.ParkingLot()
        self._closed: BaseException | None = None
        self._overflowing = False
        self._since_yield = 0
        self.delivered = 0
        self.dropped = 0
        self.dropped_reported = 0
        self.malformed = 0
        self.direct_delivery = False

    # asyncio side -----------------------------------------------------------

    async def on_message(self, msg: Msg) -> None:
        """nats-py's subscription callback (nats-py requires a coroutine)."""
        self.push(msg)

    def push(self, msg: Msg) -> None:
        """Add one message, applying the overflow policy; never blocks."""
        if self._closed is not None:
            return
        size = len(msg.data)
        items = self._items
        if len(items) >= self.max_messages or self._bytes + size > self.max_bytes:
            if self._overflow is Overflow.DROP_NEWEST or size > self.max_bytes:
                self._drop(1)
                return
            while items and (
                len(items) >= self.max_messages or self._bytes + size > self.max_bytes
            ):
                self._bytes -= len(items.popleft().data)
                self._drop(1)
        items.append(msg)
        self._bytes += size
        if self._lot:
            self._lot.unpark_all()

    def _drop(self, count: int) -> None:
        self.dropped += count
        if not self._overflowing:
            self._overflowing = True
            self._on_overflow(self.subject)

    def close(self, error: BaseException) -> None:
        """No more messages; a parked or later ``get`` raises ``error`` once drained."""
        if self._closed is None:
            self._closed = error
        self._lot.unpark_all()

    # trio side ----------------------------------------------------------------

    def take_nowait(self) -> Msg | None:
        """The next message if one is waiting and no yield is due, else None.

        This is the fast path: no trio call at all. Every ``_YIELD_EVERY``-th
        message goes through :meth:`get` instead, which checkpoints.
        """
        items = self._items
        if not items or self._since_yield >= _YIELD_EVERY:
            return None
        self._since_yield += 1
        msg = items.popleft()
        self._bytes -= len(msg.data)
        self.delivered += 1
        if self._overflowing and len(items) * 2 < self.max_messages:
            self._overflowing = False
        return msg

    async def get(self) -> Msg:
        """The next message: a full checkpoint, then wait if there is none.

        Raises:
            BusClosed: (the error given to :meth:`close`) once closed and drained.
        """
        await trio.lowlevel.checkpoint()
        self._since_yield = 0
        while True:
            msg = self.take_nowait()
            if msg is not None:
                return msg
            if self._closed is not None:
                raise self._closed
            await self._lot.park()

    def statistics(self) -> SubscriptionStatistics:
        """The counters as they are now."""
        return SubscriptionStatistics(
            subject=self.subject,
            queue=self.queue,
            delivered=self.delivered,
            pending=len(self._items),
            pending_bytes=self._bytes,
            dropped=self.dropped,
            malformed=self.malformed,
            direct_delivery=self.direct_delivery,
        )


class NatsQueueAdapter:
    """Takes the place of a nats-py subscription's asyncio queue (see module docstring).

    nats-py's reader calls ``put_nowait``; it goes straight to the buffer.
    """

    __slots__ = ("_buffer", "put_nowait")

    def __init__(self, buffer: SubscriptionBuffer) -> None:
        self._buffer = buffer
        self.put_nowait = buffer.push

    def qsize(self) -> int:
        return self._buffer.statistics().pending

    def empty(self) -> bool:
        return self.qsize() == 0

    def task_done(self) -> None:
        """Nothing to track: the buffer keeps its own counts."""

    async def join(self) -> None:
        """nats-py's drain waits here; the buffer is drained by its trio consumer."""


async def attach(
    client: Client,
    subject: str,
    queue: str | None,
    buffer: SubscriptionBuffer,
    *,
    direct: bool = True,
    burst_messages: int = 8192,
    burst_bytes: int = 8 * 1024 * 1024,
) -> NatsSubscription:
    """Subscribe on nats-py so that messages land in ``buffer`` (asyncio side).

    Args:
        direct: use direct delivery when this nats-py allows it; the callback
            path otherwise (also used by tests to check the fallback).
        burst_messages: headroom of nats-py's own queue on the callback path.
        burst_bytes: the same, in bytes.
    """
    if direct:
        # No callback: nats-py only fills its queue, which we replace. A byte limit
        # of 0 turns off nats-py's own accounting (nobody takes from its queue).
        sub = await client.subscribe(subject, queue=queue or "", pending_bytes_limit=0)
        original = getattr(sub, "_pending_queue", None)
        if isinstance(original, asyncio.Queue) and getattr(sub, "_cb", None) is None:
            adapter = NatsQueueAdapter(buffer)
            sub._pending_queue = adapter  # type: ignore[assignment]
            iterator = getattr(sub, "_message_iterator", None)
            if iterator is not None and hasattr(iterator, "_queue"):
                iterator._queue = adapter  # let the replaced queue go (memory per agent)
            while not original.empty():  # anything that slipped in before the swap
                buffer.push(original.get_nowait())
            buffer.direct_delivery = True
            return sub
        await sub.unsubscribe()
        log.warning("nats-py changed: direct delivery unavailable, using callbacks")
    # With a callback nats-py queues in front of ours; a burst parsed from one
    # socket read lands there before the callback runs, hence the headroom.
    return await client.subscribe(
        subject,
        queue=queue or "",
        cb=buffer.on_message,
        pending_msgs_limit=buffer.max_messages + burst_messages,
        pending_bytes_limit=buffer.max_bytes + burst_bytes,
    )


def to_delivery(msg: Msg) -> Delivery:
    """The trio-side view of a nats-py message."""
    return Delivery(
        subject=msg.subject,
        data=msg.data,
        reply=msg.reply or None,
        headers=msg.headers or None,
    )


class Subscription:
    """An async iterator of :class:`Delivery` objects. Made by ``Bus.subscribe``.

    Iteration ends with ``BusClosed`` if the connection is closed for good.
    """

    def __init__(self, buffer: SubscriptionBuffer, report: MalformedReport) -> None:
        self._buffer = buffer
        self._report = report

    @property
    def subject(self) -> str:
        """The subscribed subject."""
        return self._buffer.subject

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Delivery:
        msg = self._buffer.take_nowait() or await self._buffer.get()
        return Delivery(msg.subject, msg.data, msg.reply or None, msg.headers or None)

    async def receive(self) -> Delivery:
        """The next delivery (same as ``await anext(subscription)``)."""
        return await self.__anext__()

    def statistics(self) -> SubscriptionStatistics:
        """The counters of this subscription."""
        return self._buffer.statistics()

    def malformed(self, delivery: Delivery, error: Exception | str) -> None:
        """A payload that could not be used: counted (``statistics().malformed``, and
        the bus's), reported (the first of a subject at once, the rest in a summary per
        report interval) and skipped. For rules a decoder cannot see (a status on
        another agent's subject)."""
        self._buffer.malformed += 1
        self._report(delivery.subject, error)

    def decoded(
        self, decode: Callable[[Delivery], T], *, on_malformed: MalformedHook | None = None
    ) -> DecodedSubscription[T]:
        """The deliveries whose payload decodes, each with its value: ``async for
        delivery, value in subscription.decoded(decode)``.

        Args:
            decode: a total decoder: the value, or :class:`~volta.protocol.ProtocolError`.
            on_malformed: also told of each payload that did not decode (after it is
                counted and reported), for owners that count or answer it.
        """
        return DecodedSubscription(self, decode, on_malformed)


class DecodedSubscription(Generic[T]):
    """Deliveries and their decoded values; what does not decode is malformed: counted,
    reported, handed to the owner's hook, and skipped. Never raises a decode error
    into the consumer."""

    def __init__(
        self,
        subscription: Subscription,
        decode: Callable[[Delivery], T],
        on_malformed: MalformedHook | None,
    ) -> None:
        self._subscription = subscription
        self._decode = decode
        self._on_malformed = on_malformed

    def __aiter__(self) -> DecodedSubscription[T]:
        return self

    async def __anext__(self) -> tuple[Delivery, T]:
        while True:
            delivery = await self._subscription.__anext__()
            try:
                return delivery, self._decode(delivery)
            except ProtocolError as error:
                self._subscription.malformed(delivery, error)
                if self._on_malformed is not None:
                    await self._on_malformed(delivery, error)


class MessageSubscription:
    """An async iterator of decoded :class:`~volta.protocol.Message` objects.

    A payload that is not a valid message is skipped: it is counted in
    ``statistics().malformed``, logged, and reported; it never raises into the
    consumer.
    """

    def __init__(self, buffer: SubscriptionBuffer, report: MalformedReport) -> None:
        self._buffer = buffer
        self._report = report

    @property
    def subject(self) -> str:
        """The subscribed subject."""
        return self._buffer.subject

    def __aiter__(self) -> MessageSubscription:
        return self

    async def __anext__(self) -> Message:
        buffer = self._buffer
        while True:
            msg = buffer.take_nowait() or await buffer.get()
            try:
                return decode_message(msg.data)
            except ProtocolError as error:
                buffer.malformed += 1
                self._report(msg.subject, error)

    def statistics(self) -> SubscriptionStatistics:
        """The counters of this subscription."""
        return self._buffer.statistics()
