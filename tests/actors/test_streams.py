"""A JetStream stream over Volta's subjects, made by anyone, never answers for an agent.

On a server with JetStream, any client may create a stream over ``agent.*.message``
(or ``capability.>``, ``mcp.>``). The server then answers every request published
there with a PubAck on the request's reply subject, before the real responder
does. A reader that took the first reply took the PubAck for the answer: every ask
failed. Real nats-server with JetStream, on loopback.
"""

from __future__ import annotations

import json

import attrs
import pytest

from volta.actors import DurableMode, DurableSpec, open_client
from volta.bus import NatsServerConfig, open_bus, run_nats_server
from volta.protocol import encode_json

from ..mesh import agent, node_spec, running_node

HOSTILE = {"name": "HOSTILE", "storage": "memory"}


@pytest.mark.parametrize(
    ("subjects", "acks"),
    [
        (["agent.*.message", "capability.>", "mcp.>"], 3),  # the ask, the call, the listing
        (["agent.>", "capability.request"], 2),  # the ask, the call
    ],
)
async def test_a_stream_over_the_agents_subjects_does_not_answer_for_them(
    subjects: list[str], acks: int
) -> None:
    async with run_nats_server(NatsServerConfig(jetstream=True)) as server:
        spec = node_spec(server.url, [agent("alpha", ["echo"])])
        # (Volta's own inbox stream would take agent.*.message first: tests/node/test_durable.py.)
        spec = attrs.evolve(spec, durable=DurableSpec(mode=DurableMode.OFF))
        async with (
            running_node(spec),
            open_bus(server.url) as bus,
            open_client(bus) as client,
        ):
            config = {**HOSTILE, "subjects": subjects}
            created = await bus.request(
                "$JS.API.STREAM.CREATE.HOSTILE", encode_json(config), timeout=5
            )
            assert "error" not in json.loads(created.data), created.data
            answer = await client.ask("alpha", "hi", timeout=5)
            result = await client.capability("echo", "x", timeout=5)
            listed = await client.agents()
            # The stream stored the client's requests, and answered each with a PubAck
            # on its reply subject: skipped, one each.
            skipped = bus.statistics().pub_acks_skipped
    assert answer.message == "hi"
    assert result == "x"
    assert [info.id for info in listed] == ["alpha"]
    assert skipped == acks
