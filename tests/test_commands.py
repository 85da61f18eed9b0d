"""The client commands' printing and arguments, and the offline brain's words, without a bus.

What a hostile peer can put on the wire (escapes, bidi controls, forged chains of
spans, negative counts) is fed to the printing directly; the arguments are checked
in-process, where argparse exits before anything connects.
"""

from __future__ import annotations

import argparse
import io
import json
from typing import Any

import pytest
import trio

from volta._cli import main
from volta._commands import (
    MAX_INDENT,
    MAX_SPANS,
    ProgressTree,
    answer_text,
    capability_input,
    json_line,
)
from volta.brains import OfflineModel
from volta.core import printable
from volta.protocol import ProgressEvent, ProgressKind


def test_the_progress_tree_indents_by_parent_and_keeps_one_line_an_event() -> None:
    out = io.StringIO()
    tree = ProgressTree(out)
    tree(ProgressEvent("t", "s1", None, "coordinator", ProgressKind.STARTED, "plan\na launch"))
    tree(ProgressEvent("t", "s2", "s1", "writer", ProgressKind.ANSWERED, "x\r\n\ty\x1b[2J", 1200))
    tree(ProgressEvent("t", "s1", None, "coordinator", ProgressKind.ANSWERED))
    assert out.getvalue().splitlines() == [
        "  coordinator started: plan a launch",
        "    writer answered: x y\\x1b[2J [1,200 tokens]",
        "  coordinator answered",
    ]


def test_the_offline_brain_counts_words_in_good_english() -> None:
    model = OfflineModel("writer", "Writer")

    async def answer(request: str) -> str:
        params = {"messages": [{"role": "user", "content": f"From tester:\n{request}"}]}
        return (await model.create(params, timeout=None)).text

    assert "Writer read 1 word; key terms: hello." in trio.run(answer, "hello")
    assert "Writer read 2 words;" in trio.run(answer, "hello there")
    assert "Writer read 0 words; key terms: none." in trio.run(answer, "")


def event(span: str, parent: str | None, **changes: Any) -> ProgressEvent:
    values: dict[str, Any] = {"agent": "coordinator", "kind": ProgressKind.THINKING}
    values.update(changes)
    return ProgressEvent("t", span, parent, **values)


def test_a_forged_chain_of_spans_indents_no_deeper_than_the_cap() -> None:
    """Each event named the one before as its parent: line i had 2*i spaces, so 10,000
    events of ~100 bytes on the wire made 100 MB on stderr."""
    out = io.StringIO()
    tree = ProgressTree(out)
    for i in range(10_000):
        tree(event(f"s{i}", f"s{i - 1}" if i else None, detail="x"))
    lines = out.getvalue().splitlines()
    assert len(lines) == 10_000
    assert lines[0] == "  coordinator thinking: x"
    assert lines[MAX_INDENT - 1] == "  " * MAX_INDENT + "coordinator thinking: x"
    assert set(lines[MAX_INDENT - 1 :]) == {"  " * MAX_INDENT + "coordinator thinking: x"}


def test_the_span_table_is_bounded_and_new_spans_still_print() -> None:
    out = io.StringIO()
    tree = ProgressTree(out)
    tree(event("first", None))
    tree(event("child", "first"))
    for i in range(MAX_SPANS):
        tree(event(f"flood{i}", None))
    out.truncate(0)
    out.seek(0)
    # Spans remembered before the flood keep their place; new ones are not remembered:
    # the child of an unremembered span prints one level in, as a child of nobody.
    tree(event("grandchild", "child"))
    tree(event("late", None))
    tree(event("child-of-late", "late"))
    assert out.getvalue().splitlines() == [
        "      coordinator thinking",
        "  coordinator thinking",
        "  coordinator thinking",
    ]


def test_every_progress_line_is_bounded_whatever_the_event() -> None:
    out = io.StringIO()
    tree = ProgressTree(out)
    tree(event("s", None, agent="\x1b" * 10_000, detail="\x1b[2J" * 1_000_000, tokens=2**63 - 1))
    (line,) = out.getvalue().splitlines()
    assert len(line) < 1500
    assert "\x1b" not in line


def test_progress_details_show_bidi_and_zero_width_characters_escaped() -> None:
    out = io.StringIO()
    tree = ProgressTree(out)
    tree(event("s", None, detail="invoice\u202efdp.exe\u200b \u2066x\u2069 \ufeff\u200d\x9b2J"))
    assert out.getvalue() == (
        "  coordinator thinking: "
        "invoice\\u202efdp.exe\\u200b \\u2066x\\u2069 \\ufeff\\u200d\\x9b2J\n"
    )


def test_negative_token_counts_are_not_shown() -> None:
    out = io.StringIO()
    tree = ProgressTree(out)
    tree(event("s", None, tokens=-5))
    tree(event("s", None, tokens=0))
    tree(event("s", None, tokens=7))
    assert out.getvalue().splitlines() == [
        "  coordinator thinking",
        "  coordinator thinking",
        "  coordinator thinking [7 tokens]",
    ]


def test_printable_keeps_its_contract_and_escapes_bidi_and_invisible_characters() -> None:
    assert printable("a\nb\x1b[2J\x7f\x85") == "a\\x0ab\\x1b[2J\\x7f\\x85"
    assert printable("x" * 300, 10) == "xxxxxxxxxx..."
    assert printable("\u2028\u202a\u202e\u2066\u2069\u200b\u200f\ufeff\u061c\u2060") == (
        "\\u2028\\u202a\\u202e\\u2066\\u2069\\u200b\\u200f\\ufeff\\u061c\\u2060"
    )
    assert printable("\ud800") == "\\ud800"  # a lone surrogate no UTF-8 stream can write
    assert printable("été, 中文, \u05e9\u05dc\u05d5\u05dd") == "été, 中文, \u05e9\u05dc\u05d5\u05dd"
    assert printable(42) == "42"


