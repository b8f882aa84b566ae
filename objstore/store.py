"""The file store: the key space in memory, every change persisted to the cache folder.

Owns the promise that every change reaches disk, and the state beside the
values: revisions across restarts, expiry deadlines and ephemeral keys. Values
go to one JSON file per key (:mod:`objstore.cachefolder`, written behind by
:mod:`objstore.writer`); revisions, deadlines and the change history to the
state files (:mod:`objstore.statefiles`), whose journal records reach disk
before the value files of the same changes. Implements
:class:`~objstore.storage.Storage`. Knows nothing of subscribers,
connections or the wire protocol.

Durability (``--durability``, see :class:`Store`): ``async`` writes behind
(a write nobody waits for within :data:`WRITE_GATHER` seconds, so that a key
set many times a second is written a few times a second),
``sync`` flushes each batch to disk before its writes are acknowledged or
published (:meth:`Store.when_durable`), ``memory`` keeps no folder at all (no
files, no lock, no state files; a :class:`~objstore.memorywriter.MemoryWriter`
takes the writes). A write that fails in ``sync`` mode is still published
once tried: the value stands in memory (every read returns it, and it is
retried), so subscribers are told what readers see; only its setter hears of
the failure. Holding it back would also hold back every later update, which
must reach subscribers in revision order, for as long as the disk fails.

A cache folder removed while the server runs is created again at the next
write; then every permanent key is written again and a new snapshot begun,
since users expect the folder to hold the store, not just the keys set since.

Memory while writes fail: the writer keeps one entry per key to retry (the
latest value, which the store holds anyway), and at most
:data:`UNJOURNALED_LIMIT` journal records plus
:data:`FOLD_CHECK_EVERY` before they are folded into one snapshot. With
``sync``, updates waiting for the disk: at most two per key (see
:meth:`Store.when_durable`).

Revisions after a restart (docs/protocol.md, section 2.2): after a clean stop
every key keeps its revision and the history goes on; after an unclean one
every key gets a new revision past the last reservation and the history starts
empty, so no resume is told it is up to date when it may not be. Revisions are
reserved :data:`RESERVE_BLOCK` at a time, the next block once half of the
current one is used.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Final, NamedTuple, TypeVar

from .cachefolder import CacheFolder, LoadReport
from .changeclock import ChangeClock
from .errors import Conflict, describe
from .keyspace import Change, KeySpace
from .memorywriter import MemoryWriter
from .statefiles import Deadline, InFile, KeyState, Reserve, SavedState, StateFiles, Value
from .storage import Owner
from .valuejournal import fits_a_record
from .writer import FailureCallback, WriteBehind, WriteResult

__all__ = [
    "FOLD_CHECK_EVERY",
    "JOURNALED_GATHER",
    "JOURNAL_LIMIT",
    "RESERVE_BLOCK",
    "UNJOURNALED_LIMIT",
    "WRITE_GATHER",
    "Store",
]

logger = logging.getLogger("objstore.store")

#: Revisions reserved at a time in the journal.
RESERVE_BLOCK: Final = 1 << 20
#: Seconds a write nobody waits for may wait for later sets of the same keys
#: (``async``): a set's file is written within this time, or at once when an
#: acknowledgement, a ``POST /set`` or a stop waits for it.
WRITE_GATHER: Final = 0.1
#: Seconds the files of acknowledged values may wait for later sets of the same keys
#: while no other write waits with them: the values are in the journal meanwhile.
JOURNALED_GATHER: Final = 1.0
#: A journal past this size is folded into a new snapshot.
JOURNAL_LIMIT: Final = 16 * 1024 * 1024
#: Journal records waiting (for a failing or slow disk) past which they are folded into
#: one snapshot.
UNJOURNALED_LIMIT: Final = 10_000
#: The records waiting are counted once every this many deadline records.
FOLD_CHECK_EVERY: Final = 1024

_T = TypeVar("_T")


class _Compact(NamedTuple):
    """A journal record that folds the journal into the snapshot *state*."""

    state: SavedState


class _StateSink:
    """The writer's journal: records appended to the state files, snapshots folded in.

    Called by the writer thread only, so that snapshot and appends never race.
    The records given after a snapshot in one call begin its journal, written
    with it before it takes the journal's name: values carried over a fold are
    never only in a journal that is gone.
    """

    __slots__ = ("files", "sync")

    def __init__(self, files: StateFiles, *, sync: bool = False) -> None:
        self.files = files
        #: Flush every append to disk (``--durability sync``).
        self.sync = sync

    def append(
        self,
        records: Sequence[Reserve | Deadline | Value | InFile | _Compact],
        *,
        lazy: bool = False,
    ) -> None:
        run: list[Reserve | Deadline | Value | InFile] = []
        snapshot: SavedState | None = None
        sync = self.sync and not lazy
        for record in records:
            if type(record) is _Compact:
                self._write(snapshot, run, sync)
                snapshot, run = record.state, []
            else:
                run.append(record)  # type: ignore[arg-type]
        self._write(snapshot, run, sync)

    def _write(
        self,
        snapshot: SavedState | None,
        run: list[Reserve | Deadline | Value | InFile],
        sync: bool,
    ) -> None:
        if snapshot is not None:
            self.files.write_snapshot(snapshot, run, sync=sync)
        elif run:
            self.files.append(run, sync=sync)


def _now_ms() -> int:
    return int(time.time() * 1000)


class Store:
    """Values by key, loaded from a cache folder and written back to it on every change."""

    def __init__(self, cache_dir: Path, durability: str = "async") -> None:
        """*durability*: ``async`` (written behind), ``sync`` (flushed to disk before
        acknowledged or published) or ``memory`` (no folder: *cache_dir* is not touched)."""
        if durability not in ("memory", "async", "sync"):
            raise ValueError(f"unknown durability {durability!r}")
        self.durability = durability
        self.space = KeySpace()
        self._values = self.space.values
        #: When the revisions happened (marked each second, not at each change).
        self.clock = ChangeClock()
        self.folder: CacheFolder | None = None
        self.state: StateFiles | None = None
        self._writer: WriteBehind | MemoryWriter
        if durability == "memory":
            self._writer = MemoryWriter()
        else:
            sync = durability == "sync"
            self.folder = CacheFolder(cache_dir, sync=sync)
            self.state = StateFiles(str(cache_dir))
            self._writer = WriteBehind(
                self.folder,
                journal=_StateSink(self.state, sync=sync),
                sync=sync,
                # With sync, every batch is waited for: nothing to gather.
                gather=0.0 if sync else WRITE_GATHER,
                on_restored=self._write_everything,
                value_record=Value,
                file_record=InFile,
                journaled_gather=JOURNALED_GATHER,
            )
        #: Deadline records journaled since the writer's waiting records were counted.
        self._since_fold_check = 0
        #: Bytes of deadline records journaled since the last snapshot (an estimate).
        self._journaled = 0
        #: Past this, the journal is folded into a new snapshot.
        self.journal_limit = JOURNAL_LIMIT
        #: Deadlines (ms since the epoch) of keys with a time to live.
        self._expires: dict[str, int] = {}
        #: (deadline, key), with entries of deadlines since changed left in place
        #: (at most twice the live deadlines, plus 64: see _expires_for).
        self._deadlines: list[tuple[int, str]] = []
        #: Owners of ephemeral keys, and their keys.
        self._owners: dict[str, Owner] = {}
        self._owned: dict[Owner, set[str]] = {}
        #: Revisions up to this one are reserved in the journal.
        self._reserved = 0
        #: The revision past which the next block is reserved.
        self._reserve_at = 0
        self._generation = 0
        self._opened = False
        #: Values stored (sets, patches, increments, of any transport): a plain count.
        self.sets = 0

    # -- opening and closing ----------------------------------------------------------

    def open(self) -> LoadReport:
        """Create or check the cache folder, load every value and the state beside them
        (blocking); delete keys whose deadline passed while the server was down.
        Without a folder (``memory``), start empty."""
        if self.folder is None or self.state is None:
            self._generation = 1
            self._reserved = RESERVE_BLOCK
            self._reserve_at = RESERVE_BLOCK // 2
            self._opened = True
            return LoadReport()
        self.folder.prepare()
        report = self.folder.load()
        saved = self.state.read()
        if saved.values:
            self._replay_values(report.values, saved.values)
        self._restore(report.values, saved)
        now = _now_ms()
        for key, expires in list(self._expires.items()):
            if expires <= now:
                self._expired_at_start(key)
        self._generation = saved.generation + 1
        self._reserved = self.space.rev + RESERVE_BLOCK
        self._reserve_at = self._reserved - RESERVE_BLOCK // 2
        self.state.write_snapshot(self._snapshot(clean=False))
        self._opened = True
        return report

    def _replay_values(self, values: dict[str, bytes], journaled: dict[str, bytes | None]) -> None:
        """Put the journal's acknowledged values (None: removals) in place of the files'
        in *values*, and write their files, before a new journal replaces the old one.

        Raises :class:`~objstore.errors.StorageError` if a file cannot be written: the
        journal is then left as it is, and the next start replays it again.
        """
        assert self.folder is not None
        changed = 0
        for key, data in journaled.items():
            if values.get(key) == data:
                continue
            changed += 1
            if data is None:
                del values[key]
                self.folder.remove(key)
            else:
                values[key] = data
                self.folder.write(key, data)
        if changed:
            self.folder.sync()
            logger.info(
                "the last stop was not clean: %d acknowledged changes came back from the journal",
                changed,
            )

    def _restore(self, values: dict[str, bytes], saved: SavedState) -> None:
        """Give every loaded value its revision and deadline from *saved*."""
        revs: dict[str, int] = {}
        space = KeySpace(values, revs, saved.rev)
        fresh: list[str] = []
        marks: list[tuple[int, float]] = []
        # Without a key in the state files (a folder of the original program, or of
        # keys without deadlines after an unclean stop) every key is new: one list.
        if not saved.keys:
            fresh = list(values)
        else:
            for key, value in values.items():
                state = saved.keys.get(key)
                if (
                    saved.clean
                    and state is not None
                    and state.rev > 0
                    and state.crc == zlib.crc32(value)
                ):
                    revs[key] = state.rev
                    if state.changed is not None:
                        marks.append((state.rev, state.changed / 1000))
                else:
                    fresh.append(key)
                if state is not None and state.expires is not None:
                    self._expires[key] = state.expires
                    self._deadlines.append((state.expires, key))
        heapq.heapify(self._deadlines)
        if saved.clean:
            space = KeySpace(
                values,
                revs,
                saved.rev,
                history=[Change(*h) for h in saved.history],
                base=saved.base,
            )
        # Values new since the clean stop (or every value after an unclean one) take
        # new revisions, in key order; then the history cannot tell what changed.
        rev = space.rev
        revs.update(zip(sorted(fresh), range(rev + 1, rev + 1 + len(fresh)), strict=True))
        rev += len(fresh)
        # The times of the values kept come back; those of new revisions are not known.
        self.clock = ChangeClock.from_marks(marks)
        self.clock.mark_unknown(rev)
        # A key deleted by hand while the server was stopped is a change the history
        # does not hold either.
        vanished = saved.clean and any(key not in values for key in saved.keys)
        if fresh or vanished or not saved.clean:
            if not saved.clean and saved.rev:
                logger.warning(
                    "the last stop was not clean: every key has a new revision, and "
                    "subscriptions resuming from before it start from a full snapshot"
                )
            space.rev = rev
            space.forget_history()
        self.space = space
        self._values = space.values

    def _expired_at_start(self, key: str) -> None:
        self._expires.pop(key, None)
        if self.space.remove(key) is not None:
            assert self.folder is not None
            self.folder.remove(key)
            logger.info("key %s expired while the server was stopped", describe(key))

    def _snapshot(self, clean: bool) -> SavedState:
        space = self.space
        keys: dict[str, KeyState] = {}
        for key, expires in self._expires.items():
            if key not in self._owners:
                keys[key] = KeyState(space.revision(key), expires, None)
        if clean:
            for key, value in space.values.items():
                if key in self._owners:
                    continue
                rev = space.revs[key]
                changed = self.clock.time_of(rev)
                keys[key] = KeyState(
                    rev,
                    self._expires.get(key),
                    zlib.crc32(value),
                    None if changed is None else int(changed * 1000),
                )
        return SavedState(
            rev=space.rev if clean else self._reserved,
            clean=clean,
            generation=self._generation,
            base=space.base,
            keys=keys,
            history=[(c.rev, c.key, c.deleted) for c in space.history] if clean else [],
        )

    async def flush(self) -> None:
        """Wait until every change so far is on disk."""
        await self._writer.flush()

    async def close(self) -> list[str]:
        """Finish pending writes, retrying failed ones once more, and record the clean
        stop; return the keys whose latest value could not be written. The store must
        not be used afterwards."""
        # Ephemeral keys were never on disk; forgetting them now keeps the history honest.
        for owner in list(self._owned):
            self.release(owner)
        unsaved = await self._writer.close()
        if self.state is None:
            return unsaved
        if not unsaved:
            self.mark_time(time.time())
            self._generation += 1
            try:
                self.state.write_snapshot(self._snapshot(clean=True))
            except OSError as exc:
                logger.error("could not record the clean stop: %s", exc)
        self.state.close()
        return unsaved

    # -- reading ----------------------------------------------------------------------

    @property
    def rev(self) -> int:
        """The revision of the last change."""
        return self.space.rev

    def get(self, key: str) -> bytes | None:
        """The value of *key* as compact JSON, or None if it has none."""
        return self._values.get(key)

    def revision(self, key: str) -> int:
        """The revision of *key*'s last change, 0 when it has no value."""
        return self.space.revs.get(key, 0)

    def keys(self, prefix: str = "", after: str | None = None, limit: int = 100) -> list[str]:
        """At most *limit* keys starting with *prefix*, after *after*, in UTF-8 byte order."""
        return self.space.keys(prefix, after, limit)

    def matching(self, prefix: str) -> Iterator[str]:
        """Every key starting with *prefix*, in order."""
        return self.space.matching(prefix)

    def changes_since(self, since: int) -> list[Change] | None:
        """The latest change of each key changed after *since*, or None when not known."""
        return self.space.changes_since(since)

    def __len__(self) -> int:
        return len(self._values)

    def stored_bytes(self) -> int:
        """The sum of the values' sizes as compact JSON, in bytes.

        Added up when asked (2 ms for 100,000 keys): a running total would cost
        every write a lookup of the value it replaces.
        """
        return sum(map(len, self._values.values()))

    @property
    def writer(self) -> WriteBehind | MemoryWriter:
        """The writer of the cache folder, for its counts (pending, failures, latency)."""
        return self._writer

    def readiness(self) -> str | None:
        """None when loaded and writes succeed; else why not, in a few words that name
        no file (they are shown to anyone who asks ``/readyz``)."""
        if not self._opened:
            return "the store is loading"
        if self._writer.failure is not None:
            return "writes to the cache folder are failing; retrying"
        return None

    def when_durable(
        self, deliver: Callable[[_T], object], key_of: Callable[[_T], str]
    ) -> Callable[[_T], object]:
        """*deliver* itself where writes are not waited for (``async``, ``memory``); with
        ``sync``, a function that calls *deliver* with its argument once every write
        made before the call is on disk (or failed), calls in the order made.

        Memory: an item waiting for the next batch is replaced by a later one of the
        same key (*key_of*), which takes its turn at the end, so at most one item per
        key waits for the next batch, and one per key for the batch being written,
        however long the disk takes (plain sets are not flow-controlled).
        """
        if self.durability != "sync":
            return deliver
        after_written = self._writer.after_written

        def deliver_when_durable(item: _T) -> None:
            after_written(lambda: deliver(item), key_of(item))

        return deliver_when_durable

    def _write_everything(self) -> None:
        """The folder was removed and created again: write every permanent key again and
        begin a new snapshot (the old one went with the folder)."""
        writer = self._writer
        writer.journal(_Compact(self._snapshot(clean=False)), folds=True)
        self._journaled = 0
        owners = self._owners
        count = 0
        for key, value in self._values.items():
            if key not in owners:
                writer.write(key, value)
                count += 1
        logger.warning("the cache folder was removed; writing all %d keys again", count)

    def __contains__(self, key: object) -> bool:
        return key in self._values

    # -- writing ----------------------------------------------------------------------

    def set(self, key: str, value: bytes, on_failure: FailureCallback | None = None) -> int:
        """Store *value* (compact JSON) under *key*, permanently; return its revision.

        The new value is visible at once; *on_failure* hears of a failed write.
        """
        if (self._expires and key in self._expires) or (self._owners and key in self._owners):
            rev, _ = self.write(key, value, on_failure=on_failure)
            assert rev is not None
            return rev
        rev = self.space.put(key, value)
        self.sets += 1
        if rev >= self._reserve_at:
            self._reserve()
        self._writer.write(key, value, on_failure)
        return rev

    def set_and_wait(self, key: str, value: bytes) -> WriteResult:
        """Like :meth:`set`, and return a future that says when the value's file holds it,
        or why it could not be written."""
        _, result = self.write(key, value, wait=True, in_file=True)
        assert result is not None
        return result

    def write(
        self,
        key: str,
        value: bytes | None,
        *,
        if_rev: int | None = None,
        ttl: float | None = None,
        owner: Owner | None = None,
        keep_owner: bool = False,
        wait: bool = False,
        in_file: bool = False,
        on_failure: FailureCallback | None = None,
    ) -> tuple[int | None, WriteResult | None]:
        """Set (*value*) or delete (None) *key*; see :class:`~objstore.storage.Storage`."""
        space = self.space
        if if_rev is not None:
            current = space.revision(key)
            if current != if_rev:
                raise Conflict.mismatch(key, current, if_rev, space.get(key))
        current_owner = self._owners.get(key) if self._owners else None
        if keep_owner:
            owner = current_owner
        was_ephemeral = current_owner is not None
        if was_ephemeral and (value is None or current_owner is not owner):
            self._disown(key)
        if value is None:
            rev = space.remove(key)
            if rev is None:
                return None, None
            if rev >= self._reserve_at:
                self._reserve()
            had_deadline = self._expires.pop(key, None) is not None
            if was_ephemeral:
                return rev, self._done() if wait else None
            if had_deadline:
                self._journal_deadline(key, None)
        else:
            had_file = not was_ephemeral and key in self._values
            rev = space.put(key, value)
            self.sets += 1
            if rev >= self._reserve_at:
                self._reserve()
            if owner is not None:
                if not was_ephemeral and key in self._expires:
                    # Its deadline is in the journal: take it back with the file.
                    self._journal_deadline(key, None)
                self._own(key, owner)
                self._expires_for(key, ttl, journal=False)
                if had_file:
                    # An ephemeral key has no file: remove the one it had, and
                    # acknowledge once it is gone (else a crash brings it back).
                    if wait:
                        return rev, self._writer.write_and_wait(key, None)
                    self._writer.write(key, None, on_failure)
                return rev, self._done() if wait else None
            self._expires_for(key, ttl, journal=True)
        if wait:
            result = self._writer.write_and_wait(key, value, in_file=in_file)
            if not in_file and self.state is not None and fits_a_record(value):
                # A value record (see WriteBehind.write_and_wait).
                self._journal_grew(len(key) + (16 if value is None else len(value) + 12))
            return rev, result
        self._writer.write(key, value, on_failure)
        return rev, None

    @staticmethod
    def _done() -> WriteResult:
        result: WriteResult = asyncio.get_running_loop().create_future()
        result.set_result(None)
        return result

    def _expires_for(self, key: str, ttl: float | None, *, journal: bool) -> None:
        """Give *key* the deadline of *ttl* seconds from now, or none."""
        if ttl is None:
            if self._expires.pop(key, None) is not None and journal:
                self._journal_deadline(key, None)
            return
        expires = _now_ms() + max(1, round(ttl * 1000))
        self._expires[key] = expires
        deadlines = self._deadlines
        heapq.heappush(deadlines, (expires, key))
        if len(deadlines) > 2 * len(self._expires) + 64:
            # Entries of deadlines since changed are dropped only when they come
            # first: a key given a long ttl again and again would grow the heap
            # without end. Rebuilt from the live deadlines, it stays within twice
            # their number (amortized O(1) per write).
            self._deadlines = [(at, name) for name, at in self._expires.items()]
            heapq.heapify(self._deadlines)
        if journal:
            self._journal_deadline(key, expires)

    def _journal_deadline(self, key: str, expires: int | None) -> None:
        """Record *key*'s deadline before its file, and see whether to fold the journal."""
        if self.state is None:
            return  # no folder, no journal
        self._writer.journal(Deadline(key, expires), key)
        self._journal_grew(len(key) + 40)

    def _journal_grew(self, size: int) -> None:
        """Count a record of about *size* bytes; fold the journal when it grows too large,
        or when too many records wait for a failing disk."""
        writer = self._writer
        # Counted here rather than read from the file, which the writer thread
        # fills later: about the size of the record's line.
        self._journaled += size
        self._since_fold_check += 1
        if self._since_fold_check >= FOLD_CHECK_EVERY:
            self._since_fold_check = 0
            if writer.journal_backlog > UNJOURNALED_LIMIT:
                # The disk has been failing for a while: one snapshot holds all they say.
                self._journaled = 0
                writer.journal(_Compact(self._snapshot(clean=False)), folds=True)
                return
        if self._journaled > self.journal_limit:
            self._journaled = 0
            writer.journal(_Compact(self._snapshot(clean=False)), folds=True)

    def _own(self, key: str, owner: Owner) -> None:
        self._owners[key] = owner
        keys = self._owned.get(owner)
        if keys is None:
            self._owned[owner] = {key}
        else:
            keys.add(key)

    def _disown(self, key: str) -> None:
        owner = self._owners.pop(key)
        keys = self._owned[owner]
        keys.discard(key)
        if not keys:
            del self._owned[owner]

    def _reserve(self) -> None:
        """Reserve the next block of revisions, half a block ahead of need."""
        self._reserved += RESERVE_BLOCK
        self._reserve_at = self._reserved - RESERVE_BLOCK // 2
        self._writer.journal(Reserve(self._reserved))

    # -- deadlines and owners ---------------------------------------------------------

    def next_deadline(self) -> float | None:
        """The earliest deadline of a key, in seconds since the epoch, or None."""
        deadlines = self._deadlines
        expires = self._expires
        while deadlines:
            at, key = deadlines[0]
            if expires.get(key) == at:
                return at / 1000
            heapq.heappop(deadlines)  # changed since: forget it
        return None

    def expire_due(self, now: float) -> list[tuple[str, int]]:
        """Delete every key whose deadline is at or before *now* (seconds since the epoch);
        return the key and revision of each deletion, in order."""
        now_ms = now * 1000
        deadlines = self._deadlines
        expires = self._expires
        done: list[tuple[str, int]] = []
        while deadlines and deadlines[0][0] <= now_ms:
            at, key = heapq.heappop(deadlines)
            if expires.get(key) != at:
                continue
            rev, _ = self.write(key, None)
            if rev is not None:
                done.append((key, rev))
        return done

    def release(self, owner: Owner) -> list[tuple[str, int]]:
        """Delete every key *owner* owns; return the key and revision of each."""
        keys = self._owned.get(owner)
        if not keys:
            return []
        done: list[tuple[str, int]] = []
        for key in sorted(keys):
            rev, _ = self.write(key, None, keep_owner=True)
            if rev is not None:
                done.append((key, rev))
        return done

    def owner(self, key: str) -> Owner | None:
        """The owner of an ephemeral key, None for a permanent one."""
        return self._owners.get(key)

    def details(self, key: str) -> tuple[int | None, bool]:
        """*key*'s deadline (ms since the epoch, None without one) and whether it is ephemeral."""
        expires = self._expires.get(key) if self._expires else None
        return expires, bool(self._owners) and key in self._owners

    def mark_time(self, now: float) -> None:
        """Every change so far happened by *now* (seconds since the epoch)."""
        self.clock.mark(self.space.rev, now)

    def changed_at(self, key: str) -> int | None:
        """When *key* last changed (ms since the epoch, late by at most a mark's
        interval), or None when not known or it has no value."""
        rev = self.space.revs.get(key)
        if rev is None:
            return None
        if rev > self.clock.last:
            self.mark_time(time.time())
        changed = self.clock.time_of(rev)
        return None if changed is None else int(changed * 1000)

    def deadline(self, key: str) -> float | None:
        """*key*'s deadline in seconds since the epoch, None when it has none."""
        expires = self._expires.get(key)
        return None if expires is None else expires / 1000
