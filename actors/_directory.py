"""Discovery: who exists, who is online, built from announces and heartbeats.

:class:`Directory` is the table (pure, clock passed in, so its timing is tested
on a virtual clock). :class:`DirectoryService` is the node child that feeds it
from ``agent.announce`` and ``agent.*.status`` (any process, any language),
expires agents whose heartbeats stop, and answers ``mcp.list_agents`` in the
``volta.directory`` queue group, so each request gets exactly one reply however
many nodes run.

An agent counts as offline after ``offline_after_missed`` heartbeat intervals
without news (its own interval if it says, else the directory's default), or
at once when it says ``offline``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

import attrs
import trio

from volta._nursery import open_nursery
from volta.bus import (
    AGENT_ANNOUNCE,
    AGENT_STATUS_ALL,
    DIRECTORY_QUEUE,
    MCP_LIST_AGENTS,
    Bus,
    BusError,
    Subscription,
    agent_id_from_subject,
)

from ._protocol import (
    AgentInfo,
    AgentStatus,
    ListQuery,
    Presence,
    ProtocolError,
    decode_agent_page,
    encode_agent_page,
    encode_list_error,
)

log = logging.getLogger("volta.actors.directory")

_MIN_SWEEP = 0.01


@attrs.frozen
class PresenceChange:
    """An agent came online, went offline, or became busy or free."""

    agent: str
    """The agent id."""
    before: Presence | None
    """Its presence before (None: it was unknown)."""
    after: Presence
    """Its presence now."""
    reason: str
    """Why: ``announce``, ``heartbeat``, ``said offline``, ``missed heartbeats``, ``sync``."""
    at: float
    """trio time of the change."""


@attrs.define
class _Entry:
    info: AgentInfo
    seen_at: float
    interval: float


class Directory:
    """The table of known agents."""

    def __init__(self, default_interval: float = 30.0, missed: int = 3) -> None:
        if default_interval <= 0 or missed < 1:
            raise ValueError("default_interval must be > 0 and missed >= 1")
        self._default_interval = default_interval
        self._missed = missed
        self._entries: dict[str, _Entry] = {}
        # capability -> ids of the agents serving it that are not offline
        self._providers: dict[str, set[str]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def _store(self, entry: _Entry) -> None:
        old = self._entries.get(entry.info.id)
        if old is not None:
            for name in old.info.capabilities:
                self._providers.get(name, set()).discard(old.info.id)
        self._entries[entry.info.id] = entry
        if entry.info.status is not Presence.OFFLINE:
            for name in entry.info.capabilities:
                self._providers.setdefault(name, set()).add(entry.info.id)

    def interval_of(self, status: AgentStatus) -> float:
        """The heartbeat interval the directory applies to an agent."""
        return status.heartbeat_interval or self._default_interval

    def observe(self, status: AgentStatus, now: float, reason: str) -> PresenceChange | None:
        """Record an announce or heartbeat; the change of presence it made, if any."""
        entry = self._entries.get(status.id)
        before = entry.info.status if entry is not None else None
        info = AgentInfo(
            id=status.id,
            name=status.name,
            capabilities=status.capabilities,
            status=status.status,
            last_seen=datetime.now(UTC),
        )
        self._store(_Entry(info, now, self.interval_of(status)))
        if before is status.status:
            return None
        if status.status is Presence.OFFLINE:
            reason = "said offline"
        return PresenceChange(status.id, before, status.status, reason, now)

    def merge(self, agents: Iterable[AgentInfo], now: float) -> list[PresenceChange]:
        """Adopt another directory's view for agents this one has not heard of."""
        changes = []
        wall_now = datetime.now(UTC)
        for info in agents:
            if info.id in self._entries:
                continue
            age = max(0.0, (wall_now - info.last_seen).total_seconds())
            self._store(_Entry(info, now - age, self._default_interval))
            changes.append(PresenceChange(info.id, None, info.status, "sync", now))
        return changes

    def expire(self, now: float) -> list[PresenceChange]:
        """Mark offline every agent not heard from for too long."""
        changes = []
        for entry in self._entries.values():
            if entry.info.status is Presence.OFFLINE:
                continue
            if now >= entry.seen_at + self._missed * entry.interval:
                before = entry.info.status
                for name in entry.info.capabilities:
                    self._providers.get(name, set()).discard(entry.info.id)
                entry.info = attrs.evolve(entry.info, status=Presence.OFFLINE)
                changes.append(
                    PresenceChange(
                        entry.info.id, before, Presence.OFFLINE, "missed heartbeats", now
                    )
                )
        return changes

    def sweep_period(self, interval: float | None = None) -> float:
        """How often to call :meth:`expire`: half the shortest heartbeat interval.

        So an agent is marked offline between ``missed`` and ``missed + 0.5``
        intervals after it was last heard from, at a cost of one pass over the
        table per half interval (not one per heartbeat).

        Args:
            interval: the period for this one interval instead (O(1); the full
                answer is a pass over the table, done once per sweep).
        """
        if interval is None:
            interval = min(
                (
                    e.interval
                    for e in self._entries.values()
                    if e.info.status is not Presence.OFFLINE
                ),
                default=self._default_interval,
            )
        return max(_MIN_SWEEP, interval / 2)

    def agents(
        self, *, capability: str | None = None, status: Presence | None = None
    ) -> list[AgentInfo]:
        """The known agents, sorted by id, optionally only those with a capability
        (and not offline) or in a given state."""
        if capability is not None:
            ids = sorted(self._providers.get(capability, ()))
        else:
            ids = sorted(self._entries)
        listed = [self._entries[key].info for key in ids]
        if status is not None:
            listed = [info for info in listed if info.status is status]
        return listed

    def get(self, agent_id: str) -> AgentInfo | None:
        """One agent, if known."""
        entry = self._entries.get(agent_id)
        return entry.info if entry is not None else None

    def providers(self, capability: str) -> list[str]:
        """Ids of the agents that are not offline and serve ``capability``."""
        return sorted(self._providers.get(capability, ()))


