"""Write-behind persistence: values reach their files off the event loop, latest first.

Owns the queue between a set and its file, and the one thread that writes.
A set puts the key's latest value in a table and, if the thread is idle,
wakes it (no timer); the thread takes the whole table and writes it. Sets of
a key made while a batch is being written coalesce into one write of the
latest value. The loop hears back only when somebody waits for a write
(``POST /set``, shutdown) or a write failed: a set costs a dictionary entry,
with no future and no task. A slow disk never stalls the loop. Knows nothing
of the wire protocol or subscribers; the file format belongs to
:class:`~objstore.cachefolder.CacheFolder`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import threading
from collections.abc import Callable

from .cachefolder import CacheFolder
from .errors import StorageError

__all__ = ["FailureCallback", "WriteBehind", "WriteResult"]

logger = logging.getLogger("objstore.cache")

#: The outcome of a write: None when the file holds the value, else the error.
WriteResult = asyncio.Future[StorageError | None]
#: Told, with the error (already logged), when a value it set could not be written.
FailureCallback = Callable[[StorageError], None]


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
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def write(self, key: str, data: bytes, on_failure: FailureCallback | None = None) -> None:
        """Schedule *data* to become the file of *key*.

        If the write fails, the error is logged and *on_failure* is called with
        it. A later write of the same key that comes before this one started
        replaces it (and its *on_failure*): only the latest value is written.
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

    async def flush(self) -> None:
        """Wait until every write scheduled so far has finished."""
        with self._lock:
            if not self._pending and not self._writing:
                return
            idle = asyncio.get_running_loop().create_future()
            self._idle_waiters.append(idle)
        await idle

    async def close(self) -> None:
        """Finish pending writes, stop the thread and close the folder's files."""
        await self.flush()
        thread = self._thread
        if thread is not None:
            with self._lock:
                self._closing = True
                self._wake.notify()
            await asyncio.to_thread(thread.join)
            self._thread = None
        self._folder.close()

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
                while not self._pending and not self._closing:
                    self._wake.wait()
                if not self._pending:
                    return  # closing, and nothing left
                batch, self._pending = self._pending, {}
                self._writing = True
            errors = self._write_batch(batch)
            with lock:
                self._writing = False
                idle = self._idle_waiters if not self._pending else []
                if idle:
                    self._idle_waiters = []
            if errors or idle or any(entry.waiters for entry in batch.values()):
                assert self._loop is not None
                self._loop.call_soon_threadsafe(self._report, batch, errors, idle)

    def _write_batch(self, batch: dict[str, _Pending]) -> dict[str, StorageError]:
        errors: dict[str, StorageError] = {}
        for key, entry in batch.items():
            try:
                self._folder.write(key, entry.data)
            except StorageError as exc:
                logger.error("%s", exc)
                errors[key] = exc
            except Exception as exc:  # a bug in one write must not stop the others
                logger.exception("unexpected error while saving a key")
                errors[key] = StorageError(f"could not save the key: {exc}")
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
