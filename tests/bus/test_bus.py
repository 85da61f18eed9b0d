"""The bus against a real nats-server: pub/sub, queues, requests, errors, events.

Rules: loopback only, a fresh server per test, real time (no autojump_clock:
the sockets are real). Waits are bounded with ``trio.fail_after``.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
import trio
import trio.testing
from nats.aio.client import Client as NatsClient
from nats.aio.subscription import Subscription as NatsSubscription

from volta.bus import (
    Bus,
    BusClosed,
    BusOptions,
    ConnectFailed,
    ConnectionEventKind,
    Delivery,
    NatsServer,
    NatsServerConfig,
    NoResponders,
    PayloadTooLarge,
    RequestTimeout,
    open_bus,
    run_nats_server,
)
from volta.bus._outbox import _has_backlog, _supports_direct_writes
from volta.protocol import InvalidSubject, Message, MessageType


async def serve_echo(
    bus: Bus,
    subject: str,
    *,
    queue: str | None = None,
    tag: bytes = b"",
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    async with bus.subscribe(subject, queue=queue) as requests:
        await bus.flush()
        task_status.started()
        async for request in requests:
            await bus.respond(request, tag + request.data)


async def test_publish_subscribe_in_order(nats_server: NatsServer) -> None:
    async with open_bus(nats_server.url) as sender, open_bus(nats_server.url) as receiver:
        async with receiver.subscribe("orders.>") as orders:
            await receiver.flush()
            for n in range(500):
                await sender.publish(f"orders.{n % 3}", str(n).encode(), headers={"n": str(n)})
            with trio.fail_after(5):
                got = [await orders.receive() for _ in range(500)]
    assert [int(d.data) for d in got] == list(range(500))
    assert got[4].subject == "orders.1"
    assert got[4].headers == {"n": "4"}
    assert orders.statistics().delivered == 500


async def test_messages_round_trip_through_the_server(nats_server: NatsServer) -> None:
    async with open_bus(nats_server.url) as bus:
        async with bus.subscribe_messages("agent.beta.message") as inbox:
            await bus.flush()
            sent = Message(
                sender="alpha",
                to="beta",
                message="hi",
                type=MessageType.QUERY,
                metadata={"trace": [1, 2]},
            )
            await bus.publish("agent.beta.message", sent)
            with trio.fail_after(5):
                received = await anext(inbox)
    assert received == sent


async def test_malformed_messages_are_skipped_counted_and_reported(
    nats_server: NatsServer,
) -> None:
    async with open_bus(nats_server.url) as bus, bus.watch_events() as events:
        async with bus.subscribe_messages("in") as inbox:
            await bus.flush()
            await bus.publish("in", b"{broken")
            await bus.publish("in", json.dumps({"id": "x", "from": "a.b"}).encode())
            good = Message(sender="a", to="b", message="ok")
            await bus.publish("in", good)
            with trio.fail_after(5):
                assert await anext(inbox) == good
            assert inbox.statistics().malformed == 2
            assert bus.statistics().malformed == 2
            with trio.fail_after(5):
                event = await events.receive()
    # The first is reported at once, naming what is wrong; the second is held for the summary.
    assert event.kind is ConnectionEventKind.MALFORMED
    assert event.detail.startswith("in: invalid message: $: not valid UTF-8 JSON")


async def test_a_flood_of_malformed_messages_is_one_line_and_one_summary(
    nats_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="volta.bus")
    async with (
        open_bus(nats_server.url, report_interval=0.3) as bus,
        bus.watch_events() as events,
        bus.subscribe_messages("in") as inbox,
    ):
        await bus.flush()
        for n in range(1000):
            await bus.publish("in", b"not json %d" % n)
        await bus.publish("in", Message(sender="a", to="b", message="last"))
        with trio.fail_after(5):
            assert (await anext(inbox)).message == "last"
        with trio.fail_after(5):
            first = await events.receive()
            summary = await events.receive()
        assert inbox.statistics().malformed == 1000
    assert first.kind is summary.kind is ConnectionEventKind.MALFORMED
    assert first.detail.startswith("in: invalid message")
    assert summary.detail.startswith("999 more malformed messages on in in the last ")
    lines = [r.getMessage() for r in caplog.records if "malformed" in r.getMessage()]
    assert len(lines) == 2, lines
    assert lines[1] == summary.detail


async def test_queue_group_delivers_each_message_once_and_spreads_load(
    nats_server: NatsServer,
) -> None:
    counts = {"a": 0, "b": 0}
    total = 400

    async with open_bus(nats_server.url) as bus:

        async def worker(name: str, task_status: trio.TaskStatus[None]) -> None:
            async with bus.subscribe("jobs", queue="workers") as jobs:
                await bus.flush()
                task_status.started()
                async for _ in jobs:
                    counts[name] += 1

        async with trio.open_nursery() as nursery:
            await nursery.start(worker, "a")
            await nursery.start(worker, "b")
            for n in range(total):
                await bus.publish("jobs", str(n).encode())
            await bus.flush()
            with trio.fail_after(5):
                while sum(counts.values()) < total:
                    await trio.sleep(0.01)
            # Deliveries come in order on this one connection: after a flush round
            # trip, a duplicate would already sit in a buffer. There is none.
            await bus.flush()
            await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
    assert sum(counts.values()) == total
    assert counts["a"] > total // 10
    assert counts["b"] > total // 10


async def test_request_reply(nats_server: NatsServer) -> None:
    async with open_bus(nats_server.url) as client, open_bus(nats_server.url) as server:
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_echo, server, "echo")
            replies = [await client.request("echo", f"{n}".encode(), timeout=5) for n in range(50)]
            nursery.cancel_scope.cancel()
    assert [r.data for r in replies] == [f"{n}".encode() for n in range(50)]
    assert client.statistics().requests_waiting == 0


async def test_concurrent_requests_get_their_own_replies(nats_server: NatsServer) -> None:
    results: dict[int, bytes] = {}
    async with open_bus(nats_server.url) as bus, trio.open_nursery() as servers:
        await servers.start(serve_echo, bus, "echo")

        async def ask(n: int) -> None:
            results[n] = (await bus.request("echo", str(n).encode(), timeout=5)).data

        async with trio.open_nursery() as askers:
            for n in range(100):
                askers.start_soon(ask, n)
        servers.cancel_scope.cancel()
    assert results == {n: str(n).encode() for n in range(100)}


async def test_a_late_reply_is_dropped_and_answers_nothing_else(nats_server: NatsServer) -> None:
    """A second reply to an answered request must not become the next one's answer."""
    async with open_bus(nats_server.url) as client, open_bus(nats_server.url) as server:

        async def answer_late(task_status: trio.TaskStatus[None]) -> None:
            async with server.subscribe("late") as requests:
                await server.flush()
                task_status.started()
                first = await requests.receive()
                assert first.reply is not None
                await server.respond(first, b"first")
                second = await requests.receive()
                await server.publish(first.reply, b"late, for the first")
                await server.respond(second, b"second")

        async with trio.open_nursery() as nursery:
            await nursery.start(answer_late)
            with trio.fail_after(5):
                replies = [(await client.request("late", b"?", timeout=5)).data for _ in range(2)]
        assert client.statistics().requests_waiting == 0
    assert replies == [b"first", b"second"]


