"""Discovery: who exists, who is online, built from announces and heartbeats.

:class:`Directory` is the table: pure logic, clock passed in, so its timing is
tested on a virtual clock. :class:`~volta.actors.DirectoryService` feeds it from
the bus and answers ``mcp.list_agents`` for it.

An agent runs as one or more *instances* (each status says which, in
``instance``). The table keeps, per agent id, the instances that are not
offline:

- an instance counts as offline after ``offline_after_missed`` heartbeat
  intervals without news (its own interval if it says, clamped to
  [:data:`MIN_HEARTBEAT`, :data:`MAX_HEARTBEAT`], else the directory's
  default), or at once when it says ``offline``; an ``offline`` from an instance
  the table does not hold changes nothing (a stopped duplicate cannot take the
  real agent down);
- the agent is online while any instance is (busy if every instance is busy);
- a second instance is accepted only for an agent that is ``replicated`` (and
  only when the new one says so too). For any other agent it is an identity
  clash: recorded, reported, not stored, unless the instance it would replace
  has been silent for a full heartbeat interval (it died without a word and
  this is its successor).

Bounds: an agent offline for longer than ``forget_after`` is forgotten; the
table holds at most ``max_agents`` agents (when full, the one offline longest
makes room; when none is offline, the newcomer is refused) and at most
:data:`MAX_INSTANCES` instances per agent. Every entry is encoded when it is
stored, so a listing can never meet an entry it cannot send.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

import attrs

from ._protocol import AgentInfo, AgentStatus, InstanceInfo, Presence, encode_agent_info

MIN_HEARTBEAT = 0.05
"""Shortest heartbeat interval the directory believes (a faster claim is clamped)."""
MAX_HEARTBEAT = 3600.0
"""Longest heartbeat interval the directory believes (``1e300`` would never expire)."""
MAX_INSTANCES = 256
"""Most instances one (replicated) agent may have in the table."""

_MIN_SWEEP = 0.01
_ANONYMOUS = ""  # the instance key of a peer that sends no instance id


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
    info: AgentInfo | None = None
    encoded: bytes = b""

    def settle(self) -> None:
        """Derive the presence, the list entry and its encoding from the instances."""
        states = {instance.status for instance in self.instances.values()}
        if Presence.ONLINE in states:
            self.presence = Presence.ONLINE
        elif states:
            self.presence = Presence.BUSY
        else:
            self.presence = Presence.OFFLINE
        self.info = AgentInfo(
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
        self.encoded = encode_agent_info(self.info)


def _clamp(interval: float) -> float:
    return min(MAX_HEARTBEAT, max(MIN_HEARTBEAT, interval))


class Directory:
    """The table of known agents."""

    def __init__(
        self,
        default_interval: float = 30.0,
        missed: int = 3,
        *,
        forget_after: float = 3600.0,
        max_agents: int = 100_000,
    ) -> None:
        """Create an empty table.

        Args:
            default_interval: heartbeat interval of agents that do not state theirs.
            missed: heartbeats missed before an instance counts as offline.
            forget_after: seconds after which an agent that is offline is forgotten.
            max_agents: most agents the table holds.

        Raises:
            ValueError: a value is out of range.
        """
        if default_interval <= 0 or missed < 1 or forget_after <= 0 or max_agents < 1:
            raise ValueError(
                "default_interval and forget_after must be > 0, missed and max_agents >= 1"
            )
        self._default_interval = _clamp(default_interval)
        self._missed = missed
        self._forget_after = forget_after
        self._max_agents = max_agents
        self._entries: dict[str, _Entry] = {}
        # capability -> ids of the agents serving it that are not offline
        self._providers: dict[str, set[str]] = {}
        # ids of the agents that are offline -> when they went offline, oldest first
        self._offline: dict[str, float] = {}
        self.clashes = 0
        """Statuses refused as identity clashes."""
        self.refused = 0
        """New agents refused because the table was full of online ones."""
        self.forgotten = 0
        """Agents forgotten (offline too long, or making room)."""

    def __len__(self) -> int:
        return len(self._entries)

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
            if any(instance.hearsay for instance in instances.values()):
                # What we heard ourselves replaces what another directory told us.
                for stale in [k for k, i in instances.items() if i.hearsay]:
                    del instances[stale]
            if key not in instances:
                if status.status is Presence.OFFLINE:
                    return None  # an instance we do not hold says goodbye: nothing changes
                clash = self._clash(entry, status, key, now)
                if clash is not None:
                    self.clashes += 1
                    return clash
        elif not self._make_room():
            self.refused += 1
            return IdentityClash(
                status.id,
                status.instance,
                status.node,
                f"the directory is full ({self._max_agents} agents, none offline)",
                now,
            )
        before = entry.presence if entry is not None else None
        if entry is None:
            entry = _Entry(status.id, status.name, status.capabilities, status.replicated, _wall())
            self._entries[status.id] = entry
        self._unlist(entry)
        entry.name, entry.capabilities = status.name, status.capabilities
        entry.replicated, entry.last_seen = status.replicated, _wall()
        if status.status is Presence.OFFLINE:
            entry.instances.pop(key, None)
        else:
            entry.instances[key] = _Instance(
                key, status.node, status.status, now, self.interval_of(status)
            )
        self._settle(entry, now)
        if before is entry.presence:
            return None
        if entry.presence is Presence.OFFLINE:
            reason = "said offline"
        return PresenceChange(status.id, before, entry.presence, reason, now)

    def _clash(
        self, entry: _Entry, status: AgentStatus, key: str, now: float
    ) -> IdentityClash | None:
        """Why a new instance may not join ``entry`` (None: it may)."""
        instances = entry.instances
        if not instances:
            return None
        if entry.replicated and status.replicated:
            if len(instances) >= MAX_INSTANCES:
                return IdentityClash(
                    status.id,
                    status.instance,
                    status.node,
                    f"agent {status.id!r} already has {MAX_INSTANCES} instances",
                    now,
                )
            return None
        holder = max(instances.values(), key=lambda instance: instance.seen_at)
        if now - holder.seen_at >= holder.interval:
            # The holder missed a beat: it died without a word, and this is its successor.
            instances.clear()
            return None
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
        )

    def merge(self, agents: Iterable[AgentInfo], now: float) -> list[PresenceChange]:
        """Adopt another directory's view for agents this one has not heard of.

        What comes from another directory is hearsay: the first status heard
        from one of those agents replaces it.
        """
        changes = []
        wall_now = _wall()
        for info in agents:
            if info.id in self._entries or not self._make_room():
                continue
            age = max(0.0, (wall_now - info.last_seen).total_seconds())
            entry = _Entry(info.id, info.name, info.capabilities, info.replicated, info.last_seen)
            if info.status is not Presence.OFFLINE:
                for instance in info.instances or (InstanceInfo(None, None),):
                    key = instance.id or _ANONYMOUS
                    entry.instances[key] = _Instance(
                        key, instance.node, info.status, now - age, self._default_interval, True
                    )
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
        for entry in self._entries.values():
            if not entry.instances:
                continue
            silent = [
                key
                for key, instance in entry.instances.items()
                if now >= instance.seen_at + self._missed * instance.interval
            ]
            if not silent:
                continue
            before = entry.presence
            self._unlist(entry)
            for key in silent:
                del entry.instances[key]
            self._settle(entry, now)
            if entry.presence is Presence.OFFLINE:
                changes.append(
                    PresenceChange(entry.id, before, Presence.OFFLINE, "missed heartbeats", now)
                )
        for agent_id, since in list(self._offline.items()):
            if now - since < self._forget_after:
                break  # oldest first: the rest went offline later
            self._forget(agent_id)
        return changes

    def _make_room(self) -> bool:
        if len(self._entries) < self._max_agents:
            return True
        if not self._offline:
            return False
        self._forget(next(iter(self._offline)))
        return True

    def _forget(self, agent_id: str) -> None:
        self._offline.pop(agent_id, None)
        if self._entries.pop(agent_id, None) is not None:
            self.forgotten += 1

    def _unlist(self, entry: _Entry) -> None:
        for name in entry.capabilities:
            providers = self._providers.get(name)
            if providers is not None:
                providers.discard(entry.id)
                if not providers:
                    del self._providers[name]

    def _settle(self, entry: _Entry, now: float) -> None:
        was_offline = entry.id in self._offline
        entry.settle()
        if entry.presence is Presence.OFFLINE:
            if not was_offline:
                self._offline[entry.id] = now
        else:
            self._offline.pop(entry.id, None)
            for name in entry.capabilities:
                self._providers.setdefault(name, set()).add(entry.id)

    # --- reading -----------------------------------------------------------------------

    def sweep_period(self, interval: float | None = None) -> float:
        """How often to call :meth:`expire`: half the shortest heartbeat interval.

        So an instance is dropped between ``missed`` and ``missed + 0.5``
        intervals after it was last heard from, at a cost of one pass over the
        table per half interval (not one per heartbeat).

        Args:
            interval: the period for this one interval instead (O(1); the full
                answer is a pass over the table, done once per sweep).
        """
        if interval is None:
            interval = min(
                (
                    instance.interval
                    for entry in self._entries.values()
                    for instance in entry.instances.values()
                ),
                default=self._default_interval,
            )
        return max(_MIN_SWEEP, interval / 2)

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
        return [entry.info for entry in self._matching(capability, status) if entry.info]

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
