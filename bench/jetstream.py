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
The last line is one JSON object; ratios are bus-js / plain-js.
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
    parser.add_argument("--worker", choices=["plain-js", "bus-js", "bus-core"])
    parser.add_argument("--url")
    args = parser.parse_args()

    if args.worker:
        print(json.dumps(run_worker(args.worker, args.url, args.messages, args.latency)))
        return

    import trio

    from volta.bus import NatsServerConfig, run_nats_server

    kinds = ["plain-js", "bus-js", "bus-core"]
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
    print(f"{'':10}{'publish/s':>12}{'consume/s':>12}{'combined/s':>12}{'p50 us':>9}{'p99 us':>9}")
    for kind in kinds:
        print(
            f"{kind:10}{median(kind, 'publish'):>12,.0f}{median(kind, 'consume'):>12,.0f}"
            f"{median(kind, 'combined'):>12,.0f}{median(kind, 'p50_us'):>9.0f}"
            f"{median(kind, 'p99_us'):>9.0f}"
        )
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
        "plain_js_per_s": round(median("plain-js", "combined")),
        "bus_js_per_s": round(median("bus-js", "combined")),
        "bus_core_per_s": round(median("bus-core", "combined")),
        "target": "durable_throughput_ratio >= 0.8",
        "baseline": "separate process, asyncio.Runner(loop_factory=SelectorEventLoop)",
        "rounds": args.rounds,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
