"""The README's "Write your own agent" runs as written.

Its files are taken from the README's code blocks (each starts with a comment naming
the file), written into an empty folder, and run with ``volta run`` against a real
nats-server, from another working directory and without ``PYTHONPATH`` (the config
file's folder must be importable by itself). Then each ``$ volta ...`` command of
the README's console block runs, and prints what the README says it prints.
"""

from __future__ import annotations

import re
import shlex
import signal
from pathlib import Path

import trio

from volta.bus import NatsServer

from .test_cli import CLEAN_ENV, VOLTA, start_volta, stop_volta

README = Path(__file__).parent.parent / "README.md"
_BLOCK = re.compile(r"```(?P<kind>\w+)\n(?P<body>.*?)```", re.DOTALL)


def section(title: str) -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(f"## {title}\n")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def example() -> tuple[dict[str, str], list[tuple[str, str]]]:
    """The files (name -> text) and the console commands with what each prints."""
    files: dict[str, str] = {}
    commands: list[tuple[str, str]] = []
    for block in _BLOCK.finditer(section("Write your own agent")):
        body = block["body"]
        if block["kind"] == "console":
            for command in re.split(r"^\$ ", body, flags=re.MULTILINE)[1:]:
                line, _, output = command.partition("\n")
                commands.append((line, output.rstrip("\n")))
        else:
            first = body.splitlines()[0]
            assert first.startswith("# "), f"a README block without its file name: {first!r}"
            files[first.removeprefix("# ")] = body
    return files, commands


def test_the_readme_shows_two_files_and_three_commands() -> None:
    files, commands = example()
    assert sorted(files) == ["team.yaml", "tools.py"]
    assert [command.split()[:2] for command, _ in commands] == [
        ["volta", "capability"],
        ["volta", "ask"],
        ["volta", "ask"],
    ]


async def test_write_your_own_agent_works_as_written(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    files, commands = example()
    folder = tmp_path / "my-team"
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    env = {k: v for k, v in CLEAN_ENV.items() if k != "PYTHONPATH"}
    process, _ = await start_volta(
        "run", str(folder / "team.yaml"), "--nats-url", nats_server.url, env=env
    )
    try:
        for command, expected in commands:
            argv = [*VOLTA, *shlex.split(command)[1:], "--nats-url", nats_server.url]
            with trio.fail_after(20):
                done = await trio.run_process(
                    argv, capture_stdout=True, capture_stderr=True, check=False, env=env, cwd="/"
                )
            # As a terminal shows it: the progress (stderr) comes before the answer.
            said = "\n".join(
                stream.decode().rstrip("\n") for stream in (done.stderr, done.stdout) if stream
            )
            # (`cli` in the README stands for the client's own id.)
            pattern = re.escape(expected).replace("cli", "cli-[0-9a-f]{8}")
            assert re.fullmatch(pattern, said), f"{command}: {said!r}"
    finally:
        code, log = await stop_volta(process, signal.SIGINT)
    assert code == 0, log
