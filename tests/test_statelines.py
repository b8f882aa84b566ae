"""The lines of the state files and the replay rules: pure, no files."""

from __future__ import annotations

import io
import logging
from typing import Any

import pytest

from objstore.statelines import (
    MAX_LINE_BYTES,
    Deadline,
    InFile,
    JournalContent,
    KeyState,
    LineReader,
    Reserve,
    SavedState,
    Value,
    encode_records,
    header_generation,
    journal_header,
    read_journal,
    read_snapshot,
    replay,
    snapshot_lines,
)


def reader(data: bytes) -> LineReader:
    return LineReader(io.BytesIO(data), "test")


def test_records_are_compact_lines() -> None:
    """Each record is one compact line; non-ASCII stays UTF-8 and a newline is escaped."""
    data = encode_records([Reserve(7), Deadline("é\n", 5), Deadline("k", None)])
    assert data == b'{"reserve":7}\n{"k":"\xc3\xa9\\n","x":5}\n{"k":"k","x":null}\n'


def test_snapshot_lines_read_back() -> None:
    """The lines of a snapshot read back as the state, under the generation written."""
    state = SavedState(
        rev=5,
        clean=False,
        base=3,
        keys={"a": KeyState(4, 9, 1, 1_700_000_000_000), "b": KeyState(5)},
        history=[(4, "a", False)],
    )
    read = read_snapshot(reader(b"".join(snapshot_lines(state, 2))))
    state.generation = 2
    assert read == state


def test_a_key_line_without_a_time_or_with_a_bad_one_keeps_the_key(caplog: Any) -> None:
    """A snapshot of an earlier version has no "t"; a garbled one loses the time only."""
    header = b'{"meta":1,"rev":5,"clean":true,"journal":1,"base":5}\n'
    lines = b'{"k":"a","r":4,"x":null,"c":7}\n{"k":"b","r":5,"x":null,"c":8,"t":"noon"}\n'
    with caplog.at_level(logging.WARNING, "objstore.cache"):
        read = read_snapshot(reader(header + lines))
    assert read is not None
    assert read.keys == {"a": KeyState(4, None, 7), "b": KeyState(5, None, 8)}
    assert "test: line 3 has an unreadable time of change" in caplog.text


def test_header_generation_of_either_file() -> None:
    """The generation is read from a snapshot header and from a journal header."""
    meta = next(iter(snapshot_lines(SavedState(), 4)))
    assert (header_generation(meta), header_generation(journal_header(6))) == (4, 6)


def test_header_generation_of_anything_else_is_none() -> None:
    """A record, garbage or a boolean generation is not a header."""
    lines = [b'{"reserve":1}', b"{garbage", b'{"journal":true}', b'{"journal":1,"x":2}', None]
    assert [header_generation(line) for line in lines] == [None] * 5


def test_line_reader_skips_an_overlong_line_unheld() -> None:
    """An overlong line comes as None; the lines around it are whole; the size counts all."""
    data = b"a\n" + b"x" * (MAX_LINE_BYTES + 1) + b"\nb"
    lines = reader(data)
    assert (list(lines), lines.size) == ([(1, b"a\n"), (2, None), (3, b"b")], len(data))


def test_line_reader_keeps_a_line_at_the_bound() -> None:
    """A line of exactly the bound (its newline aside) is read."""
    line = b"x" * MAX_LINE_BYTES + b"\n"
    assert list(reader(line)) == [(1, line)]


def test_empty_journal_is_none() -> None:
    """A journal with no bytes was begun but never written."""
    assert read_journal(reader(b"")) is None


def test_journal_keeps_the_last_deadline_and_highest_reservation() -> None:
    """Reservations keep their maximum; each key its last deadline."""
    data = journal_header(3) + encode_records(
        [Reserve(9), Deadline("a", 1), Reserve(4), Deadline("a", None)]
    )
    assert read_journal(reader(data)) == JournalContent(3, 9, {"a": None}, 4)


def test_journal_record_in_place_of_the_header_counts() -> None:
    """A journal whose first line is a reservation (its header lost) keeps that reservation."""
    journal = read_journal(reader(encode_records([Reserve(8)])))
    assert journal == JournalContent(None, 8, {}, 1)


def test_no_files_is_a_new_clean_state() -> None:
    """Neither file: revision 0, clean."""
    assert replay(None, None) == SavedState()


def test_current_journal_without_records_keeps_the_state_clean() -> None:
    """A journal holding only its header leaves a clean snapshot clean."""
    state = replay(SavedState(rev=5, generation=2), JournalContent(2))
    assert (state.rev, state.clean) == (5, True)


def test_torn_journal_header_alone_keeps_the_state_clean() -> None:
    """A journal whose header was cut short, and nothing after it, says nothing."""
    state = replay(SavedState(rev=5, generation=2), JournalContent(None))
    assert (state.rev, state.clean) == (5, True)


def test_lost_journal_makes_the_state_unclean() -> None:
    """A journal set aside may have held anything: the state is unclean."""
    state = replay(SavedState(rev=5, generation=2), None, journal_lost=True)
    assert (state.rev, state.clean) == (5, False)


