"""The offline brain: a deterministic stand-in for Claude, for machines without a key.

It answers the same Messages-API requests a real model gets, through the same
loop, so everything around the model is exercised for real: a coordinator
(a brain with a ``team``) really calls ``ask_agent`` for each teammate in one
turn, the calls run concurrently over the bus, and it combines their answers; a
specialist answers from the text it was given. Every answer says it comes from
the offline brain, and why. Token counts are estimated (four characters a
token), so budgets behave as they would.
"""

from __future__ import annotations

import html
import itertools
import re
from collections.abc import Mapping, Sequence
from typing import Any

from ._models import ModelReply, estimate_reply_usage

OFFLINE_NOTE = "[offline brain: {reason}]"
"""How every offline answer begins."""

_WORD = re.compile(r"[A-Za-z][A-Za-z'-]+")
_ELEMENT = re.compile(r'<(question|message) from="[^"]*">\n(.*)\n</\1>', re.DOTALL)
_ids = itertools.count(1)


def _user_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "\n".join(str(block.get("text", "")) for block in content if block.get("type") == "text")


def _request_of(text: str) -> str:
    """The request inside a user turn: the text of its ``<question from=...>`` element
    (``brains/_brain.py`` from_sender), else what follows its first line."""
    element = _ELEMENT.fullmatch(text)
    if element is not None:
        return html.unescape(element.group(2)).strip()
    _, header, body = text.partition("\n")
    return (body if header else text).strip()


def _tool_texts(content: Sequence[Mapping[str, Any]]) -> list[tuple[str, bool]]:
    results = []
    for block in content:
        if block.get("type") != "tool_result":
            continue
        inner = block.get("content")
        words = (
            " ".join(str(b.get("text", "")) for b in inner)
            if isinstance(inner, list)
            else str(inner)
        )
        results.append((words, bool(block.get("is_error"))))
    return results


class OfflineModel:
    """See the module docstring."""

    def __init__(
        self,
        agent_id: str,
        name: str,
        team: Sequence[str] = (),
        reason: str = "ANTHROPIC_API_KEY is not set",
    ) -> None:
        self._agent_id = agent_id
        self._name = name
        self._team = tuple(member for member in team if member != agent_id)
        self._note = OFFLINE_NOTE.format(reason=reason)

    @property
    def description(self) -> str:
        return "the offline brain (deterministic, says so in every answer)"

    async def create(self, params: Mapping[str, Any], *, timeout: float | None) -> ModelReply:
        messages = params.get("messages") or [{"role": "user", "content": ""}]
        last = messages[-1].get("content", "")
        tools = {tool.get("name") for tool in params.get("tools") or ()}
        may_delegate = "ask_agent" in tools and params.get("tool_choice", {}).get("type") != "none"
        content: list[dict[str, Any]]
        if isinstance(last, list) and any(b.get("type") == "tool_result" for b in last):
            content = [{"type": "text", "text": self._combine(messages, _tool_texts(last))}]
            stop = "end_turn"
        elif self._team and may_delegate:
            request = _request_of(_user_text(last))
            content = [
                {
                    "type": "tool_use",
                    "id": f"toolu_offline_{next(_ids):06d}",
                    "name": "ask_agent",
                    "input": {
                        "to": member,
                        "question": f"Your part, as {member}, of this request: {request}",
                    },
                }
                for member in self._team
            ]
            stop = "tool_use"
        else:
            content = [{"type": "text", "text": self._answer(_request_of(_user_text(last)))}]
            stop = "end_turn"
        return ModelReply(
            content=tuple(content),
            stop_reason=stop,
            usage=estimate_reply_usage(params, content),
            latency=0.0,
        )

    def _answer(self, request: str) -> str:
        words = _WORD.findall(request)
        keys = sorted({w.lower() for w in words}, key=lambda w: (-len(w), w))[:3]
        return (
            f"{self._note} {self._name} read {len(words)} word{'' if len(words) == 1 else 's'}; "
            f"key terms: {', '.join(keys) or 'none'}."
        )

    def _combine(
        self, messages: Sequence[Mapping[str, Any]], results: list[tuple[str, bool]]
    ) -> str:
        first = next((m for m in messages if m.get("role") == "user"), {"content": ""})
        request = _request_of(_user_text(first.get("content", "")))
        lines = [f"{self._note} {self._name} combined {len(results)} answers to: {request}"]
        for words, failed in results:
            body = words.partition("\n")[2] or words
            lines.append(f"- {'(failed) ' if failed else ''}{body.strip()}")
        return "\n".join(lines)

    async def aclose(self) -> None:
        """Nothing to release."""
