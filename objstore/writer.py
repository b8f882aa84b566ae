"""Write-behind persistence: values reach their files off the event loop, latest first.

Owns the queue between a set and its file. Each set schedules a write at once
(no timer); while a write is in flight, further sets of the same key coalesce
into one write of the latest value. Writes run in a worker thread, so a slow
disk never stalls the loop. Knows nothing of the wire protocol or subscribers;
the file format belongs to :class:`~objstore.cachefolder.CacheFolder`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

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
    """Schedules atomic file writes on a worker thread, coalescing repeated keys.

    Ordering holds per key: a write never overtakes an earlier one of the same
    key, and the last value set is the last one written. A set costs a dict
    entry, no future: only callers that wait (``POST /set``) get one.
    """

    def __init__(self, folder: CacheFolder) -> None:
        self._folder = folder
        self._pending: dict[str, _Pending] = {}
        self._task: asyncio.Task[None] | None = None
        # One thread: batches are written in order, so per-key order holds.
        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="objstore-writer", initializer=_yield_to_the_loop
        )

    def write(self, key: str, data: bytes, on_failure: FailureCallback | None = None) -> None:
        """Schedule *data* to become the file of *key*.

        If the write fails, the error is logged and *on_failure* is called with
        it. A later write of the same key that comes before this one started
        replaces it (and its *on_failure*): only the latest value is written.
        """
        entry = self._pending.get(key)
        if entry is None:
            self._pending[key] = _Pending(data, on_failure)
            if self._task is None:
                self._task = asyncio.get_running_loop().create_task(self._drain())
        else:
            entry.data = data
            entry.on_failure = on_failure

    def write_and_wait(self, key: str, data: bytes) -> WriteResult:
        """Like :meth:`write`, and return a future of the outcome.

        The future never raises: it resolves to None once the value (or a later
        one of the same key) is on disk, or to the :class:`~objstore.errors.StorageError`
        that prevented it.
        """
        self.write(key, data)
        entry = self._pending[key]
        result: WriteResult = asyncio.get_running_loop().create_future()
        if entry.waiters is None:
            entry.waiters = [result]
        else:
            entry.waiters.append(result)
        return result

    @property
    def pending(self) -> int:
        """Number of keys waiting for their write to start."""
        return len(self._pending)

    async def flush(self) -> None:
        """Wait until every scheduled write has finished."""
        while self._task is not None:
            await asyncio.shield(self._task)

    async def close(self) -> None:
        """Finish pending writes and stop the worker thread."""
        await self.flush()
        self._executor.shutdown(wait=True)
        self._folder.close()

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                batch, self._pending = self._pending, {}
                items = [(key, entry.data) for key, entry in batch.items()]
                errors = await loop.run_in_executor(self._executor, self._write_batch, items)
                for key, entry in batch.items():
                    error = errors.get(key)
                    if error is not None and entry.on_failure is not None:
                        entry.on_failure(error)
                    for result in entry.waiters or ():
                        if not result.done():
                            result.set_result(error)
        finally:
            self._task = None

    def _write_batch(self, items: list[tuple[str, bytes]]) -> dict[str, StorageError]:
        errors: dict[str, StorageError] = {}
        for key, data in items:
            try:
                self._folder.write(key, data)
            except StorageError as exc:
                logger.error("%s", exc)
                errors[key] = exc
            except Exception as exc:  # a bug in one write must not stop the others
                logger.exception("unexpected error while saving a key")
                errors[key] = StorageError(f"could not save the key: {exc}")
        return errors


def _yield_to_the_loop() -> None:
    """Lower the writer thread's priority (Linux), so that it runs when the loop is idle.

    Both threads share the CPU the process gets; a file write (creating an inode,
    renaming) preempting the loop shows as latency for every subscriber. At a
    lower priority the thread still writes as soon as the loop waits, and sets
    made meanwhile coalesce into the latest value per key.
    """
    if sys.platform == "linux":
        # Where this is not allowed, the writes just compete as equals.
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
