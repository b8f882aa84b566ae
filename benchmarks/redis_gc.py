"""The share of an objstore instance's CPU that goes to Python's cyclic garbage collector.

    python benchmarks/redis_gc.py [--stores redis,files] [--gc on,off]
        [--scenario persist|acked] [--sets 40000] [--bun PATH/TO/bun]

For each store and each setting of the collector, starts one instance (on a redis-server of
its own, started as redis_scale.py starts it, or on a fresh cache folder) under a wrapper
that times every collection with ``gc.callbacks`` (or, with ``off``, disables the
collector), runs loadgen.ts's ``persist`` (8 connections pipelining plain sets) or
``acked`` scenario against it, stops it by its pid, and prints the sets per second, the
instance's CPU µs per set (/proc/PID/stat, from the start marker to the end marker) and the
collector's collections and seconds per generation. Instance on CPU 0, redis-server on CPU 0,
load generator on CPU 1, as redis_scale.py does by default.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis_scale
import run as bench

#: Runs objstore's main with every collection timed; argv: OUT_JSON GC_ON|GC_OFF ARGS...
_WRAPPER = """
import gc, json, sys, time
out, mode, args = sys.argv[1], sys.argv[2], sys.argv[3:]
stats = {g: [0, 0.0] for g in (0, 1, 2)}
began = [0.0]
def timed(phase, info):
    if phase == "start":
        began[0] = time.perf_counter()
    else:
        s = stats[info["generation"]]
        s[0] += 1
        s[1] += time.perf_counter() - began[0]
gc.callbacks.append(timed)
if mode == "off":
    gc.disable()
from objstore.cli import main
try:
    code = main(args)
finally:
    with open(out, "w") as f:
        json.dump(stats, f)
sys.exit(code)
"""


def run_once(store: str, collector: str, opts: argparse.Namespace, work: Path) -> dict[str, Any]:
    work.mkdir(parents=True)
    redis = None
    port = bench.free_port()
    args = ["--port", str(port), "--cache-dir", str(work / "cache"), "--log-level", "warning"]
    instance = None
    try:
        if store == "redis":
            redis = redis_scale.RedisServer(opts.redis_server, work / "redis", 0)
            redis.start()
            args += ["--redis", redis.url]
        stats_file = work / "gc.json"
        with open(work / "server.log", "wb") as log:
            instance = bench.spawn(
                [opts.python, "-c", _WRAPPER, str(stats_file), collector, *args],
                cpu=0,
                cwd=bench.ROOT,
                env={**os.environ, "PYTHONPATH": str(bench.ROOT)},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while not bench.ws_handshake(port):
            if instance.poll() is not None or time.monotonic() > deadline:
                raise bench.BenchError("the instance did not start")
            time.sleep(0.02)
        size = {"connections": 8, "keys": 1000, "sets": opts.sets}
        if opts.scenario == "acked":
            size["inflight"] = 16
        gen = bench.Loadgen(
            opts, opts.scenario, {"url": f"ws://127.0.0.1:{port}/ws", **size}, work
        )
        cpu: list[float] = []
        result: dict[str, Any] = {}
        try:
            for obj in gen.lines(300):
                marker = str(obj.get("phase") or obj.get("mark") or "")
                if marker in ("start", "end", "acked_start", "acked_end"):
                    cpu.append(bench.cpu_seconds(instance.pid))
                elif "scenario" in obj:
                    result = obj
                    break
        finally:
            gen.finish()
        if "sets_per_s" not in result or len(cpu) != 2:
            raise bench.BenchError(f"the load generator failed: {result or gen.stderr_tail()}")
        bench.stop(instance, signal.SIGTERM, 30)
        stats = json.loads(stats_file.read_text())
    finally:
        if instance is not None:
            bench.stop(instance)
        if redis is not None:
            redis.stop()
    cpu_s = cpu[1] - cpu[0]
    gc_s = sum(s[1] for s in stats.values())
    return {
        "sets_per_s": result["sets_per_s"],
        "cpu_us_per_set": cpu_s * 1e6 / opts.sets,
        "gc_collections": [stats[g][0] for g in ("0", "1", "2")],
        "gc_seconds": [round(stats[g][1], 3) for g in ("0", "1", "2")],
        "gc_share_of_cpu": gc_s / cpu_s if cpu_s else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stores", default="redis,files", help="redis, files or both")
    parser.add_argument("--gc", default="on,off", help="on, off or both")
    parser.add_argument("--scenario", default="persist", choices=("persist", "acked"))
    parser.add_argument("--sets", type=int, default=40_000)
    parser.add_argument("--redis-server", default=shutil.which("redis-server") or "redis-server")
    parser.add_argument("--bun", type=Path, default=bench.DEFAULT_BUN)
    parser.add_argument("--python", default=None)
    opts = parser.parse_args()
    bun = (bench.ROOT / opts.bun).resolve()
    opts.bun = bun if bun.is_file() else Path(shutil.which("bun") or "bun")
    if opts.python is None:
        venv = bench.ROOT / ".venv" / "bin" / "python"
        opts.python = str(venv) if venv.exists() else sys.executable
    opts.client_cpu = 1
    os.sched_setaffinity(0, {1})
    bench.raise_nofile()
    top = Path(tempfile.mkdtemp(prefix="objstore-redis-gc-"))
    print(f"{opts.scenario}, {opts.sets:,} sets; one instance on CPU 0, load on CPU 1")
    print()
    print(
        "| Store | Collector | Sets/s | Instance CPU µs per set | Collections (gen 0/1/2) "
        "| Collector's s (gen 0/1/2) | Collector's share of CPU |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    try:
        for store in opts.stores.split(","):
            for collector in opts.gc.split(","):
                r = run_once(store, collector, opts, top / f"{store}-{collector}")
                share = r["gc_share_of_cpu"]
                print(
                    f"| {store} | {collector} | {r['sets_per_s']:,} | {r['cpu_us_per_set']:.1f} "
                    f"| {'/'.join(map(str, r['gc_collections']))} "
                    f"| {'/'.join(map(str, r['gc_seconds']))} "
                    f"| {'' if share is None else f'{share:.0%}'} |",
                    flush=True,
                )
    finally:
        bench.stop_all()
        shutil.rmtree(top, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
