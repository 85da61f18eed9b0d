"""DirectoryService on a real nats-server: what it counts, reports and answers.

Rules: loopback only, a real nats-server per test, real time, every wait bounded.
Negative checks wait for a sentinel (a marker status behind the ones under test, on
the same subscription) rather than sleeping. A directory that fails on purpose is a
subclass of Directory: a fault inside the service, not a fake of NATS.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from volta.bus import (
    Bus,
    BusOptions,
    ConnectionEventKind,
    NatsServer,
    NatsServerConfig,
    open_bus,
    run_nats_server,
)
from volta.node import Directory, DirectoryService, DirectorySpec, IdentityClash, PresenceChange
from volta.protocol import AGENT_ANNOUNCE, MCP_LIST_AGENTS, AgentStatus, Presence, agent_status

from ..mesh import client_context, wait_until

Event = PresenceChange | IdentityClash


@asynccontextmanager
async def service_bus(url: str) -> AsyncIterator[Bus]:
    """A bus whose throttled warnings cannot reach the end of their window in a test."""
    async with open_bus(BusOptions(servers=(url,), report_interval=3600.0)) as bus:
        yield bus


@asynccontextmanager
async def serving(
    bus: Bus, directory: Directory | None = None, **options: Any
) -> AsyncIterator[tuple[DirectoryService, list[Event]]]:
    """A DirectoryService running on ``bus`` for the block, and what it reported."""
    events: list[Event] = []
    if directory is None:  # (not `directory or ...`: an empty Directory is falsy)
        directory = Directory(30.0)
    service = DirectoryService(directory, bus, events.append, spec=DirectorySpec(**options))
    async with trio.open_nursery() as nursery:
        with trio.fail_after(10):
            await nursery.start(service.run)
        yield service, events
        nursery.cancel_scope.cancel()


def announce(agent_id: str, **fields: Any) -> bytes:
    return json.dumps({"id": agent_id, "heartbeat_interval": 30, **fields}).encode()


async def publish_then_marker(
    bus: Bus, directory: Directory, subject: str, payloads: Iterable[bytes]
) -> None:
    """Publish ``payloads`` on ``subject``, then a marker behind them; wait until the
    directory knows the marker (so everything before it has been handled)."""
    marker = f"marker-{subject.replace('.', '-')}"
    marker_subject = subject if subject == AGENT_ANNOUNCE else agent_status(marker)
    for payload in payloads:
        await bus.publish(subject, payload)
    await bus.publish(marker_subject, announce(marker))
    await wait_until(lambda: directory.get(marker) is not None)


log_name = "volta.node.directory"


def directory_lines(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    """The directory's log lines, (level, message), in order."""
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == log_name]


def records(caplog: pytest.LogCaptureFixture, level: int, text: str) -> list[str]:
    """The directory's lines at ``level`` that contain ``text``."""
    return [line for at, line in directory_lines(caplog) if at == level and text in line]


async def test_a_presence_change_names_what_brought_it(nats_server: NatsServer) -> None:
    async with service_bus(nats_server.url) as bus, serving(bus) as (service, events):
        await bus.publish(AGENT_ANNOUNCE, announce("announced"))
        await bus.publish(agent_status("beating"), announce("beating"))
        await wait_until(lambda: len(events) == 2)
    changes = [e for e in events if isinstance(e, PresenceChange)]
    assert sorted((c.agent, c.before, c.after, c.reason) for c in changes) == [
        ("announced", None, Presence.ONLINE, "announce"),
        ("beating", None, Presence.ONLINE, "heartbeat"),
    ]
    assert (service.clashes, service.malformed, service.errors) == (0, 0, 0)


async def test_refused_statuses_are_counted_and_logged_for_each_agent(
    nats_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "volta.node.directory")
    directory = Directory(30.0)
    async with service_bus(nats_server.url) as bus, serving(bus, directory) as (service, events):
        statuses = [
            announce(agent_id, instance=instance)
            for agent_id in ("alpha", "beta")
            for instance in ("first", "second")
        ]
        await publish_then_marker(bus, directory, AGENT_ANNOUNCE, statuses)
    assert service.clashes == 2
    clashes = [e for e in events if isinstance(e, IdentityClash)]
    assert [(c.agent, c.instance) for c in clashes] == [("alpha", "second"), ("beta", "second")]
    # One throttle bucket per agent: beta's refusal is not hidden behind alpha's.
    for agent_id in ("alpha", "beta"):
        assert records(
            caplog, logging.WARNING, f"status for agent {agent_id} (instance second) refused"
        )
    assert (service.malformed, service.errors) == (0, 0)


