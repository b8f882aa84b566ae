"""The cache folder and the write-behind queue, on real files in a temporary folder."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from objstore.cachefolder import CacheFolder
from objstore.errors import StartupError, StorageError
from objstore.foldernames import set_aside_name
from objstore.keys import file_name, sidecar_name
from objstore.writer import WriteBehind


@pytest.fixture(params=["swap", "recycle"])
def folder(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CacheFolder]:
    """A cache folder writing by name exchange where the system has it, and one that never does."""
    cache = CacheFolder(tmp_path / "cache", swap_names=request.param == "swap")
    cache.prepare()
    yield cache
    cache.close()


def test_prepare_creates_the_folder(tmp_path: Path) -> None:
    """prepare creates missing parent folders."""
    CacheFolder(tmp_path / "a" / "b").prepare()
    assert (tmp_path / "a" / "b").is_dir()


def test_prepare_refuses_a_folder_it_cannot_create(tmp_path: Path) -> None:
    """prepare raises StartupError naming the folder and the fix."""
    (tmp_path / "file").write_text("")
    with pytest.raises(
        StartupError, match=r"choose a writable folder with --cache-dir or CACHE_DIR$"
    ):
        CacheFolder(tmp_path / "file" / "cache").prepare()


def test_write_then_load(folder: CacheFolder) -> None:
    """What write stores, load reads back."""
    folder.write("a b", b'{"x":1}')
    assert folder.load().values == {"a b": b'{"x":1}'}


def test_write_replaces_and_keeps_one_spare(folder: CacheFolder) -> None:
    """A second write replaces the first; the replaced file is kept as the next spare."""
    folder.write("k", b"1")
    folder.write("k", b"2")
    assert sorted(p.name for p in folder.path.iterdir()) == [
        ".k.json.spare",
        ".objstore.lock",
        "k.json",
    ]
    assert (folder.path / "k.json").read_bytes() == b"2\n"
    assert folder.load().values == {"k": b"2"}


def test_writes_reuse_two_inodes(folder: CacheFolder) -> None:
    """Repeated writes of a key alternate between two files instead of creating new ones."""
    inodes = set()
    for n in range(6):
        folder.write("k", str(n).encode())
        inodes.add((folder.path / "k.json").stat().st_ino)
    assert len(inodes) == 2
    assert (folder.path / "k.json").read_bytes() == b"5\n"


def test_crash_between_link_and_rename_keeps_the_old_value(folder: CacheFolder) -> None:
    """The state a crash leaves mid-write (old linked, new in the spare) loads the old value
    and the leftover link is removed."""
    folder.write("k", b"1")
    (folder.path / ".k.json.spare").write_bytes(b"2\n")
    os.link(folder.path / "k.json", folder.path / ".k.json.old")
    report = folder.load()
    assert report.values == {"k": b"1"}
    assert report.temp_files_removed == 1
    assert not (folder.path / ".k.json.old").exists()
    folder.write("k", b"3")
    assert folder.load().values == {"k": b"3"}


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_written_files_are_readable_like_any_new_file(folder: CacheFolder) -> None:
    """Files get the usual permissions of new files, not mkstemp's private ones."""
    folder.write("k", b"1")
    umask = os.umask(0)
    os.umask(umask)
    assert (folder.path / "k.json").stat().st_mode & 0o777 == 0o666 & ~umask


#: Windows cannot remove a folder while a file in it (the lock) is open.
removes_the_folder = pytest.mark.skipif(
    sys.platform == "win32", reason="the open lock file keeps Windows from removing the folder"
)


def replace_by_a_file(folder: CacheFolder) -> None:
    """Put a file where the folder was: every write fails, for root too."""
    shutil.rmtree(folder.path)
    folder.path.write_text("not a folder")


def block(folder: CacheFolder, *keys: str) -> None:
    """Put a folder under each key's file name: its writes fail, for root too, everywhere."""
    for key in keys:
        (folder.path / file_name(key)).mkdir()


def unblock(folder: CacheFolder, *keys: str) -> None:
    for key in keys:
        (folder.path / file_name(key)).rmdir()


def test_write_failure_is_a_storage_error(folder: CacheFolder) -> None:
    """A write that cannot replace the key's file raises StorageError naming the key."""
    block(folder, "k")
    with pytest.raises(StorageError, match=r'^could not save key "k" to '):
        folder.write("k", b"1")


