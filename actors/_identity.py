"""Identity: one agent id, one owner (unless the agent is replicated).

Before a node starts its agents it *claims* their ids on ``agent.claim``, and
for as long as it runs it answers the claims of other nodes. The rules
(docs/PROTOCOL.md, section 5.9):

- A claim names the node, and for each agent its id, its instance id and
  whether it is replicated. Every node that holds or is claiming one of those
  ids answers with the conflicts: ids it holds (``owner``) or is claiming
  itself (``claiming``), where the two are not both replicated.
- A claimer loses an id to an ``owner``, and to another claimer whose instance
  id sorts lower. Both sides of a simultaneous claim apply the same rule to the
  same two instance ids, so exactly one keeps the id. Both subscribe before they
  publish, so at least one of them hears the other, and its answer tells the
  other (the claim window, ``claim_window``, covers the round trip).
- Ids that survive the window are owned: from then on this node answers
  ``owner`` for them.

A node that holds an id but is dead does not answer, so its successor (the same
container restarted) takes the id at once. Agents outside Volta do not answer
claims; for them the node consults the directory (an agent listed online whose
instances name no node).
"""

from __future__ import annotations

import enum
import logging
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import attrs
import trio

from volta.bus import AGENT_CLAIM, Bus, BusError, Delivery, Subscription, validate_own_agent_id
from volta.core import RateLimitedLog, printable

from ._directory import IdentityClash
from ._protocol import ProtocolError, dump_json, load_json_object

log = logging.getLogger("volta.actors.identity")

_ENVELOPE = 512  # room for the claim's node and token around its agents


class ClaimState(enum.Enum):
    """Where a node is with an id."""

    CLAIMING = "claiming"
    OWNER = "owner"


