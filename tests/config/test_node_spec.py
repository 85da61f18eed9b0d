"""From a loaded spec to one a node runs: handlers are built and checked (assemble),
and every handler problem of the file is reported at once.

Rules for this module: no network and no servers; custom handlers come from
``tests/config/handlers.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from volta.actors import EchoHandler
from volta.actors._handler import BUILTIN_CAPABILITIES, handler_serves
from volta.config import (
    ConfigError,
    ConfigProblem,
    assemble,
    load_config,
    load_config_text,
    shipped_config,
)

from .handlers import Plain, Quiet, Translator

HANDLERS = "tests.config.handlers"


def spec_error(text: str) -> ConfigError:
    config = load_config_text(text)
    with pytest.raises(ConfigError) as caught:
        assemble(config, source="conf/node.yaml")
    return caught.value


def test_echo_serves_exactly_the_builtin_capabilities() -> None:
    handler = EchoHandler()
    assert [name for name in BUILTIN_CAPABILITIES if handler.serves(name)] == list(
        BUILTIN_CAPABILITIES
    )
    assert sorted(BUILTIN_CAPABILITIES) == ["echo", "sum", "uppercase", "word_count"]
    assert not handler.serves("translate")
    assert handler_serves(handler, "sum") is True
    assert handler_serves(handler, "translate") is False


def test_a_handler_without_serves_does_not_say() -> None:
    assert handler_serves(Quiet({}), "anything") is None
    assert handler_serves(Translator({}), "translate") is True
    assert handler_serves(Translator({}), "echo") is False


@pytest.mark.parametrize("name", ["seed", "coordinator", "researcher", "writer"])
def test_the_shipped_configs_build(name: str) -> None:
    config = load_config(shipped_config(name))
    spec = assemble(config)
    assert [agent.id for agent in spec.agents] == [agent.id for agent in config.agents]


def test_a_capability_echo_cannot_serve_is_a_config_error() -> None:
    error = spec_error(
        "agents:\n  - {id: a, handler: echo, capabilities: [echo, translate, sum, fly]}\n"
    )
    assert str(error) == (
        "conf/node.yaml: 2 problems:\n"
        "  agents[0].capabilities[1]: handler 'echo' cannot serve 'translate' "
        "(it serves: echo, sum, uppercase, word_count)\n"
        "  agents[0].capabilities[3]: handler 'echo' cannot serve 'fly' "
        "(it serves: echo, sum, uppercase, word_count)"
    )


def test_a_custom_handler_that_says_what_it_serves() -> None:
    config = load_config_text(
        f"agents:\n  - {{id: t, handler: '{HANDLERS}:Translator', capabilities: [translate]}}\n"
    )
    (agent,) = assemble(config).agents
    assert isinstance(agent.handler, Translator)
    error = spec_error(
        f"agents:\n  - id: t\n    handler: '{HANDLERS}:Translator'\n"
        "    capabilities: [translate, echo]\n"
    )
    assert error.problems == (
        ConfigProblem(
            "agents[0].capabilities[1]",
            f"handler '{HANDLERS}:Translator' cannot serve 'echo'",
        ),
    )


def test_a_custom_handler_that_does_not_say_is_trusted() -> None:
    config = load_config_text(
        f"agents:\n  - {{id: q, handler: '{HANDLERS}:Quiet', capabilities: [translate, fly]}}\n"
    )
    (agent,) = assemble(config).agents
    assert isinstance(agent.handler, Quiet)
    assert agent.capabilities == ("translate", "fly")


def test_a_custom_handler_is_built_with_its_options() -> None:
    config = load_config_text(
        f"agents:\n  - {{id: q, handler: '{HANDLERS}:Quiet', options: {{model: m}}}}\n"
    )
    (agent,) = assemble(config).agents
    assert isinstance(agent.handler, Quiet)
    assert agent.handler.options == {"model": "m"}


def test_every_handler_problem_is_reported_together() -> None:
    error = spec_error(
        "agents:\n"
        "  - {id: a, handler: no_such_module_here:Handler}\n"
        "  - {id: b, handler: echo, capabilities: [uppercase, translate]}\n"
        f"  - {{id: c, handler: '{HANDLERS}:Nope'}}\n"
        "  - {id: d, handler: echo}\n"
        f"  - {{id: e, handler: '{HANDLERS}:broken', options: {{temperature: 1}}}}\n"
        f"  - {{id: f, handler: '{HANDLERS}:not_a_handler'}}\n"
        f"  - {{id: g, handler: '{HANDLERS}:Translator', capabilities: [sum]}}\n"
    )
    assert error.source == "conf/node.yaml"
    assert [str(problem) for problem in error.problems] == [
        "agents[0].handler: handler 'no_such_module_here:Handler': cannot import "
        "no_such_module_here: No module named 'no_such_module_here'",
        "agents[1].capabilities[1]: handler 'echo' cannot serve 'translate' "
        "(it serves: echo, sum, uppercase, word_count)",
        f"agents[2].handler: handler '{HANDLERS}:Nope': {HANDLERS} has no 'Nope'",
        "agents[4].handler: broken: needs a 'model' option, got ['temperature']",
        f"agents[5].handler: handler '{HANDLERS}:not_a_handler' built a object, "
        "which lacks on_message/on_capability",
        f"agents[6].capabilities[0]: handler '{HANDLERS}:Translator' cannot serve 'sum'",
    ]


def test_one_handler_problem_reads_as_before() -> None:
    error = spec_error("agents:\n  - {id: a, handler: echo}\n  - {id: b, handler: x.y:Z}\n")
    assert str(error) == (
        "conf/node.yaml: agents[1].handler: handler 'x.y:Z': cannot import x.y: No module named 'x'"
    )


def test_replication_inbox_bounds_and_directory_bounds_reach_the_node() -> None:
    config = load_config_text(
        """
