"""JetStream management for trio code: streams and durable consumers, over the bus.

Everything here is a request on ``$JS.API.*`` through :meth:`Bus.request`: no
nats-py JetStream context, no extra asyncio hop. A server without JetStream
answers no request there (:class:`JetStreamUnavailable`); an API error comes
back as :class:`JetStreamError` with the server's code and words.

:class:`StreamSpec` and :class:`ConsumerSpec` are what a stream and a durable
consumer should be; :meth:`JetStream.ensure_stream` and
:meth:`JetStream.ensure_consumer` make it so (create, or update what may be
updated), so every node can call them at start and the first one wins.
"""

from __future__ import annotations

import base64
import enum
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import attrs

from volta.core import validators
from volta.protocol import ProtocolError, decode_json, encode_json, validate_subject

from ._errors import BusError, NoResponders, RequestTimeout

if TYPE_CHECKING:
    from ._bus import Bus

_NAME = re.compile(r"[A-Za-z0-9_-]{1,128}")
_NS = 1_000_000_000
_ALREADY_IN_USE = 10058
_NOT_FOUND = 404
_NO_MESSAGE = 10037  # no message found  # stream name already in use with a different configuration
_API_TIMEOUT = 5.0


class JetStreamUnavailable(BusError):
    """The server has no JetStream (started without ``-js``, or not for this account)."""


class JetStreamError(BusError):
    """The JetStream API refused a request.

    Attributes:
        code: the HTTP-like status (400, 404, 503, ...).
        err_code: JetStream's own error number (10058, ...).
        description: the server's words.
    """

    def __init__(self, operation: str, code: int, err_code: int, description: str) -> None:
        super().__init__(f"JetStream refused to {operation}: {description} ({code}/{err_code})")
        self.code = code
        self.err_code = err_code
        self.description = description


