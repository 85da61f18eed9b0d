"""The client commands of ``volta``: talk to the agents of a running mesh.

- ``volta agents``: who is there (a table, or ``--json``);
- ``volta send AGENT TEXT``: fire and forget;
- ``volta ask AGENT TEXT``: ask and wait; the task's progress is shown live on
  stderr as a tree (who thinks, who asks whom, who answers), the answer goes to
  stdout; Ctrl-C cancels the task on every agent it reached;
- ``volta capability NAME INPUT``: run a capability (INPUT is JSON, or else text).

All of them use the public client (``volta.actors.open_client``). NATS comes
from ``--nats-url``, else ``NATS_URL``, else ``nats://127.0.0.1:4222``; if it
cannot be reached, one line says so and the exit code is 2.

Exit codes: 0 done; 1 the agent answered with an error or did not answer in
time; 2 NATS unreachable or bad arguments; 130 cancelled (Ctrl-C).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Mapping
from typing import Any, TextIO

import trio

from volta._nursery import open_nursery
from volta._throttle import printable
from volta.actors import (
    AgentInfo,
    AskFailed,
    AskTimeout,
    CapabilityFailed,
    Client,
    ProgressEvent,
    TaskRefused,
    open_client,
)
from volta.bus import (
    BusError,
    BusOptions,
    ConnectFailed,
    InvalidSubject,
    NoResponders,
    RequestTimeout,
)

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_CANCELLED = 0, 1, 2, 130
DEFAULT_URL = "nats://127.0.0.1:4222"


def add_client_commands(commands: Any) -> None:
    """Add ``agents``, ``send``, ``ask`` and ``capability`` to the ``volta`` parser."""

    def common(command: argparse.ArgumentParser) -> None:
        command.add_argument(
            "--nats-url", help=f"NATS server URL (default NATS_URL or {DEFAULT_URL})"
        )
        command.add_argument(
            "--timeout", type=float, default=60.0, metavar="SECONDS", help="how long to wait"
        )

    agents = commands.add_parser("agents", help="list the agents of the mesh")
    agents.add_argument("--capability", help="only agents that serve it")
    agents.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    common(agents)

    send = commands.add_parser("send", help="send a message to an agent (no answer awaited)")
    send.add_argument("agent")
    send.add_argument("text")
    common(send)

    ask = commands.add_parser("ask", help="ask an agent and wait for the answer (progress live)")
    ask.add_argument("agent")
    ask.add_argument("text")
    ask.add_argument("--budget", type=int, metavar="TOKENS", help="tokens the whole task may spend")
    ask.add_argument("--thread", help="conversation thread id (agents remember per thread)")
    ask.add_argument("--quiet", action="store_true", help="no progress, just the answer")
    common(ask)

    capability = commands.add_parser("capability", help="run a capability on some agent")
    capability.add_argument("name")
    capability.add_argument("input", nargs="?", default=None, help="JSON, or else taken as text")
    common(capability)


def _options(args: argparse.Namespace, environ: Mapping[str, str]) -> BusOptions:
    overrides: dict[str, Any] = {"connect_timeout": min(2.0, args.timeout)}
    if args.nats_url:
        overrides["servers"] = args.nats_url
    elif not environ.get("NATS_URL"):
        overrides["servers"] = DEFAULT_URL
    return BusOptions.from_environ(environ, **overrides)


MAX_INDENT = 8
"""Deepest level the progress tree indents to. A task ``volta ask`` starts passes
through at most 8 parties, the client counted (``max_depth``, docs/PROTOCOL.md 5.10),
so a real tree never goes deeper; deeper events are forged, and they print at this
level, so a line's length never grows with the chain."""
MAX_SPANS = 10_000
"""Spans the progress tree remembers. Past it, events of a new span still print (one
level below their parent, if it is known, at most :data:`MAX_INDENT`), unremembered."""
_DETAIL_READ = 1000  # characters of a detail looked at, of any length on the wire
_DETAIL_SHOWN = 140


