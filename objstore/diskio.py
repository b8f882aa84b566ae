"""File operations on names inside the cache folder that never follow a symbolic link.

Owns the flags files are opened with and the small steps every writer and the
loader share: open, read whole, write whole, replace, remove. A symbolic link
inside the folder is refused, whatever it points to: opening one raises
:class:`SymlinkRefused`, so no value is read from, and no byte written to, a
file outside the folder. Where the system has ``O_NOFOLLOW`` (Linux, macOS,
the BSDs) the kernel refuses it in the same call; on Windows, which lacks it,
the name is checked with ``lstat`` first (a link planted between the check and
the open is not caught there; creating links needs extra rights on Windows).
Renames and removals act on names, never on what a link points to.

Also owns the calls that make a write durable (``--durability sync``):
:func:`flush_to_disk` for a file's content, :func:`flush_folder` for the names
in a folder. Knows nothing of keys, JSON or asyncio.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import sys
import time
import types
from collections.abc import Iterable, Iterator

__all__ = [
    "SymlinkRefused",
    "flush_folder",
    "flush_to_disk",
    "open_file",
    "open_or_replace",
    "read_file",
    "read_files",
    "remove_quietly",
    "replace",
    "write_and_close",
]

logger = logging.getLogger("objstore.cache")

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_BINARY = getattr(os, "O_BINARY", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
#: Reading a file at start need not update its time of last access (Linux): each such
#: update is an inode written, for 100,000 files just written (``relatime``).
_NOATIME = getattr(os, "O_NOATIME", 0)
#: The first read of each file in :func:`read_files`: one read for most values.
_FIRST_READ = 1 << 16


class SymlinkRefused(OSError):
    """A name in the cache folder is a symbolic link or, to be written, not a regular
    file with one name."""


def open_file(path: str, flags: int, mode: int = 0o666) -> int:
    """Open *path* with *flags*, refusing a symbolic link.

    Opened for writing, anything but a regular file with one name (no other hard
    link) is refused too. Raises :class:`SymlinkRefused` for those, OSError for
    the rest.
    """
    if not _NOFOLLOW:
        # Windows: no O_NOFOLLOW, so look first.
        try:
            if stat.S_ISLNK(os.lstat(path).st_mode):
                raise _refused(path)
        except FileNotFoundError:
            pass
    try:
        fd = os.open(path, flags | _NOFOLLOW | _BINARY, mode)
    except OSError as exc:
        # ELOOP on Linux and macOS, EMLINK on FreeBSD, EFTYPE on NetBSD.
        if exc.errno in (errno.ELOOP, errno.EMLINK, getattr(errno, "EFTYPE", -1)):
            raise _refused(path) from None
        raise
    if not flags & (os.O_WRONLY | os.O_RDWR):
        # Reading needs no more checks (the loader reads only what the folder
        # listing says is a plain file; O_NONBLOCK keeps a FIFO swapped in
        # since from blocking), and 100,000 files are read at start.
        return fd
    try:
        # Written in place, a FIFO, a device or a folder is refused too, and so
        # is a file with another name: a hard link to a file elsewhere would be
        # written through like a symbolic link.
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink > 1:
            raise _refused(path)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_or_replace(path: str, flags: int) -> int:
    """Open (or create) the store's own file *path*; a link or anything else under its name
    is removed (the name only, never what it points to) and a new file created."""
    try:
        return open_file(path, flags | os.O_CREAT)
    except SymlinkRefused:
        logger.warning("%s is not a plain file; replaced it with a new one", path)
        os.unlink(path)
        return open_file(path, flags | os.O_CREAT | os.O_EXCL)


def _refused(path: str) -> SymlinkRefused:
    return SymlinkRefused(errno.ELOOP, "a symbolic link or not a plain file", path)


def read_file(path: str) -> bytes:
    """The whole content of the file *path* (with less overhead than pathlib: 100,000 files
    are read at start)."""
    fd = open_file(path, os.O_RDONLY | _NONBLOCK)
    try:
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_files(folder: str, names: Iterable[str]) -> Iterator[tuple[str, bytes | OSError]]:
    """Each of *names* in the folder *folder* with its whole content, or the OSError that
    opening or reading it raised (:class:`SymlinkRefused` for a symbolic link), in order.

    :func:`read_file` for many files of one folder, with less work for each (100,000
    are read at start): every open is relative to one handle of the folder, so the
    system does not walk the folder's path each time, and a file is read in one call
    when it is shorter than 64 KiB (a read from a plain file that returns less than
    it was asked for has reached the end), and, where the system has ``O_NOATIME``
    (Linux) and the files are the process's own, without updating their times of last
    access. On systems without ``openat`` (Windows), :func:`read_file` of each path.
    """
    if not _NOFOLLOW or os.open not in os.supports_dir_fd:
        for name in names:
            try:
                yield name, read_file(os.path.join(folder, name))
            except OSError as exc:
                yield name, exc
        return
    flags = os.O_RDONLY | _NOFOLLOW | _NONBLOCK | _CLOEXEC | _NOATIME
    dir_fd = os.open(folder, os.O_RDONLY | _DIRECTORY | _CLOEXEC)
    # Bound once: this loop runs once per file.
    open_at, read, close = os.open, os.read, os.close
    try:
        for name in names:
            try:
                try:
                    fd = open_at(name, flags, dir_fd=dir_fd)
                except PermissionError as exc:
                    # O_NOATIME is for the files' owner only: open the others without.
                    if exc.errno != errno.EPERM or not flags & _NOATIME:
                        raise
                    flags &= ~_NOATIME
                    fd = open_at(name, flags, dir_fd=dir_fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.EMLINK, getattr(errno, "EFTYPE", -1)):
                    exc = _refused(os.path.join(folder, name))
                yield name, exc
                continue
            result: bytes | OSError
            try:
                result = read(fd, _FIRST_READ)
                if len(result) == _FIRST_READ:
                    chunks = [result]
                    while chunk := read(fd, _FIRST_READ):
                        chunks.append(chunk)
                    result = b"".join(chunks)
            except OSError as exc:
                result = exc
            finally:
                close(fd)
            yield name, result
    finally:
        close(dir_fd)


def write_and_close(fd: int, data: bytes, *, sync: bool = False) -> None:
    """Write all of *data* to the open file *fd*, then close it; with *sync*, flush it
    to disk (:func:`flush_to_disk`) before closing."""
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if sync:
            flush_to_disk(fd)
    finally:
        os.close(fd)


def _fcntl_module() -> types.ModuleType | None:
    try:
        import fcntl
    except ImportError:  # Windows
        return None
    return fcntl


def flush_to_disk(fd: int, platform: str = sys.platform) -> None:
    """Make what was written to the open file *fd* survive a power loss; raises OSError.

    On macOS ``fsync`` only hands the data to the drive, whose cache may lose
    it: ``fcntl(F_FULLFSYNC)`` asks the drive to flush too (plain ``fsync``
    where a file system refuses it, like some network shares). Elsewhere
    ``os.fsync``, which on Windows is ``FlushFileBuffers``.
    """
    if platform == "darwin":
        fcntl = _fcntl_module()
        full = getattr(fcntl, "F_FULLFSYNC", None)
        if fcntl is not None and full is not None:
            try:
                fcntl.fcntl(fd, full)
                return
            except OSError:
                pass  # not supported here: fsync is the best there is
    os.fsync(fd)


def flush_folder(path: str, platform: str = sys.platform) -> None:
    """Make the names created, replaced or removed in the folder *path* survive a power
    loss (:func:`flush_to_disk` on the folder); raises OSError.

    Not on Windows, where a folder cannot be opened to be flushed (NTFS journals
    its names itself); nor on file systems that refuse it (EINVAL), whose names
    are then as durable as they make them.
    """
    if platform == "win32":
        return
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        flush_to_disk(fd, platform)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


def replace(source: str, target: str) -> None:
    """Rename *source* to *target*, replacing it (a link at *target* is replaced, not
    followed)."""
    # On Windows a reader (an editor, an antivirus scan) holding the target open
    # makes os.replace fail for a moment; a few short retries ride that out.
    attempts = 5 if sys.platform == "win32" else 1
    for attempt in range(attempts):
        try:
            os.replace(source, target)
            return
        except PermissionError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.01 * (attempt + 1))


def remove_quietly(path: str | bytes) -> bool:
    """Remove the name *path* (a link itself, never its target); True if it was removed."""
    try:
        os.unlink(path)
    except OSError:
        return False
    return True
