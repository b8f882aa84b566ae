"""The settings of one benchmark run: one frozen Options that the command line fills.

Owns the defaults (where the reference and its Bun are) and the names of the two servers.
Knows nothing of argparse, scenarios or results.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["DEFAULT_BUN", "DEFAULT_REFERENCE", "SERVERS", "Options"]

DEFAULT_REFERENCE = Path("..") / "shared" / "anchors" / "seed-bun" / "run.sh"
DEFAULT_BUN = Path("..") / "shared" / "anchors" / "seed-bun" / "node_modules" / ".bin" / "bun"
#: The two servers compared, in the order of round 1 and of the table's columns.
SERVERS = ("objstore", "reference")


@dataclass(frozen=True)
class Options:
    """What the command line decided; the paths are resolved."""

    python: str
    reference: Path
    bun: Path
    wrk: str | None
    server_cpu: int | None = 0
    client_cpu: int | None = 1
    scenarios: tuple[str, ...] = ()
    rounds: int = 3
    quick: bool = False
    consecutive: int = 1
    keep: bool = False
    json: Path | None = None
    #: "files" or "redis": the store objstore runs on.
    backend: str = "files"
    redis_server: str | None = None
    #: Flags every objstore server of the run gets (like --redis URL; set by the runner).
    objstore_args: tuple[str, ...] = field(default=())
