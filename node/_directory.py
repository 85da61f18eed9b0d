"""Discovery: who exists, who is online, built from announces and heartbeats.

:class:`Directory` is the table: pure logic, clock passed in, so its timing is
tested on a virtual clock. :class:`~volta.node.DirectoryService` feeds it from
the bus and answers ``mcp.list_agents`` for it.

An agent runs as one or more *instances* (each status says which, in
``instance``). The table keeps, per agent id, the instances that are not
offline:

- an instance counts as offline after ``offline_after_missed`` heartbeat
  intervals without news (its own interval if it says, clamped to
  [:data:`MIN_HEARTBEAT`, :data:`MAX_HEARTBEAT`], else the directory's
  default), or at once when it says ``offline``; an ``offline`` from an instance
  the table does not hold changes nothing (a stopped duplicate cannot take the
  real agent down), unless all the table holds is hearsay (learned from another
  directory), which any status heard from the agent replaces;
- the agent is online while any instance is (busy if every instance is busy);
- a second instance is accepted only for an agent that is ``replicated`` (and
  only when the new one says so too). For any other agent it is an identity
  clash: recorded, reported, not stored. A successor (the same agent restarted
  after a crash) is accepted once the old instance has gone offline, or as soon
  as the nodes, asked, show that no node holds the old instance any more
  (:meth:`Directory.succeed`): there is no moment at which a healthy instance
  can be replaced.

Cost: a status costs O(log n) (a deadline goes on a heap; nothing is encoded);
expiry pops due deadlines instead of scanning the table; an entry is encoded
for listings only when it changed since it was last listed. Bounds: an agent
offline for longer than ``forget_after`` is forgotten; the table holds at most
``max_agents`` agents and about ``max_bytes`` of entries (when full, the agent
offline longest makes room; when none is offline, the newcomer is refused), and
at most :data:`MAX_INSTANCES` instances per agent. Every entry is encoded by
the total codec, so a listing can never meet an entry it cannot send.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Collection, Iterable
from datetime import UTC, datetime

import attrs

from volta.protocol import AgentInfo, AgentStatus, InstanceInfo, Presence, encode_agent_info

MIN_HEARTBEAT = 0.05
"""Shortest heartbeat interval the directory believes (a faster claim is clamped)."""
MAX_HEARTBEAT = 3600.0
"""Longest heartbeat interval the directory believes (``1e300`` would never expire)."""
MAX_INSTANCES = 64
"""Most instances one (replicated) agent may have in the table."""
FORGET_AFTER = 3600.0
"""Default seconds after which an agent offline is forgotten."""
MAX_AGENTS = 100_000
"""Default most agents a table holds."""
MAX_BYTES = 256 * 1024 * 1024
"""Default most memory (about) a table's entries may take."""

_ANONYMOUS = ""  # the instance key of a peer that sends no instance id
_ENTRY_OVERHEAD = 400  # bytes an entry costs beyond its strings (objects, dicts)
_INSTANCE_OVERHEAD = 200


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


@attrs.frozen
class IdentityClash:
    """A status the directory refused to store."""

    agent: str
    """The agent id it spoke for."""
    instance: str | None
    """The instance it came from (None: it did not say)."""
    node: str | None
    """The node it named, if any."""
    reason: str
    """Why it was refused, in words (names the instance and node holding the id)."""
    at: float
    """trio time of the refusal."""
    provable: bool = False
    """Whether asking the nodes can settle it: every instance holding the id names a
    node, and a node that died does not answer (:meth:`Directory.succeed`)."""


@attrs.define
class _Instance:
    key: str
    node: str | None
    status: Presence
    seen_at: float
    interval: float
    hearsay: bool = False  # learned from another directory's listing, not heard


@attrs.define
class _Entry:
    id: str
    name: str
    capabilities: tuple[str, ...]
    replicated: bool
    last_seen: datetime
    instances: dict[str, _Instance] = attrs.Factory(dict)
    presence: Presence = Presence.OFFLINE
    cost: int = 0
    _info: AgentInfo | None = None
    _encoded: bytes | None = None

    def settle(self) -> None:
        """Derive the presence from the instances; listings are rebuilt when next needed."""
        states = {instance.status for instance in self.instances.values()}
        if Presence.ONLINE in states:
            self.presence = Presence.ONLINE
        elif states:
            self.presence = Presence.BUSY
        else:
            self.presence = Presence.OFFLINE
        self._info = self._encoded = None
        self.cost = (
            _ENTRY_OVERHEAD
            + len(self.id)
            + len(self.name)
            + sum(len(name) + 8 for name in self.capabilities)
            + sum(_INSTANCE_OVERHEAD + len(i.node or "") for i in self.instances.values())
        )

    @property
    def info(self) -> AgentInfo:
        """The list entry (made when first needed after a change)."""
        if self._info is None:
            self._info = AgentInfo(
                id=self.id,
                name=self.name,
                capabilities=self.capabilities,
                status=self.presence,
                last_seen=self.last_seen,
                instances=tuple(
                    InstanceInfo(instance.key or None, instance.node)
                    for instance in self.instances.values()
                ),
                replicated=self.replicated,
            )
        return self._info

    @property
    def encoded(self) -> bytes:
        """The list entry, encoded (made when first needed after a change)."""
        if self._encoded is None:
            self._encoded = encode_agent_info(self.info)
        return self._encoded


