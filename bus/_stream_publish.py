"""Durable publishing: into a stream, acknowledged, retried under the same id.

A publish into a JetStream stream is a request whose answer is the PubAck
(``{"stream": ..., "seq": ...}``): only then is the message stored. Each publish
carries a ``Nats-Msg-Id``; when no PubAck comes in time (the server restarting,
a stream changing leader) it is sent again under the same id, so the stream
stores it once (within its duplicate window) however often it was sent. A
publish either returns its :class:`PubAck` or raises :class:`PublishFailed`
after its deadline: never silently lost.

Many publishes can be in flight from one task (:meth:`StreamPublisher.publish_many`,
a window of requests whose PubAcks are read in order): that is what makes a
durable publish cost about what a core one does.
"""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

import attrs
import trio

from volta.protocol import ProtocolError, decode_json

from ._errors import BusError, NoResponders, RequestTimeout
from ._streams import JetStreamError

if TYPE_CHECKING:
    from nats.aio.msg import Msg

    from ._bus import Bus
    from ._requests import PendingReply

MSG_ID = "Nats-Msg-Id"
"""The header that names a message for the stream's de-duplication."""
_RETRY_PAUSE = 0.1  # after "no responders": JetStream is (re)starting


@attrs.frozen
class PubAck:
    """The stream's receipt for one message."""

    stream: str
    """The stream that stored it."""
    sequence: int
    """Its sequence number in the stream."""
    duplicate: bool = False
    """True if the stream already had a message with this id (stored once)."""


@attrs.frozen
class Outgoing:
    """One message to publish durably."""

    subject: str
    data: bytes
    msg_id: str = attrs.field(factory=lambda: uuid.uuid4().hex)
    """The de-duplication id (a fresh one unless given: give the same id to the same
    message sent again, e.g. after a restart)."""
    headers: Mapping[str, str] | None = None
    """More headers (``Nats-Msg-Id`` is added)."""


class PublishFailed(BusError):
    """No PubAck before the deadline: the message may or may not be stored.

    Publishing it again with the same ``msg_id`` (within the stream's duplicate
    window) is safe: the stream keeps one copy.
    """

    def __init__(self, subject: str, msg_id: str, reason: str) -> None:
        super().__init__(f"publish to {subject!r} (id {msg_id}) not acknowledged: {reason}")
        self.subject = subject
        self.msg_id = msg_id


class NotAStream(BusError):
    """The subject is not captured by any stream: something other than a stream answered."""


def pub_ack(msg: Msg, subject: str) -> PubAck:
    """The PubAck in a reply.

    Raises:
        JetStreamError: the stream refused the message (its error form).
        NotAStream: the reply is not a PubAck (a core responder answered).
    """
    try:
        answer = decode_json(msg.data)
    except ProtocolError:
        answer = None
    if not isinstance(answer, dict):
        raise NotAStream(f"{subject!r}: the reply is not a PubAck (no stream captures it?)")
    error = answer.get("error")
    if isinstance(error, dict):
        code, err_code = error.get("code"), error.get("err_code")
        raise JetStreamError(
            f"store a message on {subject}",
            code if isinstance(code, int) else 0,
            err_code if isinstance(err_code, int) else 0,
            str(error.get("description", "no description")),
        )
    stream, sequence = answer.get("stream"), answer.get("seq")
    if not isinstance(stream, str) or not isinstance(sequence, int):
        raise NotAStream(f"{subject!r}: the reply is not a PubAck (no stream captures it?)")
    return PubAck(stream, sequence, answer.get("duplicate") is True)


