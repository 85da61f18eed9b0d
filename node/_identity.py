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
container restarted) takes the id at once; and directories, asking the nodes the
same way (:meth:`Identity.holders`, a probe that is no claim), see at once that
the old instance is gone. Agents outside Volta do not answer
claims; for them the node consults the directory (an agent listed online whose
instances name no node).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Collection, Iterable, Sequence

import attrs
import trio

from volta.bus import Bus, BusError, Delivery, Subscription
from volta.core import RateLimitedLog
from volta.protocol import (
    AGENT_CLAIM,
    AGENT_CLAIM_CODEC,
    CLAIM_ANSWER_CODEC,
    CLAIM_CODEC,
    AgentClaim,
    Claim,
    ClaimAnswer,
    ClaimState,
    Conflict,
    ProtocolError,
)

from ._directory import IdentityClash

log = logging.getLogger("volta.node.identity")

_ENVELOPE = 512  # room for the claim's node and token around its agents


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
        async with self._bus.subscribe(AGENT_CLAIM) as subscription:
            await self._bus.flush()
            task_status.started()
            claims = subscription.decoded(_claim, on_malformed=self._malformed)
            async for delivery, claim in claims:
                try:
                    await self._answer(delivery, claim)
                except Exception as error:  # one claim's failure, never the node's
                    self._log.warning(
                        "error",
                        "claim failures",
                        "a claim on %s could not be answered: %r",
                        AGENT_CLAIM,
                        error,
                    )

    async def _malformed(self, _delivery: Delivery, _error: ProtocolError) -> None:
        self.malformed += 1

    async def _answer(self, delivery: Delivery, claim: Claim) -> None:
        if claim.token == self._token:
            return  # our own
        node = claim.node
        conflicts = []
        for theirs in claim.agents:
            held = self._held.get(theirs.id)
            if held is None or not held.claim.conflicts_with(theirs):
                continue
            conflicts.append(Conflict(held.claim, held.state))
            if claim.probe:
                continue  # a question, not a rival
            rival = Rival(theirs, node, ClaimState.CLAIMING)
            if held.state is ClaimState.CLAIMING and rival.beats(held.claim):
                held.beaten_by = rival
        if conflicts and delivery.answerable:
            reply = CLAIM_ANSWER_CODEC.encode(ClaimAnswer(self._node, tuple(conflicts)))
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
                payload = CLAIM_CODEC.encode(Claim(self._node, self._token, chunk))
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

    async def holders(self, agent_ids: Collection[str], window: float) -> dict[str, set[str]]:
        """Which instances the live nodes hold each of ``agent_ids`` by (claiming included).

        Asks every node with a *probe* on ``agent.claim`` (a claim no claimer counts as
        a rival) and collects the answers for ``window`` seconds; this node answers
        from what it holds. A node that died does not answer: an instance missing from
        the result is gone (or its node did not answer in time, as for claims).

        Raises:
            BusError: the probe could not be published.
        """
        found: dict[str, set[str]] = {agent_id: set() for agent_id in agent_ids}
        for agent_id, instances in found.items():
            held = self._held.get(agent_id)
            if held is not None:
                instances.add(held.claim.instance)
        question = f"probe-{uuid.uuid4().hex}"  # an instance no node holds: all answer
        inbox = f"_INBOX.volta-claim.{uuid.uuid4().hex}"
        async with self._bus.subscribe(inbox) as replies:
            asked = [AgentClaim(agent_id, question) for agent_id in found]
            for chunk in self._chunks(asked):
                probe = Claim(self._node, self._token, chunk, probe=True)
                await self._bus.publish(AGENT_CLAIM, CLAIM_CODEC.encode(probe), reply=inbox)
            with trio.move_on_after(window):
                answers = replies.decoded(_claim_answer, on_malformed=self._malformed)
                async for _delivery, answer in answers:
                    for conflict in answer.conflicts:
                        if conflict.claim.id in found:
                            found[conflict.claim.id].add(conflict.claim.instance)
        return found

    def _chunks(self, claims: list[AgentClaim]) -> Iterable[tuple[AgentClaim, ...]]:
        """The claims, in as few messages as fit the server's ``max_payload``."""
        budget = max(_ENVELOPE, self._bus.max_payload - _ENVELOPE)
        chunk: list[AgentClaim] = []
        size = 0
        for claim in claims:
            cost = len(AGENT_CLAIM_CODEC.encode(claim)) + 1
            if chunk and size + cost > budget:
                yield tuple(chunk)
                chunk, size = [], 0
            chunk.append(claim)
            size += cost
        if chunk:
            yield tuple(chunk)

    async def _collect(self, replies: Subscription) -> None:
        answers = replies.decoded(_claim_answer, on_malformed=self._malformed)
        async for _delivery, answer in answers:
            for conflict in answer.conflicts:
                held = self._held.get(conflict.claim.id)
                if held is None or held.state is not ClaimState.CLAIMING:
                    continue
                if held.claim.conflicts_with(conflict.claim) and held.beaten_by is None:
                    rival = Rival(conflict.claim, answer.node, conflict.state)
                    if rival.beats(held.claim):
                        held.beaten_by = rival


def _claim(delivery: Delivery) -> Claim:
    return CLAIM_CODEC.decode(delivery.data)


def _claim_answer(delivery: Delivery) -> ClaimAnswer:
    return CLAIM_ANSWER_CODEC.decode(delivery.data)
