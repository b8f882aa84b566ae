"""Journal records before value files: order, failures of the journal, retries and close."""

from __future__ import annotations

import asyncio
import errno
import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from objstore import writer as writer_module
from objstore.cachefolder import CacheFolder
from objstore.errors import StorageError
from objstore.writer import WriteBehind


@pytest.fixture
def folder(tmp_path: Path) -> Iterator[CacheFolder]:
    cache = CacheFolder(tmp_path / "cache")
    cache.prepare()
    yield cache
    cache.close()


class FolderJournal:
    """A journal that keeps its records in memory, with the value files present when each
    append came, and that fails its first *failures* appends like a full disk."""

    def __init__(self, folder: CacheFolder, failures: int = 0) -> None:
        self.folder = folder
        self.failures = failures
        #: Each append: its records and the folder's value files at that moment.
        self.appends: list[tuple[list[object], dict[str, bytes]]] = []

    def append(self, records: Sequence[object], *, lazy: bool = False) -> None:
        if self.failures:
            self.failures -= 1
            raise OSError(errno.ENOSPC, "No space left on device", "journal")
        self.appends.append((list(records), values_on_disk(self.folder)))

    @property
    def records(self) -> list[object]:
        return [record for records, _ in self.appends for record in records]


def values_on_disk(folder: CacheFolder) -> dict[str, bytes]:
    return {
        p.name: p.read_bytes()
        for p in folder.path.iterdir()
        if p.name.endswith(".json") and not p.name.startswith(".")
    }


async def eventually(condition: Callable[[], bool]) -> None:
    for _ in range(200):
        if condition():
            return
        await asyncio.sleep(0.025)
    raise AssertionError("the condition did not become true in 5 seconds")


async def test_records_are_appended_before_the_files_of_their_batch(folder: CacheFolder) -> None:
    """Each batch's records reach the journal while its files still hold the older values."""
    journal = FolderJournal(folder)
    writer = WriteBehind(folder, journal)
    writer.journal("r1", "k")
    assert await writer.write_and_wait("k", b"1") is None
    writer.journal("r2", "k")
    assert await writer.write_and_wait("k", b"2") is None
    assert journal.appends == [(["r1"], {}), (["r2"], {"k.json": b"1\n"})]
    assert values_on_disk(folder) == {"k.json": b"2\n"}
    await writer.close()


async def test_records_of_a_removal_come_before_it(folder: CacheFolder) -> None:
    """A removal's record reaches the journal while the key's file is still there."""
    journal = FolderJournal(folder)
    writer = WriteBehind(folder, journal)
    assert await writer.write_and_wait("k", b"1") is None
    writer.journal("deleted", "k")
    assert await writer.write_and_wait("k", None) is None
    assert journal.appends == [(["deleted"], {"k.json": b"1\n"})]
    assert values_on_disk(folder) == {}
    await writer.close()


async def test_a_record_alone_is_appended_and_flush_waits_for_it(folder: CacheFolder) -> None:
    """A record without a write wakes the writer, and flush returns once it is appended."""
    journal = FolderJournal(folder)
    writer = WriteBehind(folder, journal)
    writer.journal({"reserve": 1000})
    await writer.flush()
    assert journal.records == [{"reserve": 1000}]
    await writer.close()


async def test_records_keep_their_order(folder: CacheFolder) -> None:
    """Records given one after another are appended in that order, each once."""
    journal = FolderJournal(folder)
    writer = WriteBehind(folder, journal)
    for n in range(50):
        writer.journal(n, f"k{n % 3}")
        writer.write(f"k{n % 3}", str(n).encode())
    await writer.flush()
    assert journal.records == list(range(50))
    await writer.close()


