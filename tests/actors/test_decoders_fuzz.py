"""Every decoder on every subject Volta listens to is total.

For any bytes at all, each returns a value or raises its typed error
(MessageDecodeError, ProtocolError); and what it returns can be encoded again,
so no poisoned value can be stored (a name with a lone surrogate once made
every later listing crash the directory). Random bytes, valid documents with
poisoned fields, and poisoned JSON text are all tried.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from volta.actors import (
    AgentInfo,
    AgentStatus,
    CapabilityReply,
    CapabilityRequest,
    ProtocolError,
)
from volta.actors._identity import _decode_claim, _decode_conflicts
from volta.actors._protocol import ListQuery, decode_agent_page, encode_agent_info
from volta.bus import Message, MessageDecodeError, decode_message, encode_message

from ..bus.test_json import POISON, adversarial_json, json_values

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _reencode(value: object) -> None:
    """What a decoder returned must be sendable again."""
    if isinstance(value, Message):
        encode_message(value)
    elif isinstance(value, AgentStatus | ListQuery | CapabilityRequest | CapabilityReply):
        value.to_json()
    elif isinstance(value, tuple) and value and isinstance(value[0], list):
        for item in value[0]:
            if isinstance(item, AgentInfo):
                encode_agent_info(item)


DECODERS: dict[str, Callable[[bytes], object]] = {
    "message": decode_message,
    "status": AgentStatus.from_json,
    "list query": ListQuery.from_json,
    "list page": decode_agent_page,
    "capability request": CapabilityRequest.from_json,
    "capability reply": CapabilityReply.from_json,
    "claim": _decode_claim,
    "claim conflicts": _decode_conflicts,
}


def assert_total(decoder: Callable[[bytes], object], payload: bytes) -> None:
    try:
        value = decoder(payload)
    except (MessageDecodeError, ProtocolError) as error:
        str(error).encode("utf-8")
        return
    _reencode(value)


VALID: dict[str, dict[str, Any]] = {
    "message": {
        "id": "m1",
        "from": "alpha",
        "to": "beta",
        "message": "hi",
        "type": "query",
        "metadata": {"k": [1, 2]},
        "timestamp": "2026-11-25T18:00:00Z",
    },
    "status": {
        "id": "alpha",
        "name": "Alpha",
        "capabilities": ["echo"],
        "status": "online",
        "uptime": 1.5,
        "in_flight": 0,
        "restarts": 0,
        "heartbeat_interval": 30,
        "instance": "abc",
        "node": "n@h:1",
        "replicated": False,
        "dropped": 0,
        "timestamp": "2026-11-25T18:00:00Z",
    },
    "list query": {"offset": 0, "limit": 10, "capability": "echo", "status": "online"},
    "list page": {
        "agents": [
            {
                "id": "alpha",
                "name": "A",
                "capabilities": ["echo"],
                "status": "online",
                "last_seen": "2026-11-25T18:00:00Z",
                "instances": [{"id": "abc", "node": "n"}],
                "replicated": False,
            }
        ],
        "total": 1,
        "next_offset": None,
    },
    "capability request": {"capability": "echo", "input": {"a": 1}, "timeout": 5},
    "capability reply": {"ok": False, "error": {"code": "timeout", "message": "m"}, "agent": "a"},
    "claim": {
        "node": "n",
        "token": "t",
        "agents": [{"id": "alpha", "instance": "abc", "replicated": False}],
    },
    "claim conflicts": {
        "node": "n",
        "conflicts": [{"id": "alpha", "instance": "abc", "replicated": True, "state": "owner"}],
    },
}

POISON_VALUES: list[Any] = [
    None,
    True,
    -1,
    2**53 + 1,
    1e300,
    "",
    "x" * 5000,
    "a.b",
    "broadcast",
    "0001-01-01T00:00:00+23:59",
    "9999-12-31T23:59:59-23:59",
    "not a date",
    [],
    [None],
    ["x" * 100] * 300,
    {},
    {"code": None},
]


def test_valid_documents_decode() -> None:
    for name, document in VALID.items():
        DECODERS[name](json.dumps(document).encode())


@pytest.mark.parametrize("name", sorted(DECODERS))
@FUZZ
@given(payload=st.binary(max_size=300))
def test_random_bytes(name: str, payload: bytes) -> None:
    assert_total(DECODERS[name], payload)


@pytest.mark.parametrize("name", sorted(DECODERS))
@FUZZ
@given(payload=adversarial_json())
def test_poisoned_json_text(name: str, payload: bytes) -> None:
    assert_total(DECODERS[name], payload)


@st.composite
def poisoned_field(draw: st.DrawFn, name: str) -> bytes:
    """A valid document of the kind with one field (maybe nested) replaced."""
    document = json.loads(json.dumps(VALID[name]))
    target: Any = document
    # Walk into a nested object or list sometimes, to poison inner fields too.
    while True:
        keys = list(target) if isinstance(target, dict) else list(range(len(target)))
        if not keys:
            break
        key = draw(st.sampled_from(keys))
        inner = target[key]
        if isinstance(inner, dict | list) and inner and draw(st.booleans()):
            target = inner
            continue
        replacement = draw(st.sampled_from(POISON_VALUES) | json_values)
        target[key] = replacement
        break
    text = json.dumps(document).encode()
    if draw(st.booleans()):
        # And sometimes a poisoned token where a value was.
        piece = draw(st.sampled_from(POISON))
        spot = text.rfind(b":")
        if spot > 0:
            text = text[: spot + 1] + piece + b"}" * text[spot:].count(b"}")
    return text


@pytest.mark.parametrize("name", sorted(DECODERS))
@FUZZ
@given(data=st.data())
def test_poisoned_fields(name: str, data: st.DataObject) -> None:
    assert_total(DECODERS[name], data.draw(poisoned_field(name)))
