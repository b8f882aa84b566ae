"""The write-behind queue removing key files: ordering, coalescing, failures and retries."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from objstore.cachefolder import CacheFolder
from objstore.errors import StorageError
from objstore.writer import WriteBehind


@pytest.fixture(params=["swap", "recycle"])
def folder(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CacheFolder]:
    """A cache folder writing by name exchange where the system has it, and one that never does."""
    cache = CacheFolder(tmp_path / "cache", swap_names=request.param == "swap")
    cache.prepare()
    yield cache
    cache.close()


def files(folder: CacheFolder) -> list[str]:
    return sorted(p.name for p in folder.path.iterdir() if p.name != ".objstore.lock")


async def eventually(condition: Callable[[], bool]) -> None:
    for _ in range(200):
        if condition():
            return
        await asyncio.sleep(0.025)
    raise AssertionError("the condition did not become true in 5 seconds")


async def test_removal_deletes_the_keys_files(folder: CacheFolder) -> None:
    """Writing None removes the key's file and spare, and resolves to None."""
    writer = WriteBehind(folder)
    assert await writer.write_and_wait("k", b"1") is None
    assert await writer.write_and_wait("k", b"2") is None
    assert await writer.write_and_wait("k", None) is None
    assert files(folder) == []
    await writer.close()


async def test_removal_of_a_key_without_a_file_succeeds(folder: CacheFolder) -> None:
    """Removing a key that has no file resolves to None."""
    writer = WriteBehind(folder)
    assert await writer.write_and_wait("k", None) is None
    assert files(folder) == []
    await writer.close()


async def test_write_remove_write_ends_with_the_last_value(folder: CacheFolder) -> None:
    """A removal between two writes of a key, all scheduled at once, ends with the last."""
    writer = WriteBehind(folder)
    writer.write("k", b"1")
    writer.write("k", None)
    writer.write("k", b"2")
    await writer.flush()
    assert files(folder) == ["k.json"]
    assert (folder.path / "k.json").read_bytes() == b"2\n"
    await writer.close()


async def test_write_then_remove_ends_without_a_file(folder: CacheFolder) -> None:
    """Writes of a key followed by its removal, all scheduled at once, leave no file."""
    writer = WriteBehind(folder)
    for n in range(20):
        writer.write("k", str(n).encode())
    writer.write("k", None)
    await writer.flush()
    assert files(folder) == []
    await writer.close()


async def test_hot_key_removed_and_written_again_loads_its_value(folder: CacheFolder) -> None:
    """A key written often enough to keep its files open, removed, then written again,
    loads with the new value after the writer is closed."""
    writer = WriteBehind(folder)
    for value in (b"1", b"2", b"3"):
        assert await writer.write_and_wait("k", value) is None
    assert await writer.write_and_wait("k", None) is None
    assert await writer.write_and_wait("k", b"4") is None
    assert await writer.close() == []
    reopened = CacheFolder(folder.path)
    reopened.prepare()
    assert reopened.load().values == {"k": b"4"}
    reopened.close()


async def test_failed_removal_is_reported(folder: CacheFolder) -> None:
    """A removal that fails resolves to the StorageError and calls the failure callback."""
    writer = WriteBehind(folder)
    (folder.path / "k.json").mkdir()
    told: list[StorageError] = []
    writer.write("k", None, told.append)
    await writer.flush()
    assert len(told) == 1
    assert str(told[0]).startswith('could not remove key "k" by deleting ')
    await writer.close()


async def test_failed_removal_is_retried(folder: CacheFolder) -> None:
    """A removal that failed is tried again until the file is gone."""
    writer = WriteBehind(folder)
    (folder.path / "k.json").mkdir()
    assert isinstance(await writer.write_and_wait("k", None), StorageError)
    assert writer.failing == 1
    (folder.path / "k.json").rmdir()
    (folder.path / "k.json").write_bytes(b"1\n")  # the value the removal must take away
    await eventually(lambda: writer.failing == 0)
    await writer.flush()
    assert files(folder) == []
    assert await writer.close() == []


async def test_newer_write_replaces_a_failed_removal(folder: CacheFolder) -> None:
    """A write of a key whose removal failed is the one that stays, never undone by a retry."""
    writer = WriteBehind(folder)
    (folder.path / "k.json").mkdir()
    failure = await writer.write_and_wait("k", None)
    assert str(failure).startswith('could not remove key "k" by deleting ')
    (folder.path / "k.json").rmdir()
    assert await writer.write_and_wait("k", b"2") is None
    assert writer.failing == 0
    await asyncio.sleep(0.3)  # past the first retry's time
    assert (folder.path / "k.json").read_bytes() == b"2\n"
    await writer.close()


async def test_removal_replaces_a_failed_write(folder: CacheFolder) -> None:
    """A removal of a key whose write failed is the one that stays, never undone by a retry."""
    writer = WriteBehind(folder)
    (folder.path / "k.json").mkdir()
    assert isinstance(await writer.write_and_wait("k", b"1"), StorageError)
    (folder.path / "k.json").rmdir()
    assert await writer.write_and_wait("k", None) is None
    assert writer.failing == 0
    await asyncio.sleep(0.3)  # past the first retry's time
    assert files(folder) == []
    await writer.close()


async def test_removal_that_keeps_failing_is_unsaved_at_close(folder: CacheFolder) -> None:
    """Closing returns the key whose removal still fails."""
    writer = WriteBehind(folder)
    (folder.path / "k.json").mkdir()
    failure = await writer.write_and_wait("k", None)
    assert str(failure).startswith('could not remove key "k" by deleting ')
    assert await writer.close() == ["k"]