class StreamPublisher:
    """Publishes durably on one bus: ``StreamPublisher(bus)``."""

    def __init__(self, bus: Bus, *, ack_timeout: float = 2.0, deadline: float = 60.0) -> None:
        """Args:
        bus: the connection.
        ack_timeout: seconds to wait for one PubAck before sending again (same id).
        deadline: seconds a publish may take in all before it fails.
        """
        self._bus = bus
        self._ack_timeout = ack_timeout
        self._deadline = deadline
        self.retries = 0
        """Publishes sent again because no PubAck came in time."""
        self.duplicates = 0
        """PubAcks that said the stream already had the message."""

    async def _send(self, message: Outgoing) -> PendingReply:
        headers = {**message.headers, MSG_ID: message.msg_id} if message.headers else None
        return await self._bus.send_request(
            message.subject, message.data, headers=headers or {MSG_ID: message.msg_id}, receipt=True
        )

    async def publish(
        self,
        subject: str,
        data: bytes,
        msg_id: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> PubAck:
        """Publish one message and wait for its PubAck (retrying under the same id).

        Raises:
            PublishFailed: no PubAck before the deadline.
            JetStreamError: the stream refused the message (too large for it, ...).
            NotAStream: no stream captures ``subject``.
            InvalidSubject, PayloadTooLarge, BusClosed: as for ``Bus.publish``.
        """
        message = (
            Outgoing(subject, data, headers=headers)
            if msg_id is None
            else Outgoing(subject, data, msg_id, headers)
        )
        (ack,) = await self.publish_many([message], window=1)
        return ack

    async def publish_many(
        self, messages: Iterable[Outgoing], *, window: int = 256
    ) -> list[PubAck]:
        """Publish messages in order with up to ``window`` PubAcks outstanding; their
        PubAcks, in the same order. Those not acknowledged in time are sent again
        under their ids, all together (an outage loses a whole window of PubAcks: it
        is sent again at once, not one ack timeout after another).

        Raises:
            PublishFailed: one was not acknowledged before the deadline (those before
                it were; those after it may have been).
            JetStreamError, NotAStream: as for :meth:`publish`.
        """
        if window < 1:
            raise ValueError("window must be at least 1")
        acks: list[PubAck] = []
        in_flight: deque[_InFlight] = deque()
        try:
            for message in messages:
                if len(in_flight) >= window:
                    # Settle half the window, then send half a window in one go: one
                    # wake-up of the sender per burst, not per message (lock-step
                    # would cost a trip through both loops per publish).
                    while len(in_flight) > window // 2:
                        acks.append(await self._settle(in_flight))
                now = trio.current_time()
                pending = await self._send(message)
                in_flight.append(_InFlight(message, pending, now, now + self._deadline))
            while in_flight:
                acks.append(await self._settle(in_flight))
        finally:
            for entry in in_flight:
                entry.pending.discard()
        return acks

    async def _settle(self, in_flight: deque[_InFlight]) -> PubAck:
        """The PubAck of the oldest publish in flight, sending it again (same id) until
        its deadline; when it is overdue, every other overdue one is sent again too."""
        entry = in_flight[0]
        while True:
            wait = min(entry.sent_at + self._ack_timeout, entry.give_up) - trio.current_time()
            reason = "no PubAck"
            try:
                ack = pub_ack(await entry.pending.reply(max(wait, 0.0)), entry.message.subject)
            except RequestTimeout:
                reason = f"no PubAck within {self._deadline:g} s"
            except NoResponders:
                # No stream and nobody else listens, or JetStream is (re)starting.
                reason = "no stream answered (JetStream unavailable, or no stream captures it)"
                await self._pause(entry)
            except JetStreamError as error:
                if error.code != 503:  # 503: the stream is not ready (yet): try again
                    raise
                reason = error.description
                await self._pause(entry)
            else:
                in_flight.popleft()
                if ack.duplicate:
                    self.duplicates += 1
                return ack
            if trio.current_time() >= entry.give_up:
                raise PublishFailed(entry.message.subject, entry.message.msg_id, reason)
            await self._send_again(entry, in_flight)

    async def _pause(self, entry: _InFlight) -> None:
        await trio.sleep(min(_RETRY_PAUSE, max(0.0, entry.give_up - trio.current_time())))

    async def _send_again(self, head: _InFlight, in_flight: deque[_InFlight]) -> None:
        """Send the head again, and every later publish still unanswered after its ack
        timeout (what lost the head's PubAck most likely lost theirs)."""
        overdue = trio.current_time() - self._ack_timeout
        for entry in in_flight:
            if entry is head or (not entry.pending.answered and entry.sent_at <= overdue):
                entry.pending.discard()
                entry.sent_at = trio.current_time()
                entry.pending = await self._send(entry.message)
                self.retries += 1


@attrs.define
class _InFlight:
    """One publish waiting for its PubAck."""

    message: Outgoing
    pending: PendingReply
    sent_at: float
    give_up: float
