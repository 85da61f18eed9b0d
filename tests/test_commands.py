"""The client commands' printing, and the offline brain's words, without a bus."""

from __future__ import annotations

import io
from typing import Any

import trio

from volta._commands import MAX_INDENT, MAX_SPANS, ProgressTree
from volta._throttle import printable
from volta.actors import OfflineModel, ProgressEvent, ProgressKind


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
