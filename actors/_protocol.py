"""The JSON payloads of the Volta protocol beyond messages (see docs/PROTOCOL.md).

- ``agent.announce`` and ``agent.<id>.status``: an :class:`AgentStatus`.
- ``mcp.list_agents`` reply: ``{"agents": [AgentInfo, ...]}``.
- ``capability.request``: a :class:`CapabilityRequest`; reply: a :class:`CapabilityReply`.

Decoders are strict about types and lenient about absence where a default is
obvious, so that agents written in other languages need to send little. Every
error is a :class:`ProtocolError` naming the field.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import attrs

from volta.bus import (
    PayloadDecodeError,
    decode_json,
    encode_json,
    format_timestamp,
    parse_timestamp,
    validate_capability,
    validate_own_agent_id,
)

MAX_NAME_LENGTH = 256
"""Longest agent name (or node name) accepted in a status."""

MAX_CAPABILITIES = 256
"""Most capabilities one agent may list."""

MAX_COUNT = 2**53
"""Largest counter (``in_flight``, ``restarts``, ...) accepted: exact in every JSON reader."""

_INSTANCE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


class ProtocolError(ValueError):
    """A payload does not follow the protocol.

    Attributes:
        field: the JSON field at fault (``"$"`` for the document).
        reason: what is wrong with it.
    """

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class Presence(enum.Enum):
    """What an agent says about itself, or what the directory concluded."""

    ONLINE = "online"
    BUSY = "busy"
    OFFLINE = "offline"


class ErrorCode(enum.Enum):
    """Why a capability request, or a message, failed (docs/PROTOCOL.md, section 6)."""

    NO_CAPABILITY = "no_capability"
    """No online agent has the capability."""
    TIMEOUT = "timeout"
    """The agent did not answer in time."""
    AGENT_ERROR = "agent_error"
    """The agent failed while running the capability or handling the message."""
    BAD_REQUEST = "bad_request"
    """The request was malformed."""
    UNAVAILABLE = "unavailable"
    """No router answered (no Volta node is running)."""
    PAYLOAD_TOO_LARGE = "payload_too_large"
    """The answer is larger than the server's ``max_payload``; it was not sent."""
    UNENCODABLE = "unencodable"
    """The answer holds something JSON cannot carry; it was not sent."""
    NO_AGENT = "no_agent"
    """Nobody listens on the asked agent's subject (made by the asker, not on the wire)."""
    LOOP_DETECTED = "loop_detected"
    """The task has already passed through the agent (section 5.10)."""
    TOO_DEEP = "too_deep"
    """The task has passed through ``max_depth`` agents."""
    DEADLINE_EXCEEDED = "deadline_exceeded"
    """The task's deadline passed before or while the agent worked on it."""
    BUDGET_EXCEEDED = "budget_exceeded"
    """The task's token budget is spent."""
    CANCELLED = "cancelled"
    """The caller cancelled the task (``task.cancel``)."""
    RATE_LIMITED = "rate_limited"
    """The model API kept answering 429 (rate limited), retries included."""
    OVERLOADED = "overloaded"
    """The model API kept answering 529 (overloaded), retries included."""
    BRAIN_UNAVAILABLE = "brain_unavailable"
    """The model API could not be reached or refused the call (5xx, connection, auth)."""
    BUSY = "busy"
    """Too many calls in flight (of this capability, or through this router): try later."""


# --- decoding helpers ----------------------------------------------------------------


def load_json_object(data: bytes) -> dict[str, Any]:
    """Parse bytes as a JSON object; total (any bytes give a dict or the error).

    Raises:
        ProtocolError: not Volta JSON (``volta.bus.decode_json``), or not an object.
    """
    try:
        document = decode_json(data)
    except PayloadDecodeError as error:
        raise ProtocolError(error.field, error.reason) from None
    if not isinstance(document, dict):
        raise ProtocolError("$", f"expected a JSON object, got {type(document).__name__}")
    return document


