"""Durable inboxes: direct messages kept in a JetStream stream until handled.

When the server has JetStream (and the configuration does not turn it off), a node
makes sure of one stream over ``agent.*.inbox`` (:class:`DurableSpec` says its
limits) and, for each agent it runs, of one durable pull consumer named after the
agent and filtered to its ``agent.<id>.inbox``; the instances of a replicated agent
share it. ``agent.<id>.message`` stays what it was, core NATS, for every client
that speaks only that (PROTOCOL.md 11): an agent reads both, and each message
arrives on one of them only. Then:

- a Volta sender that finds the addressee has a durable inbox
  (:meth:`DurableInboxes.has_inbox`) publishes on ``agent.<to>.inbox``, waits for
  the stream's PubAck and sends again under the same ``Nats-Msg-Id`` (the message
  id) until it has one, so the stream stores it once (``bus/_stream_publish.py``);
- the agent's inbox reads the consumer (``actors/_inbox.py``), acknowledges a
  message only once its unit of work ended and its answer was sent, tells the
  server it is still at work while a unit runs long, and leaves a message it could
  not finish (its node crashed or stopped) to be delivered again;
- a message delivered again that the inbox already handled, or is handling, is not
  handled again (:class:`Handled`). What an inbox handled is also written down, one
  record per batch of acks, on ``agent.<id>.handled`` in a second stream
  (:meth:`DurableInboxes.record_handled`) before the acks go out: a server restart
  can lose acks, and a node restarted at the same time no longer remembers; its
  inbox reads the records when a message comes again. An answer sent again carries
  the same ``Nats-Msg-Id`` and is stored once;
- a stored message has no NATS reply subject, so an asker names where it waits in
  the ``Volta-Reply`` header (:data:`REPLY_HEADER`); an answer with nowhere named
  goes to the sender's durable inbox if it has one, else to ``agent.<from>.message``.
"""

from __future__ import annotations

import enum
import logging
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Protocol, TypeAlias

import attrs
import trio

from volta.bus import (
    Bus,
    BusError,
    ConsumerSpec,
    JetStream,
    JetStreamError,
    JetStreamUnavailable,
    Retention,
    Storage,
    StreamDelivery,
    StreamPublisher,
    StreamSpec,
)
from volta.core import validators
from volta.protocol import (
    AGENT_HANDLED_ALL,
    AGENT_INBOX_ALL,
    Message,
    ProtocolError,
    agent_handled,
    agent_inbox,
    decode_json,
    encode_json,
)

from ._journal import JOURNALS_ALL, Journal, journal_subject

log = logging.getLogger("volta.actors.durable")

REPLY_HEADER = "Volta-Reply"
"""The header of a stored message that says where its sender waits for the answer."""
_NOT_FOUND = 404
KEEP_RECORDS = 256
"""Records of what it handled an agent keeps at most (each covers one batch of acks);
trimmed every time as many more were written."""
_KNOWN_FOR = 60.0  # seconds an agent found to have a durable inbox is taken to have it
_UNKNOWN_FOR = 2.0  # ... and one found to have none


class DurableMode(enum.Enum):
    """Whether direct messages go through the inbox stream."""

    AUTO = "auto"
    """When the server has JetStream; core NATS otherwise."""
    ON = "on"
    """Always: a node refuses to start on a server without JetStream."""
    OFF = "off"
    """Never: core NATS only (at most once)."""


