"""Values acknowledged from the journal: the writer's order of records, acknowledgements and
files, on a real folder with a journal sink that remembers what it was given."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from typing import NamedTuple

from objstore.cachefolder import CacheFolder
from objstore.valuejournal import JOURNALED_VALUE_LIMIT
from objstore.writer import MAX_BATCH_FILES, WriteBehind

from .test_writer_journal import folder, values_on_disk

__all__ = ["folder"]  # the fixture, shared

files = values_on_disk


class V(NamedTuple):
    key: str
    data: bytes | None


class F(NamedTuple):
    key: str


class Sink:
    """Keeps each append's records and the value files on disk when it came."""

    def __init__(self, folder: CacheFolder) -> None:
        self.folder = folder
        self.appends: list[tuple[list[object], dict[str, bytes]]] = []
        self.lazy: list[bool] = []

    def append(self, records: Sequence[object], *, lazy: bool = False) -> None:
        self.appends.append((list(records), files(self.folder)))
        self.lazy.append(lazy)

    @property
    def records(self) -> list[object]:
        return [record for records, _ in self.appends for record in records]


def journaling(folder: CacheFolder, sink: Sink, gather: float = 0.1) -> WriteBehind:
    return WriteBehind(
        folder, sink, gather=gather, journaled_gather=1.0, value_record=V, file_record=F
    )


async def test_an_acknowledged_value_is_told_once_in_the_journal_before_its_file(
    folder: CacheFolder,
) -> None:
    """The waiter hears once the value record is appended, while no file is written yet;
    the file follows within the journaled gathering time, then a record that it holds it."""
    sink = Sink(folder)
    writer = journaling(folder, sink)
    assert await writer.write_and_wait("k", b"1") is None
    assert sink.appends == [([V("k", b"1")], {})]
    assert files(folder) == {}
    await writer.flush()
    assert files(folder) == {"k.json": b"1\n"}
    assert sink.records == [V("k", b"1"), F("k")]
    assert sink.lazy == [False, True]
    await writer.close()


async def test_files_of_acknowledged_values_gather_for_the_longer_time(
    folder: CacheFolder,
) -> None:
    """While every pending value is in the journal, files wait up to a second, so a key
    acknowledged many times is written once; a plain write brings the time back to 0.1 s."""
    sink = Sink(folder)
    writer = journaling(folder, sink)
    for value in range(20):
        assert await writer.write_and_wait("k", b"%d" % value) is None
    await asyncio.sleep(0.3)
    assert files(folder) == {}
    started = time.monotonic()
    writer.write("plain", b"0")
    for _ in range(100):
        if files(folder):
            break
        await asyncio.sleep(0.01)
    assert time.monotonic() - started < 0.3
    assert files(folder) == {"k.json": b"19\n", "plain.json": b"0\n"}
    await writer.close()


async def test_acknowledgements_do_not_wait_for_a_long_batch_of_files(
    folder: CacheFolder,
) -> None:
    """A value acknowledged while a batch of slow files is written is told between two of
    its files, not after the last."""
    sink = Sink(folder)
    writer = journaling(folder, sink, gather=0.0)
    write = folder.write
    slow = threading.Event()

    def slow_write(key: str, data: bytes) -> None:
        slow.wait(0.01)  # 10 ms a file: 50 files take half a second
        write(key, data)

    folder.write = slow_write  # type: ignore[method-assign]
    for number in range(50):
        writer.write(f"p{number}", b"0")
    await asyncio.sleep(0.05)  # the batch is being written
    started = time.monotonic()
    assert await writer.write_and_wait("k", b"1") is None
    assert time.monotonic() - started < 0.1
    assert len(files(folder)) < 50
    await writer.close()


async def test_a_plain_value_after_an_acknowledged_one_is_recorded_before_its_file(
    folder: CacheFolder,
) -> None:
    """A key with a value record gets a record of a later plain value before its file, so
    that the journal never holds a value older than the file's."""
    sink = Sink(folder)
    writer = journaling(folder, sink)
    assert await writer.write_and_wait("k", b"1") is None
    writer.write("k", b"2")
    await writer.flush()
    assert sink.appends[1] == ([V("k", b"2")], {})  # before the file
    assert sink.records == [V("k", b"1"), V("k", b"2"), F("k")]
    assert files(folder) == {"k.json": b"2\n"}
    await writer.close()


async def test_a_value_too_large_for_a_record_waits_for_its_file_then_ends_the_records(
    folder: CacheFolder,
) -> None:
    """A value over the limit is not journaled: its waiter hears once the file is written and
    the record that the file holds the key's value is appended (flushed, not lazy)."""
    sink = Sink(folder)
    writer = journaling(folder, sink)
    big = b'"' + b"x" * JOURNALED_VALUE_LIMIT + b'"'
    assert await writer.write_and_wait("k", b"1") is None
    assert await writer.write_and_wait("k", big) is None
    assert files(folder) == {"k.json": big + b"\n"}
    assert sink.records == [V("k", b"1"), F("k")]
    assert sink.lazy[-1] is False
    await writer.close()


async def test_a_fold_carries_the_values_whose_files_are_not_written(
    folder: CacheFolder,
) -> None:
    """Records given after a folding one begin the new journal: the values of keys whose
    files wait follow the fold, so that they outlive the old journal."""
    sink = Sink(folder)
    writer = journaling(folder, sink)
    assert await writer.write_and_wait("a", b"1") is None
    assert await writer.write_and_wait("b", b"2") is None
    writer.journal("snapshot", folds=True)
    await writer.flush()
    fold = next(records for records, _ in sink.appends if "snapshot" in records)
    assert fold[0] == "snapshot"
    assert set(fold[1:]) == {V("a", b"1"), V("b", b"2")}
    assert files(folder) == {"a.json": b"1\n", "b.json": b"2\n"}
    await writer.close()


async def test_in_file_waits_for_the_file(folder: CacheFolder) -> None:
    """``in_file`` (POST /set) waits for the file itself, with no value record."""
    sink = Sink(folder)
    writer = journaling(folder, sink)
    assert await writer.write_and_wait("k", b"1", in_file=True) is None
    assert files(folder) == {"k.json": b"1\n"}
    assert sink.records == []
    await writer.close()


async def test_a_write_waited_for_goes_before_the_gathered_files_of_other_keys(
    folder: CacheFolder,
) -> None:
    """A write somebody waits for in its file (POST /set) goes alone, ahead of the files
    gathered for other keys, and later batches hold at most MAX_BATCH_FILES files: it
    never waits for all of them."""
    sink = Sink(folder)
    writer = journaling(folder, sink)
    write = folder.write
    written: list[str] = []

    def slow_write(key: str, data: bytes) -> None:
        time.sleep(0.002)  # 2 ms a file: 600 files take over a second
        write(key, data)
        written.append(key)

    folder.write = slow_write  # type: ignore[method-assign]
    for number in range(600):
        assert await writer.write_and_wait(f"g{number}", b"1") is None  # gathering
    assert await writer.write_and_wait("posted", b"2", in_file=True) is None
    assert written == ["posted"]
    assert await writer.write_and_wait("posted", b"3", in_file=True) is None
    assert len(written) <= 2 + MAX_BATCH_FILES
    assert written[-1] == "posted"
    await writer.close()
    assert len(written) == 602
