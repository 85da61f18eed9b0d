"""Every runtime setting is reachable from YAML, and reaches the running objects.

The first test walks every field of every class a YAML file loads into (from
NodeSpec down), sets that one field in a file to a value that is not its default,
loads the file and reads the field back: a setting the loader cannot reach, or
drops, fails here. The second runs a node from a file that changes the settings a
running node reads, and reads them back from the running objects.

Rules for this module: the first test needs no network; the second runs a real
nats-server on loopback.
"""

from __future__ import annotations

import enum
import typing
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
import yaml

from volta.actors import AgentSpec
from volta.brains import Brain, BrainSpec
from volta.bus import NatsServer
from volta.config import assemble, load_config_text
from volta.config._load import _YAML_KEYS, _YAML_TYPES
from volta.node import Node, NodeSpec

from .test_exports import yaml_classes

# Values the generic rules below cannot pick (a bound, a rule across fields, a format).
SAMPLES: dict[tuple[str, str], Any] = {
    ("BusOptions", "servers"): ["nats://127.0.0.1:4999", "nats://127.0.0.1:4998"],
    ("BusOptions", "creds_file"): "secrets/node.creds",
    ("ReconnectPolicy", "jitter"): 0.5,
    ("ReconnectPolicy", "max_attempts"): 7,
    ("Backoff", "jitter"): 0.5,
    ("AgentSpec", "id"): "sample",
    ("AgentSpec", "capabilities"): ["summarize", "word_count"],
    ("AgentSpec", "handler"): "tests.config.handlers:Quiet",
    ("AgentSpec", "options"): {"model": "m"},
    ("AgentSpec", "functions"): {"word_count": "word_count"},
    ("AgentSpec", "brain"): {"system": "You sum up."},
    ("BrainSpec", "temperature"): 0.5,
    ("BrainSpec", "team"): ["writer", "researcher"],
    ("BrainSpec", "skills"): {"summarize": "Sum up."},
    ("BrainSpec", "system_file"): "prompts/sample.md",
    ("BrainSpec", "api_key_env"): "SAMPLE_KEY",
    ("BrainSpec", "base_url"): "http://127.0.0.1:9/v1",
    ("NodeSpec", "agents"): None,  # (every agent field is walked on its own)
}

# Where each class sits in a file, and the least the file needs around it.
AGENT = {"id": "a", "handler": "echo"}
THINKER = {"id": "a", "capabilities": ["summarize", "word_count"], "brain": {}}
PLACES: dict[str, tuple[list[str | int], dict[str, Any]]] = {
    "NodeSpec": ([], {"agents": [AGENT]}),
    "BusOptions": (["nats"], {"agents": [AGENT], "nats": {}}),
    "ReconnectPolicy": (["nats", "reconnect"], {"agents": [AGENT], "nats": {"reconnect": {}}}),
    "SupervisionPolicy": (["supervision"], {"agents": [AGENT], "supervision": {}}),
    "Backoff": (["supervision", "backoff"], {"agents": [AGENT], "supervision": {"backoff": {}}}),
    "DirectorySpec": (["directory"], {"agents": [AGENT], "directory": {}}),
    "RouterSpec": (["router"], {"agents": [AGENT], "router": {}}),
    "DurableSpec": (["durable"], {"agents": [AGENT], "durable": {}}),
    "Intensity": (["intensity"], {"agents": [AGENT], "intensity": {}}),
    "AgentSpec": (["agents", 0], {"agents": [{"id": "a"}]}),
    "BrainSpec": (["agents", 0, "brain"], {"agents": [THINKER]}),
}


def sample(cls: type, field: attrs.Attribute[Any]) -> Any:
    """A YAML value for ``field`` that is valid and not its default."""
    if (cls.__name__, field.name) in SAMPLES:
        return SAMPLES[cls.__name__, field.name]
    type_ = _YAML_TYPES.get((cls, field.name), field.type)
    options = [arg for arg in typing.get_args(type_) if arg is not type(None)] or [type_]
    kind = options[0]
    default: Any = field.default
    factory = getattr(default, "factory", None)  # an attrs.Factory
    if factory is not None:
        default = None if getattr(default, "takes_self", False) else factory()
    if kind is bool:
        return not default
    if kind is int:
        return (default or 1) + 3
    if kind is float:
        return (default or 1.0) * 2 + 0.5
    if kind is str:
        return "sample"
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return next(member.value for member in kind if member != default)
    if attrs.has(kind):
        return {}
    raise AssertionError(f"no sample for {cls.__name__}.{field.name}: add one to SAMPLES")


