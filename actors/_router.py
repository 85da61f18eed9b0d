"""Capability routing: ``capability.request`` to an agent that has the skill.

The router is a node child in the ``volta.router`` queue group, so each request
is routed once however many nodes run. It answers ``no_capability`` at once
when its directory knows no online agent with the capability (no waiting for a
timeout); otherwise it forwards to ``capability.invoke.<name>``, where the
agents that have it share the load through their queue group, and relays the
one reply, or answers ``timeout``. A malformed request gets ``bad_request``.
Requests are routed concurrently, at most ``max_concurrency`` at a time.
"""

from __future__ import annotations

import logging

import trio

from volta._nursery import open_nursery
from volta.bus import (
    CAPABILITY_REQUEST,
    ROUTER_QUEUE,
    Bus,
    BusError,
    Delivery,
    NoResponders,
    RequestTimeout,
    capability_endpoint,
)
from volta.supervisor import shutdown_scope

from ._directory import Directory
from ._protocol import CapabilityReply, CapabilityRequest, ErrorCode, ProtocolError

log = logging.getLogger("volta.actors.router")


class CapabilityRouter:
    """The node child that routes capability requests."""

    def __init__(
        self,
        directory: Directory,
        bus: Bus,
        *,
        default_timeout: float = 10.0,
        max_concurrency: int = 256,
    ) -> None:
        self._directory = directory
        self._bus = bus
        self._default_timeout = default_timeout
        self._max_concurrency = max_concurrency
        self.routed = 0
        self.failed = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Route requests until cancelled."""
        limiter = trio.CapacityLimiter(self._max_concurrency)
        async with (
            self._bus.subscribe(CAPABILITY_REQUEST, queue=ROUTER_QUEUE) as requests,
            open_nursery() as nursery,
        ):
            await self._bus.flush()
            task_status.started()
            async for delivery in requests:
                token = object()
                await limiter.acquire_on_behalf_of(token)
                nursery.start_soon(self._route_and_release, delivery, limiter, token)

    async def _route_and_release(
        self, delivery: Delivery, limiter: trio.CapacityLimiter, token: object
    ) -> None:
        try:
            reply = await self.route(delivery.data)
            if not reply.ok:
                self.failed += 1
            self.routed += 1
            if delivery.reply:
                with shutdown_scope():
                    try:
                        await self._bus.respond(delivery, reply.to_json())
                    except BusError as error:
                        log.info("could not answer a capability request: %s", error)
        finally:
            limiter.release_on_behalf_of(token)

    async def route(self, payload: bytes) -> CapabilityReply:
        """The one reply for a capability request payload."""
        try:
            request = CapabilityRequest.from_json(payload)
        except ProtocolError as error:
            return CapabilityReply.failure(ErrorCode.BAD_REQUEST, str(error))
        name = request.capability
        if not self._directory.providers(name):
            return CapabilityReply.failure(
                ErrorCode.NO_CAPABILITY, f"no online agent has the capability {name!r}"
            )
        timeout = request.timeout or self._default_timeout
        try:
            answer = await self._bus.request(
                capability_endpoint(name), request.to_json(), timeout=timeout
            )
        except NoResponders:
            return CapabilityReply.failure(
                ErrorCode.NO_CAPABILITY, f"no agent serves {name!r} right now"
            )
        except RequestTimeout:
            return CapabilityReply.failure(
                ErrorCode.TIMEOUT, f"no agent answered {name!r} within {timeout:g} s"
            )
        try:
            return CapabilityReply.from_json(answer.data)
        except ProtocolError as error:
            return CapabilityReply.failure(ErrorCode.AGENT_ERROR, f"malformed agent reply: {error}")
