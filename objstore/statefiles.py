"""The store's state across restarts: a snapshot and a journal beside the value files.

Owns the two hidden files that keep what value files do not: the revision
counter, each key's revision and expiry deadline, and the change history.
Blocking file code, run by the thread that writes the folder; knows nothing of
asyncio, of the wire protocol or of value files (the checksum of a value is
the caller's to compute and compare). Names come from :mod:`objstore.foldernames`;
no file is ever opened through a symbolic link (:mod:`objstore.diskio`).

``.objstore.meta``, the snapshot, JSON lines::

    {"meta": 1, "rev": R, "clean": true|false, "journal": G, "base": B}
    {"k": KEY, "r": REV, "x": EXPIRES_MS_OR_NULL, "c": CRC32_OR_NULL}   one per key
    {"h": REV, "k": KEY, "d": DELETED}                                  history, oldest first

R is the last revision handed out (clean) or reserved so far; G the generation
of the journal that belongs to the snapshot; B the history base: every change
with a revision above B is in the history lines. It is written to a temporary
file, flushed to disk and renamed over the old one.

``.objstore.journal``, append-only JSON lines: ``{"journal": G}``, then
``{"reserve": M}`` (revisions up to M may have been handed out; flushed to
disk before the call returns) and ``{"k": KEY, "x": EXPIRES_MS_OR_NULL}`` (the
key's expiry deadline changed; null: permanent again).

Decisions the format leaves open:

- :meth:`StateFiles.write_snapshot` picks the generation itself, one past any
  it has seen in either file, so a journal left from before can never pass
  for the new snapshot's. The new journal is written to a temporary file and
  renamed in place after the snapshot (and the folder) are on disk: the
  journal is always whole, the old one or the new one.
- A journal of the snapshot's generation is replayed: reservations raise the
  counter, deadlines set ``expires``, and any record at all (even a garbled
  line) makes the state unclean, since the journal does not carry the keys'
  new revisions. A journal of another generation is stale: its deadlines are
  ignored, but its reservations still raise the counter (never lower: at most
  a gap in the numbers), so that revisions never go back. So do those of a
  journal whose first line cannot be read.
- A snapshot whose header cannot be read, or which is a symbolic link or not
  a plain file, is set aside (``*.corrupt``) and the state is unclean, with the
  counter at the highest reservation found and no keys or history; so is a
  missing snapshot beside a journal that holds anything. A journal that is a
  link or not a plain file is set aside, and the state is unclean.
- A deadline for a key without a snapshot line gives it a line with revision 0.
- A key line whose revision is above the header's raises the counter to it and
  makes the state unclean (better a gap than a reused revision); a second line
  for one key replaces the first. History lines out of order, at or below the
  base, or above the counter are skipped. Every skipped line is warned about
  with the file and line number, the first 10 of a file one by one, the rest
  counted in one warning.

Memory when reading is bounded: a line is read up to :data:`MAX_LINE_BYTES`
(64 KiB, beyond any key's line: a key of 1,024 bytes is at most 6 KiB escaped)
and a longer one is skipped without being held; the files stream line by line
through a 64 KiB buffer, whatever their size; the history keeps its last
*history_limit* entries (10,000), raising the base past the ones it drops.
What remains grows with the number of distinct keys named, as the value files do.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import stat
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Final, NamedTuple, TypeGuard

from .diskio import SymlinkRefused, open_file, remove_quietly, replace
from .errors import ClientError
from .foldernames import JOURNAL_NAME, META_NAME, set_aside_name, temp_name
from .keys import validate_key

__all__ = [
    "HISTORY_LIMIT",
    "MAX_LINE_BYTES",
    "Deadline",
    "KeyState",
    "Reserve",
    "SavedState",
    "StateFiles",
]

logger = logging.getLogger("objstore.cache")

#: The longest line read from a state file; a longer one is garbage, skipped unread.
MAX_LINE_BYTES: Final = 64 * 1024
#: How many history entries a read keeps, the newest.
HISTORY_LIMIT: Final = 10_000
_MAX_WARNINGS: Final = 10
_BUFFER: Final = 64 * 1024
_MAX_REV: Final = 2**53
_MAX_CRC: Final = 2**32
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_PID = os.getpid()


@dataclass(slots=True)
class KeyState:
    """What the snapshot keeps of one key: its revision, expiry deadline and value checksum.

    ``expires`` is in milliseconds since the epoch, None for a permanent key;
    ``crc`` is ``zlib.crc32`` of the value's JSON bytes at a clean stop, or None.
    """

    rev: int
    expires: int | None = None
    crc: int | None = None


@dataclass(slots=True)
class SavedState:
    """The state the files hold: the counter, each key's state and the change history.

    ``history`` holds ``(revision, key, deleted)``, oldest first; every change
    with a revision above ``base`` is in it. ``generation`` is that of the
    snapshot read (:meth:`StateFiles.write_snapshot` picks its own).
    """

    rev: int = 0
    clean: bool = True
    generation: int = 0
    base: int = 0
    keys: dict[str, KeyState] = field(default_factory=dict)
    history: list[tuple[int, str, bool]] = field(default_factory=list)


class Reserve(NamedTuple):
    """A journal record: revisions up to ``upto`` may have been handed out."""

    upto: int


class Deadline(NamedTuple):
    """A journal record: the expiry deadline of ``key`` changed (None: permanent again)."""

    key: str
    expires: int | None


class _Unusable(Exception):
    """A state file was set aside (a link, not a plain file, an unreadable header)."""


@dataclass(slots=True)
class _Journal:
    """What a journal holds; ``generation`` None when its first line is not a header."""

    generation: int | None
    reserved: int = 0
    deadlines: dict[str, int | None] = field(default_factory=dict)
    #: Lines after the header, readable or not.
    records: int = 0


class StateFiles:
    """The snapshot and journal of one cache folder; not thread-safe (one writer owns it).

    :meth:`read` once at start; :meth:`write_snapshot` before the first
    :meth:`append` (the journal is only appended to after this object began
    it), then whenever the caller folds the journal (:attr:`journal_size`) and
    at a clean stop; :meth:`close` at the end.
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
        """Bytes in the journal: as read by :meth:`read`, or as begun and appended since."""
        return self._size

    def _join(self, name: str) -> str:
        return os.path.join(self.folder, name)

    # -- reading -----------------------------------------------------------------

    def read(self) -> SavedState:
        """The saved state, the journal replayed onto the snapshot (see the module's rules).

        Raises OSError when a file exists but cannot be opened or read.
        """
        try:
            meta = self._read_meta()
            meta_unusable = False
        except _Unusable:
            meta, meta_unusable = None, True
        try:
            journal = self._read_journal()
            journal_unusable = False
        except _Unusable:
            journal, journal_unusable = None, True
        seen = [self._generation or 0]
        if meta is not None:
            seen.append(meta.generation)
        if journal is not None and journal.generation is not None:
            seen.append(journal.generation)
        self._generation = max(seen)
        reserved = journal.reserved if journal is not None else 0
        if meta is None:
            if not meta_unusable and journal is None and not journal_unusable:
                return SavedState()  # a new folder, or one of the original server
            if not meta_unusable:
                logger.warning("%s is missing beside its journal; revisions start anew", META_NAME)
            return SavedState(rev=reserved, clean=False, base=reserved)
        meta.rev = max(meta.rev, reserved)
        if journal_unusable:
            meta.clean = False
        elif journal is not None and journal.generation != meta.generation:
            if journal.generation is not None:
                logger.info(
                    "%s is of an earlier snapshot; only its reservations count", JOURNAL_NAME
                )
            if journal.generation is None and journal.records:
                meta.clean = False
        elif journal is not None and journal.records:
            meta.clean = False
            for key, expires in journal.deadlines.items():
                known = meta.keys.get(key)
                if known is not None:
                    known.expires = expires
                elif expires is not None:
                    meta.keys[key] = KeyState(0, expires)
        return meta

    def _open_for_reading(self, name: str) -> int | None:
        """An open file *name*, None if there is none; a link or not a plain file is set aside."""
        try:
            fd = open_file(self._join(name), os.O_RDONLY | _NONBLOCK)
        except FileNotFoundError:
            return None
        except SymlinkRefused:
            self._set_aside(name, "a symbolic link, which objstore never follows")
            raise _Unusable from None
        try:
            plain = stat.S_ISREG(os.fstat(fd).st_mode)
        except BaseException:
            os.close(fd)
            raise
        if not plain:
            os.close(fd)
            self._set_aside(name, "not a plain file")
            raise _Unusable
        return fd

    def _read_meta(self) -> SavedState | None:
        fd = self._open_for_reading(META_NAME)
        if fd is None:
            return None
        lines = _Lines(fd, META_NAME)
        try:
            first = next(lines, None)
            state = _parse_header(None if first is None else first[1])
            if state is None:
                raise _Unusable
            history = _History(state, self._history_limit)
            for number, line in lines:
                record = _parse(line)
                if record is None or not (_read_key_line(state, record) or history.add(record)):
                    lines.skipped(number)
            history.finish()
        except _Unusable:
            lines.close()
            self._set_aside(META_NAME, "its first line is not a snapshot header")
            raise
        finally:
            lines.close()
        return state

    def _read_journal(self) -> _Journal | None:
        fd = self._open_for_reading(JOURNAL_NAME)
        if fd is None:
            return None
        lines = _Lines(fd, JOURNAL_NAME)
        try:
            first = next(lines, None)
            if first is None:
                return None  # empty: no header was ever written in it
            header = _parse(first[1])
            generation = None if header is None else _header_generation(header)
            journal = _Journal(generation)
            if generation is None:
                logger.warning(
                    "%s: line 1 is not a journal header; only its reservations count",
                    JOURNAL_NAME,
                )
                if header is not None and _read_record(journal, header):
                    journal.records += 1  # a record where the header should be
            for number, line in lines:
                journal.records += 1
                record = _parse(line)
                if record is None or not _read_record(journal, record):
                    lines.skipped(number)
            self._size = lines.size
        finally:
            lines.close()
        return journal

    # -- writing -----------------------------------------------------------------

    def write_snapshot(self, state: SavedState) -> int:
        """Write *state* as the snapshot, then begin a new, empty journal; return its generation.

        The snapshot is renamed in place only once on disk, and the folder
        flushed, before the journal is replaced, so that a crash leaves either
        file whole and a new snapshot never meets an older journal of its
        generation. ``state.generation`` is ignored. Raises OSError, with the
        old snapshot in place if the new one could not be written.
        """
        if self._generation is None:
            self._generation = max(self._peek(META_NAME), self._peek(JOURNAL_NAME))
        generation = max(self._generation, state.generation) + 1
        fd, temp = self._create_temp(META_NAME)
        try:
            try:
                _write_lines(fd, _snapshot_lines(state, generation))
                os.fsync(fd)
            finally:
                os.close(fd)
            replace(temp, self._join(META_NAME))
        except BaseException:
            remove_quietly(temp)
            raise
        self._generation = generation
        self._sync_folder()
        header = _line({"journal": generation})
        fd, temp = self._create_temp(JOURNAL_NAME)
        try:
            _write_all(fd, header)
            replace(temp, self._join(JOURNAL_NAME))
        except BaseException:
            os.close(fd)
            remove_quietly(temp)
            raise
        self.close()
        self._fd, self._size = fd, len(header)
        self._sync_folder()
        return generation

    def append(self, records: Sequence[Reserve | Deadline]) -> None:
        """Append *records* to the journal in one write; flush it to disk if one is a
        reservation.

        Raises RuntimeError before :meth:`write_snapshot`, OSError if the
        write fails (the journal is then cut back to its last whole line).
        """
        fd = self._fd
        if fd is None:
            raise RuntimeError("write a snapshot before appending to the journal")
        data = b"".join(_encode_record(record) for record in records)
        if not data:
            return
        try:
            _write_all(fd, data)
        except BaseException:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, self._size)  # the next record starts on a line of its own
            raise
        self._size += len(data)
        if any(type(record) is Reserve for record in records):
            os.fsync(fd)

    def close(self) -> None:
        """Close the journal; :meth:`append` needs a new :meth:`write_snapshot` after this."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    # -- file steps ----------------------------------------------------------------

    def _create_temp(self, name: str) -> tuple[int, str]:
        """A new temporary file beside *name*, open for appending (removed at startup if left)."""
        number = 0
        while True:
            number += 1
            temp = self._join(temp_name(name, _PID, number))
            try:
                flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL
                return open_file(temp, flags), temp
            except FileExistsError:
                continue

    def _sync_folder(self) -> None:
        """Flush the folder's names to disk (where the system can: not Windows)."""
        if sys.platform == "win32":
            return
        fd = os.open(self.folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.ENOTSUP):  # file systems without it
                raise
        finally:
            os.close(fd)

    def _peek(self, name: str) -> int:
        """The generation in the first line of *name*, 0 if there is none to read."""
        try:
            fd = open_file(self._join(name), os.O_RDONLY | _NONBLOCK)
        except OSError:
            return 0
        lines = _Lines(fd, name, warn=False)
        try:
            first = next(lines, None)
        except OSError:
            return 0
        finally:
            lines.close()
        if first is None:
            return 0
        if name == META_NAME:
            state = _parse_header(first[1])
            return 0 if state is None else state.generation
        header = _parse(first[1])
        generation = None if header is None else _header_generation(header)
        return generation or 0

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