@attrs.frozen
class AgentClaim:
    """One id a node claims (or holds)."""

    id: str
    """The agent id."""
    instance: str
    """The instance that would run it."""
    replicated: bool = False
    """Whether other instances may run it too."""

    def conflicts_with(self, other: AgentClaim) -> bool:
        """Whether the two cannot both run."""
        return (
            self.id == other.id
            and self.instance != other.instance
            and not (self.replicated and other.replicated)
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form."""
        return {"id": self.id, "instance": self.instance, "replicated": self.replicated}

    @classmethod
    def from_dict(cls, document: object, field: str) -> AgentClaim:
        """Decode one claimed agent.

        Raises:
            ProtocolError: it is malformed.
        """
        if not isinstance(document, dict):
            raise ProtocolError(field, "expected a JSON object")
        agent_id, instance, replicated = (
            document.get("id"),
            document.get("instance"),
            document.get("replicated", False),
        )
        if not isinstance(agent_id, str):
            raise ProtocolError(f"{field}.id", "expected a string")
        try:
            validate_own_agent_id(agent_id)
        except ValueError as error:
            raise ProtocolError(f"{field}.id", str(error)) from None
        if not isinstance(instance, str) or not 0 < len(instance) <= 64:
            raise ProtocolError(f"{field}.instance", "expected a string of 1-64 characters")
        if not isinstance(replicated, bool):
            raise ProtocolError(f"{field}.replicated", "expected true or false")
        return cls(agent_id, instance, replicated)


@attrs.frozen
class Rival:
    """Another node's claim or hold on one of our ids."""

    claim: AgentClaim
    """What it claims."""
    node: str
    """Its node."""
    state: ClaimState
    """Whether it holds the id or is claiming it."""

    def beats(self, ours: AgentClaim) -> bool:
        """Whether it keeps the id rather than us."""
        return self.state is ClaimState.OWNER or self.claim.instance < ours.instance


class IdentityConflict(Exception):
    """Every agent a node was to run is already running elsewhere.

    Attributes:
        clashes: one per refused agent, naming who holds it.
    """

    def __init__(self, clashes: Sequence[IdentityClash]) -> None:
        lines = "; ".join(clash.reason for clash in clashes)
        super().__init__(f"no agent could start: {lines}")
        self.clashes = tuple(clashes)


@attrs.define
class _Held:
    claim: AgentClaim
    state: ClaimState
    beaten_by: Rival | None = None


class Identity:
    """The ids a node claims and holds, and the node child answering others' claims."""

    def __init__(self, bus: Bus, node: str) -> None:
        self._bus = bus
        self._node = node
        self._token = uuid.uuid4().hex  # tells our own claims from others' on the wire
        self._held: dict[str, _Held] = {}
        self._log = RateLimitedLog(log, bus.options.report_interval)
        self.malformed = 0
        """Claims that did not decode."""

    @property
    def node(self) -> str:
        """The node's name in claims and errors."""
        return self._node

    def owns(self, agent_id: str) -> bool:
        """Whether this node holds ``agent_id``."""
        held = self._held.get(agent_id)
        return held is not None and held.state is ClaimState.OWNER

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Answer other nodes' claims until cancelled (start it before :meth:`claim`)."""
        async with self._bus.subscribe(AGENT_CLAIM) as claims:
            await self._bus.flush()
            task_status.started()
            async for delivery in claims:
                try:
                    await self._answer(delivery)
                except Exception as error:  # one claim's failure, never the node's
                    self._log.warning(
                        "error",
                        "claim failures",
                        "a claim on %s could not be answered: %r",
                        AGENT_CLAIM,
                        error,
                    )

    async def _answer(self, delivery: Delivery) -> None:
        try:
            node, token, claims = _decode_claim(delivery.data)
        except ProtocolError as error:
            self.malformed += 1
            self._bus.report_malformed(delivery.subject, error)
            return
        if token == self._token:
            return  # our own
        conflicts = []
        for theirs in claims:
            held = self._held.get(theirs.id)
            if held is None or not held.claim.conflicts_with(theirs):
                continue
            conflicts.append({**held.claim.to_dict(), "state": held.state.value})
            rival = Rival(theirs, node, ClaimState.CLAIMING)
            if held.state is ClaimState.CLAIMING and rival.beats(held.claim):
                held.beaten_by = rival
        if conflicts and delivery.answerable:
            reply = dump_json({"node": self._node, "conflicts": conflicts})
            try:
                await self._bus.respond(delivery, reply)
            except BusError as error:
                self._log.info(
                    "answer",
                    "claim answers that could not be sent",
                    "could not answer a claim from %s: %s",
                    node,
                    error,
                )

    async def claim(
        self, claims: Iterable[AgentClaim], window: float
    ) -> tuple[list[AgentClaim], list[IdentityClash]]:
        """Claim ids; after ``window`` seconds, the ones kept and the ones lost.

        Raises:
            BusError: the claim could not be published.
        """
        wanted = list(claims)
        for ours in wanted:
            self._held[ours.id] = _Held(ours, ClaimState.CLAIMING)
        inbox = f"_INBOX.volta-claim.{uuid.uuid4().hex}"
        async with self._bus.subscribe(inbox) as replies:
            for chunk in self._chunks(wanted):
                payload = dump_json({"node": self._node, "token": self._token, "agents": chunk})
                await self._bus.publish(AGENT_CLAIM, payload, reply=inbox)
            with trio.move_on_after(window):
                await self._collect(replies)
        kept, lost = [], []
        now = trio.current_time()
        for ours in wanted:
            held = self._held[ours.id]
            rival = held.beaten_by
            if rival is None:
                held.state = ClaimState.OWNER
                kept.append(ours)
                continue
            del self._held[ours.id]
            state = "holds it" if rival.state is ClaimState.OWNER else "claimed it at the same time"
            lost.append(
                IdentityClash(
                    ours.id,
                    ours.instance,
                    self._node,
                    f"agent {ours.id!r} is already taken: node {rival.node} {state} "
                    f"(instance {rival.claim.instance}"
                    f"{', replicated' if rival.claim.replicated else ''})",
                    now,
                )
            )
        return kept, lost

    def _chunks(self, claims: list[AgentClaim]) -> Iterable[list[dict[str, Any]]]:
        """The claims, in as few messages as fit the server's ``max_payload``."""
        budget = max(_ENVELOPE, self._bus.max_payload - _ENVELOPE)
        chunk: list[dict[str, Any]] = []
        size = 0
        for claim in claims:
            document = claim.to_dict()
            cost = len(dump_json(document)) + 1
            if chunk and size + cost > budget:
                yield chunk
                chunk, size = [], 0
            chunk.append(document)
            size += cost
        if chunk:
            yield chunk

    async def _collect(self, replies: Subscription) -> None:
        async for delivery in replies:
            try:
                node, conflicts = _decode_conflicts(delivery.data)
            except ProtocolError as error:
                self.malformed += 1
                self._bus.report_malformed(delivery.subject, error)
                continue
            for rival in conflicts:
                held = self._held.get(rival.claim.id)
                if held is None or held.state is not ClaimState.CLAIMING:
                    continue
                if held.claim.conflicts_with(rival.claim) and held.beaten_by is None:
                    full = Rival(rival.claim, node, rival.state)
                    if full.beats(held.claim):
                        held.beaten_by = full


def _node_field(document: dict[str, Any]) -> str:
    node = document.get("node")
    if not isinstance(node, str) or not 0 < len(node) <= 256 or printable(node, 256) != node:
        raise ProtocolError("node", "expected 1-256 printable characters")
    return node


def _decode_claim(data: bytes) -> tuple[str, str, list[AgentClaim]]:
    document = load_json_object(data)
    node = _node_field(document)
    token = document.get("token")
    if not isinstance(token, str):
        raise ProtocolError("token", "expected a string")
    agents = document.get("agents")
    if not isinstance(agents, list):
        raise ProtocolError("agents", "expected a list")
    return node, token, [AgentClaim.from_dict(a, f"agents[{i}]") for i, a in enumerate(agents)]


def _decode_conflicts(data: bytes) -> tuple[str, list[Rival]]:
    document = load_json_object(data)
    node = _node_field(document)
    conflicts = document.get("conflicts")
    if not isinstance(conflicts, list):
        raise ProtocolError("conflicts", "expected a list")
    rivals = []
    for index, entry in enumerate(conflicts):
        claim = AgentClaim.from_dict(entry, f"conflicts[{index}]")
        try:
            state = ClaimState(entry.get("state"))
        except ValueError:
            raise ProtocolError(f"conflicts[{index}].state", "expected owner or claiming") from None
        rivals.append(Rival(claim, node, state))
    return node, rivals
