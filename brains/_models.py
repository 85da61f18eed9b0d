"""What a brain thinks with: Claude through the ``anthropic`` SDK, behind one small protocol.

:class:`ClaudeModel` calls ``AsyncAnthropic.messages.create``; the SDK runs
natively under trio (httpx on anyio), so there is no asyncio bridge here. The
SDK's own retries do the waiting on 408/409/429/5xx and timeouts, with backoff
and ``retry-after`` honoured (``max_retries``); when it gives up, the failure is
a :class:`BrainFailure` whose code the sender receives:

- ``RateLimitError`` (429): ``rate_limited``;
- ``OverloadedError`` (529): ``overloaded``;
- ``APITimeoutError``: ``timeout``;
- ``APIConnectionError``, 5xx, ``AuthenticationError``, ``PermissionDeniedError``:
  ``brain_unavailable``;
- any other API error (a bad request): ``agent_error``.

The API key is handed to the SDK and nowhere else: it is never in a log line, an
error, an event, a heartbeat or a message (every error text is scrubbed of it).
"""

from __future__ import annotations

import logging
import re
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from volta.actors import HandlerError
from volta.protocol import ErrorCode

from ._memory import estimate_tokens

if TYPE_CHECKING:
    import anthropic

log = logging.getLogger("volta.brains")

DEFAULT_MODEL = "claude-sonnet-5-5"
"""A current Sonnet, from the SDK's own model list (``anthropic.types.ModelParam``)."""


class BrainFailure(HandlerError):
    """The model could not be used for this unit of work (after the SDK's retries)."""


MAX_CALL_TOKENS = 10**9
"""The most tokens one call is believed to have used (a context window is ~10**6)."""


def _token_count(value: object) -> int:
    """A token count as reported, made sane: an API (or a proxy) that answers -1000 or
    10**20 must not poison the heartbeat, the budget or the answer's usage."""
    if isinstance(value, bool) or not isinstance(value, int):
        return 0
    return min(max(value, 0), MAX_CALL_TOKENS)


@attrs.frozen
class Usage:
    """Tokens of one model call (each count clamped to 0..``MAX_CALL_TOKENS``)."""

    input_tokens: int = attrs.field(default=0, converter=_token_count)
    output_tokens: int = attrs.field(default=0, converter=_token_count)
    cache_read_input_tokens: int = attrs.field(default=0, converter=_token_count)
    cache_creation_input_tokens: int = attrs.field(default=0, converter=_token_count)

    @property
    def total(self) -> int:
        """Every token the call processed: what a task's budget counts."""
        return (
            self.input_tokens
            + self.output_tokens
            + self.cache_read_input_tokens
            + self.cache_creation_input_tokens
        )


@attrs.frozen
class ModelReply:
    """One assistant turn, as the brain's loop needs it."""

    content: tuple[Mapping[str, Any], ...]
    """Content blocks as Messages-API dicts (``text``, ``tool_use``)."""
    stop_reason: str | None
    usage: Usage
    latency: float
    """Seconds the call took, retries included."""

    @property
    def text(self) -> str:
        """The text blocks, joined."""
        return "".join(str(b.get("text", "")) for b in self.content if b.get("type") == "text")

    @property
    def tool_uses(self) -> list[Mapping[str, Any]]:
        """The tool_use blocks."""
        return [block for block in self.content if block.get("type") == "tool_use"]


def reply_to_journal(reply: ModelReply) -> dict[str, Any]:
    """A reply as a unit's journal keeps it (``volta.actors`` ``_journal.py``)."""
    return {
        "content": [dict(block) for block in reply.content],
        "stop_reason": reply.stop_reason,
        "usage": attrs.asdict(reply.usage),
        "latency": reply.latency,
    }


def reply_from_journal(entry: Mapping[str, Any]) -> ModelReply | None:
    """A reply written by :func:`reply_to_journal`; None if the entry is not one."""
    content, usage = entry.get("content"), entry.get("usage")
    stop_reason, latency = entry.get("stop_reason"), entry.get("latency")
    if not isinstance(content, list) or not all(isinstance(b, dict) for b in content):
        return None
    if not isinstance(usage, dict) or not (stop_reason is None or isinstance(stop_reason, str)):
        return None
    try:
        counts = Usage(**{key: value for key, value in usage.items() if key in _USAGE_KEYS})
    except (TypeError, ValueError):
        return None
    seconds = float(latency) if isinstance(latency, int | float) else 0.0
    return ModelReply(tuple(content), stop_reason, counts, seconds)


_USAGE_KEYS = frozenset(field.name for field in attrs.fields(Usage))


class Model(Protocol):
    """Something that answers Messages-API requests."""

    @property
    def description(self) -> str:
        """What it is, for the log line that says which brain an agent runs."""
        ...

    async def create(self, params: Mapping[str, Any], *, timeout: float | None) -> ModelReply:
        """One call (``params`` as for ``messages.create``).

        Raises:
            BrainFailure: the call failed for good (code as in the module docstring).
        """
        ...

    async def aclose(self) -> None:
        """Release what it holds (connections)."""
        ...


def _block(block: Any) -> dict[str, Any]:
    kind = getattr(block, "type", None)
    if kind == "text":
        return {"type": "text", "text": block.text}
    if kind == "tool_use":
        return {"type": "tool_use", "id": block.id, "name": block.name, "input": block.input}
    # Other blocks (thinking, server tools) are kept as the SDK dumps them.
    dumped: dict[str, Any] = block.model_dump(exclude_none=True)
    return dumped


_KEY_SHAPE = re.compile(r"sk-ant-[A-Za-z0-9_\-.]{4,}")
_KEY_WINDOW = 8


