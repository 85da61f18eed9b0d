"""``${VAR}`` in configuration values, substituted from the environment given to the loader.

Rules for this module: no network and no servers; the environment is a plain
dict handed to the loader, never ``os.environ``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from volta.config import ConfigError, load_config, load_config_text
from volta.node import NodeSpec

ENVIRON = {"HOST": "node-7", "HB": "5", "EMPTY": "", "WORDS": "a b: [c] # d"}
FORMS = "expected ${NAME}, ${NAME:-default} or ${NAME-default} ($$ is a literal $)"


def load(text: str, environ: dict[str, str] | None = None) -> NodeSpec:
    return load_config_text(text, environ=ENVIRON if environ is None else environ)


def load_error(text: str, environ: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_config_text(
            text, source="conf/x.yaml", environ=ENVIRON if environ is None else environ
        )
    return caught.value


def name(value: str) -> str:
    """The agent name that ``value``, written as a plain YAML scalar, becomes."""
    return load(f"agents:\n  - id: a\n    handler: echo\n    name: {value}\n").agents[0].name


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        pytest.param("worker-${HOST}", "worker-node-7", id="inside-text"),
        pytest.param("${HOST}/${HB}", "node-7/5", id="two"),
        pytest.param("x${NOPE:-dflt}", "xdflt", id="default-when-unset"),
        pytest.param("x${EMPTY:-dflt}", "xdflt", id="colon-default-when-empty"),
        pytest.param("x${EMPTY-dflt}", "x", id="dash-default-only-when-unset"),
        pytest.param("x${NOPE-dflt}", "xdflt", id="dash-default-when-unset"),
        pytest.param("x${HOST:-dflt}", "xnode-7", id="set-beats-default"),
        pytest.param("x${NOPE:-}", "x", id="empty-default"),
        pytest.param("x${NOPE:-a b-c:d}", "xa b-c:d", id="default-is-literal"),
        pytest.param("cost $$5", "cost $5", id="dollar-dollar"),
        pytest.param("$${HOST}", "${HOST}", id="escaped-reference"),
        pytest.param("$$$${HOST}", "$${HOST}", id="two-escapes"),
        pytest.param("$$${HOST}", "$node-7", id="escape-then-reference"),
        pytest.param("pa$word $ end$", "pa$word $ end$", id="lone-dollars-stay"),
        pytest.param("'x${WORDS}'", "xa b: [c] # d", id="value-adds-no-structure"),
    ],
)
def test_references_are_substituted(written: str, expected: str) -> None:
    assert name(written) == expected


def test_a_whole_plain_scalar_is_typed_again_by_yaml_rules() -> None:
    config = load(
        "heartbeat_interval: ${HB:-30}\n"
        "request_timeout: ${NOPE:-2.5}\n"
        "offline_after_missed: ${NOPE:-4}\n"
        "nats: {name: '${NOPE:-x}'}\n"
        "agents:\n"
        "  - id: a\n"
        "    handler: echo\n"
        "    options:\n"
        "      plain: ${HB}\n"
        "      quoted: '${HB}'\n"
        '      double: "${HB}"\n'
        "      tagged: !!str ${HB}\n"
        "      flag: ${NOPE:-true}\n"
        "      nothing: ${NOPE:-null}\n"
        "      list: ${NOPE:-[1, 2]}\n"
        "      block: |\n"
        "        ${HB}\n"
    )
    assert (config.heartbeat_interval, config.request_timeout) == (5.0, 2.5)
    assert config.offline_after_missed == 4
    assert config.nats.name == "x"
    assert dict(config.agents[0].options) == {
        "plain": 5,
        "quoted": "5",
        "double": "5",
        "tagged": "5",
        "flag": True,
        "nothing": None,
        "list": "[1, 2]",  # typed again as a scalar: never a sequence
        "block": "5\n",
    }


def test_quoting_keeps_a_substituted_number_a_string() -> None:
    error = load_error("heartbeat_interval: '${HB}'\nagents: [{id: a, handler: echo}]\n")
    assert str(error) == "conf/x.yaml: heartbeat_interval: expected a number, got '5'"


def test_the_scaled_container_example() -> None:
    text = "agents:\n  - id: worker-${REPLICA:-0}\n    handler: echo\n"
    assert load(text).agents[0].id == "worker-0"
    assert load(text, {"REPLICA": "3"}).agents[0].id == "worker-3"


def test_keys_are_not_substituted() -> None:
    error = load_error("${HB}: 1\nagents: [{id: a, handler: echo}]\n")
    assert error.key == "${HB}"


def test_an_anchor_is_substituted_once_for_all_its_aliases() -> None:
    config = load(
        "agents:\n"
        "  - &base\n"
        "    id: a\n"
        "    handler: echo\n"
        "    name: &name n-${HOST}\n"
        "    max_concurrency: ${HB}\n"
        "  - {<<: *base, id: b}\n"
        "  - {id: c, handler: echo, name: *name}\n"
    )
    assert [(agent.id, agent.name, agent.max_concurrency) for agent in config.agents] == [
        ("a", "n-node-7", 5),
        ("b", "n-node-7", 5),
        ("c", "n-node-7", 8),
    ]


def test_no_environ_reads_the_document_as_written() -> None:
    config = load_config_text("agents:\n  - {id: a, handler: echo, name: '${HOST} $$'}\n")
    assert config.agents[0].name == "${HOST} $$"


def test_load_config_substitutes_too(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("heartbeat_interval: ${HB}\nagents:\n  - {id: 'w-${HOST}', handler: echo}\n")
    config = load_config(path, environ=ENVIRON)
    assert (config.heartbeat_interval, config.agents[0].id) == (5.0, "w-node-7")


def test_an_unset_variable_names_the_key_and_the_variable() -> None:
    error = load_error("agents:\n  - id: worker-${REPLICA}\n    handler: echo\n")
    assert str(error) == (
        "conf/x.yaml: agents[0].id: environment variable REPLICA is not set "
        "(write ${REPLICA:-...} for a default)"
    )


@pytest.mark.parametrize(
    ("written", "shown"),
    [
        pytest.param("${}", "'${}'", id="empty"),
        pytest.param("${1X}", "'${1X}'", id="leading-digit"),
        pytest.param("${A.B}", "'${A.B}'", id="dot"),
        pytest.param("${A:?oops}", "'${A:?oops}'", id="unsupported-operator"),
        pytest.param("${ A}", "'${ A}'", id="space"),
        pytest.param("x${HOST", "'${HOST'", id="unclosed"),
        pytest.param("${A:-${B}}", "'${A:-${B}'", id="nested"),
    ],
)
def test_a_malformed_reference_is_an_error(written: str, shown: str) -> None:
    error = load_error(f"agents:\n  - {{id: a, handler: echo, name: '{written}'}}\n")
    assert str(error) == (
        f"conf/x.yaml: agents[0].name: malformed variable reference {shown}: {FORMS}"
    )


def test_reference_problems_come_first_and_together_with_the_others() -> None:
    error = load_error(
        "heartbeat_interval: ${HB_UNSET}\n"
        "request_timeout: soon\n"
        "connection: ${MODE}\n"
        "agents:\n"
        "  - {id: 'w-${R}-${S}', handler: echo}\n"
        "  - {id: b, handler: echo, name: '${1}'}\n"
        "  - {id: c}\n"
    )
    assert str(error) == (
        "conf/x.yaml: 7 problems:\n"
        "  heartbeat_interval: environment variable HB_UNSET is not set "
        "(write ${HB_UNSET:-...} for a default)\n"
        "  connection: environment variable MODE is not set (write ${MODE:-...} for a default)\n"
        "  agents[0].id: environment variable R is not set (write ${R:-...} for a default)\n"
        "  agents[0].id: environment variable S is not set (write ${S:-...} for a default)\n"
        f"  agents[1].name: malformed variable reference '${{1}}': {FORMS}\n"
        # what the values left as written would have said ("expected a number, got
        # '${HB_UNSET}'", "invalid agent id") is left out
        "  request_timeout: expected a number, got 'soon'\n"
        "  agents[2].handler: required key is missing (or give the agent a 'brain', or 'functions')"
    )


def test_an_unknown_key_is_named_whatever_its_value() -> None:
    error = load_error("hearbeat_interval: ${NOPE}\nagents: [{id: a, handler: echo}]\n")
    assert [str(problem) for problem in error.problems] == [
        "hearbeat_interval: environment variable NOPE is not set "
        "(write ${NOPE:-...} for a default)",
        "hearbeat_interval: unknown key (did you mean 'heartbeat_interval'?)",
    ]


def test_a_document_that_is_one_bad_reference() -> None:
    assert str(load_error("${NOPE}\n")) == (
        "conf/x.yaml: environment variable NOPE is not set (write ${NOPE:-...} for a default)"
    )
    assert str(load_error("${HB}\n")) == ("conf/x.yaml: expected a mapping at the top level, got 5")


def test_a_bad_reference_alone_is_still_an_error() -> None:
    # The value left as written is acceptable, but the file is not.
    error = load_error("agents:\n  - {id: a, handler: echo, name: '${NOPE}'}\n")
    assert error.key == "agents[0].name"
    assert len(error.problems) == 1


def test_secrets_substituted_or_written_never_reach_errors() -> None:
    environ = {"PW": "12345", "TOKEN": "[tok-secret-1]", "URLPW": "pw-secret-2"}
    cases = {
        # a substituted password typed as a number: the value is not shown
        "nats:\n  password: ${PW}\nagents: [{id: a, handler: echo}]\n": "12345",
        # a substituted token that looks like a list stays one string
        "nats:\n  token: ${TOKEN}\n  connect_timeout: 0\nagents: [{id: a, handler: echo}]\n": (
            "tok-secret-1"
        ),
        # credentials substituted into a URL are redacted
        "nats: {url: 'http://u:${URLPW}@h:1'}\nagents: [{id: a, handler: echo}]\n": "pw-secret-2",
        # a password that merely looks like a bad reference is not quoted
        "nats: {password: 'pw-${secret-3', user: '${X'}\nagents: [{id: a, handler: echo}]\n": (
            "secret-3"
        ),
    }
    for text, secret in cases.items():
        with pytest.raises(ConfigError) as caught:
            load_config_text(text, environ=environ)
        assert str(caught.value.key).startswith("nats")
        assert secret not in str(caught.value), str(caught.value)
        assert secret not in repr(caught.value)
    error = load_error(
        "nats: {password: 'pw-${secret-3', user: '${X'}\nagents: [{id: a, handler: echo}]\n"
    )
    assert [str(problem) for problem in error.problems] == [
        # in document order
        f"nats.password: malformed variable reference: {FORMS}",
        f"nats.user: malformed variable reference: {FORMS}",
    ]


def test_a_substituted_value_yaml_cannot_build_is_a_yaml_error() -> None:
    error = load_error(
        "agents:\n  - id: a\n    handler: echo\n    options:\n      since: ${DAY}\n",
        {"DAY": "2001-13-45"},
    )
    assert str(error) == "conf/x.yaml: not valid YAML: month must be in 1..12 (line 5, column 14)"
