"""The NATS service API (ADR-32) for the agents of a node.

Each agent is an instance of the service ``volta-agent`` (instance id = agent
id) whose endpoints are its capabilities (``capability.invoke.<name>``, queue
group of the same name). So standard NATS tooling sees Volta agents without
knowing Volta: ``nats micro ls``, ``nats micro info volta-agent``,
``nats micro stats volta-agent alpha``.

One node child answers for all the node's agents on nine subscriptions
(``$SRV.<VERB>``, ``$SRV.<VERB>.volta-agent``, ``$SRV.<VERB>.volta-agent.*``
for PING, INFO and STATS), rather than nine per agent: ten thousand agents
then cost nine subscriptions, not ninety thousand. A request for every
instance gets one reply per agent, as ADR-32 has it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from contextlib import AsyncExitStack
from datetime import datetime
from importlib import metadata
from typing import TYPE_CHECKING, Any

import trio

from volta.bus import Bus, BusError, Delivery, Subscription
from volta.core import open_nursery
from volta.protocol import capability_endpoint, encode_json

if TYPE_CHECKING:
    from volta.actors import Agent

log = logging.getLogger("volta.node.service")

SERVICE_NAME = "volta-agent"
"""The ADR-32 service name of every Volta agent."""

_VERBS = ("PING", "INFO", "STATS")
_TYPES = {
    "PING": "io.nats.micro.v1.ping_response",
    "INFO": "io.nats.micro.v1.info_response",
    "STATS": "io.nats.micro.v1.stats_response",
}


def _version() -> str:
    try:
        return metadata.version("volta")
    except metadata.PackageNotFoundError:  # running from a source tree
        return "0.0.0"


def _started(value: datetime) -> str:
    # ADR-32 writes UTC with millisecond precision and a Z.
    return value.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def describe(agent: Agent, verb: str, version: str) -> dict[str, Any]:
    """The ADR-32 response of one agent to PING, INFO or STATS."""
    spec = agent.spec
    document: dict[str, Any] = {
        "type": _TYPES[verb],
        "name": SERVICE_NAME,
        "id": spec.id,
        "version": version,
        "metadata": {"agent_name": spec.name},
    }
    if verb == "INFO":
        document["description"] = f"Volta agent {spec.name}"
        document["endpoints"] = [
            {
                "name": name,
                "subject": capability_endpoint(name),
                "queue_group": capability_endpoint(name),
                "metadata": {},
            }
            for name in spec.capabilities
        ]
    elif verb == "STATS":
        document["started"] = _started(agent.started_wall)
        endpoints = []
        for name in spec.capabilities:
            counters = agent.endpoint(name)
            average = counters.processing_ns // counters.requests if counters.requests else 0
            endpoints.append(
                {
                    "name": name,
                    "subject": capability_endpoint(name),
                    "queue_group": capability_endpoint(name),
                    "num_requests": counters.requests,
                    "num_errors": counters.errors,
                    "last_error": counters.last_error,
                    "processing_time": counters.processing_ns,
                    "average_processing_time": average,
                    "data": None,
                }
            )
        document["endpoints"] = endpoints
    return document


class ServiceResponder:
    """The node child that answers ``$SRV`` requests for the node's agents."""

    def __init__(self, agents: Callable[[], Iterable[Agent]], bus: Bus) -> None:
        self._agents = agents
        self._bus = bus
        self._version = _version()

    def _subjects(self) -> list[str]:
        subjects = []
        for verb in _VERBS:
            subjects += [
                f"$SRV.{verb}",
                f"$SRV.{verb}.{SERVICE_NAME}",
                f"$SRV.{verb}.{SERVICE_NAME}.*",
            ]
        return subjects

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Answer until cancelled."""
        async with AsyncExitStack() as stack:
            subscriptions = [
                await stack.enter_async_context(self._bus.subscribe(subject))
                for subject in self._subjects()
            ]
            async with open_nursery() as nursery:
                for subscription in subscriptions:
                    nursery.start_soon(self._answer, subscription)
                task_status.started()

    async def _answer(self, subscription: Subscription) -> None:
        async for request in subscription:
            if request.answerable:
                await self._reply(request)

    async def _reply(self, request: Delivery) -> None:
        tokens = request.subject.split(".")  # $SRV, VERB[, name[, id]]
        verb = tokens[1]
        wanted = tokens[3] if len(tokens) > 3 else None
        for agent in self._agents():
            if wanted is not None and agent.spec.id != wanted:
                continue
            try:
                await self._bus.respond(request, encode_json(describe(agent, verb, self._version)))
            except BusError as error:
                log.info("could not answer %s: %s", request.subject, error)
                return
