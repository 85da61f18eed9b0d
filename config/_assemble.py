"""From a loaded spec to one a node can run: every agent's handler built.

An :class:`~volta.actors.AgentSpec` may describe its handler instead of holding one:
a built-in handler's name or ``package.module:factory`` (given the agent's
``options``), a ``brain`` (built with the model the environment allows), and plain
``functions`` in front of either. An agent made only of functions gets a handler
that serves nothing itself and answers messages with ``bad_request``.

The configuration file's folder is importable while (and after) the handlers are
built, so ``handler: my_agent:Handler`` and ``functions: {x: my_agent:x}`` find
``my_agent.py`` beside the file, as a newcomer expects.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

import attrs

from volta.actors import AgentSpec, BuildContext, Handler
from volta.actors._functions import CapabilitiesOnly, FunctionCapabilities, resolve_function
from volta.actors._handler import (
    BUILTIN_CAPABILITIES,
    BUILTIN_HANDLERS,
    handler_serves,
    resolve_handler,
)
from volta.core import ConfigError, ConfigProblem
from volta.core._settings import nested
from volta.node import NodeSpec


def _importable(folder: Path) -> None:
    """Let handlers and functions beside the configuration file be imported."""
    entry = str(folder.resolve())
    if entry not in sys.path:
        sys.path.insert(0, entry)


def _unserved(agent: AgentSpec, handler: Handler) -> list[ConfigProblem]:
    """A problem for each capability of ``agent`` that its handler says it cannot serve."""
    unserved = [
        (index, capability)
        for index, capability in enumerate(agent.capabilities)
        if capability not in agent.functions  # (a function that failed is reported already)
        and handler_serves(handler, capability) is False
    ]
    if not unserved:
        return []
    inner = handler.handler if isinstance(handler, FunctionCapabilities) else handler
    if isinstance(inner, CapabilitiesOnly):
        return [
            ConfigProblem(
                f"capabilities[{index}]",
                f"nothing serves {capability!r}: give it a function, a handler or a brain",
            )
            for index, capability in unserved
        ]
    described = agent.handler if isinstance(agent.handler, str) else type(handler).__name__
    hint = ""
    if agent.handler in BUILTIN_HANDLERS:
        # What a built-in handler can serve is known: the built-in capabilities.
        served = sorted(name for name in BUILTIN_CAPABILITIES if handler_serves(handler, name))
        hint = f" (it serves: {', '.join(served)})"
    return [
        ConfigProblem(
            f"capabilities[{index}]", f"handler {described!r} cannot serve {capability!r}{hint}"
        )
        for index, capability in unserved
    ]


def _handler(agent: AgentSpec, context: BuildContext) -> tuple[Handler, list[ConfigProblem]]:
    """The handler of one agent, behind its functions, and the problems found on the way
    (keys relative to the agent).

    Raises:
        ConfigError: the handler itself cannot be built (keys relative to the agent).
    """
    handler: Handler
    if isinstance(agent.handler, FunctionCapabilities):
        return agent.handler, []  # assembled already, its functions in front of it
    if isinstance(agent.handler, Handler):
        handler = agent.handler  # an object (the built brain, when it has one)
    elif agent.brain is not None:
        handler = agent.brain.build(agent, context)
    elif isinstance(agent.handler, str):
        try:
            handler = resolve_handler(agent.handler, agent.options)
        except (ValueError, TypeError) as error:
            raise ConfigError(str(error), key="handler") from None
    else:
        handler = CapabilitiesOnly()
    problems = []
    functions = {}
    for name, function in agent.functions.items():
        if callable(function):
            functions[name] = function
            continue
        try:
            functions[name] = resolve_function(function)
        except ValueError as error:
            problems.append(ConfigProblem(f"functions.{name}", str(error)))
    if functions:
        handler = FunctionCapabilities(handler, functions)
    return handler, problems + _unserved(agent, handler)


def assemble(
    spec: NodeSpec, *, source: str | None = None, environ: Mapping[str, str] | None = None
) -> NodeSpec:
    """``spec`` with every agent's handler built (see the module docstring).

    Args:
        spec: a node's spec, as loaded.
        source: the configuration file (its folder is importable, and relative paths
            in it start there).
        environ: the environment brains read their keys and model from (None: none).

    Raises:
        ConfigError: every handler that cannot be built (``agents[1].handler``), every
            function that cannot be imported and every capability a handler says it
            cannot serve (``agents[0].capabilities[2]``), in agent order.
    """
    folder = Path(source).parent if source else None
    if folder is not None and folder.is_dir():
        _importable(folder)
    context = BuildContext(dict(environ or {}), folder)
    agents = []
    problems: list[ConfigProblem] = []
    for index, agent in enumerate(spec.agents):
        key = f"agents[{index}]"
        try:
            handler, found = _handler(agent, context)
        except ConfigError as error:
            problems += nested(error, key, source=None).problems
            continue
        problems += (
            nested(ConfigError.from_problems(found), key, source=None).problems if found else []
        )
        agents.append(attrs.evolve(agent, handler=handler))
    if problems:
        raise ConfigError.from_problems(problems, source=source)
    return attrs.evolve(spec, agents=tuple(agents))