class _Lines:
    """The lines of an open file, read through a bounded buffer; None for an overlong line.

    Owns the file (closes it) and the warnings about skipped lines.
    """

    def __init__(self, fd: int, name: str, *, warn: bool = True) -> None:
        self._file = open(fd, "rb", buffering=_BUFFER)  # noqa: SIM115 (closed by close())
        self._name = name
        self._warn = warn
        self._number = 0
        self._skipped = 0
        #: Bytes read so far.
        self.size = 0

    def __iter__(self) -> Iterator[tuple[int, bytes | None]]:
        return self

    def __next__(self) -> tuple[int, bytes | None]:
        line = self._file.readline(MAX_LINE_BYTES + 1)
        if not line:
            raise StopIteration
        self._number += 1
        self.size += len(line)
        if len(line) <= MAX_LINE_BYTES or line.endswith(b"\n"):
            return self._number, line
        while line and not line.endswith(b"\n"):  # skip the rest, never holding it
            line = self._file.readline(_BUFFER)
            self.size += len(line)
        return self._number, None

    def skipped(self, number: int) -> None:
        """Warn that line *number* was skipped (the first few one by one)."""
        self._skipped += 1
        if self._warn and self._skipped <= _MAX_WARNINGS:
            logger.warning("%s: line %d cannot be read; skipped it", self._name, number)

    def close(self) -> None:
        if self._file.closed:
            return
        self._file.close()
        if self._warn and self._skipped > _MAX_WARNINGS:
            more = self._skipped - _MAX_WARNINGS
            logger.warning("%s: skipped %d more lines that cannot be read", self._name, more)


