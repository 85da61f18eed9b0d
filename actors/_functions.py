"""Capabilities served by plain Python callables, in front of any handler or brain.

A configuration may say ``functions: {word_count: word_count, total: pkg.mod:total}``:
those capabilities are served by the callables (a built-in capability's name, or
``package.module:function``), called with the call's input (and, if they take a
second argument, the agent context); they may be coroutine functions. Everything
else (messages, other capabilities) goes to the handler behind them. A callable
that raises ``ValueError`` or ``TypeError`` fails the call with ``bad_request``
(its input was wrong); anything else is ``agent_error``, like any handler failure.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from volta.protocol import ErrorCode

from ._handler import (
    BUILTIN_CAPABILITIES,
    CapabilityError,
    Handler,
    HandlerError,
    handler_serves,
    import_reference,
)

if TYPE_CHECKING:
    from volta.protocol import Message

    from ._context import AgentContext

CapabilityFunction = Callable[..., Any]
"""``f(input)`` or ``f(input, context)``, sync or async."""


def resolve_function(reference: str) -> CapabilityFunction:
    """The callable a configuration names.

    Raises:
        ValueError: it is neither a built-in capability nor an importable callable.
    """
    builtin = BUILTIN_CAPABILITIES.get(reference)
    if builtin is not None:
        return builtin
    function: CapabilityFunction = import_reference(reference, "function", BUILTIN_CAPABILITIES)
    if not callable(function):
        raise ValueError(f"function {reference!r}: {type(function).__name__} is not callable")
    return function


def _takes_context(function: CapabilityFunction) -> bool:
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [
        p
        for p in parameters
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    return len(positional) >= 2 or any(
        p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters
    )


class CapabilitiesOnly:
    """The handler behind the functions of an agent that has no handler or brain: it
    serves no capability itself and answers a message with ``bad_request`` (the agent
    takes capability requests, not messages)."""

    async def on_message(self, message: Message, context: AgentContext) -> str | None:
        names = ", ".join(context.capabilities) or "none"
        raise HandlerError(
            ErrorCode.BAD_REQUEST,
            f"{context.agent_id} takes capability requests ({names}), not messages",
        )

    def serves(self, capability: str) -> bool:
        """Nothing but its functions (which the wrapper in front of it serves)."""
        return False

    async def on_capability(self, capability: str, input: Any, context: AgentContext) -> Any:
        raise CapabilityError(
            ErrorCode.NO_CAPABILITY, f"{context.agent_id} has no function {capability!r}"
        )


class FunctionCapabilities:
    """A handler that serves some capabilities with callables and passes the rest on."""

    def __init__(self, handler: Handler, functions: Mapping[str, CapabilityFunction]) -> None:
        self.handler = handler
        self._functions = dict(functions)
        self._with_context = {name: _takes_context(f) for name, f in self._functions.items()}

    def serves(self, capability: str) -> bool | None:
        if capability in self._functions:
            return True
        return handler_serves(self.handler, capability)

    async def on_message(self, message: Message, context: AgentContext) -> str | None:
        return await self.handler.on_message(message, context)

    async def on_capability(self, capability: str, input: Any, context: AgentContext) -> Any:
        function = self._functions.get(capability)
        if function is None:
            return await self.handler.on_capability(capability, input, context)
        arguments = (input, context) if self._with_context[capability] else (input,)
        try:
            result = function(*arguments)
            if inspect.isawaitable(result):
                result = await result
        except (ValueError, TypeError) as error:
            raise CapabilityError(ErrorCode.BAD_REQUEST, f"{capability}: {error}") from None
        return result

    def usage(self) -> Mapping[str, float] | None:
        usage = getattr(self.handler, "usage", None)
        return usage() if callable(usage) else None

    async def aclose(self) -> None:
        close = getattr(self.handler, "aclose", None)
        if close is not None:
            await close()
