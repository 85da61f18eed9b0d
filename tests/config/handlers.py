"""Handlers for the node_spec tests, imported by reference (``tests.config.handlers:...``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from volta.actors import AgentContext
from volta.protocol import Message


class Translator:
    """Says what it serves: ``translate`` and nothing else."""

    def __init__(self, options: Mapping[str, Any]) -> None:
        self.options = options

    def serves(self, capability: str) -> bool:
        return capability == "translate"

    async def on_message(self, message: Message, context: AgentContext) -> str | None:
        return None

    async def on_capability(self, capability: str, input: Any, context: AgentContext) -> Any:
        return input


class Quiet:
    """Does not say what it serves: any capability is taken on trust."""

    def __init__(self, options: Mapping[str, Any]) -> None:
        self.options = options

    async def on_message(self, message: Message, context: AgentContext) -> str | None:
        return None

    async def on_capability(self, capability: str, input: Any, context: AgentContext) -> Any:
        return input


def broken(options: Mapping[str, Any]) -> object:
    """A factory whose options are refused."""
    raise ValueError(f"broken: needs a 'model' option, got {sorted(options)}")


def not_a_handler(options: Mapping[str, Any]) -> object:
    """A factory that builds something else."""
    return object()


class Plain:
    """A handler that takes no options: built with none."""

    async def on_message(self, message: Message, context: AgentContext) -> str | None:
        return "plain"

    async def on_capability(self, capability: str, input: Any, context: AgentContext) -> Any:
        return input


class Exploding:
    """A factory that fails with an error of its own (not a ValueError)."""

    def __init__(self, options: Mapping[str, Any]) -> None:
        raise KeyError("no such setting")
