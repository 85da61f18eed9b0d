"""Protocol payloads and handler resolution (pure, no bus)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import attrs
import hypothesis
import pytest
from hypothesis import strategies as st

from volta.actors import CapabilityError, EchoHandler
from volta.actors._handler import resolve_handler
from volta.protocol import (
    CAPABILITY_REQUEST_CODEC,
    CLAIM_CODEC,
    ROLL_CALL_CODEC,
    STATUS_CODEC,
    AgentClaim,
    AgentInfo,
    AgentStatus,
    CapabilityReply,
    CapabilityRequest,
    Claim,
    ErrorCode,
    ListQuery,
    PayloadEncodeError,
    Presence,
    ProtocolError,
    RollCall,
    decode_agent_page,
    decode_capability_reply,
    decode_list_query,
    encode_agent_info,
    encode_agent_page,
    encode_capability_reply,
    encode_list_query,
)


def test_status_round_trip() -> None:
    original = AgentStatus(
        id="alpha",
        name="Alpha",
        capabilities=("echo",),
        status=Presence.BUSY,
        uptime=12.5,
        in_flight=3,
        restarts=2,
        heartbeat_interval=30.0,
    )
    decoded = STATUS_CODEC.decode(STATUS_CODEC.encode(original))
    assert decoded == original


def test_a_minimal_status_needs_only_an_id() -> None:
    status = STATUS_CODEC.decode(b'{"id": "extern"}')
    assert (status.name, status.capabilities, status.status) == ("extern", (), Presence.ONLINE)
    assert status.heartbeat_interval is None


@pytest.mark.parametrize(
    ("document", "field", "reason"),
    [
        ({}, "id", "required field is missing"),
        ({"id": "a.b"}, "id", "invalid agent id"),
        ({"id": "a", "capabilities": "echo"}, "capabilities", "expected a list"),
        ({"id": "a", "capabilities": ["ok", "no.dots"]}, "capabilities[1]", "invalid capability"),
        ({"id": "broadcast"}, "id", "reserved for broadcasts"),
        ({"id": "a", "uptime": "long"}, "uptime", "expected a number"),
        ({"id": "a", "in_flight": -1}, "in_flight", "must not be negative"),
        ({"id": "a", "timestamp": "noon"}, "timestamp", "not an ISO 8601"),
        ({"id": "a", "heartbeat_interval": True}, "heartbeat_interval", "expected a number"),
    ],
)
def test_status_rejections_name_the_field(
    document: dict[str, Any], field: str, reason: str
) -> None:
    with pytest.raises(ProtocolError, match=reason) as caught:
        STATUS_CODEC.decode(json.dumps(document).encode())
    assert caught.value.field == field


def test_null_counts_as_absent_and_unknown_presence_is_online() -> None:
    status = STATUS_CODEC.decode(
        b'{"id": "a", "name": null, "capabilities": null, "uptime": null, "status": "dreaming"}'
    )
    assert (status.name, status.capabilities, status.uptime) == ("a", (), 0.0)
    assert status.status is Presence.ONLINE  # a newer peer's presence must not break lists
    page = decode_agent_page(b'{"agents": [{"id": "a", "status": "hibernating"}]}')
    assert page.agents[0].status is Presence.ONLINE


def test_agent_list_round_trip_and_errors() -> None:
    status = AgentStatus(id="a", name="A", capabilities=("x",))
    info = AgentInfo("a", "A", ("x",), Presence.ONLINE, status.timestamp)
    page = decode_agent_page(encode_agent_page([encode_agent_info(info)], ListQuery(), 10_000))
    assert (page.agents, page.next_offset, page.total) == ((info,), None, 1)
    with pytest.raises(ProtocolError, match="agents"):
        decode_agent_page(b'{"agents": 3}')
    with pytest.raises(ProtocolError) as caught:
        decode_agent_page(b'{"agents": [{"id": "ok"}, {"id": "a b"}]}')
    assert caught.value.field == "agents[1].id"
    with pytest.raises(ProtocolError, match="bad_request: nope"):
        decode_agent_page(b'{"agents": [], "error": {"code": "bad_request", "message": "nope"}}')


def test_pages_never_exceed_the_budget_and_chain_to_the_end() -> None:
    agents = [
        AgentInfo(f"agent-{n:04d}", "x" * 200, ("c",), Presence.ONLINE, datetime.now(UTC))
        for n in range(500)
    ]
    encoded = [encode_agent_info(a) for a in agents]
    seen: list[AgentInfo] = []
    offset: int | None = 0
    pages = 0
    while offset is not None:
        page = encode_agent_page(encoded, ListQuery(offset=offset), 10_000)
        assert len(page) <= 10_000
        decoded = decode_agent_page(page)
        assert decoded.total == 500
        seen += decoded.agents
        offset = decoded.next_offset
        pages += 1
    assert [a.id for a in seen] == [a.id for a in agents]
    assert pages > 10


def test_a_limit_makes_smaller_pages() -> None:
    agents = [AgentInfo(f"a{n}", "n", (), Presence.ONLINE, datetime.now(UTC)) for n in range(10)]
    page = decode_agent_page(
        encode_agent_page(
            [encode_agent_info(a) for a in agents], ListQuery(offset=2, limit=3), 10_000
        )
    )
    assert [a.id for a in page.agents] == ["a2", "a3", "a4"]
    assert (page.next_offset, page.total) == (5, 10)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"offset": -1}', "offset"),
        (b'{"limit": 0}', "limit"),
        (b'{"offset": true}', "offset"),
        (b'{"capability": "a.b"}', "capability"),
        (b'{"status": "asleep"}', "status"),
        (b"[1]", "$"),
    ],
)
def test_bad_list_queries(body: bytes, field: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        decode_list_query(body)
    assert caught.value.field == field


def test_list_query_round_trip_and_empty_body() -> None:
    query = ListQuery(offset=5, limit=10, capability="sum", status=Presence.BUSY)
    assert decode_list_query(encode_list_query(query)) == query
    assert decode_list_query(b"") == ListQuery()
    assert decode_list_query(b"{}") == ListQuery()


def test_capability_request_and_reply_round_trips() -> None:
    request = CapabilityRequest("sum", [1, 2], timeout=2.5)
    assert CAPABILITY_REQUEST_CODEC.decode(CAPABILITY_REQUEST_CODEC.encode(request)) == request
    ok = CapabilityReply.success({"n": 3}, "gamma")
    assert decode_capability_reply(encode_capability_reply(ok)) == ok
    failed = CapabilityReply.failure(ErrorCode.TIMEOUT, "slow", "beta")
    assert decode_capability_reply(encode_capability_reply(failed)) == failed
    assert json.loads(encode_capability_reply(failed)) == {
        "ok": False,
        "error": {"code": "timeout", "message": "slow"},
        "agent": "beta",
    }


def test_unknown_error_codes_from_newer_peers_are_agent_errors() -> None:
    reply = decode_capability_reply(b'{"ok": false, "error": {"code": "quota", "message": "m"}}')
    assert reply.code is ErrorCode.AGENT_ERROR


@pytest.mark.parametrize(
    ("payload", "field"),
    [(b'{"ok": "yes"}', "ok"), (b'{"ok": false}', "error"), (b'{"ok": true, "agent": 1}', "agent")],
)
def test_malformed_replies(payload: bytes, field: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        decode_capability_reply(payload)
    assert caught.value.field == field


def test_a_result_that_is_not_json_is_a_typed_encode_error() -> None:
    with pytest.raises(PayloadEncodeError, match=r"\$\.result: set is not a JSON type"):
        encode_capability_reply(CapabilityReply.success({1, 2}, "a"))


def test_resolve_builtin_and_imported_handlers() -> None:
    assert isinstance(resolve_handler("echo"), EchoHandler)
    handler = resolve_handler("volta.actors:EchoHandler", {"prefix": "> "})
    assert isinstance(handler, EchoHandler)


@pytest.mark.parametrize(
    ("reference", "reason"),
    [
        ("nonsense", "not a built-in"),
        ("no_such_module_xyz:Thing", "cannot import"),
        ("volta.actors:NoSuchThing", "has no 'NoSuchThing'"),
        ("volta.protocol:TaskContext", "missing"),
    ],
)
def test_bad_handler_references(reference: str, reason: str) -> None:
    with pytest.raises((ValueError, TypeError), match=reason):
        resolve_handler(reference)


async def test_builtin_capabilities_check_their_input() -> None:
    handler = EchoHandler()
    context: Any = type("Context", (), {"agent_id": "a"})()
    assert await handler.on_capability("word_count", "a b  c", context) == 3
    assert await handler.on_capability("uppercase", "ab", context) == "AB"
    assert await handler.on_capability("sum", [1, 2.5], context) == 3.5
    assert await handler.on_capability("echo", {"k": [1]}, context) == {"k": [1]}
    for capability, value in [("word_count", 3), ("sum", [1, "2"]), ("sum", [True])]:
        with pytest.raises(CapabilityError) as caught:
            await handler.on_capability(capability, value, context)
        assert caught.value.code is ErrorCode.BAD_REQUEST
    with pytest.raises(CapabilityError) as missing:
        await handler.on_capability("fly", None, context)
    assert missing.value.code is ErrorCode.NO_CAPABILITY


@hypothesis.settings(max_examples=300, deadline=None)
@hypothesis.given(
    sizes=st.lists(st.integers(min_value=20, max_value=400), max_size=30),
    max_bytes=st.integers(min_value=128, max_value=1000),
    limit=st.one_of(st.none(), st.integers(min_value=1, max_value=8)),
)
def test_pages_never_exceed_their_size_and_walk_every_entry_once(
    sizes: list[int], max_bytes: int, limit: int | None
) -> None:
    """Paging by next_offset: each page within max_bytes, each entry that fits a page
    on exactly one page, in order; the ones that fit none counted in ``skipped``."""
    entries = [b'{"id":"a%03d","pad":"%s"}' % (n, b"x" * size) for n, size in enumerate(sizes)]
    seen: list[bytes] = []
    skipped = 0
    offset: int | None = 0
    pages = 0
    while offset is not None:
        page = encode_agent_page(entries, ListQuery(offset=offset, limit=limit), max_bytes)
        assert len(page) <= max_bytes
        document = json.loads(page)
        assert document["total"] == len(entries)
        seen += [json.dumps(entry, separators=(",", ":")).encode() for entry in document["agents"]]
        skipped += document.get("skipped", 0)
        assert document["next_offset"] is None or document["next_offset"] > offset
        offset = document["next_offset"]
        pages += 1
        assert pages <= len(entries) + 1
    alone = [entry for entry in entries if 64 + len(entry) + 1 <= max_bytes]
    assert seen == alone
    assert skipped == len(entries) - len(alone)


def test_a_probe_is_a_claim_that_says_so_and_a_plain_claim_does_not() -> None:
    probe = Claim("dir@host:1", "t", (AgentClaim("alpha", "probe-1"),), probe=True)
    assert json.loads(CLAIM_CODEC.encode(probe))["probe"] is True
    assert CLAIM_CODEC.decode(CLAIM_CODEC.encode(probe)) == probe
    plain = attrs.evolve(probe, probe=False)
    assert "probe" not in json.loads(CLAIM_CODEC.encode(plain)), "older peers see a plain claim"
    with pytest.raises(ProtocolError, match=r"^probe: "):
        CLAIM_CODEC.decode(b'{"node": "n", "token": "t", "agents": [], "probe": "yes"}')


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"{}", RollCall()),
        (b'{"node": null}', RollCall()),
        (b'{"node": "a@b:1"}', RollCall("a@b:1")),
    ],
)
def test_roll_calls(payload: bytes, expected: RollCall) -> None:
    assert ROLL_CALL_CODEC.decode(payload) == expected
    assert ROLL_CALL_CODEC.decode(ROLL_CALL_CODEC.encode(expected)) == expected


@pytest.mark.parametrize("payload", [b"[]", b'{"node": 7}', b'{"node": ""}', b"\xff"])
def test_malformed_roll_calls(payload: bytes) -> None:
    with pytest.raises(ProtocolError):
        ROLL_CALL_CODEC.decode(payload)