async def test_request_timeout_names_the_subject(nats_server: NatsServer) -> None:
    async with open_bus(nats_server.url) as bus:
        async with bus.subscribe("silent"):  # a responder that never answers
            await bus.flush()
            start = trio.current_time()
            with pytest.raises(RequestTimeout, match=r"no reply on 'silent' within 0\.3 s"):
                await bus.request("silent", b"?", timeout=0.3)
            assert trio.current_time() - start >= 0.3
        assert bus.statistics().requests_waiting == 0


async def test_no_responders_fails_at_once(nats_server: NatsServer) -> None:
    async with open_bus(nats_server.url) as bus:
        start = trio.current_time()
        with pytest.raises(NoResponders, match=r"'nobody\.home'"):
            await bus.request("nobody.home", b"?", timeout=10)
        assert trio.current_time() - start < 2


async def test_payload_above_max_payload_is_refused_before_sending(
    nats_server: NatsServer,
) -> None:
    async with open_bus(nats_server.url) as bus, bus.subscribe("big") as big:
        await bus.flush()
        too_big = b"x" * (bus.max_payload + 1)
        with pytest.raises(PayloadTooLarge, match="above the server's max_payload"):
            await bus.publish("big", too_big)
        await bus.publish("big", b"small")
        with trio.fail_after(5):
            assert (await big.receive()).data == b"small"
    assert bus.max_payload == 1024 * 1024


@pytest.mark.parametrize("subject", ["", "a b", "a..b", "a.*", "a.>"])
async def test_invalid_publish_subjects(nats_server: NatsServer, subject: str) -> None:
    async with open_bus(nats_server.url) as bus:
        with pytest.raises(InvalidSubject):
            await bus.publish(subject, b"x")
        with pytest.raises(InvalidSubject):
            await bus.request(subject, b"x", timeout=1)


async def test_an_invalid_reply_subject_is_refused(nats_server: NatsServer) -> None:
    async with open_bus(nats_server.url) as bus:
        with pytest.raises(InvalidSubject):
            await bus.publish("fine", b"x", reply="not fine")
        with pytest.raises(InvalidSubject):
            await bus.publish("fine", b"x", reply="reply.*")


