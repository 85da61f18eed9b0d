"""The directory's bookkeeping, on the virtual clock (the table is pure logic): what
it holds in bytes and deadlines stays true through expiry, forgetting, replicas and
hearsay, so its bounds bound what they claim to.

Each test reads a public figure (``size``, ``deadlines``, ``len``) or a presence; no
test reaches into the table.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import attrs
import pytest

from volta.node import Directory
from volta.protocol import AgentInfo, AgentStatus, InstanceInfo, Presence


def beat(
    agent_id: str,
    instance: str | None = None,
    *,
    interval: float = 30.0,
    replicated: bool = False,
    presence: Presence = Presence.ONLINE,
) -> AgentStatus:
    return AgentStatus(
        id=agent_id,
        name=agent_id.title(),
        capabilities=("work",),
        status=presence,
        heartbeat_interval=interval,
        instance=instance,
        node="node-" + (instance or "x"),
        replicated=replicated,
    )


def test_a_forgotten_agent_gives_back_the_bytes_it_took() -> None:
    directory = Directory(30.0, forget_after=10.0)
    directory.observe(beat("keeper"), 0.0, "announce")
    baseline = directory.size
    directory.observe(beat("leaver"), 0.0, "announce")
    assert directory.size > baseline
    directory.observe(beat("leaver", presence=Presence.OFFLINE), 1.0, "heartbeat")
    directory.expire(11.0)
    assert directory.get("leaver") is None
    assert directory.size == baseline
    assert directory.forgotten == 1


def test_a_deadline_of_an_agent_already_forgotten_is_skipped() -> None:
    """An agent that said offline is forgotten (10 s) long before its last heartbeat's
    deadline (90 s) comes due; the sweep then meets a deadline with no entry."""
    directory = Directory(30.0, forget_after=10.0)
    directory.observe(beat("gone"), 0.0, "announce")
    directory.observe(beat("gone", presence=Presence.OFFLINE), 1.0, "heartbeat")
    assert directory.expire(12.0) == []
    assert directory.get("gone") is None
    assert directory.deadlines == 1
    assert directory.expire(100.0) == []
    assert (directory.deadlines, directory.next_deadline()) == (0, math.inf)


def test_one_replica_missing_its_beats_is_no_change_while_another_beats() -> None:
    directory = Directory(30.0, missed=3)
    directory.observe(beat("rep", "a", interval=1.0, replicated=True), 0.0, "announce")
    directory.observe(beat("rep", "b", interval=10.0, replicated=True), 0.0, "announce")
    assert directory.expire(5.0) == [], "an instance went, the agent did not"
    listed = directory.get("rep")
    assert listed is not None
    assert (listed.status, [i.id for i in listed.instances]) == (Presence.ONLINE, ["b"])
    [change] = directory.expire(30.0)
    assert (change.agent, change.after, change.reason) == (
        "rep",
        Presence.OFFLINE,
        "missed heartbeats",
    )


def beat_until(directory: Directory, agent_id: str, beats: int, every: float) -> list[int]:
    """``beats`` heartbeats ``every`` seconds from t=1, each followed by a sweep (as the
    service does); the deadlines held after each sweep."""
    held = []
    for n in range(beats):
        now = 1.0 + n * every
        directory.observe(beat(agent_id), now, "heartbeat")
        directory.expire(now)
        held.append(directory.deadlines)
    return held


def test_stale_deadlines_are_compacted_exactly_past_four_per_live_instance_and_64() -> None:
    """An agent beating far faster than its 30 s interval leaves a stale deadline per
    beat; with one live instance the heap is rebuilt when it would hold 69."""
    directory = Directory(30.0)
    held = beat_until(directory, "eager", beats=200, every=0.01)
    assert max(held) == 68
    assert held[67] == 68
    assert held[68] == 1


def test_compaction_counts_only_live_instances() -> None:
    """Instances that expired, said offline, were forgotten or were hearsay count no
    more: after 70 agents have come and gone, an eager agent's heap is still bounded by
    4 x the live instances + 64."""
    directory = Directory(30.0, missed=1, forget_after=5.0)
    for n in range(50):
        directory.observe(beat(f"brief-{n}", interval=1.0), 0.0, "announce")
    for n in range(20):
        directory.observe(beat(f"polite-{n}"), 0.0, "announce")
        directory.observe(beat(f"polite-{n}", presence=Presence.OFFLINE), 0.1, "heartbeat")
    directory.observe(beat("learned"), 0.0, "announce")
    heard = directory.get("learned")
    assert heard is not None
    hearsay = AgentInfo(
        id="told",
        name="Told",
        capabilities=("work",),
        status=Presence.ONLINE,
        last_seen=datetime.now(UTC),
        instances=(InstanceInfo("t1", "far"), InstanceInfo("t2", "far")),
        replicated=True,
    )
    directory.merge([hearsay], 0.0)
    directory.observe(beat("told", "t3", replicated=True), 0.5, "heartbeat")  # replaces hearsay
    directory.expire(1.0)  # the 50 brief ones miss their beat
    directory.expire(7.0)  # ... and are forgotten
    assert len(directory) == 2  # learned and told
    held = beat_until(directory, "eager", beats=300, every=0.01)
    # Live now: learned, told (t3), eager: the heap is rebuilt past 4 x 3 + 64 = 76.
    assert max(held) <= 76, f"the heap held {max(held)} deadlines for 3 live instances"
    assert max(held) >= 70, f"rebuilt at {max(held)} deadlines: live instances undercounted"


def test_the_byte_bound_counts_a_newcomer_with_its_first_instance_and_node() -> None:
    """A table of exactly two entries' bytes takes the second agent; one byte less
    refuses it (the newcomer's cost includes its instance and its node's name)."""
    probe = Directory(30.0)
    probe.observe(beat("agent-1", "instance-1"), 0.0, "announce")
    one = probe.size
    for max_bytes, admitted in ((2 * one, True), (2 * one - 1, False)):
        directory = Directory(30.0, max_bytes=max_bytes)
        directory.observe(beat("agent-1", "instance-1"), 0.0, "announce")
        directory.observe(beat("agent-2", "instance-2"), 0.0, "announce")
        assert (directory.get("agent-2") is not None) is admitted, max_bytes
        assert directory.size <= max_bytes


def test_after_a_compaction_an_agent_that_stops_beating_still_goes_offline_on_time() -> None:
    """The heap is rebuilt at the 69th beat, the last: the deadline rebuilt for it is
    the one that must take the agent offline 3 x 30 s later."""
    directory = Directory(30.0, missed=3)
    held = beat_until(directory, "eager", beats=69, every=0.01)
    assert held[-1] == 1, "no compaction at the last beat: no test"
    last = 1.0 + 68 * 0.01
    assert directory.next_deadline() == pytest.approx(last + 90.0)
    assert directory.expire(last + 89.9) == []
    [change] = directory.expire(last + 90.0)
    assert (change.agent, change.after) == ("eager", Presence.OFFLINE)


@pytest.mark.parametrize(
    ("field", "longer"),
    [
        ("id", {"id": "agent-" + "x" * 100}),
        ("name", {"name": "N" * 101}),
        ("capability", {"capabilities": ("work" + "x" * 100,)}),
        ("capabilities", {"capabilities": ("work", "w" * 92)}),  # 92 characters + 8
        ("node", {"node": "node-i" + "x" * 100}),
    ],
)
def test_each_character_of_an_entry_counts_once_in_its_bytes(
    field: str, longer: dict[str, Any]
) -> None:
    """A longer id, name, capability or node name costs exactly its extra characters;
    one more capability, its characters and 8 bytes."""
    base = attrs.evolve(beat("agent-", "i"), name="N")
    sizes = []
    for status in (base, attrs.evolve(base, **longer)):
        directory = Directory(30.0)
        directory.observe(status, 0.0, "announce")
        sizes.append(directory.size)
    assert sizes[1] - sizes[0] == 100, field


def test_by_default_three_missed_beats_of_30_s_and_an_hour_offline_are_forgotten() -> None:
    directory = Directory()
    directory.observe(attrs.evolve(beat("plain"), heartbeat_interval=None), 0.0, "announce")
    assert directory.next_deadline() == 90.0
    assert directory.expire(89.9) == []
    [change] = directory.expire(90.0)
    assert change.after is Presence.OFFLINE
    directory.expire(90.0 + 3599.9)
    assert directory.get("plain") is not None
    directory.expire(90.0 + 3600.0)
    assert directory.get("plain") is None