def dump_json(document: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON.

    Raises:
        PayloadEncodeError: the document holds something Volta JSON cannot carry.
    """
    return encode_json(document)


def _type_name(value: object) -> str:
    return type(value).__name__


def _string(document: Mapping[str, Any], field: str, default: str | None = None) -> str:
    # null counts as absent, for every field.
    value = document.get(field)
    if value is None:
        if default is None:
            raise ProtocolError(field, "required field is missing")
        value = default
    if not isinstance(value, str):
        raise ProtocolError(field, f"expected a string, got {_type_name(value)}")
    return value


def _number(document: Mapping[str, Any], field: str, default: float) -> float:
    value = document.get(field)
    if value is None:
        value = default
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ProtocolError(field, f"expected a number, got {_type_name(value)}")
    if value < 0:
        raise ProtocolError(field, f"must not be negative, got {value}")
    return float(value)


def _count(document: Mapping[str, Any], field: str) -> int:
    value = _number(document, field, 0)
    if value > MAX_COUNT:
        raise ProtocolError(field, f"must be at most {MAX_COUNT}, got {value:g}")
    return int(value)


def _short_text(document: Mapping[str, Any], field: str, default: str | None = None) -> str:
    value = _string(document, field, default)
    if len(value) > MAX_NAME_LENGTH:
        raise ProtocolError(field, f"longer than {MAX_NAME_LENGTH} characters")
    if _CONTROL.search(value):
        # Names end up in log lines and terminals: no newlines, no escape sequences.
        raise ProtocolError(field, "holds control characters")
    return value


def _optional_instance(document: Mapping[str, Any], field: str) -> str | None:
    value = document.get(field)
    if value is None:
        return None
    if not isinstance(value, str) or not _INSTANCE.fullmatch(value):
        raise ProtocolError(field, "expected 1-64 characters from A-Z a-z 0-9 _ -")
    return value


def _usage(document: Mapping[str, Any]) -> dict[str, float] | None:
    value = document.get("usage")
    if value is None:
        return None
    if not isinstance(value, dict) or len(value) > 32:
        raise ProtocolError("usage", "expected an object of at most 32 numbers")
    usage: dict[str, float] = {}
    for key in value:
        if len(key) > 64:
            raise ProtocolError("usage", "keys are at most 64 characters")
        usage[key] = _number(value, key, 0)
    return usage


def _boolean(document: Mapping[str, Any], field: str) -> bool:
    value = document.get(field)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ProtocolError(field, f"expected true or false, got {_type_name(value)}")
    return value


def _agent_id(document: Mapping[str, Any], field: str) -> str:
    value = _string(document, field)
    try:
        return validate_own_agent_id(value)
    except ValueError as error:
        raise ProtocolError(field, str(error)) from None


def _capabilities(document: Mapping[str, Any]) -> tuple[str, ...]:
    value = document.get("capabilities")
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ProtocolError("capabilities", f"expected a list, got {_type_name(value)}")
    if len(value) > MAX_CAPABILITIES:
        raise ProtocolError("capabilities", f"more than {MAX_CAPABILITIES} capabilities")
    names = []
    for index, name in enumerate(value):
        try:
            names.append(validate_capability(name))
        except ValueError as error:
            raise ProtocolError(f"capabilities[{index}]", str(error)) from None
    return tuple(names)


def _presence(document: Mapping[str, Any]) -> Presence:
    text = _string(document, "status", "online")
    try:
        return Presence(text)
    except ValueError:
        # A presence this version does not know, from a newer peer: it spoke, so it
        # is there. (Rejecting it would drop whole agent lists.)
        return Presence.ONLINE


def _timestamp(document: Mapping[str, Any], field: str) -> datetime | None:
    if document.get(field) is None:
        return None
    try:
        return parse_timestamp(_string(document, field))
    except ProtocolError:
        raise
    except ValueError as error:
        raise ProtocolError(field, str(error)) from None


# --- presence: announce and heartbeat ------------------------------------------------------


@attrs.frozen
class AgentStatus:
    """What an agent publishes on ``agent.announce`` and ``agent.<id>.status``."""

    id: str
    """The agent id."""
    name: str
    """Human-readable name."""
    capabilities: tuple[str, ...] = ()
    """Capabilities it serves."""
    status: Presence = Presence.ONLINE
    """How it is."""
    uptime: float = 0.0
    """Seconds since the agent started."""
    in_flight: int = 0
    """Messages and capability calls being handled now."""
    restarts: int = 0
    """Restarts of its children since it started."""
    heartbeat_interval: float | None = None
    """Seconds between its heartbeats (None: it does not say)."""
    instance: str | None = None
    """This running instance of the agent (None: a peer that does not say)."""
    node: str | None = None
    """The node (process) that runs the instance, for people reading listings and errors."""
    replicated: bool = False
    """Whether several instances may run under this id at once, sharing its work."""
    dropped: int = 0
    """Messages its inbox dropped because it was full (since the instance started)."""
    usage: Mapping[str, float] | None = None
    """What its brain has used (model calls, tokens, latency), if it has one."""
    timestamp: datetime = attrs.field(factory=lambda: datetime.now(UTC))
    """When it was sent."""

    def to_json(self) -> bytes:
        """The wire form.

        Raises:
            PayloadEncodeError: a field holds something JSON cannot carry.
        """
        document: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "capabilities": list(self.capabilities),
            "status": self.status.value,
            "uptime": round(self.uptime, 3),
            "in_flight": self.in_flight,
            "restarts": self.restarts,
            "dropped": self.dropped,
            "timestamp": format_timestamp(self.timestamp),
        }
        if self.heartbeat_interval is not None:
            document["heartbeat_interval"] = self.heartbeat_interval
        if self.instance is not None:
            document["instance"] = self.instance
        if self.node is not None:
            document["node"] = self.node
        if self.replicated:
            document["replicated"] = True
        if self.usage is not None:
            document["usage"] = dict(self.usage)
        return dump_json(document)

    @classmethod
    def from_json(cls, data: bytes) -> AgentStatus:
        """Decode; only ``id`` is required. Total: any bytes give a status or the error.

        Raises:
            ProtocolError: a field is invalid.
        """
        document = load_json_object(data)
        agent_id = _agent_id(document, "id")
        interval = document.get("heartbeat_interval")
        node = document.get("node")
        return cls(
            id=agent_id,
            name=_short_text(document, "name", agent_id),
            capabilities=_capabilities(document),
            status=_presence(document),
            uptime=_number(document, "uptime", 0.0),
            in_flight=_count(document, "in_flight"),
            restarts=_count(document, "restarts"),
            heartbeat_interval=None
            if interval is None
            else _number(document, "heartbeat_interval", 0) or None,
            instance=_optional_instance(document, "instance"),
            node=None if node is None else _short_text(document, "node"),
            replicated=_boolean(document, "replicated"),
            dropped=_count(document, "dropped"),
            usage=_usage(document),
            timestamp=_timestamp(document, "timestamp") or datetime.now(UTC),
        )


@attrs.frozen
class InstanceInfo:
    """One running instance of an agent, as a listing shows it."""

    id: str | None
    """The instance id (None: a peer that does not send one)."""
    node: str | None
    """The node that runs it, if it says."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form."""
        return {"id": self.id, "node": self.node}

    @classmethod
    def from_dict(cls, document: object, field: str) -> InstanceInfo:
        """Decode one entry of ``instances``.

        Raises:
            ProtocolError: it is not an object, or a field is invalid.
        """
        if not isinstance(document, dict):
            raise ProtocolError(field, "expected a JSON object")
        node = document.get("node")
        try:
            return cls(
                id=_optional_instance(document, "id"),
                node=None if node is None else _short_text(document, "node"),
            )
        except ProtocolError as error:
            raise ProtocolError(f"{field}.{error.field}", error.reason) from None


@attrs.frozen
class AgentInfo:
    """One entry of the ``mcp.list_agents`` reply."""

    id: str
    """The agent id."""
    name: str
    """Human-readable name."""
    capabilities: tuple[str, ...]
    """Capabilities it serves."""
    status: Presence
    """Online, busy or offline (as the directory concluded)."""
    last_seen: datetime
    """When the directory last heard from it (UTC)."""
    instances: tuple[InstanceInfo, ...] = ()
    """Its instances that are not offline (several only when it is replicated)."""
    replicated: bool = False
    """Whether it runs as several instances sharing its work."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form."""
        return {
            "id": self.id,
            "name": self.name,
            "capabilities": list(self.capabilities),
            "status": self.status.value,
            "last_seen": format_timestamp(self.last_seen),
            "instances": [instance.to_dict() for instance in self.instances],
            "replicated": self.replicated,
        }

    @classmethod
    def from_dict(cls, document: Mapping[str, Any]) -> AgentInfo:
        """Decode one entry.

        Raises:
            ProtocolError: a field is invalid.
        """
        agent_id = _agent_id(document, "id")
        instances = document.get("instances")
        if instances is None:
            instances = []
        if not isinstance(instances, list):
            raise ProtocolError("instances", f"expected a list, got {_type_name(instances)}")
        return cls(
            id=agent_id,
            name=_short_text(document, "name", agent_id),
            capabilities=_capabilities(document),
            status=_presence(document),
            last_seen=_timestamp(document, "last_seen") or datetime.now(UTC),
            instances=tuple(
                InstanceInfo.from_dict(entry, f"instances[{index}]")
                for index, entry in enumerate(instances)
            ),
            replicated=_boolean(document, "replicated"),
        )


@attrs.frozen
class ListQuery:
    """The (optional) body of a ``mcp.list_agents`` request: filters and a page."""

    offset: int = 0
    """Skip this many matching agents (sorted by id)."""
    limit: int | None = None
    """At most this many in the reply (the directory may return fewer, see below)."""
    capability: str | None = None
    """Only agents that serve this capability and are not offline."""
    status: Presence | None = None
    """Only agents in this state."""

    def to_json(self) -> bytes:
        """The wire form (only the fields that are set)."""
        document: dict[str, Any] = {}
        if self.offset:
            document["offset"] = self.offset
        if self.limit is not None:
            document["limit"] = self.limit
        if self.capability is not None:
            document["capability"] = self.capability
        if self.status is not None:
            document["status"] = self.status.value
        return dump_json(document)

    @classmethod
    def from_json(cls, data: bytes) -> ListQuery:
        """Decode; an empty body means "everything".

        Raises:
            ProtocolError: a field is invalid.
        """
        if not data.strip():
            return cls()
        document = load_json_object(data)
        offset = document.get("offset")
        limit = document.get("limit")
        for field, value, low in (("offset", offset, 0), ("limit", limit, 1)):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < low
            ):
                shown = repr(value) if isinstance(value, int | float) else _type_name(value)
                raise ProtocolError(field, f"expected an integer >= {low}, got {shown[:40]}")
        capability = document.get("capability")
        if capability is not None:
            try:
                validate_capability(capability)
            except ValueError as error:
                raise ProtocolError("capability", str(error)) from None
        status = None
        if document.get("status") is not None:
            text = _string(document, "status")
            try:
                status = Presence(text)
            except ValueError:
                allowed = ", ".join(p.value for p in Presence)
                raise ProtocolError("status", f"{text!r} is not one of {allowed}") from None
        return cls(offset=offset or 0, limit=limit, capability=capability, status=status)


