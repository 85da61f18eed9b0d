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

Arguments are checked before anything is sent, against what the protocol accepts
(docs/PROTOCOL.md): agent ids and capability names, ``--timeout`` (finite seconds,
at most a day), ``--budget`` (0 to 10^12 tokens), ``--thread`` (1 to 64 characters),
the NATS URL, and INPUT (JSON Volta can carry, or else text).

Peers are not trusted with the terminal. Every line made of text from the wire
(agent ids, error codes and messages, progress details, names in the listing)
goes through :func:`~volta.core.printable`: one line, with control, bidi
and zero-width characters shown escaped. The answer of ``volta ask`` is the
product and is printed as it is, except on a terminal (see :func:`answer_text`).

Exit codes: 0 done; 1 the agent answered with an error or did not answer in
time, or a reply was malformed; 2 NATS unreachable or bad arguments (one line,
no traceback); 130 cancelled (Ctrl-C or SIGTERM, connecting included); 141 the
reader of stdout or stderr went away (``volta ask ... | head -1``): quietly, with
the code a shell reports for a tool that SIGPIPE stopped, as ``yes | head -1`` does.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import re
import signal
import sys
from collections.abc import Mapping
from typing import Any, TextIO

import attrs
import trio

from volta.actors import AskFailed, AskTimeout, CapabilityFailed, Client, open_client
from volta.bus import BusError, BusOptions, ConnectFailed, NoResponders, PayloadTooLarge
from volta.core import open_nursery, printable
from volta.protocol import (
    AGENT_INFO_CODEC,
    MAX_BUDGET,
    MAX_JSON_DEPTH,
    MAX_THREAD_ID,
    AgentInfo,
    InvalidSubject,
    PayloadEncodeError,
    ProgressEvent,
    ProtocolError,
    TaskRefused,
    check_json,
    validate_agent_id,
    validate_capability,
)

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_CANCELLED, EXIT_BROKEN_PIPE = 0, 1, 2, 130, 141
DEFAULT_URL = "nats://127.0.0.1:4222"

MAX_TIMEOUT = 86_400.0
"""Longest ``--timeout``, in seconds: a day. A longer deadline is a slip of the keyboard
(``1e308`` once overflowed the task's deadline with a traceback)."""
# --budget and --thread take what the protocol accepts (docs/PROTOCOL.md 4.1, 5.10):
# MAX_BUDGET and MAX_THREAD_ID come from volta.actors, their one source.
MAX_LINE = 1000
"""Characters of wire text in one ``volta: ...`` line before it is cut."""


# Arguments ---------------------------------------------------------------------------


def seconds(text: str) -> float:
    """``--timeout``: finite seconds, more than 0 and at most :data:`MAX_TIMEOUT`.

    Raises:
        argparse.ArgumentTypeError: anything else (``nan``, ``inf``, ``0``, ``-1``).
    """
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0 < value <= MAX_TIMEOUT):
        raise argparse.ArgumentTypeError(
            f"expected seconds, more than 0 and at most {MAX_TIMEOUT:g}, got {text!r}"
        )
    return value


def token_budget(text: str) -> int:
    """``--budget``: a whole number of tokens from 0 to :data:`MAX_BUDGET`.

    Raises:
        argparse.ArgumentTypeError: anything else.
    """
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= MAX_BUDGET:
        raise argparse.ArgumentTypeError(
            f"expected a whole number of tokens from 0 to {MAX_BUDGET:,}, got {text[:40]!r}"
        )
    return value


def thread_id(text: str) -> str:
    """``--thread``: 1 to :data:`MAX_THREAD_ID` characters of text.

    Raises:
        argparse.ArgumentTypeError: empty, longer, or not text.
    """
    if not 1 <= len(text) <= MAX_THREAD_ID:
        raise argparse.ArgumentTypeError(
            f"expected 1-{MAX_THREAD_ID} characters, got {len(text):,}"
        )
    return message_text(text)


