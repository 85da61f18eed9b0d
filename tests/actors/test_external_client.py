"""An agent outside Volta, written from docs/PROTOCOL.md with raw nats-py only
(``external_agent.py``, run as a subprocess), joins a Volta node and works with it.

Rules: loopback only; a real nats-server per test; real time (no autojump_clock),
with every wait bounded by ``trio.fail_after``; the script itself bounds every wait
and its whole run (``--deadline``), and is terminated, then killed, if it overstays.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio

from volta.actors import AgentContext, CapabilityFailed
from volta.bus import ConnectionEvent, ConnectionEventKind, NatsServer, open_bus
from volta.node import Node
from volta.protocol import (
    CAPABILITY_REQUEST,
    CAPABILITY_REQUEST_CODEC,
    CapabilityReply,
    CapabilityRequest,
    ErrorCode,
    Message,
    Presence,
    decode_capability_reply,
)

from ..mesh import agent, client_context, node_spec, running_node, seed_agents, wait_until
from .test_agents import _ask_with_inbox

SCRIPT = Path(__file__).with_name("external_agent.py")
EXTERNAL = "extern"


class Relay:
    """A Volta agent that, told ``"<agent> <text>"``, asks that agent and reports back."""

    async def on_message(self, message: Message, context: AgentContext) -> str | None:
        to, _, text = message.message.partition(" ")
        answer = await context.ask(to, text, timeout=5)
        return f"{to} said: {answer.message}"

    async def on_capability(self, capability: str, input: Any, context: AgentContext) -> Any:
        raise NotImplementedError(capability)


class ExternalScript:
    """The running script: the JSON lines it printed so far, and a way to stop it."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.steps: list[dict[str, Any]] = []
        self._changed = trio.Event()

    async def read_steps(self) -> None:
        assert self.process.stdout is not None
        pending = b""
        async for chunk in self.process.stdout:
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                self.steps.append(json.loads(line))
            self._changed.set()
            self._changed = trio.Event()

    def _first(self, name: str) -> dict[str, Any] | None:
        return next((s for s in self.steps if s["step"] == name), None)

    def step(self, name: str) -> dict[str, Any]:
        """The first line for step ``name`` (it must have been printed)."""
        found = self._first(name)
        assert found is not None, f"no step {name!r} in {self.steps}"
        return found

    async def wait_for(self, name: str) -> dict[str, Any]:
        """The first line for step ``name``, once printed."""
        while (found := self._first(name)) is None:
            if self._first("done") is not None:
                raise AssertionError(f"the script ended before {name!r}: {self.steps}")
            await self._changed.wait()
        return found

    async def stop(self) -> int:
        """Close its stdin (it stops serving, says offline, exits); its exit status."""
        assert self.process.stdin is not None
        await self.process.stdin.aclose()
        return await self.process.wait()


@asynccontextmanager
async def external_agent(url: str, *options: str) -> AsyncIterator[ExternalScript]:
    """Run the script for the duration of the block; cancelled, it is terminated then
    killed (trio's ``run_process`` does that, bounded)."""
    command = [sys.executable, str(SCRIPT), url, EXTERNAL, *options]
    async with trio.open_nursery() as nursery:
        process = await nursery.start(
            partial(
                trio.run_process,
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                check=False,
            )
        )
        script = ExternalScript(process)
        nursery.start_soon(script.read_steps)
        yield script
        with trio.move_on_after(10):
            await script.stop()
        nursery.cancel_scope.cancel()


def presence(node: Node, agent_id: str) -> Presence | None:
    info = node.directory.get(agent_id)
    return info.status if info is not None else None


def assert_all_ok(steps: list[dict[str, Any]]) -> None:
    failed = [s for s in steps if not s["ok"]]
    assert not failed, f"steps failed: {failed}"


