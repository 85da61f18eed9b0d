"""Request-reply over one wildcard inbox subscription per connection.

Each request gets a token; the reply subject is ``<inbox prefix>.<token>``. The
asyncio-side callback of the ``<prefix>.*`` subscription finds the waiting trio
task by its token and wakes it directly, so a request costs no loop hop.

A JetStream stream over a request's subject (any client may create one on a server
with JetStream) makes the server answer the request itself, with a PubAck, before
the real responder does. A PubAck is never the answer: it is counted and skipped,
and the request keeps waiting for its reply.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

import trio

from ._errors import NoResponders, RequestTimeout
from ._outbox import Completion

if TYPE_CHECKING:
    from nats.aio.msg import Msg

NO_RESPONDERS_STATUS = "503"

# What nats-server writes first in a JetStream PubAck ({"stream":"S","seq":1}) and in
# its error form ({"error":{"code":503,"err_code":10077,"description":...}}). No Volta
# reply starts so: messages, capability replies and listings have other first keys,
# and a Volta error reply ({"error":{"code":"bad_request",...}}) has a word for a code.
_PUB_ACK = b'{"stream":'
_PUB_ACK_ERROR = b'{"error":{"code":'  # then a number: a Volta error's code is a word


class RequestMux:
    """Matches replies to the requests waiting for them."""

    def __init__(self, prefix: str) -> None:
        self._prefix = prefix
        self._offset = len(prefix) + 1
        self._tokens = itertools.count(1)
        self._waiting: dict[str, Completion[Msg]] = {}
        self._receipts: set[str] = set()  # tokens of durable publishes: a PubAck is their answer
        self.pub_acks = 0
        """JetStream PubAcks that came back on a reply subject and were skipped."""

    @property
    def prefix(self) -> str:
        """The unique inbox prefix of this connection's replies."""
        return self._prefix

    @property
    def subscription_subject(self) -> str:
        """The wildcard subject that receives every reply."""
        return f"{self._prefix}.*"

    @property
    def waiting(self) -> int:
        """Requests still waiting for a reply."""
        return len(self._waiting)

    def open(self, *, receipt: bool = False) -> tuple[str, str, Completion[Msg]]:
        """Register a request: its token, reply subject and completion.

        Args:
            receipt: the request is a publish into a stream: its answer is the PubAck
                (every other request skips PubAcks).
        """
        token = format(next(self._tokens), "x")
        completion: Completion[Msg] = Completion()
        self._waiting[token] = completion
        if receipt:
            self._receipts.add(token)
        return token, f"{self._prefix}.{token}", completion

    def discard(self, token: str) -> None:
        """Forget a request (answered, timed out or cancelled)."""
        self._waiting.pop(token, None)
        self._receipts.discard(token)

    async def on_reply(self, msg: Msg) -> None:
        """nats-py callback of the inbox subscription (asyncio side)."""
        token = msg.subject[self._offset :]
        if is_pub_ack(msg) and token not in self._receipts:
            self.pub_acks += 1  # a stream's receipt, not the answer: keep waiting
            return
        completion = self._waiting.pop(token, None)
        if completion is not None:
            completion.set_result(msg)

    def fail_all(self, error: BaseException) -> None:
        """Wake every waiting request with ``error`` (the bus is closing)."""
        waiting, self._waiting = self._waiting, {}
        for completion in waiting.values():
            completion.set_error(error)


def is_pub_ack(msg: Msg) -> bool:
    """True if the reply is a JetStream PubAck (or its error), not a responder's answer."""
    if msg.headers:
        return False
    data = msg.data
    if data.startswith(_PUB_ACK):
        return True
    return (
        data.startswith(_PUB_ACK_ERROR)
        and data[len(_PUB_ACK_ERROR) : len(_PUB_ACK_ERROR) + 1].isdigit()
    )


def is_no_responders(msg: Msg) -> bool:
    """True if the server answered that nobody listens on the subject."""
    headers = msg.headers
    return headers is not None and headers.get("Status") == NO_RESPONDERS_STATUS and not msg.data


async def wait_reply(completion: Completion[Msg], timeout: float) -> Msg | None:
    """The reply, or None when ``timeout`` seconds pass first."""
    with trio.move_on_after(timeout):
        return await completion.wait()
    return None


class PendingReply:
    """A request that was sent and whose reply has not been read yet
    (``Bus.send_request``): read it with :meth:`reply`, or give it up with :meth:`discard`."""

    __slots__ = ("_completion", "_mux", "_subject", "_token")

    def __init__(self, mux: RequestMux, token: str, subject: str, completion: Completion[Msg]):
        self._mux = mux
        self._token = token
        self._subject = subject
        self._completion = completion

    @property
    def subject(self) -> str:
        """The subject the request went to."""
        return self._subject

    @property
    def answered(self) -> bool:
        """True once a reply (or the bus closing) arrived: :meth:`reply` will not wait."""
        return self._completion.done

    async def reply(self, timeout: float) -> Msg:
        """The reply; the request is forgotten afterwards, whatever happens.

        Raises:
            RequestTimeout: none within ``timeout`` seconds (since this call).
            NoResponders: the server said nobody listens on the subject.
        """
        try:
            msg = await wait_reply(self._completion, timeout)
        finally:
            self.discard()
        if msg is None:
            raise RequestTimeout(self._subject, timeout)
        if is_no_responders(msg):
            raise NoResponders(self._subject)
        return msg

    def discard(self) -> None:
        """Stop waiting (a late reply is dropped)."""
        self._mux.discard(self._token)
