"""Log lines for the ``volta`` command: one event per line, whatever the wire sent.

Names, subjects and node names come from hostile peers too. A newline in one
would forge a second log line; an escape sequence would rewrite the terminal.
The filter here turns every control character of a record's message into a
visible ``\\xNN`` (tracebacks, appended by the formatter, keep their lines).
"""

from __future__ import annotations

import logging

from volta.core import printable

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


class PrintableMessages(logging.Filter):
    """Escapes control characters in each record's message (see the module docstring)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format: the handler reports it; a filter must not raise
            return True
        clean = printable(message, 8000)
        if clean != message:
            record.msg, record.args = clean, None
        return True


def configure_logging(verbose: bool, *, quiet: bool = False) -> None:
    """Log to stderr, one printable line per event: INFO (WARNING if ``quiet``: the
    client commands), or DEBUG if ``verbose``."""
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=level, format=FORMAT)
    for handler in logging.getLogger().handlers:
        handler.addFilter(PrintableMessages())
