"""Every way a configuration file can be wrong gives a ConfigError naming file and key,
and a file wrong in several ways gets all of them in one ConfigError.

Rules for this module: no network and no servers; files live in ``tmp_path``.
Messages are compared whole, so a change of wording is a deliberate change.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from volta.config import ConfigError, ConfigProblem, load_config, load_config_text

AGENT = "agents:\n  - {id: alpha, handler: echo}\n"


def load_error(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_config_text(text, source="conf/seed.yaml")
    return caught.value


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        pytest.param(
            "hearbeat_interval: 3\n" + AGENT,
            "hearbeat_interval",
            "unknown key (did you mean 'heartbeat_interval'?)",
            id="unknown-key-suggestion",
        ),
        pytest.param(
            "agents:\n  - {id: alpha, handler: echo, capabilites: [echo]}\n",
            "agents[0].capabilites",
            "unknown key (did you mean 'capabilities'?)",
            id="unknown-nested-key-suggestion",
        ),
        pytest.param(
            "zzz: 1\n" + AGENT,
            "zzz",
            "unknown key (expected one of nats, connection, heartbeat_interval, "
            "offline_after_missed, request_timeout, supervision, directory, router, "
            "intensity, name, node_id, durable, claim_window, agents)",
            id="unknown-key-without-suggestion",
        ),
        pytest.param(
            "heartbeat_interval: 3\n", "agents", "required key is missing", id="missing-agents"
        ),
        pytest.param(
            "agents:\n  - {id: alpha, handler: echo}\n  - {id: beta}\n",
            "agents[1].handler",
            "required key is missing (or give the agent a 'brain', or 'functions')",
            id="missing-handler",
        ),
        pytest.param("agents: []\n", "agents", "expected at least one agent", id="no-agents"),
        pytest.param(
            "agents: {id: alpha}\n", "agents", "expected a list, got a mapping", id="agents-map"
        ),
        pytest.param(
            "heartbeat_interval: -1\n" + AGENT,
            "heartbeat_interval",
            "expected a number > 0, got -1",
            id="negative-heartbeat",
        ),
        pytest.param(
            "heartbeat_interval: fast\n" + AGENT,
            "heartbeat_interval",
            "expected a number, got 'fast'",
            id="heartbeat-not-a-number",
        ),
        pytest.param(
            "heartbeat_interval: '30'\n" + AGENT,
            "heartbeat_interval",
            "expected a number, got '30'",
            id="quoted-number-is-a-string",
        ),
        pytest.param(
            "request_timeout: .nan\n" + AGENT,
            "request_timeout",
            "expected a finite number, got nan",
            id="nan",
        ),
        pytest.param(
            "offline_after_missed: 0\n" + AGENT,
            "offline_after_missed",
            "expected an integer >= 1, got 0",
            id="offline-after-zero",
        ),
        pytest.param(
            "offline_after_missed: 2.5\n" + AGENT,
            "offline_after_missed",
            "expected an integer, got 2.5",
            id="offline-after-float",
        ),
        pytest.param(
            "nats: {retry_initial_connect: 'no'}\n" + AGENT,
            "nats.retry_initial_connect",
            "expected true or false, got 'no'",
            id="bool-as-string",
        ),
        pytest.param(
            "connection: shard\n" + AGENT,
            "connection",
            "expected one of 'shared', 'per_agent', got 'shard' (did you mean 'shared'?)",
            id="connection-enum",
        ),
        pytest.param(
            "supervision: {strategy: 3}\n" + AGENT,
            "supervision.strategy",
            "expected one of 'one_for_one', 'one_for_all', 'rest_for_one', got 3",
            id="strategy-enum",
        ),
        pytest.param(
            "supervision: 3\n" + AGENT,
            "supervision",
            "expected a mapping, got 3",
            id="section-not-a-mapping",
        ),
        pytest.param(
            "supervision: {max_restarts: -1}\n" + AGENT,
            "supervision.max_restarts",
            "expected an integer >= 0, got -1",
            id="max-restarts",
        ),
        pytest.param(
            "supervision: {backoff: {jitter: 1.5}}\n" + AGENT,
            "supervision.backoff.jitter",
            "expected a number >= 0 and <= 1, got 1.5",
            id="backoff-jitter",
        ),
        pytest.param(
            "supervision: {backoff: {initial: 2, maximum: 1}}\n" + AGENT,
            "supervision.backoff.maximum",
            "expected a number >= initial (2), got 1",
            id="backoff-maximum-below-initial",
        ),
        pytest.param(
            "nats: {reconnect: {jitter: 2}}\n" + AGENT,
            "nats.reconnect.jitter",
            "expected a number >= 0 and <= 1, got 2",
            id="reconnect-jitter-from-bus-validator",
        ),
        pytest.param(
            "nats: {reconnect: {max_attempts: -2}}\n" + AGENT,
            "nats.reconnect.max_attempts",
            "expected -1 (forever) or an integer >= 0, got -2",
            id="reconnect-max-attempts",
        ),
        pytest.param(
            "nats: {url: [nats://a:4222, 'http://b:80']}\n" + AGENT,
            "nats.url",
            "'http://b:80' must start with nats://, tls://, ws:// or wss://",
            id="url-scheme",
        ),
        pytest.param(
            "nats: {url: [nats://a:4222, 7]}\n" + AGENT,
            "nats.url[1]",
            "expected a URL string, got 7",
            id="url-not-a-string",
        ),
        pytest.param(
            "nats: {url: ''}\n" + AGENT,
            "nats.url",
            "expected at least one server URL",
            id="url-empty",
        ),
        pytest.param(
            "nats: {creds_file: [a]}\n" + AGENT,
            "nats.creds_file",
            "expected a path, got a list",
            id="creds-file",
        ),
        pytest.param(
            "agents:\n  - {id: alpha, handler: echo}\n  - {id: a.b, handler: echo}\n",
            "agents[1].id",
            "invalid agent id 'a.b': use 1-64 characters from A-Z a-z 0-9 _ -",
            id="bad-agent-id",
        ),
        pytest.param(
            "agents:\n  - {id: 'no', handler: echo}\n  - {id: no, handler: echo}\n",
            "agents[1].id",
            "expected a string, got false",
            id="yaml-no-is-false",
        ),
        pytest.param(
            "agents:\n  - {id: broadcast, handler: echo}\n",
            "agents[0].id",
            "agent id 'broadcast' is reserved for broadcasts",
            id="reserved-id",
        ),
        pytest.param(
            "agents:\n  - {id: a, handler: echo}\n  - {id: b, handler: echo}\n"
            "  - {id: a, handler: echo}\n",
            "agents[2].id",
            "duplicate agent id 'a' (first at agents[0])",
            id="duplicate-agent-id",
        ),
        pytest.param(
            "agents:\n  - {id: a, handler: echo}\n"
            "  - {id: b, handler: echo, capabilities: [x.y]}\n",
            "agents[1].capabilities[0]",
            "invalid capability 'x.y': use 1-64 characters from A-Z a-z 0-9 _ -",
            id="bad-capability",
        ),
        pytest.param(
            "agents:\n  - {id: a, handler: echo, capabilities: [x, y, x]}\n",
            "agents[0].capabilities[2]",
            "duplicate capability 'x' (first at capabilities[0])",
            id="duplicate-capability",
        ),
        pytest.param(
            "agents:\n  - {id: a, handler: echo, capabilities: echo}\n",
            "agents[0].capabilities",
            "expected a list, got 'echo'",
            id="capabilities-string",
        ),
        pytest.param(
            "agents:\n  - {id: a, handler: echo, capabilities: [echo, 5]}\n",
            "agents[0].capabilities[1]",
            "expected a string, got 5",
            id="capability-not-a-string",
        ),
        pytest.param(
            "agents:\n  - {id: a, handler: 'my.module'}\n",
            "agents[0].handler",
            "invalid handler 'my.module': expected a built-in handler name "
            "or 'package.module:attribute'",
            id="handler-reference-without-attribute",
        ),
        pytest.param(
            "agents:\n  - {id: a, handler: echo, options: [1]}\n",
            "agents[0].options",
            "expected a mapping, got a list",
            id="options-not-a-mapping",
        ),
        pytest.param(
            "agents:\n  - {id: a, handler: echo, options: {1: x}}\n",
            "agents[0].options",
            "expected string keys, got the key 1",
            id="options-key-not-a-string",
        ),
        pytest.param(
            "agents:\n  - {id: a, handler: echo, max_concurrency: 0}\n",
            "agents[0].max_concurrency",
            "expected an integer >= 1, got 0",
            id="max-concurrency",
        ),
        pytest.param(
            "agents:\n  - {id: a, handler: echo, capability_timeout: 0}\n",
            "agents[0].capability_timeout",
            "expected a number > 0, got 0",
            id="capability-timeout",
        ),
        pytest.param(
            "agents:\n  - {id: a, handler: echo, name: ''}\n",
            "agents[0].name",
            "expected a non-empty string, got ''",
            id="empty-name",
        ),
    ],
)
def test_rejections_name_the_file_and_the_key(text: str, key: str, reason: str) -> None:
    error = load_error(text)
    assert (error.source, error.key, error.reason) == ("conf/seed.yaml", key, reason)
    assert error.problems == (ConfigProblem(key, reason),)
    assert str(error) == f"conf/seed.yaml: {key}: {reason}"


def keys(text: str) -> list[str | None]:
    return [problem.key for problem in load_error(text).problems]


def test_every_problem_is_reported_at_once() -> None:
    error = load_error(
        "hearbeat_interval: 3\n"
        "request_timeout: soon\n"
        "connection: shard\n"
        "agents:\n"
        "  - {id: a, handler: echo, capabilites: [echo]}\n"
        "  - {id: b}\n"
        "  - {id: c, handler: echo, max_concurrency: many}\n"
    )
    assert str(error) == (
        "conf/seed.yaml: 6 problems:\n"
        "  hearbeat_interval: unknown key (did you mean 'heartbeat_interval'?)\n"
        "  connection: expected one of 'shared', 'per_agent', got 'shard' "
        "(did you mean 'shared'?)\n"
        "  request_timeout: expected a number, got 'soon'\n"
        "  agents[0].capabilites: unknown key (did you mean 'capabilities'?)\n"
        "  agents[1].handler: required key is missing "
        "(or give the agent a 'brain', or 'functions')\n"
        "  agents[2].max_concurrency: expected an integer, got 'many'"
    )
    # key and reason are the first problem's
    assert (error.key, error.reason) == (error.problems[0].key, error.problems[0].reason)
    assert error.args == (str(error),)


def test_every_unknown_key_is_named_with_its_own_hint() -> None:
    error = load_error("zzz: 1\nhearbeat_interval: 3\nrequest_timout: 1\n" + AGENT)
    assert [str(problem) for problem in error.problems] == [
        "zzz: unknown key (expected one of nats, connection, heartbeat_interval, "
        "offline_after_missed, request_timeout, supervision, directory, router, "
        "intensity, name, node_id, durable, claim_window, agents)",
        "hearbeat_interval: unknown key (did you mean 'heartbeat_interval'?)",
        "request_timout: unknown key (did you mean 'request_timeout'?)",
    ]


def test_every_range_check_of_a_mapping_is_reported() -> None:
    error = load_error(
        "heartbeat_interval: -1\noffline_after_missed: 0\nrequest_timeout: 0\n"
        "nats: {connect_timeout: 0, reconnect: {initial_delay: -1, jitter: 2}}\n"
        "supervision: {max_restarts: -1, period: 0, backoff: {initial: 2, maximum: 1, jitter: 3}}\n"
        + AGENT
    )
    # Sections first, each whole; the ranges of a mapping wait for its own sections.
    assert [str(problem) for problem in error.problems] == [
        "nats.reconnect.initial_delay: expected a number >= 0, got -1",
        "nats.reconnect.jitter: expected a number >= 0 and <= 1, got 2",
        "supervision.backoff.maximum: expected a number >= initial (2), got 1",
        "supervision.backoff.jitter: expected a number >= 0 and <= 1, got 3",
    ]
    error = load_error(
        "heartbeat_interval: -1\noffline_after_missed: 0\nrequest_timeout: 0\n"
        "nats: {connect_timeout: 0}\nsupervision: {max_restarts: -1, period: 0}\n" + AGENT
    )
    assert [str(problem) for problem in error.problems] == [
        "nats.connect_timeout: expected a number > 0, got 0",
        "supervision.max_restarts: expected an integer >= 0, got -1",
        "supervision.period: expected a number > 0, got 0",
    ]
    assert keys(
        "heartbeat_interval: -1\noffline_after_missed: 0\nrequest_timeout: 0\n" + AGENT
    ) == [
        "heartbeat_interval",
        "offline_after_missed",
        "request_timeout",
    ]


def test_a_list_check_reports_every_bad_item() -> None:
    error = load_error(
        "agents:\n"
        "  - {id: a, handler: echo, capabilities: [x.y, z, z, '', z]}\n"
        "  - {id: b, handler: echo}\n"
        "  - {id: a, handler: echo}\n"
        "  - {id: b, handler: echo}\n"
    )
    assert [str(problem) for problem in error.problems] == [
        "agents[0].capabilities[0]: invalid capability 'x.y': "
        "use 1-64 characters from A-Z a-z 0-9 _ -",
        "agents[0].capabilities[2]: duplicate capability 'z' (first at capabilities[1])",
        "agents[0].capabilities[3]: invalid capability '': "
        "use 1-64 characters from A-Z a-z 0-9 _ -",
        "agents[0].capabilities[4]: duplicate capability 'z' (first at capabilities[1])",
    ]
    assert [
        str(problem)
        for problem in load_error(
            "agents:\n  - {id: a, handler: echo}\n  - {id: b, handler: echo}\n"
            "  - {id: a, handler: echo}\n  - {id: b, handler: echo}\n"
        ).problems
    ] == [
        "agents[2].id: duplicate agent id 'a' (first at agents[0])",
        "agents[3].id: duplicate agent id 'b' (first at agents[1])",
    ]
    assert keys("nats: {url: [nats://a:1, 7, nats://b:2, false]}\n" + AGENT) == [
        "nats.url[1]",
        "nats.url[3]",
    ]


def test_values_are_checked_in_field_order() -> None:
    assert keys("agents:\n  - {id: a, handler: 3}\nheartbeat_interval: fast\n") == [
        "heartbeat_interval",
        "agents[0].handler",
    ]


def test_a_section_is_checked_whole_before_the_ranges_around_it() -> None:
    # heartbeat_interval's range is a check of the top level, run once its sections are
    # built; a bad section stops it (a range check on a half-built mapping could only
    # add nonsense, e.g. a duplicate id that is really a typo).
    assert keys("heartbeat_interval: -1\nagents:\n  - {id: a.b, handler: echo}\n") == [
        "agents[0].id"
    ]
    assert keys(
        "agents:\n  - {id: a, handler: echo}\n  - {id: a, handler: echo, max_concurrency: x}\n"
    ) == ["agents[1].max_concurrency"]


def test_unknown_and_missing_keys_come_before_values() -> None:
    assert keys("agents:\n  - {id: 7, capabilites: [], max_concurrency: x}\n") == [
        "agents[0].capabilites",
        "agents[0].id",
        "agents[0].max_concurrency",
    ]
    # 'handler or brain' is a check across the agent's values: it waits for them.
    assert keys("agents:\n  - {id: 7}\n") == ["agents[0].id"]
    assert keys("agents:\n  - {id: a}\n") == ["agents[0].handler"]


def test_no_raw_cattrs_error_is_chained() -> None:
    error = load_error("heartbeat_interval: -1\n" + AGENT)
    assert error.__cause__ is None
    assert error.__suppress_context__


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        pytest.param("", "empty document: expected a mapping with at least 'agents'", id="empty"),
        pytest.param("- alpha\n", "expected a mapping at the top level, got a list", id="list"),
        pytest.param(
            "just words\n", "expected a mapping at the top level, got 'just words'", id="str"
        ),
        pytest.param(
            "agents: [\n",
            "not valid YAML: while parsing a flow node, expected the node content, "
            "but found '<stream end>' (line 2, column 1)",
            id="unclosed-bracket",
        ),
        pytest.param(
            "heartbeat_interval: 1\nagents: []\nheartbeat_interval: 2\n",
            "not valid YAML: duplicate key 'heartbeat_interval', already given at line 1 "
            "(line 3, column 1)",
            id="duplicate-key",
        ),
        pytest.param(
            "agents:\n  - {id: a, handler: echo, options: {since: 2001-13-45}}\n",
            "not valid YAML: month must be in 1..12 (line 2, column 45)",
            id="impossible-date",
        ),
        pytest.param(
            "heartbeat_interval: 0x_\n",
            "not valid YAML: invalid literal for int() with base 16: '' (line 1, column 21)",
            id="empty-hex-number",
        ),
        pytest.param(
            "agents: " + "[" * 2000 + "]" * 2000 + "\n",
            "not valid YAML: nested too deeply",
            id="deep",
        ),
        pytest.param(
            "a: 1\n---\nb: 2\n",
            "not valid YAML: expected a single document in the stream, "
            "but found another document (line 2, column 1)",
            id="two-documents",
        ),
    ],
)
def test_whole_document_problems_have_no_key(text: str, reason: str) -> None:
    error = load_error(text)
    assert (error.key, error.reason) == (None, reason)
    assert str(error) == f"conf/seed.yaml: {reason}"


def test_yaml_merge_keys_may_be_overridden() -> None:
    config = load_config_text(
        "agents:\n  - &base {id: a, handler: echo, max_concurrency: 2}\n  - {<<: *base, id: b}\n"
    )
    assert [(agent.id, agent.max_concurrency) for agent in config.agents] == [("a", 2), ("b", 2)]


def test_file_not_found(tmp_path: Path) -> None:
    path = tmp_path / "missing.yaml"
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == f"{path}: file not found"
    assert caught.value.source == str(path)


def test_a_directory_is_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r": cannot read the file: Is a directory$"):
        load_config(tmp_path)


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"agents:\n  - {id: caf\xe9, handler: echo}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == f"{path}: not UTF-8 text (bad byte at offset 20)"


def test_errors_from_a_file_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "seed.yaml"
    path.write_text("agents:\n  - {id: a, handler: echo}\n  - {id: a.b, handler: echo}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(str(path))
    assert str(caught.value) == (
        f"{path}: agents[1].id: invalid agent id 'a.b': use 1-64 characters from A-Z a-z 0-9 _ -"
    )


def test_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)
    error = ConfigError("bad", key="a.b", source="f.yaml")
    assert (str(error), error.args) == ("f.yaml: a.b: bad", ("f.yaml: a.b: bad",))
    assert error.problems == (ConfigProblem("a.b", "bad"),)
    assert str(ConfigError("bad")) == "bad"


def test_a_config_error_with_several_problems() -> None:
    problems = [ConfigProblem("a", "bad"), ConfigProblem(None, "worse"), ConfigProblem("b[0]", "x")]
    error = ConfigError.from_problems(problems, source="f.yaml")
    assert str(error) == "f.yaml: 3 problems:\n  a: bad\n  worse\n  b[0]: x"
    assert (error.source, error.key, error.reason, error.problems) == (
        "f.yaml",
        "a",
        "bad",
        tuple(problems),
    )
    assert str(ConfigError.from_problems(problems[:2])) == "2 problems:\n  a: bad\n  worse"
    assert str(ConfigError.from_problems(problems[:1], source="f.yaml")) == "f.yaml: a: bad"
    with pytest.raises(ValueError, match="at least one problem"):
        ConfigError.from_problems([])


def test_a_config_error_survives_pickling() -> None:
    error = ConfigError.from_problems(
        [ConfigProblem("a", "bad"), ConfigProblem("b", "x")], source="f"
    )
    copy = pickle.loads(pickle.dumps(error))
    assert (str(copy), copy.source, copy.problems) == (str(error), "f", error.problems)


@pytest.mark.parametrize(
    ("text", "problems"),
    [
        pytest.param(
            "agents:\n"
            "  - {id: a, handler: echo, capabilities: [echo], functions: {y: word_count}}\n",
            ["agents[0].functions.y: not one of the agent's capabilities"],
            id="function-not-a-capability",
        ),
        pytest.param(
            "agents:\n  - {id: a, brain: {skills: {nothere: x}}}\n",
            ["agents[0].brain.skills.nothere: not one of the agent's capabilities"],
            id="skill-not-a-capability",
        ),
        pytest.param(
            "agents:\n  - id: a\n    capabilities: [s]\n    functions: {s: word_count}\n"
            "    brain: {skills: {s: x}}\n",
            ["agents[0].brain.skills.s: also served by a function"],
            id="skill-and-function",
        ),
        pytest.param(
            "agents:\n  - {id: a, brain: {}, options: {x: 1}}\n",
            [
                "agents[0].options: options go to a handler factory: "
                "an agent with a brain takes none"
            ],
            id="options-with-a-brain",
        ),
        pytest.param(
            "agents:\n  - {id: a, handler: echo, task_timeout: 1.0e+12, budget: 3000000000000}\n",
            [
                "agents[0].task_timeout: expected a number > 0 and <= 604800, got 1000000000000",
                "agents[0].budget: expected an integer >= 0 and <= 1e+12, got 3000000000000",
            ],
            id="limits-beyond-the-wire",
        ),
        pytest.param(
            "heartbeat_interval: 1e3\nagents: [{id: a, handler: echo}]\n",
            [
                "heartbeat_interval: expected a number, got '1e3' "
                "(YAML took it for text: write 1e3 as 1.0e3)"
            ],
            id="yaml-1e3-is-text",
        ),
        pytest.param(
            "nats: {url: 'nats://bob:hunter2@127.0.0.1:notaport'}\n"
            "agents: [{id: a, handler: echo}]\n",
            [
                "nats.url: 'nats://bob:***@127.0.0.1:notaport': "
                "the port must be a number from 0 to 65535"
            ],
            id="port-not-a-number",
        ),
    ],
)
def test_rules_across_keys_and_limits_are_checked(text: str, problems: list[str]) -> None:
    assert [str(problem) for problem in load_error(text).problems] == problems
