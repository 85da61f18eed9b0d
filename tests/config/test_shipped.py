"""The configurations shipped in volta/config/agents/ load, and agree with each other.

Rules for this module: no network and no servers.
"""

from __future__ import annotations

from importlib.resources import files

import pytest

from volta.brains import BrainSpec
from volta.config import ConfigError, load_config, shipped_config
from volta.node import ConnectionMode

SHIPPED = ["coordinator", "researcher", "seed", "writer"]
TEAM = ["coordinator", "researcher", "writer"]


def test_the_shipped_files_are_package_resources() -> None:
    folder = files("volta.config") / "agents"
    names = sorted(entry.name for entry in folder.iterdir() if entry.name.endswith(".yaml"))
    assert names == [f"{name}.yaml" for name in SHIPPED]
    assert (folder / "seed.yaml").read_text().startswith("# ")


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_config_loads(name: str) -> None:
    path = shipped_config(name)
    assert path.name == f"{name}.yaml"
    config = load_config(path)
    assert config.connection is ConnectionMode.SHARED
    assert config.heartbeat_interval == 30.0


def test_the_seed_is_a_coordinator_and_two_specialists() -> None:
    config = load_config(shipped_config())
    assert [(a.id, a.name, a.capabilities, a.handler) for a in config.agents] == [
        ("coordinator", "Coordinator", (), None),
        ("researcher", "Researcher", ("word_count", "summarize"), None),
        ("writer", "Writer", ("uppercase",), None),
    ]
    coordinator, researcher, writer = config.agents
    assert isinstance(coordinator.brain, BrainSpec)
    assert coordinator.brain.team == ("researcher", "writer")
    assert isinstance(researcher.brain, BrainSpec)
    assert set(researcher.brain.skills) == {"summarize"}
    assert dict(researcher.functions) == {"word_count": "word_count"}
    assert dict(writer.functions) == {"uppercase": "uppercase"}
    # No key in any file: brains read theirs from the environment.
    assert all(
        isinstance(a.brain, BrainSpec) and a.brain.api_key_env == "ANTHROPIC_API_KEY"
        for a in config.agents
    )


@pytest.mark.parametrize("name", TEAM)
def test_one_agent_files_match_the_seed(name: str) -> None:
    seed = load_config(shipped_config("seed"))
    single = load_config(shipped_config(name))
    assert single.agents == tuple(agent for agent in seed.agents if agent.id == name)
    # Apart from the agents and the connection name, the container settings are the seed's.
    assert single.nats.name == f"volta-{name}"
    assert single.nats.servers == seed.nats.servers
    assert (single.supervision, single.request_timeout) == (seed.supervision, seed.request_timeout)


@pytest.mark.parametrize("name", ["delta", "../seed", "seed.yaml", "", "alpha"])
def test_unknown_shipped_names_are_refused(name: str) -> None:
    with pytest.raises(ConfigError) as caught:
        shipped_config(name)
    assert str(caught.value) == (
        f"no shipped config {name!r} (shipped: coordinator, researcher, seed, writer)"
    )
