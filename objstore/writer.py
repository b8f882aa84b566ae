"""Write-behind persistence: values reach their files off the event loop, latest first.

Owns the queue between a set and its file, and the one thread that writes.
A set puts the key's latest value in a table and, if the thread is idle,
wakes it (no timer); the thread takes the whole table and writes it. Sets of
a key made while a batch is being written coalesce into one write of the
latest value. The loop hears back only when somebody waits for a write
(``POST /set``, shutdown) or a write failed: a set costs a dictionary entry,
with no future and no task. A slow disk never stalls the loop.

A failed write is retried, since its cause may pass (a full disk, a drive
that comes back): the setter hears of the failure once, and the key's latest
value is written again after 0.1 s, then after twice as long each time up to
5 s, until it is written or a newer set of the key replaces it. Closing tries
once more and returns the keys that still could not be written. The retry
table holds one reference per key to the value the store holds anyway.
Knows nothing of the wire protocol or subscribers; the file format belongs
to :class:`~objstore.cachefolder.CacheFolder`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable

from .cachefolder import CacheFolder
from .errors import StorageError

__all__ = ["FailureCallback", "WriteBehind", "WriteResult"]

logger = logging.getLogger("objstore.cache")

#: The outcome of a write: None when the file holds the value, else the error.
WriteResult = asyncio.Future[StorageError | None]
#: Told, with the error (already logged), when a value it set could not be written.
FailureCallback = Callable[[StorageError], None]

#: Seconds before the first retry of a failed write, doubled after each failed retry.
FIRST_RETRY_DELAY = 0.1
#: The longest wait between two retries.
MAX_RETRY_DELAY = 5.0


class _Pending:
    """A write waiting to start: the latest data of a key and who wants to know."""

    __slots__ = ("data", "on_failure", "waiters")

    def __init__(self, data: bytes, on_failure: FailureCallback | None) -> None:
        self.data = data
        self.on_failure = on_failure
        self.waiters: list[WriteResult] | None = None


class WriteBehind:
    """Writes files on a thread of its own, coalescing repeated keys.

    Ordering holds per key: a write never overtakes an earlier one of the same
    key, and the last value set is the last one written. Call every method
    from the event loop's thread.
    """

    def __init__(self, folder: CacheFolder) -> None:
        self._folder = folder
        # Guards everything below it; held for dictionary swaps, never for I/O.
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._pending: dict[str, _Pending] = {}
        #: The thread is between taking a batch and finishing it.
        self._writing = False
        self._closing = False
        #: Waiting until nothing is pending or being written.
        self._idle_waiters: list[asyncio.Future[None]] = []
        #: The latest data of keys whose write failed, to be written again.
        self._failed: dict[str, bytes] = {}
        self._retry_delay = FIRST_RETRY_DELAY
        self._retry_at = 0.0
        #: Keys that could not be written by the time of close().
        self._unsaved: list[str] = []
        #: Keys whose failure was logged and that were not written since (writer thread).
        self._logged_failures: set[str] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def write(self, key: str, data: bytes, on_failure: FailureCallback | None = None) -> None:
        """Schedule *data* to become the file of *key*.

        If the write fails, the error is logged, *on_failure* is called with
        it, and the write is retried (see the module's docstring). A later
        write of the same key that comes before this one started replaces it
        (and its *on_failure*): only the latest value is written.
        """
        with self._lock:
            self._put(key, data, on_failure)

    def write_and_wait(self, key: str, data: bytes) -> WriteResult:
        """Like :meth:`write`, and return a future of the outcome.

        The future never raises: it resolves to None once the value (or a later
        one of the same key) is on disk, or to the :class:`~objstore.errors.StorageError`
        that prevented it.
        """
        result: WriteResult = asyncio.get_running_loop().create_future()
        with self._lock:
            entry = self._put(key, data, None)
            if entry.waiters is None:
                entry.waiters = [result]
            else:
                entry.waiters.append(result)
        return result

    def _put(self, key: str, data: bytes, on_failure: FailureCallback | None) -> _Pending:
        if self._failed:
            self._failed.pop(key, None)  # the newer value replaces the one to retry
        pending = self._pending
        entry = pending.get(key)
        if entry is not None:
            entry.data = data
            entry.on_failure = on_failure
            return entry
        entry = pending[key] = _Pending(data, on_failure)
        if len(pending) == 1 and not self._writing:
            if self._thread is None:
                self._start()
            self._wake.notify()  # it is idle, waiting for work
        return entry

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

    async def flush(self) -> None:
        """Wait until every write scheduled so far has finished."""
        with self._lock:
            if not self._pending and not self._writing:
                return
            idle = asyncio.get_running_loop().create_future()
            self._idle_waiters.append(idle)
        await idle

    async def close(self) -> list[str]:
        """Finish pending writes, retry failed ones once more, stop the thread and close
        the folder's files; return the keys whose latest value could not be written."""
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
                retry = self._wait_for_work()
                if retry is None:  # closing, and nothing pending
                    last, self._failed = self._failed, {}
                    break
                batch, self._pending = self._pending, {}
                self._writing = True
            errors = self._write_all((key, entry.data) for key, entry in batch.items())
            still_failing = self._write_all(retry.items()) if retry else {}
            with lock:
                self._writing = False
                self._keep_failed(batch, errors, retry, still_failing)
                idle = self._idle_waiters if not self._pending else []
                if idle:
                    self._idle_waiters = []
            if retry and not still_failing:
                logger.info("saved %d keys whose earlier writes had failed", len(retry))
            if errors or idle or any(entry.waiters for entry in batch.values()):
                assert self._loop is not None
                self._loop.call_soon_threadsafe(self._report, batch, errors, idle)
            # Not kept while waiting for the next batch: a key string and an entry
            # per key written (measured 8 to 17 bytes per stored key).
            del batch, errors, idle, retry, still_failing
        # One last try before stopping; close() reports what still fails.
        self._unsaved = list(self._write_all(last.items())) if last else []

    def _wait_for_work(self) -> dict[str, bytes] | None:
        """With the lock held: wait for sets or a retry; return the writes to retry now,
        or None when closing with nothing pending."""
        while not self._pending:
            if self._closing:
                return None
            if not self._failed:
                self._wake.wait()
                continue
            delay = self._retry_at - time.monotonic()
            if delay <= 0:
                break
            self._wake.wait(delay)
        if not self._failed or time.monotonic() < self._retry_at:
            return {}
        retry, self._failed = self._failed, {}
        return retry

    def _keep_failed(
        self,
        batch: dict[str, _Pending],
        errors: dict[str, StorageError],
        retry: dict[str, bytes],
        still_failing: dict[str, StorageError],
    ) -> None:
        """With the lock held: remember what failed, unless a newer set replaced it,
        and when to try again."""
        was_failing = bool(self._failed)
        if retry:
            self._retry_delay = (
                min(self._retry_delay * 2, MAX_RETRY_DELAY) if still_failing else FIRST_RETRY_DELAY
            )
        failed = self._failed
        for key in errors:
            if key not in self._pending:
                failed[key] = batch[key].data
        for key in still_failing:
            if key not in self._pending:
                failed[key] = retry[key]
        if failed and (retry or not was_failing):
            self._retry_at = time.monotonic() + self._retry_delay

    def _write_all(self, writes: Iterable[tuple[str, bytes]]) -> dict[str, StorageError]:
        """Write each key's data; return the errors. A key's failure is logged once, at
        ERROR, until the key is written: a key set 30 times a second on a full disk
        does not fill the log."""
        errors: dict[str, StorageError] = {}
        logged = self._logged_failures
        for key, data in writes:
            try:
                self._folder.write(key, data)
            except StorageError as exc:
                error = exc
            except Exception as exc:  # a bug in one write must not stop the others
                logger.exception("unexpected error while saving a key")
                error = StorageError(f"could not save the key: {exc}")
            else:
                if logged:
                    logged.discard(key)
                continue
            if key in logged:
                logger.debug("%s", error)
            else:
                logged.add(key)
                logger.error("%s; will try again", error)
            errors[key] = error
        return errors

    @staticmethod
    def _report(
        batch: dict[str, _Pending],
        errors: dict[str, StorageError],
        idle: list[asyncio.Future[None]],
    ) -> None:
        """On the loop: tell failure callbacks and waiters how their writes went."""
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
