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
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from ._handler import HandlerError
from ._memory import estimate_tokens
from ._protocol import ErrorCode

if TYPE_CHECKING:
    import anthropic

log = logging.getLogger("volta.actors.brain")

DEFAULT_MODEL = "claude-sonnet-5-5"
"""A current Sonnet, from the SDK's own model list (``anthropic.types.ModelParam``)."""


class BrainFailure(HandlerError):
    """The model could not be used for this unit of work (after the SDK's retries)."""


@attrs.frozen
class Usage:
    """Tokens of one model call."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0

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
        where = self._base_url or "the Anthropic API"
        return f"Claude at {where}"

    def _scrub(self, text: str) -> str:
        return text.replace(self._secret, "***") if self._secret else text

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
                input_tokens=usage.input_tokens or 0,
                output_tokens=usage.output_tokens or 0,
                cache_read_input_tokens=usage.cache_read_input_tokens or 0,
                cache_creation_input_tokens=usage.cache_creation_input_tokens or 0,
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
