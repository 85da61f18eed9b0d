"""Claude brains on the bus, driven through the real anthropic SDK against a fake API.

The fake (tests/fake_anthropic.py) speaks the Messages API on loopback and is
scripted per test; the SDK runs with ``_strict_response_validation=True`` so a
malformed fake fails loudly. Real nats-server, real time, every wait bounded.
"""

from __future__ import annotations

from typing import Any

import trio

from volta.actors import (
    AgentSpec,
    Brain,
    BrainSpec,
    ClaudeModel,
    open_client,
)
from volta.bus import NatsServer

from ..fake_anthropic import (
    FakeMessagesAPI,
    Recorded,
    Reply,
    fake_messages_api,
    text,
    tool_use,
)
from .conftest import agent, node_spec, running_node

API_KEY = "sk-ant-test-0123456789abcdef-never-shown"


def brain_agent(
    agent_id: str,
    api: FakeMessagesAPI,
    *,
    team: tuple[str, ...] = (),
    max_retries: int = 0,
    capabilities: tuple[str, ...] = (),
    skills: dict[str, str] | None = None,
    **changes: Any,
) -> AgentSpec:
    brain_changes = {k: changes.pop(k) for k in list(changes) if k in attrs_fields(BrainSpec)}
    model = ClaudeModel(
        api_key=API_KEY, agent_id=agent_id, base_url=api.url, max_retries=max_retries, strict=True
    )
    brain = Brain(
        BrainSpec(system=f"You are {agent_id}.", team=team, skills=skills or {}, **brain_changes),
        model,
    )
    changes.setdefault("task_timeout", 10.0)
    return agent(agent_id, capabilities, handler=brain, **changes)


def attrs_fields(cls: type) -> set[str]:
    import attrs

    return {field.name for field in attrs.fields(cls)}


def team_script(answers: dict[str, Reply]) -> Any:
    """The coordinator asks b and c in one turn, then combines; b and c answer."""

    def script(request: Recorded) -> Reply:
        if request.agent == "a":
            if not request.tool_results:
                return tool_use(
                    ("ask_agent", {"to": "b", "question": "part one"}),
                    ("ask_agent", {"to": "c", "question": "part two"}),
                )
            return text(
                "combined: " + " | ".join(r["content"][0]["text"] for r in request.tool_results)
            )
        return answers[request.agent]

    return script


async def test_a_coordinator_asks_two_agents_at_once_and_combines(nats_server: NatsServer) -> None:
    script = team_script({"b": text("B's part", delay=0.5), "c": text("C's part", delay=0.5)})
    with fake_messages_api(script) as api:
        agents = [
            brain_agent("a", api, team=("b", "c")),
            brain_agent("b", api),
            brain_agent("c", api),
        ]
        async with (
            running_node(node_spec(nats_server.url, agents)),
            open_client(nats_server.url) as client,
        ):
            start = trio.current_time()
            answer = await client.ask("a", "do the thing", timeout=10)
            elapsed = trio.current_time() - start
    assert answer.sender == "a"
    assert "B's part" in answer.message
    assert "C's part" in answer.message
    assert answer.message.startswith("combined: Answer from agent 'b'")
    (b,), (c,) = api.of("b"), api.of("c")
    # Both ran at the same time: the coordinator waited for the slower, not the sum.
    assert b.started < c.ended, "b and c did not overlap"
    assert c.started < b.ended, "b and c did not overlap"
    assert elapsed < 0.95, f"took {elapsed:.2f} s: the two asks ran one after the other"
    # What b was asked came as a user turn naming its sender, not in the system prompt.
    assert "part one" in b.last_user_text
    assert "part one" not in str(b.body["system"])
    assert b.body["system"][0]["cache_control"] == {"type": "ephemeral"}
    assert b.body["tools"][-1]["cache_control"] == {"type": "ephemeral"}
