"""The bookkeeping of values acknowledged from the journal: pure, no writer, no files."""

from __future__ import annotations

from objstore.valuejournal import JOURNALED_VALUE_LIMIT, ValueJournal, fits_a_record

BIG = b"x" * (JOURNALED_VALUE_LIMIT + 1)


def journal() -> ValueJournal:
    return ValueJournal(lambda key, data: ("v", key, data), lambda key: ("file", key))


def test_values_up_to_the_limit_and_removals_fit_a_record() -> None:
    """32 KiB fits, one byte more does not; a removal always does."""
    assert fits_a_record(b"x" * JOURNALED_VALUE_LIMIT)
    assert fits_a_record(None)
    assert not fits_a_record(BIG)


def test_a_key_without_records_needs_none_before_its_file() -> None:
    """Only keys given a value record are looked after."""
    values = journal()
    assert not values
    assert values.before_files([("k", b"1")], [], [], folded=False) == ([], [])


def test_a_later_value_is_recorded_before_its_file_and_settled_after() -> None:
    """A key acknowledged with 1 then written with 2 gets a record of 2 first; once the
    file is written, it is settled with a file record and forgotten."""
    values = journal()
    given = values.given("k", b"1")
    assert given == ("v", "k", b"1")
    two = b"2"
    records, settle = values.before_files([("k", two)], [], [], folded=False)
    assert records == [(("v", "k", two), "k")]
    assert settle == [("k", two, two, True)]
    assert values.to_settle(settle, {}, {}) == settle
    assert values.file_records(settle) == [(("file", "k"), "k")]
    values.settled(settle)
    assert not values


def test_the_same_value_needs_no_second_record() -> None:
    """The very data already recorded is written without another record."""
    values = journal()
    one = b"1"
    values.given("k", one)
    assert values.before_files([("k", one)], [], [], folded=False) == ([], [("k", one, one, True)])


def test_a_value_too_large_is_not_recorded_but_settled_against_the_last_record() -> None:
    """A large value gets no record; it is settled against the record it supersedes."""
    values = journal()
    one = b"1"
    values.given("k", one)
    records, settle = values.before_files([("k", BIG)], [], [], folded=False)
    assert records == []
    assert settle == [("k", BIG, one, True)]


def test_a_newer_record_given_meanwhile_keeps_the_key_unsettled() -> None:
    """A value given after the batch was taken is not ended by that batch's file record."""
    values = journal()
    one = b"1"
    values.given("k", one)
    _, settle = values.before_files([("k", one)], [], [], folded=False)
    values.given("k", b"3")
    assert values.to_settle(settle, {}, {}) == []
    values.settled(settle)
    assert values


def test_failed_files_are_not_settled() -> None:
    """A key whose file failed (in the batch or as a retry) keeps its records."""
    values = journal()
    a, b = b"1", b"2"
    values.given("a", a)
    values.given("b", b)
    _, settle = values.before_files([("a", a)], [("b", b)], [], folded=False)
    assert values.to_settle(settle, {"a": "error"}, {}) == [("b", b, b, False)]
    assert values.to_settle(settle, {}, {"b": "error"}) == [("a", a, a, True)]


def test_a_fold_carries_every_key_whose_file_is_not_written() -> None:
    """After a fold, the batch's, the retries' and the failed writes' keys with records get
    one in the new journal (a large value: its last record's data); others are forgotten."""
    values = journal()
    for key in ("a", "b", "c", "gone"):
        values.given(key, b"0")
    records, settle = values.before_files([("a", b"1")], [("b", BIG)], [("c", b"2")], folded=True)
    assert [record for record, _ in records] == [
        ("v", "a", b"1"),
        ("v", "b", b"0"),
        ("v", "c", b"2"),
    ]
    assert [item[0] for item in settle] == ["a", "b"]
    assert values.before_files([("gone", b"9")], [], [], folded=False) == ([], [])
