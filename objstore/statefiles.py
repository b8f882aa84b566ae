"""The store's state across restarts: a snapshot and a journal beside the value files.

Owns the file steps of the two hidden files that keep what value files do not
(the revision counter, each key's revision and expiry deadline, the change
history): reading them at start, writing a snapshot, appending to the journal.
Their lines, and how the journal is replayed onto the snapshot, are
:mod:`objstore.statelines`'s; names come from :mod:`objstore.foldernames`.
Blocking code, run by the thread that writes the folder; knows nothing of
asyncio, of the wire protocol or of value files (the checksum of a value is
the caller's to compute and compare).

- No file is opened through a symbolic link (:mod:`objstore.diskio`). At a
  read, a link or anything but a plain file under either name is set aside
  (renamed ``*.corrupt``, never followed), and the state is unclean; so is a
  snapshot whose header cannot be read.
- :meth:`StateFiles.write_snapshot` writes the snapshot to a temporary file,
  flushes it to disk, renames it over the old one and flushes the folder;
  only then does it begin the new journal, the same way (a temporary file
  holding the header, renamed in place, then opened to append), so that each
  file is always whole and a journal left from before is never taken for the
  new snapshot's. Records that must outlive the fold (values acknowledged but
  not in their files yet) are written into the new journal before its rename.
  The generation is picked here: one past any seen in either file.
- :meth:`StateFiles.append` writes its records in one write to the journal it
  keeps open (``O_APPEND``), cuts a partial write back to the last whole line,
  and flushes the journal to disk when a record is a reservation (one per
  million revisions).

Memory when reading is bounded as :mod:`objstore.statelines` says: a line at
most :data:`~objstore.statelines.MAX_LINE_BYTES`, files streamed through a
64 KiB buffer, the history capped at its limit.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import time
from collections.abc import Iterable, Sequence
from typing import BinaryIO

from .diskio import (
    SymlinkRefused,
    flush_folder,
    flush_to_disk,
    open_file,
    remove_quietly,
    replace,
)
from .foldernames import JOURNAL_NAME, META_NAME, set_aside_name, temp_name
from .statelines import (
    HISTORY_LIMIT,
    Deadline,
    InFile,
    JournalContent,
    KeyState,
    LineReader,
    Reserve,
    SavedState,
    Value,
    encode_records,
    header_generation,
    journal_header,
    read_journal,
    read_snapshot,
    replay,
    snapshot_lines,
)

__all__ = ["Deadline", "InFile", "KeyState", "Reserve", "SavedState", "StateFiles", "Value"]

logger = logging.getLogger("objstore.cache")

_BUFFER = 64 * 1024
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_PID = os.getpid()


class _SetAside(Exception):
    """A state file was set aside (a link, not a plain file, an unreadable header)."""


class StateFiles:
    """The snapshot and journal of one cache folder; not thread-safe (one writer owns it).

    :meth:`read` once at start; :meth:`write_snapshot` before the first
    :meth:`append` (the journal is only appended to after this object began
    it), then whenever the caller folds the journal (:attr:`journal_size`) and
    at a clean stop; :meth:`close` at the end. A snapshot written while the
    server runs must say ``clean=False`` with the counter at the reservation:
    changes made under a reservation already in it leave no journal record.
    """

    def __init__(self, folder: str, *, history_limit: int = HISTORY_LIMIT) -> None:
        self.folder = folder
        self._history_limit = history_limit
        #: The highest generation seen in either file or written; None before any look.
        self._generation: int | None = None
        self._fd: int | None = None
        self._size = 0

    @property
    def journal_size(self) -> int:
        """Bytes in the journal: as found by :meth:`read`, or as begun and appended since."""
        return self._size

    def _join(self, name: str) -> str:
        return os.path.join(self.folder, name)

    def read(self) -> SavedState:
        """The saved state, the journal replayed onto the snapshot (see statelines.replay).

        Raises OSError when a file is there but cannot be opened or read.
        """
        try:
            snapshot, snapshot_lost = self._read_snapshot(), False
        except _SetAside:
            snapshot, snapshot_lost = None, True
        try:
            journal, journal_lost = self._read_journal(), False
        except _SetAside:
            journal, journal_lost = None, True
        seen = [self._generation or 0]
        if snapshot is not None:
            seen.append(snapshot.generation)
        if journal is not None and journal.generation is not None:
            seen.append(journal.generation)
        self._generation = max(seen)
        if snapshot is None and journal is not None and not snapshot_lost:
            logger.warning("%s is missing beside its journal; revisions start anew", META_NAME)
        elif (
            snapshot is not None
            and journal is not None
            and journal.generation not in (None, snapshot.generation)
        ):
            logger.info("%s is stale; only its reservations count", JOURNAL_NAME)
        return replay(snapshot, journal, snapshot_lost=snapshot_lost, journal_lost=journal_lost)

    def _read_snapshot(self) -> SavedState | None:
        stream = self._open_for_reading(META_NAME)
        if stream is None:
            return None
        with stream:
            snapshot = read_snapshot(LineReader(stream, META_NAME), self._history_limit)
        if snapshot is None:
            self._set_aside(META_NAME, "its first line is not a snapshot header")
            raise _SetAside
        return snapshot

    def _read_journal(self) -> JournalContent | None:
        stream = self._open_for_reading(JOURNAL_NAME)
        if stream is None:
            return None
        with stream:
            lines = LineReader(stream, JOURNAL_NAME)
            journal = read_journal(lines)
        self._size = lines.size
        return journal

    def _open_for_reading(self, name: str) -> BinaryIO | None:
        """The file *name* open for reading, None if there is none.

        A link or anything but a plain file is set aside (raises _SetAside).
        """
        try:
            fd = open_file(self._join(name), os.O_RDONLY | _NONBLOCK)
        except FileNotFoundError:
            return None
        except SymlinkRefused:
            self._set_aside(name, "a symbolic link, which objstore never follows")
            raise _SetAside from None
        try:
            plain = stat.S_ISREG(os.fstat(fd).st_mode)
        except BaseException:
            os.close(fd)
            raise
        if not plain:
            os.close(fd)
            self._set_aside(name, "not a plain file")
            raise _SetAside
        return open(fd, "rb", buffering=_BUFFER)

    def write_snapshot(
        self,
        state: SavedState,
        records: Sequence[Reserve | Deadline | Value | InFile] = (),
        *,
        sync: bool = False,
    ) -> int:
        """Write *state* as the snapshot, then begin a new journal holding *records*
        (flushed to disk first with *sync* or a reservation among them, as
        :meth:`append` does); return its generation.

        ``state.generation`` is only a floor: the generation written is one
        past any seen. Raises OSError, with the old snapshot in place if the new
        one could not be written (and the old journal if the new one could not).
        """
        if self._generation is None:
            self._generation = max(self._peek(META_NAME), self._peek(JOURNAL_NAME))
        generation = max(self._generation, state.generation) + 1
        fd, temp = self._create_temp(META_NAME)
        try:
            try:
                _write_chunked(fd, snapshot_lines(state, generation))
                flush_to_disk(fd)
            finally:
                os.close(fd)
            replace(temp, self._join(META_NAME))
        except BaseException:
            remove_quietly(temp)
            raise
        self._generation = generation
        self._sync_folder()
        # Closed before the renames: Windows renames neither an open file nor over one.
        self.close()
        header = journal_header(generation) + encode_records(records)
        fd, temp = self._create_temp(JOURNAL_NAME)
        try:
            try:
                _write_all(fd, header)
                if records and (sync or any(type(r) is Reserve for r in records)):
                    flush_to_disk(fd)
            finally:
                os.close(fd)
            replace(temp, self._join(JOURNAL_NAME))
        except BaseException:
            remove_quietly(temp)
            raise
        self._sync_folder()
        self._fd = open_file(self._join(JOURNAL_NAME), os.O_WRONLY | os.O_APPEND)
        self._size = len(header)
        return generation

    def append(
        self, records: Sequence[Reserve | Deadline | Value | InFile], *, sync: bool = False
    ) -> None:
        """Append *records* to the journal in one write; flush it to disk if one is a
        reservation, or with *sync*.

        Raises RuntimeError before :meth:`write_snapshot`, OSError if the
        write fails (the journal is then cut back to its last whole line).
        """
        fd = self._fd
        if fd is None:
            raise RuntimeError("write a snapshot before appending to the journal")
        data = encode_records(records)
        if not data:
            return
        try:
            _write_all(fd, data)
        except BaseException:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, self._size)  # the next record starts on a line of its own
            raise
        self._size += len(data)
        if sync or any(isinstance(record, Reserve) for record in records):
            flush_to_disk(fd)

    def close(self) -> None:
        """Close the journal; :meth:`append` needs a new :meth:`write_snapshot` after this."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def _create_temp(self, name: str) -> tuple[int, str]:
        """A new temporary file beside *name*, open for writing (a ``.tmp`` leftover if a
        crash leaves it, removed at startup)."""
        number = 0
        while True:
            number += 1
            temp = self._join(temp_name(name, _PID, number))
            try:
                return open_file(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL), temp
            except FileExistsError:
                continue  # left by an earlier process with the same id

    def _sync_folder(self) -> None:
        """Flush the folder's names to disk (where the system can: not Windows)."""
        flush_folder(self.folder)

    def _peek(self, name: str) -> int:
        """The generation on the first line of *name*, 0 if there is none to read."""
        try:
            with open(open_file(self._join(name), os.O_RDONLY | _NONBLOCK), "rb") as stream:
                first = next(LineReader(stream, name), None)
        except OSError:
            return 0
        return (header_generation(first[1]) if first is not None else None) or 0

    def _set_aside(self, name: str, reason: str) -> None:
        """Rename the state file *name* so that it is kept but no longer read."""
        stamp = time.strftime("%Y%m%dT%H%M%S")
        counter = 1
        target = set_aside_name(name, stamp)
        while os.path.lexists(self._join(target)):
            counter += 1
            target = set_aside_name(name, stamp, counter)
        try:
            os.replace(self._join(name), self._join(target))
        except OSError as exc:
            logger.warning("cannot read %s (%s) and cannot rename it: %s", name, reason, exc)
            return
        logger.warning("cannot read %s (%s); renamed it to %s", name, reason, target)


def _write_chunked(fd: int, lines: Iterable[bytes]) -> None:
    """Write *lines* in chunks of about 64 KiB (a snapshot is never held whole)."""
    chunk: list[bytes] = []
    size = 0
    for line in lines:
        chunk.append(line)
        size += len(line)
        if size >= _BUFFER:
            _write_all(fd, b"".join(chunk))
            chunk, size = [], 0
    if chunk:
        _write_all(fd, b"".join(chunk))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