def test_the_answer_is_exact_off_a_terminal_and_escaped_on_one() -> None:
    answer = "ok\x1b]0;PWNED\x07\tcol\r\nline 2\rforged\x9b2J \u202eعربي"
    assert answer_text(answer, terminal=False) == answer
    assert answer_text(answer, terminal=True) == (
        "ok\\x1b]0;PWNED\\x07\tcol\nline 2\\x0dforged\\x9b2J \u202eعربي"
    )


def test_json_lines_escape_what_a_terminal_would_act_on_and_stay_the_same_json() -> None:
    value = {"name": "\x9b2J\u202e\x1b\u2028", "n": [1, "é"]}
    line = json_line(value)
    assert line == '{"name": "\\u009b2J\\u202e\\u001b\\u2028", "n": [1, "é"]}'
    assert json.loads(line) == value


def test_capability_input_is_json_if_it_can_be_and_else_text() -> None:
    assert capability_input('"a b"') == "a b"
    assert capability_input('{"k": [1, 2.5, null]}') == {"k": [1, 2.5, None]}
    assert capability_input("hello world") == "hello world"
    assert capability_input("NaN") == "NaN"  # not JSON: text
    assert capability_input("-Infinity") == "-Infinity"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("[" * 100_000, "JSON nested deeper than 64 levels"),
        ("[" * 65 + "]" * 65, "nested deeper than 64 levels"),
        ("1e400", "inf is not a JSON number"),
        ("9" * 5000, "an integer beyond int64"),
        (str(2**64), "out of range"),
        ('"\\ud800"', "lone surrogate"),
        ("\udcff", "not UTF-8 text"),
    ],
)
def test_json_volta_cannot_carry_is_refused_as_input(text: str, reason: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=reason):
        capability_input(text)


def usage_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run ``volta`` in-process: it must exit 2 as argparse does; its error line."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv, {})
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "0", "-1", "1e308", "86401", "soon"])
def test_a_bad_timeout_is_a_usage_error(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    line = usage_error(["ask", "writer", "hi", f"--timeout={value}"], capsys)
    assert line == (
        "volta ask: error: argument --timeout: "
        f"expected seconds, more than 0 and at most 86400, got {value!r}"
    )


@pytest.mark.parametrize("value", ["-5", str(10**12 + 1), str(10**13), "1.5", "9" * 5000])
def test_a_budget_the_protocol_refuses_is_a_usage_error(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    line = usage_error(["ask", "writer", "hi", f"--budget={value}"], capsys)
    assert line.startswith(
        "volta ask: error: argument --budget: "
        "expected a whole number of tokens from 0 to 1,000,000,000,000, got "
    )


@pytest.mark.parametrize(("value", "length"), [("", 0), ("t" * 65, 65), ("t" * 10_000, 10_000)])
def test_a_thread_id_the_protocol_refuses_is_a_usage_error_not_dropped(
    value: str, length: int, capsys: pytest.CaptureFixture[str]
) -> None:
    line = usage_error(["ask", "writer", "hi", "--thread", value], capsys)
    assert line == f"volta ask: error: argument --thread: expected 1-64 characters, got {length:,}"


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (
            ["send", "a.b", "hi"],
            "volta send: error: argument agent: invalid agent id 'a.b': "
            "use 1-64 characters from A-Z a-z 0-9 _ -",
        ),
        (
            ["ask", "", "hi"],
            "volta ask: error: argument agent: invalid agent id '': "
            "use 1-64 characters from A-Z a-z 0-9 _ -",
        ),
        (
            ["capability", "x.>"],
            "volta capability: error: argument name: invalid capability name 'x.>': "
            "use 1-64 characters from A-Z a-z 0-9 _ -",
        ),
        (
            ["agents", "--capability", "*"],
            "volta agents: error: argument --capability: invalid capability name '*': "
            "use 1-64 characters from A-Z a-z 0-9 _ -",
        ),
        (
            ["ask", "writer", "\udcff"],
            "volta ask: error: argument text: not UTF-8 text "
            "(a byte that is not UTF-8 at character 0)",
        ),
    ],
)
def test_ids_and_text_that_cannot_be_sent_are_usage_errors(
    argv: list[str], line: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert usage_error(argv, capsys) == line


@pytest.mark.parametrize(
    ("argv", "environ"),
    [
        (["agents", "--nats-url", "http://127.0.0.1:1"], {}),
        (["ask", "writer", "hi", "--nats-url", " , "], {}),
        (["capability", "echo"], {"NATS_URL": "ftp://127.0.0.1:1"}),
        # A port that is not one (it once raised from the redaction of the password).
        (["agents", "--nats-url", "nats://u:p4ss@127.0.0.1:x"], {}),
        (["ask", "writer", "hi"], {"NATS_URL": "nats://127.0.0.1:99999"}),
    ],
)
def test_a_url_that_is_not_nats_is_one_line_and_exit_code_2(
    argv: list[str], environ: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv, environ) == 2
    err = capsys.readouterr().err
    assert err.startswith("volta: bad NATS URL (--nats-url or NATS_URL): servers: ")
    assert err.count("\n") == 1, err
    assert "p4ss" not in err
