"""Capabilities on the wire: the request on ``capability.request`` (and, re-encoded, on
``capability.invoke.<name>``) and its one reply. docs/PROTOCOL.md 4.4, 4.5."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from . import _fields as fields
from ._codec import Codec, Field, load_json_object, type_name
from ._errors import ErrorCode, PayloadEncodeError, ProtocolError
from ._json import encode_json


@attrs.frozen
class CapabilityRequest:
    """``{"capability": name, "input": any JSON, "timeout": seconds, "task": {...}}``."""

    capability: str
    """The capability to run."""
    input: Any = None
    """Its input, any JSON value."""
    timeout: float | None = None
    """How long the caller waits, in seconds (None: the router's default)."""
    task: Mapping[str, Any] | None = None
    """The task context of the caller (``metadata.task`` of messages), passed on as is."""


def _is_none(value: object) -> bool:
    return value is None


CAPABILITY_REQUEST_CODEC: Codec[CapabilityRequest] = Codec(
    CapabilityRequest,
    [
        Field("capability", fields.capability_name, required=True),
        Field("input", fields.anything),
        Field("timeout", fields.number(positive=True), omit=_is_none),
        Field("task", fields.json_object, omit=_is_none, encode=dict),
    ],
)
"""The codec of :class:`CapabilityRequest`."""


@attrs.frozen
class CapabilityReply:
    """The one reply to a capability request."""

    ok: bool
    """Whether it worked."""
    result: Any = None
    """The result (when ok)."""
    agent: str | None = None
    """The agent that ran it (when one did)."""
    code: ErrorCode | None = attrs.field(default=None)
    """Why it failed (when not ok: a failure always has a code)."""
    message: str = ""
    """Words about the failure."""
    tokens: int | None = None
    """Tokens the call spent (a brain-served capability says; None: it does not)."""

    @code.validator
    def _check_code(self, attribute: attrs.Attribute[ErrorCode | None], code: object) -> None:
        if not self.ok and not isinstance(code, ErrorCode):
            raise TypeError(f"a failed CapabilityReply needs an ErrorCode, got {code!r}")

    @classmethod
    def success(cls, result: Any, agent: str | None, tokens: int | None = None) -> CapabilityReply:
        """A successful reply."""
        return cls(ok=True, result=result, agent=agent, tokens=tokens)

    @classmethod
    def failure(
        cls, code: ErrorCode, message: str, agent: str | None = None, tokens: int | None = None
    ) -> CapabilityReply:
        """A failed reply."""
        return cls(ok=False, code=code, message=message, agent=agent, tokens=tokens)


def encode_capability_reply(reply: CapabilityReply) -> bytes:
    """The wire form: ``{"ok": true, "result", "agent"}`` or ``{"ok": false, "error":
    {"code", "message"}[, "agent"]}``, with ``usage`` when it says what it spent.

    Raises:
        PayloadEncodeError: the result holds something JSON cannot carry.
    """
    document: dict[str, Any]
    if reply.ok:
        document = {"ok": True, "result": reply.result, "agent": reply.agent}
    else:
        assert reply.code is not None  # the validator's promise
        document = {"ok": False, "error": {"code": reply.code.value, "message": reply.message}}
        if reply.agent is not None:
            document["agent"] = reply.agent
    if reply.tokens is not None:
        document["usage"] = {"tokens": reply.tokens}
    return encode_json(document)


def sendable_capability_reply(
    reply: CapabilityReply, max_payload: int, *, agent: str | None, what: str = "the result"
) -> tuple[CapabilityReply, bytes]:
    """The one reply to a capability request, as bytes the server takes.

    A reply that cannot be sent as it is (not encodable, above ``max_payload``)
    becomes a small error reply (``unencodable``, ``payload_too_large``) naming
    ``what`` could not be sent.

    Returns:
        The reply to send and its wire form.
    """
    try:
        payload = encode_capability_reply(reply)
    except PayloadEncodeError as error:
        reply = CapabilityReply.failure(
            ErrorCode.UNENCODABLE, f"{what} cannot be sent as JSON: {error}", agent
        )
        payload = encode_capability_reply(reply)
    if len(payload) > max_payload:
        reply = CapabilityReply.failure(
            ErrorCode.PAYLOAD_TOO_LARGE,
            f"{what} is {len(payload)} bytes, above the server's max_payload of "
            f"{max_payload} bytes",
            agent,
        )
        payload = encode_capability_reply(reply)
    return reply, payload


def _tokens(usage: object) -> int | None:
    """What a reply says it spent; None for anything else (it is only a report)."""
    tokens = usage.get("tokens") if isinstance(usage, dict) else None
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 0:
        return None
    return tokens


def decode_capability_reply(data: bytes) -> CapabilityReply:
    """Decode; total. An unknown error code (from a newer peer) is ``agent_error``.

    Raises:
        ProtocolError: the reply is malformed.
    """
    document = load_json_object(data)
    ok = document.get("ok")
    fields.boolean(ok, "ok")
    agent = fields.optional(fields.string)(document.get("agent"), "agent")
    tokens = _tokens(document.get("usage"))
    if ok:
        return CapabilityReply.success(document.get("result"), agent, tokens)
    error = document.get("error")
    if not isinstance(error, dict):
        raise ProtocolError("error", f"expected a JSON object, got {type_name(error)}")
    if error.get("code") is None:
        raise ProtocolError("error.code", "required field is missing")
    code = ErrorCode.from_wire(fields.string(error["code"], "error.code"))
    message = error.get("message")
    return CapabilityReply.failure(code, message if isinstance(message, str) else "", agent, tokens)
