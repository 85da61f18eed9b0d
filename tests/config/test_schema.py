"""The configuration is the runtime's own specs: defaults, every key read, checks when built
in Python.

Rules for this module: no network and no servers.
"""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest

from volta.actors import AgentSpec, SupervisionPolicy
from volta.bus import BusOptions, ReconnectPolicy
from volta.config import ConfigError, load_config_text
from volta.node import ConnectionMode, NodeSpec
from volta.supervisor import Backoff, Strategy


def test_defaults_of_a_minimal_file() -> None:
    config = load_config_text("agents:\n  - {id: alpha, handler: echo}\n")
    assert config.nats == BusOptions(
        servers=("nats://127.0.0.1:4222",),
        connect_timeout=2.0,
        retry_initial_connect=True,
        reconnect=ReconnectPolicy(initial_delay=0.1, max_delay=5.0, jitter=0.2, max_attempts=-1),
    )
    assert (config.nats.user, config.nats.password, config.nats.token) == (None, None, None)
    assert (config.nats.creds_file, config.nats.name) == (None, None)
    assert config.connection is ConnectionMode.SHARED
    assert config.heartbeat_interval == 30.0
    assert config.offline_after_missed == 3
    assert config.request_timeout == 10.0
    assert config.supervision == SupervisionPolicy(
        strategy=Strategy.ONE_FOR_ONE,
        max_restarts=5,
        period=10.0,
        backoff=None,
        shutdown_timeout=5.0,
    )
    (agent,) = config.agents
    assert agent == AgentSpec(
        id="alpha",
        name="alpha",
        capabilities=(),
        handler="echo",
        options={},
        max_concurrency=8,
        capability_timeout=30.0,
    )


def test_an_empty_backoff_section_takes_the_defaults() -> None:
    config = load_config_text("supervision: {backoff: {}}\nagents: [{id: a, handler: echo}]\n")
    assert config.supervision.backoff == Backoff(
        initial=0.05, maximum=5.0, multiplier=2.0, jitter=0.1
    )


def test_every_key_is_read() -> None:
    config = load_config_text(
        """
nats:
  url: [nats://a:4222, tls://b:4222]
  user: bob
  password: pw
  token: tk
  creds_file: /run/secrets/volta.creds
  name: node-1
  connect_timeout: 3
  retry_initial_connect: false
  reconnect: {initial_delay: 0.5, max_delay: 9, jitter: 0, max_attempts: 7}
connection: per_agent
heartbeat_interval: 2.5
offline_after_missed: 4
request_timeout: 1.5
supervision:
  strategy: rest_for_one
  max_restarts: 0
  period: 60
  backoff: {initial: 0, maximum: 1, multiplier: 3, jitter: 0}
  shutdown_timeout: 0.5
agents:
  - id: a-1
    name: Agent One
    capabilities: [x, y_2]
    handler: my_pkg.handlers:make_handler
    options: {model: small, limits: {tokens: 100}}
    max_concurrency: 1
    capability_timeout: 2
"""
    )
    assert config.nats == BusOptions(
        servers=("nats://a:4222", "tls://b:4222"),
        user="bob",
        password="pw",
        token="tk",
        creds_file=Path("/run/secrets/volta.creds"),
        name="node-1",
        connect_timeout=3.0,
        retry_initial_connect=False,
        reconnect=ReconnectPolicy(initial_delay=0.5, max_delay=9.0, jitter=0.0, max_attempts=7),
    )
    assert config.connection is ConnectionMode.PER_AGENT
    assert (config.heartbeat_interval, config.offline_after_missed, config.request_timeout) == (
        2.5,
        4,
        1.5,
    )
    assert config.supervision == SupervisionPolicy(
        strategy=Strategy.REST_FOR_ONE,
        max_restarts=0,
        period=60.0,
        backoff=Backoff(initial=0.0, maximum=1.0, multiplier=3.0, jitter=0.0),
        shutdown_timeout=0.5,
    )
    assert config.agents == (
        AgentSpec(
            id="a-1",
            name="Agent One",
            capabilities=("x", "y_2"),
            handler="my_pkg.handlers:make_handler",
            options={"model": "small", "limits": {"tokens": 100}},
            max_concurrency=1,
            capability_timeout=2.0,
        ),
    )
    # Numbers written as integers are loaded as the floats the schema declares.
    assert type(config.nats.connect_timeout) is float
    assert type(config.agents[0].capability_timeout) is float


def test_a_url_string_may_list_several_servers() -> None:
    config = load_config_text(
        "nats: {url: 'nats://a:1, nats://b:2'}\nagents: [{id: a, handler: echo}]\n"
    )
    assert config.nats.servers == ("nats://a:1", "nats://b:2")