def encode_agent_info(info: AgentInfo) -> bytes:
    """One list entry, encoded (the directory keeps entries in this form)."""
    return dump_json(info.to_dict())


MIN_PAGE_BYTES = 128
"""The smallest page :func:`encode_agent_page` makes (the envelope and the skipped count fit)."""
_ENVELOPE = 64  # {"agents":[],"total":N,"next_offset":N}
_SKIPPED_FIELD = 32  # room for ,"skipped":N


def encode_agent_page(agents: Sequence[bytes], query: ListQuery, max_bytes: int) -> bytes:
    """One page of the ``mcp.list_agents`` reply, never larger than ``max_bytes``.

    Args:
        agents: every matching entry, in order, each encoded by :func:`encode_agent_info`.
        query: the page asked for.
        max_bytes: the size limit of the reply (at least :data:`MIN_PAGE_BYTES`).

    The page holds the matching agents from ``query.offset`` on, up to
    ``query.limit`` and as many as fit; ``next_offset`` says where the next page
    starts (null on the last page) and ``total`` how many agents match. An entry
    that could not fit even alone on a page (a server with a small ``max_payload``)
    is left out and counted in ``skipped``, so the listing still goes on past it.

    Raises:
        ValueError: ``max_bytes`` is below :data:`MIN_PAGE_BYTES`.
    """
    if max_bytes < MIN_PAGE_BYTES:
        raise ValueError(f"a page may not be smaller than {MIN_PAGE_BYTES} bytes")
    entries: list[bytes] = []
    size = _ENVELOPE
    skipped = 0
    position = query.offset
    end = len(agents) if query.limit is None else min(len(agents), query.offset + query.limit)
    while position < end:
        cost = len(agents[position]) + 1
        if size + cost <= max_bytes:
            entries.append(agents[position])
            size += cost
        elif _ENVELOPE + cost > max_bytes:  # too large for any page: left out, counted
            if not skipped:
                if size + _SKIPPED_FIELD > max_bytes:
                    break  # no room to say so here: on the next page
                size += _SKIPPED_FIELD
            skipped += 1
        else:
            break  # for the next page
        position += 1
    # More to come if the size budget stopped the page early, or the limit did.
    next_offset: int | None = position if position < len(agents) else None
    return (
        b'{"agents":['
        + b",".join(entries)
        + b'],"total":'
        + str(len(agents)).encode()
        + b',"next_offset":'
        + (b"null" if next_offset is None else str(next_offset).encode())
        + (b',"skipped":' + str(skipped).encode() if skipped else b"")
        + b"}"
    )