class DirectoryService:
    """The node child that keeps a :class:`Directory` current and answers for it."""

    def __init__(
        self,
        directory: Directory,
        bus: Bus,
        on_change: Callable[[PresenceChange], None] | None = None,
        sync_timeout: float = 1.0,
    ) -> None:
        self._directory = directory
        self._bus = bus
        self._on_change = on_change or (lambda _change: None)
        self._sync_timeout = sync_timeout
        self._sweeping_every = float("inf")
        self._sooner = trio.Event()
        self.malformed = 0

    def _report(self, changes: Iterable[PresenceChange]) -> None:
        for change in changes:
            log.info(
                "agent %s: %s -> %s (%s)",
                change.agent,
                change.before.value if change.before else "unknown",
                change.after.value,
                change.reason,
            )
            self._on_change(change)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep the directory current and answer ``mcp.list_agents`` until cancelled."""
        bus = self._bus
        async with (
            bus.subscribe(AGENT_ANNOUNCE) as announces,
            bus.subscribe(AGENT_STATUS_ALL) as statuses,
        ):
            await self._sync()  # before joining the queue group, so we never ask ourselves
            async with (
                bus.subscribe(MCP_LIST_AGENTS, queue=DIRECTORY_QUEUE) as requests,
                open_nursery() as nursery,
            ):
                nursery.start_soon(self._observe, announces, "announce")
                nursery.start_soon(self._observe, statuses, "heartbeat")
                nursery.start_soon(self._answer, requests)
                nursery.start_soon(self._expire)
                await bus.flush()
                task_status.started()

    async def _sync(self) -> None:
        """Learn what another directory already knows (if one runs)."""
        offset: int | None = 0
        agents: list[AgentInfo] = []
        try:
            while offset is not None:
                query = ListQuery(offset=offset).to_json()
                reply = await self._bus.request(MCP_LIST_AGENTS, query, timeout=self._sync_timeout)
                page, offset, _total = decode_agent_page(reply.data)
                agents += page
        except (BusError, ProtocolError) as error:
            log.debug("no directory to sync from: %s", error)
            return
        self._report(self._directory.merge(agents, trio.current_time()))

    async def _observe(self, subscription: Subscription, reason: str) -> None:
        async for delivery in subscription:
            try:
                status = AgentStatus.from_json(delivery.data)
            except ProtocolError as error:
                self.malformed += 1
                log.warning("malformed %s on %s skipped: %s", reason, delivery.subject, error)
                continue
            if (
                delivery.subject != AGENT_ANNOUNCE
                and agent_id_from_subject(delivery.subject) != status.id
            ):
                # A status may only speak for the agent its subject names.
                self.malformed += 1
                log.warning("status for %r published on %s skipped", status.id, delivery.subject)
                continue
            change = self._directory.observe(status, trio.current_time(), reason)
            if change is not None:
                self._report([change])
            period = self._directory.sweep_period(self._directory.interval_of(status))
            if period < self._sweeping_every:
                self._sooner.set()  # a faster agent joined: do not sleep out the old period

    async def _answer(self, requests: Subscription) -> None:
        async for request in requests:
            if not request.reply:
                continue
            try:
                query = ListQuery.from_json(request.data)
            except ProtocolError as error:
                reply = encode_list_error("bad_request", str(error))
            else:
                matching = self._directory.agents(capability=query.capability, status=query.status)
                # Leave room for the envelope: a page must fit the server's max_payload.
                reply = encode_agent_page(matching, query, self._bus.max_payload - 256)
            try:
                await self._bus.respond(request, reply)
            except BusError as error:  # never let a reply take the directory down
                log.warning("could not answer mcp.list_agents: %s", error)

    async def _expire(self) -> None:
        while True:
            self._sweeping_every = self._directory.sweep_period()
            with trio.move_on_after(self._sweeping_every):
                await self._sooner.wait()
            self._sooner = trio.Event()
            self._report(self._directory.expire(trio.current_time()))