@attrs.frozen(kw_only=True)
class DurableSpec:
    """The inbox stream and its consumers (``durable:`` in a node's configuration)."""

    mode: DurableMode = attrs.field(
        default=DurableMode.AUTO,
        converter=DurableMode,
        validator=attrs.validators.instance_of(DurableMode),
    )
    """``auto`` (when the server has JetStream), ``on`` or ``off``."""
    stream: str = attrs.field(default="VOLTA_INBOX", validator=validators.text)
    """The stream's name (every node of a mesh must use the same)."""
    storage: Storage = attrs.field(
        default=Storage.FILE, validator=attrs.validators.instance_of(Storage)
    )
    """``file`` (survives a server restart) or ``memory``."""
    replicas: int = attrs.field(default=1, validator=validators.integer(ge=1, le=5))
    """Copies on as many servers of a cluster (3 on a cluster of 3 or more)."""
    max_age: float = attrs.field(default=86_400.0, validator=validators.number(gt=0))
    """Seconds an unhandled message is kept at most; an agent's consumer that nobody
    reads for as long is deleted with what it held."""
    max_bytes: int = attrs.field(default=1 << 30, validator=validators.integer(ge=-1))
    """Bytes the stream holds at most (-1: no limit); the oldest go first."""
    duplicate_window: float = attrs.field(default=120.0, validator=validators.number(gt=0))
    """Seconds in which a message sent again under the same id is stored once."""
    ack_wait: float = attrs.field(default=30.0, validator=validators.number(ge=1))
    """Seconds without an ack or an in-progress signal after which a message is
    delivered again (the inbox signals every third of it while it works)."""
    remember: int = attrs.field(default=100_000, validator=validators.integer(ge=1))
    """Messages an inbox remembers having handled, to skip them when they are
    delivered again (after a server restart lost their acks)."""

    def stream_spec(self) -> StreamSpec:
        """The inbox stream."""
        return self._stream(self.stream, AGENT_INBOX_ALL, Retention.INTEREST)

    def records_spec(self) -> StreamSpec:
        """The stream of the inboxes' records of what they handled."""
        return self._stream(f"{self.stream}_HANDLED", AGENT_HANDLED_ALL, Retention.LIMITS)

    def journal_spec(self) -> StreamSpec:
        """The stream of the units' journals (``_journal.py``)."""
        return self._stream(f"{self.stream}_JOURNAL", JOURNALS_ALL, Retention.LIMITS)

    def _stream(self, name: str, subjects: str, retention: Retention) -> StreamSpec:
        """One of the three streams: each with the storage, limits and replicas set here."""
        return StreamSpec(
            name=name,
            subjects=(subjects,),
            storage=self.storage,
            retention=retention,
            max_age=self.max_age,
            max_bytes=self.max_bytes,
            replicas=self.replicas,
            duplicate_window=self.duplicate_window,
        )

    def consumer_spec(self, agent_id: str, held: int) -> ConsumerSpec:
        """The durable consumer of one agent's inbox, holding ``held`` messages at most."""
        return ConsumerSpec(
            durable=agent_id,
            filter_subject=agent_inbox(agent_id),
            ack_wait=self.ack_wait,
            max_ack_pending=held,
            inactive_threshold=self.max_age,
        )


