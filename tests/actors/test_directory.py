"""The directory table on a virtual clock (no bus: the table is pure logic)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import trio
import trio.testing

from volta.actors import (
    AgentInfo,
    AgentStatus,
    Directory,
    Presence,
    PresenceChange,
)


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


async def sweep_until_offline(directory: Directory, agent_id: str) -> float:
    """Run the sweep loop the way DirectoryService does; return the virtual time of offline."""
    while True:
        await trio.sleep(directory.sweep_period())
        for change in directory.expire(trio.current_time()):
            if change.agent == agent_id:
                return trio.current_time()


async def test_offline_after_the_configured_missed_heartbeats(
    autojump_clock: trio.testing.MockClock,
) -> None:
    directory = Directory(default_interval=30.0, missed=3)
    change = directory.observe(status("alpha"), trio.current_time(), "announce")
    assert isinstance(change, PresenceChange)
    assert (change.before, change.after, change.reason) == (None, Presence.ONLINE, "announce")
    offline_at = await sweep_until_offline(directory, "alpha")
    # 3 x 30 s after it was last heard from, found by a sweep every 15 s.
    assert offline_at == 90.0
    assert directory.get("alpha").status is Presence.OFFLINE  # type: ignore[union-attr]


async def test_each_agent_is_judged_by_its_own_interval(
    autojump_clock: trio.testing.MockClock,
) -> None:
    directory = Directory(default_interval=30.0, missed=2)
    directory.observe(status("fast", interval=1.0), 0.0, "heartbeat")
    directory.observe(status("slow"), 0.0, "heartbeat")
    assert directory.sweep_period() == 0.5
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
