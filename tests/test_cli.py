"""The ``volta`` command, run as a real process against real nats-servers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio

from volta._commands import MAX_INDENT
from volta.bus import Bus, NatsServer, open_bus
from volta.config import shipped_config
from volta.protocol import MCP_LIST_AGENTS, agent_message, progress_subject

from .fake_anthropic import Recorded, Reply, fake_messages_api, text, tool_use
from .mesh import client_context
from .processes import free_ports, nats_processes_on, port_is_free, wait_until_gone

VOLTA = [sys.executable, "-m", "volta._cli"]
# No key from the developer's shell: brains run offline here (or against a fake API).
# And JetStream state of `volta up` in a folder of the test run, not the home folder.
CLEAN_ENV = {
    **{
        k: v
        for k, v in os.environ.items()
        if k not in ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "VOLTA_MODEL", "NATS_URL")
    },
    "VOLTA_STATE_DIR": tempfile.mkdtemp(prefix="volta-state-"),
}


async def start_volta(
    *args: str, env: dict[str, str] | None = None
) -> tuple[trio.Process, list[str]]:
    """Start volta and return once its node is running, with its log lines so far."""
    process = await trio.lowlevel.open_process(
        [*VOLTA, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env or CLEAN_ENV
    )
    assert process.stderr is not None
    lines: list[str] = []
    buffer = b""
    with trio.fail_after(20):
        while not any("node running" in line for line in lines):
            chunk = await process.stderr.receive_some()
            assert chunk, "volta exited early:\n" + "\n".join(lines)
            buffer += chunk
            *complete, buffer = buffer.split(b"\n")
            lines += [line.decode() for line in complete]
    return process, lines


async def stop_volta(process: trio.Process, signum: int | None) -> tuple[int, str]:
    if signum is not None:
        process.send_signal(signum)
    assert process.stderr is not None
    output = b""
    with trio.fail_after(20):
        while chunk := await process.stderr.receive_some():
            output += chunk
        code = await process.wait()
    return code, output.decode()


async def test_up_runs_the_seed_on_an_embedded_server_and_stops_on_ctrl_c() -> None:
    process, lines = await start_volta("up", "--port", "0", "--monitor-port", "0")
    url = next(line.split(" at ")[1].split(" ")[0] for line in lines if "embedded" in line)
    assert any("JetStream in a temporary folder" in line for line in lines)
    async with open_bus(url) as bus, bus.subscribe("agent.*.status") as statuses:
        agents = await client_context(bus).list_agents()
        assert [a.id for a in agents] == ["coordinator", "researcher", "writer"]
        assert await client_context(bus).request_capability("uppercase", "hi") == "HI"
        await bus.flush()
        process.send_signal(signal.SIGINT)
        # Agents stop in reverse order, each saying offline, before the server goes.
        offline: list[str] = []
        with trio.fail_after(20):
            while len(offline) < 3:
                status = json.loads((await statuses.receive()).data)
                if status["status"] == "offline":
                    offline.append(status["id"])
    code, rest = await stop_volta(process, None)
    assert code == 0
    assert offline == ["writer", "researcher", "coordinator"]
    assert "stopping in order" in rest
    assert rest.rstrip().endswith("stopped")
    # It said which brain each agent runs, and why.
    said = "\n".join(lines)
    for agent_id in ("coordinator", "researcher", "writer"):
        assert f"agent {agent_id} thinks with the offline brain" in said
    assert "ANTHROPIC_API_KEY is not set" in said


async def test_up_after_a_kill_9_of_up_starts_cleanly_on_the_same_ports() -> None:
    port, monitor_port = free_ports(2)
    args = ("up", "--port", str(port), "--monitor-port", str(monitor_port))
    process, lines = await start_volta(*args)
    ready = next(line for line in lines if "nats-server ready" in line)
    server_pid = int(ready.rsplit("(pid ", 1)[1].rstrip(")"))
    server_and_watchdog = nats_processes_on(port)
    assert server_pid in server_and_watchdog
    assert len(server_and_watchdog) == 2
    process.kill()
    await process.wait()
    # No orphan holds the ports: the server and its watchdog went with volta.
    await wait_until_gone(*server_and_watchdog)
    assert nats_processes_on(port) == []
    assert port_is_free(port)
    assert port_is_free(monitor_port)
    process, lines = await start_volta(*args)
    assert any(f"nats://127.0.0.1:{port}" in line for line in lines)
    # JetStream kept in the state folder, one per port; the node says it is durable.
    store = Path(CLEAN_ENV["VOLTA_STATE_DIR"]) / f"nats-{port}"
    assert any(f"JetStream in {store}" in line for line in lines)
    assert any("durable inboxes on stream VOLTA_INBOX" in line for line in lines)
    assert (store / "jetstream").is_dir()
    code, _ = await stop_volta(process, signal.SIGINT)
    assert code == 0
    assert nats_processes_on(port) == []


async def test_up_without_jetstream_says_direct_messages_are_on_core_nats() -> None:
    process, lines = await start_volta("up", "--port", "0", "--monitor-port", "0", "--no-jetstream")
    code, _ = await stop_volta(process, signal.SIGINT)
    assert code == 0
    assert any("JetStream off" in line for line in lines)
    assert any(
        "direct messages on core NATS: the server has no JetStream" in line for line in lines
    )


async def test_run_uses_the_given_server_and_stops_on_sigterm(nats_server: NatsServer) -> None:
    config = shipped_config("researcher")
    process, _ = await start_volta(
        "run", str(config), "--nats-url", nats_server.url, "--heartbeat-interval", "0.5"
    )
    async with open_bus(nats_server.url) as bus:
        assert await client_context(bus).request_capability("word_count", "a b") == 2
    code, _ = await stop_volta(process, signal.SIGTERM)
    assert code == 0


async def test_bad_config_exits_2_with_a_clear_message(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("agents:\n  - id: a.b\n    handler: echo\n")
    result = await trio.run_process([*VOLTA, "run", str(config)], capture_stderr=True, check=False)
    assert result.returncode == 2
    message = result.stderr.decode()
    assert f"{config}: agents[0].id: invalid agent id 'a.b'" in message
    assert "Traceback" not in message


async def test_unimportable_handler_is_a_config_error(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("agents:\n  - id: ab\n    handler: no_such_module:Handler\n")
    result = await trio.run_process([*VOLTA, "run", str(config)], capture_stderr=True, check=False)
    assert result.returncode == 2
    assert "agents[0].handler" in result.stderr.decode()


async def test_a_bad_config_reports_every_problem_at_once(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(
        "hearbeat_interval: 3\n"
        "agents:\n"
        "  - id: worker-${VOLTA_TEST_UNSET_REPLICA}\n"
        "    handler: echo\n"
        "  - id: a.b\n"
        "    handler: echo\n"
        "    max_concurrency: 0\n"
    )
    environ = {k: v for k, v in os.environ.items() if k != "VOLTA_TEST_UNSET_REPLICA"}
    result = await trio.run_process(
        [*VOLTA, "run", str(config)], capture_stderr=True, check=False, env=environ
    )
    assert result.returncode == 2
    assert result.stderr.decode() == (
        f"volta: bad configuration: {config}: 4 problems:\n"
        "  agents[0].id: environment variable VOLTA_TEST_UNSET_REPLICA is not set "
        "(write ${VOLTA_TEST_UNSET_REPLICA:-...} for a default)\n"
        "  hearbeat_interval: unknown key (did you mean 'heartbeat_interval'?)\n"
        "  agents[1].id: invalid agent id 'a.b': use 1-64 characters from A-Z a-z 0-9 _ -\n"
        "  agents[1].max_concurrency: expected an integer >= 1, got 0\n"
    )


async def test_up_checks_the_whole_configuration_before_it_starts_a_server(
    tmp_path: Path,
) -> None:
    config = tmp_path / "team.yaml"
    config.write_text("agents:\n  - {id: a, handler: 'no_such_module_here:H'}\n")
    result = await trio.run_process(
        [*VOLTA, "up", "--config", str(config), "--port", "0", "--monitor-port", "0"],
        capture_stderr=True,
        check=False,
        env=CLEAN_ENV,
    )
    said = result.stderr.decode()
    assert result.returncode == 2, said
    assert said == (
        f"volta: bad configuration: {config}: agents[0].handler: handler "
        "'no_such_module_here:H': cannot import no_such_module_here: "
        "No module named 'no_such_module_here'\n"
    )


async def volta(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run a client command: exit code, stdout, stderr."""
    with trio.fail_after(30):
        result = await trio.run_process(
            [*VOLTA, *args],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env=env or CLEAN_ENV,
        )
    return result.returncode, result.stdout.decode(), result.stderr.decode()


