"""Succession in the table: a new instance takes over once the nodes show the old one gone.

Pure logic (no bus): :meth:`Directory.succeed` is handed what the nodes answered.
"""

from __future__ import annotations

from typing import Any

from volta.node import Directory, IdentityClash, PresenceChange
from volta.protocol import AgentStatus, Presence


def instance(agent_id: str, key: str, **changes: Any) -> AgentStatus:
    """A status from one instance of an agent, run by node ``node-<key>``."""
    values: dict[str, Any] = {
        "id": agent_id,
        "status": Presence.ONLINE,
        "instance": key,
        "node": f"node-{key}",
        "heartbeat_interval": 30.0,
        "capabilities": ("echo",),
    }
    values.update(changes)
    return AgentStatus(**values)


def listed(directory: Directory, agent_id: str) -> list[str | None]:
    info = directory.get(agent_id)
    assert info is not None
    return [i.id for i in info.instances]


def test_a_clash_with_a_holder_that_names_its_node_is_provable() -> None:
    directory = Directory()
    directory.observe(instance("alpha", "old"), 0.0, "announce")
    clash = directory.observe(instance("alpha", "new"), 1.0, "announce")
    assert isinstance(clash, IdentityClash)
    assert clash.provable


def test_a_clash_with_a_holder_outside_volta_is_not_provable() -> None:
    directory = Directory()
    directory.observe(instance("alpha", "old", node=None), 0.0, "announce")
    clash = directory.observe(instance("alpha", "new"), 1.0, "announce")
    assert isinstance(clash, IdentityClash)
    assert not clash.provable, "no node answers for it: only silence can prove it gone"


def test_a_successor_takes_over_at_once_when_no_node_holds_the_old_instance() -> None:
    directory = Directory()
    directory.observe(instance("alpha", "old"), 0.0, "announce")
    successor = instance("alpha", "new", capabilities=("echo", "sum"))
    gone, change = directory.succeed(successor, {"new"}, 1.0, "announce")
    assert gone == ("old",)
    assert change is None, "online before and after: no presence change to report"
    assert listed(directory, "alpha") == ["new"]
    assert directory.providers("sum") == ["alpha"]
    assert directory.clashes == 0


def test_a_live_holder_keeps_its_id_and_the_clash_is_counted_once() -> None:
    directory = Directory()
    directory.observe(instance("alpha", "old"), 0.0, "announce")
    forged = instance("alpha", "evil", capabilities=("steal",))
    assert isinstance(directory.observe(forged, 1.0, "announce"), IdentityClash)
    gone, change = directory.succeed(forged, {"old"}, 1.3, "announce")
    assert gone == ()
    assert isinstance(change, IdentityClash)
    assert directory.clashes == 1
    assert listed(directory, "alpha") == ["old"]
    assert directory.providers("steal") == []


def test_only_instances_that_name_a_node_can_be_shown_gone() -> None:
    directory = Directory()
    directory.observe(instance("worker", "w1", replicated=True), 0.0, "announce")
    directory.observe(instance("worker", "w2", replicated=True, node=None), 0.0, "announce")
    single = instance("worker", "w3")
    gone, change = directory.succeed(single, set(), 1.0, "announce")
    assert gone == ("w1",)
    assert isinstance(change, IdentityClash), "w2 names no node: nothing shows it gone"
    assert listed(directory, "worker") == ["w2"]


def test_a_successor_of_an_agent_gone_offline_meanwhile_is_a_presence_change() -> None:
    directory = Directory()
    directory.observe(instance("alpha", "old"), 0.0, "announce")
    directory.observe(instance("alpha", "old", status=Presence.OFFLINE), 0.5, "heartbeat")
    gone, change = directory.succeed(instance("alpha", "new"), {"new"}, 1.0, "announce")
    assert gone == ()
    assert change == PresenceChange("alpha", Presence.OFFLINE, Presence.ONLINE, "announce", 1.0)


def test_a_successor_of_an_agent_forgotten_meanwhile_is_new() -> None:
    directory = Directory()
    gone, change = directory.succeed(instance("alpha", "new"), set(), 1.0, "announce")
    assert gone == ()
    assert change == PresenceChange("alpha", None, Presence.ONLINE, "announce", 1.0)


def test_the_table_settles_until_the_time_it_was_given() -> None:
    directory = Directory()
    assert not directory.settling(0.0)
    directory.settle_until(2.0)
    directory.settle_until(1.0)  # an earlier end never shortens a later one
    assert directory.settling(1.5)
    assert directory.settling(1.999)
    assert not directory.settling(2.0)


def test_a_removed_instance_no_longer_expires_the_agent() -> None:
    directory = Directory(missed=3)
    directory.observe(instance("alpha", "old"), 0.0, "announce")
    directory.succeed(instance("alpha", "new"), {"new"}, 50.0, "announce")
    assert directory.expire(90.0) == [], "the old instance's deadline is stale"
    info = directory.get("alpha")
    assert info is not None
    assert info.status is Presence.ONLINE