def _check_name(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise ValueError(
            f"{attribute.name}: expected 1-128 letters, digits, '-' or '_', got {value!r}"
        )


def _check_subjects(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, tuple) or not value:
        raise ValueError(f"{attribute.name}: expected at least one subject")
    for subject in value:
        validate_subject(subject, wildcards=True)


def _subjects(value: Iterable[str]) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


class Storage(enum.Enum):
    """Where a stream keeps its messages."""

    FILE = "file"
    """On disk: survives a server restart (with ``sync``, a power cut)."""
    MEMORY = "memory"
    """In memory: lost with the server."""


class Retention(enum.Enum):
    """When a stream lets a message go (besides its limits)."""

    LIMITS = "limits"
    """Only by the limits (age, bytes, count)."""
    INTEREST = "interest"
    """Once every consumer has acknowledged it."""
    WORK_QUEUE = "workqueue"
    """Once one consumer has acknowledged it."""


@attrs.frozen(kw_only=True)
class StreamSpec:
    """What a stream should be (JetStream's stream configuration, the parts Volta sets)."""

    name: str = attrs.field(validator=_check_name)
    """The stream's name."""
    subjects: tuple[str, ...] = attrs.field(converter=_subjects, validator=_check_subjects)
    """The subjects it captures (wildcards allowed)."""
    storage: Storage = attrs.field(
        default=Storage.FILE, validator=attrs.validators.instance_of(Storage)
    )
    """File (the safe default) or memory."""
    retention: Retention = attrs.field(
        default=Retention.LIMITS, validator=attrs.validators.instance_of(Retention)
    )
    """When a message may go besides the limits."""
    max_age: float = attrs.field(default=0.0, validator=validators.number(ge=0))
    """Seconds a message is kept at most (0: no limit)."""
    max_bytes: int = attrs.field(default=-1, validator=validators.integer(ge=-1))
    """Bytes the stream holds at most (-1: no limit); the oldest go first."""
    max_messages: int = attrs.field(default=-1, validator=validators.integer(ge=-1))
    """Messages the stream holds at most (-1: no limit)."""
    replicas: int = attrs.field(default=1, validator=validators.integer(ge=1, le=5))
    """Copies kept on as many servers of a cluster (1 on a single server)."""
    duplicate_window: float = attrs.field(default=120.0, validator=validators.number(gt=0))
    """Seconds during which a second publish with the same ``Nats-Msg-Id`` is dropped."""

    def config(self) -> dict[str, Any]:
        """The stream configuration JetStream takes."""
        return {
            "name": self.name,
            "subjects": list(self.subjects),
            "storage": self.storage.value,
            "retention": self.retention.value,
            "max_age": int(self.max_age * _NS),
            "max_bytes": self.max_bytes,
            "max_msgs": self.max_messages,
            "num_replicas": self.replicas,
            "duplicate_window": int(self.duplicate_window * _NS),
            "discard": "old",
        }


class DeliverPolicy(enum.Enum):
    """Where a new durable consumer starts in its stream."""

    ALL = "all"
    """At the first message the stream still holds."""
    NEW = "new"
    """At the next message stored after it was created."""


@attrs.frozen(kw_only=True)
class ConsumerSpec:
    """What a durable pull consumer should be (explicit acks)."""

    durable: str = attrs.field(validator=_check_name)
    """Its name (it survives restarts; the instances of one reader share it)."""
    filter_subject: str | None = attrs.field(default=None)
    """Only messages on this subject (wildcards allowed); all of the stream's if None."""
    ack_wait: float = attrs.field(default=30.0, validator=validators.number(gt=0))
    """Seconds a delivered message waits for its ack (or an in-progress signal) before
    it is delivered again."""
    max_deliver: int = attrs.field(default=-1, validator=validators.integer(ge=-1))
    """Deliveries of one message at most (-1: no limit)."""
    max_ack_pending: int = attrs.field(default=1000, validator=validators.integer(ge=1))
    """Messages delivered and not yet acknowledged at most; then delivery pauses."""
    deliver_policy: DeliverPolicy = attrs.field(
        default=DeliverPolicy.ALL, validator=attrs.validators.instance_of(DeliverPolicy)
    )
    """Where it starts when it is first created."""
    inactive_threshold: float = attrs.field(default=0.0, validator=validators.number(ge=0))
    """Seconds without a reader after which the server deletes it (0: never); what it
    held for its readers is then let go."""

    def __attrs_post_init__(self) -> None:
        if self.filter_subject is not None:
            validate_subject(self.filter_subject, wildcards=True)

    def config(self) -> dict[str, Any]:
        """The consumer configuration JetStream takes."""
        config: dict[str, Any] = {
            "durable_name": self.durable,
            "ack_policy": "explicit",
            "ack_wait": int(self.ack_wait * _NS),
            "max_deliver": self.max_deliver,
            "max_ack_pending": self.max_ack_pending,
            "deliver_policy": self.deliver_policy.value,
        }
        if self.filter_subject is not None:
            config["filter_subject"] = self.filter_subject
        if self.inactive_threshold:
            config["inactive_threshold"] = int(self.inactive_threshold * _NS)
        return config


@attrs.frozen
class StreamState:
    """What a stream holds now."""

    messages: int
    bytes: int
    first_sequence: int
    last_sequence: int
    consumers: int


@attrs.frozen
class ConsumerState:
    """Where a durable consumer is now."""

    ack_pending: int
    """Delivered, not acknowledged yet."""
    redelivered: int
    """Of those, delivered more than once."""
    waiting: int
    """Pull requests waiting at the server."""
    pending: int
    """Messages in the stream not delivered yet."""
    delivered_stream_sequence: int
    """The stream sequence of the last message delivered."""
    ack_floor_stream_sequence: int
    """Every message up to this stream sequence is acknowledged."""


class JetStream:
    """JetStream management on one bus: ``JetStream(bus)``."""

    def __init__(self, bus: Bus, *, timeout: float = _API_TIMEOUT) -> None:
        self._bus = bus
        self._timeout = timeout

    async def _api(self, operation: str, subject: str, payload: dict[str, Any] | None) -> Any:
        body = encode_json(payload) if payload is not None else b""
        try:
            reply = await self._bus.request(subject, body, timeout=self._timeout)
        except NoResponders:
            raise JetStreamUnavailable(
                f"cannot {operation}: the server has no JetStream (start it with -js)"
            ) from None
        try:
            answer = decode_json(reply.data)
        except ProtocolError as malformed:
            raise JetStreamError(operation, 0, 0, f"malformed answer: {malformed}") from None
        if not isinstance(answer, dict):
            raise JetStreamError(operation, 0, 0, "malformed answer: not a JSON object")
        refusal = answer.get("error")
        if isinstance(refusal, dict):
            raise JetStreamError(
                operation,
                _integer(refusal.get("code")),
                _integer(refusal.get("err_code")),
                str(refusal.get("description", "no description")),
            )
        return answer

    async def available(self, *, timeout: float = 1.0) -> bool:
        """Whether the server offers JetStream to this connection.

        A server with JetStream answers at once; one without says there are no
        responders, unless some client listens on ``>``: then no answer within
        ``timeout`` seconds also means no.
        """
        try:
            await JetStream(self._bus, timeout=timeout)._api(
                "read the account", "$JS.API.INFO", None
            )
        except (JetStreamUnavailable, RequestTimeout):
            return False
        except JetStreamError as error:
            if error.code == 503:  # "JetStream not enabled for account"
                return False
            raise
        return True

    async def ensure_stream(self, spec: StreamSpec) -> StreamState:
        """Create the stream, or bring an existing one to ``spec`` (what may change).

        Raises:
            JetStreamUnavailable: no JetStream.
            JetStreamError: the server refused (a change it cannot make, such as the
                storage of an existing stream; overlapping subjects with another stream).
        """
        operation = f"create stream {spec.name}"
        try:
            answer = await self._api(operation, f"$JS.API.STREAM.CREATE.{spec.name}", spec.config())
        except JetStreamError as error:
            if error.err_code != _ALREADY_IN_USE:
                raise
            answer = await self._api(
                f"update stream {spec.name}", f"$JS.API.STREAM.UPDATE.{spec.name}", spec.config()
            )
        return _stream_state(answer)

    async def stream_state(self, name: str) -> StreamState:
        """What the stream holds now.

        Raises:
            JetStreamError: no such stream (code 404).
        """
        answer = await self._api(f"read stream {name}", f"$JS.API.STREAM.INFO.{name}", None)
        return _stream_state(answer)

    async def stored(self, stream: str, subject: str, *, limit: int = 100_000) -> list[bytes]:
        """The payloads the stream holds on ``subject`` (oldest first, ``limit`` at most),
        read one by one (``$JS.API.STREAM.MSG.GET``): for a small log, not a stream.

        Raises:
            JetStreamError: no such stream.
        """
        payloads: list[bytes] = []
        sequence = 1
        while len(payloads) < limit:
            try:
                answer = await self._api(
                    f"read {subject} in {stream}",
                    f"$JS.API.STREAM.MSG.GET.{stream}",
                    {"seq": sequence, "next_by_subj": subject},
                )
            except JetStreamError as error:
                if error.code == _NOT_FOUND and error.err_code == _NO_MESSAGE:
                    break
                raise
            stored = _section(answer, "message")
            data = stored.get("data", "")
            try:
                payloads.append(base64.b64decode(data if isinstance(data, str) else ""))
            except ValueError:
                raise JetStreamError(
                    f"read {subject} in {stream}", 0, 0, "malformed answer: data is not base64"
                ) from None
            sequence = _integer(stored.get("seq")) + 1
        return payloads

    async def purge(self, stream: str, subject: str, *, keep: int = 0) -> None:
        """Remove the messages the stream holds on ``subject``, but the newest ``keep``."""
        request: dict[str, Any] = {"filter": subject}
        if keep:
            request["keep"] = keep
        await self._api(f"purge {subject} in {stream}", f"$JS.API.STREAM.PURGE.{stream}", request)

    async def delete_stream(self, name: str) -> None:
        """Delete a stream and everything in it."""
        await self._api(f"delete stream {name}", f"$JS.API.STREAM.DELETE.{name}", None)

    async def ensure_consumer(self, stream: str, spec: ConsumerSpec) -> ConsumerState:
        """Create the durable consumer, or update it to ``spec``.

        Raises:
            JetStreamError: the server refused (no such stream; a change it cannot make).
        """
        subject = f"$JS.API.CONSUMER.CREATE.{stream}.{spec.durable}"
        if spec.filter_subject is not None:
            subject += f".{spec.filter_subject}"
        answer = await self._api(
            f"create consumer {spec.durable} on {stream}",
            subject,
            {"stream_name": stream, "config": spec.config()},
        )
        return _consumer_state(answer)

    async def consumer_state(self, stream: str, durable: str) -> ConsumerState:
        """Where the consumer is now."""
        answer = await self._api(
            f"read consumer {durable} on {stream}",
            f"$JS.API.CONSUMER.INFO.{stream}.{durable}",
            None,
        )
        return _consumer_state(answer)


def _integer(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _section(answer: dict[str, Any], key: str) -> dict[str, Any]:
    value = answer.get(key)
    return value if isinstance(value, dict) else {}


def _stream_state(answer: dict[str, Any]) -> StreamState:
    state = _section(answer, "state")
    return StreamState(
        messages=_integer(state.get("messages")),
        bytes=_integer(state.get("bytes")),
        first_sequence=_integer(state.get("first_seq")),
        last_sequence=_integer(state.get("last_seq")),
        consumers=_integer(state.get("consumer_count")),
    )


def _consumer_state(answer: dict[str, Any]) -> ConsumerState:
    delivered = _section(answer, "delivered")
    floor = _section(answer, "ack_floor")
    return ConsumerState(
        ack_pending=_integer(answer.get("num_ack_pending")),
        redelivered=_integer(answer.get("num_redelivered")),
        waiting=_integer(answer.get("num_waiting")),
        pending=_integer(answer.get("num_pending")),
        delivered_stream_sequence=_integer(delivered.get("stream_seq")),
        ack_floor_stream_sequence=_integer(floor.get("stream_seq")),
    )
