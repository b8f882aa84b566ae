"""Reading a cache folder without changing it: values, deadlines, and nothing touched."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from objstore.folderlock import FolderInUse, FolderLock
from objstore.foldernames import JOURNAL_NAME, META_NAME, file_name, sidecar_name
from objstore.folderread import read_folder
from objstore.store import Store

LONG_KEY = "k" * 1000


def listing(folder: Path) -> list[tuple[str, int, int]]:
    with os.scandir(folder) as entries:
        return sorted((e.name, e.stat().st_size, e.stat().st_mtime_ns) for e in entries)


async def test_reads_what_the_file_store_wrote_with_its_deadlines(tmp_path: Path) -> None:
    """Values (a hashed name too) and a deadline, as the file store left them after a stop."""
    store = Store(tmp_path)
    store.open()
    store.write("a/b", b"1")
    store.write(LONG_KEY, b'"long"')
    store.write("t", b"2", ttl=60)
    expires, _ = store.details("t")
    assert await store.close() == []
    content = read_folder(str(tmp_path))
    assert content.values == {"a/b": b"1", LONG_KEY: b'"long"', "t": b"2"}
    assert content.expires == {"t": expires}
    assert content.unreadable == []


async def test_reads_deadlines_from_the_journal_of_an_unclean_stop(tmp_path: Path) -> None:
    """A deadline only in the journal (the server was killed) is read, as the server would."""
    store = Store(tmp_path / "live")
    store.open()
    store.write("t", b"2", ttl=60)
    await store.flush()
    expires, _ = store.details("t")
    # The folder as a kill would leave it: the snapshot says nothing of "t", the journal
    # holds its deadline (copied, since the running store holds the lock).
    shutil.copytree(tmp_path / "live", tmp_path / "killed")
    assert await store.close() == []
    content = read_folder(str(tmp_path / "killed"))
    assert content.values == {"t": b"2"}
    assert content.expires == {"t": expires}


def test_leaves_every_file_as_it_was(tmp_path: Path) -> None:
    """Files the server would rename, remove or set aside are left: a leftover, a spare
    without its file, an unreadable value, an original-style name."""
    (tmp_path / "good.json").write_bytes(b"1")
    (tmp_path / "bad.json").write_bytes(b"{")
    (tmp_path / ".x.json.1-1.tmp").write_bytes(b"2")
    (tmp_path / ".gone.json.spare").write_bytes(b"3")
    (tmp_path / "Foo.json").write_bytes(b"4")
    before = listing(tmp_path)
    content = read_folder(str(tmp_path))
    assert content.values == {"good": b"1", "Foo": b"4"}
    assert [name for name, _ in content.unreadable] == ["bad.json"]
    assert listing(tmp_path) == before


def test_an_older_original_style_file_loses_to_the_canonical_one(tmp_path: Path) -> None:
    """``Foo.json`` older than ``%46oo.json``: the canonical value counts, as at a start."""
    (tmp_path / "Foo.json").write_bytes(b'"old"')
    (tmp_path / file_name("Foo")).write_bytes(b'"new"')
    past = time.time() - 100
    os.utime(tmp_path / "Foo.json", (past, past))
    assert read_folder(str(tmp_path)).values == {"Foo": b'"new"'}


def test_a_newer_original_style_file_wins_over_the_canonical_one(tmp_path: Path) -> None:
    """``Foo.json`` newer than ``%46oo.json``: its value counts, as at a start."""
    (tmp_path / "Foo.json").write_bytes(b'"new"')
    (tmp_path / file_name("Foo")).write_bytes(b'"old"')
    past = time.time() - 100
    os.utime(tmp_path / file_name("Foo"), (past, past))
    assert read_folder(str(tmp_path)).values == {"Foo": b'"new"'}


def test_a_hashed_name_without_its_key_file_is_skipped_and_named(tmp_path: Path) -> None:
    """A hashed value file whose sidecar is missing cannot name its key: skipped."""
    (tmp_path / file_name(LONG_KEY)).write_bytes(b"1")
    content = read_folder(str(tmp_path))
    assert content.values == {}
    assert [name for name, _ in content.unreadable] == [file_name(LONG_KEY)]
    assert not (tmp_path / sidecar_name(file_name(LONG_KEY))).exists()


def test_symbolic_links_are_never_followed(tmp_path: Path) -> None:
    """A link under a value name or a state file's name is skipped and named, not read."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b'"secret"')
    folder = tmp_path / "cache"
    folder.mkdir()
    (folder / "k.json").symlink_to(outside / "secret")
    (folder / META_NAME).symlink_to(outside / "secret")
    (folder / JOURNAL_NAME).symlink_to(outside / "secret")
    content = read_folder(str(folder))
    assert content.values == {}
    assert sorted(name for name, _ in content.unreadable) == [
        JOURNAL_NAME,
        META_NAME,
        "k.json",
    ]


def test_a_folder_locked_by_a_running_server_is_refused(tmp_path: Path) -> None:
    """The lock held (as a running server holds it): FolderInUse with its process id."""
    lock = FolderLock(str(tmp_path))
    lock.acquire()
    try:
        with pytest.raises(FolderInUse) as raised:
            read_folder(str(tmp_path))
        assert raised.value.pid == os.getpid()
    finally:
        lock.release()
    assert read_folder(str(tmp_path)).values == {}
