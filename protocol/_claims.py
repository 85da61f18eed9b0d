"""Identity on the wire: a node's claim on agent ids (``agent.claim``) and the answers
naming the conflicts (docs/PROTOCOL.md 5.9), and a directory's roll call
(``agent.rollcall``, 5.7).

A claim: ``{"node": ..., "token": ..., "agents": [{"id", "instance", "replicated"}],
"probe": bool}``;
an answer: ``{"node": ..., "conflicts": [{"id", "instance", "replicated", "state"}]}``;
a roll call: ``{"node": ...}`` (or ``{}``).
"""

from __future__ import annotations

import enum
from typing import Any

import attrs

from volta.core import printable

from . import _fields as fields
from ._codec import Codec, Field, encode_each, nested
from ._errors import ProtocolError

MAX_NODE_NAME = 256
"""Longest node name (characters)."""


class ClaimState(enum.Enum):
    """Where a node is with an id."""

    CLAIMING = "claiming"
    OWNER = "owner"


@attrs.frozen
class AgentClaim:
    """One id a node claims (or holds)."""

    id: str
    """The agent id."""
    instance: str
    """The instance that would run it."""
    replicated: bool = False
    """Whether other instances may run it too."""

    def conflicts_with(self, other: AgentClaim) -> bool:
        """Whether the two cannot both run."""
        return (
            self.id == other.id
            and self.instance != other.instance
            and not (self.replicated and other.replicated)
        )


@attrs.frozen
class Conflict:
    """A node's answer about one of the claimed ids: it holds it or claims it too."""

    claim: AgentClaim
    """Its own claim on the id."""
    state: ClaimState
    """Whether it holds the id or is claiming it."""


@attrs.frozen
class Claim:
    """What a node publishes on ``agent.claim``."""

    node: str
    """The claiming node's name."""
    token: str
    """A random token of the node (it tells its own claims from others' on the wire)."""
    agents: tuple[AgentClaim, ...]
    """The ids it claims."""
    probe: bool = False
    """Only a question: who holds these ids? Nodes answer as to a claim, but no
    claimer counts it as a rival (a directory proving that an instance is gone)."""


@attrs.frozen
class RollCall:
    """What a directory publishes on ``agent.rollcall`` when it (re)joins."""

    node: str | None = None
    """The calling node's name, if it says (for logs)."""


@attrs.frozen
class ClaimAnswer:
    """A node's answer to a claim: the conflicts it sees."""

    node: str
    """The answering node's name."""
    conflicts: tuple[Conflict, ...]
    """One per conflicting id."""


def _node(value: Any, field: str) -> str:
    if (
        not isinstance(value, str)
        or not 0 < len(value) <= MAX_NODE_NAME
        or printable(value, MAX_NODE_NAME) != value
    ):
        raise ProtocolError(field, f"expected 1-{MAX_NODE_NAME} printable characters")
    return value


AGENT_CLAIM_CODEC: Codec[AgentClaim] = Codec(
    AgentClaim,
    [
        Field("id", fields.agent_id, required=True),
        Field("instance", fields.identifier, required=True),
        Field("replicated", fields.boolean),
    ],
)
"""The codec of one claimed id."""


def _conflict(value: Any, field: str) -> Conflict:
    claim = AGENT_CLAIM_CODEC.from_dict(value, field)
    state = fields.choice(ClaimState)(value.get("state"), f"{field}.state")
    return Conflict(claim, state)


def _conflict_dict(conflict: Conflict) -> dict[str, Any]:
    return {**AGENT_CLAIM_CODEC.to_dict(conflict.claim), "state": conflict.state.value}


CLAIM_CODEC: Codec[Claim] = Codec(
    Claim,
    [
        Field("node", _node, required=True),
        Field("token", fields.string, required=True),
        Field(
            "agents",
            fields.list_of(nested(AGENT_CLAIM_CODEC), most=None, noun="agents"),
            required=True,
            encode=encode_each(AGENT_CLAIM_CODEC.to_dict),
        ),
        Field("probe", fields.boolean, omit=lambda probe: not probe),
    ],
)
"""The codec of :class:`Claim`."""

ROLL_CALL_CODEC: Codec[RollCall] = Codec(
    RollCall, [Field("node", fields.optional(_node), omit=lambda node: node is None)]
)
"""The codec of :class:`RollCall` (``{}`` is a roll call too)."""

CLAIM_ANSWER_CODEC: Codec[ClaimAnswer] = Codec(
    ClaimAnswer,
    [
        Field("node", _node, required=True),
        Field(
            "conflicts",
            fields.list_of(_conflict, most=None, noun="conflicts"),
            required=True,
            encode=encode_each(_conflict_dict),
        ),
    ],
)
"""The codec of :class:`ClaimAnswer`."""