async def test_failed_append_writes_no_file_of_its_batch(
    folder: CacheFolder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the journal cannot be appended to, the batch's files are not written and its
    waiter hears why."""
    # No retry before the checks below, however slow the machine.
    monkeypatch.setattr(writer_module, "FIRST_RETRY_DELAY", 60.0)
    journal = FolderJournal(folder, failures=1)
    writer = WriteBehind(folder, journal)
    writer.journal("r1", "k")
    failure = await writer.write_and_wait("k", b"1")
    assert str(failure) == "could not write the journal journal: No space left on device"
    assert values_on_disk(folder) == {}
    assert (writer.unjournaled, writer.failing) == (1, 1)
    await writer.close()


async def test_failed_append_tells_the_failure_callbacks(folder: CacheFolder) -> None:
    """Every setter of a batch blocked by the journal hears of it once."""
    journal = FolderJournal(folder, failures=1)
    writer = WriteBehind(folder, journal)
    told: list[str] = []
    writer.journal("r1", "a")
    writer.write("a", b"1", lambda error: told.append(f"a: {error}"))
    writer.write("b", None, lambda error: told.append(f"b: {error}"))
    await writer.flush()
    assert sorted(told) == [
        "a: could not write the journal journal: No space left on device",
        "b: could not write the journal journal: No space left on device",
    ]
    await writer.close()


async def test_failed_append_is_retried_before_the_files(folder: CacheFolder) -> None:
    """Records whose append failed are appended again, then the batch's files written."""
    journal = FolderJournal(folder, failures=2)
    writer = WriteBehind(folder, journal)
    writer.journal("r1", "k")
    assert isinstance(await writer.write_and_wait("k", b"1"), StorageError)
    await eventually(lambda: writer.failing == 0)
    await writer.flush()
    assert journal.appends == [(["r1"], {})]
    assert values_on_disk(folder) == {"k.json": b"1\n"}
    assert writer.unjournaled == 0
    assert await writer.close() == []


async def test_a_record_alone_is_retried(folder: CacheFolder) -> None:
    """A record whose append failed, with no write in its batch, is appended again."""
    journal = FolderJournal(folder, failures=1)
    writer = WriteBehind(folder, journal)
    writer.journal("r1")
    await writer.flush()
    assert writer.unjournaled == 1
    await eventually(lambda: writer.unjournaled == 0)
    assert journal.records == ["r1"]
    await writer.close()


async def test_records_after_a_failed_append_come_after_its_records(folder: CacheFolder) -> None:
    """New records are appended after those whose append failed, and the latest value wins."""
    journal = FolderJournal(folder, failures=1)
    writer = WriteBehind(folder, journal)
    writer.journal("r1", "k")
    assert isinstance(await writer.write_and_wait("k", b"1"), StorageError)
    writer.journal("r2", "k")
    assert await writer.write_and_wait("k", b"2") is None
    assert journal.appends == [(["r1", "r2"], {})]
    assert values_on_disk(folder) == {"k.json": b"2\n"}
    assert (writer.unjournaled, writer.failing) == (0, 0)
    await writer.close()


async def test_journal_failure_is_logged_once(
    folder: CacheFolder, caplog: pytest.LogCaptureFixture
) -> None:
    """A journal that keeps failing is logged once at ERROR, and its recovery at INFO."""
    caplog.set_level(logging.INFO, "objstore.cache")
    journal = FolderJournal(folder, failures=1000)
    writer = WriteBehind(folder, journal)
    for n in range(3):
        writer.journal(n, "k")
        assert isinstance(await writer.write_and_wait("k", b"1"), StorageError)
    journal.failures = 0
    await eventually(lambda: writer.failing == 0)
    await writer.flush()  # the retry under way
    messages = [(r.levelname, r.getMessage()) for r in caplog.records if r.levelname != "DEBUG"]
    assert messages == [
        ("ERROR", "could not write the journal journal: No space left on device; will try again"),
        ("INFO", "the journal is written again"),
        ("INFO", "saved 1 keys whose earlier writes had failed"),
    ]
    assert journal.records == [0, 1, 2]
    await writer.close()


async def test_close_returns_the_keys_of_records_never_appended(folder: CacheFolder) -> None:
    """Closing with a journal that still fails returns the keys of its records and of the
    writes it held back."""
    journal = FolderJournal(folder, failures=1000)
    writer = WriteBehind(folder, journal)
    writer.journal("r1", "a")
    writer.journal({"reserve": 1000})
    writer.write("b", b"1")
    await writer.flush()
    assert sorted(await writer.close()) == ["a", "b"]
    assert values_on_disk(folder) == {}


async def test_writer_without_a_journal_refuses_records(folder: CacheFolder) -> None:
    """Giving a record to a writer made without a journal is a programming error."""
    writer = WriteBehind(folder)
    with pytest.raises(RuntimeError, match=r"^this writer was made without a journal$"):
        writer.journal("r1")