async def test_refusals_held_back_are_summarised_as_refused_statuses_at_stop(
    nats_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "volta.node.directory")
    directory = Directory(30.0)
    async with service_bus(nats_server.url) as bus, serving(bus, directory) as (service, _):
        statuses = [announce("alpha", instance=f"i{n}") for n in range(4)]
        await publish_then_marker(bus, directory, AGENT_ANNOUNCE, statuses)
        assert service.clashes == 3
    assert records(caplog, logging.WARNING, "more") == [
        "2 more refused statuses on clash:alpha in the last 0 s"
    ]


async def test_malformed_statuses_are_counted_and_reported_with_their_subject(
    nats_server: NatsServer,
) -> None:
    directory = Directory(30.0)
    async with (
        service_bus(nats_server.url) as bus,
        bus.watch_events() as watched,
        serving(bus, directory) as (service, _events),
    ):
        await publish_then_marker(bus, directory, AGENT_ANNOUNCE, [b'{"id": 5}', b"not json"])
        assert service.malformed == 2
        forged = announce("someone-else")
        await publish_then_marker(bus, directory, agent_status("victim"), [forged])
        assert service.malformed == 3
        assert bus.statistics().malformed == 3
        details = []
        while True:
            try:
                event = watched.receive_nowait()
            except trio.WouldBlock:
                break
            if event.kind is ConnectionEventKind.MALFORMED:
                details.append(event.detail)
    # The first of each subject at once; the rest of it go into a summary, later.
    assert details == [
        "agent.announce: id: expected a string, got int",
        "agent.victim.status: a status for 'someone-else' on another agent's subject",
    ]
    assert directory.get("someone-else") is None
    assert service.errors == 0


class FailingDirectory(Directory):
    """Fails on the agent ``boom`` and on listings of the capability ``boom``."""

    def observe(self, status: AgentStatus, now: float, reason: str) -> Event | None:
        if status.id == "boom":
            raise RuntimeError("boom")
        return super().observe(status, now, reason)

    def encoded_agents(
        self, *, capability: str | None = None, status: Presence | None = None
    ) -> list[bytes]:
        if capability == "boom":
            raise RuntimeError("boom")
        return super().encoded_agents(capability=capability, status=status)


async def test_a_status_the_service_fails_on_is_counted_and_the_rest_go_on(
    nats_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "volta.node.directory")
    directory = FailingDirectory(30.0)
    async with service_bus(nats_server.url) as bus, serving(bus, directory) as (service, _events):
        await publish_then_marker(bus, directory, AGENT_ANNOUNCE, [announce("boom")] * 2)
        await publish_then_marker(bus, directory, agent_status("boom"), [announce("boom")])
    assert service.errors == 3
    assert records(caplog, logging.WARNING, "status on agent.announce could not be handled: ")
    assert records(caplog, logging.WARNING, "RuntimeError('boom')")
    assert (service.malformed, service.clashes) == (0, 0)


async def test_a_listing_the_service_fails_on_is_answered_and_counted(
    nats_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "volta.node.directory")
    directory = FailingDirectory(30.0)
    async with service_bus(nats_server.url) as bus, serving(bus, directory) as (service, _events):
        for expected_errors in (1, 2):
            reply = await bus.request(MCP_LIST_AGENTS, b'{"capability": "boom"}', timeout=5)
            assert json.loads(reply.data) == {
                "agents": [],
                "error": {"code": "agent_error", "message": "the directory failed: RuntimeError"},
            }
            assert service.errors == expected_errors
        await bus.publish(AGENT_ANNOUNCE, announce("alpha"))
        await wait_until(lambda: directory.get("alpha") is not None)
        listed = await client_context(bus).list_agents()
    assert [a.id for a in listed] == ["alpha"]
    assert records(caplog, logging.WARNING, "mcp.list_agents failed: RuntimeError('boom')")


