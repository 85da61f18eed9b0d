"""Every decoder on every subject Volta listens to is total.

For any bytes at all, each returns a value or raises its typed error
(ProtocolError); and what it returns can be encoded again,
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

from volta.protocol import (
    AGENT_INFO_CODEC,
    CANCEL_CODEC,
    CAPABILITY_REQUEST_CODEC,
    CLAIM_ANSWER_CODEC,
    CLAIM_CODEC,
    PROGRESS_CODEC,
    ROLL_CALL_CODEC,
    STATUS_CODEC,
    TASK_CODEC,
    AgentPage,
    ProtocolError,
    decode_agent_page,
    decode_capability_reply,
    decode_list_query,
    decode_message,
    encode_capability_reply,
    encode_json,
    encode_list_query,
    encode_message,
)

from .test_json import POISON, adversarial_json, json_values

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _encode_page(page: AgentPage) -> bytes:
    return b"".join(AGENT_INFO_CODEC.encode(info) for info in page.agents)


def _encode_task(value: Any) -> bytes:
    return encode_json(TASK_CODEC.to_dict(value))


DECODERS: dict[str, tuple[Callable[[bytes], Any], Callable[[Any], bytes]]] = {
    "message": (decode_message, encode_message),
    "status": (STATUS_CODEC.decode, STATUS_CODEC.encode),
    "list query": (decode_list_query, encode_list_query),
    "list page": (decode_agent_page, _encode_page),
    "capability request": (CAPABILITY_REQUEST_CODEC.decode, CAPABILITY_REQUEST_CODEC.encode),
    "capability reply": (decode_capability_reply, encode_capability_reply),
    "claim": (CLAIM_CODEC.decode, CLAIM_CODEC.encode),
    "claim conflicts": (CLAIM_ANSWER_CODEC.decode, CLAIM_ANSWER_CODEC.encode),
    "roll call": (ROLL_CALL_CODEC.decode, ROLL_CALL_CODEC.encode),
    "task": (TASK_CODEC.decode, _encode_task),
    "progress": (PROGRESS_CODEC.decode, PROGRESS_CODEC.encode),
    "cancel": (CANCEL_CODEC.decode, CANCEL_CODEC.encode),
}
"""Every payload Volta decodes: its decoder, and the encoder that must take back what
the decoder returned (no poisoned value can be stored and sent on)."""


def assert_total(name: str, payload: bytes) -> None:
    decode, encode = DECODERS[name]
    try:
        value = decode(payload)
    except ProtocolError as error:
        str(error).encode("utf-8")
        return
    encode(value)


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
        "probe": True,
    },
    "roll call": {"node": "volta@host:1"},
    "claim conflicts": {
        "node": "n",
        "conflicts": [{"id": "alpha", "instance": "abc", "replicated": True, "state": "owner"}],
    },
    "task": {
        "id": "t1",
        "spans": ["s0", "s1"],
        "chain": ["cli-1", "alpha"],
        "deadline": "2026-11-25T18:00:00Z",
        "budget": 1000,
        "max_depth": 8,
    },
    "progress": {
        "task": "t1",
        "span": "s1",
        "parent": "s0",
        "agent": "alpha",
        "kind": "thinking",
        "detail": "model call 1",
        "tokens": 12,
        "at": "2026-11-25T18:00:00Z",
    },
    "cancel": {"task": "t1", "span": "s0", "reason": "enough"},
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
        decode, encode = DECODERS[name]
        encode(decode(json.dumps(document).encode()))


@pytest.mark.parametrize("name", sorted(DECODERS))
@FUZZ
@given(payload=st.binary(max_size=300))
def test_random_bytes(name: str, payload: bytes) -> None:
    assert_total(name, payload)


@pytest.mark.parametrize("name", sorted(DECODERS))
@FUZZ
@given(payload=adversarial_json())
def test_poisoned_json_text(name: str, payload: bytes) -> None:
    assert_total(name, payload)


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
    assert_total(name, data.draw(poisoned_field(name)))
