#!/usr/bin/env python3
"""An agent that speaks the Volta protocol with nothing but nats-py and the standard
library, written from docs/PROTOCOL.md alone (it imports nothing from Volta).

Usage::

    python external_agent.py NATS_URL AGENT_ID [--target alpha] [--serve SECONDS] ...

It joins as an agent: it subscribes to ``agent.<id>.message`` and serves one
capability (``reverse`` by default) on ``capability.invoke.<name>``, announces itself
and sends heartbeats. Then, as a client, it asks the target agent a query (the target
is expected to echo it), checks that ``mcp.list_agents`` lists it online, and runs a
capability through ``capability.request``. It also asks once as a NATS request
(the answer must come back on the reply subject, section 5.3). With
``--malformed`` it also sends the target a message without ``from`` and a payload
that is not JSON (both skipped), and one with a usable ``from`` and ``id`` but no
``message`` (refused with a ``bad_request`` error response), then checks that the
target still answers. With ``--serve SECONDS`` it keeps serving until its stdin
is closed or the time is up. It always stops in order (a last ``offline`` status).

Every step prints one JSON line on stdout, ``{"step": ..., "ok": ..., ...}``; the
last one is ``{"step": "done", "ok": ..., "failed": [...]}``. Exit status: 0 when every
step passed, 1 otherwise, 2 for bad arguments. Every wait is bounded, and the whole
run is bounded by ``--deadline``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

# --- the protocol (docs/PROTOCOL.md) -------------------------------------------------

ANNOUNCE = "agent.announce"
LIST_AGENTS = "mcp.list_agents"
CAPABILITY_REQUEST = "capability.request"
NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")  # agent ids and capability names
MESSAGE_TYPES = ("text", "command", "query", "response")


def message_subject(agent_id: str) -> str:
    return f"agent.{agent_id}.message"


def status_subject(agent_id: str) -> str:
    return f"agent.{agent_id}.status"


def invoke_subject(capability: str) -> str:
    return f"capability.invoke.{capability}"


def timestamp() -> str:
    """ISO 8601 in UTC with a 'Z' (section 2)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def encode(document: dict[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def new_message(
    sender: str, to: str, text: str, type: str, metadata: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A Message (section 4.1)."""
    return {
        "id": uuid.uuid4().hex,
        "from": sender,
        "to": to,
        "message": text,
        "type": type,
        "metadata": metadata or {},
        "timestamp": timestamp(),
    }


def decode_message(data: bytes) -> dict[str, Any]:
    """A Message, checked as section 4.1 says.

    Raises:
        ValueError: the payload is not a valid message (the text names the field).
    """
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"$: not valid UTF-8 JSON ({error})") from None
    if not isinstance(document, dict):
        raise ValueError("$: not a JSON object")
    for field in ("id", "from", "to", "message", "type", "timestamp"):
        if not isinstance(document.get(field), str):
            raise ValueError(f"{field}: missing or not a string")
    if not 1 <= len(document["id"]) <= 128:
        raise ValueError("id: must be 1-128 characters")
    for field in ("from", "to"):
        if not NAME.fullmatch(document[field]):
            raise ValueError(f"{field}: not an agent id")
    if document["type"] not in MESSAGE_TYPES:
        raise ValueError(f"type: {document['type']!r} is not one of {MESSAGE_TYPES}")
    if document.get("metadata") is None:
        document["metadata"] = {}
    if not isinstance(document["metadata"], dict):
        raise ValueError("metadata: not a JSON object")
    try:
        parsed = datetime.fromisoformat(document["timestamp"])
    except ValueError:
        raise ValueError("timestamp: not ISO 8601") from None
    if parsed.utcoffset() is None:
        raise ValueError("timestamp: no UTC offset")
    return document


def capability_failure(code: str, message: str, agent: str) -> dict[str, Any]:
    """A failed CapabilityReply (section 4.5)."""
    return {"ok": False, "error": {"code": code, "message": message}, "agent": agent}


def reverse(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"reverse expects a string, got {type(value).__name__}")
    return value[::-1]


# --- reporting -----------------------------------------------------------------------


class Report:
    """One JSON line per step on stdout; remembers the steps that failed."""

    def __init__(self) -> None:
        self.failed: list[str] = []

    def step(self, step: str, ok: bool, **details: Any) -> bool:
        if not ok:
            self.failed.append(step)
        print(json.dumps({"step": step, "ok": ok, **details}, default=str), flush=True)
        return ok


def log(text: str) -> None:
    print(f"external_agent: {text}", file=sys.stderr, flush=True)


# --- the agent -----------------------------------------------------------------------


class ExternalAgent:
    """The agent side: inbox, capability, announce, heartbeat (sections 5.1-5.7)."""

    def __init__(
        self,
        nc: Client,
        agent_id: str,
        capability: str,
        heartbeat_interval: float,
        report: Report,
    ) -> None:
        self.nc = nc
        self.id = agent_id
        self.capability = capability
        self.heartbeat_interval = heartbeat_interval
        self.report = report
        self.started = time.monotonic()
        self.in_flight = 0
        self.waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.skipped = 0
        self._heartbeat: asyncio.Task[None] | None = None

    async def publish(self, subject: str, document: dict[str, Any]) -> None:
        data = encode(document)
        if len(data) > self.nc.max_payload:  # section 9: the server would drop us
            raise ValueError(f"{len(data)} bytes exceed max_payload {self.nc.max_payload}")
        await self.nc.publish(subject, data)

    def status(self, presence: str = "online") -> dict[str, Any]:
        """An AgentStatus (section 4.2)."""
        return {
            "id": self.id,
            "name": f"external {self.id}",
            "capabilities": [self.capability],
            "status": presence,
            "uptime": round(time.monotonic() - self.started, 3),
            "in_flight": self.in_flight,
            "restarts": 0,
            "heartbeat_interval": self.heartbeat_interval,
            "timestamp": timestamp(),
        }

    async def join(self, timeout: float) -> None:
        """Subscribe, make sure the server has it, then beat and announce (5.1)."""
        await self.nc.subscribe(message_subject(self.id), cb=self.on_message)
        endpoint = invoke_subject(self.capability)
        await self.nc.subscribe(endpoint, queue=endpoint, cb=self.on_invoke)
        await self.nc.flush(timeout=timeout)  # type: ignore[arg-type]  # nats-py says int
        self._heartbeat = asyncio.create_task(self.beat())
        await self.announce()
        await self.nc.flush(timeout=timeout)  # type: ignore[arg-type]

    async def announce(self) -> None:
        await self.publish(ANNOUNCE, self.status())

    async def beat(self) -> None:
        while True:  # the first beat at once
            await self.publish(status_subject(self.id), self.status())
            await asyncio.sleep(self.heartbeat_interval)

    async def leave(self, timeout: float) -> None:
        """Stop beating and say offline (5.7)."""
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
        await self.publish(status_subject(self.id), self.status("offline"))
        await self.nc.flush(timeout=timeout)  # type: ignore[arg-type]

    async def on_message(self, msg: Msg) -> None:
        """``agent.<id>.message``: match responses to our questions, answer queries."""
        try:
            message = decode_message(msg.data)
        except ValueError as error:
            self.skipped += 1
            log(f"skipped a malformed message on {msg.subject}: {error}")
            return
        if message["type"] == "response":  # never answered (section 7)
            waiter = self.waiting.pop(str(message["metadata"].get("in_reply_to")), None)
            if waiter is not None and not waiter.done():
                waiter.set_result(message)
            return
        if message["type"] != "query":
            return
        self.in_flight += 1
        try:
            answer = new_message(
                self.id,
                message["from"],
                f"{self.id} heard: {message['message']}",
                "response",
                {"in_reply_to": message["id"]},
            )
            # Answers go to the NATS reply subject when there is one (5.3).
            await self.publish(msg.reply or message_subject(message["from"]), answer)
        finally:
            self.in_flight -= 1
        self.report.step("answered", True, sender=message["from"], text=message["message"])

    async def on_invoke(self, msg: Msg) -> None:
        """``capability.invoke.<name>``: exactly one CapabilityReply per request (5.6)."""
        if not msg.reply:
            return
        self.in_flight += 1
        try:
            reply = self.run_capability(msg.data)
            await self.nc.publish(msg.reply, encode(reply))
        finally:
            self.in_flight -= 1
        self.report.step("served", True, reply=reply)

    def run_capability(self, data: bytes) -> dict[str, Any]:
        try:
            request = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError):
            return capability_failure("bad_request", "not valid UTF-8 JSON", self.id)
        if not isinstance(request, dict) or not isinstance(request.get("capability"), str):
            return capability_failure("bad_request", "capability: missing", self.id)
        if request["capability"] != self.capability:
            return capability_failure(
                "no_capability", f"{self.id} has no {request['capability']!r}", self.id
            )
        try:
            result = reverse(request.get("input"))
        except TypeError as error:
            return capability_failure("bad_request", str(error), self.id)
        return {"ok": True, "result": result, "agent": self.id}

    async def ask(self, to: str, text: str, timeout: float) -> dict[str, Any]:
        """Send a query and wait for the response that answers it (5.3).

        Raises:
            TimeoutError: no response in time.
        """
        question = new_message(self.id, to, text, "query")
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.waiting[question["id"]] = waiter
        try:
            await self.publish(message_subject(to), question)
            return await asyncio.wait_for(waiter, timeout)
        finally:
            self.waiting.pop(question["id"], None)


# --- the client steps ------------------------------------------------------------------


async def request_json(nc: Client, subject: str, body: dict[str, Any], timeout: float) -> Any:
    reply = await nc.request(subject, encode(body), timeout=timeout)
    return json.loads(reply.data)


async def step_ask(agent: ExternalAgent, target: str, text: str, timeout: float, name: str) -> None:
    try:
        answer = await agent.ask(target, text, timeout)
    except TimeoutError:
        agent.report.step(name, False, target=target, error=f"no response within {timeout:g} s")
        return
    error = answer["metadata"].get("error")
    agent.report.step(
        name,
        error is None and answer["from"] == target and answer["message"] == text,
        target=target,
        sent=text,
        response=answer["message"],
        error=error,
    )


async def step_listed(agent: ExternalAgent, timeout: float) -> None:
    """Ask the directory until it lists us online with our capability (5.5)."""
    deadline = time.monotonic() + timeout
    entry: Any = None
    problem = ""
    while time.monotonic() < deadline:
        try:
            listing = await request_json(agent.nc, LIST_AGENTS, {}, timeout)
            entry = next((a for a in listing["agents"] if a.get("id") == agent.id), None)
            if (
                entry is not None
                and entry.get("status") == "online"
                and agent.capability in entry.get("capabilities", [])
            ):
                agent.report.step("listed", True, entry=entry, agents=len(listing["agents"]))
                return
            problem = f"not listed online yet: {entry}"
        except NoRespondersError:
            problem = "no directory answers mcp.list_agents"
        except NatsTimeoutError:
            problem = "mcp.list_agents timed out"
        except (ValueError, KeyError, TypeError) as error:
            problem = f"malformed list reply: {error!r}"
        await asyncio.sleep(0.05)
    agent.report.step("listed", False, entry=entry, error=problem)


async def step_capability(
    agent: ExternalAgent, capability: str, value: Any, expected: Any, timeout: float
) -> None:
    body = {"capability": capability, "input": value, "timeout": timeout}
    try:
        reply = await request_json(agent.nc, CAPABILITY_REQUEST, body, timeout + 1)
    except NoRespondersError:
        agent.report.step("capability", False, error="unavailable: no router")
        return
    except NatsTimeoutError:
        agent.report.step("capability", False, error="timeout")
        return
    ok = isinstance(reply, dict) and reply.get("ok") is True and reply.get("result") == expected
    agent.report.step("capability", ok, capability=capability, reply=reply)


async def step_ask_by_request(agent: ExternalAgent, target: str, timeout: float) -> None:
    """Ask as a NATS request: the answer comes back on the reply subject (5.3)."""
    question = new_message(agent.id, target, "by request", "query")
    try:
        reply = await agent.nc.request(message_subject(target), encode(question), timeout)
        answer = decode_message(reply.data)
    except NatsTimeoutError:
        agent.report.step("asked_by_request", False, error=f"no reply within {timeout:g} s")
        return
    except ValueError as error:
        agent.report.step("asked_by_request", False, error=f"malformed answer: {error}")
        return
    agent.report.step(
        "asked_by_request",
        answer["type"] == "response"
        and answer["metadata"].get("in_reply_to") == question["id"]
        and answer["message"] == "by request",
        response=answer["message"],
    )


async def step_malformed(agent: ExternalAgent, target: str, timeout: float) -> None:
    """Send the target three bad payloads; it must skip two, refuse the one that says
    who sent it (6.2), and keep answering."""
    no_sender = new_message(agent.id, target, "who sent this?", "query")
    del no_sender["from"]
    await agent.nc.publish(message_subject(target), encode(no_sender))
    await agent.nc.publish(message_subject(target), b"this is not JSON")
    no_text = new_message(agent.id, target, "", "query")
    del no_text["message"]
    waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
    agent.waiting[no_text["id"]] = waiter
    await agent.nc.publish(message_subject(target), encode(no_text))
    agent.report.step("malformed_sent", True, target=target, id=no_sender["id"])
    try:
        refusal = await asyncio.wait_for(waiter, timeout)
    except TimeoutError:
        agent.report.step("malformed_refused", False, error="no error response")
    else:
        error = refusal["metadata"].get("error") or {}
        agent.report.step(
            "malformed_refused",
            error.get("code") == "bad_request" and "message" in str(error.get("message")),
            error=error,
        )
    finally:
        agent.waiting.pop(no_text["id"], None)
    await step_ask(agent, target, "still there?", timeout, "malformed_ignored")


async def stdin_closed() -> None:
    """Return once stdin reaches end of file (never, if stdin cannot be watched)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    try:
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), sys.stdin
        )
    except (ValueError, OSError):
        await asyncio.Event().wait()  # a regular file or no stdin: only the timer ends it
        return
    try:
        while await reader.read(4096):
            pass
    finally:
        transport.close()


async def serve(agent: ExternalAgent, seconds: float) -> None:
    agent.report.step("ready", True, agent=agent.id, capability=agent.capability)
    try:
        await asyncio.wait_for(stdin_closed(), seconds)
        reason = "stdin closed"
    except TimeoutError:
        reason = f"{seconds:g} s passed"
    agent.report.step("serve_ended", True, reason=reason)


async def run(options: argparse.Namespace, report: Report) -> None:
    timeout: float = options.timeout
    agent: ExternalAgent | None = None

    async def reconnected() -> None:
        if agent is not None:
            await agent.announce()  # announce after every reconnect (5.7)

    async def error(problem: Exception) -> None:
        log(f"nats: {problem!r}")

    try:
        nc = await asyncio.wait_for(
            nats.connect(
                options.url,
                name=f"external-{options.agent_id}",
                connect_timeout=timeout,
                reconnected_cb=reconnected,
                error_cb=error,
            ),
            timeout * 2,
        )
    except Exception as problem:  # any failure to connect is a failed step
        report.step("connected", False, error=repr(problem))
        return
    report.step("connected", True, max_payload=nc.max_payload)
    try:
        agent = ExternalAgent(nc, options.agent_id, options.capability, options.heartbeat, report)
        await agent.join(timeout)
        report.step("announced", True, agent=agent.id, capability=agent.capability)
        await step_ask(agent, options.target, f"hello from {agent.id}", timeout, "asked")
        await step_ask_by_request(agent, options.target, timeout)
        await step_listed(agent, timeout)
        await step_capability(
            agent, options.volta_capability, options.volta_input, options.volta_expect, timeout
        )
        if options.malformed:
            await step_malformed(agent, options.target, timeout)
        if options.serve > 0:
            await serve(agent, options.serve)
        await agent.leave(timeout)
        report.step("stopped", True, skipped=agent.skipped)
    finally:
        await nc.close()


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("url", help="NATS server URL, e.g. nats://127.0.0.1:4222")
    parser.add_argument("agent_id", help="this agent's id")
    parser.add_argument("--capability", default="reverse", help="the capability served")
    parser.add_argument("--heartbeat", type=float, default=1.0, help="heartbeat interval, s")
    parser.add_argument("--target", default="alpha", help="the Volta agent to ask (echoes)")
    parser.add_argument("--volta-capability", default="uppercase")
    parser.add_argument("--volta-input", default="volta")
    parser.add_argument("--volta-expect", default="VOLTA")
    parser.add_argument("--malformed", action="store_true", help="also send bad payloads")
    parser.add_argument(
        "--serve", type=float, default=0.0, help="serve up to this long, or until stdin closes"
    )
    parser.add_argument("--timeout", type=float, default=5.0, help="bound of each wait, s")
    parser.add_argument("--deadline", type=float, default=60.0, help="bound of the run, s")
    options = parser.parse_args(argv)
    for field in ("agent_id", "capability", "target"):
        value = getattr(options, field)
        if not NAME.fullmatch(value):
            parser.error(f"{field} {value!r}: use 1-64 characters from A-Z a-z 0-9 _ -")
    if options.agent_id == "broadcast":
        parser.error("agent_id 'broadcast' is reserved")
    if min(options.heartbeat, options.timeout, options.deadline) <= 0:
        parser.error("--heartbeat, --timeout and --deadline must be positive")
    return options


async def main(argv: list[str]) -> int:
    options = parse(argv)
    report = Report()
    try:
        await asyncio.wait_for(run(options, report), options.deadline)
    except TimeoutError:
        report.step("deadline", False, error=f"not done within {options.deadline:g} s")
    except Exception as problem:  # report, never hang or die silently
        report.step("crashed", False, error=repr(problem))
    ok = not report.failed
    print(json.dumps({"step": "done", "ok": ok, "failed": report.failed}), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
