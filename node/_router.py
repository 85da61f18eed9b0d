"""Capability routing: ``capability.request`` to an agent that has the skill.

The router is a node child in the ``volta.router`` queue group, so each request
is routed once however many nodes run. It answers ``no_capability`` at once
when its directory knows no online agent with the capability (no waiting for a
timeout); otherwise it forwards to ``capability.invoke.<name>``, where the
agents that have it share the load through their queue group, and relays the
one reply, or answers ``timeout``. A malformed request gets ``bad_request``.
Requests are routed concurrently, each waiting for its agent at most
``max_timeout`` whatever its ``timeout`` says. No request ever waits behind
others: with ``max_concurrency`` requests in flight, or ``max_per_capability``
of one capability (a slow or silent agent), the next is answered ``busy`` at once;
in a flood, with ``2 * max_concurrency`` requests taken and not answered yet, the
next is answered ``busy`` as it comes in, without a task (counted in ``shed``).

Every request with a reply subject gets exactly one reply, and each fails alone:
a failure while routing one (a bug, an agent reply that cannot be re-sent) is
answered ``agent_error``, counted and logged, and never disturbs the others in
flight. A request without a reply subject is not routed (nobody would hear the
result); it is counted in ``ignored``.
"""

from __future__ import annotations

import logging

import attrs
import trio

from volta.actors import DEFAULT_REQUEST_TIMEOUT
from volta.bus import Bus, BusError, Delivery, NoResponders, PayloadTooLarge, RequestTimeout
from volta.core import RateLimitedLog, open_nursery, validators
from volta.protocol import (
    CAPABILITY_REQUEST,
    CAPABILITY_REQUEST_CODEC,
    ROUTER_QUEUE,
    CapabilityReply,
    CapabilityRequest,
    ErrorCode,
    ProtocolError,
    capability_endpoint,
    decode_capability_reply,
    sendable_capability_reply,
)
from volta.supervisor import shutdown_scope

from ._directory import Directory

log = logging.getLogger("volta.node.router")

_SETTLE_POLL = 0.02  # how often a request waiting for a settling directory looks again


@attrs.frozen(kw_only=True)
class RouterSpec:
    """Bounds of a node's capability router (``router`` in YAML)."""

    max_timeout: float = attrs.field(default=300.0, validator=validators.number(gt=0))
    """Longest wait for an agent, whatever a request's ``timeout`` says."""
    max_concurrency: int = attrs.field(default=256, validator=validators.integer(ge=1))
    """Requests in flight to agents at once; the next is answered ``busy`` (and past
    twice as many pending, shed as they come in)."""
    max_per_capability: int = attrs.field(default=64, validator=validators.integer(ge=1))
    """Calls of one capability in flight at once (a slow or silent agent)."""


