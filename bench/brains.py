"""What do brains cost besides the model? Volta's overhead per turn and per tool call.

Usage: python bench/brains.py [--calls N] [--tasks N] [--quick]

A fake Messages API (tests/fake_anthropic.py) answers at once, in a process of its
own, so its threads do not share this process's GIL. Everything else is real: the
anthropic SDK (httpx), a nats-server on loopback, a node, the public client.

1. baseline: a bare ``AsyncAnthropic.messages.create`` to the fake, under trio.
2. turn: ``client.ask`` to a brain whose model answers at once: one model call, plus
   the bus both ways, the inbox, the unit, memory, progress. Overhead per turn =
   turn - baseline.
3. tool call: the same, but the model first calls ``request_capability`` (served by a
   Python function on another agent, through the router), then answers: two model
   calls and one tool call. Overhead per tool call = tool - turn - baseline.
4. load: ``--tasks`` concurrent asks to a coordinator that asks two specialists per
   task (four model calls a task): tasks per second, p50 and p99, errors, and RSS
   growth of this process.

Targets (ratios, printed, never asserted): overhead per tool call under 2 ms p50;
the load with no error and RSS growth under 100 MiB. The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anthropic
import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ for the fake API

from tests.mesh import agent, node_spec, running_node
from volta.actors import open_client
from volta.actors._functions import FunctionCapabilities
from volta.brains import Brain, BrainSpec, ClaudeModel
from volta.bus import NatsServerConfig, run_nats_server

KEY = "sk-ant-bench-not-a-key"

FAKE = """
import sys, time
from tests.fake_anthropic import FakeMessagesAPI, text, tool_use

def script(request):
    if request.agent == "coordinator":
        if not request.tool_results:
            return tool_use(("ask_agent", {"to": "left", "question": "part 1"}),
                            ("ask_agent", {"to": "right", "question": "part 2"}))
        return text("combined")
    if request.agent == "tooler" and not request.tool_results:
        return tool_use(("request_capability", {"capability": "echo", "input": "x"}))
    return text("done")

with FakeMessagesAPI(script).running() as api:
    print(api.url, flush=True)
    sys.stdin.read()
