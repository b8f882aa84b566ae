"""An instance's copy of a shared store: every key as the change feed last said.

Owns what one objstore instance knows of a store kept in Redis: every key's
value, revision, deadline and owner, the history of changes (for resuming
subscriptions) and the time of each change, as the changes arrive from the
store's change feed, in revision order. Every read of the instance answers
from here, at memory speed, so reads keep working while Redis is away (they
answer what the instance last knew). Pure: no I/O, no asyncio; knows nothing
of Redis commands, only of changes (:class:`FeedChange`) and snapshots.

Memory: the whole store (as the file store holds it), plus per key with a
deadline an int and a heap entry, per ephemeral key its owner's name.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from .changeclock import ChangeClock
from .keyspace import HISTORY_SIZE, Change, KeySpace

__all__ = ["FeedChange", "KeyRecord", "Mirror"]


@dataclass(slots=True)
class FeedChange:
    """One change as the store's feed tells it: *value* None for a deletion; *expired*
    when the deletion was its deadline's; *expires* (ms since the epoch) and *owner*
    (an instance's connection) the key's deadline and owner after it."""

    rev: int
    key: str
    value: bytes | None
    expires: int | None = None
    owner: str | None = None
    expired: bool = False


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """A key as a snapshot of the store reads it."""

    value: bytes
    rev: int
    expires: int | None = None
    owner: str | None = None


class Mirror:
    """Values with revisions, deadlines and owners, kept as the feed tells them."""

    def __init__(
        self,
        records: dict[str, KeyRecord] | None = None,
        rev: int = 0,
        history_size: int = HISTORY_SIZE,
    ) -> None:
        """A mirror of a snapshot read while the store was at *rev* or later: the changes
        after *rev* are still to be applied (those a record already holds are noted)."""
        records = records or {}
        values = {key: record.value for key, record in records.items()}
        revs = {key: record.rev for key, record in records.items()}
        self.space = KeySpace(values, revs, rev, history_size=history_size)
        self.clock = ChangeClock()
        self.clock.mark_unknown(max(rev, max(revs.values(), default=0)))
        self._expires: dict[str, int] = {}
        self._deadlines: list[tuple[int, str]] = []
        self._owners: dict[str, str] = {}
        for key, record in records.items():
            if record.expires is not None:
                self._expires[key] = record.expires
                self._deadlines.append((record.expires, key))
            if record.owner is not None:
                self._owners[key] = record.owner
        heapq.heapify(self._deadlines)

    # -- changes ----------------------------------------------------------------------

    def apply(self, change: FeedChange) -> bool:
        """Apply *change*, the next of the feed; False when the mirror already held a later
        value of its key (from the snapshot it started with): then only noted."""
        space = self.space
        key = change.key
        if space.revs.get(key, 0) > change.rev:
            space.note(key, change.rev, change.value is None)
            return False
        space.apply(key, change.value, change.rev)
        expires = change.expires if change.value is not None else None
        if expires is None:
            self._expires.pop(key, None)
        else:
            self._expires[key] = expires
            heapq.heappush(self._deadlines, (expires, key))
            if len(self._deadlines) > 2 * len(self._expires) + 64:
                self._deadlines = [(at, name) for name, at in self._expires.items()]
                heapq.heapify(self._deadlines)
        owner = change.owner if change.value is not None else None
        if owner is None:
            self._owners.pop(key, None)
        else:
            self._owners[key] = owner
        return True

    # -- reads ------------------------------------------------------------------------

    @property
    def rev(self) -> int:
        return self.space.rev

    def get(self, key: str) -> bytes | None:
        return self.space.values.get(key)

    def revision(self, key: str) -> int:
        return self.space.revs.get(key, 0)

    def __len__(self) -> int:
        return len(self.space.values)

    def __contains__(self, key: object) -> bool:
        return key in self.space.values

    def items(self) -> Iterable[tuple[str, bytes]]:
        return self.space.values.items()

    def keys(self, prefix: str = "", after: str | None = None, limit: int = 100) -> list[str]:
        return self.space.keys(prefix, after, limit)

    def matching(self, prefix: str) -> Iterator[str]:
        return self.space.matching(prefix)

    def changes_since(self, since: int) -> list[Change] | None:
        return self.space.changes_since(since)

    def details(self, key: str) -> tuple[int | None, bool]:
        expires = self._expires.get(key) if self._expires else None
        return expires, bool(self._owners) and key in self._owners

    def owner(self, key: str) -> str | None:
        return self._owners.get(key)

    def record(self, key: str) -> KeyRecord | None:
        """*key* as a snapshot would read it, None without a value."""
        value = self.space.values.get(key)
        if value is None:
            return None
        return KeyRecord(
            value, self.space.revs[key], self._expires.get(key), self._owners.get(key)
        )

    def next_deadline(self) -> float | None:
        """The earliest deadline of a key (seconds since the epoch), or None."""
        deadlines = self._deadlines
        expires = self._expires
        while deadlines:
            at, key = deadlines[0]
            if expires.get(key) == at:
                return at / 1000
            heapq.heappop(deadlines)
        return None

    def mark_time(self, now: float) -> None:
        self.clock.mark(self.space.rev, now)

    def changed_at(self, key: str) -> int | None:
        rev = self.space.revs.get(key)
        if rev is None:
            return None
        if rev > self.clock.last:
            self.mark_time(time.time())
        changed = self.clock.time_of(rev)
        return None if changed is None else int(changed * 1000)

    def stored_bytes(self) -> int:
        return sum(map(len, self.space.values.values()))
