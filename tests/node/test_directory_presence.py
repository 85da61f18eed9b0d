"""Presence in the directory: going offline, coming back, being forgotten, and
listing by state.

On ``autojump_clock`` where time passes (the sweeper sleeps until the directory's
next deadline, as DirectoryService does), so each assertion is an exact virtual time.
"""

from __future__ import annotations

import json

import trio
import trio.testing

from volta.node import Directory, PresenceChange
from volta.protocol import AgentStatus, Presence


def status(
    agent_id: str,
    presence: Presence = Presence.ONLINE,
    *,
    capabilities: tuple[str, ...] = (),
) -> AgentStatus:
    """A status from an agent with 10 s heartbeats."""
    return AgentStatus(
        id=agent_id,
        name=agent_id.title(),
        capabilities=capabilities,
        status=presence,
        heartbeat_interval=10.0,
    )


async def sweep_until_forgotten(directory: Directory, agent_id: str, within: float) -> float:
    """Sleep until each next deadline and expire, as DirectoryService does; the virtual
    time at which ``agent_id`` was forgotten (bounded: ``within`` virtual seconds)."""
    with trio.fail_after(within):
        while directory.get(agent_id) is not None:
            await trio.sleep_until(directory.next_deadline())
            directory.expire(trio.current_time())
    return trio.current_time()


def test_a_presence_change_says_who_when_and_why() -> None:
    directory = Directory()
    change = directory.observe(status("alpha"), 7.0, "announce")
    assert change == PresenceChange("alpha", None, Presence.ONLINE, "announce", 7.0)
    busy = directory.observe(status("alpha", Presence.BUSY), 8.0, "heartbeat")
    assert busy == PresenceChange("alpha", Presence.ONLINE, Presence.BUSY, "heartbeat", 8.0)


async def test_an_agent_back_online_is_not_forgotten_while_it_beats(
    autojump_clock: trio.testing.MockClock,
) -> None:
    directory = Directory(default_interval=10.0, missed=3, forget_after=100.0)
    directory.observe(status("alpha", capabilities=("echo",)), 0.0, "announce")
    directory.observe(status("alpha", Presence.OFFLINE), 10.0, "heartbeat")
    await trio.sleep(20.0)
    back = directory.observe(status("alpha", capabilities=("echo",)), 20.0, "announce")
    assert back == PresenceChange("alpha", Presence.OFFLINE, Presence.ONLINE, "announce", 20.0)
    # Well past forget_after since it went offline: it beats, so it stays.
    while trio.current_time() < 300.0:
        await trio.sleep(10.0)
        directory.observe(status("alpha", capabilities=("echo",)), trio.current_time(), "x")
        assert directory.expire(trio.current_time()) == []
    assert trio.current_time() == 300.0
    listed = directory.get("alpha")
    assert listed is not None
    assert listed.status is Presence.ONLINE
    assert directory.providers("echo") == ["alpha"]
    assert directory.forgotten == 0
    # Silent from now on: offline 30 s later, forgotten 100 s after that.
    assert await sweep_until_forgotten(directory, "alpha", within=1000) == 430.0


async def test_a_repeated_offline_does_not_postpone_forgetting(
    autojump_clock: trio.testing.MockClock,
) -> None:
    directory = Directory(default_interval=10.0, forget_after=100.0)
    directory.observe(status("alpha"), 0.0, "announce")
    await trio.sleep(10.0)
    directory.observe(status("alpha", Presence.OFFLINE), trio.current_time(), "heartbeat")
    for _ in range(5):
        await trio.sleep(15.0)  # t = 25 ... 85: it keeps saying so
        offline = status("alpha", Presence.OFFLINE)
        assert directory.observe(offline, trio.current_time(), "heartbeat") is None
    assert await sweep_until_forgotten(directory, "alpha", within=1000) == 110.0
    assert directory.forgotten == 1


def test_an_instance_gone_before_its_deadline_does_not_stop_the_sweep() -> None:
    directory = Directory(default_interval=10.0, missed=3)
    directory.observe(status("early"), 0.0, "announce")  # due at 30
    directory.observe(status("early", Presence.OFFLINE), 1.0, "heartbeat")  # its deadline stays
    directory.observe(status("late"), 2.0, "announce")  # due at 32
    assert directory.expire(40.0) == [
        PresenceChange("late", Presence.ONLINE, Presence.OFFLINE, "missed heartbeats", 40.0)
    ]


def test_an_instance_heard_from_since_its_deadline_does_not_stop_the_sweep() -> None:
    directory = Directory(default_interval=10.0, missed=3)
    directory.observe(status("beating"), 0.0, "announce")  # due at 30 ...
    directory.observe(status("busy", Presence.BUSY), 1.0, "announce")  # due at 31
    directory.observe(status("beating"), 5.0, "heartbeat")  # ... now at 35
    assert directory.expire(32.0) == [
        PresenceChange("busy", Presence.BUSY, Presence.OFFLINE, "missed heartbeats", 32.0)
    ]
    listed = directory.get("beating")
    assert listed is not None
    assert listed.status is Presence.ONLINE


def test_a_listing_can_ask_for_one_state() -> None:
    directory = Directory()
    directory.observe(status("a-online", capabilities=("x",)), 0.0, "announce")
    directory.observe(status("b-busy", Presence.BUSY, capabilities=("x",)), 0.0, "announce")
    directory.observe(status("c-offline", Presence.OFFLINE), 0.0, "announce")
    directory.observe(status("d-online"), 0.0, "announce")

    def ids(state: Presence | None, capability: str | None = None) -> list[str]:
        listed = [a.id for a in directory.agents(capability=capability, status=state)]
        encoded = directory.encoded_agents(capability=capability, status=state)
        assert [json.loads(entry)["id"] for entry in encoded] == listed
        return listed

    assert ids(None) == ["a-online", "b-busy", "c-offline", "d-online"]
    assert ids(Presence.ONLINE) == ["a-online", "d-online"]
    assert ids(Presence.BUSY) == ["b-busy"]
    assert ids(Presence.OFFLINE) == ["c-offline"]
    assert ids(Presence.ONLINE, "x") == ["a-online"]
    assert ids(None, "x") == ["a-online", "b-busy"]
