"""CPU time of the steps of a WebSocket set in the event loop's thread, without a server.

    PYTHONPATH=. .venv/bin/python benchmarks/setpath.py [--sets 100000]
    PYTHONPATH=../other-checkout .venv/bin/python benchmarks/setpath.py   # another commit

Times, in nanoseconds of this thread's CPU (``time.thread_time_ns``) per call, best of three
passes over 100,000 set messages (`{"action":"set","key":"k{i % 1000}","value":{"i":i}}`,
persist's messages): parsing the message (``protocol.parse_message``), storing the value
(``Store.set``: the store in memory and the hand-off to the writer thread), that hand-off
alone (the writer's ``write``), the key space's ``put`` where there is one (revisions and
the change history, protocol 2), and ``StoreService.set`` (storing and publishing, with no
subscriber). The files are written behind by the writer thread, into a temporary folder;
that thread's time is not counted. Pinned to CPU 0 when the machine has it. Works with the
code of any commit since the store took a writer thread, so that two commits can be
compared the same way: the objstore imported is the one on PYTHONPATH.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import objstore
from objstore.hub import Hub
from objstore.protocol import parse_message
from objstore.service import StoreService
from objstore.store import Store


def per_call_ns(fn: Callable[[Any], object], args: Sequence[Any], passes: int = 3) -> float:
    """Best of *passes* of this thread's CPU ns per call of *fn* over *args*."""
    best = float("inf")
    for _ in range(passes):
        gc.collect()
        start = time.thread_time_ns()
        for arg in args:
            fn(arg)
        best = min(best, (time.thread_time_ns() - start) / len(args))
    return best


def make_hub() -> Hub:
    """The server's hub, built as the commit's server builds it."""
    from objstore import outbox

    # Any: the hub's signature differs between commits.
    make: Any = Hub
    kwargs = {"fan_out": outbox.deliver_to_all}
    rev = getattr(outbox, "deliver_rev_to_all", None)
    if rev is not None:
        kwargs["fan_out_rev"] = rev
    hub: Hub = make(**kwargs)
    return hub


async def measure(sets: int, folder: Path) -> dict[str, float]:
    frames = [f'{{"action":"set","key":"k{i % 1000}","value":{{"i":{i}}}}}' for i in range(sets)]
    results = {"parse_message": per_call_ns(parse_message, frames)}
    commands: list[Any] = [parse_message(frame) for frame in frames]
    pairs = [(c.key, c.value) for c in commands]
    store = Store(folder)
    store.open()
    service = StoreService(store, make_hub())
    writer: Any = store._writer
    results["Store.set"] = per_call_ns(lambda kv: store.set(kv[0], kv[1]), pairs)
    results["writer write (hand-off)"] = per_call_ns(
        lambda kv: writer.write(kv[0], kv[1], None), pairs
    )
    space = getattr(store, "space", None)
    if space is not None:
        results["KeySpace.put"] = per_call_ns(lambda kv: space.put(kv[0], kv[1]), pairs)
    results["StoreService.set"] = per_call_ns(lambda kv: service.set(kv[0], kv[1]), pairs)
    await store.close()
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", type=int, default=100_000, help="set messages per pass")
    opts = parser.parse_args(argv)
    if 0 in os.sched_getaffinity(0):
        os.sched_setaffinity(0, {0})
    with tempfile.TemporaryDirectory(prefix="objstore-setpath-") as tmp:
        results = asyncio.run(measure(opts.sets, Path(tmp) / "cache"))
    print(json.dumps({"objstore": str(Path(objstore.__file__).parent.parent)}))
    for name, ns in results.items():
        print(f"{name:28} {ns:8.0f} ns")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
