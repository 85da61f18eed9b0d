"""What a handler can do: the agent API (send, reply, broadcast, ask, list_agents,
request_capability, progress). A Claude brain offers exactly these as tools.

Everything sent on behalf of a unit of work carries its task context
(``actors/_unit.py``): ``ask`` and ``request_capability`` refuse calls the task
forbids (loops, depth, a passed deadline, a spent budget) before making them,
wait no longer than the task's deadline, hand the callee an allowance out of the
unit's budget and take back what it did not spend, and cancel the work they
started if they are cancelled or time out.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping
from typing import Any

import trio

from volta.bus import Bus, BusError, NoResponders, RequestTimeout
from volta.core import open_nursery
from volta.protocol import (
    AGENT_BROADCAST,
    BROADCAST,
    CANCEL_CODEC,
    CAPABILITY_REQUEST,
    CAPABILITY_REQUEST_CODEC,
    MCP_LIST_AGENTS,
    PROGRESS_CODEC,
    TASK_CANCEL,
    TASK_CODEC,
    AgentInfo,
    AgentPage,
    CancelRequest,
    CapabilityReply,
    CapabilityRequest,
    ErrorCode,
    ListQuery,
    Message,
    MessageType,
    PayloadEncodeError,
    Presence,
    ProgressEvent,
    ProgressKind,
    ProtocolError,
    TaskContext,
    TaskRefused,
    agent_inbox,
    agent_message,
    decode_agent_page,
    decode_capability_reply,
    decode_message,
    encode_list_query,
    encode_message,
    progress_subject,
    spent_from,
    validate_own_agent_id,
)
from volta.supervisor import shutdown_scope

from ._calls import AskFailed, AskTimeout, CapabilityFailed, PendingAsks
from ._durable import REPLY_HEADER, DurableInboxes
from ._unit import CURRENT_TASK, Budget, Reservation, TaskScope

__all__ = ["AgentContext", "AskFailed", "AskTimeout", "CapabilityFailed", "PendingAsks"]

# The router answers "timeout" just before the caller would give up by itself.
_ROUTER_MARGIN = 1.0
# The request half of an ask outlives the ask's own deadline by this much, so the
# ask's cancel scope, not the request's timeout, decides when it has timed out.
_ASK_MARGIN = 1.0
# A caller waits this much past the task's deadline, so that the callee's own
# "deadline_exceeded" answer (which says where the time went) reaches it. Inside an
# agent's unit this never matters: the unit itself is cut short at the deadline.
DEADLINE_GRACE = 1.0
MAX_LISTING = 1_000_000
"""Most agents ``list_agents`` takes from the directories (a bound against a fake one)."""


class AgentContext:
    """The agent as its handler sees it."""

    def __init__(
        self,
        agent_id: str,
        name: str,
        capabilities: tuple[str, ...],
        bus: Bus,
        asks: PendingAsks,
        request_timeout: float,
        *,
        durable: DurableInboxes | None = None,
    ) -> None:
        self._agent_id = agent_id
        self._durable = durable
        self._name = name
        self._capabilities = capabilities
        self._bus = bus
        self._asks = asks
        self._request_timeout = request_timeout
        # The messages being handled that came with a NATS reply subject, keyed by the
        # object itself (not its id: a message anyone sends may reuse an id in flight).
        self._reply_subjects: dict[int, tuple[Message, str]] = {}

    @property
    def agent_id(self) -> str:
        """This agent's id."""
        return self._agent_id

    @property
    def name(self) -> str:
        """This agent's name."""
        return self._name

    @property
    def capabilities(self) -> tuple[str, ...]:
        """The capabilities this agent serves."""
        return self._capabilities

    @property
    def task(self) -> TaskScope | None:
        """The unit of work running now (None outside one)."""
        return CURRENT_TASK.get()

    # --- the task of outgoing calls --------------------------------------------------

    def _delegate(
        self, to: str | None, budget: int | None
    ) -> tuple[TaskContext | None, Reservation]:
        """The task context for a call to ``to`` (None: a capability), and the allowance
        reserved for it out of the unit's budget (``budget`` tokens, else a share of what
        is left: ``_unit.py``). Outside a unit: no context, and nothing held back.

        Raises:
            InvalidSubject: ``to`` is not a valid agent id.
            TaskRefused: the task forbids the call (loop, depth, deadline, budget).
        """
        if to is not None:
            validate_own_agent_id(to)  # InvalidSubject, before anything is built or sent
        scope = CURRENT_TASK.get()
        if scope is None:
            return None, Budget(None).reserve(budget)
        refusal = scope.context.call_refusal(scope.chain, to)
        if refusal is not None:
            raise refusal
        reservation = scope.budget.reserve(budget)
        return scope.context.delegate(self._agent_id, reservation.amount), reservation

    def _bounded(self, timeout: float) -> float:
        """``timeout``, cut to what is left of the task's time (and a grace)."""
        scope = CURRENT_TASK.get()
        remaining = scope.context.remaining() if scope is not None else None
        if remaining is None:
            return timeout
        return max(0.0, min(timeout, remaining + DEADLINE_GRACE))

    async def cancel(self, task: TaskContext, reason: str) -> None:
        """Cancel, on every agent it reached, the unit ``task`` started (and its delegates).

        Bounded, shielded, never raises: it is what cancelled code calls on its way out.
        """
        request = CancelRequest(task.id, task.span, reason)
        # If it cannot be sent, the work still stops at its deadline.
        with shutdown_scope(), contextlib.suppress(BusError, PayloadEncodeError):
            await self._bus.publish(TASK_CANCEL, CANCEL_CODEC.encode(request))

    async def progress(
        self, kind: ProgressKind, detail: str = "", *, scope: TaskScope | None = None
    ) -> None:
        """Publish a progress event of the running unit (or of ``scope``); nothing
        outside a traced unit."""
        scope = scope or CURRENT_TASK.get()
        if scope is None or not scope.traced:
            return
        context = scope.context
        event = ProgressEvent(
            task=context.id,
            span=context.span,
            parent=context.parent_span,
            agent=self._agent_id,
            kind=kind,
            detail=detail,
            tokens=scope.budget.spent,
        )
        # Progress is for watchers: losing one never fails the work.
        with contextlib.suppress(BusError, PayloadEncodeError):
            await self._bus.publish(progress_subject(context.id), PROGRESS_CODEC.encode(event))

    # --- messages ---------------------------------------------------------------------

    def _stamp(
        self, metadata: Mapping[str, Any] | None, task: TaskContext | None
    ) -> dict[str, Any]:
        stamped = dict(metadata or {})
        if task is not None:
            stamped["task"] = TASK_CODEC.to_dict(task)
        return stamped

    async def send(
        self,
        to: str,
        text: str,
        *,
        type: MessageType = MessageType.TEXT,
        metadata: Mapping[str, Any] | None = None,
        budget: int | None = None,
    ) -> Message:
        """Send a message to one agent (``agent.<to>.message``).

        Inside a unit of work the message carries its task, with an allowance
        (``budget`` tokens, or a share of what is left) that is spent for good:
        nobody answers a send to give it back.

        Raises:
            InvalidSubject: ``to`` is not a valid agent id.
            TaskRefused: the task forbids it (loop, depth, deadline, budget).
        """
        task, reservation = self._delegate(to, budget)
        # Nobody answers a send, so nobody gives its allowance back: it counts as spent
        # at once (else the unit's answer would report less than it handed out).
        reservation.forfeit()
        message = Message(
            sender=self._agent_id,
            to=to,
            message=text,
            type=type,
            metadata=self._stamp(metadata, task),
        )
        await self._deliver(to, message)
        return message

    async def _deliver(self, to: str, message: Message) -> None:
        """A message into ``to``'s inbox: through the inbox stream when ``to`` has a
        durable inbox (stored once, its PubAck awaited), else on core NATS."""
        subject = agent_message(to)
        if self._durable is not None and await self._durable.has_inbox(self._bus, to):
            publisher = self._durable.publisher(self._bus)
            await publisher.publish(agent_inbox(to), encode_message(message), message.id)
        else:
            await self._bus.publish(subject, message)

    async def _request(self, to: str, question: Message, timeout: float) -> bytes:
        """Send a question and wait for the answer (its payload) on this connection's
        reply subject; through the inbox stream (the reply subject in its header) when
        ``to`` has a durable inbox.

        Raises:
            RequestTimeout: no answer in time.
            NoResponders: nobody listens on ``to``'s inbox (core NATS only).
        """
        subject = agent_message(to)
        if self._durable is None or not await self._durable.has_inbox(self._bus, to):
            return (await self._bus.request(subject, question, timeout=timeout)).data
        subject = agent_inbox(to)
        reply_subject, pending = self._bus.expect_reply(subject)
        try:
            publisher = self._durable.publisher(self._bus)
            await publisher.publish(
                subject,
                encode_message(question),
                question.id,
                headers={REPLY_HEADER: reply_subject},
            )
        except BaseException:
            pending.discard()
            raise
        return (await pending.reply(timeout)).data

    def route_replies(self, message: Message, reply_subject: str | None) -> None:
        """Send answers to ``message`` to ``reply_subject`` while it is handled (the
        inbox calls this). Only that very message is routed: another one with the same
        id (a copy, or one sent to steal its answers) goes to its sender's subject."""
        if reply_subject:
            self._reply_subjects[id(message)] = (message, reply_subject)

    def forget_replies(self, message: Message) -> None:
        """The message is handled: answers go to the sender's subject again."""
        self._reply_subjects.pop(id(message), None)

    def reply_subject(self, question: Message) -> str:
        """Where an answer to ``question`` goes: the NATS reply subject it came with,
        if it is being handled now, else ``agent.<from>.message``."""
        routed = self._reply_subjects.get(id(question))
        if routed is not None and routed[0] is question:
            return routed[1]
        return agent_message(question.sender)

    async def reply(self, question: Message, text: str, **metadata: Any) -> Message:
        """Send a response to ``question`` (``in_reply_to`` is set).

        Raises:
            PayloadTooLarge: the response is above the server's ``max_payload``.
            PayloadEncodeError: the text or metadata cannot be sent as JSON.
        """
        response = question.reply(text, sender=self._agent_id, metadata=metadata)
        await self._bus.publish(self.reply_subject(question), response)
        return response

    async def broadcast(
        self,
        text: str,
        *,
        type: MessageType = MessageType.TEXT,
        metadata: Mapping[str, Any] | None = None,
    ) -> Message:
        """Send a message to every agent (``agent.broadcast``).

        Inside a unit of work it carries the task with a budget of 0: a broadcast
        informs, it does not hand out work (no budget survives a fan-out to an
        unknown number of agents).
        """
        scope = CURRENT_TASK.get()
        task = scope.context.delegate(self._agent_id, 0) if scope is not None else None
        message = Message(
            sender=self._agent_id,
            to=BROADCAST,
            message=text,
            type=type,
            metadata=self._stamp(metadata, task),
        )
        await self._bus.publish(AGENT_BROADCAST, message)
        return message

    async def ask(
        self,
        to: str,
        text: str,
        *,
        timeout: float | None = None,
        metadata: Mapping[str, Any] | None = None,
        budget: int | None = None,
    ) -> Message:
        """Send a query and wait for the response that answers it.

        The query goes out as a NATS request, so the answer comes back to this
        very instance on the connection's reply subject; an answer published on
        ``agent.<own id>.message`` (peers that ignore reply subjects) counts too.
        Inside a unit of work, the wait is cut to the task's deadline, the callee
        gets ``budget`` tokens (default: half of what is left), and if the ask is
        cancelled or times out, the work it started is cancelled everywhere.

        Raises:
            AskTimeout: no response within ``timeout`` (default: the request timeout).
            AskFailed: the agent failed on the question (the code it gave), nobody
                listens on ``agent.<to>.message`` (``no_agent``, at once), or the answer
                was not a message (``agent_error``).
            TaskRefused: the task forbids it (loop, depth, deadline, budget); nothing sent.
            InvalidSubject: ``to`` is not a valid agent id.
        """
        timeout = self._request_timeout if timeout is None else timeout
        task, reservation = self._delegate(to, budget)
        timeout = self._bounded(timeout)
        question = Message(
            sender=self._agent_id,
            to=to,
            message=text,
            type=MessageType.QUERY,
            metadata=self._stamp(metadata, task),
        )
        if task is not None:
            await self.progress(ProgressKind.ASKED, f"asked {to} (span {task.span})")
        try:
            response = await self._ask(to, question, timeout)
        except AskFailed as failure:
            reservation.settle(failure.spent)
            raise
        except BaseException:
            # Timed out or cancelled: the callee may still be at work. Stop it, and
            # count its whole allowance as spent (what it used is unknown).
            if task is not None:
                await self.cancel(task, f"{self._agent_id} stopped waiting for {to}")
            reservation.forfeit()
            raise
        reservation.settle(spent_from(response.metadata))
        return response

    async def _ask(self, to: str, question: Message, timeout: float) -> Message:
        agent_message(to)  # raises InvalidSubject before anything is registered
        answered, responses = self._asks.open(question.id)

        async def by_request() -> None:
            try:
                answer = await self._request(to, question, timeout + _ASK_MARGIN)
            except NoResponders:
                raise AskFailed(to, ErrorCode.NO_AGENT, f"no agent {to!r} is online") from None
            except RequestTimeout:
                return  # the ask's own deadline ends it
            try:
                response = decode_message(answer)
            except ProtocolError as error:
                raise AskFailed(
                    to, ErrorCode.AGENT_ERROR, f"the answer is not a message: {error}"
                ) from None
            if response.type is not MessageType.RESPONSE or response.in_reply_to != question.id:
                # (PROTOCOL.md 7: an answer is a response naming the question.)
                raise AskFailed(
                    to,
                    ErrorCode.AGENT_ERROR,
                    f"the answer is not a response to the question (a {response.type.value} "
                    "message, in_reply_to "
                    f"{response.in_reply_to[:64] if response.in_reply_to else 'missing'})",
                )
            responses.append(response)
            answered.set()

        try:
            with trio.move_on_after(timeout):
                async with open_nursery() as nursery:
                    nursery.start_soon(by_request)
                    await answered.wait()
                    nursery.cancel_scope.cancel()
        finally:
            self._asks.close(question.id)
        if not responses:
            raise AskTimeout(to, timeout)
        response = responses[0]
        error = response.metadata.get("error")
        if isinstance(error, Mapping):
            raise AskFailed.from_wire(
                to,
                str(error.get("code") or "agent_error"),
                str(error.get("message") or ""),
                spent_from(response.metadata),
            )
        return response

    # --- discovery and capabilities -----------------------------------------------------

    async def list_agents(
        self,
        *,
        capability: str | None = None,
        status: Presence | None = None,
        timeout: float | None = None,
    ) -> tuple[AgentInfo, ...]:
        """The agents the directory knows, across all processes (``mcp.list_agents``).

        Follows the reply's pages until the last one, so any number of agents fits.

        Args:
            capability: only agents that serve it (and are not offline).
            status: only agents in this state.
            timeout: for each page (default: the request timeout; within a unit,
                at most what is left of the task's time).

        Raises:
            RequestTimeout: no directory answered in time, or the pages together took
                longer than the timeout.
            NoResponders: no directory runs anywhere.
            ProtocolError: a reply was malformed, or the directory refused the query.
        """
        timeout = self._bounded(self._request_timeout if timeout is None else timeout)
        agents: list[AgentInfo] = []
        offset: int | None = 0
        # The whole listing, not each page, gets the timeout: a directory that keeps
        # sending pages (a fake one, say) cannot keep the caller for ever.
        with trio.move_on_after(timeout + _ROUTER_MARGIN) as scope:
            while offset is not None:
                query = ListQuery(offset=offset, capability=capability, status=status)
                reply = await self._bus.request(
                    MCP_LIST_AGENTS, encode_list_query(query), timeout=timeout
                )
                page = decode_agent_page(reply.data)
                next_offset = page.next_offset
                if next_offset is not None and next_offset <= offset:
                    raise ProtocolError("next_offset", f"does not advance past {offset}")
                agents += page.agents
                if len(agents) > MAX_LISTING:
                    raise ProtocolError("agents", f"more than {MAX_LISTING:,} agents listed")
                offset = next_offset
        if scope.cancelled_caught:
            raise RequestTimeout(MCP_LIST_AGENTS, timeout)
        return tuple(agents)

    async def list_agents_page(
        self,
        *,
        offset: int = 0,
        limit: int,
        capability: str | None = None,
        status: Presence | None = None,
        timeout: float | None = None,
    ) -> AgentPage:
        """One page of the listing: at most ``limit`` agents from ``offset`` on (one
        request, whatever the directory's size; the brain's ``list_agents`` tool).

        Raises:
            RequestTimeout, NoResponders, ProtocolError: as for :meth:`list_agents`.
        """
        timeout = self._bounded(self._request_timeout if timeout is None else timeout)
        query = ListQuery(offset=offset, limit=limit, capability=capability, status=status)
        reply = await self._bus.request(MCP_LIST_AGENTS, encode_list_query(query), timeout=timeout)
        page = decode_agent_page(reply.data)
        if len(page.agents) > limit:  # a directory that ignores the limit: keep to it here
            return AgentPage(page.agents[:limit], offset + limit, page.total)
        return page

    async def request_capability(
        self,
        capability: str,
        input: Any = None,
        *,
        timeout: float | None = None,
        budget: int | None = None,
    ) -> Any:
        """Run a capability on some agent that has it (``capability.request``).

        Inside a unit of work it carries the task like ``ask`` does: the wait is
        the task's remaining time at most, and the allowance comes back minus what
        the call spent.

        Returns:
            The result.

        Raises:
            CapabilityFailed: the reply was an error (``no_capability`` at once when
                no online agent has it; ``timeout``; ``agent_error``; ...), or no
                router answered (``unavailable``).
            TaskRefused: the task forbids it (deadline, budget); nothing sent.
        """
        timeout = self._request_timeout if timeout is None else timeout
        task, reservation = self._delegate(None, budget)
        timeout = self._bounded(timeout)
        if not math.isfinite(timeout) or timeout <= 0:
            reservation.settle(0)
            raise TaskRefused(ErrorCode.DEADLINE_EXCEEDED, "the task's deadline has passed")
        request = CapabilityRequest(
            capability=capability,
            input=input,
            timeout=timeout,
            task=TASK_CODEC.to_dict(task) if task is not None else None,
        )
        try:
            answer = await self._request_capability(request, timeout)
        except BaseException:
            if task is not None:
                await self.cancel(task, f"{self._agent_id} stopped waiting for {capability}")
            reservation.forfeit()
            raise
        reservation.settle(answer.tokens or 0)
        if not answer.ok:
            raise CapabilityFailed(
                capability, answer.code or ErrorCode.AGENT_ERROR, answer.message, answer.agent
            )
        return answer.result

    async def _request_capability(
        self, request: CapabilityRequest, timeout: float
    ) -> CapabilityReply:
        capability = request.capability
        try:
            reply = await self._bus.request(
                CAPABILITY_REQUEST,
                CAPABILITY_REQUEST_CODEC.encode(request),
                timeout=timeout + _ROUTER_MARGIN,
            )
        except NoResponders:
            raise CapabilityFailed(
                capability, ErrorCode.UNAVAILABLE, "no capability router is running"
            ) from None
        except RequestTimeout:
            raise CapabilityFailed(
                capability, ErrorCode.TIMEOUT, f"no reply within {timeout:g} s"
            ) from None
        try:
            return decode_capability_reply(reply.data)
        except ProtocolError as error:
            return CapabilityReply.failure(ErrorCode.AGENT_ERROR, f"malformed reply: {error}")