nats: {name: workers}
directory: {forget_after: 120, max_agents: 500}
agents:
  - id: worker
    handler: echo
    replicated: true
    inbox_buffer: 64
    inbox_max_bytes: 65536
  - id: single
    handler: echo
"""
    )
    spec = assemble(config)
    worker, single = spec.agents
    assert (worker.replicated, worker.inbox_buffer, worker.inbox_max_bytes) == (True, 64, 65536)
    assert (single.replicated, single.inbox_buffer) == (False, 1024)
    assert (spec.directory.forget_after, spec.directory.max_agents, spec.name) == (
        120.0,
        500,
        "workers",
    )


def test_directory_bounds_are_checked() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config_text(
            "directory: {forget_after: 0, max_agents: 0}\nagents: [{id: a, handler: echo}]"
        )
    assert [p.key for p in caught.value.problems] == [
        "directory.forget_after",
        "directory.max_agents",
    ]


def test_a_handler_that_takes_no_options_is_built_with_none() -> None:
    config = load_config_text(f"agents:\n  - {{id: p, handler: '{HANDLERS}:Plain'}}\n")
    (agent,) = assemble(config).agents
    assert isinstance(agent.handler, Plain)
    error = spec_error(
        f"agents:\n  - {{id: p, handler: '{HANDLERS}:Plain', options: {{model: m}}}}\n"
    )
    assert [str(problem) for problem in error.problems] == [
        f"agents[0].handler: handler '{HANDLERS}:Plain' takes no options, got ['model']"
    ]


def test_an_agent_of_functions_alone_needs_no_handler() -> None:
    config = load_config_text(
        "agents:\n  - {id: f, capabilities: [word_count], functions: {word_count: word_count}}\n"
    )
    (agent,) = assemble(config).agents
    assert agent.handler is not None
    assert not isinstance(agent.handler, str)
    with pytest.raises(ConfigError) as caught:
        load_config_text("agents:\n  - {id: nothing}\n")
    assert [str(problem) for problem in caught.value.problems] == [
        "agents[0].handler: required key is missing (or give the agent a 'brain', or 'functions')"
    ]


def test_a_module_that_fails_as_it_loads_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "raising.py").write_text("raise RuntimeError('boom at import')\n")
    (tmp_path / "broken_syntax.py").write_text("def (:\n")
    config = tmp_path / "team.yaml"
    config.write_text(
        "agents:\n"
        "  - {id: a, handler: 'raising:Handler'}\n"
        "  - {id: b, capabilities: [x], functions: {x: 'broken_syntax:x'}}\n"
        f"  - {{id: c, handler: '{HANDLERS}:Exploding'}}\n"
    )
    with pytest.raises(ConfigError) as caught:
        assemble(load_config(config), source=str(config))
    assert [str(problem) for problem in caught.value.problems] == [
        "agents[0].handler: handler 'raising:Handler': cannot import raising: "
        "RuntimeError: boom at import",
        "agents[1].functions.x: function 'broken_syntax:x': cannot import broken_syntax: "
        "SyntaxError: invalid syntax (broken_syntax.py, line 1)",
        f"agents[2].handler: handler '{HANDLERS}:Exploding' could not be built: "
        "KeyError: 'no such setting'",
    ]


def test_a_function_that_cannot_be_found_is_the_only_problem_it_makes() -> None:
    error = spec_error(
        "agents:\n  - {id: f, capabilities: [shout, y], functions: {shout: 'tests.nope:shout'}}\n"
    )
    assert [str(problem) for problem in error.problems] == [
        "agents[0].functions.shout: function 'tests.nope:shout': cannot import tests.nope: "
        "No module named 'tests.nope'",
        "agents[0].capabilities[1]: nothing serves 'y': give it a function, a handler or a brain",
    ]


def test_a_built_in_handler_misspelt_gets_a_suggestion() -> None:
    error = spec_error("agents:\n  - {id: a, handler: Echo}\n")
    assert [str(problem) for problem in error.problems] == [
        "agents[0].handler: handler 'Echo': not a built-in (echo) nor "
        "'package.module:attribute'; did you mean 'echo'?"
    ]