async def test_external_agent_is_listed_and_exchanges_messages(nats_server: NatsServer) -> None:
    agents = [*seed_agents(), agent("relay", handler=Relay())]
    async with (
        running_node(node_spec(nats_server.url, agents)) as node,
        open_bus(nats_server.url) as bus,
        external_agent(nats_server.url, "--serve", "30", "--heartbeat", "0.2") as script,
    ):
        # The script's own client steps: ask alpha, be listed, run uppercase on alpha.
        with trio.fail_after(20):
            await script.wait_for("ready")
        context = client_context(bus)

        # Volta's directory lists it online, with its capability.
        listed = {info.id: info for info in await context.list_agents()}
        assert listed[EXTERNAL].status is Presence.ONLINE
        assert listed[EXTERNAL].capabilities == ("reverse",)
        assert listed[EXTERNAL].name == f"external {EXTERNAL}"

        # Volta routes its capability to it, and it says so in the reply.
        with trio.fail_after(10):
            assert await context.request_capability("reverse", "volta") == "atlov"
            request = CapabilityRequest(capability="reverse", input="abc", timeout=5)
            raw = await bus.request(
                CAPABILITY_REQUEST, CAPABILITY_REQUEST_CODEC.encode(request), timeout=6
            )
            with pytest.raises(CapabilityFailed) as caught:
                await context.request_capability("reverse", 42)
        assert decode_capability_reply(raw.data) == CapabilityReply.success("cba", EXTERNAL)
        assert caught.value.code is ErrorCode.BAD_REQUEST
        assert caught.value.agent == EXTERNAL

        # A Volta agent asks it, and gets its response (matched by in_reply_to).
        with trio.fail_after(10):
            reply = await _ask_with_inbox(bus, context, "relay", f"{EXTERNAL} hi from relay")
            direct = await _ask_with_inbox(bus, context, EXTERNAL, "hi from the test")
        assert reply.message == f"{EXTERNAL} said: {EXTERNAL} heard: hi from relay"
        assert direct.message == f"{EXTERNAL} heard: hi from the test"
        assert direct.sender == EXTERNAL
        assert node.agents["relay"].statistics().handler_errors == 0

        # Stopped in order, it says offline and exits 0.
        with trio.fail_after(10):
            status = await script.stop()
            await wait_until(lambda: presence(node, EXTERNAL) is Presence.OFFLINE)
            await script.wait_for("done")

    assert status == 0
    steps = script.steps
    assert_all_ok(steps)
    names = [s["step"] for s in steps]
    assert names[:7] == [
        "connected",
        "announced",
        "asked",
        "asked_by_request",
        "listed",
        "capability",
        "ready",
    ]
    assert names[-3:] == ["serve_ended", "stopped", "done"]
    assert script.step("asked") == {
        "step": "asked",
        "ok": True,
        "target": "alpha",
        "sent": f"hello from {EXTERNAL}",
        "response": f"hello from {EXTERNAL}",
        "error": None,
    }
    assert script.step("listed")["entry"]["capabilities"] == ["reverse"]
    assert script.step("capability")["reply"] == {
        "ok": True,
        "result": "VOLTA",
        "agent": "alpha",
    }
    answered = [(s["sender"], s["text"]) for s in steps if s["step"] == "answered"]
    assert answered == [("relay", "hi from relay"), ("tester", "hi from the test")]
    served = [s["reply"] for s in steps if s["step"] == "served"]
    assert served == [
        {"ok": True, "result": "atlov", "agent": EXTERNAL},
        {"ok": True, "result": "cba", "agent": EXTERNAL},
        {
            "ok": False,
            "error": {"code": "bad_request", "message": "reverse expects a string, got int"},
            "agent": EXTERNAL,
        },
    ]
    assert script.step("serve_ended") == {
        "step": "serve_ended",
        "ok": True,
        "reason": "stdin closed",
    }


def script_step(steps: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(step for step in steps if step["step"] == name)


async def test_malformed_messages_from_outside_are_skipped(nats_server: NatsServer) -> None:
    async with (
        running_node(node_spec(nats_server.url, seed_agents())) as node,
        node.events.watch(10_000) as events,
        open_bus(nats_server.url) as bus,
    ):
        command = [sys.executable, str(SCRIPT), nats_server.url, EXTERNAL, "--malformed"]
        with trio.fail_after(30):
            result = await trio.run_process(command, capture_stdout=True, check=False)
        # alpha skipped both payloads and kept answering, without a restart.
        with trio.fail_after(10):
            still = await _ask_with_inbox(bus, client_context(bus), "alpha", "still there?")
        alpha = node.agents["alpha"].statistics()
        malformed = []
        while True:
            try:
                event = events.receive_nowait()
            except trio.WouldBlock:
                break
            if isinstance(event, ConnectionEvent) and event.kind is ConnectionEventKind.MALFORMED:
                malformed.append(event.detail)

    steps = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert result.returncode == 0, steps
    assert_all_ok(steps)
    assert [s["step"] for s in steps] == [
        "connected",
        "announced",
        "asked",
        "asked_by_request",
        "listed",
        "capability",
        "malformed_sent",
        "malformed_refused",
        "malformed_ignored",
        "stopped",
        "done",
    ]
    assert script_step(steps, "malformed_refused")["error"] == {
        "code": "bad_request",
        "message": "invalid message: message: required field is missing",
    }
    assert still.message == "still there?"
    assert alpha.handler_errors == 0
    assert alpha.restarts == 0
    assert alpha.malformed == 3
    # The first is reported at once; the other two wait for the summary (rate limit).
    assert malformed == [
        "agent.alpha.message: invalid message: from: required field is missing",
    ]
