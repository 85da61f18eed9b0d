"""JSON at the edge, total in both directions.

Every payload Volta reads from the wire goes through :func:`decode_json`, and
every document it writes through :func:`encode_json`. Both are *total*: for any
input at all they return a value or raise their one typed error
(:class:`ProtocolError`, :class:`PayloadEncodeError`); nothing else escapes
them. Python's ``json`` alone is not: a document nested a thousand deep raises
``RecursionError``, an integer of 5,000 digits ``ValueError``, a lone surrogate
(``"\\ud800"``, valid JSON) decodes fine and then breaks the first encoder that
meets it, and ``NaN`` decodes to a float no other JSON reader accepts.

What Volta JSON is (docs/PROTOCOL.md, section 9):

- UTF-8 only (no BOM, no UTF-16 guessing), at most ``max_bytes`` long;
- containers nested at most :data:`MAX_DEPTH` deep;
- integers within ``-(2**63) .. 2**63 - 1`` and finite numbers only (no
  ``NaN``/``Infinity``, no ``1e400``);
- no lone surrogates in any string or key.

The encoder refuses exactly what the decoder would refuse, so a Volta peer
never sends what another Volta peer must reject.

Cost: the C parser does the work; one pass over the containers afterwards
checks depth, and strings are only searched for surrogates when the raw bytes
hold a ``\\uD8..``-``\\uDF..`` escape (the only way JSON can carry one).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from ._errors import PayloadEncodeError, ProtocolError

MAX_DEPTH = 64
"""Deepest nesting of arrays and objects accepted (the document itself is depth 1)."""

MAX_INT = 2**63 - 1
"""Largest integer accepted (int64; larger ones lose precision in most readers)."""

MIN_INT = -(2**63)
"""Smallest integer accepted."""

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
"""Default size limit of a payload to decode (nats-server's own limit is at most 64 MiB)."""

_MAX_INT_DIGITS = 20  # a cheap first check before int(): 2**63 has 19 digits
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > _MAX_INT_DIGITS:
        raise ProtocolError("$", f"integer of {len(text)} digits is out of range")
    value = int(text)
    if not MIN_INT <= value <= MAX_INT:
        raise ProtocolError("$", f"integer {text} is out of range (int64)")
    return value


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ProtocolError("$", f"number {text[:40]} is out of range")
    return value


def _parse_constant(text: str) -> Any:
    raise ProtocolError("$", f"{text} is not a JSON number")


_decoder = json.JSONDecoder(
    parse_int=_parse_int, parse_float=_parse_float, parse_constant=_parse_constant
)


_MAX_PATH_PARTS = 8


def _path(parts: tuple[str | int, ...]) -> str:
    text = "$"
    for part in parts[:_MAX_PATH_PARTS]:
        if isinstance(part, int):
            text += f"[{part}]"
        else:  # keys may hold the very surrogates being reported: keep them escaped
            text += "." + str(part)[:32].encode("utf-8", "backslashreplace").decode()
    return text if len(parts) <= _MAX_PATH_PARTS else f"{text}..."


def _walk(document: object, *, strings: bool, decoding: bool) -> None:
    """Check depth (always), strings for surrogates (if asked) and, when encoding,
    the types and numbers that :func:`decode_json` would refuse.

    Raises:
        ProtocolError | PayloadEncodeError: the first problem, with its path.
    """
    error = ProtocolError if decoding else PayloadEncodeError
    if isinstance(document, str):
        if strings and not document.isascii() and _SURROGATE.search(document):
            raise error("$", "string holds a lone surrogate (not valid Unicode)")
        return
    stack: list[tuple[object, int, tuple[str | int, ...]]] = [(document, 1, ())]
    while stack:
        value, depth, path = stack.pop()
        if isinstance(value, dict):
            items: Any = value.items()
            is_list = False
        elif isinstance(value, list | tuple):
            items = enumerate(value)
            is_list = True
        else:
            if not decoding:
                _check_scalar(value, path)
            continue
        if depth > MAX_DEPTH:
            raise error(_path(path), f"nested deeper than {MAX_DEPTH} levels")
        for key, item in items:
            if not is_list:
                if type(key) is not str:
                    if not decoding:
                        raise PayloadEncodeError(_path(path), f"key {key!r} is not a string")
                elif strings and not key.isascii() and _SURROGATE.search(key):
                    raise error(_path(path), "key holds a lone surrogate (not valid Unicode)")
            kind = type(item)
            if kind is str:
                if strings and not item.isascii() and _SURROGATE.search(item):
                    raise error(
                        _path((*path, key)), "string holds a lone surrogate (not valid Unicode)"
                    )
            elif kind is dict or kind is list or kind is tuple:
                stack.append((item, depth + 1, (*path, key)))
            elif not decoding:
                _check_scalar(item, (*path, key))


def _check_scalar(value: object, path: tuple[str | int, ...]) -> None:
    if value is None or isinstance(value, bool | str):
        return
    if isinstance(value, int):
        if not MIN_INT <= value <= MAX_INT:
            raise PayloadEncodeError(_path(path), "integer is out of range (int64)")
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise PayloadEncodeError(_path(path), f"{value} is not a JSON number")
        return
    raise PayloadEncodeError(_path(path), f"{type(value).__name__} is not a JSON type")


def decode_json(
    data: bytes | bytearray | memoryview | str, *, max_bytes: int = DEFAULT_MAX_BYTES
) -> Any:
    """Parse one Volta JSON document (see the module docstring for the rules).

    Args:
        data: UTF-8 bytes (or text already decoded).
        max_bytes: refuse longer payloads without parsing them.

    Raises:
        ProtocolError: for any input that is not Volta JSON; ``field`` is
            ``"$"`` or the path of the offending value (``$.metadata.x[2]``).
    """
    if len(data) > max_bytes:
        raise ProtocolError("$", f"payload of {len(data)} bytes exceeds {max_bytes}")
    if isinstance(data, str):
        text = data
        escapes = "\\" in text or not text.isascii()
    else:
        raw = data if isinstance(data, bytes) else bytes(data)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise ProtocolError(
                "$", f"not valid UTF-8 JSON (bad UTF-8 byte at {error.start})"
            ) from None
        # A one-byte search first (memchr): most payloads hold no backslash at all.
        escapes = b"\\" in raw and _SURROGATE_ESCAPE.search(raw) is not None
    try:
        document = _decoder.decode(text)
    except ProtocolError:
        raise
    except json.JSONDecodeError as error:
        raise ProtocolError("$", f"not valid UTF-8 JSON ({error})") from None
    except RecursionError:
        raise ProtocolError("$", f"nested deeper than {MAX_DEPTH} levels") from None
    except (ValueError, OverflowError) as error:  # the parser's own number limits
        raise ProtocolError("$", f"not valid UTF-8 JSON ({error})") from None
    if escapes or isinstance(document, dict | list):
        _walk(document, strings=bool(escapes), decoding=True)
    return document


def check_json(value: object) -> None:
    """Check that ``value`` is Volta JSON without encoding it.

    Raises:
        PayloadEncodeError: the first problem, with its path.
    """
    if isinstance(value, dict | list | tuple | str):
        _walk(value, strings=True, decoding=False)
    else:
        _check_scalar(value, ())


def encode_json(value: object) -> bytes:
    """Compact UTF-8 JSON of ``value``, or a typed error.

    Raises:
        PayloadEncodeError: ``value`` holds something Volta JSON cannot carry (a
            non-JSON type, a non-string key, NaN or infinity, an integer beyond
            int64, a lone surrogate, nesting deeper than :data:`MAX_DEPTH`, a cycle).
    """
    try:
        data = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        encoded = data.encode()  # a lone surrogate cannot be UTF-8: it raises here
    except (TypeError, ValueError, RecursionError) as error:
        check_json(value)  # finds the value at fault and names its path
        raise PayloadEncodeError("$", f"{type(error).__name__}: {error}") from None
    # What json.dumps accepts but Volta JSON does not: depth, int64, non-string keys.
    _walk(value, strings=False, decoding=False)
    return encoded