class _History:
    """Collects history lines in order, keeping the newest *limit* and moving the base."""

    def __init__(self, state: SavedState, limit: int) -> None:
        self._state = state
        self._limit = limit
        self._last = state.base

    def add(self, record: dict[str, object]) -> bool:
        rev, key, deleted = record.get("h"), record.get("k"), record.get("d")
        state = self._state
        if not (_is_int(rev, state.rev + 1) and rev > self._last and type(deleted) is bool):
            return False
        if _valid_key(key) is None:
            return False
        assert isinstance(key, str)
        self._last = rev
        state.history.append((rev, key, deleted))
        if len(state.history) >= 2 * self._limit + 1:
            self.finish()
        return True

    def finish(self) -> None:
        history = self._state.history
        dropped = len(history) - self._limit
        if dropped > 0:
            self._state.base = history[dropped - 1][0]
            del history[:dropped]


def _parse(line: bytes | None) -> dict[str, object] | None:
    """The JSON object on *line*, None if it is not one (or the line was overlong)."""
    if line is None:
        return None
    try:
        value = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _is_int(value: object, below: int) -> TypeGuard[int]:
    """Whether *value* is an integer (not a bool) from 0 up to, not including, *below*."""
    return type(value) is int and 0 <= value < below


def _valid_key(value: object) -> str | None:
    try:
        return validate_key(value)
    except ClientError:
        return None