def encode_list_error(code: str, message: str) -> bytes:
    """A ``mcp.list_agents`` reply that refuses the request."""
    return dump_json({"agents": [], "error": {"code": code, "message": message}})


@attrs.frozen
class AgentPage:
    """One page of a listing."""

    agents: tuple[AgentInfo, ...]
    """The agents on it (sorted by id)."""
    next_offset: int | None
    """Where the next page starts (None: this was the last)."""
    total: int
    """How many agents matched in all."""


def decode_agent_page(data: bytes) -> tuple[list[AgentInfo], int | None, int]:
    """Decode one ``mcp.list_agents`` reply: (agents, next_offset, total).

    Raises:
        ProtocolError: the reply is malformed, or it is an error reply (the
            directory refused the request).
    """
    document = load_json_object(data)
    error = document.get("error")
    if isinstance(error, dict):
        raise ProtocolError("error", f"{error.get('code')}: {error.get('message') or ''}")
    agents = document.get("agents")
    if not isinstance(agents, list):
        raise ProtocolError("agents", f"expected a list, got {_type_name(agents)}")
    decoded = []
    for index, entry in enumerate(agents):
        if not isinstance(entry, dict):
            raise ProtocolError(f"agents[{index}]", "expected a JSON object")
        try:
            decoded.append(AgentInfo.from_dict(entry))
        except ProtocolError as error:
            raise ProtocolError(f"agents[{index}].{error.field}", error.reason) from None
    next_offset = document.get("next_offset")
    if next_offset is not None and (
        isinstance(next_offset, bool) or not isinstance(next_offset, int)
    ):
        raise ProtocolError("next_offset", f"expected an integer or null, got {next_offset!r}")
    total = document.get("total", len(decoded))
    if isinstance(total, bool) or not isinstance(total, int):
        raise ProtocolError("total", f"expected an integer, got {total!r}")
    return decoded, next_offset, total


