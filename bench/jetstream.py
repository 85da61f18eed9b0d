"""Durable messaging: volta.bus JetStream vs plain nats-py JetStream, and core for scale.

Usage: python bench/jetstream.py [--messages N] [--latency N] [--rounds N]

Each worker runs in a process of its own (see bench/bus.py: importing
trio_asyncio changes the asyncio loop policy of the whole process). Both
durable workers do the same thing on a file-store stream of their own:

- publish N x 128 B messages, each with a ``Nats-Msg-Id``, and wait for every
  PubAck (nats-py: ``publish_async`` with its pending window, then
  ``publish_async_completed``; Volta: ``StreamPublisher.publish_many``, window 256);
- read them back through a durable pull consumer, acking each (nats-py:
  ``pull_subscribe`` + ``fetch(256)`` + ``msg.ack()``; Volta: ``pull`` + ``ack``);
- publish M messages one at a time, each waiting for its PubAck (latency).

Rows: plain-js (nats-py on asyncio's own loop), bus-js (volta.bus from trio) and
bus-core (volta.bus core publish -> subscribe, at most once: what durability costs).

Then the durable inbox itself, a running Volta node with one agent (a handler that
counts, 64 at once):

- inbox-durable: publish N messages to ``agent.sink.inbox`` (``publish_many``,
  every PubAck) while the agent is stopped, then start it and time from its first
  handled message to its last (each a unit of work, recorded as handled, acked);
- inbox-core: the same N messages sent on ``agent.sink.message`` (core, at most
  once) to the running agent, timed until the last is handled;
- asks: M sequential ``ask``s to an echo agent, durable (through the stream, the
  answer on the ``Volta-Reply`` subject) and core (a NATS request).

The last line is one JSON object; ratios are Volta / plain-js; the target is the
durable inbox at 0.8x plain nats-py JetStream or better.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import uuid
from typing import Any

PAYLOAD = b"x" * 128
BATCH = 256


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


# --- workers (each runs in its own process) -------------------------------------------


async def plain_js(url: str, count: int, latency: int) -> dict[str, Any]:
    import nats
    from nats.js.api import AckPolicy, ConsumerConfig, StorageType

    nc = await nats.connect(url)
    js = nc.jetstream(publish_async_max_pending=BATCH)
    name = f"PLAIN{uuid.uuid4().hex[:8]}"
    await js.add_stream(name=name, subjects=[f"{name}.>"], storage=StorageType.FILE)
    subject = f"{name}.work"

    start = time.perf_counter()
    for n in range(count):
        await js.publish_async(subject, PAYLOAD, headers={"Nats-Msg-Id": f"p{n}"})
    await js.publish_async_completed()
    published = time.perf_counter() - start

    config = ConsumerConfig(durable_name="reader", ack_policy=AckPolicy.EXPLICIT)
    reader = await js.pull_subscribe(subject, durable="reader", stream=name, config=config)
    start = time.perf_counter()
    received = 0
    while received < count:
        for msg in await reader.fetch(BATCH, timeout=5):
            await msg.ack()
            received += 1
    consumed = time.perf_counter() - start

    samples = []
    for n in range(latency):
        begin = time.perf_counter()
        await js.publish(subject, PAYLOAD, headers={"Nats-Msg-Id": f"l{n}"})
        samples.append(time.perf_counter() - begin)
    await js.delete_stream(name)
    await nc.close()
    return _result(count, published, consumed, samples)


async def bus_js(url: str, count: int, latency: int) -> dict[str, Any]:
    from volta.bus import (
        ConsumerSpec,
        JetStream,
        Outgoing,
        PullOptions,
        StreamPublisher,
        StreamSpec,
        open_bus,
        pull,
    )

    async with open_bus(url) as bus:
        jetstream = JetStream(bus)
        name = f"BUS{uuid.uuid4().hex[:8]}"
        await jetstream.ensure_stream(StreamSpec(name=name, subjects=(f"{name}.>",)))
        subject = f"{name}.work"
        publisher = StreamPublisher(bus)

        start = time.perf_counter()
        await publisher.publish_many(
            (Outgoing(subject, PAYLOAD, f"p{n}") for n in range(count)), window=BATCH
        )
        published = time.perf_counter() - start

        await jetstream.ensure_consumer(name, ConsumerSpec(durable="reader"))
        start = time.perf_counter()
        received = 0
        async with pull(bus, name, "reader", PullOptions(batch=BATCH)) as messages:
            async for message in messages:
                await message.ack()
                received += 1
                if received == count:
                    break
        await bus.flush()
        consumed = time.perf_counter() - start

        samples = []
        for n in range(latency):
            begin = time.perf_counter()
            await publisher.publish(subject, PAYLOAD, f"l{n}")
            samples.append(time.perf_counter() - begin)
        await jetstream.delete_stream(name)
    return _result(count, published, consumed, samples)


async def bus_core(url: str, count: int, latency: int) -> dict[str, Any]:
    import trio

    from volta.bus import open_bus

    async with open_bus(url) as bus, bus.subscribe("bench.core", max_messages=count + 1) as sub:
        await bus.flush()
        done = trio.Event()

        async def consume() -> None:
            received = 0
            async for _ in sub:
                received += 1
                if received == count:
                    done.set()
                    return

        async with trio.open_nursery() as nursery:
            nursery.start_soon(consume)
            start = time.perf_counter()
            for _ in range(count):
                await bus.publish("bench.core", PAYLOAD)
            await done.wait()
            elapsed = time.perf_counter() - start
    return {"combined": count / elapsed, "publish": count / elapsed, "consume": count / elapsed}


def _sink_node(url: str, counter: Any, durable: bool, stream: str) -> Any:
    from volta.actors import AgentSpec, DurableMode, DurableSpec, EchoHandler
    from volta.bus import BusOptions
    from volta.node import Node, NodeSpec

    mode = DurableMode.ON if durable else DurableMode.OFF
    agents = (
        AgentSpec(
            id="sink",
            handler=counter,
            max_concurrency=64,
            inbox_buffer=BATCH * 4 if durable else counter.count + 1,
            inbox_max_bytes=1 << 30,
        ),
        AgentSpec(id="echo", handler=EchoHandler()),
    )
    spec = NodeSpec(
        agents=agents,
        nats=BusOptions(servers=(url,)),
        durable=DurableSpec(mode=mode, stream=stream),
    )
    return Node(spec)


class _Counter:
    """Counts messages; the times of the first and the last."""

    def __init__(self, count: int) -> None:
        import trio

        self.count = count
        self.seen = 0
        self.first = 0.0
        self.last = 0.0
        self.done = trio.Event()

    async def on_message(self, message: Any, context: Any) -> None:
        self.seen += 1
        if self.seen == 1:
            self.first = time.perf_counter()
        if self.seen == self.count:
            self.last = time.perf_counter()
            self.done.set()

    async def on_capability(self, capability: str, input: Any, context: Any) -> Any:
        raise NotImplementedError


async def inbox(url: str, count: int, latency: int, durable: bool) -> dict[str, Any]:
    import trio

    from volta.actors import open_client
    from volta.bus import JetStream, Outgoing, StreamPublisher, open_bus
    from volta.protocol import Message, agent_inbox, agent_message, encode_message

    counter = _Counter(count)
    stream = (
        f"IN{uuid.uuid4().hex[:8]}"  # (and its records and journal streams: deleted at the end)
    )
    messages = [
        encode_message(Message(sender="bench", to="sink", message=PAYLOAD.decode()))
        for _ in range(count)
    ]
    result: dict[str, Any] = {}
    if durable:  # a first run makes the stream and the agent's consumer
        async with trio.open_nursery() as nursery:
            await nursery.start(_sink_node(url, counter, durable, stream).run)
            nursery.cancel_scope.cancel()
    async with open_bus(url) as bus, trio.open_nursery() as nursery:
        if durable:
            start = time.perf_counter()
            await StreamPublisher(bus).publish_many(
                (Outgoing(agent_inbox("sink"), data) for data in messages), window=BATCH
            )
            published = time.perf_counter() - start
            await nursery.start(_sink_node(url, counter, durable, stream).run)
            await counter.done.wait()
            consumed = counter.last - counter.first
            result = {
                "publish": count / published,
                "consume": count / consumed,
                "combined": count / (published + consumed),
            }
        else:
            await nursery.start(_sink_node(url, counter, durable, stream).run)
            start = time.perf_counter()
            for data in messages:
                await bus.publish(agent_message("sink"), data)
            await counter.done.wait()
            elapsed = time.perf_counter() - start
            result = {"combined": count / elapsed, "publish": count / elapsed}
            result["consume"] = result["combined"]
        async with open_client(bus) as client:
            samples = []
            for n in range(latency):
                begin = time.perf_counter()
                await client.ask("echo", str(n), timeout=10)
                samples.append(time.perf_counter() - begin)
        result["ask_p50_us"] = percentile(samples, 0.5) * 1e6
        result["ask_p99_us"] = percentile(samples, 0.99) * 1e6
        nursery.cancel_scope.cancel()
    if durable:
        async with open_bus(url) as bus:
            for name in (stream, f"{stream}_HANDLED", f"{stream}_JOURNAL"):
                await JetStream(bus).delete_stream(name)
    return result


def _result(count: int, published: float, consumed: float, samples: list[float]) -> dict[str, Any]:
    return {
        "publish": count / published,
        "consume": count / consumed,
        "combined": count / (published + consumed),
        "p50_us": percentile(samples, 0.50) * 1e6,
        "p99_us": percentile(samples, 0.99) * 1e6,
    }


def run_worker(kind: str, url: str, count: int, latency: int) -> dict[str, Any]:
    if kind == "plain-js":
        import asyncio

        with asyncio.Runner(loop_factory=asyncio.SelectorEventLoop) as runner:
            return runner.run(plain_js(url, count, latency))
    import trio

    if kind.startswith("inbox-"):
        return trio.run(inbox, url, count, latency, kind == "inbox-durable")
    worker = bus_js if kind == "bus-js" else bus_core
    return trio.run(worker, url, count, latency)


# --- orchestration ------------------------------------------------------------------


def measure(kind: str, url: str, count: int, latency: int) -> dict[str, Any]:
    command = [sys.executable, __file__, "--worker", kind, "--url", url]
    command += ["--messages", str(count), "--latency", str(latency)]
    output = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if output.returncode != 0:
        raise RuntimeError(f"{kind} worker failed:\n{output.stderr[-3000:]}")
    return dict(json.loads(output.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--latency", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--worker", choices=["plain-js", "bus-js", "bus-core", "inbox-durable", "inbox-core"]
    )
    parser.add_argument("--url")
    args = parser.parse_args()

    if args.worker:
        print(json.dumps(run_worker(args.worker, args.url, args.messages, args.latency)))
        return

    import trio

    from volta.bus import NatsServerConfig, run_nats_server

    kinds = ["plain-js", "bus-js", "bus-core", "inbox-durable", "inbox-core"]
    results: dict[str, list[dict[str, Any]]] = {kind: [] for kind in kinds}

    async def run_all() -> None:
        async with run_nats_server(NatsServerConfig(jetstream=True)) as server:
            for _ in range(args.rounds):
                for kind in kinds:
                    results[kind].append(
                        await trio.to_thread.run_sync(
                            measure, kind, server.url, args.messages, args.latency
                        )
                    )

    trio.run(run_all)

    def median(kind: str, key: str) -> float:
        return float(statistics.median(r.get(key, 0.0) for r in results[kind]))

    print(
        f"{args.messages} x 128 B, file store, publish (all PubAcks) then read (ack each); "
        f"{args.latency} sequential publishes for latency; median of {args.rounds} rounds, "
        "each worker in its own process"
    )
    print(f"{'':14}{'publish/s':>12}{'consume/s':>12}{'combined/s':>12}{'p50 us':>9}{'p99 us':>9}")
    for kind in kinds:
        p50, p99 = (
            ("ask_p50_us", "ask_p99_us") if kind.startswith("inbox") else ("p50_us", "p99_us")
        )
        print(
            f"{kind:14}{median(kind, 'publish'):>12,.0f}{median(kind, 'consume'):>12,.0f}"
            f"{median(kind, 'combined'):>12,.0f}{median(kind, p50):>9.0f}"
            f"{median(kind, p99):>9.0f}"
        )
    print("(p50/p99: one publish with its PubAck; inbox rows: one ask answered by an agent)")
    summary = {
        "durable_throughput_ratio": round(
            median("bus-js", "combined") / median("plain-js", "combined"), 3
        ),
        "publish_ratio": round(median("bus-js", "publish") / median("plain-js", "publish"), 3),
        "consume_ratio": round(median("bus-js", "consume") / median("plain-js", "consume"), 3),
        "publish_latency_p50_ratio": round(
            median("bus-js", "p50_us") / median("plain-js", "p50_us"), 3
        ),
        "durable_vs_core": round(median("bus-js", "combined") / median("bus-core", "combined"), 3),
        "inbox_durable_ratio": round(
            median("inbox-durable", "combined") / median("plain-js", "combined"), 3
        ),
        "inbox_durable_vs_core": round(
            median("inbox-durable", "combined") / median("inbox-core", "combined"), 3
        ),
        "ask_durable_vs_core_p50": round(
            median("inbox-durable", "ask_p50_us") / median("inbox-core", "ask_p50_us"), 3
        ),
        "inbox_durable_per_s": round(median("inbox-durable", "combined")),
        "inbox_core_per_s": round(median("inbox-core", "combined")),
        "ask_durable_p50_us": round(median("inbox-durable", "ask_p50_us")),
        "ask_core_p50_us": round(median("inbox-core", "ask_p50_us")),
        "plain_js_per_s": round(median("plain-js", "combined")),
        "bus_js_per_s": round(median("bus-js", "combined")),
        "bus_core_per_s": round(median("bus-core", "combined")),
        "target": "inbox_durable_ratio >= 0.8 (and durable_throughput_ratio)",
        "baseline": "separate process, asyncio.Runner(loop_factory=SelectorEventLoop)",
        "rounds": args.rounds,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