"""


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def brain(agent_id: str, url: str, team: tuple[str, ...] = ()) -> Brain:
    model = ClaudeModel(api_key=KEY, agent_id=agent_id, base_url=url, max_retries=0)
    return Brain(BrainSpec(system=f"You are {agent_id}.", team=team, history_turns=0), model)


async def baseline(url: str, calls: int) -> list[float]:
    client = anthropic.AsyncAnthropic(api_key=KEY, base_url=url, max_retries=0)
    samples = []
    try:
        for _ in range(calls):
            start = time.perf_counter()
            await client.messages.create(
                model="claude-sonnet-5-5",
                max_tokens=64,
                messages=[{"role": "user", "content": "hi"}],
                extra_headers={"x-volta-agent": "bare"},
            )
            samples.append(time.perf_counter() - start)
    finally:
        await client.close()
    return samples


async def measure(url: str, calls: int, tasks: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    results["baseline"] = await baseline(url, calls)
    agents = [
        agent("solo", handler=brain("solo", url), task_timeout=60.0),
        agent(
            "tooler",
            handler=brain("tooler", url),
            task_timeout=60.0,
        ),
        agent(
            "echoer",
            ["echo"],
            handler=FunctionCapabilities(brain("echoer", url), {"echo": lambda value: value}),
        ),
        agent(
            "coordinator", handler=brain("coordinator", url, ("left", "right")), max_concurrency=256
        ),
        agent("left", handler=brain("left", url), max_concurrency=256),
        agent("right", handler=brain("right", url), max_concurrency=256),
    ]
    async with run_nats_server(NatsServerConfig()) as server:
        spec = node_spec(server.url, agents, heartbeat_interval=30.0)
        async with running_node(spec), open_client(server.url) as client:
            for name, target in (("turn", "solo"), ("tool", "tooler")):
                samples = []
                for _ in range(calls):
                    start = time.perf_counter()
                    await client.ask(target, "go", timeout=30)
                    samples.append(time.perf_counter() - start)
                results[name] = samples
            rss_before = rss_mib()
            latencies: list[float] = []
            errors: list[str] = []

            async def one() -> None:
                start = time.perf_counter()
                try:
                    await client.ask("coordinator", "a task", timeout=120)
                except Exception as error:  # counted: the target is none
                    errors.append(repr(error))
                    return
                latencies.append(time.perf_counter() - start)

            start = time.perf_counter()
            async with trio.open_nursery() as nursery:
                for _ in range(tasks):
                    nursery.start_soon(one)
            elapsed = time.perf_counter() - start
            results["load"] = {
                "tasks": tasks,
                "seconds": elapsed,
                "latencies": latencies,
                "errors": errors,
                "rss_growth_mib": rss_mib() - rss_before,
            }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    calls, tasks = (30, 50) if args.quick else (args.calls, args.tasks)
    fake = subprocess.Popen(
        [sys.executable, "-c", FAKE],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    try:
        assert fake.stdout is not None
        url = fake.stdout.readline().strip()
        results = trio.run(measure, url, calls, tasks)
    finally:
        if fake.stdin is not None:
            fake.stdin.close()
        fake.wait(10)
    p50 = {name: statistics.median(results[name]) * 1000 for name in ("baseline", "turn", "tool")}
    per_turn = p50["turn"] - p50["baseline"]
    per_tool = p50["tool"] - p50["turn"] - p50["baseline"]
    load = results["load"]
    lat = load["latencies"]
    print(f"{'':<38}{'p50 ms':>10}{'p99 ms':>10}")
    for name, label in (
        ("baseline", "bare SDK call to the fake"),
        ("turn", "ask: one model call"),
        ("tool", "ask: two calls and a tool call"),
    ):
        samples = results[name]
        print(f"{label:<38}{p50[name]:>10.3f}{percentile(samples, 0.99) * 1000:>10.3f}")
    print(
        f"Volta's overhead per brain turn (p50):   {per_turn:.3f} ms "
        f"({p50['turn'] / p50['baseline']:.2f}x a bare call)"
    )
    print(
        f"Volta's overhead per tool call (p50):    {per_tool:.3f} ms (target 2 ms: "
        f"{per_tool / 2:.2f} of it)"
    )
    rate = len(lat) / load["seconds"] if load["seconds"] else 0.0
    print(
        f"{load['tasks']} concurrent tasks (4 model calls each): {rate:.1f} tasks/s, "
        f"p50 {percentile(lat, 0.5) * 1000 if lat else float('nan'):.1f} ms, "
        f"p99 {percentile(lat, 0.99) * 1000 if lat else float('nan'):.1f} ms, "
        f"{len(load['errors'])} errors, RSS +{load['rss_growth_mib']:.1f} MiB "
        f"(target 100 MiB: {load['rss_growth_mib'] / 100:.2f} of it)"
    )
    summary = {
        "baseline_p50_ms": round(p50["baseline"], 3),
        "turn_p50_ms": round(p50["turn"], 3),
        "tool_p50_ms": round(p50["tool"], 3),
        "overhead_per_turn_ms": round(per_turn, 3),
        "overhead_per_tool_call_ms": round(per_tool, 3),
        "turn_ratio": round(p50["turn"] / p50["baseline"], 2),
        "tool_target_ratio": round(per_tool / 2, 2),
        "load_tasks": load["tasks"],
        "load_tasks_per_s": round(rate, 1),
        "load_p50_ms": round(percentile(lat, 0.5) * 1000, 1) if lat else None,
        "load_p99_ms": round(percentile(lat, 0.99) * 1000, 1) if lat else None,
        "load_errors": len(load["errors"]),
        "load_first_error": load["errors"][0] if load["errors"] else None,
        "rss_growth_mib": round(load["rss_growth_mib"], 1),
        "rss_target_ratio": round(load["rss_growth_mib"] / 100, 2),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