class ProgressTree:
    """Prints progress events as an indented tree of units (span -> depth).

    Each event makes one line of bounded length (indentation at most
    :data:`MAX_INDENT` levels, wire text escaped and cut) and the span table is
    bounded by :data:`MAX_SPANS`, so any flood of events makes output in
    proportion to the events, and no more memory than the bound.
    """

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._depth: dict[str, int] = {}

    def depth(self, event: ProgressEvent) -> int:
        """The level of the event's span (remembered, while there is room)."""
        depth = self._depth.get(event.span)
        if depth is None:
            parent = self._depth.get(event.parent, 0) if event.parent else 0
            depth = min(parent + 1, MAX_INDENT)
            if len(self._depth) < MAX_SPANS:
                self._depth[event.span] = depth
        return depth

    def __call__(self, event: ProgressEvent) -> None:
        # One line an event: the detail's line breaks become spaces, not \x0a.
        flat = " ".join(event.detail[:_DETAIL_READ].split()) if event.detail else ""
        detail = f": {printable(flat, _DETAIL_SHOWN)}" if flat else ""
        # A count below zero is nonsense from the wire: nothing is shown.
        tokens = f" [{event.tokens:,} tokens]" if event.tokens > 0 else ""
        agent = printable(event.agent, 64)
        line = f"{'  ' * self.depth(event)}{agent} {event.kind.value}{detail}{tokens}"
        print(line, file=self._out, flush=True)


def _table(agents: tuple[AgentInfo, ...]) -> str:
    rows = [("ID", "NAME", "STATUS", "INSTANCES", "CAPABILITIES")]
    rows += [
        (a.id, a.name, a.status.value, str(len(a.instances)), ", ".join(a.capabilities) or "-")
        for a in agents
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = []
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row[:4], widths, strict=True)]
        lines.append("  ".join([*cells, row[4]]).rstrip())
    return "\n".join(lines)


def _input(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


async def _agents(client: Client, args: argparse.Namespace) -> int:
    agents = await client.agents(capability=args.capability)
    if args.json:
        for info in agents:
            print(json.dumps(info.to_dict(), ensure_ascii=False))
    else:
        print(_table(agents) if agents else "no agents")
    return EXIT_OK


async def _send(client: Client, args: argparse.Namespace) -> int:
    await client.send(args.agent, args.text)
    print(f"sent to {args.agent}", file=sys.stderr)
    return EXIT_OK


async def _ask(client: Client, args: argparse.Namespace) -> int:
    progress = None if args.quiet else ProgressTree(sys.stderr)
    answer = await client.ask(
        args.agent,
        args.text,
        timeout=args.timeout,
        budget=args.budget,
        thread=args.thread,
        on_progress=progress,
    )
    print(answer.message)
    return EXIT_OK


async def _capability(client: Client, args: argparse.Namespace) -> int:
    result = await client.capability(args.name, _input(args.input), timeout=args.timeout)
    print(json.dumps(result, ensure_ascii=False))
    return EXIT_OK


COMMANDS = {"agents": _agents, "send": _send, "ask": _ask, "capability": _capability}


async def _main(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    options = _options(args, environ)
    try:
        async with open_client(options, timeout=args.timeout) as client:
            async with open_nursery() as nursery:
                outcome: list[int] = []

                async def command() -> None:
                    outcome.append(await COMMANDS[args.command](client, args))
                    nursery.cancel_scope.cancel()

                async def interrupt() -> None:
                    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                        async for _ in signals:
                            print("volta: cancelling the task on every agent", file=sys.stderr)
                            outcome.append(EXIT_CANCELLED)
                            nursery.cancel_scope.cancel()  # the ask cancels what it started
                            return

                nursery.start_soon(command)
                nursery.start_soon(interrupt)
            return outcome[0] if outcome else EXIT_CANCELLED
    except ConnectFailed as error:
        print(f"volta: cannot reach NATS: {error}", file=sys.stderr)
        return EXIT_USAGE


def run_client_command(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Run one client command; its exit code (the module docstring lists them)."""
    try:
        return trio.run(_main, args, environ)
    except NoResponders:
        print("volta: no Volta node is running on these servers", file=sys.stderr)
        return EXIT_FAILED
    except InvalidSubject as error:
        print(f"volta: {error}", file=sys.stderr)
        return EXIT_USAGE
    except (AskFailed, CapabilityFailed, TaskRefused) as error:
        print(f"volta: {error}", file=sys.stderr)
        return EXIT_FAILED
    except (AskTimeout, RequestTimeout) as error:
        print(f"volta: {error}", file=sys.stderr)
        return EXIT_FAILED
    except BusError as error:
        print(f"volta: {error}", file=sys.stderr)
        return EXIT_FAILED