async def test_the_client_commands_against_volta_up() -> None:
    port, monitor_port = free_ports(2)
    process, _ = await start_volta("up", "--port", str(port), "--monitor-port", str(monitor_port))
    url = f"nats://127.0.0.1:{port}"
    try:
        code, table, _ = await volta("agents", "--nats-url", url)
        assert code == 0
        assert table.splitlines()[0].split() == [
            "ID",
            "NAME",
            "STATUS",
            "INSTANCES",
            "CAPABILITIES",
        ]
        assert [line.split()[0] for line in table.splitlines()[1:]] == [
            "coordinator",
            "researcher",
            "writer",
        ]
        # The offline team: the coordinator really asks both specialists and combines.
        code, answer, progress = await volta(
            "ask", "coordinator", "plan a launch", "--nats-url", url
        )
        assert code == 0, progress
        assert answer.startswith("[offline brain: ANTHROPIC_API_KEY is not set] Coordinator")
        assert "Researcher read" in answer
        assert "Writer read" in answer
        # The progress tree: the coordinator at the top, the specialists one level in.
        assert "  coordinator started: plan a launch" in progress
        assert "    researcher started:" in progress
        assert "    writer answered:" in progress
        code, out, _ = await volta("capability", "word_count", '"a b c"', "--nats-url", url)
        assert (code, out.strip()) == (0, "3")
        code, _, said = await volta("ask", "nobody", "hi", "--nats-url", url)
        assert code == 1
        assert said.strip() == "volta: agent 'nobody' failed: no_agent: no agent 'nobody' is online"
        code, _, said = await volta("capability", "fly", "--nats-url", url)
        assert code == 1
        assert "no_capability" in said
        code, _, said = await volta("send", "writer", "hello", "--nats-url", url)
        assert (code, said.strip()) == (0, "sent to writer")
    finally:
        await stop_volta(process, signal.SIGINT)


