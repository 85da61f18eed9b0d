"""Times on the wire: ISO 8601 in UTC, written with a ``Z`` and microseconds."""

from __future__ import annotations

from datetime import UTC, datetime


def format_timestamp(value: datetime) -> str:
    """ISO 8601 in UTC with a ``Z`` suffix, microsecond precision, a four-digit year.

    (``strftime("%Y")`` writes year 999 as ``999``, which no ISO 8601 reader,
    Volta's included, accepts back.)
    """
    v = value.astimezone(UTC)
    return (
        f"{v.year:04d}-{v.month:02d}-{v.day:02d}T{v.hour:02d}:{v.minute:02d}:"
        f"{v.second:02d}.{v.microsecond:06d}Z"
    )


def parse_timestamp(text: str) -> datetime:
    """An ISO 8601 date-time with a UTC offset, as an aware UTC datetime.

    Raises:
        ValueError: not such a date-time, or out of range once converted to UTC
            (the message is fit for a ``field: reason`` error).
    """
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not an ISO 8601 date-time: {text[:40]!r}") from None
    if value.utcoffset() is None:
        raise ValueError("must carry a UTC offset (e.g. a trailing 'Z')")
    try:
        return value.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+01:00 is before year 1 in UTC
        raise ValueError(f"out of range in UTC: {text[:40]!r}") from None
