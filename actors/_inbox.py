"""The inbox: ``agent.<id>.message``, ``agent.broadcast`` and, with a durable inbox,
the agent's consumer of ``agent.<id>.inbox`` into the handler.

Two readers start one task per message under a capacity limiter, so at most
``max_concurrency`` messages are handled at once (in arrival order when it is
1), a busy agent lets its subscription buffer fill (and then drop, counted and
reported) instead of growing without bound, and an idle agent holds no worker
tasks. Both subscriptions are in the queue group ``agent.<id>``, so the
instances of a replicated agent share its messages and broadcasts (each reaches
one instance), and a lone instance gets them all.

Responses that answer an ``ask`` go to the asker and never reach the handler;
other responses reach the handler but are never answered (that would loop).

A message is a unit of work that fails alone (docs/PROTOCOL.md, section 6.2; what a
unit is, from its task to its outcome, is ``_unit.py``; the inbox carries it):

- a payload that does not decode is counted and reported (rate-limited), and
  its sender, if the payload names one (``from`` and ``id``), gets a
  ``bad_request`` error response; if it came with a NATS reply subject, the
  error goes there instead, as a message when it can be addressed and as a bare
  ``{"error": ...}`` object when it cannot;
- a handler that raises gets its sender an ``agent_error`` response; the inbox
  goes on;
- an answer that cannot be sent (above ``max_payload``, or not encodable) gets
  the sender a ``payload_too_large`` or ``unencodable`` error response instead.

Answers go to the NATS reply subject of the message when it has one (so an
``ask`` reaches the very instance that asked), else to ``agent.<from>.message``.

A message from the durable inbox (``_durable.py``) is the same unit of work, with
three differences: its reply subject is the ``Volta-Reply`` header; it is acked only
after its answer was sent and it was recorded as handled (redelivered copies are
skipped); and if the inbox stops while it runs it is not answered "interrupted" but
left to be delivered again.
Only :class:`~volta.actors.AgentFault` crashes the inbox (after answering), for
its supervisor to restart it; messages in flight then get ``agent_error
"interrupted: ..."``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from typing import TYPE_CHECKING, Any, TypeVar

import attrs
import trio

from volta.bus import (
    Bus,
    BusError,
    Delivery,
    PayloadTooLarge,
    PullOptions,
    PullSubscription,
    StreamDelivery,
    Subscription,
    SubscriptionStatistics,
    pull,
)
from volta.core import RateLimitedLog, TokenBucket, open_nursery
from volta.protocol import (
    AGENT_BROADCAST,
    BROADCAST,
    ErrorCode,
    Message,
    MessageType,
    PayloadEncodeError,
    ProtocolError,
    agent_inbox,
    agent_message,
    decode_json,
    decode_message,
    encode_json,
    encode_message,
    inbox_queue,
    is_answerable,
    message_attribution,
    usage_metadata,
)
from volta.supervisor import shutdown_scope

from ._calls import PendingAsks
from ._durable import (
    DurableInboxes,
    GroupCommit,
    Handled,
    MessageKey,
    message_key,
    reply_header,
)
from ._handler import AgentFault
from ._journal import Journal
from ._unit import Answered, Failed, Outcome, Units, Work

if TYPE_CHECKING:
    from ._agent import AgentSpec
    from ._context import AgentContext
    from ._handler import Handler

log = logging.getLogger("volta.actors.inbox")
T = TypeVar("T")

_REDELIVER_AFTER = 1.0  # seconds before a message the inbox could not finish comes again
ERROR_REPLIES_PER_SECOND = 100.0
"""Error responses to malformed or refused messages an inbox sends per second, at most
(on average)."""
ERROR_REPLY_BURST = 200.0
"""... and in one burst. Beyond that, malformed messages are only counted: a flood of
forged ``from`` fields must not turn the agent into a reflector."""


@attrs.define
class InboxRecord:
    """What outlives each run of an agent's inbox: its counts, and its subscriptions
    while it runs (their drops and backlog are read through it)."""

    malformed: int = 0
    """Payloads on the inbox that were not valid messages."""
    dropped_before: int = 0
    """Messages dropped by the inboxes that ran before this one."""
    subscriptions: tuple[Subscription, ...] = ()
    """The running inbox's subscriptions (direct, broadcast)."""
    handled: Handled | None = None
    """With a durable inbox: what it handled lately (kept across restarts of the inbox)."""
    records: int = 0
    """With a durable inbox: records written of what it handled (one per batch of acks)."""
    unrecorded: int = 0
    """... and records that could not be written (their messages come again, skipped)."""

    @property
    def dropped(self) -> int:
        """Messages the inbox dropped because it was full, since the agent started."""
        return self.dropped_before + sum(s.statistics().dropped for s in self.subscriptions)

    def statistics(self) -> tuple[SubscriptionStatistics, ...]:
        """The counters of the running inbox's subscriptions (none while it is down)."""
        return tuple(subscription.statistics() for subscription in self.subscriptions)

    def closed(self) -> None:
        """The inbox stopped: keep its drops."""
        self.dropped_before = self.dropped
        self.subscriptions = ()


