"""Bus vs plain nats-py: publish->subscribe throughput and request-reply latency.

Usage: python bench/bus.py [--messages N] [--requests N] [--rounds N]

Every measurement runs in a process of its own, because importing trio_asyncio
changes the asyncio loop policy of the whole process (a plain nats-py baseline
in the same process would be slowed and flatter the ratio). Rounds alternate
plain and bus so drift hits both; the table shows medians over rounds.

Rows:
- plain: nats-py on asyncio's own loop (asyncio.run, SelectorEventLoop).
- on-trio-asyncio: the same nats-py code on trio-asyncio's stock loop, no Volta
  code: what hosting asyncio in trio costs out of the box.
- on-batching-loop: the same on Volta's BatchingEventLoop (bus/_loop.py), the
  loop the bus runs on: the floor under the bus.
- bus: volta.bus from trio (publish/subscribe/request/respond).

The last line is one JSON object; ratios are bus / plain.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from typing import Any

PAYLOAD = b"x" * 128
SUBJECT = "bench.throughput"
ECHO = "bench.echo"
WARMUP_REQUESTS = 300


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


# --- workers (each runs in its own process) -------------------------------------------


async def plain_throughput(url: str, count: int) -> float:
    import asyncio

    import nats

    subscriber = await nats.connect(url)
    publisher = await nats.connect(url)
    done = asyncio.Event()
    received = 0

    async def on_message(_msg: Any) -> None:
        nonlocal received
        received += 1
        if received == count:
            done.set()

    await subscriber.subscribe(SUBJECT, cb=on_message, pending_msgs_limit=count + 1)
    await subscriber.flush()
    start = time.perf_counter()
    for _ in range(count):
        await publisher.publish(SUBJECT, PAYLOAD)
    await publisher.flush()
    await done.wait()
    elapsed = time.perf_counter() - start
    await publisher.close()
    await subscriber.close()
    return count / elapsed


async def plain_latency(url: str, count: int) -> list[float]:
    import asyncio

    import nats

    requester = await nats.connect(url)
    responder = await nats.connect(url)

    async def echo(msg: Any) -> None:
        await responder.publish(msg.reply, msg.data)

    await responder.subscribe(ECHO, cb=echo)
    await responder.flush()
    # The server may not route to a brand-new subscription for a moment.
    for _ in range(100):
        try:
            await requester.request(ECHO, PAYLOAD, timeout=5)
            break
        except nats.errors.NoRespondersError:
            await asyncio.sleep(0.01)
    samples = []
    for n in range(WARMUP_REQUESTS + count):
        start = time.perf_counter()
        await requester.request(ECHO, PAYLOAD, timeout=5)
        if n >= WARMUP_REQUESTS:
            samples.append(time.perf_counter() - start)
    await requester.close()
    await responder.close()
    return samples


async def bus_throughput(url: str, count: int) -> float:
    import trio

    from volta.bus import open_bus

    async with (
        open_bus(url) as subscriber_bus,
        open_bus(url) as publisher,
        subscriber_bus.subscribe(SUBJECT, max_messages=count + 1) as subscription,
    ):
        await subscriber_bus.flush()
        done = trio.Event()

        async def consume() -> None:
            received = 0
            async for _ in subscription:
                received += 1
                if received == count:
                    done.set()
                    return

        async with trio.open_nursery() as nursery:
            nursery.start_soon(consume)
            start = time.perf_counter()
            for _ in range(count):
                await publisher.publish(SUBJECT, PAYLOAD)
            await publisher.flush()
            await done.wait()
            elapsed = time.perf_counter() - start
    return count / elapsed


async def bus_latency(url: str, count: int) -> list[float]:
    import trio

    from volta.bus import NoResponders, open_bus

    samples: list[float] = []
    async with (
        open_bus(url) as requester,
        open_bus(url) as responder,
        trio.open_nursery() as nursery,
    ):

        async def echo(task_status: trio.TaskStatus[None]) -> None:
            async with responder.subscribe(ECHO) as requests:
                await responder.flush()
                task_status.started()
                async for request in requests:
                    await responder.respond(request, request.data)

        await nursery.start(echo)
        for _ in range(100):  # as in plain_latency
            try:
                await requester.request(ECHO, PAYLOAD, timeout=5)
                break
            except NoResponders:
                await trio.sleep(0.01)
        for n in range(WARMUP_REQUESTS + count):
            start = time.perf_counter()
            await requester.request(ECHO, PAYLOAD, timeout=5)
            if n >= WARMUP_REQUESTS:
                samples.append(time.perf_counter() - start)
        nursery.cancel_scope.cancel()
    return samples


def run_worker(kind: str, url: str, messages: int, requests: int) -> dict[str, Any]:
    if kind == "plain":
        import asyncio

        with asyncio.Runner(loop_factory=asyncio.SelectorEventLoop) as runner:
            rate = runner.run(plain_throughput(url, messages))
            samples = runner.run(plain_latency(url, requests))
    elif kind in ("on-trio-asyncio", "on-batching-loop"):
        import trio
        import trio_asyncio

        from volta.bus._loop import BatchingEventLoop

        async def both() -> tuple[float, list[float]]:
            async with trio_asyncio.open_loop() as loop:
                if kind == "on-batching-loop":
                    loop.__class__ = BatchingEventLoop
                rate = await trio_asyncio.aio_as_trio(plain_throughput)(url, messages)
                samples = await trio_asyncio.aio_as_trio(plain_latency)(url, requests)
                return rate, samples

        rate, samples = trio.run(both)
    else:
        import trio

        rate = trio.run(bus_throughput, url, messages)
        samples = trio.run(bus_latency, url, requests)
    return {
        "throughput": rate,
        "p50_us": percentile(samples, 0.50) * 1e6,
        "p99_us": percentile(samples, 0.99) * 1e6,
    }


# --- orchestration ------------------------------------------------------------------


def measure(kind: str, url: str, messages: int, requests: int) -> dict[str, Any]:
    command = [
        sys.executable,
        __file__,
        "--worker",
        kind,
        "--url",
        url,
        "--messages",
        str(messages),
        "--requests",
        str(requests),
    ]
    output = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if output.returncode != 0:
        raise RuntimeError(f"{kind} worker failed:\n{output.stderr[-3000:]}")
    return dict(json.loads(output.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--worker", choices=["plain", "on-trio-asyncio", "on-batching-loop", "bus"])
    parser.add_argument("--url")
    args = parser.parse_args()

    if args.worker:
        print(json.dumps(run_worker(args.worker, args.url, args.messages, args.requests)))
        return

    import trio

    from volta.bus import run_nats_server

    kinds = ["plain", "on-trio-asyncio", "on-batching-loop", "bus"]
    results: dict[str, list[dict[str, Any]]] = {kind: [] for kind in kinds}

    async def run_all() -> None:
        async with run_nats_server() as server:
            for _ in range(args.rounds):
                for kind in kinds:
                    results[kind].append(
                        await trio.to_thread.run_sync(
                            measure, kind, server.url, args.messages, args.requests
                        )
                    )

    trio.run(run_all)

    def median(kind: str, key: str) -> float:
        return float(statistics.median(r[key] for r in results[kind]))

    print(
        f"{args.messages} x 128 B pub->sub; {args.requests} sequential requests; "
        f"median of {args.rounds} rounds, each in its own process"
    )
    print(f"{'':18}{'msg/s':>12}{'p50 us':>10}{'p99 us':>10}")
    for kind in kinds:
        print(
            f"{kind:18}{median(kind, 'throughput'):>12,.0f}"
            f"{median(kind, 'p50_us'):>10.0f}{median(kind, 'p99_us'):>10.0f}"
        )
    summary = {
        "throughput_ratio": round(median("bus", "throughput") / median("plain", "throughput"), 3),
        "latency_p50_ratio": round(median("bus", "p50_us") / median("plain", "p50_us"), 3),
        "latency_p99_ratio": round(median("bus", "p99_us") / median("plain", "p99_us"), 3),
        "stock_loop_latency_p50_ratio": round(
            median("on-trio-asyncio", "p50_us") / median("plain", "p50_us"), 3
        ),
        "batching_loop_latency_p50_ratio": round(
            median("on-batching-loop", "p50_us") / median("plain", "p50_us"), 3
        ),
        "plain_msgs_per_s": round(median("plain", "throughput")),
        "bus_msgs_per_s": round(median("bus", "throughput")),
        "plain_p50_us": round(median("plain", "p50_us")),
        "bus_p50_us": round(median("bus", "p50_us")),
        "baseline": "separate process, asyncio.Runner(loop_factory=SelectorEventLoop)",
        "rounds": args.rounds,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
