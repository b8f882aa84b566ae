"""Which values the journal holds that their files may not: the bookkeeping of writes
acknowledged from the journal.

Owns the table of keys given a value record since the journal was last folded, each
with the data of its latest record, and the decisions taken from it:

- a write somebody waits for, of a value up to :data:`JOURNALED_VALUE_LIMIT` bytes,
  gets a value record (:meth:`ValueJournal.given`);
- before a batch's files are written, a key of the table whose file is about to get
  other data gets a record of that data first, so that the journal never holds a value
  older than the file (a replay would bring it back); data too large for a record gets
  none (:meth:`ValueJournal.before_files`);
- after a fold, every key of the table whose file is not written yet gets a record in
  the new journal, which holds only what is carried into it;
- once a batch's files are written, a record that the file holds the key's value ends
  what its value records say, for each key whose latest record did not change since the
  batch was taken (:meth:`ValueJournal.to_settle`, :meth:`ValueJournal.settled`), so
  that a replay brings back only what files lack.

Pure: no thread, no file; :class:`~objstore.writer.WriteBehind` calls it with its lock
held and appends the records it returns. Knows nothing of what records look like: the
two functions it is given make them.

Memory: one entry per key given a value record since the last fold (or still to be
settled), naming the value the store holds, or one it held a moment ago.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

__all__ = ["JOURNALED_VALUE_LIMIT", "Settle", "ValueJournal", "fits_a_record"]

#: The largest value (bytes) acknowledged from the journal; a larger one waits for its file
#: (a journal line stays well within what a read of the journal takes).
JOURNALED_VALUE_LIMIT = 32 * 1024

#: A key written by a batch while it had value records: the data written, the data of its
#: latest record when the batch was taken, and whether it was in the batch (else a retry).
Settle = tuple[str, bytes | None, bytes | None, bool]
#: A journal record and the key it is about.
Record = tuple[object, str]


def fits_a_record(data: bytes | None) -> bool:
    """Whether *data* (None: a removal) is acknowledged from the journal."""
    return data is None or len(data) <= JOURNALED_VALUE_LIMIT


class ValueJournal:
    """The keys with value records in the journal, and the data of each one's latest."""

    __slots__ = ("_latest", "_make_file_record", "_make_value_record")

    def __init__(
        self,
        value_record: Callable[[str, bytes | None], object],
        file_record: Callable[[str], object],
    ) -> None:
        """*value_record* makes the record of a key's value (None: its removal);
        *file_record* the record that a key's file holds its value."""
        self._make_value_record = value_record
        self._make_file_record = file_record
        self._latest: dict[str, bytes | None] = {}

    def __bool__(self) -> bool:
        return bool(self._latest)

    def given(self, key: str, data: bytes | None) -> object:
        """The value record of *data*, acknowledged for *key*: its latest from now on."""
        self._latest[key] = data
        return self._make_value_record(key, data)

    def before_files(
        self,
        batch: Iterable[tuple[str, bytes | None]],
        retry: Iterable[tuple[str, bytes | None]],
        failed: Iterable[tuple[str, bytes | None]],
        *,
        folded: bool,
    ) -> tuple[list[Record], list[Settle]]:
        """The records to append before the files of *batch* and *retry* (key, data), and
        the keys to settle after them.

        *folded*: the journal is being folded into a snapshot; the records carry every
        key of the table whose file is not written yet, *failed* too (writes waiting for
        a retry): the latest data, or that of the latest record if too large.
        """
        latest = self._latest
        if folded:
            self._latest = {}
        records: list[Record] = []
        settle: list[Settle] = []
        for writes, in_batch in ((batch, True), (retry, False), (failed, None)):
            for key, data in writes:
                if key not in latest:
                    continue
                recorded = latest[key]
                if folded or recorded is not data:
                    if fits_a_record(data):
                        recorded = data
                        records.append((self._make_value_record(key, data), key))
                    elif folded:
                        records.append((self._make_value_record(key, recorded), key))
                    self._latest[key] = recorded
                if in_batch is not None:
                    settle.append((key, data, recorded, in_batch))
        return records, settle

    def to_settle(
        self,
        settle: Iterable[Settle],
        errors: Mapping[str, object],
        still_failing: Mapping[str, object],
    ) -> list[Settle]:
        """Those of *settle* whose files were written (not in *errors*, the batch's failed
        writes, or *still_failing*, the failed retries) and whose latest record is still
        the one they had when the batch was taken: no newer value was given since, so a
        record that the file holds the value may be appended (any newer record is
        appended after it)."""
        latest = self._latest
        return [
            item
            for item in settle
            if item[0] not in (errors if item[3] else still_failing)
            and item[0] in latest
            and latest[item[0]] is item[2]
        ]

    def file_records(self, settled: Iterable[Settle]) -> list[Record]:
        """The records that the files of *settled* hold their keys' values."""
        return [(self._make_file_record(key), key) for key, _, _, _ in settled]

    def settled(self, settled: Iterable[Settle]) -> None:
        """Forget the keys of *settled*, whose file records were appended, unless a newer
        value record of the key was given meanwhile."""
        latest = self._latest
        for key, _, recorded, _ in settled:
            if key in latest and latest[key] is recorded:
                del latest[key]
