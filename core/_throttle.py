"""Repeated reports, rate-limited with a summary; a token bucket; safe log text.

A flood of bad input must not become a flood of log lines (10,000 malformed
messages once made 2,305 WARNING lines), nor of error replies. :class:`Throttle`
lets the first report of a kind through at once and counts the rest for
``period`` seconds; when the kind comes up again after its window, the summary
of the window that ended comes first ("1,204 more malformed messages on
agent.beta.message in the last 10 s"), and :meth:`Throttle.summaries` hands out
those of quiet kinds for owners that flush on a timer. Kinds are bounded, and
so is the total: past ``max_keys`` kinds, or ``max_per_period`` first reports in
one period, the rest share one kind, so a client that makes up a new subject
per message cannot grow the table or the log.

:class:`RateLimitedLog` is a logger that does all of it. :class:`TokenBucket` caps
how many replies of some kind go out per second. :func:`printable` makes text
from the wire safe to put in a log line or on a terminal (no newlines, no terminal
escapes, no bidi or invisible characters).

Times are arguments (trio's clock in practice), so all of it is tested on a
virtual clock.
"""

from __future__ import annotations

import logging
import re

import attrs
import trio

OTHER_KEY = "(other)"
"""The kind that counts every report beyond the bounds."""

# What must not reach a terminal or a log line as it is: C0, DEL and C1 controls (line
# breaks, ESC sequences, OSC title changes); the Unicode line and paragraph separators;
# bidi controls (U+061C, U+200E-U+200F, U+202A-U+202E, U+2066-U+2069), which reorder
# what the reader sees ("Trojan Source"); zero-width and invisible characters
# (U+200B-U+200D, U+2060-U+2064, U+FEFF), which hide text or split words; and lone
# surrogates, which no UTF-8 stream can write.
_UNPRINTABLE = re.compile(
    r"[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u2069"
    r"\ufeff\ud800-\udfff]"
)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def printable(text: object, limit: int = 200) -> str:
    """``text`` fit for one log line: cut to ``limit`` characters, then each control,
    bidi, zero-width or lone surrogate character shown escaped (``\\x1b``, ``\\u202e``).

    The result is one line that writes the same on any terminal and any UTF-8 stream.
    """
    value = str(text)
    if len(value) > limit:
        value = f"{value[:limit]}..."
    return _UNPRINTABLE.sub(_escape, value)


@attrs.define
class _Window:
    started: float
    label: object = None
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
    label: object = None
    """What the first report of the window was admitted with (see :meth:`Throttle.admit`)."""

    def describe(self, what: str) -> str:
        """``"1,204 more <what> on <key> in the last 10 s"``."""
        return (
            f"{self.suppressed:,} more {what} on {printable(self.key)} "
            f"in the last {self.seconds:.0f} s"
        )


@attrs.frozen
class Admission:
    """What to report now."""

    report: bool
    """Make this report."""
    summary: Summary | None = None
    """First, the summary of this kind's window that just ended (if it held any back)."""


class Throttle:
    """Lets one report per kind through per ``period``; counts the others."""

    def __init__(
        self, period: float = 10.0, max_keys: int = 1024, max_per_period: int = 100
    ) -> None:
        if period <= 0 or max_keys < 1 or max_per_period < 1:
            raise ValueError("period must be > 0, max_keys and max_per_period >= 1")
        self._period = period
        self._max_keys = max_keys
        self._max_per_period = max_per_period
        self._windows: dict[str, _Window] = {}
        self._budget_started = -float("inf")
        self._budget_used = 0

    @property
    def period(self) -> float:
        """Seconds per window."""
        return self._period

    def admit(self, key: str, now: float, label: object = None) -> Admission:
        """Whether to make this report now, and the summary that comes first.

        ``label`` is kept with a window that opens and handed back in its summary
        (what the owner needs to word it)."""
        summary = None
        window = self._windows.get(key)
        if window is not None and now - window.started >= self._period:
            del self._windows[key]
            if window.suppressed:
                summary = Summary(key, window.suppressed, now - window.started, window.label)
            window = None
        if window is not None:
            window.suppressed += 1
            return Admission(False, summary)
        if now - self._budget_started >= self._period:
            self._budget_started, self._budget_used = now, 0
        if self._budget_used >= self._max_per_period or len(self._windows) >= self._max_keys:
            other = self._windows.setdefault(OTHER_KEY, _Window(now))
            other.suppressed += 1
            return Admission(False, summary)
        self._budget_used += 1
        self._windows[key] = _Window(now, label)
        return Admission(True, summary)

    def summaries(self, now: float, *, closing: bool = False) -> list[Summary]:
        """The summaries of every window that has ended with reports held back.

        Windows that ended are forgotten, so the table only holds kinds that are active.
        With ``closing``, every window counts as ended (the owner is stopping).
        """
        done: list[Summary] = []
        for key, window in list(self._windows.items()):
            if not closing and now - window.started < self._period:
                continue
            if window.suppressed:
                done.append(Summary(key, window.suppressed, now - window.started, window.label))
            del self._windows[key]
        return done


class RateLimitedLog:
    """A logger whose repeated lines (by kind) are throttled and summarised."""

    def __init__(self, logger: logging.Logger, period: float = 10.0) -> None:
        self._logger = logger
        self._throttle = Throttle(period)

    def log(self, level: int, key: str, what: str, message: str, *args: object) -> bool:
        """Log ``message % args`` unless lines of kind ``key`` are being held back.

        Args:
            level: the logging level.
            key: the kind of line (lines of one kind are throttled together).
            what: how the summary names the lines it held back ("handler failures").
            message: the line, %-style.
            args: its arguments (strings among them, wire text often, are made printable).

        Returns:
            Whether the line was logged.
        """
        admission = self._throttle.admit(key, trio.current_time(), (level, what))
        if admission.summary is not None:
            self._logger.log(level, "%s", admission.summary.describe(what))
        if admission.report:
            shown = (printable(arg, 500) if isinstance(arg, str) else arg for arg in args)
            self._logger.log(level, message, *shown)
        return admission.report

    def warning(self, key: str, what: str, message: str, *args: object) -> bool:
        """:meth:`log` at WARNING."""
        return self.log(logging.WARNING, key, what, message, *args)

    def info(self, key: str, what: str, message: str, *args: object) -> bool:
        """:meth:`log` at INFO."""
        return self.log(logging.INFO, key, what, message, *args)

    def flush(self, *, closing: bool = False) -> None:
        """Log the summaries of windows that ended quietly (for owners with a timer),
        each at the level and with the words of the lines it held back.

        With ``closing`` (the owner is stopping), of every window that held lines back.
        """
        for summary in self._throttle.summaries(trio.current_time(), closing=closing):
            level, what = logging.WARNING, "lines of other kinds"  # the overflow window
            if isinstance(summary.label, tuple):
                level, what = summary.label
            self._logger.log(level, "%s", summary.describe(what))


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
