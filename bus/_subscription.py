"""Inbound: messages from nats-py (asyncio) to trio code, without a loop hop each.

nats-py calls :meth:`SubscriptionBuffer.on_message` on the asyncio side; it only
appends to a bounded deque and, if the trio consumer is parked, unparks it. The
trio consumer then takes everything that has arrived without yielding to the
scheduler for every message (it still honours cancellation at once, and yields
every ``_YIELD_EVERY`` messages so a flood cannot starve other tasks). One
wake-up serves a whole batch: that is what keeps the bridge cheap.

Overflow policy: a subscription holds at most ``max_messages`` messages and
``max_bytes`` bytes that its consumer has not taken yet. When a new message
does not fit, ``Overflow.DROP_NEWEST`` (the default, what NATS itself does to a
slow consumer) drops the new message; ``Overflow.DROP_OLDEST`` drops the oldest
ones instead. Either way the drop is counted in ``statistics().dropped`` and a
``slow_consumer`` connection event is emitted when dropping starts. Memory stays
bounded whatever the publisher does.
"""

from __future__ import annotations

import enum
import logging
from collections import deque
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import attrs
import trio

from ._errors import MessageDecodeError
from ._message import Message, decode_message

if TYPE_CHECKING:
    from nats.aio.msg import Msg

log = logging.getLogger("volta.bus")

_YIELD_EVERY = 64


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

    def decode(self) -> Message:
        """The payload as a Volta message.

        Raises:
            MessageDecodeError: the payload is not a valid message.
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
        self._max_messages = max_messages
        self._max_bytes = max_bytes
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
        self.malformed = 0

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
        if len(items) >= self._max_messages or self._bytes + size > self._max_bytes:
            if self._overflow is Overflow.DROP_NEWEST or size > self._max_bytes:
                self._drop(1)
                return
            while items and (
                len(items) >= self._max_messages or self._bytes + size > self._max_bytes
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

    async def get(self) -> Msg:
        """The next message, waiting if there is none.

        Raises:
            BusClosed: (the error given to :meth:`close`) once closed and drained.
        """
        while True:
            if self._items:
                self._since_yield += 1
                if self._since_yield >= _YIELD_EVERY:
                    self._since_yield = 0
                    await trio.lowlevel.checkpoint()
                else:
                    await trio.lowlevel.checkpoint_if_cancelled()
                if not self._items:  # another consumer took it while we yielded
                    continue
                msg = self._items.popleft()
                self._bytes -= len(msg.data)
                self.delivered += 1
                if self._overflowing and len(self._items) * 2 < self._max_messages:
                    self._overflowing = False
                return msg
            if self._closed is not None:
                await trio.lowlevel.checkpoint()
                raise self._closed
            self._since_yield = 0
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

    def __init__(self, buffer: SubscriptionBuffer) -> None:
        self._buffer = buffer

    @property
    def subject(self) -> str:
        """The subscribed subject."""
        return self._buffer.subject

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Delivery:
        return to_delivery(await self._buffer.get())

    async def receive(self) -> Delivery:
        """The next delivery (same as ``await anext(subscription)``)."""
        return to_delivery(await self._buffer.get())

    def statistics(self) -> SubscriptionStatistics:
        """The counters of this subscription."""
        return self._buffer.statistics()


class MessageSubscription:
    """An async iterator of decoded :class:`Message` objects.

    A payload that is not a valid message is skipped: it is counted in
    ``statistics().malformed``, logged, and reported to ``on_malformed``; it
    never raises into the consumer.
    """

    def __init__(
        self, buffer: SubscriptionBuffer, on_malformed: Callable[[str, MessageDecodeError], Any]
    ) -> None:
        self._buffer = buffer
        self._on_malformed = on_malformed

    @property
    def subject(self) -> str:
        """The subscribed subject."""
        return self._buffer.subject

    def __aiter__(self) -> MessageSubscription:
        return self

    async def __anext__(self) -> Message:
        buffer = self._buffer
        while True:
            msg = await buffer.get()
            try:
                return decode_message(msg.data)
            except MessageDecodeError as error:
                buffer.malformed += 1
                self._on_malformed(msg.subject, error)

    def statistics(self) -> SubscriptionStatistics:
        """The counters of this subscription."""
        return self._buffer.statistics()
