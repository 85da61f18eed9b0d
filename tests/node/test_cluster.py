"""A mesh on a cluster of three nats-servers: the server in use dies, nothing acked is lost.

Three real nats-servers routed together on loopback, JetStream with 3 replicas; the
agents' node and the sender know all three URLs (failover), and the server the agents'
node is connected to is killed with SIGKILL in the middle of the stream.
"""

from __future__ import annotations

import json

import trio

from volta.actors import DurableSpec, open_client
from volta.bus import BusOptions, NatsServer, Outgoing, StreamPublisher, open_bus
from volta.protocol import Message, MessageType, agent_inbox, encode_message

from ..mesh import FAST_RECONNECT, Recorder, agent, node_spec, running_node, wait_until


async def test_the_server_in_use_dies_and_nothing_acked_is_lost(
    js_cluster: list[NatsServer],
) -> None:
    count = 3000
    urls = tuple(server.url for server in js_cluster)
    options = BusOptions(servers=urls, reconnect=FAST_RECONNECT)
    recorder = Recorder(answer=lambda message: None if message.message.isdigit() else "yes")
    spec = node_spec(
        urls[0],
        [agent("worker", handler=recorder, max_concurrency=32)],
        nats=options,
        durable=DurableSpec(replicas=3),
    )
    async with running_node(spec) as node, open_bus(options) as bus:
        used = node.agents["worker"]._bus  # the node's shared connection
        assert used is not None
        victim = next(s for s in js_cluster if s.url == used.server)
        publisher = StreamPublisher(bus, ack_timeout=1.0, deadline=60)
        messages = [
            Message(sender="tester", to="worker", message=str(n), type=MessageType.TEXT)
            for n in range(count)
        ]
        acks: list[object] = []

        async def publish() -> None:
            outgoing = (Outgoing(agent_inbox("worker"), encode_message(m), m.id) for m in messages)
            acks.extend(await publisher.publish_many(outgoing, window=128))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(publish)
            await wait_until(lambda: len(recorder.seen) >= count // 3, timeout=30)
            await victim.kill()
        await wait_until(lambda: len(recorder.seen) >= count, timeout=60)
        await trio.sleep(0.5)  # anything more would be a message handled twice
        survivor = used.server
        async with open_client(bus) as client:  # and asks still work, on the new server
            answer = await client.ask("worker", "still there?", timeout=10)
    handled = [int(m.message) for m in recorder.seen if m.message.isdigit()]
    print(
        json.dumps(
            {
                "sent": count,
                "acked": len(acks),
                "handled": len(set(handled)),
                "handler_runs": len(handled),
                "publish_retries": publisher.retries,
                "killed": victim.url,
                "now_on": survivor,
            }
        )
    )
    assert survivor != victim.url
    assert len(acks) == count
    assert sorted(handled) == list(range(count))  # every acked message, once
    assert answer.in_reply_to is not None
