"""Summarize mutmut's results for some files: counts, and each mutant that lived.

Usage (from the repository root, after ``mutmut run``)::

    python tools/mutation_report.py node/_router.py [more files...]

For each file: how many mutants were generated, killed, survived, timed out (and any
other status), then every mutant that was not killed as ``file:line: old -> new``,
with the line numbers of the real file. ``mutmut show NAME`` gives the full diff.
"""

from __future__ import annotations

import ast
import collections
import json
import re
import subprocess
import sys
from pathlib import Path

# mutmut's exit codes (mutmut/stats.py), reduced to the statuses reported here.
_STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests"}
_STATUS |= {34: "skipped", 35: "suspicious", 36: "timeout", 37: "caught by type check"}
_STATUS |= dict.fromkeys((-24, 24, 152, 255), "timeout") | {-11: "segfault", -9: "segfault"}
_MANGLED = re.compile(r"^x(?:ǁ(?P<cls>\w+)ǁ(?P<method>\w+)|_(?P<func>\w+))__mutmut_\d+$")
_HUNK = re.compile(r"^@@ -(?P<start>\d+)")


def _function_lines(path: Path) -> dict[str, int]:
    """The first line (``def``) of each function and method, by mutmut's mangled name."""
    lines: dict[str, int] = {}
    tree = ast.parse(path.read_text())
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            lines[f"x_{node.name}"] = node.lineno
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                    lines[f"xǁ{node.name}ǁ{item.name}"] = item.lineno
    return lines


def _change(name: str, def_lines: dict[str, int], file: str) -> str:
    """``file:line: old -> new`` for one mutant, from ``mutmut show``."""
    short = name.rsplit(".", 1)[1]
    match = _MANGLED.match(short)
    assert match, short
    key = f"xǁ{match['cls']}ǁ{match['method']}" if match["cls"] else f"x_{match['func']}"
    diff = subprocess.run(
        ["mutmut", "show", name], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    relative = 0
    first: int | None = None
    old: list[str] = []
    new: list[str] = []
    for line in diff:
        if hunk := _HUNK.match(line):
            relative = int(hunk["start"])
        elif line.startswith(("---", "+++", "#")):
            continue
        elif line.startswith("-"):
            first = relative if first is None else first
            old.append(line[1:].strip())
            relative += 1
        elif line.startswith("+"):
            first = relative if first is None else first
            new.append(line[1:].strip())
        elif line.startswith(" "):
            relative += 1
    start = def_lines.get(key)  # None: the function is gone from the file since the run
    where = "?" if start is None else start + (first or 1) - 1
    return f"{file}:{where}: {' '.join(old) or '(nothing)'}  ->  {' '.join(new) or '(removed)'}"


def report(file: str) -> None:
    meta = Path("mutants/volta") / f"{file}.meta"
    if not meta.exists():
        print(f"{file}: no mutmut results (run tools/mutation.sh {file} first)")
        return
    exit_codes: dict[str, int | None] = json.loads(meta.read_text())["exit_code_by_key"]
    statuses = {
        name: "not checked" if code is None else _STATUS.get(code, "suspicious")
        for name, code in exit_codes.items()
    }
    counts = collections.Counter(statuses.values())
    print(f"{file}: {len(statuses)} mutants: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    def_lines = _function_lines(Path(file))
    lived = [name for name, status in statuses.items() if status != "killed"]
    for name in sorted(lived, key=lambda n: (n.rsplit("_", 1)[0], int(n.rsplit("_", 1)[1]))):
        short = name.rsplit(".", 1)[1]
        print(f"  {statuses[name]:>9}  {_change(name, def_lines, file)}  [{short}]")


def main(files: list[str]) -> None:
    for file in files:
        report(file)


if __name__ == "__main__":
    main(sys.argv[1:])
