"""Gathering writes: a key set many times within the gathering time is written once,
and a write somebody waits for never waits for the gathering."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from objstore.cachefolder import CacheFolder
from objstore.writer import WriteBehind

GATHER = 0.3


class CountingFolder(CacheFolder):
    """A real cache folder that also counts the files it writes."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.written: list[tuple[str, bytes]] = []

    def write(self, key: str, data: bytes) -> None:
        super().write(key, data)
        self.written.append((key, data))


@pytest.fixture
def folder(tmp_path: Path) -> Iterator[CountingFolder]:
    cache = CountingFolder(tmp_path / "cache")
    cache.prepare()
    yield cache
    cache.close()


async def until_written(folder: CountingFolder, count: int, limit: float = 5.0) -> float:
    """Seconds until the folder has written *count* files."""
    start = time.monotonic()
    while len(folder.written) < count:
        assert time.monotonic() - start < limit, folder.written
        await asyncio.sleep(0.005)
    return time.monotonic() - start


async def test_sets_of_a_key_within_the_gathering_time_are_written_once(
    folder: CountingFolder,
) -> None:
    """Ten sets of one key, 10 ms apart, make one file: the last value."""
    writer = WriteBehind(folder, gather=GATHER)
    for n in range(10):
        writer.write("k", b"%d" % n)
        await asyncio.sleep(0.01)
    await until_written(folder, 1)
    await asyncio.sleep(GATHER)  # nothing more comes
    assert folder.written == [("k", b"9")]
    assert (folder.path / "k.json").read_bytes().strip() == b"9"
    await writer.close()


async def test_a_write_nobody_waits_for_is_written_within_the_gathering_time(
    folder: CountingFolder,
) -> None:
    """A lone set is on disk after the gathering time, not before it, and not much later."""
    writer = WriteBehind(folder, gather=GATHER)
    writer.write("k", b"1")
    took = await until_written(folder, 1)
    assert GATHER * 0.8 <= took < GATHER + 0.5
    await writer.close()


async def test_a_waited_write_ends_the_gathering_at_once(folder: CountingFolder) -> None:
    """A write with a waiter, made while a batch gathers, is written at once with it."""
    writer = WriteBehind(folder, gather=GATHER)
    writer.write("a", b"1")
    await asyncio.sleep(0.02)  # the thread is gathering
    start = time.monotonic()
    assert await writer.write_and_wait("b", b"2") is None
    assert time.monotonic() - start < GATHER / 2
    assert sorted(folder.written) == [("a", b"1"), ("b", b"2")]
    await writer.close()


async def test_flush_ends_the_gathering_at_once(folder: CountingFolder) -> None:
    """A flush (a stop, a snapshot) does not wait for the gathering time."""
    writer = WriteBehind(folder, gather=GATHER)
    writer.write("a", b"1")
    await asyncio.sleep(0.02)
    start = time.monotonic()
    await writer.flush()
    assert time.monotonic() - start < GATHER / 2
    assert folder.written == [("a", b"1")]
    await writer.close()


async def test_a_callback_after_the_writes_ends_the_gathering_at_once(
    folder: CountingFolder,
) -> None:
    """after_written (how sync mode and others wait) is called without the gathering time."""
    writer = WriteBehind(folder, gather=GATHER)
    writer.write("a", b"1")
    await asyncio.sleep(0.02)
    called = asyncio.get_running_loop().create_future()
    start = time.monotonic()
    writer.after_written(lambda: called.set_result(time.monotonic()))
    assert await asyncio.wait_for(called, 5) - start < GATHER / 2
    await writer.close()


async def test_without_gathering_a_write_goes_at_once(folder: CountingFolder) -> None:
    """The default writes as soon as the thread is free."""
    writer = WriteBehind(folder)
    writer.write("k", b"1")
    assert await until_written(folder, 1) < GATHER / 2
    await writer.close()
