"""Every name the store puts in the cache folder, and what a name found there is.

Owns the hidden names beside the value files: spares, temporary files, the
second names of a rewrite (``.old``), set-aside files, the lock file and the
two state files (revisions, deadlines and history; see :mod:`objstore.statefiles`). The
names of value files and sidecars follow :data:`~objstore.keys.FILE_NAME_SCHEME`,
which :mod:`objstore.keys` owns; this module gives them too, so that the code
that writes and the code that loads ask one place. Pure functions: no file
I/O, no asyncio, no JSON.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from .keys import file_name, is_hashed, parse_file_name, sidecar_name

__all__ = [
    "HIDDEN_NAMES",
    "JOURNAL_NAME",
    "LOCK_NAME",
    "META_NAME",
    "Entry",
    "classify",
    "file_name",
    "is_hashed",
    "old_name",
    "set_aside_name",
    "sidecar_name",
    "spare_name",
    "temp_name",
]

HIDDEN_NAMES: Final = """\
Beside the value files (see FILE_NAME_SCHEME) the store writes these names, all
hidden (starting with ".") except set-aside files, so none is ever read as a key:

  .objstore.lock                 the lock of the running server (left in place)
  .objstore.meta                 the state snapshot: the revision counter, each key's
                                 revision and expiry deadline, the change history
  .objstore.journal              what changed since that snapshot (append-only)
  .{name}.spare                  the spare of the value file {name}: the next write
                                 goes into it (holds an older value, never loaded)
  .{name}.old                    the second name a file gets during a rewrite
  .{name}.{pid}-{n}.tmp          a file being written (sidecars, the startup check)
  {name}.{time}.corrupt          a file that could not be loaded, set aside
  {name}.{time}-{n}.corrupt      the same, when that name is taken (hidden when
                                 {name} is: a state file set aside)

At startup .old and .tmp files are removed (left by a crash mid-write, the
snapshot's temporary file too), and so is a spare whose value file is missing.
The state files are neither loaded nor removed by the folder's loader: they are
read by objstore.statefiles.
"""

#: The lock file, held by the running server for its whole life.
LOCK_NAME: Final = ".objstore.lock"
#: The snapshot of revisions, expiry deadlines and history.
META_NAME: Final = ".objstore.meta"
#: The journal of what changed since the snapshot.
JOURNAL_NAME: Final = ".objstore.journal"
_TEMP_SUFFIX: Final = ".tmp"
_SPARE_SUFFIX: Final = ".spare"
_OLD_SUFFIX: Final = ".old"
_SET_ASIDE_SUFFIX: Final = ".corrupt"
_SIDECAR_SUFFIX: Final = ".key"
_VALUE_SUFFIX: Final = ".json"

EntryKind = Literal[
    "canonical",
    "hashed",
    "legacy",
    "sidecar",
    "spare",
    "leftover",
    "lock",
    "state",
    "set-aside",
    "other",
]


@dataclass(frozen=True, slots=True)
class Entry:
    """What a name found in the cache folder stands for.

    ``canonical``, ``hashed`` and ``legacy`` are value files (see
    :func:`~objstore.keys.parse_file_name`; ``key`` is set for the first and
    the last); ``sidecar`` holds the key of a hashed name; ``spare`` is the
    spare of the value file ``of``; ``leftover`` is a temporary or ``.old``
    file; ``lock`` is the lock file; ``state`` the snapshot or the journal
    (read by :mod:`objstore.statefiles`); ``set-aside`` a ``.corrupt`` file;
    ``other`` is none of the store's names.
    """

    kind: EntryKind
    key: str | None = None
    #: For a spare, the name of its value file.
    of: str | None = None

    @property
    def is_value(self) -> bool:
        """Whether the entry is a value file, to be loaded."""
        return self.kind in ("canonical", "hashed", "legacy")

    @property
    def is_ours(self) -> bool:
        """Whether the store reads or writes this name (set-aside files it only creates)."""
        return self.kind not in ("other", "set-aside")


_OTHER: Final = Entry("other")
_SET_ASIDE: Final = Entry("set-aside")


def spare_name(name: str) -> str:
    """The spare kept beside the value file *name*, to be written next."""
    return f".{name}{_SPARE_SUFFIX}"


def old_name(name: str) -> str:
    """The second name the value file *name* gets while a rewrite replaces it."""
    return f".{name}{_OLD_SUFFIX}"


def temp_name(name: str, pid: int, number: int) -> str:
    """A temporary file for *name*, unique to process *pid* and its counter *number*."""
    return f".{name}.{pid}-{number}{_TEMP_SUFFIX}"


def set_aside_name(name: str, stamp: str, counter: int = 1) -> str:
    """The name that keeps the unloadable file *name*, with a time *stamp* (and a counter)."""
    suffix = stamp if counter == 1 else f"{stamp}-{counter}"
    return f"{name}.{suffix}{_SET_ASIDE_SUFFIX}"


def classify(name: str) -> Entry:
    """What the entry *name* of the cache folder is; see :class:`Entry`."""
    if name.startswith("."):
        if name == LOCK_NAME:
            return Entry("lock")
        if name in (META_NAME, JOURNAL_NAME):
            return Entry("state")
        if name.endswith((_TEMP_SUFFIX, _OLD_SUFFIX)):
            return Entry("leftover")
        if name.endswith(_SPARE_SUFFIX):
            of = name[1 : -len(_SPARE_SUFFIX)]
            if parse_file_name(of).kind != "other":
                return Entry("spare", of=of)
        if name.endswith(_SET_ASIDE_SUFFIX):
            return _SET_ASIDE  # a state file set aside
        return _OTHER
    if name.endswith(_SET_ASIDE_SUFFIX):
        return _SET_ASIDE
    if name.endswith(_SIDECAR_SUFFIX):
        value = name[: -len(_SIDECAR_SUFFIX)] + _VALUE_SUFFIX
        return Entry("sidecar", of=value) if is_hashed(value) else _OTHER
    parsed = parse_file_name(name)
    if parsed.kind == "other":
        return _OTHER
    return Entry(parsed.kind, parsed.key)
