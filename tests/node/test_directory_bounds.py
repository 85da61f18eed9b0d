"""The directory's bounds and refusals: its settings, MAX_INSTANCES, a full table,
and what an identity clash says.

Pure logic: trio times are numbers passed in.
"""

from __future__ import annotations

import re

import pytest

from volta.node import Directory, IdentityClash
from volta.node._directory import MAX_INSTANCES
from volta.protocol import AgentStatus, Presence

OUT_OF_RANGE = re.escape(
    "default_interval and forget_after must be > 0, missed and max_agents >= 1"
)


def status(
    agent_id: str, instance: str | None = None, *, node: str | None = None, replicated: bool = False
) -> AgentStatus:
    return AgentStatus(
        id=agent_id,
        name=agent_id.title(),
        status=Presence.ONLINE,
        heartbeat_interval=10.0,
        instance=instance,
        node=node,
        replicated=replicated,
    )


def replica(agent_id: str, instance: str) -> AgentStatus:
    return status(agent_id, instance, node=f"node-{instance}", replicated=True)


@pytest.mark.parametrize(
    "settings",
    [
        {"default_interval": 0.0},
        {"default_interval": -1.0},
        {"missed": 0},
        {"forget_after": 0.0},
        {"forget_after": -1.0},
        {"max_agents": 0},
    ],
)
def test_each_setting_out_of_range_is_refused_alone(settings: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=f"^{OUT_OF_RANGE}$"):
        Directory(**settings)  # type: ignore[arg-type]


def test_max_bytes_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match=r"^max_bytes must be >= 1$"):
        Directory(max_bytes=0)


def test_the_smallest_settings_in_range_are_accepted() -> None:
    directory = Directory(default_interval=0.5, missed=1, forget_after=0.5, max_agents=1)
    assert directory.max_agents == 1
    assert directory.observe(status("one"), 0.0, "announce") is not None
    assert isinstance(directory.observe(status("two"), 0.0, "announce"), IdentityClash)
    assert len(directory) == 1
    # Offline after one missed 10 s beat, forgotten 0.5 s later.
    assert [change.agent for change in directory.expire(10.0)] == ["one"]
    directory.expire(10.499)
    assert len(directory) == 1
    directory.expire(10.5)
    assert len(directory) == 0
    # One byte is a bound too: nothing fits in it.
    tiny = Directory(max_bytes=1)
    assert isinstance(tiny.observe(status("one"), 0.0, "announce"), IdentityClash)
    assert (len(tiny), tiny.refused) == (0, 1)


def test_a_replicated_agent_may_run_exactly_max_instances() -> None:
    directory = Directory()
    for n in range(MAX_INSTANCES):
        outcome = directory.observe(replica("worker", f"w{n}"), float(n), "announce")
        assert not isinstance(outcome, IdentityClash), n
    clash = directory.observe(replica("worker", "extra"), 100.0, "announce")
    assert clash == IdentityClash(
        "worker",
        "extra",
        "node-extra",
        f"agent 'worker' already has {MAX_INSTANCES} instances",
        100.0,
    )
    listed = directory.get("worker")
    assert listed is not None
    assert len(listed.instances) == MAX_INSTANCES
    assert (directory.clashes, directory.refused) == (1, 0)
    # The instances it has still beat.
    assert directory.observe(replica("worker", "w0"), 101.0, "heartbeat") is None
    assert directory.clashes == 1


def test_a_full_table_refuses_another_instance_of_a_replicated_agent() -> None:
    probe = Directory()
    probe.observe(replica("worker", "w1"), 0.0, "announce")
    directory = Directory(max_bytes=probe.size + 100)  # room for one instance, not two
    directory.observe(replica("worker", "w1"), 0.0, "announce")
    for n, at in enumerate((1.0, 2.0), start=1):
        clash = directory.observe(replica("worker", f"w{n + 1}"), at, "announce")
        assert clash == IdentityClash(
            "worker", f"w{n + 1}", f"node-w{n + 1}", "the directory is full", at
        )
        assert (directory.clashes, directory.refused) == (n, n)


def test_a_full_table_refuses_newcomers_and_counts_each() -> None:
    directory = Directory(max_agents=1)
    directory.observe(status("holder"), 0.0, "announce")
    size = directory.size
    for n, at in enumerate((2.0, 3.0), start=1):
        refused = directory.observe(status(f"new{n}", f"i{n}", node="far"), at, "announce")
        assert refused == IdentityClash(
            f"new{n}",
            f"i{n}",
            "far",
            f"the directory is full (1 agents, {size:,} bytes, none offline)",
            at,
        )
        assert directory.refused == n
    assert directory.clashes == 0  # full is not a clash of identity


def test_a_clash_names_the_instance_heard_from_last() -> None:
    directory = Directory()
    directory.observe(replica("worker", "w1"), 0.0, "announce")
    directory.observe(replica("worker", "w2"), 1.0, "announce")
    single = status("worker", "w3", node="node-w3")
    clash = directory.observe(single, 2.0, "announce")
    assert clash == IdentityClash(
        "worker",
        "w3",
        "node-w3",
        "agent 'worker' is already online as instance w2 on node node-w2; "
        "it is replicated but this instance is not",
        2.0,
        provable=True,  # both holders name their node: asking the nodes can settle it
    )
    directory.observe(replica("worker", "w1"), 3.0, "heartbeat")  # w1 is now the latest
    clash = directory.observe(single, 4.0, "announce")
    assert isinstance(clash, IdentityClash)
    assert clash.reason.startswith(
        "agent 'worker' is already online as instance w1 on node node-w1;"
    )
    assert directory.clashes == 2


def test_a_clash_with_a_holder_that_names_neither_instance_nor_node() -> None:
    directory = Directory()
    directory.observe(status("alpha"), 0.0, "announce")
    clash = directory.observe(status("alpha", "a2", node="node-a2"), 1.0, "announce")
    assert clash == IdentityClash(
        "alpha",
        "a2",
        "node-a2",
        "agent 'alpha' is already online as an instance that sends no id; it is not replicated",
        1.0,
    )