def test_lost_snapshot_starts_past_the_reservations() -> None:
    """A snapshot set aside: unclean, the counter and base at the highest reservation."""
    state = replay(None, JournalContent(1, reserved=70), snapshot_lost=True)
    assert state == SavedState(rev=70, clean=False, base=70)


def test_stale_journal_raises_the_counter_only() -> None:
    """A stale journal raises the counter; its deadlines and records do not count."""
    snapshot = SavedState(rev=5, generation=2, keys={"a": KeyState(5)})
    journal = JournalContent(1, reserved=90, deadlines={"a": 3}, records=2)
    state = replay(snapshot, journal)
    assert (state.rev, state.clean, state.keys) == (90, True, {"a": KeyState(5)})


HEADER = b'{"meta":1,"rev":9,"clean":true,"journal":1,"base":9}\n'


@pytest.mark.parametrize(
    "line",
    [
        b'{"k":"a","r":18446744073709551616,"x":null,"c":null}',
        b'{"k":"a","r":-9223372036854775809,"x":null,"c":null}',
        b'{"k":"a","r":1,"x":NaN,"c":null}',
        b'{"k":"a","r":1,"x":null,"c":Infinity}',
        b'{"k":"\\ud800","r":1,"x":null,"c":null}',
        b'{"k":"\xff","r":1,"x":null,"c":null}',
        b'{"k":"a","r":1.0,"x":null,"c":null}',
        b'["k","a"]',
    ],
)
def test_key_lines_either_decoder_reads_differently_are_skipped(line: bytes) -> None:
    """Lines orjson and json read differently (huge integers, NaN, bad text) are skipped."""
    state = read_snapshot(reader(HEADER + line + b"\n"))
    assert state is not None
    assert state.keys == {}


def test_a_key_line_with_a_repeated_name_takes_the_last_value() -> None:
    """A name repeated in a line counts with its last value, as json reads it."""
    state = read_snapshot(reader(HEADER + b'{"k":"a","r":1,"r":2,"x":null,"c":null}\n'))
    assert state is not None
    assert state.keys == {"a": KeyState(2, None, None, None)}


def test_value_records_are_lines_with_the_value_as_it_is() -> None:
    """A value record holds the key as JSON and the value's bytes as stored, last."""
    data = encode_records([Value("é\n", b'{"a":[1,2]}'), Value("k", None), InFile("k")])
    assert data == (
        b'{"k":"\xc3\xa9\\n","v":{"a":[1,2]}}\n{"k":"k","rm":true}\n{"k":"k","file":true}\n'
    )


@pytest.mark.parametrize(
    "key",
    ['a,"v":1', 'quote"d', "new\nline", "back\\slash", "ü/ñ/日本", "}", "x" * 1024],
)
def test_value_records_read_back_whatever_the_key(key: str) -> None:
    """A key holding quotes, the text ``,"v":``, escapes or non-ASCII reads back exactly."""
    value = b'{"text":"a,\\"v\\":2","n":[1.5,null,true]}'
    data = journal_header(1) + encode_records([Value(key, value)])
    journal = read_journal(reader(data))
    assert journal is not None
    assert journal.values == {key: value}


def test_the_last_value_record_of_a_key_counts_and_a_file_record_ends_them() -> None:
    """Per key the last record counts: a value, a removal (None), or the file's word."""
    data = journal_header(1) + encode_records(
        [
            Value("a", b"1"),
            Value("b", b"2"),
            Value("a", b"3"),
            Value("b", None),
            Value("c", b"4"),
            InFile("c"),
        ]
    )
    journal = read_journal(reader(data))
    assert journal is not None
    assert (journal.values, journal.records) == ({"a": b"3", "b": None}, 6)


@pytest.mark.parametrize(
    "line",
    [
        b'{"k":"a","v":[1,}\n',  # not JSON
        b'{"v":1,"k":"a"}\n',  # not in the order written: the value cannot be found
        b'{"k":"a","v":1,"x":2}\n',  # a third member
        b'{"k":"a","rm":1}\n',  # a removal must say true
        b'{"k":"a","file":false}\n',
        b'{"k":"","v":1}\n',  # not a valid key
    ],
)
def test_malformed_value_records_are_skipped_with_a_warning(
    line: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    """A value record that cannot be read is skipped, and said so with its line number."""
    data = journal_header(1) + encode_records([Value("a", b"0")]) + line
    with caplog.at_level(logging.WARNING, "objstore.cache"):
        journal = read_journal(reader(data))
    assert journal is not None
    assert journal.values == {"a": b"0"}
    assert "test: line 3 cannot be read; skipped it" in caplog.text


def test_values_come_from_a_stale_journal_too() -> None:
    """A stale journal (its snapshot's own never began) still holds acknowledged values:
    they count, with the state unclean only by the usual rules."""
    snapshot = SavedState(rev=5, generation=2)
    journal = JournalContent(1, records=1, values={"a": b"1"})
    assert replay(snapshot, journal).values == {"a": b"1"}
    assert replay(None, journal, snapshot_lost=True).values == {"a": b"1"}


def test_values_of_the_current_journal_make_the_state_unclean() -> None:
    """A journal of the snapshot's generation with value records: its values, unclean."""
    state = replay(
        SavedState(rev=5, generation=2), JournalContent(2, records=1, values={"a": b"1"})
    )
    assert (state.values, state.clean) == ({"a": b"1"}, False)