def document(cls: type, key: str, value: Any) -> dict[str, Any]:
    path, base = PLACES[cls.__name__]
    data: dict[str, Any] = yaml.safe_load(yaml.safe_dump(base))  # a deep copy
    target: Any = data
    for step in path:
        target = target[step]
    target[key] = value
    if cls is AgentSpec and key not in ("handler", "brain", "functions"):
        target.setdefault("handler", "echo")  # (an agent needs something to run)
    if cls is AgentSpec and key == "functions":
        target["capabilities"] = ["word_count"]
    if cls is AgentSpec and key == "brain":
        target["capabilities"] = []
    return data


def read(spec: NodeSpec, cls: type, name: str) -> Any:
    path, _ = PLACES[cls.__name__]
    value: Any = spec
    for step in path:
        value = value[step] if isinstance(step, int) else getattr(value, step)
    return getattr(value, name)


SETTINGS = [
    (cls, field)
    for cls in yaml_classes()
    for field in attrs.fields(cls)
    if SAMPLES.get((cls.__name__, field.name), ...) is not None
]


@pytest.mark.parametrize(
    ("cls", "field"), SETTINGS, ids=[f"{c.__name__}.{f.name}" for c, f in SETTINGS]
)
def test_every_setting_is_read_from_yaml(cls: type, field: attrs.Attribute[Any]) -> None:
    key = _YAML_KEYS.get((cls, field.name), field.name)
    value = sample(cls, field)
    spec = load_config_text(yaml.safe_dump(document(cls, key, value)))
    got = read(spec, cls, field.name)
    if isinstance(value, list):
        assert list(got) == value
    elif isinstance(value, dict) and attrs.has(type(got)):
        assert got is not None  # a nested section: its own fields are walked on their own
    elif isinstance(value, dict):
        assert dict(got) == value
    elif isinstance(got, enum.Enum):
        assert got.value == value
    elif isinstance(got, Path):
        assert got == Path(value)
    else:
        assert got == value
    assert got != field.default, f"{cls.__name__}.{field.name} kept its default"


def test_every_class_a_file_loads_into_has_its_place() -> None:
    assert {cls.__name__ for cls in yaml_classes()} == set(PLACES)


FILE = """
nats: {name: round-trip, ping_interval: 7}
heartbeat_interval: 0.4
offline_after_missed: 5
request_timeout: 3.5
supervision: {max_restarts: 9, period: 4, shutdown_timeout: 1.5, backoff: {reset_after: 2}}
directory: {forget_after: 120, max_agents: 50, sync_timeout: 0.3, max_page_bytes: 4096}
router: {max_timeout: 20, max_concurrency: 7, max_per_capability: 3}
intensity: {max_restarts: 4, period: 30}
claim_window: 0.1
node_id: trip-node
agents:
  - id: own
    handler: echo
    capabilities: [echo]
    heartbeat_interval: 0.3
    max_concurrency: 2
    capability_timeout: 4
    inbox_buffer: 64
    task_timeout: 9
    budget: 1234
    trace: true
  - id: thinker
    budget: 777
    brain: {max_tokens: 300, max_steps: 3, history_turns: 4, call_timeout: 5}
"""


async def test_a_running_node_runs_with_what_the_file_says(nats_server: NatsServer) -> None:
    spec = assemble(load_config_text(FILE, environ={"NATS_URL": nats_server.url}))
    node = Node(spec)
    async with trio.open_nursery() as nursery:
        with trio.fail_after(10):
            await nursery.start(node.run)
        own, thinker = node.agents["own"], node.agents["thinker"]
        # The agents: what they set, and the node's where they set nothing.
        assert (own.spec.heartbeat_interval, thinker.spec.heartbeat_interval) == (0.3, 0.4)
        assert (own.spec.request_timeout, thinker.spec.request_timeout) == (3.5, 3.5)
        assert own.spec.supervision == spec.supervision == thinker.spec.supervision
        assert own.spec.supervision is not None
        assert own.spec.supervision.backoff is not None
        assert own.spec.supervision.backoff.reset_after == 2.0
        assert (own.spec.max_concurrency, own.spec.inbox_buffer) == (2, 64)
        assert (own.spec.task_timeout, own.spec.budget, own.spec.trace) == (9.0, 1234, True)
        assert (thinker.spec.budget, thinker.spec.task_timeout, thinker.spec.trace) == (
            777,
            120.0,
            True,
        )
        brain = thinker.spec.handler
        assert isinstance(brain, Brain)
        assert isinstance(thinker.spec.brain, BrainSpec)
        assert (brain.spec.max_tokens, brain.spec.max_steps, brain.spec.call_timeout) == (
            300,
            3,
            5.0,
        )
        # The node and its services.
        assert node.node_id == "trip-node"
        assert node.directory.max_agents == 50
        assert node.spec.router.max_concurrency == 7
        assert node.supervisor is not None
        assert node.supervisor.spec.intensity.max_restarts == 4
        # And what peers see: the heartbeat interval each agent announces.
        assert [agent.status().heartbeat_interval for agent in (own, thinker)] == [0.3, 0.4]
        nursery.cancel_scope.cancel()