@removes_the_folder
def test_write_failure_after_earlier_writes_is_a_storage_error(folder: CacheFolder) -> None:
    """A folder replaced while the key's files are kept open still fails the write."""
    folder.write("k", b"1")
    folder.write("k", b"2")
    replace_by_a_file(folder)
    with pytest.raises(StorageError, match=r'^could not save key "k" to '):
        folder.write("k", b"3")


@pytest.mark.skipif(sys.platform == "win32", reason="no file size limit on Windows")
def test_failed_write_leaves_no_partial_spare(folder: CacheFolder) -> None:
    """A write cut short (here by the file size limit, as by a full disk) leaves the key's
    file whole and no hidden spare or temporary file behind."""
    import resource

    folder.write("k", b"1")
    folder.write("k", b"2")
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1000, limits[1]))
    try:
        with pytest.raises(StorageError, match=r"File too large$"):
            folder.write("k", b"3" * 5000)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
        signal.signal(signal.SIGXFSZ, previous)
    assert [p.name for p in folder.path.iterdir() if p.name.endswith((".spare", ".tmp"))] == []
    assert (folder.path / "k.json").read_bytes() == b"2\n"


@removes_the_folder
def test_removed_folder_is_created_again(folder: CacheFolder) -> None:
    """A folder removed while the server runs is created again by the next write, locked."""
    folder.write("k", b"1")
    folder.write("k", b"2")
    shutil.rmtree(folder.path)
    folder.write("k", b"3")
    assert sorted(p.name for p in folder.path.iterdir()) == [".objstore.lock", "k.json"]
    assert folder.load().values == {"k": b"3"}


def test_hashed_name_keeps_its_key_in_a_sidecar(folder: CacheFolder) -> None:
    """A long key's file has a sidecar holding the key, and loads back under that key."""
    key = "k" * 1000
    folder.write(key, b"1")
    name = file_name(key)
    assert (folder.path / sidecar_name(name)).read_text() == key
    assert folder.load().values == {key: b"1"}


def test_hashed_name_without_sidecar_is_set_aside(folder: CacheFolder) -> None:
    """A hashed file whose key file is missing is set aside, not loaded."""
    key = "k" * 1000
    folder.write(key, b"1")
    (folder.path / sidecar_name(file_name(key))).unlink()
    report = folder.load()
    assert report.values == {}
    assert [old for old, _ in report.set_aside] == [file_name(key)]


def test_legacy_and_canonical_copies_keep_the_newer(folder: CacheFolder) -> None:
    """When an original-style file and our file hold the same key, the newer one wins."""
    (folder.path / file_name("Foo")).write_text("1")
    os.utime(folder.path / file_name("Foo"), (1_000_000, 1_000_000))
    (folder.path / "Foo.json").write_text("2")
    report = folder.load()
    assert report.values == {"Foo": b"2"}
    assert (folder.path / file_name("Foo")).read_text() == "2"
    assert len(report.set_aside) == 1


def test_pretty_values_are_loaded_compact(folder: CacheFolder) -> None:
    """Pretty-printed files load as compact JSON; the file itself is untouched."""
    (folder.path / "k.json").write_text(json.dumps({"a": [1, 2]}, indent=2))
    assert folder.load().values == {"k": b'{"a":[1,2]}'}
    assert (folder.path / "k.json").read_text() == json.dumps({"a": [1, 2]}, indent=2)


def test_spare_without_its_file_is_removed(folder: CacheFolder) -> None:
    """A spare whose key's file is gone is removed at load; a key's own spare is kept."""
    folder.write("k", b"1")
    folder.write("k", b"2")
    (folder.path / ".gone.json.spare").write_bytes(b"1\n")
    report = folder.load()
    assert report.temp_files_removed == 1
    assert sorted(p.name for p in folder.path.iterdir()) == [
        ".k.json.spare",
        ".objstore.lock",
        "k.json",
    ]


def test_other_files_are_ignored(folder: CacheFolder) -> None:
    """Files that are not values (notes, set-aside files, folders) are left alone."""
    (folder.path / "notes.txt").write_text("hi")
    (folder.path / "sub").mkdir()
    (folder.path / "x.json.20260101T000000.corrupt").write_text("{")
    assert folder.load().values == {}
    assert sorted(p.name for p in folder.path.iterdir()) == [
        ".objstore.lock",
        "notes.txt",
        "sub",
        "x.json.20260101T000000.corrupt",
    ]