def agent_id(text: str) -> str:
    """An agent id: 1-64 characters from ``A-Z a-z 0-9 _ -``.

    Raises:
        argparse.ArgumentTypeError: anything else (it would not fit in a subject).
    """
    try:
        return validate_agent_id(text)
    except InvalidSubject as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def capability_name(text: str) -> str:
    """A capability name: 1-64 characters from ``A-Z a-z 0-9 _ -``.

    Raises:
        argparse.ArgumentTypeError: anything else.
    """
    try:
        return validate_capability(text)
    except InvalidSubject as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def message_text(text: str) -> str:
    """Text to send: any Unicode (bytes of the command line that are not UTF-8 are not).

    Raises:
        argparse.ArgumentTypeError: it holds such bytes (lone surrogates, to Python).
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise argparse.ArgumentTypeError(
            f"not UTF-8 text (a byte that is not UTF-8 at character {error.start})"
        ) from None
    return text


class _NotJSON(ValueError):
    """``NaN`` or ``Infinity``: Python reads them, JSON has no such thing."""


def _refuse_constant(name: str) -> Any:
    raise _NotJSON(name)


def capability_input(text: str) -> Any:
    """INPUT of ``volta capability``: JSON, or else the text itself.

    ``NaN`` and ``Infinity`` are not JSON, so they are text. JSON the protocol cannot
    carry (nested deeper than 64, a number beyond int64 or not finite) is an error, not
    text: the user meant JSON.

    Raises:
        argparse.ArgumentTypeError: JSON Volta cannot carry, or text that is not UTF-8.
    """
    message_text(text)
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except (json.JSONDecodeError, _NotJSON):
        return text
    except RecursionError:
        raise argparse.ArgumentTypeError(
            f"JSON nested deeper than {MAX_JSON_DEPTH} levels"
        ) from None
    except ValueError:  # an integer Python will not read (thousands of digits)
        raise argparse.ArgumentTypeError(
            "JSON Volta cannot carry: an integer beyond int64"
        ) from None
    try:
        check_json(value)
    except PayloadEncodeError as error:
        raise argparse.ArgumentTypeError(f"JSON Volta cannot carry: {error}") from None
    return value


def add_client_commands(commands: Any) -> None:
    """Add ``agents``, ``send``, ``ask`` and ``capability`` to the ``volta`` parser."""

    def common(command: argparse.ArgumentParser) -> None:
        command.add_argument(
            "--nats-url", help=f"NATS server URL (default NATS_URL or {DEFAULT_URL})"
        )
        command.add_argument(
            "--timeout",
            type=seconds,
            default=60.0,
            metavar="SECONDS",
            help=f"how long to wait (more than 0, at most {MAX_TIMEOUT:g})",
        )

    agents = commands.add_parser("agents", help="list the agents of the mesh")
    agents.add_argument("--capability", type=capability_name, help="only agents that serve it")
    agents.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    common(agents)

    send = commands.add_parser("send", help="send a message to an agent (no answer awaited)")
    send.add_argument("agent", type=agent_id)
    send.add_argument("text", type=message_text)
    common(send)

    ask = commands.add_parser("ask", help="ask an agent and wait for the answer (progress live)")
    ask.add_argument("agent", type=agent_id)
    ask.add_argument("text", type=message_text)
    ask.add_argument(
        "--budget",
        type=token_budget,
        metavar="TOKENS",
        help=f"tokens the whole task may spend (0 to {MAX_BUDGET:,})",
    )
    ask.add_argument(
        "--thread",
        type=thread_id,
        help=f"conversation thread id, 1-{MAX_THREAD_ID} characters (agents remember per thread)",
    )
    ask.add_argument("--quiet", action="store_true", help="no progress, just the answer")
    common(ask)

    capability = commands.add_parser("capability", help="run a capability on some agent")
    capability.add_argument("name", type=capability_name)
    capability.add_argument(
        "input",
        nargs="?",
        type=capability_input,
        default=None,
        help="JSON, or else taken as text",
    )
    common(capability)


def _options(args: argparse.Namespace, environ: Mapping[str, str]) -> BusOptions:
    overrides: dict[str, Any] = {"connect_timeout": min(2.0, args.timeout)}
    if args.nats_url:
        overrides["servers"] = args.nats_url
    elif not environ.get("NATS_URL"):
        overrides["servers"] = DEFAULT_URL
    return BusOptions.from_environ(environ, **overrides)


# Output ------------------------------------------------------------------------------

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


# C0 and C1 controls but newline and tab: what a terminal acts on instead of showing.
_TERMINAL_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# Raw in json.dumps(ensure_ascii=False) output, inside strings only: DEL and C1 controls,
# bidi and invisible characters (as in printable()), lone surrogates.
_JSON_UNSAFE = re.compile(
    r"[\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u2069\ufeff\ud800-\udfff]"
)


def answer_text(text: str, *, terminal: bool) -> str:
    """The answer as ``volta ask`` prints it on stdout.

    The answer is the product, so a pipe or a file gets it exactly. A terminal is
    different: an answer comes from a peer (or from a model a peer steered), and
    control characters would act on the terminal (clear it, retitle the window,
    move the cursor to forge what was said). On a terminal ``\\r\\n`` becomes
    ``\\n``, and the C0 and C1 controls except newline and tab are shown escaped
    (``\\x1b``). Bidi and zero-width characters are kept: they belong to text in
    right-to-left scripts and do not control the terminal.
    """
    if not terminal:
        return text
    return _TERMINAL_CONTROL.sub(
        lambda match: f"\\x{ord(match.group()):02x}", text.replace("\r\n", "\n")
    )


def json_line(value: Any) -> str:
    """``value`` as one line of JSON that is safe on a terminal, and the same JSON.

    ``json.dumps`` escapes C0 controls already; DEL, C1 controls, bidi and zero-width
    characters (which only strings can hold) are written as ``\\uXXXX`` escapes too.
    """
    text = json.dumps(value, ensure_ascii=False)
    return _JSON_UNSAFE.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


def _table(agents: tuple[AgentInfo, ...]) -> str:
    rows = [("ID", "NAME", "STATUS", "INSTANCES", "CAPABILITIES")]
    rows += [
        (
            printable(a.id, 64),
            printable(a.name, 64),
            a.status.value,
            str(len(a.instances)),
            printable(", ".join(a.capabilities) or "-", 500),
        )
        for a in agents
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = []
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row[:4], widths, strict=True)]
        lines.append("  ".join([*cells, row[4]]).rstrip())
    return "\n".join(lines)


def _say(text: str) -> None:
    """One line on stderr: ``volta: <text>``, printable whatever the wire put in it."""
    print(f"volta: {printable(text, MAX_LINE)}", file=sys.stderr)


# Commands ----------------------------------------------------------------------------


async def _agents(client: Client, args: argparse.Namespace) -> int:
    agents = await client.agents(capability=args.capability)
    if args.json:
        for info in agents:
            print(json_line(AGENT_INFO_CODEC.to_dict(info)))
    else:
        print(_table(agents) if agents else "no agents")
    return EXIT_OK


async def _send(client: Client, args: argparse.Namespace) -> int:
    await client.send(args.agent, args.text)
    print(f"sent to {printable(args.agent, 64)}", file=sys.stderr)
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
    print(answer_text(answer.message, terminal=sys.stdout.isatty()))
    return EXIT_OK


async def _capability(client: Client, args: argparse.Namespace) -> int:
    result = await client.capability(args.name, args.input, timeout=args.timeout)
    print(json_line(result))
    return EXIT_OK


COMMANDS = {"agents": _agents, "send": _send, "ask": _ask, "capability": _capability}


@attrs.define
class _Run:
    """What one client command came to, as far as it went."""

    connected: bool = False
    """The client is connected (the command has started)."""
    code: int | None = None
    """The exit code, once known (the first one set wins)."""

    def finish(self, code: int) -> None:
        """Set the exit code, unless one is set already."""
        if self.code is None:
            self.code = code


async def _cancel_on_signal(
    run: _Run,
    scope: trio.CancelScope,
    ask: bool,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """On the first SIGINT or SIGTERM, connecting included: exit 130, cancel ``scope``
    (an ask cancels on its way out what it started on every agent). Started once the
    signals are being received."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        task_status.started()
        async for _ in signals:
            _say("cancelling the task on every agent" if ask and run.connected else "cancelled")
            run.finish(EXIT_CANCELLED)
            scope.cancel()
            return


