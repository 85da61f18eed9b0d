"""Agents at scale: restart latency, idle memory and start-up, directory and router latency.

Usage: python bench/agents.py [--sizes 1000,10000] [--restarts N] [--requests N] [--quick]
       python bench/agents.py --profile N   (where start-up time and memory go, N agents)

The parent starts one nats-server on loopback (volta.bus.run_nats_server) and runs
every measurement in a process of its own: RSS means something only in a fresh
interpreter, and one measurement's leftovers (tasks, garbage, subscriptions) must
not slow the next.

1. restart: one agent whose handler raises AgentFault on "crash" (the inbox crashes, the
   agent's supervisor restarts it). Supervisor level: the EXIT and START events of
   the inbox on node.events (their ``at`` is trio time); no probing, so nothing
   else runs during a restart. End to end: after the crash, probes are sent every
   ``--probe-ms`` until one is answered by the new inbox (the handler tags answers
   with its crash count); resolution is that interval. Run twice: with logging as
   ``volta run`` configures it (INFO, to /dev/null here) and with logging off.
2. scale N: N idle agents (EchoHandler, one built-in capability each, heartbeat
   30 s) on the node's one connection. RSS (VmRSS) before the node is built and
   after all agents started and a settle; start-up is ``nursery.start(node.run)``
   returning (agents start one after another, each flushing its subscriptions),
   with the process CPU time and the cyclic GC's share of it. Then one
   ``mcp.list_agents`` and an orderly stop. A start-up that passes
   ``--startup-limit`` is reported as far as it got (agents started, RSS so far).
   Idle CPU is measured over one heartbeat interval, in which every agent beats once.
3. latency: sequential requests from a second connection in the same process:
   raw bus request-reply (the floor), the agent's capability endpoint directly,
   ``request_capability`` through the router, and ``mcp.list_agents``, with the
   seed's 3 agents and again with 1,000 agents listed.

Targets are printed as ratios, never asserted. The default run takes about five
minutes on two cores (most of it the 10,000-agent process); --quick takes seconds.
The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import math
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import trio

from volta.actors import (
    AgentContext,
    AgentFault,
    AgentSpec,
    CapabilityError,
    EchoHandler,
    SupervisionPolicy,
)
from volta.actors._context import PendingAsks  # what tests' client_context uses too
from volta.bus import Bus, BusOptions, open_bus, run_nats_server
from volta.node import Directory, Node, NodeSpec
from volta.protocol import (
    CAPABILITY_REQUEST_CODEC,
    MCP_LIST_AGENTS,
    CapabilityRequest,
    ErrorCode,
    Message,
    MessageType,
    Presence,
    agent_message,
    capability_endpoint,
)
from volta.supervisor import EventKind, SupervisorEvent

RESTART_TARGET_MS = 5.0
MEMORY_TARGET_MIB = 1024.0
MEMORY_TARGET_AGENTS = 10_000
HEARTBEAT = 30.0  # the default: idle means idle
CAPABILITIES = ("echo", "uppercase", "word_count", "sum")
VICTIM = "victim"
CLIENT = "bench"
ECHO = "bench.echo"
TEXT = "the quick brown fox jumps over the lazy dog"
SEED = (
    ("alpha", ("echo", "uppercase")),
    ("beta", ("word_count",)),
    ("gamma", ("word_count", "sum")),
)
CLI_LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def percentile(samples: Sequence[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def summary_ms(samples: Sequence[float]) -> dict[str, float]:
    """p50/p99/max in milliseconds of samples in seconds."""
    return {
        "p50_ms": round(percentile(samples, 0.50) * 1e3, 3),
        "p99_ms": round(percentile(samples, 0.99) * 1e3, 3),
        "max_ms": round(max(samples) * 1e3, 3),
    }


def proc_status_mib(field: str) -> float:
    """A memory line of /proc/self/status (VmRSS, VmHWM), in MiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


