"""Pure operations on stored values: JSON merge patch and increment.

Owns what ``patch`` and ``incr`` compute from a key's current value: the new
value, as the compact JSON bytes every stored value is kept as, or the client
error that refuses it. Knows nothing of keys' storage, revisions, messages,
subscribers or I/O; the size limit (``--max-size``) is the caller's to check.

Merge patch follows RFC 7386 exactly: a patch that is an object is merged into
the target (a target that is not an object, or is missing, starts from ``{}``),
members whose value is ``null`` are removed, objects are merged member by
member and anything else replaces what was there. A patch that is not an
object replaces the whole target, as the RFC says.

Bounds, for hostile input: merging is a loop over an explicit stack, never
recursion, so no patch can exhaust Python's stack; it holds one entry per
object of the patch still to merge. The result is built by copying only the
objects of the target that the patch reaches (one level each, shallow) and
shares everything else with its inputs, which are never changed: memory is at
most the patch plus the members of the objects it reaches. A result nested
deeper than :data:`~objstore.jsonvalues.MAX_DEPTH` is refused, which happens
exactly when the patch is nested deeper, so only the patch is walked. (A patch
decoded from a message is within the limit already: the check guards direct
callers.)

Increments work on Python integers, exact at any size up to the limit of
digits that :mod:`objstore.jsonvalues` accepts (4,300 by default), and on
doubles, refused when the sum overflows.

Messages name the key when the caller passes it (``key="score"``) and say "the
key" otherwise.
"""

from __future__ import annotations

import math
import sys
from typing import Any

from . import jsonvalues
from .errors import InvalidMessage, InvalidValue, describe

__all__ = ["apply_patch", "increment", "merge_patch"]

#: The range every float must be within, as jsonvalues words it.
_FLOAT_RANGE = "±1.7976931348623157e308"


def merge_patch(target: Any, patch: Any) -> Any:
    """Return *target* with the merge *patch* applied, as RFC 7386 defines it.

    *target* and *patch* are decoded JSON values; *target* is ``None`` when
    the key is missing (RFC 7386 treats a missing target and ``null`` alike).
    Neither is changed: the result is new objects where the patch reaches and
    shares the rest of its inputs (see the module docstring for the bounds).
    """
    if not isinstance(patch, dict):
        return patch
    result: dict[str, Any] = dict(target) if isinstance(target, dict) else {}
    # Each entry is a fresh object of the result (ours to change) and the part
    # of the patch to merge into it.
    pending: list[tuple[dict[str, Any], dict[str, Any]]] = [(result, patch)]
    while pending:
        into, members = pending.pop()
        for name, value in members.items():
            if value is None:
                into.pop(name, None)
            elif isinstance(value, dict):
                current = into.get(name)
                child: dict[str, Any] = dict(current) if isinstance(current, dict) else {}
                into[name] = child
                pending.append((child, value))
            else:
                into[name] = value
    return result


def _subject(key: str | None) -> str:
    return "the key" if key is None else f"key {describe(key)}"


def apply_patch(current: bytes | None, patch: Any, *, key: str | None = None) -> bytes:
    """Return the stored JSON of *current* once the merge *patch* is applied.

    *current* is the key's stored JSON, or ``None`` when the key is missing;
    *patch* is the decoded patch; *key* only names the key in messages. Raises
    :class:`~objstore.errors.InvalidValue` when the result would be nested
    deeper than :data:`~objstore.jsonvalues.MAX_DEPTH` or holds a lone
    surrogate. Whether the result fits ``--max-size`` is for the caller.
    """
    # The result is nested too deep exactly when the patch is: a merge keeps
    # every object and value of the patch at its place (a null member removes
    # a member, not a level), and takes the rest from the target, which was
    # stored within the limit (decode refuses deeper). So the patch is walked,
    # not the result, which is usually far larger.
    if isinstance(patch, dict | list) and jsonvalues.depth_exceeds(patch, jsonvalues.MAX_DEPTH):
        raise InvalidValue(
            f"invalid value: patching {_subject(key)} would nest its value deeper than "
            f"{jsonvalues.MAX_DEPTH} levels; send a shallower patch"
        )
    target = None if current is None else jsonvalues.decode(current.decode("utf-8"))
    return jsonvalues.encode(merge_patch(target, patch))


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def increment(current: bytes | None, by: Any, *, key: str | None = None) -> bytes:
    """Return the stored JSON of the number *current* plus *by*.

    *current* is the key's stored JSON, or ``None`` when the key is missing
    (which counts as 0); *key* only names the key in messages. Two integers
    give their exact integer sum; a float on either side gives a float.

    Raises :class:`~objstore.errors.InvalidMessage` when *by* is not a finite
    number (``true`` is not a number), and
    :class:`~objstore.errors.InvalidValue` when the key holds anything but a
    number, or when the sum is a float out of the range of a double or an
    integer of more digits than :mod:`objstore.jsonvalues` accepts.
    """
    if not _is_number(by) or (isinstance(by, float) and not math.isfinite(by)):
        raise InvalidMessage(
            f'invalid message: "by" must be a number, got {describe(by)}; '
            "send a number such as 1 or -2.5"
        )
    value = 0 if current is None else jsonvalues.decode(current.decode("utf-8"))
    if not _is_number(value):
        raise InvalidValue(
            f"invalid value: {_subject(key)} holds {describe(value)}, not a number; "
            "use set to replace it"
        )
    try:
        result = value + by
    except OverflowError:  # an integer too large for a double, added to a float
        result = math.inf
    if isinstance(result, float):
        if not math.isfinite(result):
            raise InvalidValue(
                f"invalid value: {_subject(key)} holds {describe(value)}, and adding "
                f"{describe(by)} to it is out of range; numbers must be within {_FLOAT_RANGE}"
            )
    else:
        digits = sys.get_int_max_str_digits()
        # 10**digits has over 3 * digits bits: only such sums need the exact check.
        if digits and result.bit_length() > 3 * digits and abs(result) >= 10**digits:
            raise InvalidValue(
                f"invalid value: {_subject(key)} holds {describe(value)}, and adding "
                f"{describe(by)} to it gives over {digits} digits; send larger numbers "
                "as strings"
            )
    return jsonvalues.encode(result)
