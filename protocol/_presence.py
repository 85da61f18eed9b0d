"""Presence on the wire: statuses (``agent.announce``, ``agent.<id>.status``) and the
listing of ``mcp.list_agents`` (query, pages, entries). docs/PROTOCOL.md 4.2, 4.3.

``null`` counts as absent for every field of these payloads, and only ``id`` is
ever required, so agents written in other languages need to send little.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import attrs

from . import _fields as fields
from ._codec import Codec, Field, encode_each, load_json_object, nested
from ._errors import ProtocolError
from ._json import encode_json
from ._timestamps import format_timestamp

MAX_NAME_LENGTH = 256
"""Longest agent name (or node name) accepted in a status."""

MAX_CAPABILITIES = 256
"""Most capabilities one agent may list."""

MAX_COUNT = 2**53
"""Largest counter (``in_flight``, ``restarts``, ...) accepted: exact in every JSON reader."""

MAX_USAGE_KEYS = 32
"""Most numbers in a status's ``usage``."""


class Presence(enum.Enum):
    """What an agent says about itself, or what the directory concluded."""

    ONLINE = "online"
    BUSY = "busy"
    OFFLINE = "offline"


def _now() -> datetime:
    return datetime.now(UTC)


def _same_as_id(self: Any) -> str:
    return str(self.id)


@attrs.frozen
class AgentStatus:
    """What an agent publishes on ``agent.announce`` and ``agent.<id>.status``."""

    id: str
    """The agent id."""
    name: str = attrs.Factory(_same_as_id, takes_self=True)
    """Human-readable name (defaults to the id)."""
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
    timestamp: datetime = attrs.field(factory=_now)
    """When it was sent."""


def _is_none(value: object) -> bool:
    return value is None


def _enum_value(member: enum.Enum) -> Any:
    return member.value


_name = fields.text(MAX_NAME_LENGTH)
_capabilities = fields.list_of(fields.capability_name, most=MAX_CAPABILITIES, noun="capabilities")
_count = fields.count(MAX_COUNT)
_presence = fields.choice(Presence, unknown=Presence.ONLINE)  # a newer peer's word: it spoke


def _interval(value: Any, field: str) -> float | None:
    return fields.number()(value, field) or None  # 0 says nothing


STATUS_CODEC: Codec[AgentStatus] = Codec(
    AgentStatus,
    [
        Field("id", fields.agent_id, required=True),
        Field("name", _name),
        Field("capabilities", _capabilities, encode=list),
        Field("status", _presence, encode=_enum_value),
        Field("uptime", fields.number(), encode=lambda uptime: round(uptime, 3)),
        Field("in_flight", _count),
        Field("restarts", _count),
        Field("dropped", _count),
        Field("timestamp", fields.timestamp, encode=format_timestamp),
        Field("heartbeat_interval", _interval, omit=_is_none),
        Field("instance", fields.identifier, omit=_is_none),
        Field("node", _name, omit=_is_none),
        Field("replicated", fields.boolean, omit=lambda replicated: not replicated),
        Field(
            "usage",
            fields.number_map(most=MAX_USAGE_KEYS, key_length=64),
            omit=_is_none,
            encode=dict,
        ),
    ],
)
"""The codec of :class:`AgentStatus` (announces and heartbeats)."""


# --- the listing ------------------------------------------------------------------------------


@attrs.frozen
class InstanceInfo:
    """One running instance of an agent, as a listing shows it."""

    id: str | None = None
    """The instance id (None: a peer that does not send one)."""
    node: str | None = None
    """The node that runs it, if it says."""


INSTANCE_CODEC: Codec[InstanceInfo] = Codec(
    InstanceInfo, [Field("id", fields.identifier), Field("node", _name)]
)
"""The codec of :class:`InstanceInfo` (an entry of ``instances``)."""


@attrs.frozen
class AgentInfo:
    """One entry of the ``mcp.list_agents`` reply."""

    id: str
    """The agent id."""
    name: str = attrs.Factory(_same_as_id, takes_self=True)
    """Human-readable name."""
    capabilities: tuple[str, ...] = ()
    """Capabilities it serves."""
    status: Presence = Presence.ONLINE
    """Online, busy or offline (as the directory concluded)."""
    last_seen: datetime = attrs.field(factory=_now)
    """When the directory last heard from it (UTC)."""
    instances: tuple[InstanceInfo, ...] = ()
    """Its instances that are not offline (several only when it is replicated)."""
    replicated: bool = False
    """Whether it runs as several instances sharing its work."""


AGENT_INFO_CODEC: Codec[AgentInfo] = Codec(
    AgentInfo,
    [
        Field("id", fields.agent_id, required=True),
        Field("name", _name),
        Field("capabilities", _capabilities, encode=list),
        Field("status", _presence, encode=_enum_value),
        Field("last_seen", fields.timestamp, encode=format_timestamp),
        Field(
            "instances",
            fields.list_of(nested(INSTANCE_CODEC), most=None, noun="instances"),
            encode=encode_each(INSTANCE_CODEC.to_dict),
        ),
        Field("replicated", fields.boolean),
    ],
)
"""The codec of :class:`AgentInfo` (every field is always written)."""


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


_LIST_QUERY = Codec(
    ListQuery,
    [
        Field("offset", fields.integer(0), omit=lambda offset: not offset),
        Field("limit", fields.integer(1), omit=_is_none),
        Field("capability", fields.capability_name, omit=_is_none),
        Field("status", fields.choice(Presence), omit=_is_none, encode=_enum_value),
    ],
)


def encode_list_query(query: ListQuery) -> bytes:
    """The wire form (only the fields that are set)."""
    return _LIST_QUERY.encode(query)


def decode_list_query(data: bytes) -> ListQuery:
    """Decode; an empty body means "everything".

    Raises:
        ProtocolError: a field is invalid.
    """
    if not data.strip():
        return ListQuery()
    return _LIST_QUERY.decode(data)


def encode_agent_info(info: AgentInfo) -> bytes:
    """One list entry, encoded (the directory keeps entries in this form)."""
    return AGENT_INFO_CODEC.encode(info)


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
    return encode_json({"agents": [], "error": {"code": code, "message": message}})


def _count_agents(page: Any) -> int:
    return len(page.agents)


@attrs.frozen
class AgentPage:
    """One page of a listing."""

    agents: tuple[AgentInfo, ...]
    """The agents on it (sorted by id)."""
    next_offset: int | None = None
    """Where the next page starts (None: this was the last)."""
    total: int = attrs.Factory(_count_agents, takes_self=True)
    """How many agents matched in all."""


_PAGE = Codec(
    AgentPage,
    [
        Field(
            "agents",
            fields.list_of(nested(AGENT_INFO_CODEC), most=None, noun="agents"),
            required=True,
        ),
        Field("next_offset", fields.integer(0)),
        Field("total", fields.integer(0)),
    ],
)


def decode_agent_page(data: bytes) -> AgentPage:
    """Decode one ``mcp.list_agents`` reply.

    Raises:
        ProtocolError: the reply is malformed, or it is an error reply (the
            directory refused the request: ``error: <code>: <message>``).
    """
    document = load_json_object(data)
    error = document.get("error")
    if isinstance(error, dict):
        raise ProtocolError("error", f"{error.get('code')}: {error.get('message') or ''}")
    return _PAGE.from_dict(document)