def _clamp(interval: float) -> float:
    return min(MAX_HEARTBEAT, max(MIN_HEARTBEAT, interval))


class Directory:
    """The table of known agents."""

    def __init__(
        self,
        default_interval: float = 30.0,
        missed: int = 3,
        *,
        forget_after: float = FORGET_AFTER,
        max_agents: int = MAX_AGENTS,
        max_bytes: int = MAX_BYTES,
    ) -> None:
        """Create an empty table.

        Args:
            default_interval: heartbeat interval of agents that do not state theirs.
            missed: heartbeats missed before an instance counts as offline.
            forget_after: seconds after which an agent that is offline is forgotten.
            max_agents: most agents the table holds.
            max_bytes: about the most memory its entries may take.

        Raises:
            ValueError: a value is out of range.
        """
        if default_interval <= 0 or missed < 1 or forget_after <= 0 or max_agents < 1:
            raise ValueError(
                "default_interval and forget_after must be > 0, missed and max_agents >= 1"
            )
        if max_bytes < 1:
            raise ValueError("max_bytes must be >= 1")
        self._default_interval = _clamp(default_interval)
        self._missed = missed
        self._forget_after = forget_after
        self._max_agents = max_agents
        self._max_bytes = max_bytes
        self._bytes = 0
        self._entries: dict[str, _Entry] = {}
        # capability -> ids of the agents serving it that are not offline
        self._providers: dict[str, set[str]] = {}
        # ids of the agents that are offline -> when they went offline, oldest first
        self._offline: dict[str, float] = {}
        # (when an instance expires, order, agent id, instance key); stale ones are skipped
        self._deadlines: list[tuple[float, int, str, str]] = []
        self._order = itertools.count()
        self._live_instances = 0
        self._settling_until = -math.inf
        self.clashes = 0
        """Statuses refused as identity clashes."""
        self.refused = 0
        """New agents (or instances) refused because the table was full."""
        self.forgotten = 0
        """Agents forgotten (offline too long, or making room)."""

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def max_agents(self) -> int:
        """The most agents it holds."""
        return self._max_agents

    @property
    def size(self) -> int:
        """About how many bytes the entries take."""
        return self._bytes

    @property
    def deadlines(self) -> int:
        """Expiry deadlines held, stale ones included (each heartbeat adds one; the
        heap is rebuilt once it holds more than ``4 * live instances + 64``)."""
        return len(self._deadlines)

    def settle_until(self, when: float) -> None:
        """Say that until ``when`` (trio time) the table may miss agents: it has just
        (re)joined the bus and asked every agent to announce again."""
        self._settling_until = max(self._settling_until, when)

    def settling(self, now: float) -> bool:
        """Whether the table may still miss agents (an empty answer is not to be trusted)."""
        return now < self._settling_until

    def interval_of(self, status: AgentStatus) -> float:
        """The heartbeat interval the directory applies to an agent (clamped)."""
        return _clamp(status.heartbeat_interval or self._default_interval)

    # --- changes ---------------------------------------------------------------------

    def observe(
        self, status: AgentStatus, now: float, reason: str
    ) -> PresenceChange | IdentityClash | None:
        """Record an announce or heartbeat.

        Returns:
            The change of presence it made, the clash it was refused for, or None.
        """
        entry = self._entries.get(status.id)
        key = status.instance or _ANONYMOUS
        if entry is not None:
            instances = entry.instances
            # What we heard ourselves replaces what another directory told us.
            hearsay = [k for k, i in instances.items() if i.hearsay]
            for stale in hearsay:
                del instances[stale]
                self._live_instances -= 1
            if key not in instances:
                if status.status is Presence.OFFLINE and not hearsay:
                    return None  # an instance we do not hold says goodbye: nothing changes
                clash = self._clash(entry, status, now)
                if clash is not None:
                    self.clashes += 1
                    return clash
        before = entry.presence if entry is not None else None
        if entry is None:
            entry = _Entry(status.id, status.name, status.capabilities, status.replicated, _wall())
            entry.settle()
            if not self._make_room(entry.cost + _INSTANCE_OVERHEAD + len(status.node or "")):
                self.refused += 1
                return IdentityClash(
                    status.id,
                    status.instance,
                    status.node,
                    f"the directory is full ({len(self)} agents, {self._bytes:,} bytes, "
                    "none offline)",
                    now,
                )
            entry.cost = 0  # counted in by _settle below
            self._entries[status.id] = entry
        self._unlist(entry)
        entry.name, entry.capabilities = status.name, status.capabilities
        entry.replicated, entry.last_seen = status.replicated, _wall()
        if status.status is Presence.OFFLINE:
            if entry.instances.pop(key, None) is not None:
                self._live_instances -= 1
        else:
            interval = self.interval_of(status)
            if key not in entry.instances:
                self._live_instances += 1
            entry.instances[key] = _Instance(key, status.node, status.status, now, interval)
            self._schedule(now + self._missed * interval, status.id, key)
        self._settle(entry, now)
        if before is entry.presence:
            return None
        if entry.presence is Presence.OFFLINE:
            reason = "said offline"
        return PresenceChange(status.id, before, entry.presence, reason, now)

    def _clash(self, entry: _Entry, status: AgentStatus, now: float) -> IdentityClash | None:
        """Why a new instance may not join ``entry`` (None: it may)."""
        instances = entry.instances
        if not instances:
            return None  # the agent is offline: a successor is welcome
        if entry.replicated and status.replicated:
            if len(instances) >= MAX_INSTANCES:
                return IdentityClash(
                    status.id,
                    status.instance,
                    status.node,
                    f"agent {status.id!r} already has {MAX_INSTANCES} instances",
                    now,
                )
            if not self._make_room(_INSTANCE_OVERHEAD):
                self.refused += 1
                return IdentityClash(
                    status.id, status.instance, status.node, "the directory is full", now
                )
            return None
        holder = max(instances.values(), key=lambda instance: instance.seen_at)
        where = f" on node {holder.node}" if holder.node else ""
        which = f"instance {holder.key}" if holder.key else "an instance that sends no id"
        mode = (
            "it is replicated but this instance is not"
            if entry.replicated
            else "it is not replicated"
        )
        return IdentityClash(
            status.id,
            status.instance,
            status.node,
            f"agent {status.id!r} is already online as {which}{where}; {mode}",
            now,
            provable=all(instance.node is not None for instance in instances.values()),
        )

    def succeed(
        self, status: AgentStatus, alive: Collection[str], now: float, reason: str
    ) -> tuple[tuple[str, ...], PresenceChange | IdentityClash | None]:
        """Record a status that clashed, now that the nodes said which instances live.

        Every instance of the agent that names a node and is not in ``alive`` is gone
        (its node died without a word: it did not answer): it is removed. Then the
        status is observed as usual, so it joins if nothing that lives holds the id.

        Args:
            status: the status that was refused as a :attr:`~IdentityClash.provable` clash.
            alive: the instances the live nodes hold the agent by.
            now: trio time.
            reason: as for :meth:`observe`.

        Returns:
            The instances removed, and what :meth:`observe` returns, as a change from
            the presence before (a successor taking over an online agent changes nothing).
        """
        entry = self._entries.get(status.id)
        if entry is None:
            return (), self.observe(status, now, reason)
        before = entry.presence
        gone = tuple(
            key
            for key, instance in entry.instances.items()
            if instance.node is not None and key not in alive
        )
        if gone:
            self._unlist(entry)
            for key in gone:
                del entry.instances[key]
                self._live_instances -= 1
            self._settle(entry, now)
        outcome = self.observe(status, now, reason)
        if isinstance(outcome, IdentityClash):
            self.clashes -= 1  # the same status, refused once: counted when first observed
            return gone, outcome
        after = entry.presence
        return gone, None if after is before else PresenceChange(
            status.id, before, after, reason, now
        )

    def merge(self, agents: Iterable[AgentInfo], now: float) -> list[PresenceChange]:
        """Adopt another directory's view for agents this one has not heard of.

        What comes from another directory is hearsay: the first status heard
        from one of those agents replaces it.
        """
        changes = []
        wall_now = _wall()
        for info in agents:
            if info.id in self._entries or not self._make_room(_ENTRY_OVERHEAD):
                continue
            age = max(0.0, (wall_now - info.last_seen).total_seconds())
            entry = _Entry(info.id, info.name, info.capabilities, info.replicated, info.last_seen)
            if info.status is not Presence.OFFLINE:
                for instance in (info.instances or (InstanceInfo(None, None),))[:MAX_INSTANCES]:
                    key = instance.id or _ANONYMOUS
                    seen = now - age
                    entry.instances[key] = _Instance(
                        key, instance.node, info.status, seen, self._default_interval, True
                    )
                    self._live_instances += 1
                    self._schedule(seen + self._missed * self._default_interval, info.id, key)
            self._entries[info.id] = entry
            self._settle(entry, now)
            changes.append(PresenceChange(info.id, None, entry.presence, "sync", now))
        return changes

    def expire(self, now: float) -> list[PresenceChange]:
        """Drop instances not heard from for too long, and forget agents offline too long.

        Returns:
            The agents that went offline.
        """
        changes = []
        touched: dict[str, Presence] = {}
        deadlines = self._deadlines
        while deadlines and deadlines[0][0] <= now:
            _due, _order, agent_id, key = heapq.heappop(deadlines)
            entry = self._entries.get(agent_id)
            instance = entry.instances.get(key) if entry is not None else None
            if entry is None or instance is None:
                continue
            if now < instance.seen_at + self._missed * instance.interval:
                continue  # heard from since: a later deadline is on the heap
            touched.setdefault(agent_id, entry.presence)
            self._unlist(entry)
            del entry.instances[key]
            self._live_instances -= 1
            self._settle(entry, now)
        for agent_id, before in touched.items():
            entry = self._entries[agent_id]
            if entry.presence is Presence.OFFLINE and before is not Presence.OFFLINE:
                changes.append(
                    PresenceChange(agent_id, before, Presence.OFFLINE, "missed heartbeats", now)
                )
        for agent_id, since in list(self._offline.items()):
            if now - since < self._forget_after:
                break  # oldest first: the rest went offline later
            self._forget(agent_id)
        if len(deadlines) > 4 * self._live_instances + 64:
            self._compact()
        return changes

    def next_deadline(self) -> float:
        """When :meth:`expire` next has something to do (``inf``: never, as things stand)."""
        soonest = self._deadlines[0][0] if self._deadlines else math.inf
        if self._offline:
            soonest = min(soonest, next(iter(self._offline.values())) + self._forget_after)
        return soonest

    def _schedule(self, due: float, agent_id: str, key: str) -> None:
        heapq.heappush(self._deadlines, (due, next(self._order), agent_id, key))

    def _compact(self) -> None:
        """Rebuild the heap from the live instances (each heartbeat left one stale deadline)."""
        self._deadlines = [
            (i.seen_at + self._missed * i.interval, next(self._order), entry.id, i.key)
            for entry in self._entries.values()
            for i in entry.instances.values()
        ]
        heapq.heapify(self._deadlines)

    def _make_room(self, cost: int) -> bool:
        while len(self._entries) >= self._max_agents or self._bytes + cost > self._max_bytes:
            if not self._offline:
                return False
            self._forget(next(iter(self._offline)))
        return True

    def _forget(self, agent_id: str) -> None:
        self._offline.pop(agent_id, None)
        entry = self._entries.pop(agent_id, None)
        if entry is not None:
            self._bytes -= entry.cost
            self._live_instances -= len(entry.instances)
            self._unlist(entry)
            self.forgotten += 1

    def _unlist(self, entry: _Entry) -> None:
        for name in entry.capabilities:
            providers = self._providers.get(name)
            if providers is not None:
                providers.discard(entry.id)
                if not providers:
                    del self._providers[name]

    def _settle(self, entry: _Entry, now: float) -> None:
        self._bytes -= entry.cost
        entry.settle()
        self._bytes += entry.cost
        if entry.presence is Presence.OFFLINE:
            self._offline.setdefault(entry.id, now)  # offline since it first went
        else:
            self._offline.pop(entry.id, None)
            for name in entry.capabilities:
                self._providers.setdefault(name, set()).add(entry.id)

    # --- reading -----------------------------------------------------------------------

    def _matching(self, capability: str | None, status: Presence | None) -> list[_Entry]:
        ids = self._providers.get(capability, ()) if capability is not None else self._entries
        entries = [self._entries[key] for key in sorted(ids)]
        if status is not None:
            entries = [entry for entry in entries if entry.presence is status]
        return entries

    def agents(
        self, *, capability: str | None = None, status: Presence | None = None
    ) -> list[AgentInfo]:
        """The known agents, sorted by id, optionally only those with a capability
        (and not offline) or in a given state."""
        return [entry.info for entry in self._matching(capability, status)]

    def encoded_agents(
        self, *, capability: str | None = None, status: Presence | None = None
    ) -> list[bytes]:
        """The same as :meth:`agents`, each entry already encoded for a listing."""
        return [entry.encoded for entry in self._matching(capability, status)]

    def get(self, agent_id: str) -> AgentInfo | None:
        """One agent, if known."""
        entry = self._entries.get(agent_id)
        return entry.info if entry is not None else None

    def providers(self, capability: str) -> list[str]:
        """Ids of the agents that are not offline and serve ``capability``."""
        return sorted(self._providers.get(capability, ()))


def _wall() -> datetime:
    return datetime.now(UTC)
