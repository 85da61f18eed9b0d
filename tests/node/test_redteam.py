"""What a red-team pass found, one regression test per finding.

A teammate attacked ``volta up`` with plain nats-py and raw NATS protocol; each
test below is one of the attacks that worked, now held off. (Identity forgery
by someone who reads the wire, a real instance's own ``offline`` included, needs
NATS authorization: roadmap item 3, not here.)
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

import pytest
import trio
import trio.testing

import volta.node._directory as directory_module
from volta._logging import PrintableMessages
from volta.bus import BusOptions, NatsServer, open_bus
from volta.core import RateLimitedLog, Throttle
from volta.node import Directory, IdentityClash
from volta.protocol import (
    AGENT_ANNOUNCE,
    AGENT_BROADCAST,
    AGENT_INFO_CODEC,
    CAPABILITY_REQUEST,
    MCP_LIST_AGENTS,
    STATUS_CODEC,
    AgentInfo,
    AgentStatus,
    ErrorCode,
    ProtocolError,
    decode_agent_page,
    encode_agent_info,
)

from ..mesh import (
    FAST_RECONNECT,
    agent,
    client_context,
    node_spec,
    running_node,
    wait_until,
)


def status(**fields: object) -> AgentStatus:
    return STATUS_CODEC.decode(json.dumps(fields).encode())


async def raw_publish(server: NatsServer, items: list[tuple[str, str, bytes]]) -> None:
    """Publish with the plain NATS protocol: no client-side check on reply subjects."""
    host, port = server.url.removeprefix("nats://").split(":")
    stream = await trio.open_tcp_stream(host, int(port))
    async with stream:
        with trio.fail_after(5):
            await stream.receive_some()  # INFO
            lines = [b'CONNECT {"verbose":false,"pedantic":false}\r\n']
            for subject, reply, data in items:
                lines.append(f"PUB {subject} {reply} {len(data)}\r\n".encode() + data + b"\r\n")
            await stream.send_all(b"".join(lines) + b"PING\r\n")
            received = b""
            while b"PONG" not in received:
                received += await stream.receive_some()


# --- reflection: answers into Volta's own subjects ------------------------------------------


async def test_a_request_whose_reply_subject_is_a_volta_subject_is_not_answered(
    nats_server: NatsServer,
) -> None:
    """mcp.list_agents with reply agent.broadcast: once a 1 MB answer to every agent."""
    spec = node_spec(nats_server.url, [agent("alpha", ["echo"])])
    async with (
        running_node(spec) as node,
        open_bus(nats_server.url) as bus,
        bus.subscribe(AGENT_BROADCAST) as broadcasts,
        bus.subscribe("agent.alpha.message") as alpha_inbox,
    ):
        await bus.flush()
        query = b'{"agents": []}'
        await raw_publish(
            nats_server,
            [
                (MCP_LIST_AGENTS, AGENT_BROADCAST, b"{}"),
                (CAPABILITY_REQUEST, AGENT_BROADCAST, b'{"capability":"echo","input":1}'),
                ("$SRV.PING", "agent.alpha.message", b""),
                ("agent.alpha.message", AGENT_BROADCAST, b"not json"),
            ],
        )
        # Markers through the same services: answered, so the attacks were judged.
        assert (await client_context(bus).list_agents())[0].id == "alpha"
        assert await client_context(bus).request_capability("echo", 2) == 2
        await bus.flush()
        assert broadcasts.statistics().pending == 0, "an answer went to agent.broadcast"
        assert alpha_inbox.statistics().pending == 1  # just the attack itself
        assert node.supervisor is not None
        assert node.supervisor.statistics().restarts == 0
        del query


async def test_a_listing_page_is_small_whatever_the_server_allows(nats_server: NatsServer) -> None:
    """A 40-byte request once made a 1 MB answer (43,000x): pages are 256 KiB at most."""
    spec = node_spec(nats_server.url, [agent("alpha")])
    async with running_node(spec) as node, open_bus(nats_server.url) as bus:
        for n in range(1000):
            announce = {"id": f"agent-{n:04d}", "name": "n" * 250, "heartbeat_interval": 30}
            await bus.publish(AGENT_ANNOUNCE, json.dumps(announce).encode())
        await bus.flush()
        with trio.fail_after(5):
            while len(node.directory) < 1001:
                await trio.sleep(0.01)
        reply = await bus.request(MCP_LIST_AGENTS, b"{}", timeout=5)
        listed = await client_context(bus).list_agents()
    assert bus.max_payload > 256 * 1024
    assert len(reply.data) <= 256 * 1024
    assert json.loads(reply.data)["next_offset"] is not None
    assert len(listed) == 1001


# --- a fake directory -------------------------------------------------------------------


async def test_an_endless_fake_directory_does_not_keep_a_node_from_starting(
    nats_server: NatsServer,
) -> None:
    async with open_bus(nats_server.url) as fake, fake.subscribe(MCP_LIST_AGENTS) as requests:

        async def answer() -> None:
            async for request in requests:
                offset = json.loads(request.data or b"{}").get("offset", 0)
                page = {
                    "agents": [{"id": f"fake{offset}"}],
                    "total": 10**9,
                    "next_offset": offset + 1,
                }
                await fake.respond(request, json.dumps(page).encode())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(answer)
            await fake.flush()
            spec = node_spec(nats_server.url, [agent("alpha")])
            with trio.move_on_after(5) as scope:
                async with running_node(spec):
                    pass
            nursery.cancel_scope.cancel()
    assert not scope.cancelled_caught, "the node was still syncing from the fake directory"


def test_a_listing_entry_volta_accepts_is_one_volta_can_send_back() -> None:
    info = AGENT_INFO_CODEC.from_dict({"id": "ancient", "last_seen": "0999-01-01T00:00:00Z"})
    page = b'{"agents":[' + encode_agent_info(info) + b'],"total":1,"next_offset":null}'
    agents = decode_agent_page(page).agents
    assert agents[0].last_seen == datetime(999, 1, 1, tzinfo=UTC)


# --- identity -----------------------------------------------------------------------------


def test_the_successor_rule_has_no_window_a_healthy_agent_loses() -> None:
    directory = Directory(1.0)
    real = status(id="alpha", instance="real", capabilities=["echo"], heartbeat_interval=1)
    directory.observe(real, 0.0, "heartbeat")
    forged = status(id="alpha", instance="evil", capabilities=[], heartbeat_interval=3600)
    # Just before the real beat that is due at 1.0 arrives.
    assert isinstance(directory.observe(forged, 1.0002, "announce"), IdentityClash)
    directory.observe(real, 1.0005, "heartbeat")
    info = directory.get("alpha")
    assert info is not None
    assert info.capabilities == ("echo",)


# --- cost and bounds of statuses --------------------------------------------------------------


def test_statuses_are_not_encoded_until_someone_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    """A status for a replicated agent with many instances once re-encoded the whole
    entry (87 KB): 25x the cost of an ordinary one, enough to starve real heartbeats."""
    encodes: list[str] = []

    def counting(info: AgentInfo) -> bytes:
        encodes.append(info.id)
        return encode_agent_info(info)

    monkeypatch.setattr(directory_module, "encode_agent_info", counting)
    directory = Directory(30.0)
    for n in range(60):
        directory.observe(
            status(id="rep", instance=f"i{n}", node="n" * 200, replicated=True), n * 0.01, "x"
        )
    for n in range(5000):
        directory.observe(
            status(id="rep", instance=f"i{n % 60}", node="n" * 200, replicated=True), 1 + n, "x"
        )
    assert encodes == []
    assert len(directory.encoded_agents()) == 1
    assert directory.encoded_agents()  # listed again: nothing changed, nothing re-encoded
    assert encodes == ["rep"]


def test_the_directory_is_bounded_in_bytes_not_only_in_agents() -> None:
    directory = Directory(30.0, max_bytes=200_000)
    big = {"name": "n" * 250, "capabilities": [f"c{n:060d}" for n in range(200)]}
    refused = 0
    for n in range(100):
        outcome = directory.observe(status(id=f"big{n}", **big), float(n), "announce")
        refused += isinstance(outcome, IdentityClash)
    assert directory.size <= 200_000
    assert refused > 0
    assert directory.refused == refused


async def test_expiry_pops_deadlines_instead_of_scanning(
    autojump_clock: trio.testing.MockClock,
) -> None:
    directory = Directory(30.0, missed=3)
    for n in range(1000):
        directory.observe(status(id=f"a{n}", heartbeat_interval=30), 0.0, "announce")
    directory.observe(status(id="fast", heartbeat_interval=0.05), 0.0, "announce")
    due = directory.next_deadline()
    assert due == pytest.approx(0.15)
    changes = directory.expire(due)
    assert [c.agent for c in changes] == ["fast"]
    assert directory.next_deadline() == pytest.approx(90.0)


def test_names_and_nodes_with_control_characters_are_refused() -> None:
    for field in ("name", "node"):
        with pytest.raises(ProtocolError, match="control characters"):
            status(id="mallory", **{field: "ok\n2026-12-01 09:00:00,000 ERROR forged"})
        with pytest.raises(ProtocolError, match="control characters"):
            status(id="mallory", **{field: "\x1b[2J"})


# --- the router ---------------------------------------------------------------------------


class Silent:
    """Serves ``slow`` by never answering."""

    async def on_message(self, message: Any, context: Any) -> str | None:
        return None

    async def on_capability(self, capability: str, input: Any, context: Any) -> Any:
        await trio.sleep_forever()


async def test_silent_agents_cannot_starve_the_router(nats_server: NatsServer) -> None:
    agents = [
        agent("slowpoke", ["slow"], handler=Silent(), capability_timeout=60, max_concurrency=300),
        agent("alpha", ["uppercase"]),
    ]
    async with running_node(node_spec(nats_server.url, agents)), open_bus(nats_server.url) as bus:
        hold = json.dumps({"capability": "slow", "timeout": 30}).encode()
        for n in range(300):
            await bus.publish(CAPABILITY_REQUEST, hold, reply=f"_INBOX.hold.{n}")
        await bus.flush()
        start = trio.current_time()
        assert await client_context(bus).request_capability("uppercase", "hi", timeout=2) == "HI"
        elapsed = trio.current_time() - start
        busy = json.loads((await bus.request(CAPABILITY_REQUEST, hold, timeout=2)).data)
    assert elapsed < 1.0
    assert busy["error"]["code"] == ErrorCode.BUSY.value


# --- logs ------------------------------------------------------------------------------------


async def test_a_throttled_kind_comes_back_after_its_window_with_a_summary(
    autojump_clock: trio.testing.MockClock,
) -> None:
    throttle = Throttle(10.0)
    assert throttle.admit("clash:alpha", 0.0).report
    assert not throttle.admit("clash:alpha", 1.0).report
    assert not throttle.admit("clash:alpha", 2.0).report
    later = throttle.admit("clash:alpha", 11.0)
    assert later.report
    assert later.summary is not None
    assert later.summary.describe("refused statuses") == (
        "2 more refused statuses on clash:alpha in the last 11 s"
    )


def test_many_kinds_share_one_budget_of_lines() -> None:
    throttle = Throttle(10.0, max_per_period=100)
    admitted = sum(throttle.admit(f"agent.r{n}.status", 0.0).report for n in range(3000))
    assert admitted == 100


async def test_bad_reply_subjects_do_not_log_one_line_per_request(
    nats_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    spec = node_spec(nats_server.url, [agent("alpha")])
    async with running_node(spec), open_bus(nats_server.url) as bus:
        before = len(caplog.records)
        await raw_publish(nats_server, [(MCP_LIST_AGENTS, "a.*", b"{}")] * 200)
        assert (await client_context(bus).list_agents())[0].id == "alpha"  # judged
        lines = [r for r in caplog.records[before:] if "answer" in r.getMessage()]
    assert len(lines) <= 2, f"{len(lines)} lines for 200 requests"


async def test_presence_changes_are_logged_at_a_bounded_rate(
    nats_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "volta.node.directory")
    options = BusOptions(servers=(nats_server.url,), reconnect=FAST_RECONNECT)
    spec = node_spec(nats_server.url, [agent("alpha")], nats=options)
    async with running_node(spec), open_bus(nats_server.url) as bus:
        for n in range(2000):
            await bus.publish(AGENT_ANNOUNCE, json.dumps({"id": f"new{n}"}).encode())
        await bus.publish(AGENT_ANNOUNCE, json.dumps({"id": "last"}).encode())
        await bus.flush()
        with trio.fail_after(5):
            while not any(a.id == "last" for a in await client_context(bus).list_agents()):
                await trio.sleep(0.05)
    lines = [r for r in caplog.records if "->" in r.getMessage()]
    assert len(lines) <= 150, len(lines)


def test_log_lines_cannot_be_forged_through_the_wire() -> None:
    record = logging.LogRecord(
        "volta", logging.WARNING, __file__, 1, "status for %s refused", ("x\n2026 ERROR y",), None
    )
    assert PrintableMessages().filter(record)
    assert record.getMessage() == "status for x\\x0a2026 ERROR y refused"


def test_a_rate_limited_line_keeps_its_numbers(caplog: pytest.LogCaptureFixture) -> None:
    """printable() once turned every argument into a string, and '%d' then failed inside
    the log call: the canceller crashed on its first cancellation."""
    caplog.set_level(logging.INFO)
    limited = RateLimitedLog(logging.getLogger("volta.test"), 10.0)

    async def log_once() -> None:
        limited.info("k", "lines", "task %s: cancelled %d unit(s)", "t\n1", 3)

    trio.run(log_once)
    assert caplog.records[-1].getMessage() == "task t\\x0a1: cancelled 3 unit(s)"
    broken = logging.LogRecord("v", logging.INFO, __file__, 1, "%d", ("x",), None)
    assert PrintableMessages().filter(broken)  # never raises, whatever the record


async def test_an_agent_that_comes_and_goes_at_once_is_logged_both_ways(
    nats_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The presence throttle was keyed by agent: 'offline' right after 'online' was held back."""
    caplog.set_level(logging.INFO, "volta.node.directory")
    async with running_node(node_spec(nats_server.url, [agent("alpha")])):
        async with running_node(node_spec(nats_server.url, [agent("beta")])):
            pass
        await wait_until(
            lambda: any("beta: online -> offline" in r.getMessage() for r in caplog.records)
        )
    assert any("beta: unknown -> online" in r.getMessage() for r in caplog.records)