async def test_an_unreachable_server_is_one_line_and_exit_code_2() -> None:
    (port,) = free_ports(1)
    for command in (["agents"], ["ask", "coordinator", "hi"], ["capability", "echo", "1"]):
        code, out, said = await volta(*command, "--nats-url", f"nats://127.0.0.1:{port}")
        assert code == 2, said
        assert out == ""
        assert said.startswith("volta: cannot reach NATS: could not connect to ")
        assert len(said.strip().splitlines()) == 1, said
        assert "Traceback" not in said


async def test_ctrl_c_on_volta_ask_cancels_the_task_on_every_agent(tmp_path: Path) -> None:
    """Brains on a fake Messages API that never answers the specialists: Ctrl-C on
    `volta ask` ends it (exit 130) and the node cancels the units of the task."""
    release = threading.Event()

    def script(request: Recorded) -> Reply:
        if request.agent == "coordinator" and not request.tool_results:
            return tool_use(
                ("ask_agent", {"to": "researcher", "question": "dig"}),
                ("ask_agent", {"to": "writer", "question": "draft"}),
            )
        return Reply(hang=release, body=text("late").body)

    with fake_messages_api(script) as api:
        config = tmp_path / "team.yaml"
        config.write_text(
            "agents:\n"
            + "".join(
                f"  - id: {name}\n    brain: {{base_url: '{api.url}', max_retries: 0"
                + (", team: [researcher, writer]" if name == "coordinator" else "")
                + "}\n"
                for name in ("coordinator", "researcher", "writer")
            )
        )
        env = {**CLEAN_ENV, "ANTHROPIC_API_KEY": "sk-ant-test-cli", "VOLTA_ANTHROPIC_STRICT": "1"}
        port, monitor_port = free_ports(2)
        node, lines = await start_volta(
            "up",
            "--config",
            str(config),
            "--port",
            str(port),
            "--monitor-port",
            str(monitor_port),
            env=env,
        )
        try:
            said = "\n".join(lines)
            assert "agent coordinator thinks with Claude at http://127.0.0.1" in said
            ask = await trio.lowlevel.open_process(
                [
                    *VOLTA,
                    "ask",
                    "coordinator",
                    "a big job",
                    "--nats-url",
                    f"nats://127.0.0.1:{port}",
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
            )
            with trio.fail_after(20):
                while len(api.of("researcher")) + len(api.of("writer")) < 2:
                    await trio.sleep(0.05)
            ask.send_signal(signal.SIGINT)
            with trio.fail_after(20):
                code = await ask.wait()
            assert ask.stderr is not None
            progress = (await ask.stderr.receive_some(1 << 20)).decode()
            assert code == 130, progress
            assert "volta: cancelling the task on every agent" in progress
        finally:
            release.set()
            _, rest = await stop_volta(node, signal.SIGINT)
    # The node cancelled the three units of the task: the coordinator's and both asks.
    assert "cancelled 3 unit(s)" in rest, rest[-6000:]


async def test_running_an_agent_that_is_already_online_exits_2_naming_its_node() -> None:
    """What a newcomer does first: `volta up`, then one of the one-agent files."""
    port, monitor_port = free_ports(2)
    up, _ = await start_volta("up", "--port", str(port), "--monitor-port", str(monitor_port))
    try:
        code, _, said = await volta(
            "run", str(shipped_config("writer")), "--nats-url", f"nats://127.0.0.1:{port}"
        )
    finally:
        await stop_volta(up, signal.SIGINT)
    assert code == 2
    last = said.strip().splitlines()[-1]
    assert last.startswith("volta: no agent could start: agent 'writer' is already taken: node ")
    assert "volta-seed@" in last
    assert "holds it (instance " in last


async def test_a_taken_port_is_named_with_what_to_do_instead() -> None:
    port, monitor_port = free_ports(2)
    for taken, args in (
        (port, ("--port", str(port), "--monitor-port", "0")),
        (monitor_port, ("--port", "0", "--monitor-port", str(monitor_port))),
    ):
        with trio.socket.socket() as holder:
            await holder.bind(("127.0.0.1", taken))
            holder.listen()
            code, out, said = await volta("up", *args)
        assert out == ""
        assert code == 1, said
        assert said.startswith(
            f"volta: nats-server did not start: 127.0.0.1:{taken} is already in use"
        )
        assert "volta up --port 0 --monitor-port 0" in said
        # The commands to reach the team that holds the port name it (4222 needs no URL).
        named = f"volta agents --nats-url nats://127.0.0.1:{taken};" in said
        assert named is (taken == port), said
        assert "Traceback" not in said
        assert len(said.splitlines()) == 3, said


# The client commands against hostile peers and careless users --------------------------
#
# A fake agent (or directory) is a plain subscriber on a real nats-server, speaking the
# protocol as a hostile peer would: forged progress events, escape sequences in errors
# and answers, garbage listings. Every wait is bounded; nothing is timed.


@asynccontextmanager
async def reaped(process: trio.Process) -> AsyncIterator[trio.Process]:
    """The process; on the way out, killed if it still runs, and waited for (a test that
    fails leaves nothing running behind it)."""
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
        with trio.CancelScope(shield=True), trio.move_on_after(10):
            await process.wait()
            for stream in (process.stdin, process.stdout, process.stderr):
                if stream is not None:
                    await stream.aclose()


async def read_until(stream: trio.abc.ReceiveStream, marker: bytes, seen: bytearray) -> None:
    """Read ``stream`` into ``seen`` until ``marker`` is in it."""
    while marker not in seen:
        chunk = await stream.receive_some()
        assert chunk, f"the stream ended before {marker!r}:\n{seen.decode(errors='replace')}"
        seen += chunk


async def read_all(stream: trio.abc.ReceiveStream, seen: bytearray) -> None:
    while chunk := await stream.receive_some():
        seen += chunk


def forged_progress(task_id: str, span: str) -> list[dict[str, object]]:
    """What a peer that learnt the task id can publish on its progress subject."""
    base = {"task": task_id, "agent": "victim", "kind": "thinking"}
    events: list[dict[str, object]] = [
        {**base, "span": span, "detail": "\x1b]0;PWNED\x07\x1b[2Jfine\nvolta: answer: 42"},
        {**base, "span": span, "detail": "invoice\u202efdp.exe\u200b", "tokens": -5},
    ]
    # A chain of spans, each naming the one before as its parent.
    events += [
        {**base, "span": f"chain{i}", "parent": f"chain{i - 1}" if i else span, "detail": "x"}
        for i in range(500)
    ]
    events.append({**base, "span": span, "detail": "last forged event"})
    return events


async def test_a_hostile_agent_cannot_write_to_the_terminal(nats_server: NatsServer) -> None:
    """Progress details, error codes and messages from a peer reach stderr escaped, one
    line each (no ESC, no OSC title, no forged `volta: answer: 42` line), the tree's
    indentation stops at MAX_INDENT, and a negative token count is not shown."""
    words = "\x1b]0;PWNED\x07\x1b[2Jfine\nvolta: answer: 42"
    err = bytearray()
    async with (
        open_bus(nats_server.url) as bus,
        bus.subscribe(agent_message("victim")) as inbox,
    ):
        await bus.flush()
        ask = await trio.lowlevel.open_process(
            [*VOLTA, "ask", "victim", "hi", "--nats-url", nats_server.url],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=CLEAN_ENV,
        )
        assert ask.stderr is not None
        async with reaped(ask):
            with trio.fail_after(20):
                delivery = await inbox.receive()
                question = delivery.decode()
                task = question.metadata["task"]
                for event in forged_progress(task["id"], task["spans"][-1]):
                    await bus.publish(progress_subject(task["id"]), json.dumps(event).encode())
                await bus.flush()
                await read_until(ask.stderr, b"last forged event", err)
                error = {"code": "agent_error\x1b[8m", "message": words}
                await bus.respond(delivery, question.reply("", metadata={"error": error}))
                await read_all(ask.stderr, err)
                code = await ask.wait()
    said = err.decode()
    lines = said.splitlines()
    assert code == 1, said
    assert "\x1b" not in said
    assert "\x07" not in said
    assert not [line for line in lines if line.lstrip().startswith("volta: answer")]
    assert lines[0] == ("  victim thinking: \\x1b]0;PWNED\\x07\\x1b[2Jfine volta: answer: 42")
    assert lines[1] == "  victim thinking: invoice\\u202efdp.exe\\u200b"
    assert max(len(line) - len(line.lstrip(" ")) for line in lines) == 2 * MAX_INDENT
    # (A code this version does not know is agent_error, the peer's code kept in the words.)
    assert lines[-1] == (
        "volta: agent 'victim' failed: agent_error: agent_error\\x1b[8m: "
        "\\x1b]0;PWNED\\x07\\x1b[2Jfine\\x0avolta: answer: 42"
    )


async def test_the_answer_reaches_a_pipe_exactly_and_a_terminal_escaped(
    nats_server: NatsServer,
) -> None:
    answer = "line 1\x1b]0;PWNED\x07\ttab\nline 2\rforged \u202e\u05e9\u05dc\u05d5\u05dd"
    ask = [*VOLTA, "ask", "oracle", "hi", "--quiet", "--nats-url", nats_server.url]
    async with open_bus(nats_server.url) as bus, trio.open_nursery() as nursery:
        await nursery.start(serve_fake_agent, bus, "oracle", answer)
        code, out, said = await volta(*ask[len(VOLTA) :])
        assert (code, said) == (0, "")
        assert out == answer + "\n"  # a pipe: the product, exactly
        main_fd, terminal_fd = os.openpty()
        try:
            with trio.fail_after(20):
                process = await trio.lowlevel.open_process(
                    ask, stdout=terminal_fd, stderr=subprocess.DEVNULL, env=CLEAN_ENV
                )
                os.close(terminal_fd)
                terminal_fd = -1
                code = await process.wait()
                shown = await trio.to_thread.run_sync(read_terminal, main_fd)
        finally:
            os.close(main_fd)
            if terminal_fd >= 0:
                os.close(terminal_fd)
        nursery.cancel_scope.cancel()
    assert code == 0
    # The terminal writes \n as \r\n; what matters is what it was told to act on.
    assert shown.replace("\r\n", "\n") == (
        "line 1\\x1b]0;PWNED\\x07\ttab\nline 2\\x0dforged \u202e\u05e9\u05dc\u05d5\u05dd\n"
    )


async def serve_fake_agent(
    bus: Bus, agent_id: str, text: str, *, task_status: trio.TaskStatus[None]
) -> None:
    """:func:`answer_every_ask`, started once it listens."""
    async with bus.subscribe(agent_message(agent_id)) as inbox:
        await bus.flush()
        task_status.started()
        async for delivery in inbox:
            await bus.respond(delivery, delivery.decode().reply(text))


async def test_an_answer_stdout_cannot_encode_is_escaped_not_a_traceback(
    nats_server: NatsServer,
) -> None:
    async with open_bus(nats_server.url) as bus, trio.open_nursery() as nursery:
        await nursery.start(serve_fake_agent, bus, "oracle", "caf\u00e9 \u2603")
        code, out, said = await volta(
            "ask",
            "oracle",
            "hi",
            "--nats-url",
            nats_server.url,
            env={**CLEAN_ENV, "PYTHONIOENCODING": "ascii"},
        )
        nursery.cancel_scope.cancel()
    assert (code, out) == (0, "caf\\xe9 \\u2603\n"), said


def read_terminal(main_fd: int) -> str:
    """All a pseudo-terminal's program wrote (it has exited; EIO means no more)."""
    output = b""
    while True:
        try:
            chunk = os.read(main_fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    return output.decode()


async def test_a_reader_that_goes_away_is_quiet_and_exit_code_141(
    nats_server: NatsServer,
) -> None:
    """`volta ask ... | head -1`, made certain: stdout is a pipe nobody reads any more."""
    async with open_bus(nats_server.url) as bus, trio.open_nursery() as nursery:
        await nursery.start(serve_fake_agent, bus, "oracle", "many lines\n" * 10_000)
        reader, writer = os.pipe()
        os.close(reader)
        try:
            with trio.fail_after(30):
                done = await trio.run_process(
                    [*VOLTA, "ask", "oracle", "hi", "--quiet", "--nats-url", nats_server.url],
                    stdout=writer,
                    capture_stderr=True,
                    check=False,
                    env=CLEAN_ENV,
                )
        finally:
            os.close(writer)
        nursery.cancel_scope.cancel()
    assert done.returncode == 141, done.stderr.decode()
    assert done.stderr == b""


async def test_ctrl_c_while_connecting_exits_130_at_once() -> None:
    """A server that accepts and never says INFO: Ctrl-C ended volta with a
    KeyboardInterrupt traceback (or waited out the connect); now it is cancelled."""
    with trio.socket.socket() as listener:
        await listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        process = await trio.lowlevel.open_process(
            [*VOLTA, "agents", "--nats-url", f"nats://127.0.0.1:{port}", "--timeout", "600"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=CLEAN_ENV,
        )
        assert process.stderr is not None
        said = bytearray()
        async with reaped(process):
            with trio.fail_after(20):
                connection, _ = await listener.accept()  # volta is connecting now
            with connection:
                process.send_signal(signal.SIGINT)
                with trio.fail_after(20):
                    await read_all(process.stderr, said)
                    code = await process.wait()
    assert (code, said.decode()) == (130, "volta: cancelled\n")


async def serve_listings(
    bus: Bus, pages: list[bytes], *, task_status: trio.TaskStatus[None]
) -> None:
    """A fake directory: the n-th request on mcp.list_agents gets ``pages[n]``."""
    async with bus.subscribe(MCP_LIST_AGENTS) as requests:
        await bus.flush()
        task_status.started()
        for page in pages:
            await bus.respond(await requests.receive(), page)


async def test_volta_agents_shows_a_hostile_listing_escaped_or_says_it_is_malformed(
    nats_server: NatsServer,
) -> None:
    entry = {"id": "evil", "name": "admin\u202e\u200bnimda", "capabilities": ["echo"]}
    listing = json.dumps({"agents": [entry], "total": 1, "next_offset": None}).encode()
    garbage = json.dumps({"agents": [{"id": "a\x1b[2Jb"}], "total": 1}).encode()
    url = nats_server.url
    async with open_bus(url) as bus, trio.open_nursery() as nursery:
        await nursery.start(serve_listings, bus, [listing, listing, garbage, b"\xff not json"])
        code, table, said = await volta("agents", "--nats-url", url)
        assert (code, said) == (0, "")
        assert table.splitlines()[1].split() == [
            "evil",
            "admin\\u202e\\u200bnimda",
            "online",
            "0",
            "echo",
        ]
        code, out, said = await volta("agents", "--json", "--nats-url", url)
        assert (code, said) == (0, "")
        assert '"name": "admin\\u202e\\u200bnimda"' in out
        assert json.loads(out)["name"] == entry["name"]
        for _ in range(2):
            code, out, said = await volta("agents", "--nats-url", url)
            assert (code, out) == (1, "")
            assert said.startswith("volta: malformed reply: "), said
            assert said.count("\n") == 1, said
            assert "\x1b" not in said, said
