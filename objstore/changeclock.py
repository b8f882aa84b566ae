"""When changes happened, told from their revisions, at no cost to a change.

Owns the map from revisions to wall-clock times that lets the console show a
key's time of last change. A change does not read the clock (that would add a
clock read and a dict entry to every set); instead :meth:`ChangeClock.mark` is
called about once a second with the store's revision and the time, and the
time of a revision is that of the first mark at or after it: an upper bound,
late by at most the interval between marks.

Memory is bounded: at most :data:`MAX_MARKS` marks (two arrays of 8-byte
numbers, 160 KB). When full, every other mark of the older half is dropped,
so recent changes keep a one-second precision and older ones a coarser one
(the bound stays an upper bound: dropping a mark only moves a revision's time
to a later mark).

Some revisions have no known time: those a start gives to values whose time
was not recorded (after a stop that was not clean, or files changed while the
server was stopped). :meth:`ChangeClock.mark_unknown` marks them with a time
that is not a number. Pure: the caller passes the time.
"""

from __future__ import annotations

import bisect
import math
from array import array
from collections.abc import Iterable
from typing import Final

__all__ = ["MAX_MARKS", "ChangeClock"]

#: The most marks kept.
MAX_MARKS: Final = 10_000


class ChangeClock:
    """Revisions and the times by which they had happened, in increasing order of both."""

    __slots__ = ("_latest", "_limit", "_revs", "_times")

    def __init__(self, *, limit: int = MAX_MARKS) -> None:
        self._limit = max(2, limit)
        self._revs = array("q")
        self._times = array("d")
        self._latest = -math.inf  # the latest known time marked

    def __len__(self) -> int:
        return len(self._revs)

    @property
    def last(self) -> int:
        """The revision of the last mark (0 before any)."""
        return self._revs[-1] if self._revs else 0

    @classmethod
    def from_marks(
        cls, marks: Iterable[tuple[int, float]], *, limit: int = MAX_MARKS
    ) -> ChangeClock:
        """A clock holding *marks* (revision, time) in any order, as a restart rebuilds it."""
        clock = cls(limit=limit)
        for rev, when in sorted(marks):
            clock.mark(rev, when)
        return clock

    def mark(self, rev: int, now: float) -> None:
        """Every revision up to *rev* has happened by *now* (seconds since the epoch).

        A mark that adds nothing (no revision past the last mark) is not kept. A
        clock set back is not believed: a mark is never earlier than the one before.
        """
        revs, times = self._revs, self._times
        if revs and rev <= revs[-1]:
            return
        if not math.isnan(now):
            now = self._latest = max(now, self._latest)
        revs.append(rev)
        times.append(now)
        if len(revs) > self._limit:
            self._thin()

    def mark_unknown(self, rev: int) -> None:
        """The revisions after the last mark, up to *rev*, have no known time."""
        self.mark(rev, math.nan)

    def time_of(self, rev: int) -> float | None:
        """The time by which revision *rev* had happened; None when it is not known.

        A revision past the last mark has not been marked yet: also None (the
        caller marks the present first when it wants every revision so far).
        """
        index = bisect.bisect_left(self._revs, rev)
        if index == len(self._times):
            return None
        when = self._times[index]
        return None if math.isnan(when) else when

    def marks(self) -> list[tuple[int, float]]:
        """Every mark, oldest first."""
        return list(zip(self._revs, self._times, strict=True))

    def _thin(self) -> None:
        """Drop every other mark of the older half, keeping the newest of each pair."""
        half = len(self._revs) // 2
        keep = list(range(1, half, 2)) + list(range(half, len(self._revs)))
        self._revs = array("q", (self._revs[i] for i in keep))
        self._times = array("d", (self._times[i] for i in keep))
