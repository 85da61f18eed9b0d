"""Directory.merge: what a node adopts from another directory's listing (hearsay).

Pure logic: trio times are numbers passed in. A ``last_seen`` in the future makes
an entry's age exactly 0, so deadlines can be asserted exactly.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import attrs

from volta.node import Directory, PresenceChange
from volta.node._directory import MAX_INSTANCES
from volta.protocol import AgentInfo, AgentStatus, InstanceInfo, Presence

IN_AN_HOUR = datetime.now(UTC) + timedelta(hours=1)  # an age of 0, whatever the test's pace


def info(
    agent_id: str,
    presence: Presence = Presence.ONLINE,
    *instances: InstanceInfo,
    **changes: Any,
) -> AgentInfo:
    entry = AgentInfo(agent_id, agent_id.title(), (), presence, IN_AN_HOUR, instances)
    return attrs.evolve(entry, **changes)


def heard(agent_id: str, instance: str, presence: Presence = Presence.ONLINE) -> AgentStatus:
    """A status the agent sends itself (10 s heartbeats)."""
    return AgentStatus(
        id=agent_id,
        name=agent_id.title(),
        capabilities=("echo",),
        status=presence,
        heartbeat_interval=10.0,
        instance=instance,
        node=f"node-{instance}",
    )


def test_a_merged_entry_is_listed_as_the_other_directory_listed_it() -> None:
    listing = [
        info(
            "alpha",
            Presence.ONLINE,
            InstanceInfo("a1", "node-1"),
            name="Alpha One",
            capabilities=("echo", "sum"),
        ),
        info("gone", Presence.OFFLINE, capabilities=("echo",)),
        info(
            "worker",
            Presence.BUSY,
            InstanceInfo("w1", "node-1"),
            InstanceInfo("w2", "node-2"),
            InstanceInfo(None, None),
            replicated=True,
        ),
    ]
    directory = Directory(default_interval=10.0)
    changes = directory.merge(listing, 5.0)
    assert changes == [
        PresenceChange("alpha", None, Presence.ONLINE, "sync", 5.0),
        PresenceChange("gone", None, Presence.OFFLINE, "sync", 5.0),
        PresenceChange("worker", None, Presence.BUSY, "sync", 5.0),
    ]
    assert directory.agents() == listing
    assert directory.providers("echo") == ["alpha"]  # gone is offline
    assert directory.providers("sum") == ["alpha"]


def test_an_online_entry_without_instances_gets_one_that_sends_no_id() -> None:
    directory = Directory()
    directory.merge([info("peer")], 0.0)
    assert directory.agents() == [info("peer", Presence.ONLINE, InstanceInfo(None, None))]


def test_merged_instances_expire_by_the_entry_age_and_the_default_interval() -> None:
    directory = Directory(default_interval=10.0, missed=3)
    directory.merge([info("alpha", Presence.ONLINE, InstanceInfo("a1", None))], 100.0)
    assert directory.next_deadline() == 130.0
    assert directory.expire(129.999) == []
    assert directory.expire(130.0) == [
        PresenceChange("alpha", Presence.ONLINE, Presence.OFFLINE, "missed heartbeats", 130.0)
    ]


def test_a_merged_offline_agent_is_forgotten_forget_after_the_merge() -> None:
    directory = Directory(forget_after=50.0)
    directory.merge([info("gone", Presence.OFFLINE)], 10.0)
    assert directory.next_deadline() == 60.0
    directory.expire(59.999)
    assert directory.get("gone") is not None
    directory.expire(60.0)
    assert (directory.get("gone"), len(directory), directory.forgotten) == (None, 0, 1)


def test_what_an_agent_says_itself_replaces_what_was_heard_of_it() -> None:
    directory = Directory()
    directory.merge([info("alpha", Presence.ONLINE, InstanceInfo("old", "node-old"))], 0.0)
    # Not a clash with the hearsay instance: the agent restarted since the listing.
    assert directory.observe(heard("alpha", "new"), 1.0, "announce") is None
    listed = directory.get("alpha")
    assert listed is not None
    assert listed.instances == (InstanceInfo("new", "node-new"),)
    assert directory.clashes == 0


def test_an_offline_from_a_hearsay_instance_takes_the_agent_offline() -> None:
    """It once emptied the entry and left it listed online, a provider, for ever."""
    directory = Directory(default_interval=10.0, forget_after=100.0)
    directory.merge([info("alpha", Presence.ONLINE, InstanceInfo("a1", "node-a1"))], 0.0)
    change = directory.observe(heard("alpha", "a1", Presence.OFFLINE), 1.0, "heartbeat")
    assert change == PresenceChange("alpha", Presence.ONLINE, Presence.OFFLINE, "said offline", 1.0)
    listed = directory.get("alpha")
    assert listed is not None
    assert (listed.status, listed.instances) == (Presence.OFFLINE, ())
    assert directory.providers("echo") == []
    assert directory.expire(100.999) == []
    assert directory.get("alpha") is not None
    directory.expire(101.0)  # offline for forget_after: forgotten
    assert directory.get("alpha") is None


def test_merge_keeps_to_the_bounds_of_the_table() -> None:
    directory = Directory(max_agents=2)
    many = tuple(InstanceInfo(f"i{n}", None) for n in range(MAX_INSTANCES + 6))
    changes = directory.merge(
        [info("a", Presence.ONLINE, *many, replicated=True), info("b"), info("c")], 0.0
    )
    assert [change.agent for change in changes] == ["a", "b"]
    listed = directory.get("a")
    assert listed is not None
    assert listed.instances == many[:MAX_INSTANCES]
    assert directory.get("c") is None