async def test_invalid_subscriptions(nats_server: NatsServer) -> None:
    async with open_bus(nats_server.url) as bus:
        with pytest.raises(ValueError, match="must be positive"):
            async with bus.subscribe("a", max_messages=0):
                pass  # pragma: no cover
        with pytest.raises(ValueError, match="must be positive"):
            async with bus.subscribe("a", max_bytes=0):
                pass  # pragma: no cover
        with pytest.raises(InvalidSubject):
            async with bus.subscribe("a.>.b"):
                pass  # pragma: no cover
        with pytest.raises(InvalidSubject, match="queue group"):
            async with bus.subscribe("a", queue="two words"):
                pass  # pragma: no cover


async def test_respond_needs_a_reply_subject(nats_server: NatsServer) -> None:
    async with open_bus(nats_server.url) as bus:
        with pytest.raises(ValueError, match="no reply subject"):
            await bus.respond(Delivery(subject="x", data=b""), b"y")


async def test_unsubscribe_on_block_exit(nats_server: NatsServer) -> None:
    async with open_bus(nats_server.url) as bus:
        async with bus.subscribe("gone"):
            await bus.flush()
        await bus.flush()
        with pytest.raises(NoResponders):
            await bus.request("gone", b"?", timeout=5)


async def test_a_publish_nats_py_refuses_fails_alone(nats_server: NatsServer) -> None:
    """Counted and reported as an error event; the publishes around it go out."""
    async with (
        open_bus(nats_server.url) as bus,
        bus.watch_events() as events,
        bus.subscribe("around") as around,
    ):
        await bus.flush()
        await bus.publish("around", b"before", headers={"ok": "1"})
        await bus.publish("around", b"refused", headers={"no spaces": "in keys"})
        await bus.publish("around", b"after", headers={"ok": "1"})
        with trio.fail_after(5):
            got = [(await around.receive()).data for _ in range(2)]
            error = await events.receive()
        assert bus.statistics().publish_failed == 1, "the refused publish was not counted"
    assert got == [b"before", b"after"]
    assert error.kind is ConnectionEventKind.ERROR
    assert "publish to 'around' failed" in error.detail


async def test_closed_bus_refuses_work(nats_server: NatsServer) -> None:
    async with open_bus(nats_server.url) as bus:
        pass
    assert bus.closed
    with pytest.raises(BusClosed):
        await bus.publish("x", b"y")
    with pytest.raises(BusClosed):
        async with bus.subscribe("x"):
            pass  # pragma: no cover
    with pytest.raises(BusClosed):
        await bus.request("x", b"y", timeout=5)
    with pytest.raises(BusClosed):
        await bus.flush()
    assert bus.statistics().requests_waiting == 0


async def test_publishes_queued_before_close_are_flushed(nats_server: NatsServer) -> None:
    async with open_bus(nats_server.url) as receiver, receiver.subscribe("last.words") as words:
        await receiver.flush()
        async with open_bus(nats_server.url) as sender:
            for n in range(1000):
                await sender.publish("last.words", str(n).encode())
        with trio.fail_after(5):
            got = [await words.receive() for _ in range(1000)]
    assert int(got[-1].data) == 999


async def test_connect_failure_is_clear_and_hides_credentials() -> None:
    with pytest.raises(ConnectFailed, match="could not connect") as caught:
        async with open_bus("nats://bob:hunter2@127.0.0.1:1", connect_timeout=1):
            pass  # pragma: no cover
    assert "hunter2" not in str(caught.value)
    assert "bob:***@127.0.0.1:1" in str(caught.value)


async def test_bad_credentials_are_refused_without_leaking_them() -> None:
    config = NatsServerConfig(extra_args=("--user", "bob", "--pass", "right-password"))
    async with run_nats_server(config) as server:
        url = f"nats://bob:wrong-password@127.0.0.1:{server.port}"
        with pytest.raises(ConnectFailed, match=r"(?i)authorization") as caught:
            async with open_bus(url):
                pass  # pragma: no cover
        assert "wrong-password" not in str(caught.value)
        good = f"nats://bob:right-password@127.0.0.1:{server.port}"
        async with open_bus(good) as bus:
            assert bus.connected
            assert bus.server == f"nats://bob:***@127.0.0.1:{server.port}"
            assert "right-password" not in repr(bus.statistics())


async def test_credentials_from_options() -> None:
    config = NatsServerConfig(extra_args=("--auth", "s3cret-token"))
    async with run_nats_server(config) as server:
        async with open_bus(BusOptions(servers=(server.url,), token="s3cret-token")) as bus:
            assert bus.connected


async def test_a_cluster_url_list_fails_over_to_a_live_server(nats_server: NatsServer) -> None:
    urls = ["nats://127.0.0.1:1", nats_server.url]
    async with open_bus(urls) as bus:
        assert bus.server == nats_server.url