class DurableInboxes:
    """The node's inbox stream: opens agents' consumers, tells who has one, publishes."""

    def __init__(self, spec: DurableSpec) -> None:
        self.spec = spec
        self._known: OrderedDict[str, tuple[bool, float]] = OrderedDict()
        self._journals = spec.journal_spec().name
        self._records = spec.records_spec().name
        self._records_written: dict[str, int] = {}
        self._publishers: weakref.WeakKeyDictionary[Bus, StreamPublisher] = (
            weakref.WeakKeyDictionary()
        )

    @classmethod
    async def open(cls, bus: Bus, spec: DurableSpec) -> DurableInboxes | None:
        """Make sure of the stream; None when direct messages stay on core NATS.

        Raises:
            JetStreamUnavailable: ``mode: on`` and the server has no JetStream.
            JetStreamError: the server refused a stream (another one captures
                ``agent.*.inbox``: a second ``durable.stream`` name on the same
                server; replicas above the cluster's size, ...).
        """
        if spec.mode is DurableMode.OFF:
            log.info("direct messages on core NATS (durable inboxes are off)")
            return None
        if not await JetStream(bus).available():
            if spec.mode is DurableMode.ON:
                raise JetStreamUnavailable(
                    "durable: mode is 'on' but the server has no JetStream (start it with -js)"
                )
            log.info("direct messages on core NATS: the server has no JetStream")
            return None
        inboxes = cls(spec)
        await inboxes.ensure_streams(bus)
        log.info(
            "durable inboxes on stream %s (%s, %d replica(s))",
            spec.stream,
            spec.storage.value,
            spec.replicas,
        )
        return inboxes

    @classmethod
    async def find(cls, bus: Bus, spec: DurableSpec) -> DurableInboxes | None:
        """The inbox stream if the nodes made it (a client's view: it makes nothing)."""
        if spec.mode is DurableMode.OFF:
            return None
        try:
            if not await JetStream(bus).available():
                return None
            await JetStream(bus).stream_state(spec.stream)
        except JetStreamError as error:
            if error.code != _NOT_FOUND:
                raise
            return None
        return cls(spec)

    async def open_inbox(self, bus: Bus, agent_id: str, held: int) -> None:
        """Make sure of an agent's consumer (every instance may call it), and of the
        streams first if they are gone (someone deleted them while the node ran).

        Raises:
            JetStreamError, BusError: the server refused, or did not answer.
        """
        jetstream = JetStream(bus)
        consumer = self.spec.consumer_spec(agent_id, held)
        try:
            await jetstream.ensure_consumer(self.spec.stream, consumer)
        except JetStreamError as error:
            if error.code != _NOT_FOUND:
                raise
            log.warning("stream %s is gone: making it again", self.spec.stream)
            await self.ensure_streams(bus)
            await jetstream.ensure_consumer(self.spec.stream, consumer)
        self._remember(agent_id, True, _KNOWN_FOR)

    async def ensure_streams(self, bus: Bus) -> None:
        """Make sure of the inbox, record and journal streams."""
        for stream in (
            self.spec.stream_spec(),
            self.spec.records_spec(),
            self.spec.journal_spec(),
        ):
            await JetStream(bus).ensure_stream(stream)

    async def has_inbox(self, bus: Bus, agent_id: str) -> bool:
        """Whether messages to the agent go through the stream (it has a consumer);
        what was found is kept for a while."""
        now = trio.current_time()
        known = self._known.get(agent_id)
        if known is not None and known[1] > now:
            return known[0]
        try:
            await JetStream(bus).consumer_state(self.spec.stream, agent_id)
        except JetStreamError as error:
            if error.code != _NOT_FOUND:
                raise
            self._remember(agent_id, False, _UNKNOWN_FOR)
            return False
        self._remember(agent_id, True, _KNOWN_FOR)
        return True

    def _remember(self, agent_id: str, has: bool, seconds: float) -> None:
        self._known[agent_id] = (has, trio.current_time() + seconds)
        self._known.move_to_end(agent_id)
        while len(self._known) > 10_000:
            self._known.popitem(last=False)

    async def record_handled(self, bus: Bus, agent_id: str, keys: Iterable[MessageKey]) -> None:
        """Write down that the agent handled these messages (before they are acked).

        Raises:
            BusError: the record was not stored (``PublishFailed`` after retries, ...).
        """
        pairs = sorted(keys)
        record = encode_json(pairs)
        first, last = pairs[0], pairs[-1]
        record_id = f"{agent_id}.{first[0]}.{first[1]}.{last[0]}.{len(pairs)}"
        subject = agent_handled(agent_id)
        await self.publisher(bus).publish(subject, record, record_id)
        written = self._records_written.get(agent_id, 0) + 1
        self._records_written[agent_id] = written
        if written % KEEP_RECORDS == 0:
            # Records matter only for messages whose acks a server restart may have lost:
            # the last few seconds'. The newest KEEP_RECORDS (many times that) stay; the
            # rest would only slow the read after a restart (one request per record).
            try:
                await JetStream(bus).purge(self._records, subject, keep=KEEP_RECORDS)
            except BusError as error:
                log.debug("records of %s not trimmed: %s", agent_id, error)

    async def handled_before(self, bus: Bus, agent_id: str) -> list[MessageKey]:
        """What the agent's inboxes wrote down as handled (records not yet expired);
        records that do not decode are skipped.

        Raises:
            BusError: the records could not be read.
        """
        keys: list[MessageKey] = []
        for payload in await JetStream(bus).stored(self._records, agent_handled(agent_id)):
            try:
                pairs = decode_json(payload)
            except ProtocolError:
                continue
            if isinstance(pairs, list):
                keys.extend(
                    (pair[0], pair[1])
                    for pair in pairs
                    if isinstance(pair, list)
                    and len(pair) == 2
                    and all(type(number) is int for number in pair)
                )
        return keys

    async def journal(
        self, bus: Bus, agent_id: str, message: Message, stored: MessageKey, *, read: bool
    ) -> Journal:
        """The journal of one message's unit (``_journal.py``); ``read``: the message was
        delivered before, so its journal may hold work already done.

        Raises:
            BusError: it could not be read.
        """
        subject = journal_subject(agent_id, message.sender, message.id, stored)
        return await Journal.open(bus, self._journals, subject, self.publisher(bus), read=read)

    def publisher(self, bus: Bus) -> StreamPublisher:
        """Publishes into the stream on ``bus`` (PubAck awaited, sent again under its id);
        one per connection."""
        publisher = self._publishers.get(bus)
        if publisher is None:
            publisher = StreamPublisher(bus, deadline=self.spec.duplicate_window / 2)
            self._publishers[bus] = publisher
        return publisher


