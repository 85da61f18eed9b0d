"""The client commands' printing, and the offline brain's words, without a bus."""

from __future__ import annotations

import io

import trio

from volta._commands import ProgressTree
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


def test_printable_keeps_its_contract_and_escapes_bidi_and_invisible_characters() -> None:
    assert printable("a\nb\x1b[2J\x7f\x85") == "a\\x0ab\\x1b[2J\\x7f\\x85"
    assert printable("x" * 300, 10) == "xxxxxxxxxx..."
    assert printable("\u2028\u202a\u202e\u2066\u2069\u200b\u200f\ufeff\u061c\u2060") == (
        "\\u2028\\u202a\\u202e\\u2066\\u2069\\u200b\\u200f\\ufeff\\u061c\\u2060"
    )
    assert printable("\ud800") == "\\ud800"  # a lone surrogate no UTF-8 stream can write
    assert printable("été, 中文, \u05e9\u05dc\u05d5\u05dd") == "été, 中文, \u05e9\u05dc\u05d5\u05dd"
    assert printable(42) == "42"
