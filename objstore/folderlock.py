"""The lock that keeps a second server off a cache folder while one runs on it.

Owns the lock file (:data:`~objstore.foldernames.LOCK_NAME`) and the system
lock on it: ``flock`` on POSIX, ``msvcrt.locking`` on Windows. The lock is
held by an open file for as long as the process runs, so the system releases
it when the process ends in any way, ``kill -9`` included; the file itself
stays and is reused. It holds the holder's process id, for the message a
second server prints. Knows nothing of keys, values or asyncio.
"""

from __future__ import annotations

import logging
import os
import sys

from .diskio import open_or_replace
from .foldernames import LOCK_NAME

__all__ = ["FolderInUse", "FolderLock"]

logger = logging.getLogger("objstore.cache")

#: Windows locks a byte range, which other handles cannot read: lock a byte
#: far beyond the process id written at the start of the file.
_WINDOWS_LOCK_OFFSET = 1 << 20
_PID_BYTES = 32


class FolderInUse(Exception):
    """Another process holds the lock; *pid* is its process id when known."""

    def __init__(self, pid: int | None) -> None:
        super().__init__(pid)
        self.pid = pid


class FolderLock:
    """The lock of one folder; :meth:`acquire` takes it, :meth:`release` lets it go."""

    def __init__(self, folder: str) -> None:
        self.path = os.path.join(folder, LOCK_NAME)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this process holds the lock."""
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock, or raise :class:`FolderInUse`; OSError if the file cannot be made.

        A file system that cannot lock at all (some network shares) is logged
        and the server runs unlocked, as before locks existed.
        """
        self.release()
        fd = open_or_replace(self.path, os.O_RDWR)
        try:
            _lock(fd)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise FolderInUse(pid) from None
        except OSError as exc:
            os.close(fd)
            logger.warning(
                "cannot lock the cache folder (%s); make sure no other objstore uses it",
                exc.strerror or exc,
            )
            return
        try:
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError:
            pass  # the lock holds without the process id; only the message loses it
        self._fd = fd

    def release(self) -> None:
        """Let the lock go (closing its file); the file stays for the next server."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _lock(fd: int) -> None:
    """Lock *fd* without waiting; BlockingIOError when another holds it."""
    if sys.platform == "win32":
        import msvcrt

        os.lseek(fd, _WINDOWS_LOCK_OFFSET, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except PermissionError as exc:  # EACCES: locked by another handle
            raise BlockingIOError(*exc.args) from None
        except OSError as exc:
            if exc.errno == 36:  # EDEADLOCK, which msvcrt also reports for a held lock
                raise BlockingIOError(*exc.args) from None
            raise
    else:
        import fcntl

        # flock, not lockf: its lock belongs to the open file, so a second
        # server in the same process (tests) is refused too.
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _read_pid(fd: int) -> int | None:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, _PID_BYTES).decode("ascii").strip()
        return int(text) if text.isascii() and text.isdigit() else None
    except (OSError, UnicodeDecodeError, ValueError):
        return None