async def test_a_listing_can_ask_for_one_state(nats_server: NatsServer) -> None:
    directory = Directory(30.0)
    async with service_bus(nats_server.url) as bus, serving(bus, directory):
        for agent_id, state in [("a", "online"), ("b", "busy"), ("c", "offline")]:
            await bus.publish(AGENT_ANNOUNCE, announce(agent_id, status=state))
        await wait_until(lambda: len(directory) == 3)
        context = client_context(bus)
        by_state = {
            state: [a.id for a in await context.list_agents(status=state)] for state in Presence
        }
        everyone = [a.id for a in await context.list_agents()]
    assert by_state == {Presence.ONLINE: ["a"], Presence.BUSY: ["b"], Presence.OFFLINE: ["c"]}
    assert everyone == ["a", "b", "c"]


async def test_a_bad_listing_query_is_refused_with_its_reason(nats_server: NatsServer) -> None:
    async with service_bus(nats_server.url) as bus, serving(bus):
        reply = await bus.request(MCP_LIST_AGENTS, b'{"offset": -1}', timeout=5)
        assert json.loads(reply.data) == {
            "agents": [],
            "error": {
                "code": "bad_request",
                "message": "offset: expected an integer >= 0, got -1",
            },
        }
        assert await client_context(bus).list_agents() == ()  # and it still answers


def entry_size(agent_id: str, name: str) -> int:
    """The bytes the directory's listing entry for this agent takes."""
    probe = Directory(30.0)
    probe.observe(AgentStatus(id=agent_id, name=name, heartbeat_interval=30.0), 0.0, "x")
    (encoded,) = probe.encoded_agents()
    return len(encoded)


@pytest.mark.parametrize("overshoot", [0, 1])
async def test_a_page_fills_the_server_max_payload_less_256_bytes(
    tmp_path: Path, overshoot: int
) -> None:
    """The page budget is max_payload - 256 (the envelope and NATS headers have room),
    to the byte: an entry that ends exactly there is on the page, a byte more is not."""
    config = tmp_path / "small.conf"
    config.write_text("max_payload: 4096\n")
    budget = 4096 - 256
    # The page accounts 64 bytes for its envelope and len + 1 for each entry.
    directory = Directory(30.0)
    used = 64
    edge_without_padding = entry_size("b-edge", "")
    while budget - used - 1 - edge_without_padding > 200:
        agent_id = f"a{len(directory):02d}"
        directory.observe(AgentStatus(id=agent_id, name="n" * 50), trio.current_time(), "x")
        used += entry_size(agent_id, "n" * 50) + 1
    padding = budget - used - 1 - edge_without_padding + overshoot
    assert 0 <= padding <= 200
    edge = AgentStatus(id="b-edge", name="e" * padding)
    assert used + entry_size("b-edge", edge.name) + 1 == budget + overshoot
    directory.observe(edge, trio.current_time(), "x")
    directory.observe(AgentStatus(id="c-next", name="c"), trio.current_time(), "x")
    on_the_page = len(directory) - 1 - overshoot
    async with (
        run_nats_server(NatsServerConfig(extra_args=("-c", str(config)))) as server,
        service_bus(server.url) as bus,
        serving(bus, directory),
    ):
        assert bus.max_payload == 4096
        reply = await bus.request(MCP_LIST_AGENTS, b"{}", timeout=5)
    page = json.loads(reply.data)
    assert (len(page["agents"]), page["next_offset"], page["total"]) == (
        on_the_page,
        on_the_page,
        len(directory),
    )
    assert ("b-edge" in [a["id"] for a in page["agents"]]) is (overshoot == 0)
    assert len(reply.data) <= budget


