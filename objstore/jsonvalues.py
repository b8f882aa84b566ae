"""Strict JSON for stored values: decoding what clients and files send, encoding what we keep.

Owns the rules every stored value obeys: standard JSON only (no ``NaN`` or
``Infinity``), numbers within the range of a double (integers of any size up to
Python's 4,300 digits are kept exactly), nested at most :data:`MAX_DEPTH`
levels, valid Unicode, and kept as compact UTF-8 bytes so that each value is
encoded once and then reused for every reply, broadcast and file. Also says
whether the outermost object of a text repeats a member name
(:func:`duplicate_name`). Knows nothing of keys, messages or I/O.

The standard library's ``json`` defines the behaviour (:func:`decode_stdlib`,
:func:`encode_stdlib`). Where ``orjson`` is installed it does the common case
about five times faster, and hands everything else to ``json``: any text it
refuses (so errors read the same), integers too long for 64 bits (which it
would turn into floats) and values it cannot encode.

Memory: :func:`encode` returns bytes of exactly their size. ``orjson.dumps``
returns bytes that keep an allocation of about 4 KiB whatever their length,
which would make every small stored value cost 4 KiB; so results under 64 KiB
are copied (about 60 ns for a small value).
"""

from __future__ import annotations

import json
import math
import re
import sys
from types import ModuleType
from typing import Any

from .errors import InvalidValue

orjson: ModuleType | None
try:
    import orjson
except ImportError:  # pragma: no cover  # the pure-Python path is tested directly
    orjson = None

__all__ = [
    "BACKEND",
    "MAX_DEPTH",
    "JSONDecodeError",
    "compact",
    "compact_stdlib",
    "decode",
    "decode_stdlib",
    "depth_exceeds",
    "duplicate_name",
    "encode",
    "encode_stdlib",
]

#: Deepest nesting of arrays and objects accepted in a value.
MAX_DEPTH = 128

JSONDecodeError = json.JSONDecodeError

#: Where a number may overflow a double: an exponent of three digits or more
#: (``1e400``), or a run of digits long enough to reach 1.8e308 with an
#: exponent of two digits at most (210 + 99 > 308). Only texts that match are
#: decoded with the (slower) range check; a match inside a string merely costs
#: that check.
_WIDE_NUMBER = re.compile("[eE][+]?0*[1-9][0-9]{2}|[0-9]{210}")


def _reject_constant(name: str) -> Any:
    raise InvalidValue(f"invalid JSON: {name} is not allowed; JSON has no {name}")


def _checked_float(text: str) -> float:
    number = float(text)
    if math.isinf(number):
        shown = text if len(text) <= 40 else text[:37] + "..."
        raise InvalidValue(
            f"invalid JSON: {shown} is out of range; numbers must be within "
            "±1.7976931348623157e308 (send larger ones as strings)"
        )
    return number


_decoder = json.JSONDecoder(parse_constant=_reject_constant)
_checked_decoder = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_checked_float)
_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
# Objects as lists of (name, value) pairs, duplicates kept: see duplicate_name.
_pairs_decoder = json.JSONDecoder(object_pairs_hook=list)


def decode_stdlib(text: str, enclosing: int = 0) -> Any:
    """Parse *text* as strict JSON.

    *enclosing* is how many levels of nesting in *text* wrap the values it
    carries and do not count toward :data:`MAX_DEPTH` (1 for a message object
    whose members are values). Raises :class:`json.JSONDecodeError` for
    malformed text and :class:`~objstore.errors.InvalidValue` for
    ``NaN``/``Infinity``, numbers out of the range of a double, integers over
    Python's limit of digits, or nesting deeper than :data:`MAX_DEPTH`.
    """
    decoder = _checked_decoder if _WIDE_NUMBER.search(text) else _decoder
    try:
        value = decoder.decode(text)
    except RecursionError:
        raise InvalidValue(f"invalid JSON: nested deeper than {MAX_DEPTH} levels") from None
    except JSONDecodeError:
        raise
    except ValueError:  # int(): over sys.get_int_max_str_digits()
        raise InvalidValue(
            f"invalid JSON: a number has over {sys.get_int_max_str_digits()} digits; "
            "send it as a string"
        ) from None
    # Deeper than *limit* takes over *limit* pairs of brackets. Counting them
    # is a fast scan in C, so the walk below runs for few messages.
    limit = MAX_DEPTH + enclosing
    if (
        len(text) > 2 * limit
        and text.count("[") + text.count("{") > limit
        and depth_exceeds(value, limit)
    ):
        raise InvalidValue(f"invalid JSON: nested deeper than {MAX_DEPTH} levels")
    return value