# --- capabilities ----------------------------------------------------------------------


@attrs.frozen
class CapabilityRequest:
    """``{"capability": name, "input": any JSON, "timeout": seconds (optional)}``."""

    capability: str
    """The capability to run."""
    input: Any = None
    """Its input, any JSON value."""
    timeout: float | None = None
    """How long the caller waits, in seconds (None: the router's default)."""
    task: Mapping[str, Any] | None = None
    """The task context of the caller (``metadata.task`` of messages), passed on as is."""

    def to_json(self) -> bytes:
        """The wire form.

        Raises:
            PayloadEncodeError: the input holds something JSON cannot carry.
        """
        document: dict[str, Any] = {"capability": self.capability, "input": self.input}
        if self.timeout is not None:
            document["timeout"] = self.timeout
        if self.task is not None:
            document["task"] = dict(self.task)
        return dump_json(document)

    @classmethod
    def from_json(cls, data: bytes) -> CapabilityRequest:
        """Decode.

        Raises:
            ProtocolError: the request is malformed.
        """
        document = load_json_object(data)
        name = _string(document, "capability")
        try:
            validate_capability(name)
        except ValueError as error:
            raise ProtocolError("capability", str(error)) from None
        timeout = document.get("timeout")
        if timeout is not None:
            timeout = _number(document, "timeout", 0)
            if timeout <= 0:
                raise ProtocolError("timeout", "must be greater than 0")
        task = document.get("task")
        if task is not None and not isinstance(task, dict):
            raise ProtocolError("task", f"expected a JSON object, got {_type_name(task)}")
        return cls(capability=name, input=document.get("input"), timeout=timeout, task=task)


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
    def success(cls, result: Any, agent: str, tokens: int | None = None) -> CapabilityReply:
        """A successful reply."""
        return cls(ok=True, result=result, agent=agent, tokens=tokens)

    @classmethod
    def failure(
        cls, code: ErrorCode, message: str, agent: str | None = None, tokens: int | None = None
    ) -> CapabilityReply:
        """A failed reply."""
        return cls(ok=False, code=code, message=message, agent=agent, tokens=tokens)

    def to_json(self) -> bytes:
        """The wire form.

        Raises:
            PayloadEncodeError: the result holds something JSON cannot carry.
        """
        document: dict[str, Any]
        if self.ok:
            document = {"ok": True, "result": self.result, "agent": self.agent}
        else:
            assert self.code is not None  # the validator's promise
            document = {"ok": False, "error": {"code": self.code.value, "message": self.message}}
            if self.agent is not None:
                document["agent"] = self.agent
        if self.tokens is not None:
            document["usage"] = {"tokens": self.tokens}
        return dump_json(document)

    @classmethod
    def from_json(cls, data: bytes) -> CapabilityReply:
        """Decode.

        Raises:
            ProtocolError: the reply is malformed.
        """
        document = load_json_object(data)
        ok = document.get("ok")
        if not isinstance(ok, bool):
            raise ProtocolError("ok", f"expected true or false, got {_type_name(ok)}")
        agent = document.get("agent")
        if agent is not None and not isinstance(agent, str):
            raise ProtocolError("agent", f"expected a string, got {_type_name(agent)}")
        usage = document.get("usage")
        tokens = usage.get("tokens") if isinstance(usage, dict) else None
        if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 0:
            tokens = None
        if ok:
            return cls(ok=True, result=document.get("result"), agent=agent, tokens=tokens)
        error = document.get("error")
        if not isinstance(error, dict):
            raise ProtocolError("error", f"expected a JSON object, got {_type_name(error)}")
        code_text = _string(error, "code")
        try:
            code = ErrorCode(code_text)
        except ValueError:
            code = ErrorCode.AGENT_ERROR  # an unknown code from a newer peer is still a failure
        message = error.get("message")
        return cls(
            ok=False,
            code=code,
            message=message if isinstance(message, str) else "",
            agent=agent,
            tokens=tokens,
        )