async def test_status_and_listing_failures_are_throttled_apart_and_said_at_stop(
    nats_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Each kind of failure has its own window (a flood of one never hides the other),
    and what a window held back is said, in its own words, when the service stops."""
    caplog.set_level(logging.INFO, log_name)
    directory = FailingDirectory(30.0)
    async with service_bus(nats_server.url) as bus:
        async with serving(bus, directory) as (service, _events):
            await publish_then_marker(bus, directory, AGENT_ANNOUNCE, [announce("boom")] * 3)
            for _ in range(2):
                await bus.request(MCP_LIST_AGENTS, b'{"capability": "boom"}', timeout=5)
            assert service.errors == 5
            before_stop = directory_lines(caplog)
        after_stop = directory_lines(caplog)[len(before_stop) :]
    failures = [line for line in before_stop if "RuntimeError" in line[1]]
    assert failures == [
        (logging.WARNING, "status on agent.announce could not be handled: RuntimeError('boom')"),
        (logging.WARNING, "mcp.list_agents failed: RuntimeError('boom')"),
    ]
    assert sorted(after_stop) == [
        (logging.WARNING, "1 more listing failures on list-error in the last 0 s"),
        (logging.WARNING, "2 more status failures on status-error in the last 0 s"),
    ]


async def test_the_sweeper_says_what_a_window_held_back_once_it_has_ended(
    nats_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Without any later failure to bring it: the summary comes from the sweeper,
    within about one report interval of the window's end, at the lines' own level."""
    caplog.set_level(logging.INFO, log_name)
    directory = FailingDirectory(30.0)
    options = BusOptions(servers=(nats_server.url,), report_interval=0.5)
    async with open_bus(options) as bus, serving(bus, directory):
        await publish_then_marker(bus, directory, AGENT_ANNOUNCE, [announce("boom")] * 4)
        summary = re.compile(r"3 more status failures on status-error in the last \d s")

        def summarised() -> bool:
            lines = directory_lines(caplog)
            return any(level == logging.WARNING and summary.fullmatch(m) for level, m in lines)

        await wait_until(summarised, 3.0)


def huge_announce(agent_id: str, size: int) -> bytes:
    """An announce of ``size`` bytes (a long name, capabilities of 64 characters)."""
    capabilities: list[str] = []
    while len(payload := announce(agent_id, name="n" * 256, capabilities=capabilities)) < size:
        capabilities.append(f"c{len(capabilities):04d}".ljust(64, "x"))
    capabilities[-1] = capabilities[-1][: 64 - (len(payload) - size)]
    return announce(agent_id, name="n" * 256, capabilities=capabilities)


async def test_an_entry_too_large_for_any_page_is_skipped_and_the_listing_goes_on(
    tmp_path: Path,
) -> None:
    """On a server with a small max_payload, an announce that fits the server can make
    a list entry that fits no page: every listing went unanswered from there on."""
    config = tmp_path / "small.conf"
    config.write_text("max_payload: 4096\n")
    directory = Directory(30.0)
    async with (
        run_nats_server(NatsServerConfig(extra_args=("-c", str(config)))) as server,
        service_bus(server.url) as bus,
        serving(bus, directory),
    ):
        huge = huge_announce("b-huge", 4080)
        assert len(huge) == 4080
        for payload in (announce("a-small"), huge, announce("c-small")):
            await bus.publish(AGENT_ANNOUNCE, payload)
        await wait_until(lambda: len(directory) == 3)
        largest = max(len(entry) for entry in directory.encoded_agents())
        assert largest > bus.max_payload, "the entry fits a reply: no test"
        page = json.loads((await bus.request(MCP_LIST_AGENTS, b"{}", timeout=2)).data)
        alone = json.loads((await bus.request(MCP_LIST_AGENTS, b'{"offset": 1}', timeout=2)).data)
        listed = await client_context(bus).list_agents()
    assert [a["id"] for a in page["agents"]] == ["a-small", "c-small"]
    assert (page["total"], page["next_offset"], page["skipped"]) == (3, None, 1)
    assert ([a["id"] for a in alone["agents"]], alone["skipped"]) == (["c-small"], 1)
    assert [a.id for a in listed] == ["a-small", "c-small"]


class CountingDirectory(Directory):
    """Counts the sweeps (calls of expire)."""

    sweeps = 0

    def expire(self, now: float) -> list[PresenceChange]:
        self.sweeps += 1
        return super().expire(now)


async def test_an_idle_directory_sleeps_until_its_next_deadline(nats_server: NatsServer) -> None:
    """The sweeper wakes for a deadline or a report interval, never in a loop: with one
    agent that beats every 30 s and a report interval of an hour, 0.5 s are one sweep."""
    directory = CountingDirectory(30.0)
    async with service_bus(nats_server.url) as bus, serving(bus, directory):
        await publish_then_marker(bus, directory, AGENT_ANNOUNCE, [announce("alpha")])
        before = directory.sweeps
        await trio.sleep(0.5)
        during = directory.sweeps - before
    assert during <= 1, f"{during} sweeps in 0.5 s of nothing to do"


async def test_an_answer_the_bus_cannot_send_is_logged_and_the_service_reads_on(
    nats_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A reply whose publish fails (here the service's bus has closed under it) is
    logged at INFO once per window, the rest summarised; the service reads on."""
    caplog.set_level(logging.INFO, log_name)
    options = BusOptions(servers=(nats_server.url,), report_interval=0.3)
    async with open_bus(options) as closing:
        service = DirectoryService(Directory(30.0), closing)
    async with (
        open_bus(nats_server.url) as client,
        client.subscribe("test.list") as requests,
        trio.open_nursery() as nursery,
    ):
        await client.flush()
        nursery.start_soon(service._answer, requests)
        for n in range(3):
            await client.publish("test.list", b"{}", reply=f"_INBOX.gone.{n}")
        await wait_until(lambda: requests.statistics().delivered == 3)
        await trio.sleep(0.35)  # the window ends: the next failure brings its summary
        await client.publish("test.list", b"{}", reply="_INBOX.gone.last")
        await wait_until(lambda: requests.statistics().delivered == 4)
        await wait_until(lambda: len(directory_lines(caplog)) == 3)
        nursery.cancel_scope.cancel()
    lines = [message for level, message in directory_lines(caplog) if level == logging.INFO]
    assert len(lines) == 3
    assert lines[0] == "could not answer mcp.list_agents: the bus is closed: closed by its owner"
    assert lines[1] == "2 more answers that could not be sent on answer in the last 0 s"
    assert lines[2] == lines[0]


async def test_presence_and_refusal_lines_say_who_what_and_why_word_for_word(
    nats_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, log_name)
    directory = Directory(30.0)
    async with service_bus(nats_server.url) as bus, serving(bus, directory) as (_, events):

        def presence() -> Presence | None:
            listed = directory.get("alpha")
            return None if listed is None else listed.status

        for _ in range(3):  # online and offline three times: one line each, the rest held
            await bus.publish(AGENT_ANNOUNCE, announce("alpha"))
            await wait_until(lambda: presence() is Presence.ONLINE)
            await bus.publish(agent_status("alpha"), announce("alpha", status="offline"))
            await wait_until(lambda: presence() is Presence.OFFLINE)
        for agent_id, instance in [("solo", "one"), ("solo", "two"), ("duo", "one"), ("duo", None)]:
            await bus.publish(AGENT_ANNOUNCE, announce(agent_id, instance=instance))
        await wait_until(lambda: len([e for e in events if isinstance(e, IdentityClash)]) == 2)
    clashes = [e for e in events if isinstance(e, IdentityClash)]
    lines = [message for _level, message in directory_lines(caplog) if "marker" not in message]
    assert lines[:2] == [
        "agent alpha: unknown -> online (announce)",
        "agent alpha: online -> offline (said offline)",
    ]
    assert f"status for agent solo (instance two) refused: {clashes[0].reason}" in lines
    assert f"status for agent duo (instance -) refused: {clashes[1].reason}" in lines
    assert "2 more presence changes on presence:alpha:online in the last 0 s" in lines
    assert "2 more presence changes on presence:alpha:offline in the last 0 s" in lines


async def test_a_page_may_not_be_smaller_than_128_bytes(nats_server: NatsServer) -> None:
    async with service_bus(nats_server.url) as bus:
        DirectoryService(Directory(30.0), bus, spec=DirectorySpec(max_page_bytes=128))
        with pytest.raises(
            ValueError, match=r"^max_page_bytes: expected an integer >= 128, got 127$"
        ):
            DirectoryService(Directory(30.0), bus, spec=DirectorySpec(max_page_bytes=127))
