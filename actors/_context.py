"""What a handler can do: the agent API (send, broadcast, ask, list_agents,
request_capability). A later Claude brain offers exactly these as tools.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import trio

from volta._nursery import open_nursery
from volta.bus import (
    AGENT_BROADCAST,
    BROADCAST,
    CAPABILITY_REQUEST,
    MCP_LIST_AGENTS,
    Bus,
    Message,
    MessageDecodeError,
    MessageType,
    NoResponders,
    RequestTimeout,
    agent_message,
    decode_message,
)

from ._protocol import (
    AgentInfo,
    CapabilityReply,
    CapabilityRequest,
    ErrorCode,
    ListQuery,
    Presence,
    ProtocolError,
    decode_agent_page,
)

# The router answers "timeout" just before the caller would give up by itself.
_ROUTER_MARGIN = 1.0
# The request half of an ask outlives the ask's own deadline by this much, so the
# ask's cancel scope, not the request's timeout, decides when it has timed out.
_ASK_MARGIN = 1.0


class AskTimeout(TimeoutError):
    """No response to an ``ask`` arrived in time."""

    def __init__(self, agent: str, timeout: float) -> None:
        super().__init__(f"agent {agent!r} did not respond within {timeout:g} s")
        self.agent = agent
        self.timeout = timeout


class AskFailed(RuntimeError):
    """An ``ask`` got an error instead of an answer.

    Attributes:
        agent: the agent asked.
        code: the error code (``agent_error``, ``bad_request``, ``no_agent``, ...;
            codes from the answering agent are passed through as they are).
        message: words about it.
    """

    def __init__(self, agent: str, code: str, message: str) -> None:
        super().__init__(f"agent {agent!r} failed: {code}: {message}")
        self.agent = agent
        self.code = code
        self.message = message


class CapabilityFailed(RuntimeError):
    """A capability request got an error reply.

    Attributes:
        capability: the capability requested.
        code: the protocol error code.
        message: words about it.
        agent: the agent that failed, if one was involved.
    """

    def __init__(
        self, capability: str, code: ErrorCode, message: str, agent: str | None = None
    ) -> None:
        where = f" (agent {agent!r})" if agent else ""
        super().__init__(f"capability {capability!r} failed{where}: {code.value}: {message}")
        self.capability = capability
        self.code = code
        self.message = message
        self.agent = agent


class PendingAsks:
    """Responses awaited by ``ask``, keyed by the id of the question."""

    def __init__(self) -> None:
        self._waiting: dict[str, tuple[trio.Event, list[Message]]] = {}

    def __len__(self) -> int:
        return len(self._waiting)

    def open(self, question_id: str) -> tuple[trio.Event, list[Message]]:
        """Register a question; the list receives the response."""
        slot: tuple[trio.Event, list[Message]] = (trio.Event(), [])
        self._waiting[question_id] = slot
        return slot

    def close(self, question_id: str) -> None:
        """Forget a question (answered, timed out or cancelled)."""
        self._waiting.pop(question_id, None)

    def resolve(self, response: Message) -> bool:
        """Hand a response to its asker; False if nobody waits for it."""
        key = response.in_reply_to
        slot = self._waiting.pop(key, None) if key is not None else None
        if slot is None:
            return False
        slot[1].append(response)
        slot[0].set()
        return True


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
    ) -> None:
        self._agent_id = agent_id
        self._name = name
        self._capabilities = capabilities
        self._bus = bus
        self._asks = asks
        self._request_timeout = request_timeout
        # message id -> the NATS reply subject it came with, while it is handled
        self._reply_subjects: dict[str, str] = {}

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

    async def send(
        self,
        to: str,
        text: str,
        *,
        type: MessageType = MessageType.TEXT,
        metadata: Mapping[str, Any] | None = None,
    ) -> Message:
        """Send a message to one agent (``agent.<to>.message``).

        Raises:
            InvalidSubject: ``to`` is not a valid agent id.
        """
        message = Message(
            sender=self._agent_id,
            to=to,
            message=text,
            type=type,
            metadata=metadata or {},
        )
        await self._bus.publish(agent_message(to), message)
        return message

    def route_replies(self, message_id: str, reply_subject: str | None) -> None:
        """Send answers to ``message_id`` to ``reply_subject`` (the inbox calls this)."""
        if reply_subject:
            self._reply_subjects[message_id] = reply_subject

    def forget_replies(self, message_id: str) -> None:
        """The message is handled: answers go to the sender's subject again."""
        self._reply_subjects.pop(message_id, None)

    def reply_subject(self, question: Message) -> str:
        """Where an answer to ``question`` goes: the NATS reply subject it came with,
        if it is being handled now, else ``agent.<from>.message``."""
        return self._reply_subjects.get(question.id) or agent_message(question.sender)

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
        """Send a message to every agent (``agent.broadcast``)."""
        message = Message(
            sender=self._agent_id, to=BROADCAST, message=text, type=type, metadata=metadata or {}
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
    ) -> Message:
        """Send a query and wait for the response that answers it.

        The query goes out as a NATS request, so the answer comes back to this
        very instance on the connection's reply subject; an answer published on
        ``agent.<own id>.message`` (peers that ignore reply subjects) counts too.

        Raises:
            AskTimeout: no response within ``timeout`` (default: the request timeout).
            AskFailed: the agent's handler failed on the question (the code it
                gave), nobody listens on ``agent.<to>.message`` (``no_agent``, at
                once), or the answer was not a message (``agent_error``).
            InvalidSubject: ``to`` is not a valid agent id.
        """
        timeout = self._request_timeout if timeout is None else timeout
        question = Message(
            sender=self._agent_id,
            to=to,
            message=text,
            type=MessageType.QUERY,
            metadata=metadata or {},
        )
        subject = agent_message(to)
        answered, responses = self._asks.open(question.id)

        async def by_request() -> None:
            try:
                delivery = await self._bus.request(subject, question, timeout=timeout + _ASK_MARGIN)
            except NoResponders:
                raise AskFailed(
                    to, ErrorCode.NO_AGENT.value, f"no agent {to!r} is online"
                ) from None
            except RequestTimeout:
                return  # the ask's own deadline ends it
            try:
                responses.append(decode_message(delivery.data))
            except MessageDecodeError as error:
                raise AskFailed(
                    to, ErrorCode.AGENT_ERROR.value, f"the answer is not a message: {error}"
                ) from None
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
            raise AskFailed(
                to, str(error.get("code") or "agent_error"), str(error.get("message") or "")
            )
        return response

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
            timeout: for each page (default: the request timeout).

        Raises:
            RequestTimeout: no directory answered in time.
            NoResponders: no directory runs anywhere.
            ProtocolError: a reply was malformed, or the directory refused the query.
        """
        timeout = self._request_timeout if timeout is None else timeout
        agents: list[AgentInfo] = []
        offset: int | None = 0
        while offset is not None:
            query = ListQuery(offset=offset, capability=capability, status=status)
            reply = await self._bus.request(MCP_LIST_AGENTS, query.to_json(), timeout=timeout)
            page, next_offset, _total = decode_agent_page(reply.data)
            if next_offset is not None and next_offset <= offset:
                raise ProtocolError("next_offset", f"does not advance past {offset}")
            agents += page
            offset = next_offset
        return tuple(agents)

    async def request_capability(
        self, capability: str, input: Any = None, *, timeout: float | None = None
    ) -> Any:
        """Run a capability on some agent that has it (``capability.request``).

        Returns:
            The result.

        Raises:
            CapabilityFailed: the reply was an error (``no_capability`` at once when
                no online agent has it; ``timeout``; ``agent_error``; ...), or no
                router answered (``unavailable``).
        """
        timeout = self._request_timeout if timeout is None else timeout
        request = CapabilityRequest(capability=capability, input=input, timeout=timeout)
        try:
            reply = await self._bus.request(
                CAPABILITY_REQUEST, request.to_json(), timeout=timeout + _ROUTER_MARGIN
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
            answer = CapabilityReply.from_json(reply.data)
        except ProtocolError as error:
            raise CapabilityFailed(
                capability, ErrorCode.AGENT_ERROR, f"malformed reply: {error}"
            ) from None
        if not answer.ok:
            raise CapabilityFailed(
                capability, answer.code or ErrorCode.AGENT_ERROR, answer.message, answer.agent
            )
        return answer.result
