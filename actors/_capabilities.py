"""The capability responder: serves an agent's capabilities to the router.

Each capability is served on ``capability.invoke.<name>`` in a queue group of
the same name, so every invocation reaches exactly one of the agents that have
it and the load is spread among them. Calls run concurrently, at most
``max_concurrency`` at a time, each bounded by ``capability_timeout``.

Every call gets exactly one reply: the result, ``timeout``, ``bad_request``,
``agent_error``, or, when the result cannot be sent, ``payload_too_large`` or
``unencodable``. A call is a unit of work that fails alone: a handler exception
is ``agent_error`` for its caller, counted and logged, and the responder goes
on. Only :class:`~volta.actors.AgentFault` crashes the responder (after
replying); calls in flight on it are answered ``agent_error: interrupted``.
"""

from __future__ import annotations

import logging
import time
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

import attrs
import trio

from volta.bus import Bus, BusError, Delivery, Subscription
from volta.core import RateLimitedLog, open_nursery
from volta.protocol import (
    CAPABILITY_REQUEST_CODEC,
    CapabilityReply,
    ErrorCode,
    ProtocolError,
    anonymous_caller,
    capability_endpoint,
    sendable_capability_reply,
)
from volta.supervisor import shutdown_scope

from ._unit import Answered, Failed, Outcome, Units, Work

if TYPE_CHECKING:
    from ._agent import AgentSpec
    from ._context import AgentContext
    from ._handler import Handler

log = logging.getLogger("volta.actors.capabilities")


@attrs.define
class EndpointCounters:
    """Counters of one capability endpoint (reported by the service API)."""

    requests: int = 0
    errors: int = 0
    processing_ns: int = 0
    last_error: str = ""

    def record(self, elapsed_ns: int, error: str | None) -> None:
        """Count one answered call."""
        self.requests += 1
        self.processing_ns += elapsed_ns
        if error is not None:
            self.errors += 1
            self.last_error = error


@attrs.define
class Endpoints:
    """What outlives each run of an agent's capability responder: its counts."""

    counters: dict[str, EndpointCounters] = attrs.Factory(dict)
    """Per capability."""
    malformed: int = 0
    """Requests that did not decode, or asked for another capability than the endpoint's."""

    def of(self, capability: str) -> EndpointCounters:
        """The counters of one capability endpoint."""
        counters = self.counters.get(capability)
        if counters is None:
            counters = self.counters[capability] = EndpointCounters()
        return counters


class CapabilityResponder:
    """One agent's capability responder child."""

    def __init__(
        self,
        spec: AgentSpec,
        handler: Handler,
        bus: Bus,
        context: AgentContext,
        units: Units,
        *,
        endpoints: Endpoints,
        announced: trio.Event,
    ) -> None:
        """Args:
        spec: the agent.
        handler: what runs its capabilities.
        bus: its connection.
        context: what its handler is given.
        units: runs each call as a unit of work.
        endpoints: where the responder keeps its counts across restarts.
        announced: set once the agent has announced itself: a later start is a restart.
        """
        self._spec = spec
        self._handler = handler
        self._bus = bus
        self._context = context
        self._units = units
        self._endpoints = endpoints
        self._announced = announced
        self._log = RateLimitedLog(log, bus.options.report_interval)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled; raise an :class:`AgentFault` a handler raised (after
        replying)."""
        spec = self._spec
        limiter = trio.CapacityLimiter(spec.max_concurrency)
        async with AsyncExitStack() as stack:
            subscriptions = []
            for name in spec.capabilities:
                endpoint = capability_endpoint(name)
                subscription = await stack.enter_async_context(
                    self._bus.subscribe(endpoint, queue=endpoint)
                )
                subscriptions.append(subscription)
            async with open_nursery() as nursery:
                for subscription in subscriptions:
                    nursery.start_soon(self._serve, subscription, limiter, nursery)
                if self._announced.is_set():  # a restart: ready means reachable
                    await self._bus.flush()
                task_status.started()

    async def _serve(
        self, subscription: Subscription, limiter: trio.CapacityLimiter, nursery: trio.Nursery
    ) -> None:
        async for delivery in subscription:
            token = object()
            await limiter.acquire_on_behalf_of(token)
            nursery.start_soon(self._call, delivery, limiter, token)

    async def _call(self, delivery: Delivery, limiter: trio.CapacityLimiter, token: object) -> None:
        agent = self._spec.id
        served = delivery.subject.rsplit(".", 1)[-1]
        counters = self._endpoints.of(served)
        started = time.perf_counter_ns()
        replied = False

        async def reply(answer: CapabilityReply) -> None:
            nonlocal replied
            replied = True
            await self._answer(delivery, answer)
            error = None if answer.ok else f"{answer.code}: {answer.message}"
            counters.record(time.perf_counter_ns() - started, error)

        try:
            try:
                request = CAPABILITY_REQUEST_CODEC.decode(delivery.data)
            except ProtocolError as error:
                self._endpoints.malformed += 1
                await reply(CapabilityReply.failure(ErrorCode.BAD_REQUEST, str(error), agent))
                return
            if request.capability != served:
                self._endpoints.malformed += 1
                await reply(
                    CapabilityReply.failure(
                        ErrorCode.BAD_REQUEST,
                        f"asked for {request.capability!r} on the endpoint of {served!r}",
                        agent,
                    )
                )
                return
            work = Work.capability(anonymous_caller(), request.capability, request.task)

            async def handle() -> Any:
                return await self._handler.on_capability(
                    request.capability, request.input, self._context
                )

            async def interrupted(failure: Failed) -> None:
                await reply(_reply(failure, agent))

            outcome = await self._units.run(
                work, handle, interrupted=interrupted, timeout=self._spec.capability_timeout
            )
            await reply(_reply(outcome, agent))  # answer first: the caller must not wait
            if isinstance(outcome, Failed) and outcome.fault is not None:
                raise outcome.fault
        except BaseException as error:
            if not isinstance(error, Exception) and not replied:  # cancelled, maybe grouped
                words = "interrupted: the capability responder is restarting"
                await reply(CapabilityReply.failure(ErrorCode.AGENT_ERROR, words, agent))
            raise
        finally:
            limiter.release_on_behalf_of(token)

    async def _answer(self, delivery: Delivery, reply: CapabilityReply) -> None:
        """Send the one reply of a call; if it cannot be sent, a small error reply.
        Bounded and shielded; never raises."""
        if not delivery.answerable:
            return
        _sent, payload = sendable_capability_reply(
            reply, self._bus.max_payload, agent=self._spec.id
        )
        with shutdown_scope():
            try:
                await self._bus.respond(delivery, payload)
            except BusError as error:
                self._log.info(
                    "answer",
                    "answers that could not be sent",
                    "could not answer a capability request: %s",
                    error,
                )


def _reply(outcome: Outcome, agent: str) -> CapabilityReply:
    """The reply that says how a call's unit ended."""
    if isinstance(outcome, Answered):
        return CapabilityReply.success(outcome.value, agent, outcome.spent)
    return CapabilityReply.failure(outcome.code, outcome.message, agent, outcome.spent)
