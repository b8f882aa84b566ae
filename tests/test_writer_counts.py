"""What the writer counts for monitoring: batch latency, failures, whether writes fail now."""

from __future__ import annotations

import errno
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from objstore.cachefolder import CacheFolder
from objstore.writer import LATENCY_BUCKETS, WriteBehind


@pytest.fixture
def folder(tmp_path: Path) -> Iterator[CacheFolder]:
    cache = CacheFolder(tmp_path / "cache")
    cache.prepare()
    yield cache
    cache.close()


class FailingJournal:
    """A journal whose first *failures* appends fail like a full disk."""

    def __init__(self, failures: int) -> None:
        self.failures = failures

    def append(self, records: Sequence[object], *, lazy: bool = False) -> None:
        if self.failures:
            self.failures -= 1
            raise OSError(errno.ENOSPC, "No space left on device", "journal")


async def test_each_batch_is_counted_in_the_latency_histogram(folder: CacheFolder) -> None:
    """Two batches written: the +Inf bucket counts 2, buckets are cumulative, the sum grows."""
    writer = WriteBehind(folder)
    assert writer.latency() == ([0] * (len(LATENCY_BUCKETS) + 1), 0.0)
    writer.write("a", b"1")
    await writer.flush()
    writer.write("b", b"2")
    await writer.flush()
    counts, total = writer.latency()
    await writer.close()
    assert counts[-1] == 2
    assert counts == sorted(counts)
    assert total > 0


async def test_failures_are_counted_and_cleared_once_written(folder: CacheFolder) -> None:
    """A failing write sets failure and counts; once a retry works, failure is None again."""
    (folder.path / "k.json").mkdir()  # a folder where the file goes
    writer = WriteBehind(folder)
    writer.write("k", b"1")
    await writer.flush()
    assert writer.failures == 1
    assert writer.failure is not None
    assert str(writer.failure).startswith('could not save key "k" to ')
    (folder.path / "k.json").rmdir()
    writer.write("k", b"2")
    await writer.flush()
    assert writer.failure is None
    assert writer.failures == 1
    assert await writer.close() == []


async def test_a_failed_journal_append_is_a_failure(folder: CacheFolder) -> None:
    """A journal append that fails counts once and makes writes failing until one works."""
    writer = WriteBehind(folder, journal=FailingJournal(failures=1))
    writer.journal("record")
    writer.write("k", b"1")
    await writer.flush()
    assert (writer.failures, writer.failure is not None) == (1, True)
    assert await writer.close() == []
    assert writer.failures == 1