def test_configs_are_frozen_and_hashable() -> None:
    config = load_config_text("agents: [{id: a, handler: echo, options: {k: [1]}}]\n")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        config.heartbeat_interval = 1.0  # type: ignore[misc]
    with pytest.raises(TypeError, match="does not support item assignment"):
        config.agents[0].options["k"] = 2  # type: ignore[index]
    assert hash(config) == hash(load_config_text("agents: [{id: a, handler: echo}]\n"))


def test_a_node_retries_its_first_connect_unless_the_file_says_not_to() -> None:
    # Unlike a client's BusOptions, a container keeps trying until its server is up: a
    # node's `nats` section starts from that, and a file that names other keys keeps it.
    assert BusOptions().retry_initial_connect is False
    assert NodeSpec(agents=(AgentSpec(id="a", handler="echo"),)).nats == BusOptions(
        retry_initial_connect=True
    )
    named = load_config_text("nats: {name: n}\nagents: [{id: a, handler: echo}]\n")
    assert named.nats == BusOptions(name="n", retry_initial_connect=True)
    off = "nats: {retry_initial_connect: false}\nagents: [{id: a, handler: echo}]\n"
    assert load_config_text(off).nats.retry_initial_connect is False


def test_secrets_stay_out_of_reprs() -> None:
    config = load_config_text(
        "nats: {user: bob-the-user, password: hunter2-pw, token: tok-3456}\n"
        "agents: [{id: a, handler: echo}]\n"
    )
    for text in (repr(config), str(config), repr(config.nats)):
        assert "hunter2-pw" not in text
        assert "tok-3456" not in text
        assert "bob-the-user" not in text
    assert config.nats.password == "hunter2-pw"


@pytest.mark.parametrize(
    ("build", "message"),
    [
        pytest.param(
            lambda: AgentSpec(id="a b", handler="echo"),
            "id: invalid agent id 'a b': use 1-64 characters from A-Z a-z 0-9 _ -",
            id="agent-id",
        ),
        pytest.param(
            lambda: AgentSpec(id="a", handler="echo", capabilities=("x", "x")),
            "capabilities[1]: duplicate capability 'x' (first at capabilities[0])",
            id="capabilities",
        ),
        pytest.param(
            lambda: AgentSpec(id="a", handler="pkg:"),
            "handler: invalid handler 'pkg:': expected a built-in handler name "
            "or 'package.module:attribute'",
            id="handler",
        ),
        pytest.param(
            lambda: NodeSpec(agents=()),
            "agents: expected at least one agent",
            id="no-agents",
        ),
        pytest.param(
            lambda: NodeSpec(agents=(AgentSpec(id="a", handler="echo"),), heartbeat_interval=True),
            "heartbeat_interval: expected a number > 0, got true",
            id="bool-is-not-a-number",
        ),
        pytest.param(
            lambda: SupervisionPolicy(period=float("inf")),
            "period: expected a number > 0, got inf",
            id="infinite-period",
        ),
        pytest.param(
            lambda: BusOptions(servers=("nats://a:1", "localhost:4222")),
            "servers: 'localhost:4222' must start with nats://, tls://, ws:// or wss://",
            id="url",
        ),
        pytest.param(
            lambda: BusOptions(user=""),
            "user: expected a non-empty string, got ''",
            id="empty-user",
        ),
    ],
)
def test_classes_check_their_values_when_built_in_python(build: object, message: str) -> None:
    assert callable(build)
    with pytest.raises(ConfigError) as caught:
        build()
    assert str(caught.value) == message
    assert caught.value.source is None


def test_the_name_defaults_to_the_id() -> None:
    assert AgentSpec(id="beta", handler="echo").name == "beta"
    assert AgentSpec(id="beta", name="Beta", handler="echo").name == "Beta"


@pytest.mark.parametrize(
    "handler", ["echo", "word-count", "pkg:factory", "pkg.sub.mod:Handler", "_p._q:_r"]
)
def test_accepted_handlers(handler: str) -> None:
    assert AgentSpec(id="a", handler=handler).handler == handler


@pytest.mark.parametrize(
    "handler",
    ["", "pkg.mod", "pkg.mod:", ":attr", "pkg..mod:a", "1pkg:a", "pkg:a:b", "pkg:A.b", "a b"],
)
def test_refused_handlers(handler: str) -> None:
    with pytest.raises(ConfigError, match=r"^handler: invalid handler"):
        AgentSpec(id="a", handler=handler)
