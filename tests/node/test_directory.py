"""The directory table on a virtual clock (no bus: the table is pure logic)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
import pytest
import trio
import trio.testing

from volta.node import Directory, IdentityClash, PresenceChange
from volta.protocol import AgentInfo, AgentStatus, Presence


def status(
    agent_id: str,
    presence: Presence = Presence.ONLINE,
    interval: float | None = None,
    capabilities: tuple[str, ...] = (),
) -> AgentStatus:
    return AgentStatus(
        id=agent_id,
        name=agent_id.title(),
        capabilities=capabilities,
        status=presence,
        heartbeat_interval=interval,
    )


async def sweep_until_offline(directory: Directory, agent_id: str, within: float = 1000) -> float:
    """Run the sweep loop the way DirectoryService does; return the virtual time of offline.

    It sleeps until the directory's next deadline and sweeps. Bounded on the virtual
    clock: a directory that never marks the agent offline
    fails here after ``within`` virtual seconds, at once in real time.
    """
    try:
        with trio.fail_after(within):
            while True:
                await trio.sleep_until(directory.next_deadline())
                for change in directory.expire(trio.current_time()):
                    if change.agent == agent_id:
                        return trio.current_time()
    except trio.TooSlowError:
        raise AssertionError(f"{agent_id} was never marked offline") from None


async def test_offline_after_the_configured_missed_heartbeats(
    autojump_clock: trio.testing.MockClock,
) -> None:
    directory = Directory(default_interval=30.0, missed=3)
    change = directory.observe(status("alpha"), trio.current_time(), "announce")
    assert isinstance(change, PresenceChange)
    assert (change.before, change.after, change.reason) == (None, Presence.ONLINE, "announce")
    offline_at = await sweep_until_offline(directory, "alpha")
    # 3 x 30 s after it was last heard from, found by the sweep due then.
    assert offline_at == 90.0
    assert directory.get("alpha").status is Presence.OFFLINE  # type: ignore[union-attr]


async def test_each_agent_is_judged_by_its_own_interval(
    autojump_clock: trio.testing.MockClock,
) -> None:
    directory = Directory(default_interval=30.0, missed=2)
    directory.observe(status("fast", interval=1.0), 0.0, "heartbeat")
    directory.observe(status("slow"), 0.0, "heartbeat")
    assert directory.next_deadline() == 2.0
    assert await sweep_until_offline(directory, "fast") == 2.0
    assert directory.get("slow").status is Presence.ONLINE  # type: ignore[union-attr]


async def test_heartbeats_keep_an_agent_online(autojump_clock: trio.testing.MockClock) -> None:
    directory = Directory(default_interval=1.0, missed=3)
    for _ in range(20):
        directory.observe(status("alpha", interval=1.0), trio.current_time(), "heartbeat")
        await trio.sleep(1.0)
        assert directory.expire(trio.current_time()) == []
    assert trio.current_time() == 20.0


def test_saying_offline_counts_at_once() -> None:
    directory = Directory()
    directory.observe(status("alpha"), 0.0, "announce")
    change = directory.observe(status("alpha", Presence.OFFLINE), 1.0, "heartbeat")
    assert isinstance(change, PresenceChange)
    assert (change.after, change.reason) == (Presence.OFFLINE, "said offline")
    assert directory.expire(1000.0) == []  # already offline: no second change


def test_no_change_no_event_and_busy_is_a_change() -> None:
    directory = Directory()
    assert directory.observe(status("alpha"), 0.0, "announce") is not None
    assert directory.observe(status("alpha"), 1.0, "heartbeat") is None
    busy = directory.observe(status("alpha", Presence.BUSY), 2.0, "heartbeat")
    assert isinstance(busy, PresenceChange)
    assert (busy.before, busy.after) == (Presence.ONLINE, Presence.BUSY)


def test_providers_are_online_agents_with_the_capability() -> None:
    directory = Directory()
    directory.observe(status("a", capabilities=("x", "y")), 0.0, "announce")
    directory.observe(status("b", capabilities=("y",)), 0.0, "announce")
    directory.observe(status("c", Presence.OFFLINE, capabilities=("y",)), 0.0, "announce")
    directory.observe(status("d", Presence.BUSY, capabilities=("y",)), 0.0, "announce")
    assert sorted(directory.providers("y")) == ["a", "b", "d"]
    assert directory.providers("x") == ["a"]
    assert directory.providers("z") == []


def test_agents_are_listed_sorted_with_their_details() -> None:
    directory = Directory()
    directory.observe(status("zeta", capabilities=("q",)), 0.0, "announce")
    directory.observe(status("alpha"), 0.0, "announce")
    listed = directory.agents()
    assert [a.id for a in listed] == ["alpha", "zeta"]
    assert listed[1].name == "Zeta"
    assert listed[1].capabilities == ("q",)
    assert listed[1].last_seen.tzinfo is not None


def test_merge_adopts_only_unknown_agents_and_keeps_their_age() -> None:
    directory = Directory(default_interval=10.0, missed=3)
    directory.observe(status("alpha"), 100.0, "heartbeat")
    ten_seconds_ago = datetime.now(UTC) - timedelta(seconds=10)
    changes = directory.merge(
        [
            AgentInfo("alpha", "Stale", (), Presence.OFFLINE, ten_seconds_ago),
            AgentInfo("beta", "Beta", ("x",), Presence.ONLINE, ten_seconds_ago),
        ],
        now=100.0,
    )
    assert [(c.agent, c.reason) for c in changes] == [("beta", "sync")]
    assert directory.get("alpha").status is Presence.ONLINE  # type: ignore[union-attr]
    # beta was last heard of 10 s ago: it expires 20 s from now, not 30.
    assert directory.expire(119.0) == []
    assert [c.agent for c in directory.expire(120.5)] == ["beta"]


def test_invalid_settings() -> None:
    with pytest.raises(ValueError, match="default_interval"):
        Directory(default_interval=0)
    with pytest.raises(ValueError, match="missed"):
        Directory(missed=0)


def instance(
    agent_id: str, key: str, presence: Presence = Presence.ONLINE, **changes: Any
) -> AgentStatus:
    """A status from one instance (10 s heartbeats) of an agent."""
    values: dict[str, Any] = {"instance": key, "node": f"node-{key}", "heartbeat_interval": 10.0}
    values.update(changes)
    return attrs.evolve(status(agent_id, presence), **values)


def test_a_second_instance_of_a_single_agent_is_a_clash() -> None:
    directory = Directory()
    directory.observe(instance("alpha", "a1"), 0.0, "announce")
    clash = directory.observe(instance("alpha", "a2", capabilities=("steal",)), 1.0, "announce")
    assert isinstance(clash, IdentityClash)
    assert clash.reason == (
        "agent 'alpha' is already online as instance a1 on node node-a1; it is not replicated"
    )
    assert directory.providers("steal") == []
    assert [i.id for i in directory.get("alpha").instances] == ["a1"]  # type: ignore[union-attr]
    assert directory.clashes == 1


def test_a_successor_is_accepted_once_the_holder_has_gone_offline() -> None:
    """There is no moment when a healthy holder can be replaced: not even just before
    its next beat is due (a forger timing its announce found that window once)."""
    directory = Directory(missed=3)
    directory.observe(instance("alpha", "old"), 0.0, "announce")
    for moment in (9.9, 10.0, 29.999):  # up to a beat late, and more: still the holder's
        assert isinstance(directory.observe(instance("alpha", "new"), moment, "x"), IdentityClash)
    assert directory.expire(30.0)  # three missed 10 s beats: the holder is offline
    assert directory.observe(instance("alpha", "new"), 30.0, "announce") is not None
    assert [i.id for i in directory.get("alpha").instances] == ["new"]  # type: ignore[union-attr]


def test_instances_of_a_replicated_agent_come_and_go_one_by_one() -> None:
    directory = Directory()
    directory.observe(instance("worker", "w1", replicated=True), 0.0, "announce")
    assert directory.observe(instance("worker", "w2", replicated=True), 0.0, "announce") is None
    assert len(directory.get("worker").instances) == 2  # type: ignore[union-attr]
    # One says offline: the agent stays online on the other.
    offline = instance("worker", "w1", Presence.OFFLINE, replicated=True)
    assert directory.observe(offline, 1.0, "heartbeat") is None
    info = directory.get("worker")
    assert info is not None
    assert (info.status, [i.id for i in info.instances]) == (Presence.ONLINE, ["w2"])
    # An offline from an instance that is not there changes nothing.
    assert directory.observe(instance("worker", "w9", Presence.OFFLINE), 2.0, "heartbeat") is None
    last = directory.observe(instance("worker", "w2", Presence.OFFLINE, replicated=True), 3, "x")
    assert isinstance(last, PresenceChange)
    assert (last.after, last.reason) == (Presence.OFFLINE, "said offline")


def test_a_single_instance_cannot_join_a_replicated_agent() -> None:
    directory = Directory()
    directory.observe(instance("worker", "w1", replicated=True), 0.0, "announce")
    clash = directory.observe(instance("worker", "w2"), 0.0, "announce")
    assert isinstance(clash, IdentityClash)
    assert clash.reason.endswith("it is replicated but this instance is not")


async def test_agents_offline_too_long_are_forgotten(
    autojump_clock: trio.testing.MockClock,
) -> None:
    directory = Directory(default_interval=10.0, missed=1, forget_after=100.0)
    directory.observe(status("gone"), 0.0, "announce")
    offline_at = await sweep_until_offline(directory, "gone")
    assert offline_at == 10.0
    await trio.sleep(40.0)
    directory.observe(status("left", Presence.OFFLINE), trio.current_time(), "heartbeat")
    await trio.sleep(60.0)  # t = 110: gone forgotten, left not
    directory.expire(trio.current_time())
    assert (directory.get("gone"), len(directory)) == (None, 1)
    await trio.sleep(40.0)  # t = 150: left has been offline for 100 s
    directory.expire(trio.current_time())
    assert len(directory) == 0
    assert directory.forgotten == 2


def test_a_full_table_makes_room_oldest_offline_first_then_refuses() -> None:
    directory = Directory(max_agents=3)
    directory.observe(status("on"), 0.0, "announce")
    directory.observe(status("off-early", Presence.OFFLINE), 1.0, "announce")
    directory.observe(status("off-late", Presence.OFFLINE), 2.0, "announce")
    directory.observe(status("newcomer"), 3.0, "announce")
    assert directory.get("off-early") is None
    assert directory.get("off-late") is not None
    directory.observe(status("another"), 4.0, "announce")
    assert directory.get("off-late") is None
    refused = directory.observe(status("one-too-many"), 5.0, "announce")
    assert isinstance(refused, IdentityClash)
    assert refused.reason.startswith("the directory is full (3 agents, ")
    assert (len(directory), directory.refused) == (3, 1)


async def test_heartbeat_intervals_from_the_wire_are_clamped(
    autojump_clock: trio.testing.MockClock,
) -> None:
    directory = Directory(default_interval=30.0, missed=3)
    directory.observe(status("forever", interval=1e300), 0.0, "announce")
    directory.observe(status("frantic", interval=1e-9), 0.0, "announce")
    assert directory.next_deadline() == pytest.approx(0.15)  # 3 x the 0.05 s floor, not 3e-9
    assert await sweep_until_offline(directory, "frantic") == pytest.approx(0.15)
    # An hour is the ceiling: 1e300 s would never expire.
    assert await sweep_until_offline(directory, "forever", within=20_000) == pytest.approx(
        3 * 3600.0, abs=1.0
    )
