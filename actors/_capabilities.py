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
from typing import TYPE_CHECKING

import attrs
import trio

from volta.bus import BusError, Delivery, Subscription
from volta.core import RateLimitedLog, open_nursery
from volta.protocol import (
    CAPABILITY_REQUEST_CODEC,
    CapabilityReply,
    CapabilityRequest,
    ErrorCode,
    PayloadEncodeError,
    ProtocolError,
    TaskRefused,
    anonymous_caller,
    capability_endpoint,
    encode_capability_reply,
)
from volta.supervisor import shutdown_scope

from ._handler import AgentFault, HandlerError
from ._unit import running_unit, unit_context

if TYPE_CHECKING:
    from volta.bus import Bus

    from ._agent import AgentState
    from ._context import AgentContext

log = logging.getLogger("volta.actors.capabilities")


class CapabilityResponder:
    """One agent's capability responder child."""

    def __init__(self, state: AgentState, bus: Bus, context: AgentContext) -> None:
        self._state = state
        self._bus = bus
        self._context = context
        self._log = RateLimitedLog(log, bus.options.report_interval)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled; raise an :class:`AgentFault` a handler raised (after
        replying)."""
        spec = self._state.spec
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
                if self._state.announced:  # a restart: ready means reachable
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
        state = self._state
        spec = state.spec
        state.calls_in_flight += 1
        served = delivery.subject.rsplit(".", 1)[-1]
        counters = state.endpoint(served)
        started = time.perf_counter_ns()
        try:
            try:
                request = CAPABILITY_REQUEST_CODEC.decode(delivery.data)
            except ProtocolError as error:
                await self._answer(
                    delivery, CapabilityReply.failure(ErrorCode.BAD_REQUEST, str(error), spec.id)
                )
                counters.record(time.perf_counter_ns() - started, str(error))
                return
            if request.capability != served:
                await self._answer(
                    delivery,
                    CapabilityReply.failure(
                        ErrorCode.BAD_REQUEST,
                        f"asked for {request.capability!r} on the endpoint of {served!r}",
                        spec.id,
                    ),
                )
                counters.record(time.perf_counter_ns() - started, "capability mismatch")
                return
            state.capability_calls += 1
            reply, crash = await self._run_handler(request)
            await self._answer(delivery, reply)  # answer first: the caller must not wait
            counters.record(
                time.perf_counter_ns() - started,
                None
                if reply.ok
                else f"{(reply.code or ErrorCode.AGENT_ERROR).value}: {reply.message}",
            )
            if crash is not None:
                raise crash
        except BaseException as error:
            if not isinstance(error, Exception):  # cancelled, perhaps as a group
                await self._answer(
                    delivery,
                    CapabilityReply.failure(
                        ErrorCode.AGENT_ERROR,
                        "interrupted: the capability responder is restarting",
                        spec.id,
                    ),
                )
            raise
        finally:
            state.calls_in_flight -= 1
            limiter.release_on_behalf_of(token)

    async def _run_handler(
        self, request: CapabilityRequest
    ) -> tuple[CapabilityReply, Exception | None]:
        """The reply, and the exception to crash with after replying (if any).

        The call is a unit of the caller's task (``_unit.py``): refused if the task
        forbids it, cut short by its deadline or a ``task.cancel``, and its reply
        says how many tokens it spent.
        """
        spec = self._state.spec
        try:
            task, from_wire = unit_context(
                request.task,
                anonymous_caller(),
                timeout=spec.task_timeout,
                budget=spec.task_budget,
            )
        except ProtocolError as error:
            return CapabilityReply.failure(ErrorCode.BAD_REQUEST, str(error), spec.id), None
        refusal = task.refusal(spec.id) if from_wire else None
        if refusal is not None:
            return CapabilityReply.failure(refusal.code, refusal.message, spec.id), None
        with running_unit(task, spec.id, self._state.tasks, traced=from_wire) as unit:
            reply, crash = await self._bounded_call(request)
        tokens = unit.scope.ledger.spent if from_wire else None
        cut = unit.cut_short()
        if cut is not None:
            return CapabilityReply.failure(cut[0], cut[1], spec.id, tokens), None
        return attrs.evolve(reply, tokens=tokens), crash

    async def _bounded_call(
        self, request: CapabilityRequest
    ) -> tuple[CapabilityReply, Exception | None]:
        spec = self._state.spec
        with trio.move_on_after(spec.capability_timeout):
            try:
                result = await spec.handler.on_capability(
                    request.capability, request.input, self._context
                )
            except HandlerError as error:
                return CapabilityReply.failure(error.code, error.message, spec.id), None
            except TaskRefused as error:
                return CapabilityReply.failure(error.code, error.message, spec.id), None
            except Exception as error:
                self._state.handler_errors += 1
                self._log.warning(
                    request.capability,
                    "capability failures",
                    "agent %s: capability %s failed: %r",
                    spec.id,
                    request.capability,
                    error,
                )
                crash = error if isinstance(error, AgentFault) else None
                return CapabilityReply.failure(ErrorCode.AGENT_ERROR, repr(error), spec.id), crash
            return CapabilityReply.success(result, spec.id), None
        timeout = f"no result within {spec.capability_timeout:g} s"
        return CapabilityReply.failure(ErrorCode.TIMEOUT, timeout, spec.id), None

    async def _answer(self, delivery: Delivery, reply: CapabilityReply) -> None:
        """Send the one reply of a call; if it cannot be sent, a small error reply."""
        await send_capability_reply(
            self._bus, delivery, reply, self._log, agent=self._state.spec.id
        )


async def send_capability_reply(
    bus: Bus,
    delivery: Delivery,
    reply: CapabilityReply,
    log: RateLimitedLog,
    *,
    agent: str | None,
    what: str = "the result",
) -> CapabilityReply:
    """Send the one reply to a capability request (the agents' and the router's).

    A reply that cannot be sent as it is (not encodable, above ``max_payload``)
    becomes a small error reply (``unencodable``, ``payload_too_large``) naming
    ``what`` could not be sent. Bounded and shielded; never raises.

    Returns:
        The reply that was sent (or that would have been, if nobody waits).
    """
    if not delivery.answerable:
        return reply
    try:
        payload = encode_capability_reply(reply)
    except PayloadEncodeError as error:
        reply = CapabilityReply.failure(
            ErrorCode.UNENCODABLE, f"{what} cannot be sent as JSON: {error}", agent
        )
        payload = encode_capability_reply(reply)
    if len(payload) > bus.max_payload:
        reply = CapabilityReply.failure(
            ErrorCode.PAYLOAD_TOO_LARGE,
            f"{what} is {len(payload)} bytes, above the server's max_payload of "
            f"{bus.max_payload} bytes",
            agent,
        )
        payload = encode_capability_reply(reply)
    with shutdown_scope():
        try:
            await bus.respond(delivery, payload)
        except BusError as error:
            log.info(
                "answer",
                "answers that could not be sent",
                "could not answer a capability request: %s",
                error,
            )
    return reply
