"""Every subject Volta uses and every rule for a name, each written once.

An agent id becomes one token of a subject (``agent.<id>.message``). A dot, a
wildcard (``*``, ``>``) or white space inside an id would add tokens or turn a
publish into a wildcard subscription, so ids are checked before any subject is
built from them. Ids, capability names, task ids, span ids and instance ids all
follow one rule, :data:`ID_PATTERN`: 1-64 characters from ``A-Z a-z 0-9 _ -``.
"""

from __future__ import annotations

import re

from ._errors import InvalidSubject

ID_PATTERN = "[A-Za-z0-9_-]{1,64}"
"""The one rule for an id (agent, capability, task, span, instance), as a regex."""
ID_RULE = "1-64 characters from A-Z a-z 0-9 _ -"
"""The same rule in words (error messages say it)."""
_ID = re.compile(ID_PATTERN)

BROADCAST = "broadcast"
"""The ``to`` of a message for every agent; reserved: no agent may have this id."""

# --- subjects ---------------------------------------------------------------------------

AGENT_BROADCAST = "agent.broadcast"
"""Messages for every agent."""

AGENT_ANNOUNCE = "agent.announce"
"""An agent says who it is on start-up and after every reconnect."""

AGENT_CLAIM = "agent.claim"
"""A node claims agent ids before it starts them; nodes holding one answer (identity)."""

AGENT_ROLL_CALL = "agent.rollcall"
"""A directory that (re)joins asks every agent to announce itself again."""

AGENT_INBOX_ALL = "agent.*.inbox"
"""Wildcard over every agent's durable inbox subject (what the inbox stream captures)."""

AGENT_HANDLED_ALL = "agent.*.handled"
"""Wildcard over every agent's records of the durable messages it handled."""

AGENT_STATUS_ALL = "agent.*.status"
"""Wildcard over every agent's heartbeat subject (for directories and dashboards)."""

MCP_LIST_AGENTS = "mcp.list_agents"
"""Request-reply: which agents are known, and their state."""

CAPABILITY_REQUEST = "capability.request"
"""Request-reply: run a capability on some agent that has it."""

TASK_CANCEL = "task.cancel"
"""Where cancellations go: ``{"task": id, "span": s, "reason": ...}`` (every node listens)."""

PROGRESS_ALL = "task.*.progress"
"""Every task's progress (for dashboards)."""

DIRECTORY_QUEUE = "volta.directory"
"""Queue group of the directories answering ``mcp.list_agents`` (one answer each)."""

ROUTER_QUEUE = "volta.router"
"""Queue group of the routers answering ``capability.request`` (one answer each)."""

VOLTA_NAMESPACES = (
    "agent.",
    "capability.",
    "mcp.",
    "task.",
    "volta.",
    "$",
)
"""Subjects Volta never publishes an answer to: its own protocol's, and every subject of
the server's own (``$SYS``, ``$JS`` with or without a domain, ``$KV``, ``$O``, ``$SRV``,
...: an answer there could act on the server with the agent's rights)."""

# A subject token may hold anything printable except the separators and wildcards.
_TOKEN = re.compile(r"[^\s.*>]+")
_WILDCARD_TOKEN = re.compile(r"[^\s.*>]+|\*|>")


def shown(value: object) -> str:
    """A value for an error message: repr, cut short (ids can come from hostile peers)."""
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:77]}..."


# --- names -----------------------------------------------------------------------------


def is_id(value: object) -> bool:
    """Whether ``value`` is a string that follows :data:`ID_PATTERN`."""
    return isinstance(value, str) and _ID.fullmatch(value) is not None


def validate_agent_id(agent_id: str) -> str:
    """Check that an agent id (or ``broadcast``, a message's ``to``) is safe in a subject.

    Returns:
        The same id, so the call can be used inline.

    Raises:
        InvalidSubject: the id breaks :data:`ID_PATTERN`.
    """
    if not is_id(agent_id):
        raise InvalidSubject(f"invalid agent id {shown(agent_id)}: use {ID_RULE}")
    return agent_id


def validate_own_agent_id(agent_id: str) -> str:
    """Check an id that names an agent (not a message's ``to``): valid and not reserved.

    Raises:
        InvalidSubject: the id is invalid or is ``"broadcast"``.
    """
    validate_agent_id(agent_id)
    if agent_id == BROADCAST:
        raise InvalidSubject(f"agent id {agent_id!r} is reserved for broadcasts")
    return agent_id


def validate_capability(name: str) -> str:
    """Check a capability name (it becomes one subject token).

    Raises:
        InvalidSubject: not :data:`ID_PATTERN`.
    """
    if not is_id(name):
        raise InvalidSubject(f"invalid capability name {shown(name)}: use {ID_RULE}")
    return name


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
        raise InvalidSubject(f"invalid subject {shown(subject)}: empty")
    tokens = subject.split(".")
    pattern = _WILDCARD_TOKEN if wildcards else _TOKEN
    for index, token in enumerate(tokens):
        if not pattern.fullmatch(token):
            raise InvalidSubject(f"invalid subject {shown(subject)}: bad token {shown(token)}")
        if token == ">" and index != len(tokens) - 1:
            raise InvalidSubject(f"invalid subject {shown(subject)}: '>' must be the last token")
    return subject


# --- subjects built from names -------------------------------------------------------------


def agent_message(agent_id: str) -> str:
    """The subject of direct messages to one agent: ``agent.<id>.message``.

    Raises:
        InvalidSubject: the id is invalid or reserved.
    """
    return f"agent.{validate_own_agent_id(agent_id)}.message"


def agent_inbox(agent_id: str) -> str:
    """The subject of durable direct messages to one agent: ``agent.<id>.inbox``
    (stored in the inbox stream; read through the agent's durable consumer).

    Raises:
        InvalidSubject: the id is invalid or reserved.
    """
    return f"agent.{validate_own_agent_id(agent_id)}.inbox"


def agent_handled(agent_id: str) -> str:
    """Where an agent's inboxes record the durable messages they handled:
    ``agent.<id>.handled``.

    Raises:
        InvalidSubject: the id is invalid or reserved.
    """
    return f"agent.{validate_own_agent_id(agent_id)}.handled"


def agent_status(agent_id: str) -> str:
    """The heartbeat subject of one agent: ``agent.<id>.status``.

    Raises:
        InvalidSubject: the id is invalid or reserved.
    """
    return f"agent.{validate_own_agent_id(agent_id)}.status"


def inbox_queue(agent_id: str) -> str:
    """The queue group of an agent's inbox subscriptions: ``agent.<id>`` (the instances
    of a replicated agent share its messages through it)."""
    return f"agent.{validate_own_agent_id(agent_id)}"


def capability_endpoint(name: str) -> str:
    """Where the agents that have a capability serve it: ``capability.invoke.<name>``.

    Agents subscribe in a queue group named after the subject, so each
    invocation reaches exactly one of them and load is spread.
    """
    return f"capability.invoke.{validate_capability(name)}"


def progress_subject(task_id: str) -> str:
    """Where the progress of one task is published: ``task.<id>.progress``."""
    return f"task.{task_id}.progress"


def agent_id_from_subject(subject: str) -> str | None:
    """The agent id inside ``agent.<id>.message`` or ``agent.<id>.status``, else None."""
    parts = subject.split(".")
    if len(parts) == 3 and parts[0] == "agent" and parts[2] in ("message", "status"):
        agent_id = parts[1]
        if is_id(agent_id) and agent_id != BROADCAST:
            return agent_id
    return None


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