def names_in(folder: CacheFolder) -> list[str]:
    return sorted(p.name for p in folder.path.iterdir())


def test_remove_deletes_the_file_and_its_spare(folder: CacheFolder) -> None:
    """Removing a key leaves none of its files, and it no longer loads."""
    folder.write("k", b"1")
    folder.write("k", b"2")
    folder.remove("k")
    assert names_in(folder) == [".objstore.lock"]
    assert folder.load().values == {}


def test_remove_deletes_a_hashed_keys_sidecar(folder: CacheFolder) -> None:
    """Removing a long key removes its hashed file, its spare and its sidecar."""
    key = "k" * 1000
    folder.write(key, b"1")
    folder.write(key, b"2")
    folder.remove(key)
    assert names_in(folder) == [".objstore.lock"]


def test_remove_of_a_key_without_a_file_does_nothing(folder: CacheFolder) -> None:
    """Removing a key that has no file is not an error."""
    folder.write("other", b"1")
    folder.remove("k")
    assert names_in(folder) == [".objstore.lock", "other.json"]


def test_key_removed_while_hot_is_written_again(folder: CacheFolder) -> None:
    """A key rewritten often enough to keep its files open, removed, then written again,
    loads with its new value."""
    for value in (b"1", b"2", b"3"):
        folder.write("k", value)
    folder.remove("k")
    folder.write("k", b"4")
    folder.write("k", b"5")
    assert folder.load().values == {"k": b"5"}


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="lists open files via /proc")
def test_remove_closes_the_files_kept_open(folder: CacheFolder) -> None:
    """A removed key keeps no file of the folder open."""
    for value in (b"1", b"2", b"3"):
        folder.write("k", value)
    folder.remove("k")
    opened = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            opened.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            continue
    prefix = str(folder.path) + os.sep
    assert [path for path in opened if path.startswith(prefix) and "lock" not in path] == []


def test_remove_failure_is_a_storage_error(folder: CacheFolder) -> None:
    """A key's file that cannot be removed raises StorageError naming the key and file."""
    block(folder, "k")
    with pytest.raises(StorageError) as caught:
        folder.remove("k")
    assert str(caught.value).startswith(
        f'could not remove key "k" by deleting {folder.path / "k.json"}: '
    )
    assert (folder.path / "k.json").is_dir()


@pytest.mark.skipif(sys.platform == "win32", reason="symbolic links need extra rights")
def test_remove_never_follows_a_symbolic_link(folder: CacheFolder, tmp_path: Path) -> None:
    """A symbolic link under a key's file name is removed itself; its target is untouched."""
    outside = tmp_path / "outside.json"
    outside.write_text("1")
    (folder.path / "k.json").symlink_to(outside)
    folder.remove("k")
    assert names_in(folder) == [".objstore.lock"]
    assert outside.read_text() == "1"


@removes_the_folder
def test_remove_in_a_removed_folder_succeeds(folder: CacheFolder) -> None:
    """With the folder gone nothing of the key is on disk: removing it succeeds."""
    folder.write("k", b"1")
    shutil.rmtree(folder.path)
    folder.remove("k")
    folder.write("j", b"2")
    assert folder.load().values == {"j": b"2"}


def test_crash_after_removing_the_value_file_loads_nothing(folder: CacheFolder) -> None:
    """The state a crash leaves mid-removal (value file gone, spare and sidecar left) loads
    no value, and the spare and sidecar are removed."""
    key = "k" * 1000
    folder.write(key, b"1")
    folder.write(key, b"2")
    (folder.path / file_name(key)).unlink()
    report = folder.load()
    assert report.values == {}
    assert report.temp_files_removed == 2
    assert names_in(folder) == [".objstore.lock"]


def test_set_aside_hashed_file_keeps_its_sidecar_beside_it(folder: CacheFolder) -> None:
    """A hashed file that cannot be loaded is set aside with its sidecar, which is then
    not removed as a sidecar without its file."""
    key = "k" * 1000
    folder.write(key, b"1")
    name = file_name(key)
    (folder.path / name).write_text("{")
    report = folder.load()
    assert report.values == {}
    ((set_aside, aside),) = report.set_aside
    assert set_aside == name
    stamp = aside.removeprefix(f"{name}.").removesuffix(".corrupt")
    assert folder.load().temp_files_removed == 0
    assert names_in(folder) == sorted(
        [".objstore.lock", aside, set_aside_name(sidecar_name(name), stamp)]
    )


