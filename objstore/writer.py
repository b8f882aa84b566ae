"""Write-behind persistence: values reach their files off the event loop, latest first.

Owns the queue between a set and its file, and the one thread that writes.
A set puts the key's latest value in a table and, if the thread is idle,
wakes it (no timer); the thread takes the whole table and writes it. Sets of
a key made while a batch is being written coalesce into one write of the
latest value. With a *gather* time, a batch that nobody waits for waits that
long from its first write before it is taken, so that a key set many times a
second (a player's position, a counter) is written a few times a second, not
every time: a set somebody waits for (:meth:`WriteBehind.write_and_wait`,
:meth:`~WriteBehind.after_written`, :meth:`~WriteBehind.flush`, closing) ends
the wait at once. The loop hears back only when somebody waits for a write
(``POST /set``, shutdown) or a write failed: a set costs a dictionary entry,
with no future and no task. A slow disk never stalls the loop.

A write of None removes the key's file instead (a deletion, an expired or
ephemeral key), with everything said here of writes: removals coalesce with
writes of the key, keep their order, are retried and reported the same way.

A failed write is retried, since its cause may pass (a full disk, a drive
that comes back): the setter hears of the failure once, and the key's latest
value is written again after 0.1 s, then after twice as long each time up to
5 s, until it is written or a newer set of the key replaces it. Closing tries
once more and returns the keys that still could not be written. The retry
table holds one reference per key to the value the store holds anyway.

Journal records (opaque objects, see :class:`JournalSink`) go to the sink
before any value file of the batch they came with: a file on disk never runs
ahead of its record (an expiry deadline, a revision). If the sink fails, that
batch's files are not written either; records and writes are kept and tried
again on the same schedule, and the batch's setters hear of the failure.
Records are never coalesced: every one is appended, in the order given.
Memory: while the sink fails, its records stay here, one per record given,
until a record that folds all those before it (a snapshot: ``folds=True``)
replaces them; the owner of the sink bounds them so, watching
:attr:`WriteBehind.unjournaled`.

Acknowledged from the journal (with a *value_record* maker): a write somebody
waits for (:meth:`WriteBehind.write_and_wait`) of a value up to
:data:`~objstore.valuejournal.JOURNALED_VALUE_LIMIT` bytes also gives a value
record, and its waiter is told once that record is appended (flushed with
``sync``): N waiters share one append (group commit), and the file itself is
written later with the gathered ones, not waited for: within *journaled_gather*
seconds, or the *gather* time once a plain write joins them. While the thread
writes a long batch of files, the value records given meanwhile are appended
between its files (at most every :data:`APPEND_BETWEEN_FILES` seconds), so that
acknowledgements never wait for a batch of files. Which later values need a
record before their files, which keys a batch settles, and what a fold carries
into the new journal is :class:`~objstore.valuejournal.ValueJournal`'s to say.

With ``sync=True`` (``--durability sync``) a batch is durable before anyone
hears of it: the journal's records are flushed by the sink, each file by the
cache folder as it is written, then the folder's names once for the whole
batch (group commit: N concurrent writers share one folder flush). Waiters,
failure callbacks and :meth:`WriteBehind.after_written` callbacks are told
only after that. A folder flush that fails fails every write of the batch.

A cache folder removed while the server runs is created again by the
folder on the next write (see :mod:`objstore.cachefolder`); the writer then
calls its *on_restored* on the loop, so that the owner writes everything again.

Counted for monitoring, off the set's path: the failed writes (on the writer
thread), whether writes are failing now (:attr:`WriteBehind.failure`), and how
long each batch took from its first write being queued to its last file
written (:meth:`WriteBehind.latency`, a histogram of fixed buckets: the longest
wait of any write in the batch). A set pays one clock read when it starts a
batch, none when it joins one.

Knows nothing of the wire protocol, subscribers or what records mean; the
file format belongs to :class:`~objstore.cachefolder.CacheFolder`.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import itertools
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any, Protocol

from .cachefolder import CacheFolder
from .errors import ObjstoreError, StorageError
from .valuejournal import Settle, ValueJournal, fits_a_record

__all__ = [
    "LATENCY_BUCKETS",
    "MAX_BATCH_FILES",
    "FailureCallback",
    "JournalSink",
    "WriteBehind",
    "WriteResult",
]

logger = logging.getLogger("objstore.cache")

#: The outcome of a write: None when it is done (the file holds the value), else the
#: error (a storage error; with a shared store also a conflict or a refused write).
WriteResult = asyncio.Future[ObjstoreError | None]
#: Told, with the error (already logged), when a value it set could not be written.
FailureCallback = Callable[[StorageError], None]

#: Seconds before the first retry of a failed write, doubled after each failed retry.
FIRST_RETRY_DELAY = 0.1
#: The longest wait between two retries.
MAX_RETRY_DELAY = 5.0
#: Upper bounds (seconds) of the buckets of :meth:`WriteBehind.latency`; +Inf follows.
#: The most files a batch writes when nothing needs them all at once (see _take_batch).
MAX_BATCH_FILES = 256
#: While writing files, value records waiting are appended at most this often (seconds).
APPEND_BETWEEN_FILES = 0.0005
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class JournalSink(Protocol):
    """Where journal records go, on the writer thread, before the value files of their batch."""

    def append(self, records: Sequence[Any], *, lazy: bool = False) -> None:
        """Append *records*, in order, before the value files written next; block until
        done. Raise OSError or StorageError on failure: all of them are given again
        on the next try, so a record may be appended twice (replaying one twice must
        be harmless). *lazy*: losing these records is harmless; they need not be
        flushed to disk even where every append is."""


#: A journal record and the key it is about, if any.
_Record = tuple[object, str | None]


class _Pending:
    """A write waiting to start: the latest data of a key (None: remove its file) and who
    wants to know."""

    __slots__ = ("data", "on_failure", "waiters")

    def __init__(self, data: bytes | None, on_failure: FailureCallback | None) -> None:
        self.data = data
        self.on_failure = on_failure
        self.waiters: list[WriteResult] | None = None


class WriteBehind:
    """Writes files on a thread of its own, coalescing repeated keys.

    Ordering holds per key: a write never overtakes an earlier one of the same
    key, and the last value set is the last one written. Call every method
    from the event loop's thread.
    """

    def __init__(
        self,
        folder: CacheFolder,
        journal: JournalSink | None = None,
        *,
        sync: bool = False,
        gather: float = 0.0,
        on_restored: Callable[[], object] | None = None,
        value_record: Callable[[str, bytes | None], object] | None = None,
        file_record: Callable[[str], object] | None = None,
        journaled_gather: float | None = None,
    ) -> None:
        """*journal* receives the records given to :meth:`journal`; without one, giving
        a record is an error. *sync*: flush the folder to disk after each batch, before
        telling anyone (its files are flushed by the folder). *gather*: seconds a batch
        nobody waits for may wait for more writes, from its first (see the module's
        docstring). *on_restored* is called on the loop when the folder had been removed
        and was created again. *value_record* makes the journal record of a value (or of a
        removal: None) acknowledged from the journal; without it, a waiter waits for the
        file. *file_record* makes the record that a key's file holds its value (needed
        with *value_record*). *journaled_gather*: seconds a batch may gather while every
        value in it is in the journal (default: *gather*)."""
        self._folder = folder
        #: The values acknowledged from the journal (None: every waiter waits for its file).
        self._values: ValueJournal | None = None
        if value_record is not None and journal is not None:
            if file_record is None:
                raise ValueError("value_record needs a file_record")
            self._values = ValueJournal(value_record, file_record)
        #: Waiters of the value records given since the last batch began.
        self._record_waiters: list[WriteResult] = []
        self._gather = gather
        self._journaled_gather = gather if journaled_gather is None else journaled_gather
        #: A pending write was given by write(): its file is not in the journal.
        self._plain_pending = False
        #: The thread waits for more writes before taking a batch (see _gather_writes).
        self._gathering = False
        #: A write of the pending batch has a waiter (write_and_wait).
        self._awaited = False
        self._sink = journal
        self._sync = sync
        self._on_restored = on_restored
        self._restored_seen = folder.restored
        # Guards everything below it; held for dictionary swaps, never for I/O.
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._pending: dict[str, _Pending] = {}
        #: Journal records not handed to the writer thread yet, with their keys.
        self._records: list[_Record] = []
        #: The thread is between taking a batch and finishing it.
        self._writing = False
        self._closing = False
        #: Waiting until nothing is pending or being written.
        self._idle_waiters: list[asyncio.Future[None]] = []
        #: Called on the loop once the writes scheduled before them are tried, in order;
        #: by key, a later callback of a key replacing the earlier one (see after_written).
        self._after: dict[Hashable, Callable[[], object]] = {}
        #: Records being appended now that are in neither list (for journal_backlog).
        self._appending = 0
        #: Reports with callbacks of :meth:`after_written` sent to the loop, not run yet.
        self._reports_due = 0
        #: A record that folds those before it was given: drop the unjournaled ones.
        self._folded = False
        #: The latest data of keys whose write failed, to be written again.
        self._failed: dict[str, bytes | None] = {}
        #: Records whose append failed, in order: appended before anything else.
        self._unjournaled: list[_Record] = []
        self._retry_delay = FIRST_RETRY_DELAY
        self._retry_at = 0.0
        #: Keys that could not be written by the time of close().
        self._unsaved: list[str] = []
        #: Keys whose failure was logged and that were not written since (writer thread).
        self._logged_failures: set[str] = set()
        #: The journal's failure was logged and no append worked since (writer thread).
        self._journal_failing = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        #: When the first write of the next batch was queued (time.monotonic()).
        self._queued_at = 0.0
        #: Batches by latency bucket (the last is +Inf), and their latencies' sum.
        self._latency_counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self._latency_sum = 0.0
        #: The error of the latest failed write or append, while writes are failing.
        self._failure: StorageError | None = None
        #: Writes of a key's file, and appends of journal records, that failed (retries
        #: included); bumped by the writer thread only.
        self.failures = 0

    def write(
        self, key: str, data: bytes | None, on_failure: FailureCallback | None = None
    ) -> None:
        """Schedule *data* to become the file of *key*; None removes the file.

        If the write fails, the error is logged, *on_failure* is called with
        it, and the write is retried (see the module's docstring). A later
        write of the same key that comes before this one started replaces it
        (and its *on_failure*): only the latest value is written.
        """
        with self._lock:
            self._put(key, data, on_failure)
            if not self._plain_pending:
                self._plain_pending = True
                if self._gathering:
                    self._wake.notify()  # the batch now waits for the shorter time

    def write_and_wait(
        self, key: str, data: bytes | None, *, in_file: bool = False
    ) -> WriteResult:
        """Like :meth:`write`, and return a future of the outcome.

        The future never raises: it resolves to None once the value (or a later
        one of the same key) is on disk, or the file removed, or to the
        :class:`~objstore.errors.StorageError` that prevented it. On disk means
        in the journal for a value acknowledged from it (see the module's
        docstring and :meth:`journals`), whose file is then written like that of
        :meth:`write`; *in_file* waits for the file itself.
        """
        result: WriteResult = asyncio.get_running_loop().create_future()
        with self._lock:
            entry = self._put(key, data, None)
            values = self._values
            if values is not None and not in_file and fits_a_record(data):
                self._records.append((values.given(key, data), key))
                waiters = self._record_waiters
                waiters.append(result)
                if self._gathering and len(waiters) == 1:
                    self._wake.notify()  # the records go now; the files keep gathering
                return result
            if entry.waiters is None:
                entry.waiters = [result]
            else:
                entry.waiters.append(result)
            self._awaited = True
            if self._gathering:
                self._wake.notify()  # somebody waits: the batch goes now
        return result

    def _put(self, key: str, data: bytes | None, on_failure: FailureCallback | None) -> _Pending:
        if self._failed:
            self._failed.pop(key, None)  # the newer value replaces the one to retry
        pending = self._pending
        entry = pending.get(key)
        if entry is not None:
            entry.data = data
            entry.on_failure = on_failure
            return entry
        entry = pending[key] = _Pending(data, on_failure)
        if len(pending) == 1:
            self._queued_at = time.monotonic()  # the batch's first write
            if not self._writing:
                if self._thread is None:
                    self._start()
                self._wake.notify()  # it is idle, waiting for work
        return entry

    def journal(self, record: object, key: str | None = None, *, folds: bool = False) -> None:
        """Schedule *record* to be appended to the journal before the file of any write
        scheduled after this call: give a change's record first, then its write.

        *key* names the key the record is about, if any: if the record still cannot
        be appended at :meth:`close`, that key is among those it returns. Records are
        appended in the order given, each once (again after a failed append, which
        may have written part of them). *folds*: the record says all that every
        record before it says (a snapshot), so those not appended yet are dropped.
        """
        if self._sink is None:
            raise RuntimeError("this writer was made without a journal")
        with self._lock:
            records = self._records
            if folds:
                records.clear()
                self._folded = True  # and those whose append failed, at the next batch
            records.append((record, key))
            if len(records) == 1 and not self._pending and not self._writing:
                if self._thread is None:
                    self._start()
                self._wake.notify()  # it is idle, waiting for work

    def after_written(self, callback: Callable[[], object], key: Hashable | None = None) -> None:
        """Call *callback* on the loop once every write and record scheduled so far has
        been tried: written (flushed to disk with ``sync``) or failed. Callbacks run in
        the order given; at once when nothing is pending or being written.

        With *key*, a callback of the same key still waiting for its batch to start is
        dropped, and this one takes its turn at the end: the latest update of a key
        replaces one not sent yet, so that, however long the disk takes, at most one
        callback per key waits for the next batch (and one per key for the batch being
        written).
        """
        with self._lock:
            if self._pending or self._records or self._writing or self._after or self._reports_due:
                after = self._after
                if key is None:
                    key = object()  # one of its own
                elif key in after:
                    del after[key]  # to the end: the order of the calls is kept
                after[key] = callback
                if self._gathering:
                    self._wake.notify()  # somebody waits: the batch goes now
                return
        callback()

    @property
    def pending(self) -> int:
        """Number of keys waiting for their write to start."""
        with self._lock:
            return len(self._pending)

    @property
    def failing(self) -> int:
        """Number of keys whose latest write failed and waits for a retry."""
        with self._lock:
            return len(self._failed)

    @property
    def unjournaled(self) -> int:
        """Number of journal records whose append failed and waits for a retry."""
        with self._lock:
            return len(self._unjournaled)

    @property
    def journal_backlog(self) -> int:
        """Number of journal records not appended yet: given since the last batch began,
        being appended, or waiting for a retry of a failed append."""
        with self._lock:
            return len(self._records) + len(self._unjournaled) + self._appending

    @property
    def failure(self) -> StorageError | None:
        """The error of the latest failed write, while writes fail: from a failure until a
        batch is written with none and no write waits for a retry; else None."""
        with self._lock:
            return self._failure

    def latency(self) -> tuple[list[int], float]:
        """The batches written so far by latency, cumulative per bucket of
        :data:`LATENCY_BUCKETS` then +Inf (the total), and the sum of their latencies
        (seconds). A batch's latency runs from its first write being queued to its
        last file written (or failing)."""
        with self._lock:
            counts = list(self._latency_counts)
            total = self._latency_sum
        running = 0
        for index, count in enumerate(counts):
            running += count
            counts[index] = running
        return counts, total

    async def flush(self) -> None:
        """Wait until every write and journal record scheduled so far has been tried."""
        with self._lock:
            if not self._pending and not self._records and not self._writing:
                return
            idle = asyncio.get_running_loop().create_future()
            self._idle_waiters.append(idle)
            if self._gathering:
                self._wake.notify()  # somebody waits: the batch goes now
        await idle

    async def close(self) -> list[str]:
        """Finish pending writes, retry failed ones once more, stop the thread and close
        the folder's files; return the keys whose latest value could not be written
        (or whose journal record could not be appended)."""
        await self.flush()
        thread = self._thread
        if thread is not None:
            with self._lock:
                self._closing = True
                self._wake.notify()
            await asyncio.to_thread(thread.join)
            self._thread = None
        self._folder.close()
        unsaved, self._unsaved = self._unsaved, []
        return unsaved

    def _start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._closing = False
        # A daemon, so that an interpreter stopping without close() is not held up;
        # the server always closes it, which writes what is pending.
        self._thread = threading.Thread(target=self._run, name="objstore-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        _yield_to_the_loop()
        lock = self._lock
        while True:
            with lock:
                work = self._wait_for_work()
                if work is None:  # closing, and nothing pending
                    last, self._failed = self._failed, {}
                    last_records, self._unjournaled = self._unjournaled, []
                    break
                retry, retrying = work
                if self._pending and not retrying and (self._gather or self._journaled_gather):
                    self._gather_writes()
                batch, records, waiters, settle = self._take_batch(retry, retrying)
                after = list(self._after.values()) if self._after else []
                self._after = {}
                queued_at = self._queued_at
                # Taken records are out of both lists until the append is done.
                self._appending = 0 if records is self._unjournaled else len(records)
                self._writing = True
            journal_error, errors, still_failing = self._write_batch(
                batch, retry, records, waiters, settle
            )
            with lock:
                self._writing = False
                self._appending = 0
                unjournaled = records if journal_error is not None else []
                self._keep_failed(
                    batch, errors, retry, still_failing, unjournaled=unjournaled, retrying=retrying
                )
                if journal_error is not None or errors or still_failing:
                    self._failure = journal_error or next(iter((errors or still_failing).values()))
                elif not self._failed and not self._unjournaled:
                    self._failure = None
                if batch:
                    self._observe(time.monotonic() - queued_at)
                idle = self._idle_waiters if not self._pending and not self._records else []
                if idle:
                    self._idle_waiters = []
                if self._after and not self._pending and not self._records:
                    # Asked for while this batch was written: it covers them.
                    after += self._after.values()
                    self._after = {}
                if after:
                    self._reports_due += 1
                restored = self._folder.restored != self._restored_seen
                self._restored_seen = self._folder.restored
            if retry and not still_failing:
                logger.info("saved %d keys whose earlier writes had failed", len(retry))
            if errors or idle or after or restored or any(e.waiters for e in batch.values()):
                assert self._loop is not None
                self._loop.call_soon_threadsafe(self._report, batch, errors, idle, after, restored)
            # Not kept while waiting for the next batch: a key string and an entry
            # per key written (measured 8 to 17 bytes per stored key).
            del batch, errors, idle, retry, still_failing, records, unjournaled, after, waiters
            del settle
        # One last try before stopping; close() reports what still fails.
        self._unsaved = self._last_try(last, last_records)

    def _write_batch(
        self,
        batch: dict[str, _Pending],
        retry: dict[str, bytes | None],
        records: list[_Record],
        waiters: list[WriteResult],
        settle: list[Settle],
    ) -> tuple[StorageError | None, dict[str, StorageError], dict[str, StorageError]]:
        """Append *records*, tell the *waiters* of their value records, then write the
        batch and the retries (and flush the folder with ``sync``), then settle the keys
        of *settle* (see _settle); return the journal's error and the errors of the
        writes and retries."""
        journal_error = self._append(records) if records else None
        if waiters:
            assert self._loop is not None
            self._loop.call_soon_threadsafe(_tell, waiters, journal_error)
        if journal_error is not None:  # no file may run ahead of its record: none is written
            return (
                journal_error,
                dict.fromkeys(batch, journal_error),
                dict.fromkeys(retry, journal_error),
            )
        between = self._append_between if self._values is not None else None
        errors = self._write_all(((key, entry.data) for key, entry in batch.items()), between)
        still_failing = self._write_all(retry.items(), between) if retry else {}
        if self._sync and (batch or retry):
            self._flush_folder(batch, errors, retry, still_failing)
        if settle:
            self._settle(settle, errors, still_failing)
        return None, errors, still_failing

    def _settle(
        self,
        settle: list[Settle],
        errors: dict[str, StorageError],
        still_failing: dict[str, StorageError],
    ) -> None:
        """After a batch's files: append that the files of the keys to settle hold their
        values (see ValueJournal.to_settle), and forget those keys' records.

        If that append fails, a write whose data had no record (too large) failed too:
        until it is settled, a replay would bring back its key's older value.
        """
        values = self._values
        assert values is not None
        with self._lock:
            keys = values.to_settle(settle, errors, still_failing)
        if not keys:
            return
        # Lost, such a record only brings back the value the file holds; one of a value
        # too large for a record must reach the disk like any other.
        lazy = all(data is recorded for _, data, recorded, _ in keys)
        error = self._append(list(values.file_records(keys)), lazy=lazy)
        with self._lock:
            if error is None:
                values.settled(keys)
                return
            for key, data, recorded, in_batch in keys:
                if data is not recorded:
                    (errors if in_batch else still_failing)[key] = error

    def _gather_writes(self) -> None:
        """With the lock held: let more writes join the pending batch, for up to the
        gathering time since its first write, unless somebody waits or it is closing."""
        self._gathering = True
        try:
            while not (self._files_waited_for() or self._record_waiters):
                delay = self._gather_deadline() - time.monotonic()
                if delay <= 0:
                    break
                self._wake.wait(delay)
        finally:
            self._gathering = False

    def _take_batch(
        self, retry: dict[str, bytes | None], retrying: bool
    ) -> tuple[dict[str, _Pending], list[_Record], list[WriteResult], list[Settle]]:
        """With the lock held: the writes, records and value records' waiters of the next
        batch, and the keys to settle after it (see ValueJournal.before_files).

        The writes stay pending (gathering) when value records alone can go. Unless a
        fold, a flush, a callback of after_written or closing needs them all, writes
        somebody waits for go first, alone, and a batch is at most
        :data:`MAX_BATCH_FILES` files (the rest go next): a ``POST /set`` never waits
        for more than one such batch of other keys' gathered files.
        """
        folded = self._folded
        pending = self._pending
        if not retrying and not folded and self._journal_only():
            batch: dict[str, _Pending] = {}
        elif (
            retrying
            or folded
            or self._after
            or self._idle_waiters
            or self._closing
            or len(pending) <= MAX_BATCH_FILES
        ):
            batch, self._pending = pending, {}
            self._awaited = self._plain_pending = False
        elif self._awaited:
            batch = {key: entry for key, entry in pending.items() if entry.waiters}
            for key in batch:
                del pending[key]
            self._awaited = False
        else:
            entries = iter(pending.items())
            batch = dict(itertools.islice(entries, MAX_BATCH_FILES))
            self._pending = dict(entries)
        records = self._take_records()
        settle: list[Settle] = []
        values = self._values
        if values and (batch or retry or folded):
            assert values is not None
            newer, settle = values.before_files(
                ((key, entry.data) for key, entry in batch.items()),
                retry.items(),
                self._failed.items() if folded else (),
                folded=folded,
            )
            if newer:
                records = [*records, *newer]
        waiters, self._record_waiters = self._record_waiters, []
        return batch, records, waiters, settle

    def _gather_deadline(self) -> float:
        """With the lock held: when the pending batch's files are to be written: the
        gathering time after its first write, or the longer one while every pending
        value is in the journal (none of them was given by :meth:`write`)."""
        gather = self._gather if self._plain_pending else self._journaled_gather
        return self._queued_at + gather

    def _journal_only(self) -> bool:
        """With the lock held: whether this batch appends value records only, leaving the
        pending files to gather (nothing else waits, and the gathering time is not over)."""
        return bool(
            self._record_waiters
            and not self._files_waited_for()
            and time.monotonic() < self._gather_deadline()
        )

    def _files_waited_for(self) -> bool:
        """With the lock held: whether somebody waits for pending files: a write in its
        file, a flush, a callback of after_written, or closing."""
        return bool(self._closing or self._awaited or self._after or self._idle_waiters)

    def _wait_for_work(self) -> tuple[dict[str, bytes | None], bool] | None:
        """With the lock held: wait for sets, records or a retry; return the writes to
        retry now and whether this is a retry (of them or of records), or None when
        closing with nothing pending."""
        while not self._pending and not self._records:
            if self._closing:
                return None
            if not self._failed and not self._unjournaled:
                self._wake.wait()
                continue
            delay = self._retry_at - time.monotonic()
            if delay <= 0:
                break
            self._wake.wait(delay)
        if not (self._failed or self._unjournaled) or time.monotonic() < self._retry_at:
            return {}, False
        retry, self._failed = self._failed, {}
        return retry, True

    def _take_records(self) -> list[_Record]:
        """With the lock held: the records to append before this batch's files, in order:
        those whose append failed, then the new ones."""
        records = self._records
        if records:
            self._records = []
        if self._folded:  # the first of the new records holds all they said
            self._folded = False
            self._unjournaled = []
        unjournaled = self._unjournaled
        if unjournaled:
            unjournaled.extend(records)  # in place: it may be long after a long failure
            return unjournaled
        return records

    def _keep_failed(
        self,
        batch: dict[str, _Pending],
        errors: dict[str, StorageError],
        retry: dict[str, bytes | None],
        still_failing: dict[str, StorageError],
        *,
        unjournaled: list[_Record],
        retrying: bool,
    ) -> None:
        """With the lock held: remember what failed (the records whose append failed, and
        the writes unless a newer set replaced them), and when to try again."""
        failed = self._failed
        was_failing = bool(failed or self._unjournaled)
        self._unjournaled = unjournaled
        if retrying:
            self._retry_delay = (
                min(self._retry_delay * 2, MAX_RETRY_DELAY)
                if still_failing or unjournaled
                else FIRST_RETRY_DELAY
            )
        for key in errors:
            if key not in self._pending:
                failed[key] = batch[key].data
        for key in still_failing:
            if key not in self._pending:
                failed[key] = retry[key]
        if (failed or unjournaled) and (retrying or not was_failing):
            self._retry_at = time.monotonic() + self._retry_delay

    def _flush_folder(
        self,
        batch: dict[str, _Pending],
        errors: dict[str, StorageError],
        retry: dict[str, bytes | None],
        still_failing: dict[str, StorageError],
    ) -> None:
        """Flush the folder's names once for the whole batch; if that fails, every write
        of it that seemed to work failed (added to *errors* and *still_failing*)."""
        try:
            self._folder.sync()
        except StorageError as error:
            failed = [key for key in batch if key not in errors]
            failed_retries = [key for key in retry if key not in still_failing]
            self.failures += 1
            logger.error("%s; will try again", error)
            errors.update(dict.fromkeys(failed, error))
            still_failing.update(dict.fromkeys(failed_retries, error))

    def _observe(self, latency: float) -> None:
        """With the lock held: count a batch of *latency* seconds in its bucket."""
        self._latency_counts[bisect.bisect_left(LATENCY_BUCKETS, latency)] += 1
        self._latency_sum += latency

    def _append(self, records: list[_Record], *, lazy: bool = False) -> StorageError | None:
        """Append *records* to the journal (*lazy*: see JournalSink.append); return the
        error, logged once at ERROR until an append works again."""
        assert self._sink is not None
        try:
            self._sink.append([record for record, _ in records], lazy=lazy)
        except StorageError as exc:
            error = exc
        except OSError as exc:
            where = f" {exc.filename}" if exc.filename else ""
            error = StorageError(f"could not write the journal{where}: {exc.strerror or exc}")
        except Exception as exc:  # a bug in the sink must not stop the writer
            logger.exception("unexpected error while writing the journal")
            error = StorageError(f"could not write the journal: {exc}")
        else:
            if self._journal_failing:
                self._journal_failing = False
                logger.info("the journal is written again")
            return None
        self.failures += 1
        if self._journal_failing:
            logger.debug("%s", error)
        else:
            self._journal_failing = True
            logger.error("%s; will try again", error)
        return error

    def _last_try(self, last: dict[str, bytes | None], records: list[_Record]) -> list[str]:
        """Append the records and write the writes that failed so far, once; return the
        keys that still fail."""
        if records and self._append(records) is not None:
            keys = dict.fromkeys(last)
            keys.update((key, None) for _, key in records if key is not None)
            return list(keys)
        return list(self._write_all(last.items())) if last else []

    def _append_between(self) -> None:
        """Between two files of a batch: append the records given since it began, if a
        value record's waiter is among them (none waits for the batch's files to be done:
        records may always go before the files of their changes)."""
        with self._lock:
            if not self._record_waiters or self._folded or self._unjournaled:
                return  # a fold or a failing journal: the next batch sees to them
            records, self._records = self._records, []
            waiters, self._record_waiters = self._record_waiters, []
            self._appending += len(records)
        error = self._append(records) if records else None
        assert self._loop is not None
        self._loop.call_soon_threadsafe(_tell, waiters, error)
        with self._lock:
            self._appending -= len(records)
            if error is not None:
                self._records[:0] = records  # first again, with the next batch

    def _write_all(
        self,
        writes: Iterable[tuple[str, bytes | None]],
        between: Callable[[], None] | None = None,
    ) -> dict[str, StorageError]:
        """Write each key's data, or remove its file for None; return the errors. A key's
        failure is logged once, at ERROR, until the key is written: a key set 30 times a
        second on a full disk does not fill the log. *between* is called between files
        when value records wait (see APPEND_BETWEEN_FILES)."""
        errors: dict[str, StorageError] = {}
        logged = self._logged_failures
        folder = self._folder
        next_check = time.monotonic() + APPEND_BETWEEN_FILES
        for key, data in writes:
            if between is not None and self._record_waiters:
                now = time.monotonic()
                if now >= next_check:
                    next_check = now + APPEND_BETWEEN_FILES
                    between()
            try:
                if data is None:
                    folder.remove(key)
                else:
                    folder.write(key, data)
            except StorageError as exc:
                error = exc
            except Exception as exc:  # a bug in one write must not stop the others
                logger.exception("unexpected error while saving a key")
                what = "save" if data is not None else "remove"
                error = StorageError(f"could not {what} the key: {exc}")
            else:
                if logged:
                    logged.discard(key)
                continue
            self.failures += 1
            if key in logged:
                logger.debug("%s", error)
            else:
                logged.add(key)
                logger.error("%s; will try again", error)
            errors[key] = error
        return errors

    def _report(
        self,
        batch: dict[str, _Pending],
        errors: dict[str, StorageError],
        idle: list[asyncio.Future[None]],
        after: list[Callable[[], object]],
        restored: bool = False,
    ) -> None:
        """On the loop: tell the owner if the folder was made again (before anyone hears
        of this batch, so that a flush waits for what it writes again), run the
        callbacks waiting for this batch, then tell failure callbacks and waiters how
        their writes went."""
        if restored and self._on_restored is not None:
            self._on_restored()
        if after:
            for callback in after:
                callback()
            with self._lock:
                self._reports_due -= 1
                later: list[Callable[[], object]] = []
                if not (self._reports_due or self._pending or self._records or self._writing):
                    # Asked for after this batch ended, with nothing to write since.
                    later = list(self._after.values())
                    self._after = {}
            for callback in later:
                callback()
        for key, error in errors.items():
            on_failure = batch[key].on_failure
            if on_failure is not None:
                on_failure(error)
        for key, entry in batch.items():
            for result in entry.waiters or ():
                if not result.done():
                    result.set_result(errors.get(key))
        for waiter in idle:
            if not waiter.done():
                waiter.set_result(None)


def _tell(waiters: list[WriteResult], error: StorageError | None) -> None:
    """On the loop: tell *waiters* how the append of their value records went."""
    for result in waiters:
        if not result.done():
            result.set_result(error)


def _yield_to_the_loop() -> None:
    """Lower the writer thread's priority (Linux), so that it runs when the loop is idle.

    Both threads share the CPU the process gets; a file write preempting the
    loop shows as latency for every subscriber. At a lower priority the thread
    still writes as soon as the loop waits, and sets made meanwhile coalesce
    into the latest value per key.
    """
    if sys.platform == "linux":
        # Where this is not allowed, the writes just compete as equals.
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
