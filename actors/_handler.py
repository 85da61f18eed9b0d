"""What a handler (or, later, a Claude brain) implements, and how one is found.

A handler gets each message an agent receives and each capability call it
serves, together with an :class:`~volta.actors.AgentContext` through which it can
answer, message other agents, broadcast, list agents and request capabilities.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import attrs

from volta.protocol import ErrorCode, VoltaError

if TYPE_CHECKING:
    from volta.core import ConfigProblem
    from volta.protocol import Message

    from ._agent import AgentSpec
    from ._context import AgentContext


class AgentFault(Exception):
    """Raised by a handler when the agent itself is broken, not just one unit of work.

    Any other exception fails only the message or capability call it was raised
    for: its sender gets an error answer, it is counted and logged, and the
    agent's other work carries on. ``AgentFault`` does that too, then crashes
    the child that ran the handler, so its supervisor restarts it (OTP's "let it
    crash", for corrupted state, never for bad input).
    """


class HandlerError(VoltaError):
    """Raised by a handler to fail one message or capability call with a protocol code.

    The sender gets that code (``rate_limited``, ``bad_request``, ...) and the words;
    it is counted and logged like any failure, and the agent goes on.
    """


class CapabilityError(HandlerError):
    """Raised by a handler to fail a capability call with a protocol error code."""


@runtime_checkable
class Handler(Protocol):
    """The behaviour of an agent."""

    async def on_message(self, message: Message, context: AgentContext) -> str | None:
        """Handle one message.

        Returns:
            The text of the response to send back to the sender, or None for no
            response. Responses are never answered (that would loop).

        Raises:
            AgentFault: the agent's own state is broken: the sender gets an error
                response, then the inbox crashes and its supervisor restarts it.
            Exception: any other failure fails this message alone: the sender gets
                an ``agent_error`` response; the agent goes on.
        """
        ...

    async def on_capability(self, capability: str, input: Any, context: AgentContext) -> Any:
        """Run one of the agent's capabilities.

        Returns:
            The result, any JSON-representable value.

        Raises:
            CapabilityError: a failure with a protocol error code.
            AgentFault: as for :meth:`on_message` (the capability responder restarts).
            Exception: any other failure (reported as ``agent_error``).
        """
        ...


HandlerFactory = Callable[..., Handler]
"""Builds a handler: called with the ``options`` of the agent's spec if it takes an
argument, else with none (a handler class with a plain ``__init__(self)`` is one)."""


@attrs.frozen
class BuildContext:
    """What building a handler may use: given, never read from the process on its own."""

    environ: Mapping[str, str] = attrs.field(factory=dict)
    """The environment (API keys, ``VOLTA_MODEL``, ...)."""
    folder: Path | None = None
    """The folder of the configuration file (relative paths in it start there)."""


@runtime_checkable
class HandlerRecipe(Protocol):
    """A handler described by settings, built before the agent runs (a brain's spec)."""

    def problems(self, agent: AgentSpec) -> list[ConfigProblem]:
        """What is wrong with it on this agent (keys relative to the agent's spec)."""
        ...

    def build(self, agent: AgentSpec, context: BuildContext) -> Handler:
        """The handler.

        Raises:
            ConfigError: it cannot be built (keys relative to the agent's spec).
        """
        ...


# --- built-in capabilities -------------------------------------------------------------


def _text(capability: str, value: Any) -> str:
    if not isinstance(value, str):
        raise CapabilityError(
            ErrorCode.BAD_REQUEST, f"{capability} expects a string, got {type(value).__name__}"
        )
    return value


def _echo(value: Any) -> Any:
    return value


def _uppercase(value: Any) -> str:
    return _text("uppercase", value).upper()


def _word_count(value: Any) -> int:
    return len(_text("word_count", value).split())


def _sum(value: Any) -> float:
    if not isinstance(value, list) or not all(
        isinstance(n, int | float) and not isinstance(n, bool) for n in value
    ):
        raise CapabilityError(ErrorCode.BAD_REQUEST, "sum expects a list of numbers")
    return sum(value)


BUILTIN_CAPABILITIES: Mapping[str, Callable[[Any], Any]] = {
    "echo": _echo,
    "uppercase": _uppercase,
    "word_count": _word_count,
    "sum": _sum,
}
"""Capabilities every built-in handler can serve."""


class EchoHandler:
    """Answers every message with its own text; serves the built-in capabilities."""

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        self._prefix = str((options or {}).get("prefix", ""))

    async def on_message(self, message: Message, context: AgentContext) -> str | None:
        return f"{self._prefix}{message.message}"

    def serves(self, capability: str) -> bool:
        """Whether ``capability`` is one of :data:`BUILTIN_CAPABILITIES`."""
        return capability in BUILTIN_CAPABILITIES

    async def on_capability(self, capability: str, input: Any, context: AgentContext) -> Any:
        function = BUILTIN_CAPABILITIES.get(capability)
        if function is None:
            raise CapabilityError(
                ErrorCode.NO_CAPABILITY, f"{context.agent_id} has no built-in {capability!r}"
            )
        return function(input)


def handler_serves(handler: Handler, capability: str) -> bool | None:
    """Whether a handler says it serves a capability, or None when it does not say.

    A handler may define ``serves(self, capability: str) -> bool`` (it is not part
    of :class:`Handler`, which stays what every handler must have). ``volta run``
    refuses, as a configuration error, an agent configured with a capability that
    its handler says it cannot serve; a handler without ``serves`` is trusted.
    """
    serves = getattr(handler, "serves", None)
    if not callable(serves):
        return None
    return bool(serves(capability))


BUILTIN_HANDLERS: Mapping[str, HandlerFactory] = {"echo": EchoHandler}
"""Handlers that a configuration can name without a module path."""


def import_reference(reference: str, what: str, builtins: Mapping[str, object]) -> Any:
    """What ``package.module:attribute`` names (for handlers and capability functions).

    Raises:
        ValueError: it is not of that form, or cannot be imported; the message says which
            ``what`` it was and lists the ``builtins`` that could be named instead.
    """
    module_name, _, attribute = reference.partition(":")
    if not module_name or not attribute:
        known = ", ".join(sorted(builtins))
        close = difflib.get_close_matches(reference.lower(), list(builtins), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(
            f"{what} {reference!r}: not a built-in ({known}) nor 'package.module:attribute'{hint}"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f"{what} {reference!r}: cannot import {module_name}: {error}") from None
    except Exception as error:  # the module itself fails as it loads: a syntax error, a raise
        raise ValueError(
            f"{what} {reference!r}: cannot import {module_name}: {type(error).__name__}: {error}"
        ) from None
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise ValueError(f"{what} {reference!r}: {module_name} has no {attribute!r}") from None


def _takes_an_argument(factory: Callable[..., Any]) -> bool:
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # no signature to read (a builtin): call it as before
        return True
    return any(
        p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL) for p in parameters
    )


def resolve_handler(reference: str, options: Mapping[str, Any] | None = None) -> Handler:
    """Build the handler a configuration names.

    Args:
        reference: a built-in name (``echo``) or ``package.module:attribute``
            where the attribute is a handler factory (a class or a function; it is
            given the options mapping if it takes an argument).
        options: passed to the factory.

    Raises:
        ValueError: the reference cannot be imported, or does not give a handler.
    """
    options = dict(options or {})
    factory = BUILTIN_HANDLERS.get(reference) or import_reference(
        reference, "handler", BUILTIN_HANDLERS
    )
    if not callable(factory):
        raise ValueError(f"handler {reference!r}: {type(factory).__name__} is not callable")
    if not _takes_an_argument(factory) and options:
        raise ValueError(f"handler {reference!r} takes no options, got {sorted(options)}")
    try:
        handler = factory(options) if _takes_an_argument(factory) else factory()
    except (ValueError, TypeError):
        raise  # (its own words: what it needs)
    except Exception as error:
        raise ValueError(
            f"handler {reference!r} could not be built: {type(error).__name__}: {error}"
        ) from None
    if not isinstance(handler, Handler):
        raise ValueError(
            f"handler {reference!r} built a {type(handler).__name__}, which lacks "
            "on_message/on_capability"
        )
    return handler
