"""Repeated reports, rate-limited with a summary; and a token bucket.

A flood of bad input must not become a flood of log lines (10,000 malformed
messages once made 2,305 WARNING lines), nor of error replies. :class:`Throttle`
lets the first report of a kind through at once, counts the rest for
``period`` seconds, and then hands out one summary per kind ("1,204 more
malformed messages on agent.beta.message in the last 10 s"). Kinds are bounded
too: past ``max_keys`` distinct keys, the rest share one key, so a client that
makes up a new subject per message cannot grow the table.

:class:`TokenBucket` caps how many replies of some kind go out per second.

Both take the time as an argument (trio's clock in practice), so they are
tested on a virtual clock.
"""

from __future__ import annotations

import attrs

OTHER_KEY = "(other)"
"""The key that counts every kind beyond ``max_keys``."""


@attrs.define
class _Window:
    started: float
    suppressed: int = 0


@attrs.frozen
class Summary:
    """What a throttle held back for one kind during one window."""

    key: str
    """The kind of report (a subject, say)."""
    suppressed: int
    """Reports counted but not made."""
    seconds: float
    """How long the window lasted."""

    def describe(self, what: str) -> str:
        """``"1,204 more <what> on <key> in the last 10 s"``."""
        return f"{self.suppressed:,} more {what} on {self.key} in the last {self.seconds:.0f} s"


class Throttle:
    """Lets one report per kind through per ``period``; counts the others."""

    def __init__(self, period: float = 10.0, max_keys: int = 1024) -> None:
        if period <= 0 or max_keys < 1:
            raise ValueError("period must be > 0 and max_keys >= 1")
        self._period = period
        self._max_keys = max_keys
        self._windows: dict[str, _Window] = {}

    @property
    def period(self) -> float:
        """Seconds per window."""
        return self._period

    def admit(self, key: str, now: float) -> bool:
        """True: make this report now. False: it was counted into the kind's summary."""
        window = self._windows.get(key)
        if window is None:
            if len(self._windows) >= self._max_keys:
                key = OTHER_KEY
                window = self._windows.get(key)
            if window is None:
                self._windows[key] = _Window(now)
                return True
        if now - window.started >= self._period and window.suppressed == 0:
            window.started = now  # a quiet window ended: this one opens the next
            return True
        window.suppressed += 1
        return False

    def summaries(self, now: float) -> list[Summary]:
        """The summaries of every window that has ended with reports held back.

        Windows that ended quietly are forgotten, so the table only holds kinds
        that are active.
        """
        done: list[Summary] = []
        for key, window in list(self._windows.items()):
            if now - window.started < self._period:
                continue
            if window.suppressed:
                done.append(Summary(key, window.suppressed, now - window.started))
            del self._windows[key]
        return done


class TokenBucket:
    """At most ``rate`` events per second on average, bursts up to ``burst``."""

    def __init__(self, rate: float, burst: float) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self._rate = rate
        self._burst = burst
        self._tokens = burst
        self._at: float | None = None

    def take(self, now: float) -> bool:
        """True if an event may happen now (and count it)."""
        if self._at is not None:
            self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
        self._at = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False
