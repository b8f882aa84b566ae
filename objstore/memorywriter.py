"""The writer of ``--durability memory``: nothing is written, every write is done at once.

Owns the stand-in for :class:`~objstore.writer.WriteBehind` when the store keeps
no cache folder: the same surface (writes, journal records, waits, counts), so
that the store and the service run unchanged, with nothing on disk and nothing
queued. Knows nothing of keys, files or the wire protocol.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable

from .errors import StorageError
from .writer import LATENCY_BUCKETS, FailureCallback, WriteResult

__all__ = ["MemoryWriter"]


class MemoryWriter:
    """Takes writes and journal records and drops them; holds nothing (no memory grows)."""

    #: Nothing ever fails, waits or is retried.
    failures = 0
    pending = 0
    failing = 0
    unjournaled = 0
    journal_backlog = 0
    failure: StorageError | None = None

    def write(
        self, key: str, data: bytes | None, on_failure: FailureCallback | None = None
    ) -> None:
        """Nothing to write: the value lives in the store's memory only."""

    def write_and_wait(
        self, key: str, data: bytes | None, *, in_file: bool = False
    ) -> WriteResult:
        """A future already resolved to None: there is nothing more to wait for."""
        result: WriteResult = asyncio.get_running_loop().create_future()
        result.set_result(None)
        return result

    def journal(self, record: object, key: str | None = None, *, folds: bool = False) -> None:
        """Nothing to record: revisions and deadlines live in the store's memory only."""

    def after_written(self, callback: Callable[[], object], key: Hashable | None = None) -> None:
        """Call *callback* now: every write is done as it is made."""
        callback()

    def latency(self) -> tuple[list[int], float]:
        """No batch is ever written: every bucket is empty."""
        return [0] * (len(LATENCY_BUCKETS) + 1), 0.0

    async def flush(self) -> None:
        """Nothing is pending."""

    async def close(self) -> list[str]:
        """Nothing to finish; no key is unsaved, since none was to be saved."""
        return []
