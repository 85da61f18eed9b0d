"""The inbox: ``agent.<id>.message`` and ``agent.broadcast`` into the handler.

Two readers start one task per message under a capacity limiter, so at most
``max_concurrency`` messages are handled at once (in arrival order when it is
1), a busy agent lets its subscription buffer fill (and then drop, counted)
instead of growing without bound, and an idle agent holds no worker tasks.

Responses that answer an ``ask`` go to the asker and never reach the handler;
other responses reach the handler but are never answered (that would loop).

A handler that raises crashes the inbox, the OTP way: the sender first gets a
response carrying ``metadata.error`` (so an ``ask`` fails at once instead of
timing out), messages in flight on other workers get the same, then the
exception propagates and the agent's supervisor restarts the inbox.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio

from volta._nursery import open_nursery
from volta.bus import (
    AGENT_BROADCAST,
    BusError,
    Message,
    MessageSubscription,
    MessageType,
    agent_message,
)
from volta.supervisor import shutdown_scope

if TYPE_CHECKING:
    from volta.bus import Bus

    from ._agent import AgentState
    from ._context import AgentContext

log = logging.getLogger("volta.actors.inbox")


class Inbox:
    """One agent's inbox child."""

    def __init__(self, state: AgentState, bus: Bus, context: AgentContext) -> None:
        self._state = state
        self._bus = bus
        self._context = context

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve messages until cancelled; raise what a handler raised."""
        spec = self._state.spec
        limiter = trio.CapacityLimiter(spec.max_concurrency)
        async with (
            self._bus.subscribe_messages(
                agent_message(spec.id), max_messages=spec.inbox_buffer
            ) as direct,
            self._bus.subscribe_messages(
                AGENT_BROADCAST, max_messages=spec.inbox_buffer
            ) as everyone,
            open_nursery() as nursery,
        ):
            nursery.start_soon(self._read, direct, limiter, nursery)
            nursery.start_soon(self._read, everyone, limiter, nursery)
            if self._state.announced:
                # A restart: ready means reachable, so wait until the server has the
                # subscriptions. (At first start the announcer flushes for everyone.)
                await self._bus.flush()
            task_status.started()

    async def _read(
        self,
        subscription: MessageSubscription,
        limiter: trio.CapacityLimiter,
        nursery: trio.Nursery,
    ) -> None:
        own_id = self._state.spec.id
        asks = self._state.asks
        async for message in subscription:
            if message.sender == own_id and subscription.subject == AGENT_BROADCAST:
                continue  # our own broadcast
            if message.type is MessageType.RESPONSE and asks.resolve(message):
                continue
            token = object()
            await limiter.acquire_on_behalf_of(token)
            nursery.start_soon(self._handle, message, limiter, token)

    async def _handle(self, message: Message, limiter: trio.CapacityLimiter, token: object) -> None:
        state = self._state
        state.messages_in_flight += 1
        try:
            answer = await self._context_handle(message)
        except trio.Cancelled:
            await self._report_failure(
                message, "agent_error", "interrupted: the inbox stopped while handling it"
            )
            raise
        except Exception as error:
            state.handler_errors += 1
            log.warning("agent %s: handler failed on %s: %r", state.spec.id, message.id, error)
            await self._report_failure(message, "agent_error", repr(error))
            raise
        finally:
            state.messages_in_flight -= 1
            limiter.release_on_behalf_of(token)
        state.handled += 1
        if answer is not None and message.type is not MessageType.RESPONSE:
            await self._context.reply(message, answer)

    async def _context_handle(self, message: Message) -> str | None:
        return await self._state.spec.handler.on_message(message, self._context)

    async def _report_failure(self, message: Message, code: str, text: str) -> None:
        """Tell the sender its message failed (bounded; never raises)."""
        if message.type is MessageType.RESPONSE:
            return
        response = message.reply(
            f"error: {text}",
            sender=self._state.spec.id,
            metadata={"error": {"code": code, "message": text}},
        )
        with shutdown_scope():
            try:
                await self._bus.publish(agent_message(message.sender), response)
            except BusError as error:
                log.info("could not report the failure to %s: %s", message.sender, error)