def _parse_header(line: bytes | None) -> SavedState | None:
    header = _parse(line)
    if header is None or header.get("meta") != 1 or type(header.get("meta")) is not int:
        return None
    rev, clean, generation, base = (header.get(n) for n in ("rev", "clean", "journal", "base"))
    if not (_is_int(rev, _MAX_REV) and type(clean) is bool and _is_int(generation, _MAX_REV)):
        return None
    if not _is_int(base, rev + 1):
        return None
    return SavedState(rev=rev, clean=clean, generation=generation, base=base)


def _header_generation(header: dict[str, object]) -> int | None:
    generation = header.get("journal")
    return generation if _is_int(generation, _MAX_REV) and len(header) == 1 else None


def _read_key_line(state: SavedState, record: dict[str, object]) -> bool:
    """Take a key line into *state*; False if *record* is not a valid one."""
    if "r" not in record:
        return False
    key, rev, expires, crc = (record.get(n) for n in ("k", "r", "x", "c"))
    if not (
        _is_int(rev, _MAX_REV)
        and (expires is None or _is_int(expires, _MAX_REV))
        and (crc is None or _is_int(crc, _MAX_CRC))
    ):
        return False
    valid = _valid_key(key)
    if valid is None:
        return False
    if rev > state.rev:
        logger.warning("%s: key revision %d is past the counter %d", META_NAME, rev, state.rev)
        state.rev, state.clean = rev, False
    if valid in state.keys:
        logger.warning("%s: a second line for one key; the last one counts", META_NAME)
    state.keys[valid] = KeyState(rev, expires, crc)
    return True