class GcClock:
    """Wall time spent in the cyclic garbage collector, from gc.callbacks."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.longest = 0.0
        self.collections = [0, 0, 0]
        self._started = 0.0
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            pause = time.perf_counter() - self._started
            self.seconds += pause
            self.longest = max(self.longest, pause)
            self.collections[info["generation"]] += 1


def count_tasks() -> int:
    """Every trio task in this run."""
    root = trio.lowlevel.current_root_task()
    assert root is not None
    count, stack = 0, [root]
    while stack:
        task = stack.pop()
        count += 1
        for nursery in task.child_nurseries:
            stack.extend(nursery.child_tasks)
    return count


def client_context(bus: Bus) -> AgentContext:
    """The agent API for code that is not an agent (as tests/mesh.py does)."""
    return AgentContext(CLIENT, CLIENT, (), bus, PendingAsks(), 10.0)


def configure_logging(mode: str) -> None:
    if mode == "off":
        logging.disable(logging.CRITICAL)
    else:  # as `volta run` does (volta/_cli.py), written where it costs no terminal
        logging.basicConfig(
            level=logging.INFO,
            format=CLI_LOG_FORMAT,
            stream=open(os.devnull, "w"),  # noqa: SIM115
        )


async def directory_filled(directory: Directory, count: int, *, online: bool = False) -> None:
    """Wait (bounded by the caller's cancel scope) until the directory knows ``count`` agents."""

    def known() -> int:
        agents = directory.agents()
        return sum(a.status is Presence.ONLINE for a in agents) if online else len(agents)

    while known() < count:  # noqa: ASYNC110 - the directory has no event to wait on
        await trio.sleep(0.05)


async def timed(call: Callable[[], Awaitable[object]], count: int, warmup: int) -> list[float]:
    samples = []
    for n in range(warmup + count):
        start = time.perf_counter()
        await call()
        if n >= warmup:
            samples.append(time.perf_counter() - start)
    return samples


# --- 1. restart -------------------------------------------------------------------------


class Crashes:
    """Answers with the text and its crash count; raises on "crash" (crashing the inbox)."""

    def __init__(self) -> None:
        self.crashes = 0
        self.raised_at = math.nan

    async def on_message(self, message: Message, context: AgentContext) -> str | None:
        if message.message == "crash":
            self.crashes += 1
            self.raised_at = trio.current_time()
            raise AgentFault("crash requested by the benchmark")
        return f"{message.message} crashes={self.crashes}"

    async def on_capability(self, capability: str, input: Any, context: AgentContext) -> Any:
        raise CapabilityError(ErrorCode.NO_CAPABILITY, "serves nothing")


def query(text: str) -> Message:
    return Message(sender=CLIENT, to=VICTIM, message=text, type=MessageType.QUERY)


async def inbox_restart(events: trio.MemoryReceiveChannel[Any]) -> dict[EventKind, float]:
    """Trio times of the victim inbox's EXIT, RESTART and START events, up to START."""
    seen: dict[EventKind, float] = {}
    async for event in events:
        if (
            isinstance(event, SupervisorEvent)
            and event.supervisor == VICTIM
            and event.child == "inbox"
        ):
            seen[event.kind] = event.at
            if event.kind is EventKind.START:
                return seen
    raise RuntimeError("node.events ended")


async def restart_worker(url: str, count: int, probe_s: float) -> dict[str, Any]:
    warmup = max(5, count // 10)
    handler = Crashes()
    policy = SupervisionPolicy(max_restarts=1_000_000, period=1.0)
    spec = NodeSpec(
        agents=[AgentSpec(id=VICTIM, handler=handler, supervision=policy)],
        nats=BusOptions(servers=(url,)),
    )
    node = Node(spec)
    detect: list[float] = []  # handler raised -> EXIT event
    restart: list[float] = []  # EXIT -> START: the supervisor's restart
    sent_to_start: list[float] = []  # crash published -> START
    end_to_end: list[float] = []  # crash published -> a probe answered by the new inbox
    probes: list[int] = []  # probes sent per end-to-end round
    answers_send, answers = trio.open_memory_channel[tuple[float, Message]](math.inf)

    async with (
        open_bus(url) as client,
        client.subscribe_messages(agent_message(CLIENT)) as inbox,
        trio.open_nursery() as nursery,
    ):
        await client.flush()

        async def collect() -> None:
            async for message in inbox:
                answers_send.send_nowait((trio.current_time(), message))

        nursery.start_soon(collect)
        await nursery.start(node.run)
        async with node.events.watch(10_000) as events:
            # Supervisor level: nothing but the crash and the restart run.
            for n in range(warmup + count):
                sent = trio.current_time()
                await client.publish(agent_message(VICTIM), query("crash"))
                with trio.fail_after(5):
                    seen = await inbox_restart(events)
                if n >= warmup:
                    detect.append(seen[EventKind.EXIT] - handler.raised_at)
                    restart.append(seen[EventKind.START] - seen[EventKind.EXIT])
                    sent_to_start.append(seen[EventKind.START] - sent)
                await trio.sleep(0.002)  # the error reply and the old unsubscribes go by

            # End to end: probe until the new inbox answers.
            for n in range(warmup + count):
                expected = f" crashes={handler.crashes + 1}"
                tag = f"probe {n} "
                sent = trio.current_time()
                await client.publish(agent_message(VICTIM), query("crash"))
                probes.append(0)
                async with trio.open_nursery() as probing:

                    async def probe(tag: str = tag) -> None:
                        while True:
                            await client.publish(agent_message(VICTIM), query(f"{tag}{probes[-1]}"))
                            probes[-1] += 1
                            await trio.sleep(probe_s)

                    probing.start_soon(probe)
                    with trio.fail_after(5):
                        while True:
                            at, answer = await answers.receive()
                            if (
                                answer.message.startswith(tag)
                                and answer.message.endswith(expected)
                                and "error" not in answer.metadata
                            ):
                                break
                    probing.cancel_scope.cancel()
                with trio.fail_after(5):
                    await inbox_restart(events)
                if n >= warmup:
                    end_to_end.append(at - sent)
                await trio.sleep(0.002)
                while True:  # late answers to this round's probes
                    try:
                        answers.receive_nowait()
                    except trio.WouldBlock:
                        break
        stats = node.agents[VICTIM].statistics()
        nursery.cancel_scope.cancel()
    return {
        "restarts": count,
        "warmup": warmup,
        "agent_restarts_total": stats.restarts,  # warm-ups and both phases
        "detect": summary_ms(detect),
        "restart": summary_ms(restart),
        "sent_to_start": summary_ms(sent_to_start),
        "end_to_end": summary_ms(end_to_end),
        "probes_per_restart_p50": percentile(probes[warmup:], 0.5),
    }


# --- 2. many idle agents ------------------------------------------------------------------


def idle_agents(size: int, capabilities: int) -> list[AgentSpec]:
    handler = EchoHandler()  # stateless: one for all, as a real deployment would share code
    return [
        AgentSpec(
            id=f"agent-{i:05d}",
            handler=handler,
            capabilities=[CAPABILITIES[(i + j) % len(CAPABILITIES)] for j in range(capabilities)],
            heartbeat_interval=HEARTBEAT,
        )
        for i in range(size)
    ]


async def scale_worker(
    url: str,
    size: int,
    capabilities: int,
    settle: float,
    window: float,
    limit: float,
    no_gc: bool,
) -> dict[str, Any]:
    gc_clock = GcClock()
    if no_gc:
        gc.disable()
    result: dict[str, Any] = {"agents": size, "capabilities_per_agent": capabilities}
    rss_before = proc_status_mib("VmRSS")
    result["rss_before_mib"] = round(rss_before, 1)
    start = time.perf_counter()
    spec = NodeSpec(
        agents=idle_agents(size, capabilities),
        nats=BusOptions(servers=(url,)),
        heartbeat_interval=HEARTBEAT,
    )
    result["spec_s"] = round(time.perf_counter() - start, 3)
    node = Node(spec)
    async with trio.open_nursery() as nursery:
        ready = trio.Event()

        async def start_node() -> None:
            await nursery.start(node.run)
            ready.set()

        def started() -> int:
            return sum(1 for agent in node.agents.values() if agent.supervisor is not None)

        progress: list[tuple[float, int]] = []  # (seconds, agents started), every second

        async def sample() -> None:
            while not ready.is_set():
                progress.append((time.perf_counter() - start, started()))
                await trio.sleep(1)

        cpu, gc_s, start = time.process_time(), gc_clock.seconds, time.perf_counter()
        nursery.start_soon(start_node)
        nursery.start_soon(sample)
        with trio.move_on_after(limit):
            await ready.wait()
        startup = time.perf_counter() - start
        progress.append((startup, started()))
        result["start_rates"] = start_rates(progress, size)
        result["startup_cpu_s"] = round(time.process_time() - cpu, 2)
        result["startup_gc_s"] = round(gc_clock.seconds - gc_s, 2)
        result["gc_collections"] = list(gc_clock.collections)
        if no_gc:
            gc.enable()
        if ready.is_set():
            result["startup_s"] = round(startup, 2)
            result["startup_ms_per_agent"] = round(startup / size * 1e3, 3)
            await measure_idle(url, node, size, settle, window, rss_before, result)
        else:
            # Where it got: agents whose supervisor runs, and what the directory has heard.
            count = started()
            rss = proc_status_mib("VmRSS")
            result["started"] = count
            result["directory_entries"] = len(node.directory)
            result["rss_at_limit_mib"] = round(rss, 1)
            result["kib_per_started_agent"] = round((rss - rss_before) * 1024 / max(1, count), 1)
            result["error"] = (
                f"start-up passed {limit:g} s with {count} of {size} agents started "
                f"(the directory had heard of {len(node.directory)}; "
                f"{result['startup_cpu_s']:g} s CPU, {result['startup_gc_s']:g} s of it GC)"
            )
        start = time.perf_counter()
        nursery.cancel_scope.cancel()
    result["stop_s"] = round(time.perf_counter() - start, 2)
    return result


def start_rates(progress: list[tuple[float, int]], size: int) -> dict[str, float]:
    """Agents started per second over the first quarter and over the last 30 s of start-up."""
    quarter = next(((t, n) for t, n in progress if n >= size / 4), progress[-1])
    end_t, end_n = progress[-1]
    from_t, from_n = next(((t, n) for t, n in progress if t >= end_t - 30), progress[0])
    return {
        "first_quarter_per_s": round(quarter[1] / quarter[0], 1) if quarter[0] else 0.0,
        "last_30s_per_s": round((end_n - from_n) / (end_t - from_t), 1) if end_t > from_t else 0.0,
    }


async def measure_idle(
    url: str,
    node: Node,
    size: int,
    settle: float,
    window: float,
    rss_before: float,
    result: dict[str, Any],
) -> None:
    """RSS and tasks of the started agents, their CPU over one heartbeat interval (every
    agent beats once in it), then one mcp.list_agents of them all."""
    with trio.move_on_after(60):  # every announce and first beat processed
        await directory_filled(node.directory, size, online=True)
    result["directory_online"] = len(node.directory)
    await trio.sleep(settle)
    rss_after = proc_status_mib("VmRSS")
    result["rss_mib"] = round(rss_after, 1)
    result["kib_per_agent"] = round((rss_after - rss_before) * 1024 / size, 1)
    result["tasks_per_agent"] = round(count_tasks() / size, 1)
    cpu, start = time.process_time(), time.perf_counter()
    await trio.sleep(window)
    result["idle_window_s"] = window
    result["idle_cpu_percent"] = round(
        100 * (time.process_time() - cpu) / (time.perf_counter() - start), 1
    )
    result["peak_rss_mib"] = round(proc_status_mib("VmHWM"), 1)

    # After the memory reading: it opens a connection.
    async with open_bus(url) as client:
        start = time.perf_counter()
        try:
            listed = await client_context(client).list_agents(timeout=10)
            result["list_agents"] = {
                "ok": True,
                "agents": len(listed),
                "ms": round((time.perf_counter() - start) * 1e3, 1),
            }
        except Exception as error:
            result["list_agents"] = {"ok": False, "error": repr(error)}
    await trio.sleep(0.5)
    assert node.supervisor is not None
    result["directory_restarts"] = dict(node.supervisor.statistics().child_restarts).get(
        "directory", 0
    )


async def profile_worker(url: str, size: int, what: str) -> dict[str, Any]:
    """cProfile of the start-up, or tracemalloc of what the started agents hold."""
    import cProfile
    import io
    import pstats
    import tracemalloc

    spec = NodeSpec(
        agents=idle_agents(size, 1),
        nats=BusOptions(servers=(url,)),
        heartbeat_interval=HEARTBEAT,
    )
    node = Node(spec)
    text = io.StringIO()
    async with trio.open_nursery() as nursery:
        if what == "cpu":
            profiler = cProfile.Profile()
            start = time.perf_counter()
            profiler.enable()
            await nursery.start(node.run)
            profiler.disable()
            elapsed = time.perf_counter() - start
            stats = pstats.Stats(profiler, stream=text)
            stats.sort_stats("tottime").print_stats(25)
            stats.sort_stats("cumulative").print_stats(r"volta/", 30)
        else:
            tracemalloc.start(1)
            before = tracemalloc.take_snapshot()
            start = time.perf_counter()
            await nursery.start(node.run)
            elapsed = time.perf_counter() - start
            await trio.sleep(1.0)
            gc.collect()
            after = tracemalloc.take_snapshot()
            tracemalloc.stop()
            for key, top in (("filename", 15), ("lineno", 25)):
                differences = after.compare_to(before, key)
                total = sum(d.size_diff for d in differences)
                print(f"traced {total / size / 1024:.1f} KiB per agent, by {key}", file=text)
                for d in differences[:top]:
                    where = str(d.traceback).replace(sys.prefix + "/lib/python3.11/", "")
                    print(
                        f"{d.size_diff / size / 1024:8.2f} KiB {d.count_diff / size:7.1f} objects"
                        f"  {where}",
                        file=text,
                    )
        nursery.cancel_scope.cancel()
    return {"agents": size, "what": what, "startup_s": round(elapsed, 2), "text": text.getvalue()}


# --- 3. directory and router latency ------------------------------------------------------


async def latency_worker(url: str, count: int, listed: int) -> dict[str, Any]:
    warmup = max(20, count // 10)
    request = CAPABILITY_REQUEST_CODEC.encode(
        CapabilityRequest(capability="word_count", input=TEXT, timeout=10.0)
    )
    results: dict[str, Any] = {"requests": count}
    gc_clock = GcClock()
    async with (
        open_bus(url) as client,
        open_bus(url) as responder,
        responder.subscribe(ECHO) as echoes,
        trio.open_nursery() as nursery,
    ):
        await responder.flush()

        async def echo() -> None:
            async for delivery in echoes:
                await responder.respond(delivery, delivery.data)

        nursery.start_soon(echo)
        context = client_context(client)
        results["raw"] = summary_ms(
            await timed(lambda: client.request(ECHO, request), count, warmup)
        )
        for total in (len(SEED), listed):
            agents = [
                AgentSpec(id=agent_id, handler=EchoHandler(), capabilities=caps)
                for agent_id, caps in SEED
            ]
            agents += idle_agents(total - len(SEED), 0)
            spec = NodeSpec(agents=agents, nats=BusOptions(servers=(url,)))
            node = Node(spec)
            async with trio.open_nursery() as running:
                await running.start(node.run)
                with trio.fail_after(60):
                    await directory_filled(node.directory, total)
                results[f"invoke_{total}"] = summary_ms(
                    await timed(
                        lambda: client.request(capability_endpoint("word_count"), request),
                        count,
                        warmup,
                    )
                )
                answer = await context.request_capability("word_count", TEXT)
                assert answer == len(TEXT.split()), answer
                results[f"capability_{total}"] = summary_ms(
                    await timed(
                        lambda: context.request_capability("word_count", TEXT), count, warmup
                    )
                )
                lists = count if total <= len(SEED) else max(50, count // 10)
                reply = await client.request(MCP_LIST_AGENTS, b"{}")
                results[f"list_agents_{total}_bytes"] = len(reply.data)
                results[f"list_agents_{total}"] = summary_ms(
                    await timed(context.list_agents, lists, max(5, lists // 10))
                )
                results[f"list_agents_raw_{total}"] = summary_ms(
                    await timed(lambda: client.request(MCP_LIST_AGENTS, b"{}"), lists, 5)
                )
                results[f"gc_longest_pause_ms_{total}"] = round(gc_clock.longest * 1e3, 1)
                gc_clock.longest = 0.0
                running.cancel_scope.cancel()
        nursery.cancel_scope.cancel()
    return results


# --- orchestration ------------------------------------------------------------------------


def run_worker(arguments: list[str], timeout: float) -> dict[str, Any]:
    """Run ``kind --url URL ...`` in a fresh interpreter; its last stdout line is the result."""
    command = [sys.executable, __file__, "--worker", *arguments]
    print(f"... {arguments[0]} {' '.join(arguments[3:])}", file=sys.stderr, flush=True)
    try:
        output = subprocess.run(
            command, check=True, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return {"error": f"no result within {timeout:g} s"}
    except subprocess.CalledProcessError as failure:
        tail = " | ".join(failure.stderr.strip().splitlines()[-3:])
        return {"error": f"exit {failure.returncode}: {tail}"}
    return dict(json.loads(output.stdout.strip().splitlines()[-1]))


def worker_main(args: argparse.Namespace) -> dict[str, Any]:
    if args.worker == "restart":
        configure_logging(args.logging)
        return trio.run(restart_worker, args.url, args.restarts, args.probe_ms / 1e3)
    logging.disable(logging.CRITICAL)  # no terminal cost in the numbers
    if args.worker == "scale":
        return trio.run(
            scale_worker,
            args.url,
            args.agents,
            args.capabilities,
            args.settle,
            args.idle_window,
            args.startup_limit,
            args.no_gc,
        )
    if args.worker == "latency":
        return trio.run(latency_worker, args.url, args.requests, args.listed)
    return trio.run(profile_worker, args.url, args.agents, args.worker.removeprefix("profile-"))


def fraction(value: float | None, target: float) -> float | None:
    return None if value is None else round(value / target, 3)


def ratio(value: float | None, target: float) -> str:
    if value is None:
        return "no measurement to compare (see above)"
    verdict = "met" if value < target else "NOT met"
    return f"{value / target:.2f} of the target ({verdict})"


def print_scale(size: int, r: dict[str, Any]) -> None:
    rates = r.get("start_rates", {})
    rate_line = (
        f"{'':>9}agents started per second: {rates.get('first_quarter_per_s', 0):g} in the "
        f"first quarter, {rates.get('last_30s_per_s', 0):g} in the last 30 s of start-up"
    )
    if "startup_s" not in r:
        print(f"{size:>7}  FAILED: {r.get('error')}")
        if "rss_at_limit_mib" in r:
            print(
                f"{'':>9}at the limit: RSS {r['rss_at_limit_mib']:.0f} MiB, "
                f"{r['kib_per_started_agent']:.1f} KiB per started agent; "
                f"stopping them took {r['stop_s']:g} s"
            )
        print(rate_line)
        return
    listing = r["list_agents"]
    listed = (
        f"{listing['agents']} in {listing['ms']:g} ms"
        if listing["ok"]
        else f"FAILED {listing['error']}"
    )
    print(
        f"{size:>7}{r['startup_s']:>9.2f}{r['startup_ms_per_agent']:>8.2f}"
        f"{r['startup_cpu_s']:>7.1f}{r['startup_gc_s']:>7.1f}{r['rss_mib']:>9.0f}"
        f"{r['kib_per_agent']:>9.1f}{r['tasks_per_agent']:>10.1f}"
        f"{r['idle_cpu_percent']:>10.1f}{r['stop_s']:>8.1f}  {listed}; "
        f"directory restarts {r['directory_restarts']}"
    )
    print(rate_line)


def print_restart(label: str, result: dict[str, Any]) -> None:
    if "error" in result:
        print(f"{label}: failed: {result['error']}")
        return
    rows = [
        ("handler raised -> EXIT event", "detect"),
        ("EXIT -> START (supervisor restart)", "restart"),
        ("crash published -> START", "sent_to_start"),
        ("crash published -> answering (e2e)", "end_to_end"),
    ]
    print(f"{label}")
    for title, key in rows:
        r = result[key]
        print(f"  {title:38}{r['p50_ms']:>9.3f}{r['p99_ms']:>9.3f}{r['max_ms']:>9.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", help="agent counts, comma-separated (1000,10000)")
    parser.add_argument("--restarts", type=int, default=200)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--listed", type=int, default=1000, help="agents for the 2nd latency run")
    parser.add_argument("--capabilities", type=int, default=1, help="per idle agent (0-4)")
    parser.add_argument("--probe-ms", type=float, default=1.0)
    parser.add_argument("--settle", type=float, default=2.0, help="seconds before reading RSS")
    parser.add_argument(
        "--idle-window", type=float, help=f"seconds of idle CPU ({HEARTBEAT:g}: every agent beats)"
    )
    parser.add_argument("--startup-limit", type=float, default=180.0)
    parser.add_argument("--no-gc", action="store_true", help="GC off during start-up (experiment)")
    parser.add_argument("--quick", action="store_true", help="small sizes, a smoke run")
    parser.add_argument("--profile", type=int, metavar="N", help="profile the start of N agents")
    parser.add_argument(
        "--worker",
        choices=["restart", "scale", "latency", "profile-cpu", "profile-memory"],
        help=argparse.SUPPRESS,
    )
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--agents", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--logging", choices=["cli", "off"], default="cli", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        print(json.dumps(worker_main(args)))
        return
    if args.quick:
        args.restarts, args.requests, args.listed = 30, 200, 100
    args.sizes = args.sizes or ("100,300" if args.quick else "1000,10000")
    if args.idle_window is None:
        args.idle_window = 3.0 if args.quick else HEARTBEAT
    sizes = [int(size) for size in args.sizes.split(",") if size]
    results: dict[str, Any] = {}
    url = ""

    async def worker(kind: str, *arguments: object) -> dict[str, Any]:
        command = [kind, "--url", url, *(str(a) for a in arguments)]
        return await trio.to_thread.run_sync(run_worker, command, 900.0)

    async def run_all() -> None:
        nonlocal url
        async with run_nats_server() as server:
            url = server.url
            if args.profile:
                for what in ("cpu", "memory"):
                    results[what] = await worker(f"profile-{what}", "--agents", args.profile)
                return
            common = ["--restarts", args.restarts, "--probe-ms", args.probe_ms]
            results["restart"] = await worker("restart", "--logging", "cli", *common)
            results["restart_no_logging"] = await worker("restart", "--logging", "off", *common)
            results["latency"] = await worker(
                "latency", "--requests", args.requests, "--listed", args.listed
            )
            scale = ["--capabilities", args.capabilities, "--settle", args.settle]
            scale += ["--idle-window", args.idle_window]
            scale += ["--startup-limit", args.startup_limit, *(["--no-gc"] if args.no_gc else [])]
            for size in sizes:
                results[str(size)] = await worker("scale", "--agents", size, *scale)

    trio.run(run_all)

    if args.profile:
        for what in ("cpu", "memory"):
            result = results[what]
            print(f"=== {what}: start-up of {args.profile} agents ===")
            print(result.get("text") or result.get("error"))
        print(
            json.dumps(
                {
                    "profile_agents": args.profile,
                    "startup_s_under_cprofile": results["cpu"].get("startup_s"),
                    "startup_s_under_tracemalloc": results["memory"].get("startup_s"),
                }
            )
        )
        return

    restart, quiet, latency = results["restart"], results["restart_no_logging"], results["latency"]
    print(
        f"Restart of a crashed inbox: {args.restarts} crashes of one agent, "
        f"probes every {args.probe_ms:g} ms for e2e"
    )
    print(f"  {'':38}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}")
    print_restart("logging as `volta run` (INFO, to /dev/null)", restart)
    print_restart("logging off", quiet)
    restart_p50 = restart.get("restart", {}).get("p50_ms")
    print(f"target: restart under {RESTART_TARGET_MS:g} ms p50: {ratio(restart_p50, 5.0)}")
    print()

    print(
        f"Idle agents on one shared connection, each size in a fresh process "
        f"({args.capabilities} capability each, heartbeat {HEARTBEAT:g} s; "
        f"idle CPU over {args.idle_window:g} s)"
    )
    print(
        f"{'agents':>7}{'start s':>9}{'ms/agt':>8}{'cpu s':>7}{'gc s':>7}{'RSS MiB':>9}"
        f"{'KiB/agt':>9}{'tasks/agt':>10}{'idle cpu%':>10}{'stop s':>8}  list_agents"
    )
    for size in sizes:
        print_scale(size, results[str(size)])
    largest = results[str(max(sizes))]
    rss = largest.get("rss_mib")
    if max(sizes) >= MEMORY_TARGET_AGENTS:
        shown = "not measured" if rss is None else f"{rss:.0f} MiB"
        print(
            f"target: {MEMORY_TARGET_AGENTS:,} idle agents under {MEMORY_TARGET_MIB:g} MiB: "
            f"{shown}, {ratio(rss, MEMORY_TARGET_MIB)}"
        )
    print()

    listed = args.listed
    print(
        f"Request latency, {args.requests} sequential requests from a second connection "
        f"in the same process (list_agents with {listed}: {max(50, args.requests // 10)})"
    )
    print(f"  {'':48}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}")
    rows = [
        ("raw bus request-reply (floor)", "raw"),
        ("capability.invoke.word_count, agent directly", "invoke_3"),
        ("request_capability via router, 3 agents", "capability_3"),
        (f"request_capability via router, {listed} agents", f"capability_{listed}"),
        ("mcp.list_agents, 3 agents", "list_agents_3"),
        (f"mcp.list_agents, {listed} agents", f"list_agents_{listed}"),
        ("  the same, reply only (no decoding)", f"list_agents_raw_{listed}"),
    ]
    if "error" in latency:
        print(f"  failed: {latency['error']}")
    else:
        for title, key in rows:
            r = latency[key]
            print(f"  {title:48}{r['p50_ms']:>9.3f}{r['p99_ms']:>9.3f}{r['max_ms']:>9.3f}")
        overhead = latency["capability_3"]["p50_ms"] / latency["raw"]["p50_ms"]
        print(f"router path / raw request-reply (p50, 3 agents): {overhead:.2f}x")
        print(
            f"longest GC pause: {latency['gc_longest_pause_ms_3']:g} ms with 3 agents, "
            f"{latency[f'gc_longest_pause_ms_{listed}']:g} ms with {listed}"
        )

    summary: dict[str, Any] = {
        "restart_p50_ms": restart_p50,
        "restart_p99_ms": restart.get("restart", {}).get("p99_ms"),
        "restart_target_ratio": fraction(restart_p50, RESTART_TARGET_MS),
        "restart_e2e_p50_ms": restart.get("end_to_end", {}).get("p50_ms"),
        "restart_e2e_p99_ms": restart.get("end_to_end", {}).get("p99_ms"),
        "restart_no_logging_p50_ms": quiet.get("restart", {}).get("p50_ms"),
        "restart_no_logging_e2e_p50_ms": quiet.get("end_to_end", {}).get("p50_ms"),
        "agents": max(sizes),
        "rss_mib": rss,
        "rss_target_ratio": fraction(rss, MEMORY_TARGET_MIB),
        "startup_s": largest.get("startup_s"),
        "startup_error": largest.get("error"),
        "sizes": {str(size): results[str(size)] for size in sizes},
        "latency": latency,
        "restart": restart,
        "restart_no_logging": quiet,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
