"""Every subject Volta uses, and the checks that keep ids from reshaping them.

An agent id becomes one token of a subject (``agent.<id>.message``). A dot, a
wildcard (``*``, ``>``) or white space inside an id would add tokens or turn a
publish into a wildcard subscription, so ids are checked before any subject is
built from them.
"""

from __future__ import annotations

import re

from ._errors import InvalidSubject

AGENT_BROADCAST = "agent.broadcast"
"""Messages for every agent."""

AGENT_ANNOUNCE = "agent.announce"
"""An agent says who it is on start-up and after every reconnect."""

AGENT_CLAIM = "agent.claim"
"""A node claims agent ids before it starts them; nodes holding one answer (identity)."""

AGENT_STATUS_ALL = "agent.*.status"
"""Wildcard over every agent's heartbeat subject (for directories and dashboards)."""

MCP_LIST_AGENTS = "mcp.list_agents"
"""Request-reply: which agents are known, and their state."""

CAPABILITY_REQUEST = "capability.request"
"""Request-reply: run a capability on some agent that has it."""

DIRECTORY_QUEUE = "volta.directory"
"""Queue group of the directories answering ``mcp.list_agents`` (one answer each)."""

ROUTER_QUEUE = "volta.router"
"""Queue group of the routers answering ``capability.request`` (one answer each)."""

_AGENT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
# A subject token may hold anything printable except the separators and wildcards.
_TOKEN = re.compile(r"[^\s.*>]+")
_WILDCARD_TOKEN = re.compile(r"[^\s.*>]+|\*|>")


def _shown(value: object) -> str:
    """A value for an error message: repr, cut short (ids can come from hostile peers)."""
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:77]}..."


def validate_agent_id(agent_id: str) -> str:
    """Check that an agent id is safe to place in a subject.

    Args:
        agent_id: 1 to 64 characters from ``A-Z a-z 0-9 _ -``.

    Returns:
        The same id, so the call can be used inline.

    Raises:
        InvalidSubject: the id is empty, too long or holds any other character.
    """
    if not isinstance(agent_id, str) or not _AGENT_ID.fullmatch(agent_id):
        raise InvalidSubject(
            f"invalid agent id {_shown(agent_id)}: use 1-64 characters from A-Z a-z 0-9 _ -"
        )
    return agent_id


def validate_subject(subject: str, *, wildcards: bool = False) -> str:
    """Check that a subject is well formed.

    Args:
        subject: dot-separated tokens, none empty, no white space.
        wildcards: allow ``*`` tokens and a final ``>`` (for subscriptions).

    Returns:
        The same subject.

    Raises:
        InvalidSubject: the subject is empty, has an empty token, white space, or
            a wildcard where none is allowed.
    """
    if not isinstance(subject, str) or not subject:
        raise InvalidSubject(f"invalid subject {_shown(subject)}: empty")
    tokens = subject.split(".")
    pattern = _WILDCARD_TOKEN if wildcards else _TOKEN
    for index, token in enumerate(tokens):
        if not pattern.fullmatch(token):
            raise InvalidSubject(f"invalid subject {_shown(subject)}: bad token {_shown(token)}")
        if token == ">" and index != len(tokens) - 1:
            raise InvalidSubject(f"invalid subject {_shown(subject)}: '>' must be the last token")
    return subject


RESERVED_AGENT_ID = "broadcast"
"""The ``to`` of broadcast messages: no agent may have this id."""


def validate_own_agent_id(agent_id: str) -> str:
    """Check an id that names an agent (not a message's ``to``): valid and not reserved.

    Raises:
        InvalidSubject: the id is invalid or is ``"broadcast"``.
    """
    validate_agent_id(agent_id)
    if agent_id == RESERVED_AGENT_ID:
        raise InvalidSubject(f"agent id {agent_id!r} is reserved for broadcasts")
    return agent_id


def agent_message(agent_id: str) -> str:
    """The subject of direct messages to one agent: ``agent.<id>.message``.

    Raises:
        InvalidSubject: the id is invalid or reserved.
    """
    return f"agent.{validate_own_agent_id(agent_id)}.message"


def agent_status(agent_id: str) -> str:
    """The heartbeat subject of one agent: ``agent.<id>.status``.

    Raises:
        InvalidSubject: the id is invalid or reserved.
    """
    return f"agent.{validate_own_agent_id(agent_id)}.status"


def validate_capability(name: str) -> str:
    """Check a capability name (it becomes one subject token).

    Raises:
        InvalidSubject: not 1-64 characters from ``A-Z a-z 0-9 _ -``.
    """
    if not isinstance(name, str) or not _AGENT_ID.fullmatch(name):
        raise InvalidSubject(
            f"invalid capability name {_shown(name)}: use 1-64 characters from A-Z a-z 0-9 _ -"
        )
    return name


def capability_endpoint(name: str) -> str:
    """Where the agents that have a capability serve it: ``capability.invoke.<name>``.

    Agents subscribe in a queue group named after the subject, so each
    invocation reaches exactly one of them and load is spread.
    """
    return f"capability.invoke.{validate_capability(name)}"


def agent_id_from_subject(subject: str) -> str | None:
    """The agent id inside ``agent.<id>.message`` or ``agent.<id>.status``, else None."""
    parts = subject.split(".")
    if len(parts) == 3 and parts[0] == "agent" and parts[2] in ("message", "status"):
        agent_id = parts[1]
        if _AGENT_ID.fullmatch(agent_id) and agent_id != RESERVED_AGENT_ID:
            return agent_id
    return None


VOLTA_NAMESPACES = (
    "agent.",
    "capability.",
    "mcp.",
    "task.",
    "volta.",
    "$SRV.",
    "$SYS.",
    "$JS.API.",
)
"""Subjects Volta never publishes an answer to: its own protocol's, and the server's APIs."""


def is_answerable(reply: str | None) -> bool:
    """Whether a reply subject may receive an answer.

    A request whose reply subject is one of Volta's own subjects (``agent.broadcast``,
    say) would turn one small message into an answer delivered to every agent: a
    reflection attack. Such requests are served as if they had no reply subject.
    """
    if not reply:
        return False
    if reply.startswith(VOLTA_NAMESPACES):
        return False
    try:
        validate_subject(reply)
    except InvalidSubject:
        return False
    return True