def depth_exceeds(value: Any, limit: int) -> bool:
    """Return True if *value* nests arrays and objects more than *limit* levels deep."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


#: The quoted names of the protocol, made once: see duplicate_name.
_QUOTED = {name: f'"{name}"' for name in ("action", "key", "value")}


def duplicate_name(text: str, decoded: dict[str, Any]) -> str | None:
    """The first member name that the outermost object of *text* repeats, or None.

    *decoded* is *text* already decoded (an object, in which a repeated name
    kept its last value). Only the outermost object is checked: objects nested
    in it may repeat names (the last value wins).

    Exact whatever the escapes (``"\\u0061ction"`` is ``"action"``), and cheap
    for the common text. Every member, at any depth, is followed by a colon, and
    escapes never make one, so a text with no more colons than the object has
    distinct names cannot repeat one (a get: one count). More generally, a text
    with as many colons as its distinct names plus those their names and values
    hold repeats nothing, since a repeated member adds at least its own; with no
    backslash, those are the colons of the values' compact encodings (which a
    caller that has them can count, as :mod:`objstore.protocol` does for sets).
    Else, with no backslash, every name is written as itself, so names that each
    occur once as ``"name"`` in the text cannot repeat. Otherwise the text is
    parsed again, keeping every pair of the object.
    """
    if text.count(":") == len(decoded):
        return None
    if "\\" not in text:
        count = text.count
        quoted = _QUOTED.get
        for name in decoded:
            if count(quoted(name) or f'"{name}"') != 1:
                break
        else:
            return None
    seen: set[str] = set()
    for name, _ in _pairs_decoder.decode(text):
        if name in seen:
            return str(name)
        seen.add(name)
    return None


def encode_stdlib(value: Any) -> bytes:
    """Encode *value* as compact UTF-8 JSON.

    Raises :class:`~objstore.errors.InvalidValue` when the value holds text that
    is not valid Unicode (a lone surrogate, which JSON's ``\\ud800`` escapes can
    produce) and so cannot be sent or stored as UTF-8.
    """
    try:
        return _encoder.encode(value).encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidValue(
            "invalid value: not valid Unicode (contains a lone surrogate)"
        ) from None


#: A run of digits that may be an integer orjson cannot hold exactly.
_LONG_DIGITS = re.compile("[0-9]{19}")
_LONG_DIGITS_BYTES = re.compile(b"[0-9]{19}")

#: orjson results shorter than this are copied to bytes of their exact size
#: (see the module docstring); above it, the 4 KiB they keep is a small share.
_COPY_BELOW = 64 * 1024


def compact_stdlib(data: bytes) -> bytes:
    """The compact encoding of the UTF-8 JSON text *data*: what :func:`encode` makes of
    what :func:`decode` makes of it, with the same errors (and UnicodeDecodeError)."""
    return encode_stdlib(decode_stdlib(data.decode("utf-8")))


if orjson is None:  # pragma: no cover
    BACKEND = "json"
    compact = compact_stdlib
    decode = decode_stdlib
    encode = encode_stdlib
else:
    BACKEND = "orjson"
    _loads = orjson.loads
    _dumps = orjson.dumps
    _OrjsonDecodeError = orjson.JSONDecodeError
    _join = b"".join

    def decode(text: str, enclosing: int = 0) -> Any:
        """Parse *text* as strict JSON: as :func:`decode_stdlib`, faster.

        orjson refuses numbers out of the range of a double, so those reach
        :func:`decode_stdlib` and its error.
        """
        if _LONG_DIGITS.search(text) is None:
            try:
                value = _loads(text)
            except _OrjsonDecodeError:
                pass  # json says what is wrong, in its words
            else:
                # Deeper than *limit* takes over *limit* pairs of brackets: the
                # counts only run for long texts, the walk for few of them.
                limit = MAX_DEPTH + enclosing
                if (
                    len(text) <= 2 * limit
                    or text.count("[") + text.count("{") <= limit
                    or not depth_exceeds(value, limit)
                ):
                    return value
        return decode_stdlib(text, enclosing)

    def compact(data: bytes) -> bytes:
        """The compact encoding of the UTF-8 JSON text *data*: as :func:`compact_stdlib`,
        faster (one call per value read from a file, 100,000 of them at start: the
        bytes go to orjson as they are, not decoded to a string first)."""
        if _LONG_DIGITS_BYTES.search(data) is None:
            try:
                value = _loads(data)
            except _OrjsonDecodeError:
                pass  # json says what is wrong, in its words
            else:
                # As in decode: a depth over MAX_DEPTH takes over 2 * MAX_DEPTH bytes.
                if (
                    len(data) <= 2 * MAX_DEPTH
                    or data.count(b"[") + data.count(b"{") <= MAX_DEPTH
                    or not depth_exceeds(value, MAX_DEPTH)
                ):
                    # encode(value), inline: orjson encodes whatever it decoded.
                    result: bytes = _dumps(value)
                    return _join((result, b"")) if len(result) < _COPY_BELOW else result
        return compact_stdlib(data)

    def encode(value: Any) -> bytes:
        """Encode *value* as compact UTF-8 JSON: as :func:`encode_stdlib`, faster."""
        try:
            result: bytes = _dumps(value)
        except TypeError:  # big integers, lone surrogates: json's rules and errors
            return encode_stdlib(value)
        if len(result) < _COPY_BELOW:
            # A copy of exactly its size. Joining with an empty bytes is the
            # fastest copy: bytes(), slicing and + b"" return the same object.
            return _join((result, b""))
        return result
