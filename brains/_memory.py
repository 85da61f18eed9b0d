"""What a brain remembers of a conversation: per thread, bounded by turns and tokens.

A thread is ``metadata.thread_id`` when the sender gives one, else the sender
itself. Each thread keeps its last exchanges (a user turn and the brain's final
answer; the tool chatter in between is not kept), at most ``max_turns`` turns
and about ``max_tokens`` tokens (estimated at four characters a token): the
oldest exchanges go first. At most ``max_threads`` threads are kept, the least
recently used going first, so a brain that talks to ten thousand peers holds a
bounded amount of history. Turns of one thread run one at a time (its lock);
different threads run concurrently.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import Any

import attrs
import trio

CHARS_PER_TOKEN = 4


def estimate_tokens(value: Any) -> int:
    """A rough token count of a JSON-able value (four characters a token)."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return len(text) // CHARS_PER_TOKEN + 1


@attrs.define
class Thread:
    """One conversation."""

    turns: list[dict[str, Any]] = attrs.Factory(list)
    tokens: int = 0
    lock: trio.Lock = attrs.Factory(trio.Lock)


class Memory:
    """The threads of one brain."""

    def __init__(self, *, max_turns: int = 20, max_tokens: int = 8000, max_threads: int = 256):
        if max_turns < 0 or max_tokens < 0 or max_threads < 1:
            raise ValueError("max_turns and max_tokens must be >= 0, max_threads >= 1")
        self._max_turns = max_turns - max_turns % 2  # whole exchanges only
        self._max_tokens = max_tokens
        self._max_threads = max_threads
        self._threads: OrderedDict[str, Thread] = OrderedDict()

    def __len__(self) -> int:
        return len(self._threads)

    def thread(self, key: str) -> Thread:
        """The thread (made if new; the least recently used goes if there are too many)."""
        thread = self._threads.get(key)
        if thread is None:
            thread = self._threads[key] = Thread()
            while len(self._threads) > self._max_threads:
                self._threads.popitem(last=False)
        else:
            self._threads.move_to_end(key)
        return thread

    def history(self, key: str) -> list[dict[str, Any]]:
        """A copy of a thread's turns, oldest first."""
        return list(self.thread(key).turns)

    def remember(self, key: str, user: dict[str, Any], answer: str) -> None:
        """Add one exchange, then drop the oldest until the bounds hold."""
        thread = self.thread(key)
        exchange = [user, {"role": "assistant", "content": answer}]
        thread.turns += exchange
        thread.tokens += sum(estimate_tokens(turn["content"]) for turn in exchange)
        while thread.turns and (
            len(thread.turns) > self._max_turns or thread.tokens > self._max_tokens
        ):
            for turn in thread.turns[:2]:
                thread.tokens -= estimate_tokens(turn["content"])
            del thread.turns[:2]

    def stats(self) -> dict[str, int]:
        """Threads, turns and estimated tokens held."""
        threads = list(self._threads.values())
        return {
            "threads": len(threads),
            "turns": sum(len(t.turns) for t in threads),
            "tokens": sum(t.tokens for t in threads),
        }