def reply_header(headers: Mapping[str, str] | None) -> str | None:
    """Where the sender of a stored message waits for the answer, if it said."""
    return headers.get(REPLY_HEADER) if headers else None


MessageKey: TypeAlias = tuple[int, int]
"""A stored message: its stream sequence and when it was stored (ns), so that a stream
deleted and made again (sequences from 1) is not taken for the old one."""


def message_key(held: StreamDelivery) -> MessageKey:
    """The key of a delivered message."""
    return (held.metadata.stream_sequence, held.metadata.timestamp_ns)


class Handled:
    """The messages an agent's inbox handled lately, and those it is handling."""

    def __init__(self, remember: int) -> None:
        self._remember = remember
        self._done: OrderedDict[MessageKey, None] = OrderedDict()
        self._handling: set[MessageKey] = set()
        self.loaded = False
        """Whether the records of earlier runs were read (once, at the first message
        delivered again that this run does not know)."""
        self.duplicates = 0
        """Deliveries skipped because the message was handled (or is being handled)."""

    def begin(self, key: MessageKey) -> bool:
        """Whether to handle the message now (False: a duplicate)."""
        if key in self._done or key in self._handling:
            self.duplicates += 1
            return False
        self._handling.add(key)
        return True

    def restart(self) -> None:
        """A new run of the inbox: nothing is being handled (what a run that ended was
        handling is delivered again, and handled then)."""
        self._handling.clear()

    def was_done(self, key: MessageKey) -> bool:
        """Whether the message was handled already (its ack may be sent again)."""
        return key in self._done

    def end(self, key: MessageKey, *, done: bool) -> None:
        """The unit ended; ``done``: it was answered (else it will be delivered again)."""
        self._handling.discard(key)
        if done:
            self.remember(key)

    def remember(self, key: MessageKey) -> None:
        """Count the message as handled."""
        self._done[key] = None
        while len(self._done) > self._remember:
            self._done.popitem(last=False)


class CommitCounts(Protocol):
    records: int
    unrecorded: int


class GroupCommit:
    """Acks messages after writing down that they were handled: whoever comes first
    writes one record for every message waiting, then acks them all (a group commit:
    one record per batch, however many units end together)."""

    def __init__(
        self,
        record: Callable[[list[MessageKey]], Awaitable[None]],
        *,
        counts: CommitCounts,
        max_batch: int = 1024,
    ) -> None:
        self._record = record
        self._counts = counts
        self._max_batch = max_batch
        self._waiting: list[tuple[StreamDelivery, trio.Event]] = []
        self._lock = trio.Lock()

    async def commit(self, held: StreamDelivery) -> None:
        """Record and ack ``held`` (with whatever else waits).

        Raises:
            BusError: the ack could not be sent.
        """
        done = trio.Event()
        self._waiting.append((held, done))
        async with self._lock:
            if done.is_set():
                return  # an earlier holder of the lock committed it
            batch, self._waiting = (
                self._waiting[: self._max_batch],
                self._waiting[self._max_batch :],
            )
            try:
                await self._record([message_key(entry) for entry, _ in batch])
            except BusError as error:
                # Not acked: delivered again later, then skipped (this run remembers).
                self._counts.unrecorded += 1
                log.warning("could not record %d handled message(s): %s", len(batch), error)
                return
            finally:
                for _, event in batch:
                    event.set()
            self._counts.records += 1
            for entry, _ in batch:
                await entry.ack()
