"""Pure operations on stored values: JSON merge patch.

Owns what ``patch`` computes from a key's current value: the new
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
deeper than :data:`~objstore.jsonvalues.MAX_DEPTH` is refused. (A result is
never nested deeper than the deeper of its target and patch, so a stored target
and a decoded patch, both within the limit, cannot trip it: the check guards
direct callers.)

Messages name the key when the caller passes it (``key="score"``) and say "the
key" otherwise.
"""

from __future__ import annotations

from typing import Any

from . import jsonvalues
from .errors import InvalidValue, describe

__all__ = ["apply_patch", "merge_patch"]


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
    target = None if current is None else jsonvalues.decode(current.decode("utf-8"))
    result = merge_patch(target, patch)
    limit = jsonvalues.MAX_DEPTH
    try:
        encoded = jsonvalues.encode(result)
    except RecursionError:  # far deeper than the limit: nothing to count
        raise _too_deep(key) from None
    # Deeper than the limit takes over *limit* pairs of brackets: the counts are
    # a fast scan in C, so the walk runs only for results that may be too deep.
    if (
        len(encoded) > 2 * limit
        and encoded.count(b"[") + encoded.count(b"{") > limit
        and jsonvalues.depth_exceeds(result, limit)
    ):
        raise _too_deep(key)
    return encoded


def _too_deep(key: str | None) -> InvalidValue:
    return InvalidValue(
        f"invalid value: patching {_subject(key)} would nest its value deeper than "
        f"{jsonvalues.MAX_DEPTH} levels; send a shallower patch"
    )
