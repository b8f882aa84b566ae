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

__all__ = [
    "SymlinkRefused",
    "flush_folder",
    "flush_to_disk",
    "open_file",
    "open_or_replace",
    "read_file",
    "remove_quietly",
    "replace",
    "write_and_close",
]

logger = logging.getLogger("objstore.cache")

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_BINARY = getattr(os, "O_BINARY", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)


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
