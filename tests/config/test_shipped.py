"""The configurations shipped in volta/config/agents/ load, and agree with each other.

Rules for this module: no network and no servers.
"""

from __future__ import annotations

from importlib.resources import files

import pytest

from volta.config import ConfigError, ConnectionMode, load_config, shipped_config

SHIPPED = ["alpha", "beta", "gamma", "seed"]


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


def test_the_seed_runs_three_agents_with_word_count_on_two() -> None:
    config = load_config(shipped_config())
    assert [(a.id, a.name, a.capabilities, a.handler) for a in config.agents] == [
        ("alpha", "Alpha", ("echo", "uppercase"), "echo"),
        ("beta", "Beta", ("word_count",), "echo"),
        ("gamma", "Gamma", ("word_count", "sum"), "echo"),
    ]


@pytest.mark.parametrize("name", ["alpha", "beta", "gamma"])
def test_one_agent_files_match_the_seed(name: str) -> None:
    seed = load_config(shipped_config("seed"))
    single = load_config(shipped_config(name))
    assert single.agents == tuple(agent for agent in seed.agents if agent.id == name)
    # Apart from the agents and the connection name, the container settings are the seed's.
    assert single.nats.name == f"volta-{name}"
    assert single.nats.url == seed.nats.url
    assert (single.supervision, single.request_timeout) == (seed.supervision, seed.request_timeout)


@pytest.mark.parametrize("name", ["delta", "../seed", "seed.yaml", ""])
def test_unknown_shipped_names_are_refused(name: str) -> None:
    with pytest.raises(ConfigError) as caught:
        shipped_config(name)
    assert str(caught.value) == f"no shipped config {name!r} (shipped: alpha, beta, gamma, seed)"
