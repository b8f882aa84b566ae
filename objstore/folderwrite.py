"""Writing values into the cache folder: atomically, reusing each key's two files.

Owns how a value becomes a key's file: into the spare then a name exchange
(:mod:`objstore.swapwrite`) for keys written before, into the spare then
renames for the others and where the system cannot exchange names, and
temporary files for sidecars; and how a key's files are removed (its value
file first, so that a crash leaves the old value or nothing). Never writes
through a symbolic link (see :mod:`objstore.diskio`), and leaves no partial
spare or temporary file behind a failed write. Names come from
:mod:`objstore.foldernames`. Blocking code, run by the writer thread; knows
nothing of asyncio, JSON or retries.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os

from .diskio import open_file, open_or_replace, remove_quietly, replace, write_and_close
from .fdlimit import current_open_file_limit
from .foldernames import file_name, is_hashed, old_name, sidecar_name, spare_name, temp_name
from .swapwrite import SwapWriter, name_exchange

__all__ = ["FolderWriter"]

logger = logging.getLogger("objstore.cache")

_MAX_KEPT_OPEN = 1024
_PID = os.getpid()
_temp_numbers = itertools.count()
#: Whether os.link can be told to link a symbolic link itself, never what it points to.
_LINK_CAN_NOFOLLOW = os.link in os.supports_follow_symlinks


class FolderWriter:
    """Writes the files of one folder; not thread-safe (one writer thread owns it)."""

    def __init__(self, path: str, *, swap_names: bool = True, sync: bool = False) -> None:
        """*swap_names* False writes every file the way of systems without a name exchange;
        *sync* flushes each file's content to disk before it takes its name (the folder's
        names are the caller's to flush, once for many files: :func:`flush_folder`)."""
        self.path = path
        self._sync = sync
        exchange = name_exchange() if swap_names else None
        #: Rewrites hot keys by swapping names, where the system can (see swapwrite).
        self._swapper = (
            None
            if exchange is None
            else SwapWriter(path, spare_name, exchange, _files_kept_open(), sync=sync)
        )

    def close(self) -> None:
        """Close the files kept open for fast rewrites; writes after this reopen them."""
        if self._swapper is not None:
            self._swapper.close()

    def write(self, key: str, data: bytes) -> str:
        """Make *data* (and a newline) the content of *key*'s file; return the file name.

        Raises OSError, with the key's file whole: holding its old value or the new one.
        """
        name = file_name(key)
        if is_hashed(name):
            sidecar = os.path.join(self.path, sidecar_name(name))
            if not os.path.lexists(sidecar):
                self.write_atomically(sidecar_name(name), key.encode("utf-8"))
        data += b"\n"
        swapper = self._swapper
        if swapper is None or not swapper.rewrite(name, data):
            self._write_recycling(name, data)
        return name

    def remove(self, key: str) -> None:
        """Remove *key*'s value file, then its spare and (for a hashed name) its sidecar.

        A key without a file is not an error. Names are removed, never what a
        symbolic link under them points to. The value file goes first: a crash
        at any moment leaves the old value (loadable) or no value, and a spare
        or sidecar left without its value file is removed at the next start.
        Raises OSError when the value file cannot be removed; once it is gone
        the key is, so a spare or sidecar that cannot be removed is only logged.
        """
        name = file_name(key)
        if self._swapper is not None:
            # Its two files are about to lose their names; a later write opens new ones.
            self._swapper.forget(name)
        _remove_if_present(os.path.join(self.path, name))
        leftovers = [spare_name(name)]
        if is_hashed(name):
            leftovers.append(sidecar_name(name))
        for leftover in leftovers:
            try:
                _remove_if_present(os.path.join(self.path, leftover))
            except OSError as exc:
                logger.warning(
                    "could not remove %s (removed at the next start): %s", leftover, exc
                )

    def _write_recycling(self, name: str, data: bytes) -> None:
        """Write atomically, reusing the previous file's inode for the next write.

        The way of systems without a name exchange, and of a key's first write
        everywhere (a swap needs two files).

        Creating a file per write and deleting the replaced one makes the file
        system allocate and free an inode each time, which was a third of the
        server's CPU time under a game-like load. Instead each key keeps a
        spare: the value is written into the spare, the current file gets a
        second name (a hard link of the name, never of what a symbolic link
        points to), the spare replaces the current file, and the old file
        becomes the next spare. Every step leaves the key's file whole; second
        names left by a crash are removed at startup. Where hard links are not
        supported (FAT drives), the spare is simply not kept.
        """
        path = os.path.join(self.path, name)
        spare = os.path.join(self.path, spare_name(name))
        old = os.path.join(self.path, old_name(name))
        fd = open_or_replace(spare, os.O_WRONLY)
        try:
            try:
                # Overwrite, then cut to length: truncating to zero first would make
                # ext4 flush the file when it is closed (its replace-by-truncate
                # safeguard), which costs a disk write per set.
                os.ftruncate(fd, len(data))
            except BaseException:
                os.close(fd)
                raise
            write_and_close(fd, data, sync=self._sync)
        except BaseException:
            remove_quietly(spare)  # a partial value (a full disk) is of no use
            raise
        try:
            _link(path, old)
            kept = True
        except FileNotFoundError:  # the key's first file
            kept = False
        except FileExistsError:  # left by a crash between two of these steps
            os.unlink(old)
            _link(path, old)
            kept = True
        except OSError:  # no hard links on this file system
            kept = False
        try:
            replace(spare, path)
        except BaseException:
            remove_quietly(spare)
            if kept:
                remove_quietly(old)
            raise
        if kept:
            replace(old, spare)

    def write_atomically(self, name: str, data: bytes) -> None:
        """Write *data* to the file *name* through a temporary file, removed on failure."""
        fd, temp = self.create_temp(name)
        try:
            write_and_close(fd, data, sync=self._sync)
            replace(temp, os.path.join(self.path, name))
        except BaseException:
            remove_quietly(temp)
            raise

    def create_temp(self, name: str) -> tuple[int, str]:
        """A new, unique temporary file beside *name*, open for writing.

        Cheaper than tempfile.mkstemp (no random names, no chmod): the process
        id and a counter make the name unique, and O_EXCL makes sure of it. Its
        mode is that of any new file (0o666 less the umask).
        """
        while True:
            temp = os.path.join(self.path, temp_name(name, _PID, next(_temp_numbers)))
            try:
                return open_file(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL), temp
            except FileExistsError:
                continue  # left by an earlier process with the same id


def _remove_if_present(path: str) -> None:
    """Remove the name *path* (a link itself, never its target); a missing name is fine."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _link(path: str, second: str) -> None:
    """Give the file *path* a *second* name; a symbolic link is linked as itself."""
    if _LINK_CAN_NOFOLLOW:
        os.link(path, second, follow_symlinks=False)
    else:  # Windows, whose hard links never follow
        os.link(path, second)


def _files_kept_open() -> int:
    """How many keys may keep their two files open: 1,024, fewer under a low open-file limit.

    A sixteenth of the limit at most, so that files never take the room of clients.
    """
    limit = current_open_file_limit()
    return _MAX_KEPT_OPEN if limit is None else min(_MAX_KEPT_OPEN, limit // 16)
