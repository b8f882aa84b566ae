"""Reading a cache folder without changing it: every value and deadline, nothing touched.

Owns the read-only reading of a cache folder that another program wrote or
will serve again (``objstore import``): the values, found by the names of
:mod:`objstore.foldernames` the way :mod:`objstore.folderload` finds them, and
the deadlines, from the state files read with the line functions of
:mod:`objstore.statelines`. Unlike the server's loader it writes nothing: no
lock file, no state files, no renames, no removals. A file that cannot be
read (or a symbolic link under one of the store's names) is skipped and
named, where the server would set it aside; leftovers, spares and set-aside
files are ignored; a value file named the original way whose canonical
file also exists counts only when it is the newer, as the server decides.
Blocking code; knows nothing of asyncio, Redis or the wire protocol.

Memory: every value once (the folder's whole store, as a server holds it),
each deadline an int; the state files stream line by line as
:mod:`objstore.statelines` bounds them.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import BinaryIO, TypeVar

from . import jsonvalues
from .diskio import SymlinkRefused, open_file, read_file
from .errors import ClientError
from .folderlock import FolderInUse
from .foldernames import JOURNAL_NAME, LOCK_NAME, META_NAME, classify, file_name, sidecar_name
from .keys import validate_key
from .statelines import LineReader, SavedState, read_journal, read_snapshot, replay

__all__ = ["FolderContent", "read_folder"]

_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_BUFFER = 64 * 1024
_T = TypeVar("_T")


@dataclass(slots=True)
class FolderContent:
    """What a cache folder holds: values (compact JSON), deadlines (ms since the epoch)
    of keys that have one, and the names of the files that could not be read, each
    with the reason."""

    values: dict[str, bytes] = field(default_factory=dict)
    expires: dict[str, int] = field(default_factory=dict)
    unreadable: list[tuple[str, str]] = field(default_factory=list)


def read_folder(path: str) -> FolderContent:
    """Every value and deadline of the cache folder *path*, which is left as it is.

    Raises :class:`~objstore.folderlock.FolderInUse` when a running objstore holds its lock (its
    files may change while they are read: stop it first), OSError when the
    folder cannot be listed.
    """
    _check_lock(path)
    content = FolderContent()
    names: dict[str, float] = {}
    with os.scandir(path) as entries:
        for entry in entries:
            if entry.is_file(follow_symlinks=False):
                names[entry.name] = entry.stat(follow_symlinks=False).st_mtime
            elif entry.is_symlink() and classify(entry.name).is_value:
                content.unreadable.append((entry.name, "a symbolic link, never followed"))
    legacy: list[tuple[str, str]] = []
    for name in sorted(names):
        kind = classify(name)
        if kind.kind == "canonical":
            assert kind.key is not None
            _read_value(path, kind.key, name, content)
        elif kind.kind == "hashed":
            key = _read_sidecar(path, name, content)
            if key is not None:
                _read_value(path, key, name, content)
        elif kind.kind == "legacy":
            assert kind.key is not None
            legacy.append((kind.key, name))
    for key, name in legacy:
        canonical = file_name(key)
        if key in content.values and names[name] <= names.get(canonical, 0.0):
            continue  # an older copy of the canonical file, which the server sets aside
        _read_value(path, key, name, content)
    saved = _read_state(path, content)
    for key, state in saved.keys.items():
        if state.expires is not None and key in content.values:
            content.expires[key] = state.expires
    return content


def _read_value(path: str, key: str, name: str, content: FolderContent) -> None:
    try:
        text = read_file(os.path.join(path, name)).decode("utf-8")
        content.values[key] = jsonvalues.encode(jsonvalues.decode(text))
    except (OSError, UnicodeDecodeError, ValueError, ClientError) as exc:
        content.unreadable.append((name, f"{type(exc).__name__}: {exc}"))


def _read_sidecar(path: str, name: str, content: FolderContent) -> str | None:
    sidecar = sidecar_name(name)
    try:
        return validate_key(read_file(os.path.join(path, sidecar)).decode("utf-8"))
    except (OSError, UnicodeDecodeError, ClientError) as exc:
        content.unreadable.append((name, f"its key file {sidecar} cannot be read ({exc})"))
        return None


def _read_state(path: str, content: FolderContent) -> SavedState:
    """The snapshot and journal replayed, as the server reads them; a file that is a link
    or not a plain file is skipped (the server would set it aside)."""
    snapshot, snapshot_lost = _read_state_file(
        path, META_NAME, read_snapshot, content, "its first line is not a snapshot header"
    )
    journal, journal_lost = _read_state_file(path, JOURNAL_NAME, read_journal, content)
    return replay(snapshot, journal, snapshot_lost=snapshot_lost, journal_lost=journal_lost)


def _read_state_file(
    path: str,
    name: str,
    read: Callable[[LineReader], _T | None],
    content: FolderContent,
    unread: str | None = None,
) -> tuple[_T | None, bool]:
    """The state file *name* read by *read* (None when there is none), and whether it was
    lost: there, but skipped, or read as nothing while *unread* says why that is wrong.
    A lost file is named in *content*'s unreadable files."""
    try:
        stream = _open_state(path, name)
    except _Skipped as skipped:
        content.unreadable.append((name, str(skipped)))
        return None, True
    if stream is None:
        return None, False
    with stream:
        result = read(LineReader(stream, name))
    if result is None and unread is not None:
        content.unreadable.append((name, unread))
        return None, True
    return result, False


class _Skipped(Exception):
    """A state file that is there but cannot be read; the message says why."""


def _open_state(path: str, name: str) -> BinaryIO | None:
    """The state file *name* open for reading, None if there is none; raises _Skipped
    when it is not a plain file or cannot be opened."""
    try:
        fd = open_file(os.path.join(path, name), os.O_RDONLY | _NONBLOCK)
    except FileNotFoundError:
        return None
    except SymlinkRefused:
        raise _Skipped("a symbolic link, never followed") from None
    except OSError as exc:
        raise _Skipped(exc.strerror or str(exc)) from None
    try:
        plain = stat.S_ISREG(os.fstat(fd).st_mode)
    except BaseException:
        os.close(fd)
        raise
    if not plain:
        os.close(fd)
        raise _Skipped("not a plain file")
    return open(fd, "rb", buffering=_BUFFER)


def _check_lock(path: str) -> None:
    """Raise FolderInUse when a running objstore holds the lock (POSIX: a shared lock
    asked for without waiting; the file is opened read-only, never written)."""
    if sys.platform == "win32":
        return  # its byte-range lock cannot be tested from a read-only handle
    import fcntl

    try:
        fd = open_file(os.path.join(path, LOCK_NAME), os.O_RDONLY | _NONBLOCK)
    except OSError:
        return  # no lock file (or not one to read): no server has run here, or none can
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FolderInUse(_read_pid(fd)) from None
        except OSError:
            return  # a file system without locks: as the server, go on
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _read_pid(fd: int) -> int | None:
    with contextlib.suppress(OSError, UnicodeDecodeError):
        text = os.read(fd, 32).decode("ascii").strip()
        if text.isdigit():
            return int(text)
    return None
