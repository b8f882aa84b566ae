"""The key space in memory: every key's value and revision, the change history, the key order.

Owns the store's revision counter and what it numbers: each change (a value
set, a key removed) takes the next revision, the key remembers it, and the
history remembers the last :data:`HISTORY_SIZE` changes so that a client
can ask what changed after a revision (:meth:`KeySpace.changes_since`).
Also lists keys in UTF-8 byte order. Pure: no I/O, no asyncio, no JSON;
values are opaque bytes. Knows nothing of files, deadlines or subscribers.

Memory: per key, its value and an int in a second dict; per remembered
change, a small tuple (the history holds at most HISTORY_SIZE, about 1 MB).
The sorted list of keys is made on the first listing or prefix snapshot and
then kept up to date as keys come and go (8 bytes per key).
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Final, NamedTuple

__all__ = ["HISTORY_SIZE", "Change", "KeySpace"]

#: Changes remembered for resuming subscriptions.
HISTORY_SIZE: Final = 10_000


class Change(NamedTuple):
    """One remembered change: its revision, its key, and whether it removed the key."""

    rev: int
    key: str
    deleted: bool


class KeySpace:
    """Values by key with their revisions, a bounded change history, and key order.

    Python compares strings by code point, which is the order of their UTF-8
    bytes, so sorting keys as strings lists them in UTF-8 byte order.
    """

    __slots__ = ("_base", "_history", "_sorted", "rev", "revs", "values")

    def __init__(
        self,
        values: dict[str, bytes] | None = None,
        revs: dict[str, int] | None = None,
        rev: int = 0,
        *,
        history: Iterable[Change] = (),
        base: int | None = None,
        history_size: int = HISTORY_SIZE,
    ) -> None:
        """*base*: every change after this revision is in *history* (default: *rev*)."""
        #: Every key's value, as compact JSON bytes.
        self.values: dict[str, bytes] = {} if values is None else values
        #: Every key's revision (the revision of its last change).
        self.revs: dict[str, int] = {} if revs is None else revs
        #: The revision of the store's last change.
        self.rev = rev
        # Plain tuples (rev, key, deleted): a NamedTuple costs 200 ns more to make,
        # on every set.
        self._history: deque[tuple[int, str, bool]] = deque(history, maxlen=history_size)
        self._base = rev if base is None else base
        self._sorted: list[str] | None = None

    def __len__(self) -> int:
        return len(self.values)

    def get(self, key: str) -> bytes | None:
        """The value of *key*, or None when it has none."""
        return self.values.get(key)

    def revision(self, key: str) -> int:
        """The revision of *key*'s last change; 0 when it has no value."""
        return self.revs.get(key, 0)

    def put(self, key: str, value: bytes) -> int:
        """Make *value* the value of *key*; return the change's revision."""
        rev = self.rev + 1
        self.rev = rev
        values = self.values
        if self._sorted is not None and key not in values:
            bisect.insort(self._sorted, key)
        values[key] = value
        self.revs[key] = rev
        self._history.append((rev, key, False))
        return rev

    def remove(self, key: str) -> int | None:
        """Remove *key*; return the change's revision, or None when it had no value."""
        if self.values.pop(key, None) is None:
            return None
        del self.revs[key]
        rev = self.rev + 1
        self.rev = rev
        if self._sorted is not None:
            keys = self._sorted
            del keys[bisect.bisect_left(keys, key)]
        self._history.append((rev, key, True))
        return rev

    def apply(self, key: str, value: bytes | None, rev: int) -> None:
        """A change made elsewhere (a shared store): *value* (None: removed) became *key*'s
        at revision *rev*, past every revision so far. Revisions may skip numbers
        only where :meth:`note` is not told of the changes between."""
        self.rev = rev
        values = self.values
        if value is None:
            if values.pop(key, None) is not None:
                del self.revs[key]
                if self._sorted is not None:
                    keys = self._sorted
                    del keys[bisect.bisect_left(keys, key)]
            self._history.append((rev, key, True))
            return
        if self._sorted is not None and key not in values:
            bisect.insort(self._sorted, key)
        values[key] = value
        self.revs[key] = rev
        self._history.append((rev, key, False))

    def note(self, key: str, rev: int, deleted: bool) -> None:
        """Remember a change of *key* at *rev* without applying it: the key already holds
        a later one (read from a snapshot taken after the change)."""
        self.rev = rev
        self._history.append((rev, key, deleted))

    @property
    def base(self) -> int:
        """Every change after this revision is in the history.

        Every change takes the next revision and is remembered, so once the
        history is full (and forgets its oldest change at each new one) that
        is the revision before its oldest.
        """
        history = self._history
        if len(history) == history.maxlen and history:
            return max(self._base, history[0][0] - 1)
        return self._base

    # -- order ------------------------------------------------------------------------

    def _keys_in_order(self) -> list[str]:
        keys = self._sorted
        if keys is None:
            keys = self._sorted = sorted(self.values)
        return keys

    def keys(self, prefix: str = "", after: str | None = None, limit: int = 100) -> list[str]:
        """At most *limit* keys that start with *prefix*, after *after*, in order."""
        keys = self._keys_in_order()
        if after is None or after < prefix:
            index = bisect.bisect_left(keys, prefix)
        else:
            index = bisect.bisect_right(keys, after)
        found: list[str] = []
        while index < len(keys) and len(found) < limit:
            key = keys[index]
            if not key.startswith(prefix):
                break
            found.append(key)
            index += 1
        return found

    def matching(self, prefix: str) -> Iterator[str]:
        """Every key that starts with *prefix*, in order (a copy: safe while changing)."""
        keys = self._keys_in_order()
        if prefix == "":
            return iter(list(keys))
        start = end = bisect.bisect_left(keys, prefix)
        while end < len(keys) and keys[end].startswith(prefix):
            end += 1
        return iter(keys[start:end])

    # -- history ----------------------------------------------------------------------

    @property
    def history(self) -> list[Change]:
        """The remembered changes, oldest first."""
        return [Change._make(change) for change in self._history]

    def changes_since(self, since: int) -> list[Change] | None:
        """The latest change of each key changed after *since*, in revision order.

        None when the history does not hold every change after *since*: it is
        older than the history, or ahead of the store.
        """
        if since < self.base or since > self.rev:
            return None
        latest: dict[str, tuple[int, str, bool]] = {}
        for change in reversed(self._history):
            if change[0] <= since:
                break
            latest.setdefault(change[1], change)
        return [Change._make(change) for change in sorted(latest.values())]

    def forget_history(self) -> None:
        """Forget every change: resuming from any earlier revision starts afresh."""
        self._history.clear()
        self._base = self.rev
