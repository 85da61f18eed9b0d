"""A local HTTP server that speaks the Messages API, scripted per test.

The real ``anthropic`` SDK talks to it through ``base_url`` (loopback only). Each
request to ``POST /v1/messages`` is recorded and answered by the script: a
function of the recorded request that returns a :class:`Reply`. Brains say who
they are in the ``x-volta-agent`` header, so one server can play every agent's
model. The handler runs in a server thread: a script may block (``hang``) or
sleep (``delay``) without stopping the trio test.

Build replies with :func:`text`, :func:`tool_use` and :func:`error`.
"""

from __future__ import annotations

import itertools
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import anthropic  # noqa: F401  (loaded here: a test's first model call should not pay the import)
import attrs

_ids = itertools.count(1)


@attrs.define
class Recorded:
    """One request as the server saw it."""

    agent: str
    """The ``x-volta-agent`` header ("" when absent)."""
    body: dict[str, Any]
    """The JSON body."""
    headers: dict[str, str]
    """The request headers (lower-case names)."""
    started: float
    """time.monotonic() when it arrived."""
    ended: float = 0.0
    """time.monotonic() when it was answered."""

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.body.get("messages", []))

    @property
    def last_user_text(self) -> str:
        """The text of the last user turn (tool results joined), for scripts to read."""
        content = self.messages[-1]["content"] if self.messages else ""
        if isinstance(content, str):
            return content
        parts = []
        for block in content:
            if block.get("type") == "text":
                parts.append(block["text"])
            elif block.get("type") == "tool_result":
                inner = block.get("content")
                if isinstance(inner, list):
                    parts += [b.get("text", "") for b in inner]
                else:
                    parts.append(str(inner))
        return "\n".join(parts)

    @property
    def tool_results(self) -> list[dict[str, Any]]:
        content = self.messages[-1]["content"] if self.messages else []
        if isinstance(content, str):
            return []
        return [block for block in content if block.get("type") == "tool_result"]


@attrs.frozen
class Reply:
    """What the server answers."""

    status: int = 200
    body: dict[str, Any] = attrs.Factory(dict)
    headers: tuple[tuple[str, str], ...] = ()
    delay: float = 0.0
    """Seconds to wait before answering."""
    hang: threading.Event | None = None
    """Wait until this event is set (or 30 s) before answering."""


def _message(content: list[dict[str, Any]], stop: str, usage: dict[str, int]) -> dict[str, Any]:
    return {
        "id": f"msg_{next(_ids):06d}",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-5-5",
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": {"input_tokens": 10, "output_tokens": 5, **usage},
    }


def text(words: str, *, delay: float = 0.0, **usage: int) -> Reply:
    """A final answer."""
    return Reply(body=_message([{"type": "text", "text": words}], "end_turn", usage), delay=delay)


def tool_use(*calls: tuple[str, dict[str, Any]], delay: float = 0.0, **usage: int) -> Reply:
    """A turn that calls tools: ``("ask_agent", {"to": "b", "question": "..."})``, ..."""
    content = [
        {"type": "tool_use", "id": f"toolu_{next(_ids):06d}", "name": name, "input": arguments}
        for name, arguments in calls
    ]
    return Reply(body=_message(content, "tool_use", usage), delay=delay)


def error(status: int, kind: str, message: str = "", **headers: str) -> Reply:
    """An API error (``error(529, "overloaded_error")``, ``error(429, ..., retry_after="0")``)."""
    body = {"type": "error", "error": {"type": kind, "message": message or kind}}
    pairs = tuple((name.replace("_", "-"), value) for name, value in headers.items())
    return Reply(status=status, body=body, headers=pairs)


Script = Callable[[Recorded], Reply]


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up (a cancelled call) is not an error worth a traceback."""


class FakeMessagesAPI:
    """The server; use :func:`fake_messages_api` to run it."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.requests: list[Recorded] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def of(self, agent: str) -> list[Recorded]:
        """The requests one agent's brain made."""
        with self._lock:
            return [r for r in self.requests if r.agent == agent]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                # Headers and body go out in two writes: without this, Nagle and
                # delayed ACKs add 40 ms to every call.
                self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                """Quiet."""

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                headers = {name.lower(): value for name, value in self.headers.items()}
                recorded = Recorded(
                    headers.get("x-volta-agent", ""), body, headers, time.monotonic()
                )
                with api._lock:
                    api.requests.append(recorded)
                if self.path.rstrip("/") != "/v1/messages":
                    reply = error(404, "not_found_error", f"no {self.path!s}")
                else:
                    try:
                        reply = api.script(recorded)
                    except Exception as problem:  # a broken script answers 500, loudly
                        reply = error(500, "api_error", f"script failed: {problem!r}")
                if reply.hang is not None:
                    reply.hang.wait(30)
                if reply.delay:
                    time.sleep(reply.delay)
                data = json.dumps(reply.body).encode()
                self.send_response(reply.status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.send_header("request-id", f"req_{next(_ids):06d}")
                for name, value in reply.headers:
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)
                recorded.ended = time.monotonic()

        return Handler

    @contextmanager
    def running(self) -> Iterator[FakeMessagesAPI]:
        self._server = _QuietServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()
            thread.join(5)


@contextmanager
def fake_messages_api(script: Script) -> Iterator[FakeMessagesAPI]:
    """Run a fake Messages API on a free loopback port for the block."""
    with FakeMessagesAPI(script).running() as api:
        yield api
