"""Log lines for the ``volta`` command: one event per line, whatever the wire sent.

Names, subjects and node names come from hostile peers too. A newline in one
would forge a second log line; an escape sequence would rewrite the terminal.
The filter here turns every control character of a record's message into a
visible ``\\xNN`` (tracebacks, appended by the formatter, keep their lines).
"""

from __future__ import annotations

import logging

from volta._throttle import printable

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


class PrintableMessages(logging.Filter):
    """Escapes control characters in each record's message (see the module docstring)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = printable(message, 8000)
        if clean != message:
            record.msg, record.args = clean, None
        return True


def configure_logging(verbose: bool) -> None:
    """Log to stderr, one printable line per event (INFO, or DEBUG if ``verbose``)."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format=FORMAT)
    for handler in logging.getLogger().handlers:
        handler.addFilter(PrintableMessages())