async def _main(args: argparse.Namespace, options: BusOptions) -> int:
    run = _Run()
    # The signals are watched before connecting: a connect that hangs (a server that
    # accepts and says nothing) is cancelled by Ctrl-C like the rest.
    async with open_nursery() as nursery:
        await nursery.start(_cancel_on_signal, run, nursery.cancel_scope, args.command == "ask")
        async with open_client(options, timeout=args.timeout) as client:
            run.connected = True
            run.finish(await COMMANDS[args.command](client, args))
        nursery.cancel_scope.cancel()
    return EXIT_CANCELLED if run.code is None else run.code


def _run(args: argparse.Namespace, options: BusOptions) -> int:
    """The command in trio, each failure one line and its exit code."""
    try:
        return trio.run(_main, args, options)
    except ConnectFailed as error:
        _say(f"cannot reach NATS: {error}")
        return EXIT_USAGE
    except NoResponders:
        _say("no Volta node is running on these servers")
        return EXIT_FAILED
    except (InvalidSubject, PayloadEncodeError, PayloadTooLarge) as error:
        _say(str(error))  # what was to be sent cannot be: the arguments are at fault
        return EXIT_USAGE
    except ProtocolError as error:
        _say(f"malformed reply: {error}")
        return EXIT_FAILED
    except (AskFailed, CapabilityFailed, TaskRefused, AskTimeout, BusError) as error:
        _say(str(error))
        return EXIT_FAILED


def _quiet_output() -> None:
    """Point stdout and stderr at /dev/null: their reader is gone, and Python's flush at
    exit would raise BrokenPipeError again (the Python docs' recipe, ``signal`` module)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    for stream in (sys.stdout, sys.stderr):
        # Not a real file (a test's capture): nothing to point elsewhere.
        with contextlib.suppress(OSError, ValueError):
            os.dup2(devnull, stream.fileno())
    os.close(devnull)


def _escape_what_stdout_cannot_encode() -> None:
    """With an encoding short of Unicode (``PYTHONIOENCODING=ascii``), stdout writes
    ``\\xe9`` for what it cannot hold instead of failing with a traceback (stderr does
    so already)."""
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(errors="backslashreplace")


def run_client_command(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Run one client command; its exit code (the module docstring lists them)."""
    _escape_what_stdout_cannot_encode()
    try:
        options = _options(args, environ)
    except ValueError as error:
        _say(f"bad NATS URL (--nats-url or NATS_URL): {error}")
        return EXIT_USAGE
    try:
        code = _run(args, options)
        sys.stdout.flush()  # here, where a closed pipe can still be answered quietly
        return code
    except BrokenPipeError:
        _quiet_output()
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:  # a second Ctrl-C, while the first one's cleanup runs
        return EXIT_CANCELLED
