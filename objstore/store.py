"""The store: every key's current value in memory, each set persisted to its file.

Owns the mapping from keys to values and the promise that every set reaches
disk. Values are kept as compact JSON bytes, encoded once per set. Knows
nothing of subscribers, connections or the wire protocol.
"""

from __future__ import annotations

import logging
from pathlib import Path

from .cachefolder import CacheFolder, LoadReport
from .writer import FailureCallback, WriteBehind, WriteResult

__all__ = ["Store"]

logger = logging.getLogger("objstore.store")


class Store:
    """Values by key, loaded from a cache folder and written back to it on every set."""

    def __init__(self, cache_dir: Path) -> None:
        self.folder = CacheFolder(cache_dir)
        self._values: dict[str, bytes] = {}
        self._writer = WriteBehind(self.folder)

    def open(self) -> LoadReport:
        """Create or check the cache folder and load every value in it (blocking)."""
        self.folder.prepare()
        report = self.folder.load()
        self._values = report.values
        return report

    def get(self, key: str) -> bytes | None:
        """The value of *key* as compact JSON, or None if it was never set."""
        return self._values.get(key)

    def set(self, key: str, value: bytes, on_failure: FailureCallback | None = None) -> None:
        """Store *value* (compact JSON) under *key* and schedule its file write.

        The new value is visible at once; *on_failure* hears of a failed write.
        """
        self._values[key] = value
        self._writer.write(key, value, on_failure)

    def set_and_wait(self, key: str, value: bytes) -> WriteResult:
        """Like :meth:`set`, and return a future that says when the value is on disk,
        or why it could not be written."""
        self._values[key] = value
        return self._writer.write_and_wait(key, value)

    def __len__(self) -> int:
        return len(self._values)

    def __contains__(self, key: object) -> bool:
        return key in self._values

    async def flush(self) -> None:
        """Wait until every set so far is on disk."""
        await self._writer.flush()

    async def close(self) -> list[str]:
        """Finish pending writes, retrying failed ones once more; return the keys whose
        latest value could not be written. The store must not be used afterwards."""
        return await self._writer.close()
