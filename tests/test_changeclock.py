"""Unit tests of the change clock: revisions to the times by which they had happened."""

from __future__ import annotations

import random

from objstore.changeclock import ChangeClock


def test_a_revision_takes_the_time_of_the_first_mark_at_or_after_it() -> None:
    clock = ChangeClock()
    clock.mark(3, 100.0)
    clock.mark(7, 101.0)
    assert [clock.time_of(rev) for rev in range(1, 9)] == [100.0] * 3 + [101.0] * 4 + [None]
    assert clock.last == 7


def test_a_mark_without_new_revisions_is_not_kept() -> None:
    clock = ChangeClock()
    clock.mark(3, 100.0)
    clock.mark(3, 105.0)
    clock.mark(2, 106.0)
    assert clock.marks() == [(3, 100.0)]


def test_a_clock_set_back_does_not_make_a_later_revision_earlier() -> None:
    clock = ChangeClock()
    clock.mark(3, 100.0)
    clock.mark(5, 90.0)
    assert clock.time_of(5) == 100.0


def test_revisions_marked_unknown_have_no_time_and_later_ones_do() -> None:
    clock = ChangeClock.from_marks([(4, 50.0), (2, 40.0)])
    clock.mark_unknown(9)
    clock.mark(12, 60.0)
    assert [clock.time_of(rev) for rev in (1, 2, 3, 4, 5, 9, 10, 12)] == [
        40.0,
        40.0,
        50.0,
        50.0,
        None,
        None,
        60.0,
        60.0,
    ]


def test_a_mark_after_an_unknown_one_is_not_held_back_by_it() -> None:
    clock = ChangeClock()
    clock.mark(1, 10.0)
    clock.mark_unknown(5)
    clock.mark(6, 5.0)  # set back: held at the last known time, not at NaN
    assert clock.time_of(6) == 10.0


def test_memory_is_bounded_and_every_time_stays_an_upper_bound() -> None:
    """Past the limit older marks thin out; no revision's time moves earlier than it was."""
    rng = random.Random(7)
    clock = ChangeClock(limit=64)
    truth: dict[int, float] = {}
    rev, now = 0, 1000.0
    recent: list[int] = []
    for _ in range(5000):
        rev += rng.randint(1, 5)
        now += rng.random()
        for r in range(rev - 4, rev + 1):
            truth.setdefault(r, now)
        clock.mark(rev, now)
        recent = [*recent[-31:], rev]
        assert len(clock) <= 64
    marks = clock.marks()
    assert [r for r, _ in marks] == sorted(r for r, _ in marks)
    for r, happened in truth.items():
        told = clock.time_of(r)
        assert told is not None
        assert told >= happened
    # The newest marks keep their precision: the last 32 given are all there.
    assert clock.time_of(rev) == now
    assert len({r for r, _ in marks} & set(recent)) == 32