class Inbox:
    """One agent's inbox child."""

    def __init__(
        self,
        spec: AgentSpec,
        handler: Handler,
        bus: Bus,
        context: AgentContext,
        units: Units,
        *,
        asks: PendingAsks,
        record: InboxRecord,
        announced: trio.Event,
        durable: DurableInboxes | None = None,
    ) -> None:
        """Args:
        spec: the agent.
        handler: what handles its messages.
        bus: its connection.
        context: what its handler is given.
        units: runs each message as a unit of work.
        asks: the agent's asks waiting for answers (responses go there first).
        record: where the inbox keeps its counts across restarts.
        announced: set once the agent has announced itself: a later start is a restart.
        durable: the node's inbox stream: direct messages come from the agent's
            durable consumer (None: from a core subscription).
        """
        self._spec = spec
        self._handler = handler
        self._bus = bus
        self._context = context
        self._units = units
        self._asks = asks
        self._record = record
        self._announced = announced
        self._durable = durable
        self._held: dict[MessageKey, StreamDelivery] = {}  # the messages being handled
        self._commits = (
            None
            if durable is None
            else GroupCommit(
                lambda keys: durable.record_handled(bus, spec.id, keys), counts=self._record
            )
        )
        if durable is not None and record.handled is None:
            record.handled = Handled(durable.spec.remember)
        self._error_replies = TokenBucket(ERROR_REPLIES_PER_SECOND, ERROR_REPLY_BURST)
        self._log = RateLimitedLog(log, bus.options.report_interval)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve messages until cancelled; raise an :class:`AgentFault` a handler raised."""
        spec = self._spec
        limiter = trio.CapacityLimiter(spec.max_concurrency)
        queue = inbox_queue(spec.id)
        buffer, max_bytes = spec.inbox_buffer, spec.inbox_max_bytes
        if self._record.handled is not None:
            self._record.handled.restart()  # (what an earlier run was at comes again)
        try:
            async with (
                self._bus.subscribe(
                    agent_message(spec.id), queue=queue, max_messages=buffer, max_bytes=max_bytes
                ) as direct,
                self._open_durable() if self._durable is not None else nullcontext() as messages,
                self._bus.subscribe(
                    AGENT_BROADCAST, queue=queue, max_messages=buffer, max_bytes=max_bytes
                ) as everyone,
                open_nursery() as nursery,
            ):
                self._record.subscriptions = (direct, everyone)
                nursery.start_soon(self._read, direct, limiter, nursery)
                nursery.start_soon(self._read, everyone, limiter, nursery)
                if messages is not None:
                    self._record.subscriptions += (messages.subscription,)
                    # (Bounded: the consumer delivers at most inbox_buffer unacked.)
                    send, receive = trio.open_memory_channel[
                        tuple[StreamDelivery, Message, str | None]
                    ](math.inf)
                    nursery.start_soon(self._read_durable, messages, send)
                    nursery.start_soon(self._dispatch, receive, limiter, nursery)
                    nursery.start_soon(self._keep_in_progress)
                if self._announced.is_set():
                    # A restart: ready means reachable, so wait until the server has the
                    # subscriptions. (At first start the announcer flushes for everyone.)
                    await self._bus.flush()
                task_status.started()
        finally:
            self._record.closed()

    def _open_durable(self) -> AbstractAsyncContextManager[PullSubscription]:
        """The agent's durable consumer, made sure of, read for the block."""
        durable = self._durable
        assert durable is not None
        spec = self._spec
        options = PullOptions(batch=min(256, spec.inbox_buffer), max_messages=spec.inbox_buffer)

        @asynccontextmanager
        async def reading() -> AsyncIterator[PullSubscription]:
            await durable.open_inbox(self._bus, spec.id, held=spec.inbox_buffer)
            async with pull(self._bus, durable.spec.stream, spec.id, options) as messages:
                yield messages

        return reading()

    async def _read_durable(
        self,
        messages: PullSubscription,
        waiting: trio.MemorySendChannel[tuple[StreamDelivery, Message, str | None]],
    ) -> None:
        """Direct messages from the durable consumer: each handled once, acked after its
        unit (module docstring of ``_durable.py``)."""
        handled = self._record.handled
        assert handled is not None
        async for held in messages:
            key = message_key(held)
            if held.redelivered and not handled.loaded and not handled.was_done(key):
                await self._load_records(handled)
            if not handled.begin(key):
                if handled.was_done(key):
                    await held.ack()  # its first ack was lost (a server restart)
                continue
            reply = reply_header(held.headers)
            try:
                message = decode_message(held.data)
            except ProtocolError as error:
                delivery = attrs.evolve(held.delivery, reply=reply)  # (not the ack subject)
                messages.subscription.malformed(delivery, error)
                await self._malformed(delivery, error)
                handled.end(key, done=True)
                await held.term()  # it will never decode: do not deliver it again
                continue
            if message.type is MessageType.RESPONSE and self._asks.resolve(message):
                handled.end(key, done=True)
                await held.ack()
                continue
            # Held from now on (in-progress signals cover it while it waits for a slot);
            # the dispatcher starts it when one is free, in arrival order.
            self._held[key] = held
            reply_to = reply if is_answerable(reply) else None
            waiting.send_nowait((held, message, reply_to))

    async def _dispatch(
        self,
        waiting: trio.MemoryReceiveChannel[tuple[StreamDelivery, Message, str | None]],
        limiter: trio.CapacityLimiter,
        nursery: trio.Nursery,
    ) -> None:
        """Start each stored message's unit as a slot frees up; when the inbox stops,
        leave those still waiting to be delivered again."""
        try:
            async for held, message, reply_to in waiting:
                token = object()
                await limiter.acquire_on_behalf_of(token)
                nursery.start_soon(self._handle_held, held, message, reply_to, limiter, token)
        finally:
            with shutdown_scope():
                for held, _message, _reply_to in _drain(waiting):
                    await self._settle(held, message_key(held), answered=False)
                    self._held.pop(message_key(held), None)

    async def _load_records(self, handled: Handled) -> None:
        """Read what earlier runs of this agent (anywhere) wrote down as handled."""
        assert self._durable is not None
        try:
            keys = await self._durable.handled_before(self._bus, self._spec.id)
        except BusError as error:
            self._log.warning(
                "records",
                "reads of handled records that failed",
                "agent %s could not read what it handled before: %s",
                self._spec.id,
                error,
            )
            return  # tried again at the next message delivered again
        for key in keys:
            handled.remember(key)
        handled.loaded = True

    async def _handle_held(
        self,
        held: StreamDelivery,
        message: Message,
        reply_to: str | None,
        limiter: trio.CapacityLimiter,
        token: object,
    ) -> None:
        """One stored message as a unit: acked once answered; left to be delivered
        again (to another instance, or after a restart) if the inbox stops first."""
        key = message_key(held)
        answered = False
        journal: Journal | None = None
        self._context.route_replies(message, reply_to)
        try:
            journal = await self._open_journal(message, key, read=held.redelivered)
            try:
                await self._run_unit(
                    message, reply_to, broadcast=False, stored=True, journal=journal
                )
            except AgentFault:
                answered = True  # answered, then the fault crashes the inbox
                raise
            answered = True
        finally:
            self._context.forget_replies(message)
            self._held.pop(key, None)
            try:
                with shutdown_scope():
                    await self._settle(held, key, answered=answered)
                    if answered and journal is not None:
                        await journal.close()
            finally:
                # (Only now: what may run again after a crash is bounded by max_concurrency.)
                limiter.release_on_behalf_of(token)

    async def _open_journal(
        self, message: Message, stored: MessageKey, *, read: bool
    ) -> Journal | None:
        """The journal of a stored message's unit (None if it cannot be read: the unit
        then does all its work again)."""
        assert self._durable is not None
        try:
            return await self._durable.journal(self._bus, self._spec.id, message, stored, read=read)
        except BusError as error:
            self._log.warning(
                "journal",
                "journals that could not be read",
                "agent %s could not read the journal of %s: %s",
                self._spec.id,
                message.id,
                error,
            )
            return None

    async def _settle(self, held: StreamDelivery, key: MessageKey, *, answered: bool) -> None:
        """Ack an answered message once it is written down as handled (one record for
        all the acks waiting together); have an unanswered one delivered again."""
        handled = self._record.handled
        assert handled is not None
        assert self._commits is not None
        handled.end(key, done=answered)
        try:
            if answered:
                await self._commits.commit(held)
            else:
                # Not at once: this inbox may still have pull requests open, and it is
                # stopping; by then they are gone and another instance gets it.
                await held.nak(delay=_REDELIVER_AFTER)
        except BusError as error:  # delivered again later, and skipped then
            self._log.info(
                "ack", "acks that could not be sent", "agent %s: %s", self._spec.id, error
            )

    async def _keep_in_progress(self) -> None:
        """Tell the server the messages being handled are still at work, every third of
        ``ack_wait``, so a long unit (a brain's turns) is not delivered again meanwhile."""
        assert self._durable is not None
        while True:
            await trio.sleep(self._durable.spec.ack_wait / 3)
            for held in list(self._held.values()):
                try:
                    await held.in_progress()
                except BusError:
                    break  # disconnected: the next round tries again

    async def _read(
        self,
        subscription: Subscription,
        limiter: trio.CapacityLimiter,
        nursery: trio.Nursery,
    ) -> None:
        own_id = self._spec.id
        broadcast = subscription.subject == AGENT_BROADCAST
        async for delivery, message in subscription.decoded(_message, on_malformed=self._malformed):
            if broadcast and message.sender == own_id:
                continue  # our own broadcast
            if broadcast and message.to != BROADCAST:
                # (A broadcast in disguise would be taken for a message to this agent.)
                wrong = ProtocolError(
                    "to", "a message on agent.broadcast is to 'broadcast'", what="message"
                )
                subscription.malformed(delivery, wrong)
                await self._refuse(delivery, (message.sender, message.id), wrong)
                continue
            if message.type is MessageType.RESPONSE and self._asks.resolve(message):
                continue
            token = object()
            await limiter.acquire_on_behalf_of(token)
            reply_to = delivery.reply if delivery.answerable else None
            nursery.start_soon(self._handle, message, reply_to, broadcast, limiter, token)

    async def _malformed(self, delivery: Delivery, error: ProtocolError) -> None:
        """A payload that is not a message: refused to whoever it names, if anyone."""
        try:
            document = decode_json(delivery.data)
        except ProtocolError:
            document = None
        await self._refuse(delivery, message_attribution(document), error)

    def _admit_error_reply(self) -> bool:
        return self._error_replies.take(trio.current_time())

    async def _refuse(
        self, delivery: Delivery, sender: tuple[str, str] | None, error: ProtocolError
    ) -> None:
        """Count a malformed message and, within limits, tell whoever can be told (the
        subscription has counted and reported it already)."""
        self._record.malformed += 1
        reply_to = delivery.reply if delivery.answerable else None
        if (sender is None and reply_to is None) or not self._admit_error_reply():
            return
        text = str(error)
        if sender is not None:
            refusal = Message(
                sender=self._spec.id,
                to=sender[0],
                message=f"error: {text}",
                type=MessageType.RESPONSE,
                metadata={
                    "in_reply_to": sender[1],
                    "error": {"code": ErrorCode.BAD_REQUEST.value, "message": text},
                },
            )
        try:
            if sender is not None:
                await self._publish_answer(sender[0], sender[1], reply_to, refusal)
            else:
                assert reply_to is not None
                error_only = {"error": {"code": ErrorCode.BAD_REQUEST.value, "message": text}}
                await self._bus.publish(reply_to, encode_json(error_only))
        except (BusError, PayloadEncodeError) as failure:  # the refusal goes unsaid
            self._log.info(
                "refuse",
                "refusals that could not be sent",
                "agent %s could not refuse a malformed message: %s",
                self._spec.id,
                failure,
            )

    async def _handle(
        self,
        message: Message,
        reply_to: str | None,
        broadcast: bool,
        limiter: trio.CapacityLimiter,
        token: object,
    ) -> None:
        self._context.route_replies(message, reply_to)
        try:
            await self._run_unit(message, reply_to, broadcast)
        finally:
            self._context.forget_replies(message)
            limiter.release_on_behalf_of(token)

    async def _run_unit(
        self,
        message: Message,
        reply_to: str | None,
        broadcast: bool,
        *,
        stored: bool = False,
        journal: Journal | None = None,
    ) -> None:
        """Handle one message as a unit of its task, and answer how it went.

        Args:
            stored: it came from the durable inbox: if the inbox stops first it is
                delivered again, so it is not answered "interrupted".
            journal: its journal (a stored message's).
        """
        work = Work.message(
            message.sender,
            message.id,
            message.message,
            message.metadata.get("task"),
            broadcast=broadcast,
        )

        async def handle() -> str | None:
            answer = await self._handler.on_message(message, self._context)
            if answer is not None and not isinstance(answer, str):
                raise TypeError(f"on_message returned {type(answer).__name__}, not str or None")
            return answer

        async def interrupted(failure: Failed) -> None:
            if not stored:  # (a stored message is delivered again: its answer comes then)
                await self._fail(message, reply_to, failure)

        outcome = await self._units.run(
            work,
            handle,
            interrupted=interrupted,
            admit_refusal=self._admit_error_reply,
            journal=journal,
        )
        await self._send(message, reply_to, outcome)
        if isinstance(outcome, Failed) and outcome.fault is not None:
            raise outcome.fault

    async def _send(self, message: Message, reply_to: str | None, outcome: Outcome) -> None:
        """Answer the sender: the answer, or the failure (never a response, nor a
        refusal beyond the error answers allowed)."""
        if isinstance(outcome, Failed):
            if not outcome.quiet:
                await self._fail(message, reply_to, outcome)
        elif outcome.value is not None and message.type is not MessageType.RESPONSE:
            await self._answer(message, reply_to, outcome)

    async def _answer(self, message: Message, reply_to: str | None, answered: Answered) -> None:
        metadata = None if answered.spent is None else {"usage": usage_metadata(answered.spent)}
        response = message.reply(answered.value, sender=self._spec.id, metadata=metadata)
        try:
            await self._publish_answer(message.sender, message.id, reply_to, response)
        except PayloadTooLarge as error:
            await self._fail(
                message,
                reply_to,
                Failed(
                    ErrorCode.PAYLOAD_TOO_LARGE,
                    f"the answer is {error.size} bytes, above the server's max_payload of "
                    f"{error.max_payload} bytes",
                    answered.spent,
                ),
            )
        except PayloadEncodeError as error:
            await self._fail(
                message, reply_to, Failed(ErrorCode.UNENCODABLE, str(error), answered.spent)
            )
        except BusError as error:
            self._log.info(
                "answer",
                "answers that could not be sent",
                "agent %s could not answer %s: %s",
                self._spec.id,
                message.id,
                error,
            )

    async def _publish_answer(
        self, sender: str, question_id: str, reply_to: str | None, response: Message
    ) -> None:
        """Send an answer where its asker waits: the reply subject it named, else its
        durable inbox if it has one (stored once, however often the question is
        answered), else ``agent.<sender>.message``.

        Raises:
            BusError, PayloadEncodeError: it could not be sent.
        """
        if reply_to is not None:
            await self._bus.publish(reply_to, response)
        elif self._durable is None or not await self._durable.has_inbox(self._bus, sender):
            await self._bus.publish(agent_message(sender), response)
        else:
            # Stored before the question is acked; sent again (same id) until it is.
            await self._durable.publisher(self._bus).publish(
                agent_inbox(sender),
                encode_message(response),
                f"answer.{self._spec.id}.{sender}.{question_id}",
            )

    async def _fail(self, message: Message, reply_to: str | None, failure: Failed) -> None:
        """Tell the sender its message failed (bounded; never raises)."""
        if message.type is MessageType.RESPONSE:
            return
        metadata: dict[str, Any] = {
            "error": {"code": failure.code.value, "message": failure.message}
        }
        if failure.spent is not None:
            metadata["usage"] = usage_metadata(failure.spent)
        response = message.reply(
            f"error: {failure.message}", sender=self._spec.id, metadata=metadata
        )
        with shutdown_scope():
            try:
                await self._publish_answer(message.sender, message.id, reply_to, response)
            except (BusError, PayloadEncodeError) as error:
                self._log.info(
                    "fail",
                    "error answers that could not be sent",
                    "could not report the failure to %s: %s",
                    message.sender,
                    error,
                )


def _drain(channel: trio.MemoryReceiveChannel[T]) -> list[T]:
    """What the channel holds now."""
    items: list[T] = []
    while True:
        try:
            items.append(channel.receive_nowait())
        except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
            return items


def _message(delivery: Delivery) -> Message:
    return decode_message(delivery.data)
