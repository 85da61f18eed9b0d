"""What does a total codec cost? Volta JSON against plain ``json``, per message.

The question: the decoders and encoders became total (protocol/_json.py: depth,
integer range, finite numbers, surrogates, UTF-8 only). How much slower is a
message decode and encode than the plain ``json.loads``/``json.dumps`` they
wrap, measured in the same process and run? Target: under 1.5x for a typical
message, decode and encode (a ratio, never a timed assertion).

    python bench/codec.py [--rounds 5] [--count 20000]

The last line is JSON: per payload kind, microseconds per call for plain json
and for Volta, and their ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

from volta.protocol import (
    Message,
    decode_json,
    decode_message,
    encode_message,
    message_from_dict,
    message_to_dict,
)

SMALL = Message(sender="alpha", to="beta", message="hello there", metadata={"trace": "t-1"})
LARGE = Message(
    sender="alpha",
    to="beta",
    message="lorem ipsum " * 2000,
    metadata={"task": {"id": "t-1", "chain": ["a", "b", "c"], "budget": 12000}},
)
UNICODE = Message(sender="alpha", to="beta", message="héllo wörld 😀 " * 50)


def per_call_us(function: Callable[[], Any], count: int, rounds: int) -> float:
    """Median over rounds of the time per call, in microseconds."""
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(count):
            function()
        times.append((time.perf_counter() - start) / count * 1e6)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--count", type=int, default=20_000)
    args = parser.parse_args()
    results: dict[str, dict[str, float]] = {}
    print(f"{'payload':<12} {'op':<8} {'json us':>9} {'volta us':>9} {'ratio':>6}")
    for name, message in (("small", SMALL), ("large", LARGE), ("unicode", UNICODE)):
        data = encode_message(message)
        pairs = {
            # The decoder before it was total: json.loads, then the same field checks.
            "decode": (
                lambda d=data: message_from_dict(json.loads(d)),
                lambda d=data: decode_message(d),
            ),
            "parse": (lambda d=data: json.loads(d), lambda d=data: decode_json(d)),
            "encode": (
                lambda m=message: json.dumps(
                    message_to_dict(m), separators=(",", ":"), ensure_ascii=False
                ).encode(),
                lambda m=message: encode_message(m),
            ),
        }
        count = args.count if name != "large" else max(1, args.count // 20)
        for op, (plain, volta) in pairs.items():
            base = per_call_us(plain, count, args.rounds)
            ours = per_call_us(volta, count, args.rounds)
            ratio = ours / base
            results[f"{name}_{op}"] = {
                "json_us": round(base, 3),
                "volta_us": round(ours, 3),
                "ratio": round(ratio, 2),
            }
            print(f"{name:<12} {op:<8} {base:>9.2f} {ours:>9.2f} {ratio:>6.2f}")
    print(
        "decode: decode_message against json.loads + message_from_dict (the decoder before);"
        " parse: decode_json against json.loads; encode: encode_message against json.dumps"
    )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
