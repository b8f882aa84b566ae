"""File operations that never follow a link, and the folder lock, on real files."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from objstore.diskio import SymlinkRefused, open_file, open_or_replace, read_file, read_files
from objstore.folderlock import FolderInUse, FolderLock

needs_symlinks = pytest.mark.skipif(
    sys.platform == "win32", reason="creating symbolic links needs extra rights on Windows"
)


@needs_symlinks
def test_reading_a_link_is_refused(tmp_path: Path) -> None:
    """A link is not read, whatever it points to."""
    (tmp_path / "target").write_bytes(b"secret")
    (tmp_path / "link").symlink_to(tmp_path / "target")
    with pytest.raises(SymlinkRefused):
        read_file(str(tmp_path / "link"))


@needs_symlinks
def test_creating_through_a_dangling_link_is_refused(tmp_path: Path) -> None:
    """Opening a dangling link to create a file fails and creates nothing."""
    (tmp_path / "link").symlink_to(tmp_path / "created")
    with pytest.raises(SymlinkRefused):
        open_file(str(tmp_path / "link"), os.O_WRONLY | os.O_CREAT)
    assert not (tmp_path / "created").exists()


def test_writing_a_file_with_another_name_is_refused(tmp_path: Path) -> None:
    """A hard link to a file elsewhere is not opened for writing (reading it is allowed)."""
    (tmp_path / "target").write_bytes(b"secret")
    os.link(tmp_path / "target", tmp_path / "second")
    with pytest.raises(SymlinkRefused):
        open_file(str(tmp_path / "second"), os.O_WRONLY)
    assert read_file(str(tmp_path / "second")) == b"secret"


@needs_symlinks
def test_open_or_replace_removes_the_link_not_its_target(tmp_path: Path) -> None:
    """The store's own file under a link's name is created afresh; the target is untouched."""
    (tmp_path / "target").write_bytes(b"secret")
    (tmp_path / "spare").symlink_to(tmp_path / "target")
    os.close(open_or_replace(str(tmp_path / "spare"), os.O_WRONLY))
    assert not (tmp_path / "spare").is_symlink()
    assert (tmp_path / "target").read_bytes() == b"secret"


def test_second_lock_on_a_folder_names_the_holder(tmp_path: Path) -> None:
    """A second lock of a locked folder fails with the holder's process id."""
    first, second = FolderLock(str(tmp_path)), FolderLock(str(tmp_path))
    first.acquire()
    with pytest.raises(FolderInUse) as caught:
        second.acquire()
    assert caught.value.pid == os.getpid()
    assert not second.held
    first.release()


def test_released_lock_can_be_taken_again(tmp_path: Path) -> None:
    """Once released, the lock file stays and another lock takes it."""
    first, second = FolderLock(str(tmp_path)), FolderLock(str(tmp_path))
    first.acquire()
    first.release()
    second.acquire()
    assert second.held
    assert Path(second.path).read_text() == f"{os.getpid()}\n"
    second.release()


def test_read_files_gives_each_content_in_order(tmp_path: Path) -> None:
    """Files are read whole, in the order named, whatever their size (one read or many)."""
    contents = {"a": b"", "b": b"x" * 65535, "c": b"y" * 65536, "d": bytes(range(256)) * 1000}
    for name, data in contents.items():
        (tmp_path / name).write_bytes(data)
    order = ["d", "a", "c", "b"]
    assert list(read_files(str(tmp_path), order)) == [(name, contents[name]) for name in order]


def test_read_files_gives_the_error_of_a_missing_file_and_goes_on(tmp_path: Path) -> None:
    """A name that cannot be opened gives its OSError in its place; the next is read."""
    (tmp_path / "there").write_bytes(b"1")
    results = list(read_files(str(tmp_path), ["gone", "there"]))
    assert [name for name, _ in results] == ["gone", "there"]
    assert isinstance(results[0][1], FileNotFoundError)
    assert results[1][1] == b"1"


def test_read_files_gives_the_error_of_a_folder(tmp_path: Path) -> None:
    """A folder under a file's name gives an OSError, not a crash."""
    (tmp_path / "sub").mkdir()
    [(name, result)] = read_files(str(tmp_path), ["sub"])
    assert name == "sub"
    assert isinstance(result, OSError)


@needs_symlinks
def test_read_files_refuses_a_link(tmp_path: Path) -> None:
    """A link among the names gives SymlinkRefused naming its path, and is not read."""
    (tmp_path / "target").write_bytes(b"secret")
    (tmp_path / "link").symlink_to(tmp_path / "target")
    [(_, result)] = read_files(str(tmp_path), ["link"])
    assert isinstance(result, SymlinkRefused)
    assert result.filename == str(tmp_path / "link")


@pytest.mark.skipif(not hasattr(os, "O_NOATIME"), reason="O_NOATIME is Linux's")
def test_read_files_leaves_the_time_of_last_access(tmp_path: Path) -> None:
    """Reading at start does not update a file's time of last access (O_NOATIME)."""
    path = tmp_path / "k.json"
    path.write_bytes(b"1")
    os.utime(path, ns=(1_000_000_000, 2_000_000_000))  # accessed before modified
    assert list(read_files(str(tmp_path), ["k.json"])) == [("k.json", b"1")]
    assert os.stat(path).st_atime_ns == 1_000_000_000
