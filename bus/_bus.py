"""The connection as trio code sees it: ``async with open_bus(...) as bus``.

nats-py runs on a trio-asyncio loop. Trio code never awaits asyncio per message:
publishes go through the :mod:`._outbox` pump, deliveries come back through
:mod:`._subscription` buffers, replies through :mod:`._requests`. Only rare
operations (connect, close) cross with ``aio_as_trio``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any

import attrs
import trio
import trio_asyncio
from nats import errors as nats_errors
from nats.aio.client import Client

from volta.core import Fanout, Throttle, open_nursery, printable
from volta.protocol import InvalidSubject, Message, encode_message, validate_subject

from ._connect import ConnectionMonitor
from ._errors import (
    BusClosed,
    PayloadTooLarge,
    RequestTimeout,
)
from ._events import ConnectionEvent, ConnectionEventKind
from ._loop import asyncio_loop
from ._options import BusOptions, redact_url
from ._outbox import Command, Completion, Outbox
from ._requests import PendingReply, RequestMux
from ._subscription import (
    Delivery,
    MessageSubscription,
    Overflow,
    Subscription,
    SubscriptionBuffer,
    attach,
    to_delivery,
)

if TYPE_CHECKING:
    from nats.aio.subscription import Subscription as NatsSubscription

log = logging.getLogger("volta.bus")

_YIELD_EVERY = 128
_NATS_FLUSH_WAIT = 3600.0
"""How long nats-py itself waits for a flush's PONG (the caller's timeout is ours).

