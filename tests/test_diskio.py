"""File operations that never follow a link, and the folder lock, on real files."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from objstore.diskio import SymlinkRefused, open_file, open_or_replace, read_file
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