async def test_writer_coalesces_repeated_sets(folder: CacheFolder) -> None:
    """Sets of one key made while a write is in flight end as the latest value on disk."""
    writer = WriteBehind(folder)
    for n in range(100):
        writer.write("k", str(n).encode())
    waited = writer.write_and_wait("k", b"100")
    await writer.flush()
    assert (folder.path / "k.json").read_bytes() == b"100\n"
    assert waited.done()
    assert waited.result() is None
    await writer.close()


async def test_writer_starts_without_a_timer(folder: CacheFolder) -> None:
    """A single set is on disk as soon as its write future resolves."""
    writer = WriteBehind(folder)
    assert await asyncio.wait_for(writer.write_and_wait("k", b"1"), 5) is None
    assert (folder.path / "k.json").read_bytes() == b"1\n"
    await writer.close()


async def test_writer_reports_failures_without_raising(folder: CacheFolder) -> None:
    """A failed write resolves its future to the StorageError and calls the failure
    callback of its setter once; later writes still run."""
    writer = WriteBehind(folder)
    block(folder, "j", "k")
    told: list[StorageError] = []
    writer.write("j", b"1", told.append)
    failure = await writer.write_and_wait("k", b"2")
    assert isinstance(failure, StorageError)
    await writer.flush()
    assert [str(error).partition(" to ")[0] for error in told] == ['could not save key "j"']
    unblock(folder, "k")
    assert await writer.write_and_wait("k", b"4") is None
    await writer.close()
    assert len(told) == 1


async def test_writer_retries_the_latest_value_until_written(folder: CacheFolder) -> None:
    """Failed writes are retried in the background, with the newest value set meanwhile."""
    writer = WriteBehind(folder)
    block(folder, "k")
    for value in (b"1", b"2"):
        assert isinstance(await writer.write_and_wait("k", value), StorageError)
    assert writer.failing == 1
    unblock(folder, "k")
    for _ in range(100):
        if writer.failing == 0:
            break
        await asyncio.sleep(0.05)
    await writer.flush()  # the retry under way
    assert (folder.path / "k.json").read_bytes() == b"2\n"
    assert await writer.close() == []


async def test_writer_logs_a_key_failing_again_once(
    folder: CacheFolder, caplog: pytest.LogCaptureFixture
) -> None:
    """A key that keeps failing is logged once at ERROR until it is written."""
    writer = WriteBehind(folder)
    block(folder, "k")
    for value in (b"1", b"2", b"3"):
        assert isinstance(await writer.write_and_wait("k", value), StorageError)
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1
    assert errors[0].startswith('could not save key "k" to ')
    assert errors[0].endswith("; will try again")
    await writer.close()


async def test_writer_close_returns_what_could_not_be_written(folder: CacheFolder) -> None:
    """Closing tries failed writes once more and returns the keys that still fail."""
    writer = WriteBehind(folder)
    block(folder, "a", "b")
    for key in ("b", "a"):
        assert isinstance(await writer.write_and_wait(key, b"1"), StorageError)
    assert sorted(await writer.close()) == ["a", "b"]


async def test_writer_thread_starts_on_first_write_and_stops_on_close(
    folder: CacheFolder,
) -> None:
    """No thread until something is written; close writes what is pending and ends it."""

    def writer_threads() -> int:
        return sum(thread.name == "objstore-writer" for thread in threading.enumerate())

    before = writer_threads()
    writer = WriteBehind(folder)
    assert writer_threads() == before
    for n in range(200):
        writer.write(f"k{n % 20}", str(n).encode())
    assert writer_threads() == before + 1
    await writer.close()
    assert writer_threads() == before
    assert {key: int(value) for key, value in folder.load().values.items()} == {
        f"k{n}": 180 + n for n in range(20)
    }


def test_file_replaced_by_another_program_gets_the_latest_value(folder: CacheFolder) -> None:
    """A key's file replaced while the server runs (an editor saving it) does not make later
    writes land in the replaced file: the latest value is what the file holds."""
    folder.write("k", b"1")
    folder.write("k", b"2")
    (folder.path / "edited").write_bytes(b'"edited"\n')
    os.replace(folder.path / "edited", folder.path / "k.json")
    for n in range(3, 7):
        folder.write("k", str(n).encode())
        assert (folder.path / "k.json").read_bytes() == f"{n}\n".encode()