class CapabilityRouter:
    """The node child that routes capability requests."""

    def __init__(
        self,
        directory: Directory,
        bus: Bus,
        *,
        default_timeout: float = DEFAULT_REQUEST_TIMEOUT,
        spec: RouterSpec | None = None,
    ) -> None:
        """Args:
        directory: who has which capability (the node's).
        bus: the connection.
        default_timeout: the wait for a request that names none (the node's
            ``request_timeout``).
        spec: its bounds.
        """
        spec = spec or RouterSpec()
        self._directory = directory
        self._bus = bus
        self._default_timeout = default_timeout
        self._max_timeout = spec.max_timeout
        self._max_concurrency = spec.max_concurrency
        self._max_per_capability = spec.max_per_capability
        self._in_flight: dict[str, int] = {}
        self._max_pending = 2 * spec.max_concurrency
        self.pending = 0
        """Requests taken and not answered yet (forwarded or not)."""
        self.peak_pending = 0
        """The most requests ever pending at once (at most ``2 * max_concurrency``)."""
        self._log = RateLimitedLog(log, bus.options.report_interval)
        self.routed = 0
        """Requests answered."""
        self.failed = 0
        """Of those, answered with an error."""
        self.errors = 0
        """Of those, failed inside the router itself (answered ``agent_error``)."""
        self.ignored = 0
        """Requests without a reply subject (not routed)."""
        self.shed = 0
        """Requests answered ``busy`` as they came in, a flood beyond ``2 * max_concurrency``
        pending (without a task: memory stays bounded). Counted in ``routed`` too."""

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Route requests until cancelled."""
        async with (
            self._bus.subscribe(CAPABILITY_REQUEST, queue=ROUTER_QUEUE) as requests,
            open_nursery() as nursery,
        ):
            await self._bus.flush()
            task_status.started()
            async for delivery in requests:
                if not delivery.answerable:
                    self.ignored += 1
                    continue
                if self.pending >= self._max_pending:
                    # A flood: answer here, without a task, so memory stays bounded.
                    self.shed += 1
                    await self._answer(
                        delivery,
                        CapabilityReply.failure(
                            ErrorCode.BUSY,
                            f"the router is flooded: {self._max_pending} requests pending",
                        ),
                    )
                    continue
                self.pending += 1
                self.peak_pending = max(self.peak_pending, self.pending)
                nursery.start_soon(self._route_and_answer, delivery)

    @property
    def in_flight(self) -> int:
        """Requests forwarded to agents and not answered yet."""
        return sum(self._in_flight.values())

    async def _route_and_answer(self, delivery: Delivery) -> None:
        try:
            try:
                reply = await self.route(delivery.data)
            except Exception as error:  # one request's failure, not the router's
                self.errors += 1
                self._log.warning(
                    "route", "routing failures", "routing a capability request failed: %r", error
                )
                reply = CapabilityReply.failure(
                    ErrorCode.AGENT_ERROR, f"the router failed: {type(error).__name__}"
                )
            await self._answer(delivery, reply)
        finally:
            self.pending -= 1

    async def _answer(self, delivery: Delivery, reply: CapabilityReply) -> None:
        """Send the one reply (a small error one if it cannot be sent as it is), counted."""
        sent, payload = sendable_capability_reply(
            reply,
            self._bus.max_payload,
            agent=reply.agent,
            what="the agent's reply, once re-encoded,",
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
        if not sent.ok:
            self.failed += 1
        self.routed += 1

    async def route(self, payload: bytes) -> CapabilityReply:
        """The one reply for a capability request payload."""
        try:
            request = CAPABILITY_REQUEST_CODEC.decode(payload)
        except ProtocolError as error:
            return CapabilityReply.failure(ErrorCode.BAD_REQUEST, str(error))
        name = request.capability
        if not self._directory.providers(name) and not await self._listed_soon(name):
            return CapabilityReply.failure(
                ErrorCode.NO_CAPABILITY, f"no online agent has the capability {name!r}"
            )
        if self.in_flight >= self._max_concurrency:
            return CapabilityReply.failure(
                ErrorCode.BUSY, f"the router has {self._max_concurrency} requests in flight"
            )
        if self._in_flight.get(name, 0) >= self._max_per_capability:
            return CapabilityReply.failure(
                ErrorCode.BUSY, f"{self._max_per_capability} calls of {name!r} are in flight"
            )
        self._in_flight[name] = self._in_flight.get(name, 0) + 1
        try:
            return await self._forward(request)
        finally:
            self._in_flight[name] -= 1
            if not self._in_flight[name]:
                del self._in_flight[name]

    async def _listed_soon(self, name: str) -> bool:
        """Whether an agent with the capability appears while the directory settles.

        Right after the directory (re)joined the bus its table may miss agents whose
        answers to its roll call are on their way: an empty answer then is not the
        truth yet, so the request waits for the table (at most until it settles).
        """
        directory = self._directory
        while directory.settling(trio.current_time()):
            await trio.sleep(_SETTLE_POLL)
            if directory.providers(name):
                return True
        return False

    async def _forward(self, request: CapabilityRequest) -> CapabilityReply:
        name = request.capability
        timeout = min(request.timeout or self._default_timeout, self._max_timeout)
        try:
            forwarded = attrs.evolve(request, timeout=timeout)
            answer = await self._bus.request(
                capability_endpoint(name),
                CAPABILITY_REQUEST_CODEC.encode(forwarded),
                timeout=timeout,
            )
        except NoResponders:
            return CapabilityReply.failure(
                ErrorCode.NO_CAPABILITY, f"no agent serves {name!r} right now"
            )
        except PayloadTooLarge as error:
            return CapabilityReply.failure(
                ErrorCode.PAYLOAD_TOO_LARGE,
                f"the request is {error.size} bytes once re-encoded, above the server's "
                f"max_payload of {error.max_payload} bytes",
            )
        except RequestTimeout:
            return CapabilityReply.failure(
                ErrorCode.TIMEOUT, f"no agent answered {name!r} within {timeout:g} s"
            )
        try:
            return decode_capability_reply(answer.data)
        except ProtocolError as error:
            return CapabilityReply.failure(ErrorCode.AGENT_ERROR, f"malformed agent reply: {error}")