def _read_record(journal: _Journal, record: dict[str, object]) -> bool:
    """Take a journal record into *journal*; False if *record* is not a valid one."""
    if len(record) == 1 and "reserve" in record:
        upto = record["reserve"]
        if not _is_int(upto, _MAX_REV):
            return False
        journal.reserved = max(journal.reserved, upto)
        return True
    if len(record) != 2 or "x" not in record:
        return False
    key, expires = _valid_key(record.get("k")), record["x"]
    if key is None or not (expires is None or _is_int(expires, _MAX_REV)):
        return False
    assert expires is None or isinstance(expires, int)
    journal.deadlines[key] = expires
    return True


def _line(value: dict[str, object]) -> bytes:
    # Non-ASCII stays UTF-8; a newline in a key is escaped by JSON, so a record is one line.
    return (json.dumps(value, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


def _encode_record(record: Reserve | Deadline) -> bytes:
    if type(record) is Reserve:
        return _line({"reserve": record.upto})
    assert isinstance(record, Deadline)
    return _line({"k": record.key, "x": record.expires})


def _snapshot_lines(state: SavedState, generation: int) -> Iterator[bytes]:
    yield _line(
        {
            "meta": 1,
            "rev": state.rev,
            "clean": state.clean,
            "journal": generation,
            "base": state.base,
        }
    )
    for key, known in state.keys.items():
        yield _line({"k": key, "r": known.rev, "x": known.expires, "c": known.crc})
    for rev, key, deleted in state.history:
        yield _line({"h": rev, "k": key, "d": deleted})


def _write_lines(fd: int, lines: Iterator[bytes]) -> None:
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
