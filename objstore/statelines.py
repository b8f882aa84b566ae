"""The lines of the state files: what each one says, written, and read back checked.

Owns the format of the snapshot (``.objstore.meta``) and the journal
(``.objstore.journal``), the checks every line read must pass, and how a
journal is replayed onto its snapshot. Pure: reads lines from a binary stream
it is given and returns the bytes to write; opens no file and knows nothing of
asyncio, the wire protocol or value files. :mod:`objstore.statefiles` does the
file steps.

The snapshot, JSON lines::

    {"meta": 1, "rev": R, "clean": true|false, "journal": G, "base": B}
    {"k": KEY, "r": REV, "x": EXPIRES_MS_OR_NULL, "c": CRC32_OR_NULL, "t": CHANGED_MS_OR_NULL}
    {"h": REV, "k": KEY, "d": DELETED}

One line per key (``"t"``, the time of its last change, is missing in a
snapshot of an earlier version), then the history lines, oldest first. R is
the last revision handed out (clean) or reserved so far; G the generation of
the journal that belongs to the snapshot; B the history base: every change
with a revision above B is in the history lines. The journal:
``{"journal": G}``, then ``{"reserve": M}`` (revisions up to M may have been
handed out), ``{"k": KEY, "x": EXPIRES_MS_OR_NULL}`` (the key's expiry
deadline changed; null: permanent again), ``{"k": KEY, "v": VALUE}`` (an
acknowledged value, acknowledged before its file was written: the value's
compact JSON as stored, last on the line), ``{"k": KEY, "rm": true}`` (an
acknowledged removal) and ``{"k": KEY, "file": true}`` (the key's file holds
its value: its value records before this one no longer count). Records are
compact, non-ASCII stays UTF-8, and JSON escapes a newline in a key or a
value, so one record is one line.

Reading (see :func:`replay` for how the two files combine):

- Revisions, generations and deadlines are integers from 0 below 2**53 (not
  booleans), checksums below 2**32, keys valid per :func:`~objstore.keys.validate_key`.
  A line that is not one of the lines above is skipped.
- A key line whose revision is above the header's raises the counter to it and
  makes the state unclean (better a gap than a reused revision); a second line
  for one key replaces the first. History lines out of order, at or below the
  base, or above the counter are skipped.
- A value record's value must be JSON that reads back as the same compact
  bytes' value (it is compacted again); the last record of a key counts.
  Value records are replayed from any journal, stale or not (see :func:`replay`).
- Every line skipped or corrected is warned about with the file and line
  number, the first 10 of a file one by one, the rest counted in one warning.

Memory when reading is bounded: a line is read up to :data:`MAX_LINE_BYTES`
(64 KiB, beyond any real line: a key of 1,024 bytes is at most 6 KiB escaped)
and a longer one is skipped without being held; a file streams line by line
through a 64 KiB buffer, whatever its size; the history keeps its last
*history_limit* entries (:data:`HISTORY_LIMIT`), raising the base past the
ones it drops. What remains grows with the number of distinct keys named, as
the value files do.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO, Final, NamedTuple, TypeGuard

from . import jsonvalues
from .errors import ClientError
from .keys import validate_key

__all__ = [
    "HISTORY_LIMIT",
    "MAX_LINE_BYTES",
    "Deadline",
    "InFile",
    "JournalContent",
    "KeyState",
    "LineReader",
    "Reserve",
    "SavedState",
    "Value",
    "encode_records",
    "header_generation",
    "journal_header",
    "read_journal",
    "read_snapshot",
    "replay",
    "snapshot_lines",
]

logger = logging.getLogger("objstore.cache")

#: The longest line read from a state file; a longer one is garbage, skipped unread.
MAX_LINE_BYTES: Final = 64 * 1024
#: How many history entries a read keeps, the newest.
HISTORY_LIMIT: Final = 10_000
_MAX_WARNINGS: Final = 10
_SKIP_CHUNK: Final = 64 * 1024
_MAX_REV: Final = 2**53
_MAX_CRC: Final = 2**32
_decode = json.JSONDecoder().decode


def _decode_bytes(line: bytes) -> object:
    return _decode(line.decode("utf-8"))


#: The decoder tried first: orjson where installed (a snapshot of 100,000 keys is read
#: in half the time). It reads every line as json does, except integers past 64 bits
#: (floats) and NaN (refused, then read by json): values that no check lets through.
_fast_decode: Callable[[bytes], object] = _decode_bytes
with contextlib.suppress(ImportError):
    from orjson import loads as _fast_decode


def _key_json_stdlib(key: str) -> bytes:
    return json.dumps(key, ensure_ascii=False).encode("utf-8")


#: A key as a JSON string, UTF-8 (orjson where installed: a value record per acknowledged set).
_key_json: Callable[[str], bytes] = _key_json_stdlib
with contextlib.suppress(ImportError):
    from orjson import dumps as _key_json


@dataclass(slots=True)
class KeyState:
    """What the snapshot keeps of one key: its revision, expiry deadline, value checksum
    and time of last change.

    ``expires`` is in milliseconds since the epoch, None for a permanent key;
    ``crc`` is ``zlib.crc32`` of the value's JSON bytes at a clean stop, or None;
    ``changed`` the time by which its last change happened (ms since the epoch,
    see :mod:`objstore.changeclock`), None when not known.
    """

    rev: int
    expires: int | None = None
    crc: int | None = None
    changed: int | None = None


@dataclass(slots=True)
class SavedState:
    """The state the files hold: the counter, each key's state and the change history.

    ``history`` holds ``(revision, key, deleted)``, oldest first; every change
    with a revision above ``base`` is in it. ``generation`` is that of the
    snapshot read.
    """

    rev: int = 0
    clean: bool = True
    generation: int = 0
    base: int = 0
    keys: dict[str, KeyState] = field(default_factory=dict)
    history: list[tuple[int, str, bool]] = field(default_factory=list)
    #: Values the journal holds that their files may not: the last of each key named
    #: (compact JSON; None: the key was removed), to put in place of the files'.
    values: dict[str, bytes | None] = field(default_factory=dict)


class Reserve(NamedTuple):
    """A journal record: revisions up to ``upto`` may have been handed out."""

    upto: int


class Deadline(NamedTuple):
    """A journal record: the expiry deadline of ``key`` changed (None: permanent again)."""

    key: str
    expires: int | None


class Value(NamedTuple):
    """A journal record: ``key`` was set to ``data`` (compact JSON; None: removed), and
    somebody was told so before its file was written."""

    key: str
    data: bytes | None


class InFile(NamedTuple):
    """A journal record: the file of ``key`` holds its value, newer than its value records."""

    key: str


@dataclass(slots=True)
class JournalContent:
    """What a journal holds; ``generation`` is None when its first line is not a header."""

    generation: int | None
    #: The highest reservation.
    reserved: int = 0
    #: The last deadline of each key named.
    deadlines: dict[str, int | None] = field(default_factory=dict)
    #: Records after the header, readable or not.
    records: int = 0
    #: The last value record of each key named (None: removed).
    values: dict[str, bytes | None] = field(default_factory=dict)


class LineReader:
    """The numbered lines of *stream*, an overlong one as None; warns about lines of *name*."""

    def __init__(self, stream: BinaryIO, name: str) -> None:
        self._stream = stream
        self._name = name
        self._number = 0
        self._warned = 0
        #: Bytes read so far.
        self.size = 0

    def __iter__(self) -> Iterator[tuple[int, bytes | None]]:
        return self

    def __next__(self) -> tuple[int, bytes | None]:
        line = self._stream.readline(MAX_LINE_BYTES + 1)
        if not line:
            raise StopIteration
        self._number += 1
        self.size += len(line)
        if len(line) <= MAX_LINE_BYTES or line.endswith(b"\n"):
            return self._number, line
        while line and not line.endswith(b"\n"):  # skip the rest, never holding it
            line = self._stream.readline(_SKIP_CHUNK)
            self.size += len(line)
        return self._number, None

    def warn(self, number: int, what: str = "cannot be read; skipped it") -> None:
        """Warn that line *number* *what* (the first few one by one, see :meth:`finish`)."""
        self._warned += 1
        if self._warned <= _MAX_WARNINGS:
            logger.warning("%s: line %d %s", self._name, number, what)

    def finish(self) -> None:
        """Count the warnings not given one by one."""
        if self._warned > _MAX_WARNINGS:
            more = self._warned - _MAX_WARNINGS
            logger.warning("%s: %d more lines skipped or corrected", self._name, more)
        self._warned = 0


def read_snapshot(lines: LineReader, history_limit: int = HISTORY_LIMIT) -> SavedState | None:
    """The snapshot in *lines*; None if its first line is not a snapshot header."""
    first = next(lines, None)
    state = _parse_header(None if first is None else first[1])
    if state is None:
        return None
    history = _History(state, history_limit)
    for number, line in lines:
        record = _parse(line)
        if record is None:
            lines.warn(number)
        elif "r" in record:
            _read_key_line(state, record, lines, number)
        elif not history.add(record):
            lines.warn(number)
    history.finish()
    lines.finish()
    return state


def read_journal(lines: LineReader) -> JournalContent | None:
    """The journal in *lines*; None if it is empty (begun but never written)."""
    first = next(lines, None)
    if first is None:
        return None
    header = _parse(first[1])
    journal = JournalContent(header_generation(first[1]) if header is not None else None)
    if journal.generation is None:
        lines.warn(1, "is not a journal header; only the journal's reservations count")
        if header is not None and _read_record(journal, header, first[1]):
            journal.records += 1  # a record where the header should be
    for number, line in lines:
        journal.records += 1
        record = _parse(line)
        if record is None or not _read_record(journal, record, line):
            lines.warn(number)
    lines.finish()
    return journal


def replay(
    snapshot: SavedState | None,
    journal: JournalContent | None,
    *,
    snapshot_lost: bool = False,
    journal_lost: bool = False,
) -> SavedState:
    """The state that *snapshot* and *journal* (None: no such file) hold together.

    *snapshot_lost* and *journal_lost* say a file was there but set aside.

    - No files at all: a new folder (or one of the original server): revision
      0, clean.
    - A journal of the snapshot's generation is replayed: reservations raise
      the counter, deadlines set ``expires`` (a key without a snapshot line
      gets one with revision 0), and any record at all, even a garbled line,
      makes the state unclean, since the journal does not carry the keys' new
      revisions.
    - A journal of another generation is stale (a crash between writing a
      snapshot and beginning its journal): its deadlines are ignored, but its
      reservations still raise the counter (never lower: at most a gap), so
      that revisions never go back. So do those of a journal whose header
      cannot be read, whose records also make the state unclean.
    - A snapshot lost, or missing beside a journal: unclean, the counter at
      the highest reservation, no keys, no history. A journal lost: unclean.
    - The values of value records are taken from a journal of any generation: a
      stale journal is one whose next snapshot was written but whose own journal
      never began, and its values (acknowledged, maybe in no file yet) are then
      the newest of their keys.
    """
    reserved = 0 if journal is None else journal.reserved
    values = {} if journal is None else journal.values
    if snapshot is None:
        if journal is None and not (snapshot_lost or journal_lost):
            return SavedState()
        return SavedState(rev=reserved, clean=False, base=reserved, values=values)
    state = snapshot
    state.values = values
    state.rev = max(state.rev, reserved)
    if journal_lost:
        state.clean = False
    elif journal is None:
        pass
    elif journal.generation == state.generation:
        if journal.records:
            state.clean = False
        for key, expires in journal.deadlines.items():
            known = state.keys.get(key)
            if known is not None:
                known.expires = expires
            elif expires is not None:
                state.keys[key] = KeyState(0, expires)
    elif journal.generation is None and journal.records:
        state.clean = False
    return state


def header_generation(line: bytes | None) -> int | None:
    """The generation a snapshot header or a journal header names; None if *line* is neither."""
    header = _parse(line)
    if header is None:
        return None
    if "meta" in header:
        state = _parse_header(line)
        return None if state is None else state.generation
    generation = header.get("journal")
    return generation if _is_int(generation, _MAX_REV) and len(header) == 1 else None


def snapshot_lines(state: SavedState, generation: int) -> Iterator[bytes]:
    """The lines of the snapshot of *state*, its journal of *generation*."""
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
        yield _line(
            {"k": key, "r": known.rev, "x": known.expires, "c": known.crc, "t": known.changed}
        )
    for rev, key, deleted in state.history:
        yield _line({"h": rev, "k": key, "d": deleted})


def journal_header(generation: int) -> bytes:
    """The first line of the journal of *generation*."""
    return _line({"journal": generation})


def encode_records(records: Iterable[Reserve | Deadline | Value | InFile]) -> bytes:
    """The journal lines of *records*."""
    return b"".join(_encode_record(record) for record in records)


def _encode_record(record: Reserve | Deadline | Value | InFile) -> bytes:
    if isinstance(record, Value):
        if record.data is None:
            return _line({"k": record.key, "rm": True})
        # The value last, as it is: read back by its place on the line (_raw_value).
        return b'{"k":%s,"v":%s}\n' % (_encode_key(record.key), record.data)
    if isinstance(record, Reserve):
        return _line({"reserve": record.upto})
    if isinstance(record, InFile):
        return _line({"k": record.key, "file": True})
    assert isinstance(record, Deadline)
    return _line({"k": record.key, "x": record.expires})


def _encode_key(key: str) -> bytes:
    try:
        return _key_json(key)
    except TypeError:  # what orjson refuses (a lone surrogate): json's rules
        return _key_json_stdlib(key)


def _raw_value(line: bytes) -> bytes | None:
    """The compact value of the value record on *line*, None if it has none to read.

    The record is written as ``{"k":KEY,"v":VALUE}``: the first ``,"v":`` ends the key
    (a quote inside a JSON string is escaped), and the value runs to the last ``}``.
    """
    start = line.find(b',"v":')
    end = line.rstrip(b"\r\n")
    if not line.startswith(b'{"k":') or start < 0 or not end.endswith(b"}"):
        return None
    try:
        return jsonvalues.compact(end[start + 5 : -1])
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None


class _History:
    """Collects history lines in order, keeping the newest *limit* and moving the base."""

    def __init__(self, state: SavedState, limit: int) -> None:
        self._state = state
        self._limit = limit
        self._last = state.base

    def add(self, record: dict[str, object]) -> bool:
        rev, key, deleted = record.get("h"), _valid_key(record.get("k")), record.get("d")
        state = self._state
        if not (_is_int(rev, state.rev + 1) and rev > self._last and type(deleted) is bool):
            return False
        if key is None:
            return False
        self._last = rev
        state.history.append((rev, key, deleted))
        if len(state.history) > 2 * self._limit:
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
        value = _fast_decode(line)
    except ValueError:
        # What orjson refuses (NaN, invalid UTF-8) goes to json, which has the last word.
        try:
            value = _decode(line.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            return None
    return value if isinstance(value, dict) else None


def _is_int(value: object, below: int) -> TypeGuard[int]:
    """Whether *value* is an integer (not a bool) from 0 up to, not including, *below*."""
    return type(value) is int and 0 <= value < below


def _is_deadline(value: object) -> TypeGuard[int | None]:
    return value is None or _is_int(value, _MAX_REV)


def _is_checksum(value: object) -> TypeGuard[int | None]:
    return value is None or _is_int(value, _MAX_CRC)


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


def _read_key_line(
    state: SavedState, record: dict[str, object], lines: LineReader, number: int
) -> None:
    """Take the key line *record* (line *number*) into *state*, or warn and skip it."""
    rev, expires, crc = record.get("r"), record.get("x"), record.get("c")
    if not (_is_int(rev, _MAX_REV) and _is_deadline(expires) and _is_checksum(crc)):
        lines.warn(number)
        return
    valid = _valid_key(record.get("k"))
    if valid is None:
        lines.warn(number)
        return
    if rev > state.rev:
        lines.warn(number, f"has revision {rev}, past the counter {state.rev}; raised it")
        state.rev, state.clean = rev, False
    changed = record.get("t")
    if not _is_deadline(changed):
        lines.warn(number, "has an unreadable time of change; the key's time is not known")
        changed = None
    if valid in state.keys:
        lines.warn(number, "repeats a key; the last line counts")
    state.keys[valid] = KeyState(rev, expires, crc, changed)


def _read_record(journal: JournalContent, record: dict[str, object], line: bytes | None) -> bool:
    """Take a journal record (read from *line*) into *journal*; False if *record* is not
    a valid one."""
    if len(record) == 1 and "reserve" in record:
        upto = record["reserve"]
        if not _is_int(upto, _MAX_REV):
            return False
        journal.reserved = max(journal.reserved, upto)
        return True
    if len(record) == 2 and ("v" in record or "rm" in record or "file" in record):
        key = _valid_key(record.get("k"))
        if key is None or line is None:
            return False
        if "v" not in record:
            if record.get("rm", record.get("file")) is not True:
                return False
            if "rm" in record:
                journal.values[key] = None
            else:
                journal.values.pop(key, None)
            return True
        data = _raw_value(line)
        if data is None:
            return False
        journal.values[key] = data
        return True
    if len(record) != 2 or "x" not in record:
        return False
    key, expires = _valid_key(record.get("k")), record["x"]
    if key is None or not _is_deadline(expires):
        return False
    journal.deadlines[key] = expires
    return True


def _line(value: dict[str, object]) -> bytes:
    return (json.dumps(value, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")