When nats-py times a flush out it cancels the future of its PONG, and a PONG
that comes later kills nats-py's reader (InvalidStateError in _process_pong): the
connection stays deaf until the pings notice. A live connection answers long
before this; a dead one drops the future on reconnect."""
_SUBJECT_CACHE_SIZE = 4096
DEFAULT_MAX_MESSAGES = 65_536
DEFAULT_MAX_BYTES = 64 * 1024 * 1024


@attrs.frozen
class BusStatistics:
    """Counters of one bus connection."""

    connected: bool
    """Whether the client is connected right now."""
    server: str | None
    """The server it is connected to (redacted)."""
    published: int
    """Publishes handed to nats-py."""
    publish_failed: int
    """Publishes nats-py refused after they were queued."""
    queued_bytes: int
    """Payload bytes queued by trio code, not yet handed to nats-py."""
    subscriptions: int
    """Open subscriptions (not counting the request inbox)."""
    delivered: int
    """Messages handed to consumers by the open subscriptions."""
    dropped: int
    """Messages the open subscriptions dropped (slow consumers)."""
    malformed: int
    """Payloads reported malformed (by subscriptions and by their consumers) since it opened."""
    requests_waiting: int
    """Requests waiting for a reply."""
    pub_acks_skipped: int
    """JetStream PubAcks that came back as replies and were skipped (a stream over a
    request's subject: the answer still comes)."""
    reconnects: int
    """Reconnections since the bus opened."""
    events_lost: int
    """Connection events a slow watcher did not receive."""
    direct_writes: bool
    """True if publishes reach nats-py's buffer in runs (the fast path)."""


class Bus:
    """A NATS connection for trio code. Made by :func:`open_bus`."""

    def __init__(
        self,
        client: Client,
        options: BusOptions,
        outbox: Outbox,
        requests: RequestMux,
        events: Fanout[ConnectionEvent],
        monitor: ConnectionMonitor,
    ) -> None:
        self._client = client
        self._options = options
        self._outbox = outbox
        self._requests = requests
        self._events = events
        self._monitor = monitor
        self._buffers: set[SubscriptionBuffer] = set()
        self._flushes: set[Completion[None]] = set()
        self._valid_subjects: set[str] = set()
        self._since_yield = 0
        self._closed: BusClosed | None = None
        self._direct_delivery = True
        self._inbox = requests.prefix + "."
        self._malformed = 0
        self._malformed_reports = Throttle(options.report_interval)
        self._overflow_reports = Throttle(options.report_interval)

    # state --------------------------------------------------------------------

    @property
    def options(self) -> BusOptions:
        """The options the bus was opened with."""
        return self._options

    @property
    def connected(self) -> bool:
        """True while the client is connected (False while reconnecting)."""
        return bool(self._client.is_connected)

    @property
    def closed(self) -> bool:
        """True once the bus is closed for good."""
        return self._closed is not None

    @property
    def server(self) -> str | None:
        """The URL of the server in use, credentials redacted."""
        url = self._client.connected_url
        return redact_url(url.geturl()) if url is not None else None

    @property
    def max_payload(self) -> int:
        """The largest payload the server accepts, in bytes."""
        return int(self._client.max_payload)

    def statistics(self) -> BusStatistics:
        """The counters as they are now."""
        buffers = list(self._buffers)
        return BusStatistics(
            connected=self.connected,
            server=self.server,
            published=self._outbox.published,
            publish_failed=self._outbox.failed,
            queued_bytes=self._outbox.queued_bytes,
            subscriptions=len(buffers),
            delivered=sum(b.delivered for b in buffers),
            dropped=sum(b.dropped for b in buffers),
            malformed=self._malformed,
            requests_waiting=self._requests.waiting,
            pub_acks_skipped=self._requests.pub_acks,
            reconnects=self._monitor.reconnects,
            events_lost=self._events.lost,
            direct_writes=self._outbox.direct,
        )

    def watch_events(
        self, buffer: int = 256
    ) -> AbstractAsyncContextManager[trio.MemoryReceiveChannel[ConnectionEvent]]:
        """``async with bus.watch_events() as events: async for event in events``.

        A watcher that falls more than ``buffer`` events behind loses the newest
        ones (counted in ``statistics().events_lost``); it never stalls the bus.
        """
        return self._events.watch(buffer)

    # publishing ---------------------------------------------------------------

    def _check_subject(self, subject: str) -> None:
        if subject in self._valid_subjects:
            return
        validate_subject(subject)
        if len(self._valid_subjects) < _SUBJECT_CACHE_SIZE:
            self._valid_subjects.add(subject)

    async def publish(
        self,
        subject: str,
        data: bytes | Message,
        *,
        reply: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Publish bytes, or a message encoded as JSON.

        Returns once the publish is queued in order behind earlier ones; it waits
        only when the outbox is full (backpressure). Core NATS is at most once.
        Like iteration, it checkpoints every ``_YIELD_EVERY`` calls and when it
        waits, not on every call: that is the price of a cheap bridge.

        Raises:
            InvalidSubject: the subject (or reply subject) is malformed (a protocol
                error: nothing was sent).
            PayloadEncodeError: the message holds something Volta JSON cannot carry.
            PayloadTooLarge: the payload exceeds the server's max_payload.
            BusClosed: the bus is closed.
        """
        # The hot path: every line here runs once per message.
        self._since_yield += 1
        if self._since_yield >= _YIELD_EVERY:
            self._since_yield = 0
            await trio.lowlevel.checkpoint()  # before queueing: a cancel sends nothing
        if self._closed is not None:
            raise self._closed
        if type(data) is not bytes:
            data = encode_message(data) if isinstance(data, Message) else bytes(data)
        if subject not in self._valid_subjects:
            self._check_subject(subject)
        if reply is None:
            reply = ""
        elif reply not in self._valid_subjects and not reply.startswith(self._inbox):
            self._check_subject(reply)
        if len(data) > self._client.max_payload:
            raise PayloadTooLarge(subject, len(data), self._client.max_payload)
        if not headers and self._outbox.try_write_through(self._client, subject, data, reply):
            return
        item = (subject, data, reply, dict(headers) if headers else None)
        if not self._outbox.try_put(item):
            await self._outbox.put(item)

    async def respond(self, request: Delivery, data: bytes | Message) -> None:
        """Answer a request delivery on its reply subject.

        Raises:
            ValueError: the delivery has no reply subject.
            InvalidSubject: its reply subject is one Volta never answers to (one of its
                own subjects, ``volta.protocol.is_answerable``): a reflection attempt.
        """
        if not request.reply:
            raise ValueError(f"the delivery on {request.subject!r} has no reply subject")
        if not request.answerable:
            raise InvalidSubject(
                f"will not answer on {printable(request.reply)!r}: a Volta subject or "
                "not a valid subject"
            )
        await self.publish(request.reply, data)

    async def flush(self, timeout: float = 5.0) -> None:
        """Wait until everything published so far has reached the server.

        Raises:
            RequestTimeout: the server did not confirm within ``timeout``.
            BusClosed: the bus is closed.
        """
        completion: Completion[None] = Completion()

        async def run(client: Client) -> None:
            # A task of its own, so the pump keeps sending while we wait for the PONG.
            # nats-py annotates the timeout as int; it is used as a float.
            flush = client.flush(_NATS_FLUSH_WAIT)  # type: ignore[arg-type]
            task = asyncio.ensure_future(flush)
            task.add_done_callback(lambda t: _complete_from_task(t, completion))

        if self._closed is not None:
            raise self._closed
        self._outbox.put_command(Command(run, None))
        self._flushes.add(completion)  # for mark_closed: the command has no completion
        try:
            with trio.move_on_after(timeout):
                try:
                    await completion.wait()
                except (nats_errors.TimeoutError, nats_errors.FlushTimeoutError, TimeoutError):
                    raise RequestTimeout("(flush)", timeout) from None
                return
        finally:
            self._flushes.discard(completion)
        raise RequestTimeout("(flush)", timeout)

    # subscribing --------------------------------------------------------------

    @asynccontextmanager
    async def subscribe(
        self,
        subject: str,
        *,
        queue: str | None = None,
        max_messages: int = DEFAULT_MAX_MESSAGES,
        max_bytes: int = DEFAULT_MAX_BYTES,
        overflow: Overflow = Overflow.DROP_NEWEST,
    ) -> AsyncIterator[Subscription]:
        """Subscribe for the duration of the block; iterate to receive deliveries.

        Args:
            subject: may contain wildcards (``*``, a final ``>``).
            queue: a queue group: each message goes to one member of the group.
            max_messages: messages held for a slow consumer before the overflow policy acts.
            max_bytes: bytes held for a slow consumer before the overflow policy acts.
            overflow: which message to drop when the buffer is full.

        Raises:
            InvalidSubject: the subject or queue name is malformed.
            BusClosed: the bus is closed.
        """
        async with self._subscription(subject, queue, max_messages, max_bytes, overflow) as buffer:
            yield Subscription(buffer, self.report_malformed)

    @asynccontextmanager
    async def subscribe_messages(
        self,
        subject: str,
        *,
        queue: str | None = None,
        max_messages: int = DEFAULT_MAX_MESSAGES,
        max_bytes: int = DEFAULT_MAX_BYTES,
        overflow: Overflow = Overflow.DROP_NEWEST,
    ) -> AsyncIterator[MessageSubscription]:
        """Like :meth:`subscribe`, but yields decoded messages and skips malformed ones."""
        async with self._subscription(subject, queue, max_messages, max_bytes, overflow) as buffer:
            yield MessageSubscription(buffer, self.report_malformed)

    def report_malformed(self, subject: str, error: Exception | str) -> None:
        """Count, log and report a payload on ``subject`` that could not be used.

        For consumers that decode payloads themselves. The first report per
        subject is logged and emitted as a ``malformed`` event at once; later
        ones within ``report_interval`` are counted into one summary line (and
        event) per subject, so a flood of bad input cannot flood the log.
        """
        self._malformed += 1
        admission = self._malformed_reports.admit(subject, trio.current_time())
        if admission.summary is not None:
            text = admission.summary.describe("malformed messages")
            log.warning("%s", text)
            self._monitor.emit(ConnectionEventKind.MALFORMED, text)
        if admission.report:
            shown = printable(subject)
            log.warning("malformed message on %s skipped: %s", shown, printable(error, 500))
            self._monitor.emit(ConnectionEventKind.MALFORMED, f"{shown}: {printable(error, 500)}")

    def _on_overflow(self, subject: str) -> None:
        if self._overflow_reports.admit(subject, trio.current_time()).report:
            shown = printable(subject)
            log.warning("slow consumer on %s: buffer full, dropping messages", shown)
            self._monitor.emit(ConnectionEventKind.SLOW_CONSUMER, f"{shown}: buffer full")

    def report_summaries(self) -> None:
        """Log (and emit) what the warnings held back, and the drops of each subscription.

        The bus calls this every ``report_interval`` seconds.
        """
        now = trio.current_time()
        for summary in self._malformed_reports.summaries(now):
            text = summary.describe("malformed messages")
            log.warning("%s", text)
            self._monitor.emit(ConnectionEventKind.MALFORMED, text)
        self._overflow_reports.summaries(now)  # the drop counts below say it better
        for buffer in list(self._buffers):
            dropped = buffer.dropped - buffer.dropped_reported
            if dropped:
                buffer.dropped_reported = buffer.dropped
                text = (
                    f"slow consumer on {printable(buffer.subject)}: dropped {dropped:,} messages "
                    f"since the last report ({buffer.dropped:,} in all; the buffer holds "
                    f"{buffer.max_messages:,} messages or {buffer.max_bytes:,} bytes)"
                )
                log.warning("%s", text)
                self._monitor.emit(ConnectionEventKind.SLOW_CONSUMER, text)

    @asynccontextmanager
    async def _subscription(
        self,
        subject: str,
        queue: str | None,
        max_messages: int,
        max_bytes: int,
        overflow: Overflow,
    ) -> AsyncIterator[SubscriptionBuffer]:
        validate_subject(subject, wildcards=True)
        if queue is not None and (not queue or any(c.isspace() for c in queue)):
            raise InvalidSubject(f"invalid queue group {queue!r}")
        if max_messages < 1 or max_bytes < 1:
            raise ValueError("max_messages and max_bytes must be positive")
        if self._closed is not None:
            raise self._closed
        buffer = SubscriptionBuffer(
            subject,
            queue,
            max_messages=max_messages,
            max_bytes=max_bytes,
            overflow=overflow,
            on_overflow=self._on_overflow,
        )
        abandoned = False

        async def run(client: Client) -> NatsSubscription:
            sub = await attach(client, subject, queue, buffer, direct=self._direct_delivery)
            if abandoned:
                await sub.unsubscribe()
            return sub

        completion: Completion[NatsSubscription] = Completion()
        self._outbox.put_command(Command(run, completion))
        try:
            nats_subscription = await completion.wait()
        except BaseException:
            abandoned = True  # the pump unsubscribes it as soon as it exists
            raise
        self._buffers.add(buffer)
        try:
            yield buffer
        finally:
            self._buffers.discard(buffer)
            buffer.close(BusClosed(f"subscription to {subject!r} is closed"))
            if self._closed is None:

                async def unsubscribe(_client: Client) -> None:
                    await nats_subscription.unsubscribe()

                self._outbox.put_command(Command(unsubscribe, None))

    # request-reply ------------------------------------------------------------

    async def request(
        self,
        subject: str,
        data: bytes | Message,
        *,
        timeout: float = 5.0,
        headers: Mapping[str, str] | None = None,
        receipt: bool = False,
    ) -> Delivery:
        """Publish a request and wait for the first reply.

        A JetStream PubAck is never taken for the reply (a stream that captures the
        subject sends one), unless ``receipt``: then the request is a publish into a
        stream and the PubAck is what it waits for (``volta.bus.StreamPublisher``).

        Raises:
            RequestTimeout: no reply within ``timeout`` seconds (names the subject).
            NoResponders: nobody is subscribed to ``subject``.
            InvalidSubject, PayloadTooLarge, BusClosed: as for :meth:`publish`.
        """
        pending = await self.send_request(subject, data, headers=headers, receipt=receipt)
        return to_delivery(await pending.reply(timeout))

    async def send_request(
        self,
        subject: str,
        data: bytes | Message,
        *,
        headers: Mapping[str, str] | None = None,
        receipt: bool = False,
    ) -> PendingReply:
        """Publish a request and return at once; its reply is read later, so that many
        requests can be in flight from one task (a window of durable publishes).

        Raises:
            InvalidSubject, PayloadTooLarge, BusClosed: as for :meth:`publish`.
        """
        token, reply_subject, completion = self._requests.open(receipt=receipt)
        pending = PendingReply(self._requests, token, subject, completion)
        try:
            await self.publish(subject, data, reply=reply_subject, headers=headers)
        except BaseException:
            pending.discard()
            raise
        return pending

    def expect_reply(self, subject: str) -> tuple[str, PendingReply]:
        """A reply subject of this connection and the reply that will come to it, for a
        request sent some other way (a durable publish that names it in a header).

        Args:
            subject: what the request goes to (named in a timeout).
        """
        token, reply_subject, completion = self._requests.open()
        return reply_subject, PendingReply(self._requests, token, subject, completion)

    # lifecycle ------------------------------------------------------------------

    def mark_closed(self, reason: str) -> None:
        """Fail everything waiting and refuse new work (the connection is gone)."""
        if self._closed is not None:
            return
        self._closed = BusClosed(f"the bus is closed: {reason}")
        self._outbox.close(self._closed)
        self._requests.fail_all(self._closed)
        for completion in self._flushes:
            completion.set_error(self._closed)
        for buffer in self._buffers:
            buffer.close(self._closed)

    async def close(self) -> None:
        """Flush what is queued (bounded), then close the connection.

        The connection ends closed even if closing it fails: that is logged, not raised.
        """
        timeout = self._options.close_timeout
        if self._closed is None and self._client.is_connected:
            with trio.move_on_after(timeout):
                await self._outbox.wait_empty()
                await trio_asyncio.aio_as_trio(self._client.flush)(timeout)
        self.mark_closed("closed by its owner")
        with trio.move_on_after(timeout):
            try:
                await trio_asyncio.aio_as_trio(self._client.close)()
            except (OSError, nats_errors.Error) as error:
                # nats-py first writes what it still holds to the socket; after an
                # outage that fails (ConnectionResetError) and the close stops half way.
                log.warning("closing the NATS connection failed: %r", error)


def _complete_from_task(task: asyncio.Future[Any], completion: Completion[None]) -> None:
    if task.cancelled():
        completion.set_error(BusClosed("flush cancelled"))
    elif task.exception() is not None:
        completion.set_error(task.exception())  # type: ignore[arg-type]
    else:
        completion.set_result(None)


@asynccontextmanager
async def open_bus(
    options: BusOptions | str | Sequence[str] | None = None, **overrides: Any
) -> AsyncIterator[Bus]:
    """Connect to NATS for the duration of the block.

    Args:
        options: a :class:`BusOptions`, a URL, a comma-separated list of URLs or a
            sequence of URLs; None means the defaults (``nats://127.0.0.1:4222``).
            The bus does not read the environment: use ``BusOptions.from_environ``.
        overrides: fields of :class:`BusOptions` to change.

    Yields:
        The connected bus. On exit, queued publishes are flushed (bounded by
        ``close_timeout``) and the connection is closed.

    Raises:
        ConnectFailed: the first connection failed (and was not to be retried).
        ValueError: the options are invalid.
    """
    options = _coerce_options(options, overrides)
    events: Fanout[ConnectionEvent] = Fanout()
    monitor = ConnectionMonitor(options, events)
    async with asyncio_loop():
        client = await monitor.connect()
        try:
            outbox = Outbox(
                options.outbox_max_bytes, lambda text: monitor.emit(ConnectionEventKind.ERROR, text)
            )
            requests = RequestMux(client.new_inbox())
            await trio_asyncio.aio_as_trio(client.subscribe)(
                requests.subscription_subject, cb=requests.on_reply
            )
            bus = Bus(client, options, outbox, requests, events, monitor)
            monitor.when_closed = bus.mark_closed
            async with open_nursery() as nursery:
                pump_scope = trio.CancelScope(shield=True)
                nursery.start_soon(_run_pump, outbox, client, monitor.online, pump_scope)
                report_scope = trio.CancelScope()
                nursery.start_soon(_report_periodically, bus, report_scope)
                try:
                    yield bus
                finally:
                    report_scope.cancel()
                    try:
                        with trio.CancelScope(shield=True):
                            await bus.close()
                    finally:
                        # Whatever close() did: the shielded pump would keep this
                        # nursery, and so open_bus, open for good.
                        pump_scope.cancel()
        finally:
            if not client.is_closed:
                with trio.CancelScope(shield=True), trio.move_on_after(options.close_timeout):
                    await trio_asyncio.aio_as_trio(client.close)()
            events.close()


async def _run_pump(
    outbox: Outbox, client: Client, online: asyncio.Event, scope: trio.CancelScope
) -> None:
    # Shielded until the bus closes: when the block around open_bus is cancelled,
    # the code in it (supervised children saying goodbye in their shutdown_scope)
    # still needs the pump until the bus itself is closed.
    with scope:
        await trio_asyncio.aio_as_trio(outbox.pump)(client, online)


async def _report_periodically(bus: Bus, scope: trio.CancelScope) -> None:
    with scope:
        while True:
            await trio.sleep(bus.options.report_interval)
            bus.report_summaries()


def _coerce_options(
    options: BusOptions | str | Sequence[str] | None, overrides: Mapping[str, Any]
) -> BusOptions:
    if options is None:
        return BusOptions(**overrides)
    if isinstance(options, BusOptions):
        return attrs.evolve(options, **overrides) if overrides else options
    return BusOptions(servers=options, **overrides)
