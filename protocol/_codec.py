"""One mechanism for every payload of the protocol: a :class:`Codec` made of fields.

A payload is an attrs class; its codec lists the wire fields in order, each with
the decoder that checks it (``_fields.py``: strings, ids, numbers, counts, lists,
nested payloads, ...) and, if the wire form differs, how to encode it. Decoding
is total on top of the total JSON layer (``_json.py``): any bytes give the value
or one :class:`~volta.protocol.ProtocolError` naming the first field at fault.

Why a codec of our own rather than cattrs (a dependency already, used for the YAML
configuration): the wire rules are per field and part of the protocol, so every
one of them would be a hook of our own anyway. A key that is absent takes the
class's default, but ``null`` counts as absent for some payloads (a status from a
peer that writes ``"node": null``) and is a type error for others (a message's
``from``); an unknown presence from a newer peer is ``online`` and an unknown
error code ``agent_error``; every error names its field path and says what was
expected in words peers read (docs/PROTOCOL.md); and the first error is the
answer (a peer gets one ``bad_request``, not a group of them). cattrs' error
groups would have to be translated back into that. And a codec runs once per
message on the hot path: a loop over a few prepared fields costs about what the
hand-written codecs it replaced did (``bench/codec.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar

import attrs

from ._errors import ProtocolError
from ._json import decode_json, encode_json

T = TypeVar("T")

Decoder = Callable[[Any, str], Any]
"""``decode(value, field) -> value``: checks one JSON value found at ``field`` (its
full path) and returns what the class is given; raises :class:`ProtocolError`."""


def type_name(value: object) -> str:
    """How an error names the JSON type of a value (the Python type's name)."""
    return type(value).__name__


def load_json_object(data: bytes | bytearray | memoryview | str) -> dict[str, Any]:
    """Parse a payload that must be a JSON object; total.

    Raises:
        ProtocolError: not Volta JSON (:func:`decode_json`), or not an object.
    """
    document = decode_json(data)
    if not isinstance(document, dict):
        raise ProtocolError("$", f"expected a JSON object, got {type_name(document)}")
    return document


class _Absent:
    def __repr__(self) -> str:
        return "<absent>"


_ABSENT: Any = _Absent()


@attrs.frozen
class Field:
    """One wire field of a payload."""

    wire: str
    """Its JSON key."""
    decode: Decoder
    """Checks its value (see :data:`Decoder`)."""
    attribute: str = ""
    """The class's attribute (and constructor argument); default: the same as ``wire``."""
    required: bool = False
    """Absent is an error (``required field is missing``); else the class's default."""
    null_is_absent: bool | None = None
    """Whether ``null`` counts as absent (None: the codec's rule)."""
    missing: Any = _ABSENT
    """What the class is given when the field is absent (default: nothing, so the
    class's own default applies)."""
    encode: Callable[[Any], Any] | None = None
    """The attribute's value as JSON (None: as it is)."""
    omit: Callable[[Any], bool] | None = None
    """Leave the key out of the wire form when this says so (None: always written)."""


class Codec(Generic[T]):
    """Decodes and encodes one payload class (see the module docstring)."""

    def __init__(
        self,
        cls: Callable[..., T],
        fields: Sequence[Field],
        *,
        what: str | None = None,
        null_is_absent: bool = True,
        check: Callable[[T], None] | None = None,
    ) -> None:
        """Args:
        cls: builds the value from the decoded fields (keyword arguments).
        fields: the wire fields, in the order they are checked and written.
        what: what errors say was being decoded (``"message"``: ``invalid
            message: ...``); None: they name the field alone.
        null_is_absent: whether ``null`` counts as absent (fields may differ).
        check: a rule across fields, run on the built value; raises
            :class:`ProtocolError` with a field relative to the payload.
        """
        self._cls = cls
        self.what = what
        self._check = check
        self._decoders = tuple(
            (
                field.wire,
                field.attribute or field.wire,
                field.decode,
                field.required,
                null_is_absent if field.null_is_absent is None else field.null_is_absent,
                field.missing,
            )
            for field in fields
        )
        self._encoders = tuple(
            (field.wire, field.attribute or field.wire, field.encode, field.omit)
            for field in fields
        )

    def from_dict(self, document: object, field: str = "") -> T:
        """The value in a decoded JSON document found at ``field`` ("": the payload).

        Raises:
            ProtocolError: the first field at fault (its path from the payload's root).
        """
        if field:
            return self._build(document, field)
        try:
            return self._build(document, field)
        except ProtocolError as error:
            raise error.about(self.what) from None

    def _build(self, document: object, field: str) -> T:
        if not isinstance(document, dict):
            raise ProtocolError(field or "$", f"expected a JSON object, got {type_name(document)}")
        prefix = f"{field}." if field else ""
        arguments: dict[str, Any] = {}
        for wire, attribute, decode, required, null_is_absent, missing in self._decoders:
            value = document.get(wire, _ABSENT)
            if value is _ABSENT or (value is None and null_is_absent):
                if required:
                    raise ProtocolError(f"{prefix}{wire}", "required field is missing")
                if missing is not _ABSENT:
                    arguments[attribute] = missing
                continue
            arguments[attribute] = decode(value, f"{prefix}{wire}")
        try:
            built = self._cls(**arguments)
        except (ValueError, TypeError) as error:  # a rule of the class the fields missed
            raise ProtocolError(field or "$", str(error)) from None
        if self._check is not None:
            try:
                self._check(built)
            except ProtocolError as error:
                raise error.inside(field) from None
        return built

    def decode(self, data: bytes | bytearray | memoryview | str) -> T:
        """The value in a payload; total: any bytes give the value or the error.

        Raises:
            ProtocolError: not Volta JSON, not an object, or a field at fault.
        """
        try:
            document = load_json_object(data)
        except ProtocolError as error:
            raise error.about(self.what) from None
        return self.from_dict(document)

    def to_dict(self, value: T) -> dict[str, Any]:
        """The JSON-ready form (wire keys, in field order)."""
        document: dict[str, Any] = {}
        for wire, attribute, encode, omit in self._encoders:
            item = getattr(value, attribute)
            if omit is not None and omit(item):
                continue
            document[wire] = item if encode is None else encode(item)
        return document

    def encode(self, value: T) -> bytes:
        """The wire form: compact UTF-8 JSON.

        Raises:
            PayloadEncodeError: a field holds something Volta JSON cannot carry.
        """
        return encode_json(self.to_dict(value))


def nested(codec: Codec[Any]) -> Decoder:
    """A field whose value is a payload of its own (errors keep the full path)."""
    return codec.from_dict


def encode_each(encode: Callable[[Any], Any]) -> Callable[[Sequence[Any]], list[Any]]:
    """Encodes a sequence item by item (a list of nested payloads)."""
    return lambda items: [encode(item) for item in items]


def read_only(value: Mapping[str, Any]) -> dict[str, Any]:
    """A mapping as a plain dict (for encoding)."""
    return dict(value)