async def test_retry_initial_connect_waits_for_a_late_server() -> None:
    async with run_nats_server() as server:
        url = server.url
        await server.kill()
        async with trio.open_nursery() as nursery:

            async def start_late() -> None:
                await trio.sleep(0.5)
                await server.restart()

            nursery.start_soon(start_late)
            with trio.fail_after(10):
                async with open_bus(url, retry_initial_connect=True) as bus:
                    assert bus.connected


async def test_connected_event_and_statistics(nats_server: NatsServer) -> None:
    async with open_bus(nats_server.url) as bus:
        await bus.publish("x", b"1")
        await bus.flush()
        stats = bus.statistics()
    assert stats.connected
    assert stats.published == 1
    assert stats.queued_bytes == 0
    assert stats.server == nats_server.url


async def test_fast_paths_are_active_with_this_nats_py(nats_server: NatsServer) -> None:
    """A nats-py upgrade that removes the private hooks must not go unnoticed."""
    async with open_bus(nats_server.url) as bus, bus.subscribe("fast") as sub:
        await bus.publish("fast", b"1")
        await bus.flush()
        with trio.fail_after(5):
            await sub.receive()
        assert sub.statistics().direct_delivery
        assert bus.statistics().direct_writes
        # On an idle connection a publish is written before publish() returns.
        await bus.publish("fast", b"2")
        assert bus.statistics().published == 2, "write-through is off"
    assert _has_backlog(object()), "write-through into a transport whose backlog is unknown"


@pytest.mark.parametrize(
    ("direct_writes", "direct_delivery"), [(False, True), (True, False), (False, False)]
)
async def test_public_api_fallbacks_behave_the_same(
    nats_server: NatsServer, direct_writes: bool, direct_delivery: bool
) -> None:
    async with open_bus(nats_server.url) as bus:
        bus._outbox.direct = direct_writes
        bus._direct_delivery = direct_delivery
        async with bus.subscribe("same", max_messages=50) as sub:
            await bus.flush()
            for n in range(300):
                await bus.publish("same", str(n).encode())
            await bus.publish("same", b"with-headers", headers={"k": "v"})
            await bus.flush()
            with trio.fail_after(5):
                while sub.statistics().pending + sub.statistics().dropped < 301:
                    await trio.sleep(0.01)
            got = [await sub.receive() for _ in range(50)]
        stats = sub.statistics()
        assert bus.statistics().direct_writes is direct_writes
    assert [int(d.data) for d in got] == list(range(50))
    assert stats.dropped == 251
    assert stats.direct_delivery is direct_delivery


class _SomeOtherQueue:
    """Stands in for the queue of a nats-py release that the bus does not know."""

    def __init__(self, queue: object) -> None:
        self._queue = queue

    def __getattr__(self, name: str) -> object:
        return getattr(self._queue, name)


async def test_without_a_known_queue_delivery_falls_back_to_the_callback(
    nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The check behind direct delivery, not only its switch: a changed nats-py
    gets the callback path, with a warning, and no subscription left behind."""
    original = NatsClient.subscribe

    async def subscribe(self: NatsClient, *args: Any, **kwargs: Any) -> NatsSubscription:
        subscription = await original(self, *args, **kwargs)
        if kwargs.get("cb") is None:
            subscription._pending_queue = _SomeOtherQueue(subscription._pending_queue)  # type: ignore[assignment]
        return subscription

    monkeypatch.setattr(NatsClient, "subscribe", subscribe)
    async with open_bus(nats_server.url) as bus, bus.subscribe("changed") as sub:
        await bus.flush()
        for n in range(3):
            await bus.publish("changed", str(n).encode())
        with trio.fail_after(5):
            got = [(await sub.receive()).data for _ in range(3)]
        assert not sub.statistics().direct_delivery, "took over a queue it does not know"
        assert len(bus._client._subs) == 2, "the probe subscription was left on the connection"
    assert got == [b"0", b"1", b"2"]
    assert "direct delivery unavailable" in caplog.text


async def test_without_the_write_hooks_publishes_take_the_public_api(
    nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check behind run writes, not only its switch."""
    assert not _supports_direct_writes(object())  # type: ignore[arg-type]
    monkeypatch.setattr("volta.bus._outbox._supports_direct_writes", lambda _client: False)
    async with open_bus(nats_server.url) as bus, bus.subscribe("public") as sub:
        await bus.flush()
        for n in range(300):
            await bus.publish("public", str(n).encode())
        with trio.fail_after(5):
            got = [int((await sub.receive()).data) for _ in range(300)]
        assert not bus.statistics().direct_writes, "used write hooks it was told are missing"
    assert got == list(range(300))