def test_a_closing_throttle_gives_the_summary_of_every_window() -> None:
    throttle = Throttle(10.0)
    throttle.admit("presence:alpha:online", 0.0)
    throttle.admit("presence:alpha:online", 1.0)
    throttle.admit("presence:beta:online", 1.0)
    assert throttle.summaries(2.0) == []  # no window has ended yet
    (summary,) = throttle.summaries(2.0, closing=True)
    assert summary.describe("presence changes") == (
        "1 more presence changes on presence:alpha:online in the last 2 s"
    )
    assert throttle.summaries(3.0, closing=True) == []  # said once


def test_a_flushed_summary_keeps_the_level_and_words_of_the_lines_it_held_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """flush() once named every kind "directory lines" at WARNING, whatever it held."""
    caplog.set_level(logging.DEBUG)
    limited = RateLimitedLog(logging.getLogger("volta.test"), 10.0)

    async def log_and_close() -> None:
        for _ in range(2):
            limited.info("presence", "presence changes", "agent came")
            limited.warning("error", "status failures", "status failed")
        for n in range(98):  # 100 lines a period in all, then "(other)" holds the rest
            limited.log(logging.DEBUG, f"kind-{n}", "lines", "filler")
        limited.warning("too-many", "lines", "a kind with no room: held back")
        limited.flush(closing=True)

    trio.run(log_and_close)
    lines = [(r.levelno, r.getMessage()) for r in caplog.records]
    summaries = sorted(line for line in lines if " more " in line[1])
    assert summaries == [
        (logging.INFO, "1 more presence changes on presence in the last 0 s"),
        (logging.WARNING, "1 more lines of other kinds on (other) in the last 0 s"),
        (logging.WARNING, "1 more status failures on error in the last 0 s"),
    ]
