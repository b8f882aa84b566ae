"""What a scenario is: a function of a run's context, its sizes and the metrics it declares.

Owns the registry (scenarios register themselves with the @scenario decorator, in the order
the table shows them) and the context a run gets (server kind, sizes, options, folder,
round). Knows nothing of the command line or the table's layout.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..config import SERVERS, Options
from ..drivers import Loadgen
from ..results import Metric
from ..servers import Server, running

__all__ = ["REGISTRY", "Ctx", "RunFunction", "Scenario", "scenario"]


@dataclass(frozen=True)
class Ctx:
    """One run: which server, with which sizes and options, in which folder and round."""

    name: str
    kind: str
    size: dict[str, int]
    opts: Options
    work: Path
    round: int
    #: Pids whose CPU counts as objstore's (its redis-server with --backend redis).
    companions: tuple[int, ...] = ()

    @property
    def objstore(self) -> bool:
        return self.kind == "objstore"

    def server(
        self,
        cache: str = "cache",
        log: str = "server.log",
        *,
        ready_timeout: float = 60.0,
        durability: str = "async",
    ) -> AbstractContextManager[Server]:
        """The run's server, started and ready, with the run's objstore flags."""
        return running(
            self.kind,
            self.work / cache,
            self.opts,
            self.work / log,
            ready_timeout,
            durability=durability,
            extra_args=self.opts.objstore_args if self.objstore else (),
            companions=self.companions if self.objstore else (),
        )

    def loadgen(self, name: str, args: dict[str, Any], *, stdin: bool = False) -> Loadgen:
        """benchmarks/loadgen.ts NAME with *args* as --flags, on the client CPU."""
        return Loadgen(self.opts, name, args, self.work, stdin)


RunFunction = Callable[[Ctx], dict[str, Any]]


@dataclass(frozen=True)
class Scenario:
    """A registered scenario: its run function, sizes (full and --quick) and metrics."""

    name: str
    run: RunFunction
    full: dict[str, int]
    quick: dict[str, int]
    metrics: tuple[Metric, ...]
    #: The servers it runs against (both, unless the scenario is objstore's alone).
    servers: tuple[str, ...] = SERVERS
    #: The backends it makes sense on ("files", "redis").
    backends: tuple[str, ...] = ("files", "redis")

    def sizes(self, quick: bool) -> dict[str, int]:
        return self.quick if quick else self.full


#: Every scenario by name, in the order of the table.
REGISTRY: dict[str, Scenario] = {}


def _not_applied(ctx: Ctx) -> dict[str, Any]:
    raise RuntimeError(f"scenario {ctx.name!r} was declared but never given its function")


def scenario(
    name: str,
    *,
    full: dict[str, int],
    quick: dict[str, int] | None = None,
    metrics: Sequence[Metric],
    backends: tuple[str, ...] = ("files", "redis"),
    servers: tuple[str, ...] = SERVERS,
) -> Callable[[RunFunction], RunFunction]:
    """Register the decorated function as scenario *name* (stackable: one function may run
    several scenarios of different sizes; they take the table's order as written, top down)."""
    if name in REGISTRY:
        raise ValueError(f"scenario {name!r} registered twice")
    # Registered now, when the decorator line is evaluated (top down), not when it is
    # applied (bottom up), so that stacked scenarios keep the order they are written in.
    declared = Scenario(
        name,
        _not_applied,
        full,
        full if quick is None else quick,
        tuple(metrics),
        servers=servers,
        backends=backends,
    )
    REGISTRY[name] = declared

    def register(run: RunFunction) -> RunFunction:
        REGISTRY[name] = replace(declared, run=run)
        return run

    return register