def scrub_secret(text: str, secret: str) -> str:
    """``text`` with ``secret`` taken out, however it was echoed.

    An API error body may quote the key lower-cased, or cut (``sk-ant-api03...-XYZ``):
    every run of the text that matches eight or more characters of the key in a row
    (ignoring case) becomes ``***``, and so does anything shaped like an Anthropic key.
    """
    if secret:
        folded, key = text.lower(), secret.lower()
        hidden = bytearray(len(text))
        if len(key) < _KEY_WINDOW:
            windows = {key}
        else:
            windows = {key[i : i + _KEY_WINDOW] for i in range(len(key) - _KEY_WINDOW + 1)}
        for window in windows:
            start = folded.find(window)
            while start != -1:
                hidden[start : start + len(window)] = b"\x01" * len(window)
                start = folded.find(window, start + 1)
        if any(hidden):
            pieces, index = [], 0
            while index < len(text):
                if hidden[index]:
                    while index < len(text) and hidden[index]:
                        index += 1
                    pieces.append("***")
                else:
                    pieces.append(text[index])
                    index += 1
            text = "".join(pieces)
    return _KEY_SHAPE.sub("sk-ant-***", text)


def redact_url(url: str) -> str:
    """A URL fit for a log line: no user, password, query or fragment."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"  # an IPv6 address
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    if parts.username or parts.password:
        host = f"***@{host}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


class ClaudeModel:
    """Claude through ``anthropic.AsyncAnthropic``."""

    def __init__(
        self,
        *,
        api_key: str,
        agent_id: str,
        base_url: str | None = None,
        max_retries: int = 2,
        timeout: float = 60.0,
        strict: bool = False,
    ) -> None:
        """Make the client (no connection is opened yet).

        Args:
            api_key: the API key (kept by the SDK; scrubbed from every error).
            agent_id: sent as ``x-volta-agent`` so requests can be told apart.
            base_url: another endpoint than the SDK's default (or ``ANTHROPIC_BASE_URL``).
            max_retries: the SDK's retries of 408/409/429/5xx and timeouts.
            timeout: seconds one call may take (the task's deadline may cut it shorter).
            strict: validate responses against the SDK's types (tests use it).
        """
        self._secret = api_key
        self._base_url = base_url
        self._options: dict[str, Any] = {
            "api_key": api_key,
            "base_url": base_url,
            "max_retries": max_retries,
            "timeout": timeout,
            "default_headers": {"x-volta-agent": agent_id},
            "_strict_response_validation": strict,
        }
        self._client: anthropic.AsyncAnthropic | None = None

    def _connection(self) -> anthropic.AsyncAnthropic:
        # Made on first use, and again after aclose(): an agent that restarts reuses it.
        # The SDK is imported here, not at module import: it takes most of a second,
        # and a command-line client that never thinks should not pay for it.
        if self._client is None:
            import anthropic

            self._client = anthropic.AsyncAnthropic(**self._options)
        return self._client

    @property
    def description(self) -> str:
        where = redact_url(self._base_url) if self._base_url else "the Anthropic API"
        return f"Claude at {where}"

    def _scrub(self, text: str) -> str:
        return scrub_secret(text, self._secret)

    async def create(self, params: Mapping[str, Any], *, timeout: float | None) -> ModelReply:
        started = time.monotonic()
        client = self._connection()
        import anthropic  # already loaded by _connection(); a dictionary lookup

        try:
            message = await client.messages.create(**params, timeout=timeout)
        except anthropic.RateLimitError as error:
            raise BrainFailure(ErrorCode.RATE_LIMITED, self._words("rate limited", error)) from None
        except anthropic.OverloadedError as error:
            raise BrainFailure(ErrorCode.OVERLOADED, self._words("overloaded", error)) from None
        except anthropic.APITimeoutError:
            raise BrainFailure(ErrorCode.TIMEOUT, "the model API did not answer in time") from None
        except anthropic.APIConnectionError as error:
            raise BrainFailure(
                ErrorCode.BRAIN_UNAVAILABLE, self._words("cannot reach the model API", error)
            ) from None
        except (anthropic.AuthenticationError, anthropic.PermissionDeniedError):
            raise BrainFailure(
                ErrorCode.BRAIN_UNAVAILABLE, "the model API refused the credentials"
            ) from None
        except anthropic.APIStatusError as error:
            code = (
                ErrorCode.BRAIN_UNAVAILABLE if error.status_code >= 500 else ErrorCode.AGENT_ERROR
            )
            raise BrainFailure(
                code, self._words(f"model API error {error.status_code}", error)
            ) from None
        except anthropic.APIError as error:
            raise BrainFailure(
                ErrorCode.BRAIN_UNAVAILABLE, self._words("model API error", error)
            ) from None
        usage = message.usage
        return ModelReply(
            content=tuple(_block(block) for block in message.content),
            stop_reason=message.stop_reason,
            usage=Usage(
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cache_read_input_tokens=usage.cache_read_input_tokens,
                cache_creation_input_tokens=usage.cache_creation_input_tokens,
            ),
            latency=time.monotonic() - started,
        )

    def _words(self, what: str, error: Exception) -> str:
        detail = getattr(error, "message", None) or str(error)
        return self._scrub(f"{what}: {detail}")[:500]

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()


def estimate_reply_usage(params: Mapping[str, Any], content: Sequence[Mapping[str, Any]]) -> Usage:
    """Token counts for a reply made without a model (four characters a token)."""
    prompt = estimate_tokens(
        {
            "system": params.get("system"),
            "tools": params.get("tools"),
            "messages": params.get("messages"),
        }
    )
    return Usage(input_tokens=prompt, output_tokens=estimate_tokens(list(content)))
