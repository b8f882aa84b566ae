"""The open-file limit: raised at start so that thousands of clients can connect.

Owns the process's ``RLIMIT_NOFILE``. Every connection is an open file, and
many systems start programs with a soft limit of 1,024 (256 on macOS) while
allowing far more: the soft limit is raised towards the hard one, which any
process may do. Knows nothing of sockets or the server; where there is no
such limit (Windows), there is nothing to do.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

__all__ = [
    "WANTED_OPEN_FILES",
    "OpenFileLimit",
    "current_open_file_limit",
    "raise_open_file_limit",
]

#: Enough for 10,000 clients, the cache folder's open files and some to spare.
WANTED_OPEN_FILES = 16_384
#: Tried in turn when the hard limit is unlimited or refused (macOS refuses more
#: than its per-process maximum, usually 10,240 or more).
_CANDIDATES = (1_048_576, 65_536, WANTED_OPEN_FILES, 10_240)


@dataclass(frozen=True, slots=True)
class OpenFileLimit:
    """The soft open-file limit before and after :func:`raise_open_file_limit`."""

    before: int | None
    after: int | None

    @property
    def enough(self) -> bool:
        """Whether the limit allows :data:`WANTED_OPEN_FILES` (always so without a limit)."""
        return self.after is None or self.after >= WANTED_OPEN_FILES


def current_open_file_limit() -> int | None:
    """The soft open-file limit, or None where the system has none (Windows) or it is unlimited."""
    if sys.platform == "win32":
        return None
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else soft


def raise_open_file_limit() -> OpenFileLimit:
    """Raise the soft open-file limit as far as the hard limit allows.

    Never lowers it and never raises: a refusal leaves the limit as it was,
    which :attr:`OpenFileLimit.enough` then shows.
    """
    if sys.platform == "win32":
        return OpenFileLimit(None, None)
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return OpenFileLimit(None, None)
    unlimited = hard == resource.RLIM_INFINITY
    targets = sorted(
        {value for value in (*_CANDIDATES, hard) if value > soft and (unlimited or value <= hard)}
        - {resource.RLIM_INFINITY},
        reverse=True,
    )
    for target in targets:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            continue
        return OpenFileLimit(soft, target)
    return OpenFileLimit(soft, soft)
