"""The cache folder on disk: one JSON file per key, locked, loaded at start, written atomically.

Owns the folder as a whole: creating it (and creating it again when it is
removed while the server runs), its lock, and turning the file layer's
OSErrors into :class:`~objstore.errors.StorageError` and
:class:`~objstore.errors.StartupError` messages. The work is done by
:mod:`objstore.folderlock` (the lock), :mod:`objstore.folderload` (loading and
tidying) and :mod:`objstore.folderwrite` (writing and removing), on the names of
:mod:`objstore.foldernames`. Blocking code, meant to run off the event loop;
knows nothing of asyncio, subscribers or the wire protocol.

The folder itself may be a symbolic link (choosing it is the user's business,
like ``--cache-dir``); symbolic links inside it are never followed.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from .diskio import flush_folder
from .errors import StartupError, StorageError, describe
from .folderload import LoadReport, load_folder
from .folderlock import FolderInUse, FolderLock
from .foldernames import file_name
from .folderwrite import FolderWriter

__all__ = ["CacheFolder", "LoadReport"]

logger = logging.getLogger("objstore.cache")


class CacheFolder:
    """A folder of ``{file name}.json`` files, one per key, each holding the value itself."""

    def __init__(self, path: Path, *, swap_names: bool = True, sync: bool = False) -> None:
        """*swap_names* False writes every file the way of systems without a name exchange;
        *sync* flushes each file to disk as it is written (then call :meth:`sync`)."""
        self.path = path
        self._writer = FolderWriter(str(path), swap_names=swap_names, sync=sync)
        #: Times the folder was found removed and created again (read by the writer).
        self.restored = 0
        self._lock = FolderLock(str(path))

    def close(self) -> None:
        """Close the files kept open and let the lock go; writes after this reopen the files."""
        self._writer.close()
        self._lock.release()

    def prepare(self) -> None:
        """Create the folder if missing, lock it and check that files can be written in it.

        Raises :class:`~objstore.errors.StartupError` with the fix when it cannot.
        """
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self._lock.acquire()
            fd, probe = self._writer.create_temp("write-check")
            os.close(fd)
            os.unlink(probe)
        except FolderInUse as exc:
            raise StartupError(_in_use_message(self.path, exc.pid)) from None
        except OSError as exc:
            self._lock.release()
            reason = exc.strerror or str(exc)
            raise StartupError(
                f"cannot write to the cache folder {self.path}: {reason}; "
                "choose a writable folder with --cache-dir or CACHE_DIR"
            ) from None

    def load(self) -> LoadReport:
        """Read every key's value; set aside what cannot be read; tidy leftovers."""
        return load_folder(self._writer)

    def write(self, key: str, data: bytes) -> None:
        """Replace the file of *key* with *data* atomically.

        The data goes to another file in the same folder, which then takes the
        old file's name in one step: a crash at any moment leaves the old file
        or the new one, never a torn one. A folder removed since is created
        again (not its parents: a drive that is gone stays gone). Raises
        :class:`~objstore.errors.StorageError`.
        """
        try:
            try:
                self._writer.write(key, data)
            except OSError:
                if not self._restore():
                    raise
                self._writer.write(key, data)
        except (OSError, FolderInUse) as exc:
            reason = (
                _in_use_message(self.path, exc.pid)
                if isinstance(exc, FolderInUse)
                else exc.strerror or str(exc)
            )
            raise StorageError(
                f"could not save key {describe(key)} to {self.path / file_name(key)}: {reason}"
            ) from exc

    def remove(self, key: str) -> None:
        """Remove the file of *key* (and its spare and sidecar), if it has one.

        The value file goes first: a crash at any moment leaves the old value or
        none. A key without a file, or a folder removed since, is not an error:
        nothing of the key is on disk, which is what a removal wants (the next
        write creates the folder again). Raises
        :class:`~objstore.errors.StorageError` when the file stays.
        """
        try:
            self._writer.remove(key)
        except OSError as exc:
            raise StorageError(
                f"could not remove key {describe(key)} by deleting "
                f"{self.path / file_name(key)}: {exc.strerror or exc}"
            ) from exc

    def sync(self) -> None:
        """Flush the folder's names (files written, replaced, removed) to disk, once for
        every file written since. Raises :class:`~objstore.errors.StorageError`."""
        try:
            flush_folder(str(self.path))
        except OSError as exc:
            raise StorageError(
                f"could not flush the cache folder {self.path} to disk: {exc.strerror or exc}"
            ) from exc

    def _restore(self) -> bool:
        """Create the folder again if it was removed; True if it was. Raises FolderInUse."""
        if os.path.isdir(self.path) or not os.path.isdir(self.path.parent):
            return False
        try:
            self.path.mkdir()
        except FileExistsError:  # made meanwhile by another program, or a file
            return False
        except OSError:
            return False
        logger.warning("the cache folder %s was removed; created it again", self.path)
        self._writer.close()  # the files kept open are gone with the folder
        self._lock.acquire()
        self.restored += 1
        return True


def _in_use_message(path: Path, pid: int | None) -> str:
    holder = "another objstore" if pid is None else f"another objstore (process {pid})"
    return (
        f"the cache folder {path} is in use by {holder}; "
        "stop that program or choose another folder with --cache-dir or CACHE_DIR"
    )
