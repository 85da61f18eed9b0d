"""The public client: what the CLI, the tests and any other program use to talk to agents.

    async with open_client("nats://127.0.0.1:4222") as client:
        print([agent.id for agent in await client.agents()])
        answer = await client.ask("coordinator", "plan a launch", on_progress=print)

A client is not an agent: it has an id of its own (``cli-<hex>`` by default) for the
``from`` of what it sends, but it announces nothing and serves nothing. Each
``ask`` starts a task (``volta.protocol.TaskContext``) with the client first in its chain, a
deadline and optionally a token budget; ``on_progress`` receives the task's
progress events from every agent it reaches; and if the ask is cancelled (Ctrl-C
in ``volta ask``), the work it started is cancelled on every one of those agents.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from volta.bus import Bus, BusOptions, Delivery, Subscription, open_bus
from volta.core import open_nursery
from volta.protocol import (
    DEFAULT_MAX_DEPTH,
    MAX_BUDGET,
    MAX_CHAIN,
    MAX_THREAD_ID,
    PROGRESS_CODEC,
    AgentInfo,
    Message,
    Presence,
    ProgressEvent,
    TaskContext,
    agent_message,
    decode_message,
    progress_subject,
)

from ._calls import PendingAsks
from ._context import DEADLINE_GRACE, AgentContext
from ._durable import DurableInboxes, DurableSpec
from ._unit import CURRENT_TASK, Budget, TaskScope

ProgressCallback = Callable[[ProgressEvent], Any]
"""Receives each progress event of an ask's task (sync; keep it quick)."""


def new_client_id() -> str:
    """A fresh client id: ``cli-`` and 8 hex digits."""
    return f"cli-{uuid.uuid4().hex[:8]}"


class Client:
    """Talks to agents over the bus. Made by :func:`open_client`."""

    def __init__(
        self,
        bus: Bus,
        client_id: str,
        timeout: float,
        durable: DurableInboxes | None = None,
    ) -> None:
        self._bus = bus
        self._asks = PendingAsks()
        self._timeout = timeout
        self._context = AgentContext(
            client_id, client_id, (), bus, self._asks, timeout, durable=durable
        )

    @property
    def id(self) -> str:
        """The client's id (the ``from`` of what it sends)."""
        return self._context.agent_id

    @property
    def bus(self) -> Bus:
        """The connection it uses."""
        return self._bus

    async def agents(
        self, *, capability: str | None = None, status: Presence | None = None
    ) -> tuple[AgentInfo, ...]:
        """The agents the directory knows (every page).

        Raises:
            NoResponders: no Volta node runs on these servers.
            RequestTimeout: no directory answered in time.
            ProtocolError: a listing was malformed.
        """
        return await self._context.list_agents(capability=capability, status=status)

    async def send(self, to: str, text: str) -> Message:
        """Send a message (fire and forget); it starts no task of the client's.

        Raises:
            InvalidSubject: ``to`` is not a valid agent id.
        """
        return await self._context.send(to, text)

    async def ask(
        self,
        to: str,
        text: str,
        *,
        timeout: float | None = None,
        budget: int | None = None,
        on_progress: ProgressCallback | None = None,
        thread: str | None = None,
        max_depth: int | None = None,
    ) -> Message:
        """Ask an agent and wait for its answer, as a new task.

        Args:
            to: the agent.
            text: the question.
            timeout: the task's deadline, in seconds (default: the client's timeout).
            budget: tokens the whole task may spend (None: the agents' own limits).
            on_progress: receives the task's progress events while it runs.
            thread: ``metadata.thread_id``, for agents that keep a conversation per thread.
            max_depth: agents the task may pass through (default 8, the client counted).

        Raises:
            AskFailed: the agent answered with an error (the code it gave).
            AskTimeout: no answer before the deadline (the work is cancelled).
            InvalidSubject: ``to`` is not a valid agent id.
            ValueError: ``timeout``, ``budget``, ``thread`` or ``max_depth`` is out of
                range (what the protocol accepts: docs/PROTOCOL.md 5.10).
        """
        timeout = self._timeout if timeout is None else timeout
        _check_ask(budget, thread, max_depth)
        root = TaskContext.new(
            timeout=timeout, budget=budget, max_depth=max_depth or DEFAULT_MAX_DEPTH
        )
        metadata = {"thread_id": thread} if thread else None
        async with AsyncExitStack() as stack:
            if on_progress is not None:
                events = await stack.enter_async_context(
                    self._bus.subscribe(progress_subject(root.id))
                )
                await self._bus.flush()
                nursery = await stack.enter_async_context(open_nursery())
                nursery.start_soon(_forward_progress, events, on_progress)
                stack.callback(nursery.cancel_scope.cancel)
            # The client's own part of the task: no deadline of its own (the agents
            # answer deadline_exceeded themselves), nothing to cancel, not traced.
            token = CURRENT_TASK.set(TaskScope(root, self.id, Budget(budget), traced=False))
            try:
                return await self._context.ask(
                    to, text, timeout=timeout + DEADLINE_GRACE, metadata=metadata, budget=budget
                )
            finally:
                CURRENT_TASK.reset(token)
        raise AssertionError("unreachable")  # pragma: no cover

    async def capability(
        self, name: str, input: Any = None, *, timeout: float | None = None
    ) -> Any:
        """Run a capability on some agent that has it.

        Raises:
            CapabilityFailed: with the protocol error code.
        """
        return await self._context.request_capability(name, input, timeout=timeout)

    async def _route_responses(self, inbox: Subscription) -> None:
        # Answers from peers that ignore reply subjects come to agent.<client id>.message.
        async for _delivery, message in inbox.decoded(_message):
            self._asks.resolve(message)


