"""The inbox: ``agent.<id>.message`` and ``agent.broadcast`` into the handler.

Two readers start one task per message under a capacity limiter, so at most
``max_concurrency`` messages are handled at once (in arrival order when it is
1), a busy agent lets its subscription buffer fill (and then drop, counted and
reported) instead of growing without bound, and an idle agent holds no worker
tasks. Both subscriptions are in the queue group ``agent.<id>``, so the
instances of a replicated agent share its messages and broadcasts (each reaches
one instance), and a lone instance gets them all.

Responses that answer an ``ask`` go to the asker and never reach the handler;
other responses reach the handler but are never answered (that would loop).

A message is a unit of work that fails alone (docs/PROTOCOL.md, section 6.2):

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
Only :class:`~volta.actors.AgentFault` crashes the inbox (after answering), for
its supervisor to restart it; messages in flight then get ``agent_error
"interrupted: ..."``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import trio

from volta.bus import BusError, Delivery, PayloadTooLarge, Subscription
from volta.core import RateLimitedLog, TokenBucket, open_nursery
from volta.protocol import (
    AGENT_BROADCAST,
    BROADCAST,
    ErrorCode,
    Message,
    MessageType,
    PayloadEncodeError,
    ProgressKind,
    ProtocolError,
    TaskRefused,
    agent_message,
    decode_json,
    decode_message,
    encode_json,
    inbox_queue,
    message_attribution,
    usage_metadata,
)
from volta.supervisor import shutdown_scope

from ._handler import AgentFault, HandlerError
from ._task import Ledger, TaskScope
from ._unit import describe_protocol_error, running_unit, task_of, unit_context

if TYPE_CHECKING:
    from volta.bus import Bus

    from ._agent import AgentState
    from ._context import AgentContext

log = logging.getLogger("volta.actors.inbox")

ERROR_REPLIES_PER_SECOND = 100.0
"""Error responses to malformed or refused messages an inbox sends per second, at most
(on average)."""
ERROR_REPLY_BURST = 200.0
"""... and in one burst. Beyond that, malformed messages are only counted: a flood of
forged ``from`` fields must not turn the agent into a reflector."""


class Inbox:
    """One agent's inbox child."""

    def __init__(self, state: AgentState, bus: Bus, context: AgentContext) -> None:
        self._state = state
        self._bus = bus
        self._context = context
        self._error_replies = TokenBucket(ERROR_REPLIES_PER_SECOND, ERROR_REPLY_BURST)
        self._log = RateLimitedLog(log, bus.options.report_interval)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve messages until cancelled; raise an :class:`AgentFault` a handler raised."""
        spec = self._state.spec
        limiter = trio.CapacityLimiter(spec.max_concurrency)
        queue = inbox_queue(spec.id)
        buffer, max_bytes = spec.inbox_buffer, spec.inbox_max_bytes
        try:
            async with (
                self._bus.subscribe(
                    agent_message(spec.id), queue=queue, max_messages=buffer, max_bytes=max_bytes
                ) as direct,
                self._bus.subscribe(
                    AGENT_BROADCAST, queue=queue, max_messages=buffer, max_bytes=max_bytes
                ) as everyone,
                open_nursery() as nursery,
            ):
                self._state.inbox_subscriptions = (direct, everyone)
                nursery.start_soon(self._read, direct, limiter, nursery)
                nursery.start_soon(self._read, everyone, limiter, nursery)
                if self._state.announced:
                    # A restart: ready means reachable, so wait until the server has the
                    # subscriptions. (At first start the announcer flushes for everyone.)
                    await self._bus.flush()
                task_status.started()
        finally:
            self._state.inbox_closed()

    async def _read(
        self,
        subscription: Subscription,
        limiter: trio.CapacityLimiter,
        nursery: trio.Nursery,
    ) -> None:
        own_id = self._state.spec.id
        asks = self._state.asks
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
            if message.type is MessageType.RESPONSE and asks.resolve(message):
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

    async def _refuse(
        self, delivery: Delivery, sender: tuple[str, str] | None, error: ProtocolError
    ) -> None:
        """Count a malformed message and, within limits, tell whoever can be told (the
        subscription has counted and reported it already)."""
        state = self._state
        state.malformed += 1
        reply_to = delivery.reply if delivery.answerable else None
        if (sender is None and reply_to is None) or not self._error_replies.take(
            trio.current_time()
        ):
            return
        text = str(error)
        payload: bytes | Message
        if sender is not None:
            payload = Message(
                sender=state.spec.id,
                to=sender[0],
                message=f"error: {text}",
                type=MessageType.RESPONSE,
                metadata={
                    "in_reply_to": sender[1],
                    "error": {"code": ErrorCode.BAD_REQUEST.value, "message": text},
                },
            )
            subject = reply_to or agent_message(sender[0])
        else:
            assert reply_to is not None
            payload = encode_json({"error": {"code": ErrorCode.BAD_REQUEST.value, "message": text}})
            subject = reply_to
        try:
            await self._bus.publish(subject, payload)
        except (BusError, PayloadEncodeError) as failure:  # the refusal goes unsaid
            self._log.info(
                "refuse",
                "refusals that could not be sent",
                "agent %s could not refuse a malformed message: %s",
                state.spec.id,
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
        state = self._state
        state.messages_in_flight += 1
        self._context.route_replies(message, reply_to)
        try:
            await self._run_unit(message, reply_to, broadcast)
        finally:
            self._context.forget_replies(message)
            state.messages_in_flight -= 1
            limiter.release_on_behalf_of(token)

    async def _run_unit(self, message: Message, reply_to: str | None, broadcast: bool) -> None:
        """Handle one message as a unit of its task (see ``_unit.py``)."""
        state, spec = self._state, self._state.spec
        try:
            task, from_wire = unit_context(
                task_of(message.metadata),
                message.sender,
                timeout=spec.task_timeout,
                budget=spec.task_budget,
                broadcast=broadcast,
            )
        except ProtocolError as error:
            state.malformed += 1
            if self._error_replies.take(trio.current_time()):
                await self._fail(
                    message, reply_to, ErrorCode.BAD_REQUEST, describe_protocol_error(error)
                )
            return
        refusal = task.refusal(spec.id) if from_wire else None
        if refusal is not None:
            state.refused += 1
            # Refusals share the budget of error replies with malformed messages: a flood
            # of forged tasks "from" a victim must not turn the agent into a reflector.
            if self._error_replies.take(trio.current_time()):
                scope = TaskScope(task, spec.id, Ledger(task.budget))
                await self._context.progress(ProgressKind.REFUSED, refusal.message, scope=scope)
                await self._fail(message, reply_to, refusal.code, refusal.message)
            return
        traced = from_wire or spec.trace
        answer: str | None = None
        crash: AgentFault | None = None
        failure: tuple[ErrorCode, str] | None = None
        with running_unit(task, spec.id, state.tasks, traced=traced) as unit:
            await self._context.progress(ProgressKind.STARTED, message.message[:200])
            try:
                answer = await spec.handler.on_message(message, self._context)
                if answer is not None and not isinstance(answer, str):
                    raise TypeError(f"on_message returned {type(answer).__name__}, not str or None")
            except TaskRefused as error:
                failure = (error.code, error.message)
            except HandlerError as error:
                state.handler_errors += 1
                failure = (error.code, error.message)
            except Exception as error:
                state.handler_errors += 1
                self._log.warning(
                    "handler",
                    "handler failures",
                    "agent %s: handler failed on %s: %r",
                    spec.id,
                    message.id,
                    error,
                )
                failure = (ErrorCode.AGENT_ERROR, repr(error))
                if isinstance(error, AgentFault):
                    crash = error
            except BaseException:
                # A cancellation (perhaps grouped by a nursery in the handler) that is not
                # the unit's own deadline or cancel: the inbox is stopping.
                if not unit.cancel_scope.cancel_called:
                    await self._fail(
                        message,
                        reply_to,
                        ErrorCode.AGENT_ERROR,
                        "interrupted: the inbox stopped",
                        unit.scope,
                    )
                raise
        failure = unit.cut_short() or failure
        if failure is not None:
            kind = (
                ProgressKind.CANCELLED if failure[0] is ErrorCode.CANCELLED else ProgressKind.FAILED
            )
            await self._context.progress(kind, failure[1], scope=unit.scope)
            await self._fail(message, reply_to, failure[0], failure[1], unit.scope)
            if crash is not None:
                raise crash
            return
        state.handled += 1
        await self._context.progress(ProgressKind.ANSWERED, (answer or "")[:200], scope=unit.scope)
        if answer is not None and message.type is not MessageType.RESPONSE:
            await self._answer(message, reply_to, answer, unit.scope if from_wire else None)

    async def _answer(
        self, message: Message, reply_to: str | None, answer: str, scope: TaskScope | None
    ) -> None:
        metadata = usage_metadata(scope.ledger.spent) if scope is not None else None
        response = message.reply(
            answer, sender=self._state.spec.id, metadata={"usage": metadata} if metadata else None
        )
        try:
            await self._bus.publish(reply_to or agent_message(message.sender), response)
        except PayloadTooLarge as error:
            await self._fail(
                message,
                reply_to,
                ErrorCode.PAYLOAD_TOO_LARGE,
                f"the answer is {error.size} bytes, above the server's max_payload of "
                f"{error.max_payload} bytes",
                scope,
            )
        except PayloadEncodeError as error:
            await self._fail(message, reply_to, ErrorCode.UNENCODABLE, str(error), scope)
        except BusError as error:
            self._log.info(
                "answer",
                "answers that could not be sent",
                "agent %s could not answer %s: %s",
                self._state.spec.id,
                message.id,
                error,
            )

    async def _fail(
        self,
        message: Message,
        reply_to: str | None,
        code: ErrorCode,
        text: str,
        scope: TaskScope | None = None,
    ) -> None:
        """Tell the sender its message failed (bounded; never raises)."""
        if message.type is MessageType.RESPONSE:
            return
        text = text if len(text) <= 1000 else f"{text[:997]}..."
        metadata: dict[str, Any] = {"error": {"code": code.value, "message": text}}
        if scope is not None:
            metadata["usage"] = usage_metadata(scope.ledger.spent)
        response = message.reply(f"error: {text}", sender=self._state.spec.id, metadata=metadata)
        with shutdown_scope():
            try:
                await self._bus.publish(reply_to or agent_message(message.sender), response)
            except (BusError, PayloadEncodeError) as error:
                self._log.info(
                    "fail",
                    "error answers that could not be sent",
                    "could not report the failure to %s: %s",
                    message.sender,
                    error,
                )


def _message(delivery: Delivery) -> Message:
    return decode_message(delivery.data)
