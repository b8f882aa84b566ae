"""Rewrites by name exchange, on real files: contents, inodes, open files, fallbacks."""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from objstore.swapwrite import NameExchange, SwapWriter, name_exchange

EXCHANGE = name_exchange()
needs_exchange = pytest.mark.skipif(EXCHANGE is None, reason="no name exchange on this system")


def spare_of(name: str) -> str:
    return f".{name}.spare"


@pytest.fixture
def writer(tmp_path: Path) -> Iterator[SwapWriter]:
    assert EXCHANGE is not None
    swapper = SwapWriter(str(tmp_path), spare_of, EXCHANGE, capacity=2)
    yield swapper
    swapper.close()


@pytest.mark.skipif(sys.platform not in ("linux", "darwin"), reason="Linux and macOS only")
def test_linux_and_macos_have_the_exchange() -> None:
    """The system call is found where the frozen executables need it."""
    assert EXCHANGE is not None


@needs_exchange
def test_exchange_swaps_two_files(tmp_path: Path) -> None:
    """Both names stay; their contents trade places."""
    assert EXCHANGE is not None
    (tmp_path / "a").write_bytes(b"A")
    (tmp_path / "b").write_bytes(b"B")
    EXCHANGE(os.fsencode(tmp_path / "a"), os.fsencode(tmp_path / "b"))
    assert ((tmp_path / "a").read_bytes(), (tmp_path / "b").read_bytes()) == (b"B", b"A")


@needs_exchange
def test_exchange_error_names_the_files(tmp_path: Path) -> None:
    """A failed exchange raises OSError with errno and both paths."""
    assert EXCHANGE is not None
    with pytest.raises(FileNotFoundError) as caught:
        EXCHANGE(os.fsencode(tmp_path / "a"), os.fsencode(tmp_path / "b"))
    assert (caught.value.filename, caught.value.filename2) == (
        str(tmp_path / "a"),
        str(tmp_path / "b"),
    )


@needs_exchange
def test_missing_file_is_left_to_the_caller(writer: SwapWriter, tmp_path: Path) -> None:
    """A key without a file yet is not written here, and nothing is created."""
    assert writer.rewrite("k.json", b"1\n") is False
    assert list(tmp_path.iterdir()) == []


@needs_exchange
def test_rewrites_alternate_two_inodes_whatever_the_length(
    writer: SwapWriter, tmp_path: Path
) -> None:
    """Longer and shorter values each leave exactly the new content; two inodes serve all."""
    live = tmp_path / "k.json"
    live.write_bytes(b"0\n")
    inodes = set()
    for value in (b"a much longer value\n", b"s\n", b"medium value\n", b"s\n", b"x" * 5000):
        assert writer.rewrite("k.json", value) is True
        assert live.read_bytes() == value
        inodes.add(live.stat().st_ino)
    assert len(inodes) == 2
    assert (tmp_path / ".k.json.spare").read_bytes() == b"s\n"


@needs_exchange
def test_least_recently_written_keys_are_closed(writer: SwapWriter, tmp_path: Path) -> None:
    """Beyond its capacity it closes the files of the oldest key, and reopens them on need."""
    for name in ("a", "b", "c"):
        (tmp_path / name).write_bytes(b"0")
        assert writer.rewrite(name, b"1")
    assert writer.open_pairs == 2
    assert writer.rewrite("a", b"2")
    assert writer.open_pairs == 2
    assert [(tmp_path / n).read_bytes() for n in ("a", "b", "c")] == [b"2", b"1", b"1"]


@needs_exchange
def test_file_removed_behind_its_back_is_left_to_the_caller(
    writer: SwapWriter, tmp_path: Path
) -> None:
    """When the key's file disappears, the write is handed back and the pair is forgotten."""
    (tmp_path / "k").write_bytes(b"0")
    assert writer.rewrite("k", b"1")
    (tmp_path / "k").unlink()
    assert writer.rewrite("k", b"2") is False
    assert writer.open_pairs == 0


@needs_exchange
def test_file_replaced_behind_its_back_never_brings_back_old_content(
    writer: SwapWriter, tmp_path: Path
) -> None:
    """A file replaced by another program (written elsewhere, renamed over it) is detected:
    every later write leaves the latest value, never a stale one."""
    live = tmp_path / "k"
    live.write_bytes(b"0")
    assert writer.rewrite("k", b"1")
    (tmp_path / "edited").write_bytes(b"edited")
    os.replace(tmp_path / "edited", live)
    for value in (b"2", b"3", b"4", b"5"):
        if not writer.rewrite("k", value):  # handed back: the caller writes it its way
            (tmp_path / "k").write_bytes(value)
        assert live.read_bytes() == value


@pytest.mark.skipif(sys.platform == "win32", reason="never used on Windows (no os.pwrite)")
def test_file_system_without_exchange_turns_it_off(tmp_path: Path) -> None:
    """An exchange refused as unsupported (FAT, network drives) hands back this write and
    every later one, leaving the file as it was."""

    def unsupported(first: bytes, second: bytes) -> None:
        raise OSError(errno.EINVAL, "Invalid argument")

    refusing: NameExchange = unsupported
    swapper = SwapWriter(str(tmp_path), spare_of, refusing, capacity=8)
    (tmp_path / "k").write_bytes(b"old")
    assert swapper.rewrite("k", b"new") is False
    assert (swapper.supported, swapper.open_pairs) == (False, 0)
    assert (tmp_path / "k").read_bytes() == b"old"
    assert swapper.rewrite("k", b"new") is False


def test_no_capacity_means_no_files_kept_open(tmp_path: Path) -> None:
    """With room for no open files (a very low open-file limit), every write is handed back."""
    swapper = SwapWriter(str(tmp_path), spare_of, lambda a, b: None, capacity=0)
    (tmp_path / "k").write_bytes(b"old")
    assert swapper.rewrite("k", b"new") is False
    assert swapper.open_pairs == 0