def _check_ask(budget: int | None, thread: str | None, max_depth: int | None) -> None:
    if budget is not None and (
        isinstance(budget, bool) or not isinstance(budget, int) or not 0 <= budget <= MAX_BUDGET
    ):
        raise ValueError(f"budget must be an integer from 0 to {MAX_BUDGET:,}")
    if thread is not None and not 1 <= len(thread) <= MAX_THREAD_ID:
        raise ValueError(f"thread must be 1 to {MAX_THREAD_ID} characters")
    if max_depth is not None and not 1 <= max_depth <= MAX_CHAIN:
        raise ValueError(f"max_depth must be from 1 to {MAX_CHAIN}")


def _message(delivery: Delivery) -> Message:
    return decode_message(delivery.data)


def _progress(delivery: Delivery) -> ProgressEvent:
    return PROGRESS_CODEC.decode(delivery.data)


async def _forward_progress(events: Subscription, on_progress: ProgressCallback) -> None:
    async for _delivery, event in events.decoded(_progress):
        on_progress(event)


@asynccontextmanager
async def open_client(
    options: BusOptions | str | Bus,
    *,
    client_id: str | None = None,
    timeout: float = 60.0,
    durable: DurableSpec | None = None,
) -> AsyncIterator[Client]:
    """A client for the duration of the block.

    What it sends to an agent with a durable inbox goes through the inbox stream
    (stored once, its PubAck awaited), when the stream exists.

    Args:
        options: where NATS is (options or URL), or an open bus to use.
        client_id: its id (default ``cli-<8 hex digits>``).
        timeout: default deadline of asks and wait of other requests, in seconds.
        durable: the nodes' ``durable`` settings (the stream's name; ``mode: off``
            sends on core NATS only).

    Raises:
        ConnectFailed: NATS could not be reached.
    """
    async with AsyncExitStack() as stack:
        bus = (
            options
            if isinstance(options, Bus)
            else await stack.enter_async_context(open_bus(options))
        )
        inboxes = await DurableInboxes.find(bus, durable or DurableSpec())
        client = Client(bus, client_id or new_client_id(), timeout, inboxes)
        inbox = await stack.enter_async_context(bus.subscribe(agent_message(client.id)))
        nursery = await stack.enter_async_context(open_nursery())
        nursery.start_soon(client._route_responses, inbox)
        try:
            yield client
        finally:
            nursery.cancel_scope.cancel()
