"""Several objstore instances on one Redis, against one instance on files, side by side.

    python benchmarks/redis_scale.py [--rounds 3] [--quick] [--json FILE]
        [--scenarios fanout,game,acked,persist]
        [--setups files,redis1,redis2,redis3,reference]
        [--redis-server PATH] [--redis-cpu N] [--reference PATH/TO/run.sh] [--bun PATH/TO/bun]

Linux only (it reads /proc). The setups: `files`, one objstore on a fresh cache folder (as in
run.py); `redis1`, `redis2` and `redis3`, one, two and three objstore instances given
``--redis redis://127.0.0.1:PORT/0`` of a redis-server started for the run (on a free
loopback port, in a temporary folder: AOF on with ``appendfsync everysec``, no snapshots,
``noeviction``); `reference`, the original's Bun server, in the scenarios it can run. Every
run starts its processes anew and stops them by their process ids. The load generator
(loadgen.ts) spreads its clients over the instances: client i on instance i mod N.

Pinning: the instances run on --server-cpu (0) and redis-server on --redis-cpu (the same by
default: the server side gets one CPU in every setup), the load generator and this script on
--client-cpu (1). Server CPU time is that of every instance and of redis-server, read at the
load generator's markers, summed and shown part by part: the run time of each process's live
threads from /proc/PID/task/*/schedstat (ns), and utime + stime from /proc/PID/stat (ticks of
10 ms, too coarse for the shorter phases) as a check. Within a scenario the
order of the setups is reversed from one round to the next. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import run as bench  # benchmarks/run.py: processes, /proc readers, the load generator
from objbench.redis import RedisServer

SCENARIOS = ("fanout", "game", "acked", "persist")


@dataclass(frozen=True)
class Setup:
    """One way of serving the store: which server, how many instances, on Redis or not."""

    name: str
    label: str
    kind: str  # "objstore" or "reference"
    instances: int
    redis: bool


SETUPS = {
    s.name: s
    for s in (
        Setup("files", "1 on files", "objstore", 1, False),
        Setup("redis1", "1 on Redis", "objstore", 1, True),
        Setup("redis2", "2 on Redis", "objstore", 2, True),
        Setup("redis3", "3 on Redis", "objstore", 3, True),
        Setup("reference", "reference", "reference", 1, False),
    )
}
#: The scenarios the reference has a counterpart of (it has no acknowledged WebSocket set).
REFERENCE_SCENARIOS = ("fanout", "game", "persist")

FULL = {
    "fanout": {"subscribers": 1000, "sets": 1000},
    "game": {"clients": 50, "keys": 50, "rate": 30, "seconds": 3},
    "acked": {"connections": 8, "inflight": 16, "keys": 1000, "sets": 20_000},
    "persist": {"connections": 8, "keys": 1000, "sets": 30_000},
}
QUICK = {
    "fanout": {"subscribers": 1000, "sets": 30},
    "game": {"clients": 50, "keys": 50, "rate": 30, "seconds": 1},
    "acked": {"connections": 8, "inflight": 16, "keys": 1000, "sets": 3_000},
    "persist": {"connections": 8, "keys": 1000, "sets": 5_000},
}


# --- redis-server ---------------------------------------------------------------------------


#: The shared store's Redis as deployed: an append-only file flushed every second.
DEPLOYED_PERSISTENCE = (
    "--appendonly",
    "yes",
    "--appendfsync",
    "everysec",
    "--save",
    "",
    "--maxmemory-policy",
    "noeviction",
)


# --- a setup's processes --------------------------------------------------------------------


class Cluster:
    """The processes of one setup: its instances (or the reference) and its Redis, if any."""

    def __init__(self, setup: Setup, opts: argparse.Namespace, work: Path) -> None:
        self.setup = setup
        self.redis = (
            RedisServer(opts.redis_server, work / "redis", opts.redis_cpu, DEPLOYED_PERSISTENCE)
            if setup.redis
            else None
        )
        self.servers: list[bench.Server] = []
        self.opts = opts
        self.work = work

    def start(self) -> None:
        extra: tuple[str, ...] = ()
        if self.redis is not None:
            self.redis.start()
            extra = ("--redis", self.redis.url)
        for i in range(self.setup.instances):
            server = bench.Server(
                self.setup.kind,
                self.work / f"cache{i + 1}",
                self.opts,
                self.work / f"server{i + 1}.log",
                extra_args=extra,
            )
            self.servers.append(server)
            server.start()
        for server in self.servers:
            server.wait_ready()

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
        if self.redis is not None:
            self.redis.stop()

    @property
    def url(self) -> str:
        """The WebSocket URLs of the instances, comma-separated, for loadgen.ts's --url."""
        return ",".join(f"ws://127.0.0.1:{s.port}/ws" for s in self.servers)

    def parts(self) -> dict[str, int]:
        """Process id of each part: objstore1.. (or reference), and redis."""
        pids = {
            f"{s.kind}{i + 1}" if s.kind == "objstore" else s.kind: s.pid
            for i, s in enumerate(self.servers)
        }
        if self.redis is not None:
            pids["redis"] = self.redis.pid
        return pids

    def sample(self) -> dict[str, tuple[float, float | None]]:
        """CPU seconds of every part: (/proc/PID/stat ticks, schedstat of its live threads)."""
        out: dict[str, tuple[float, float | None]] = {}
        for name, pid in self.parts().items():
            try:
                out[name] = (bench.cpu_seconds(pid), bench.sched_seconds(pid))
            except OSError:
                raise bench.BenchError(f"{name} died: {self.log_tail()}") from None
        return out

    def log_tail(self) -> str:
        tails = [f"{s.kind} {i + 1}: {s.log_tail(300)}" for i, s in enumerate(self.servers)]
        if self.redis is not None:
            tails.append(f"redis: {self.redis.log_tail(300)}")
        return "; ".join(tails)

    def log_errors(self) -> dict[str, Any]:
        counts = [s.log_errors() for s in self.servers]
        last = [text for _, text in counts if text]
        return {
            "server_log_errors": sum(n for n, _ in counts),
            "server_log_last_error": last[-1] if last else "",
        }


@contextmanager
def running(setup: Setup, opts: argparse.Namespace, work: Path) -> Iterator[Cluster]:
    cluster = Cluster(setup, opts, work)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


Sample = dict[str, tuple[float, float | None]]


def measure(
    cluster: Cluster, gen: bench.Loadgen, timeout: float
) -> tuple[dict[str, Any], Sample, Sample]:
    """Run the load generator to its result line; return it and the CPU samples taken at its
    start and end markers ({"phase": "start"|"end"}, or {"mark": "..._start"|"..._end"})."""
    start: Sample | None = None
    end: Sample | None = None
    result: dict[str, Any] | None = None
    own: list[float] = [0.0, 0.0, 0.0, 0.0]  # load generator CPU and wall clock at both markers
    try:
        for obj in gen.lines(timeout):
            marker = str(obj.get("phase") or obj.get("mark") or "")
            if marker in ("start", "end") or marker.endswith(("_start", "_end")):
                at = 0 if marker.endswith("start") else 1
                if at == 0:
                    start = cluster.sample()
                else:
                    end = cluster.sample()
                with suppress(OSError):
                    own[at], own[at + 2] = bench.cpu_seconds(gen.proc.pid), time.monotonic()
            elif "scenario" in obj:
                result = obj
                break
    finally:
        code = gen.finish()
    if result is None:
        raise bench.BenchError(
            f"the load generator printed no result (exit {code}); stderr: {gen.stderr_tail()}; "
            f"{cluster.log_tail()}"
        )
    if "error" in result:
        raise bench.BenchError(f"load generator: {result['error']}; {cluster.log_tail()}")
    if start is None or end is None:
        raise bench.BenchError("the load generator printed no start and end markers")
    if own[3] > own[2]:
        # Busy fraction of the load generator's CPU: near 1, the client is the bound.
        result["loadgen_cpu_fraction"] = round((own[1] - own[0]) / (own[3] - own[2]), 3)
    return result, start, end


def cpu_fields(start: Sample, end: Sample, ops: float, unit: str) -> dict[str, Any]:
    """µs of CPU per operation: all parts (`cpu_us_per_UNIT`), the instances together
    (`inst_us_per_UNIT`) and Redis (`redis_us_per_UNIT`), from schedstat (ns: the phases are
    short for 10 ms ticks); the CPU seconds of each part; and the total again from the
    ticks of /proc/PID/stat, as a check (`cpu_us_per_UNIT_ticks`)."""
    parts: dict[str, float] = {}
    for name in end:
        (t0, s0), (t1, s1) = start[name], end[name]
        parts[name] = s1 - s0 if s0 is not None and s1 is not None else t1 - t0
    ticks = sum(end[name][0] - start[name][0] for name in end)
    instances = sum(v for name, v in parts.items() if name != "redis")
    return {
        f"cpu_us_per_{unit}": bench.per_op_us(sum(parts.values()), ops),
        f"inst_us_per_{unit}": bench.per_op_us(instances, ops),
        f"redis_us_per_{unit}": bench.per_op_us(parts["redis"], ops) if "redis" in parts else None,
        f"cpu_us_per_{unit}_ticks": bench.per_op_us(ticks, ops),
        "cpu_s_parts": {name: round(v, 4) for name, v in parts.items()},
    }


# --- scenarios ------------------------------------------------------------------------------


def scenario_fanout(
    setup: Setup, size: dict[str, int], opts: argparse.Namespace, work: Path
) -> dict[str, Any]:
    with running(setup, opts, work) as cluster:
        gen = bench.Loadgen(opts, "fanout", {"url": cluster.url, **size}, work)
        result, t0, t1 = measure(cluster, gen, timeout=300)
        errors = cluster.log_errors()
    return {
        "deliveries_per_s": result["deliveries_per_s"],
        **cpu_fields(t0, t1, result["deliveries"], "delivery"),
        "all_last": bool(result["all_last"]),
        "loadgen_cpu_fraction": result.get("loadgen_cpu_fraction"),
        "deliveries": result["deliveries"],
        "elapsed_s": result["elapsed"],
        "loadgen": result,
        **errors,
    }


def scenario_game(
    setup: Setup, size: dict[str, int], opts: argparse.Namespace, work: Path
) -> dict[str, Any]:
    with running(setup, opts, work) as cluster:
        gen = bench.Loadgen(opts, "game", {"url": cluster.url, **size}, work)
        result, t0, t1 = measure(cluster, gen, timeout=size["seconds"] + 120)
        errors = cluster.log_errors()
    return {
        "p50_ms": result["p50_ms"],
        "p99_ms": result["p99_ms"],
        "max_ms": result["max_ms"],
        "all_delivered": bool(result["all_delivered"]),
        **cpu_fields(t0, t1, result["received"], "delivery"),
        "loadgen": result,
        **errors,
    }


def scenario_acked(
    setup: Setup, size: dict[str, int], opts: argparse.Namespace, work: Path
) -> dict[str, Any]:
    with running(setup, opts, work) as cluster:
        gen = bench.Loadgen(opts, "acked", {"url": cluster.url, **size}, work)
        result, t0, t1 = measure(cluster, gen, timeout=600)
        errors = cluster.log_errors()
    if result["failed"]:
        raise bench.BenchError(f"{result['failed']} acknowledged sets failed: {result}")
    return {
        "sets_per_s": result["sets_per_s"],
        "p50_ms": result["p50_ms"],
        "p99_ms": result["p99_ms"],
        **cpu_fields(t0, t1, result["sets"], "set"),
        "loadgen_cpu_fraction": result.get("loadgen_cpu_fraction"),
        "loadgen": result,
        **errors,
    }


def scenario_persist(
    setup: Setup, size: dict[str, int], opts: argparse.Namespace, work: Path
) -> dict[str, Any]:
    expect_file = work / "expect.json"
    with running(setup, opts, work) as cluster:
        gen = bench.Loadgen(
            opts, "persist", {"url": cluster.url, **size, "expect": expect_file}, work
        )
        result, t0, _ = measure(cluster, gen, timeout=600)
        # Count the writes that go on after the last reply (the file store writes behind):
        # until the CPU time of all parts moves by a tick at most in 0.3 s (at most 10 s).
        settled = cluster.sample()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            time.sleep(0.3)
            now = cluster.sample()
            moved = sum(now[n][0] - settled[n][0] for n in now)
            settled = now
            if moved <= 1.5 / bench.CLK_TCK:
                break
        # Every key's last value, read from every instance (each answers from its own copy).
        expected: dict[str, Any] = json.loads(expect_file.read_text())
        mismatches = 0
        for server in cluster.servers:
            found = bench.get_many(server.port, list(expected))
            mismatches += sum(found.get(k) != v for k, v in expected.items())
        errors = cluster.log_errors()
    return {
        "sets_per_s": result["sets_per_s"],
        **cpu_fields(t0, settled, result["sets"], "set"),
        "keys_ok": mismatches == 0,
        "mismatches": mismatches,
        "loadgen": result,
        **errors,
    }


RUNS: dict[str, Callable[[Setup, dict[str, int], argparse.Namespace, Path], dict[str, Any]]] = {
    "fanout": scenario_fanout,
    "game": scenario_game,
    "acked": scenario_acked,
    "persist": scenario_persist,
}


# --- the table ------------------------------------------------------------------------------

#: (scenario, field, label)
METRICS: list[tuple[str, str, str]] = [
    ("fanout", "deliveries_per_s", "fanout: deliveries per second (1,000 subscribers)"),
    ("fanout", "cpu_us_per_delivery", "fanout: server CPU µs per delivery, all parts"),
    ("fanout", "inst_us_per_delivery", "fanout: the same, the instances"),
    ("fanout", "redis_us_per_delivery", "fanout: the same, Redis"),
    ("fanout", "cpu_us_per_delivery_ticks", "fanout: all parts, from ticks (check)"),
    ("fanout", "loadgen_cpu_fraction", "fanout: the load generator's CPU busy fraction"),
    ("fanout", "all_last", "fanout: every subscriber got the last value"),
    ("game", "p50_ms", "game: p50 latency, ms"),
    ("game", "p99_ms", "game: p99 latency, ms"),
    ("game", "all_delivered", "game: every update delivered"),
    ("game", "cpu_us_per_delivery", "game: server CPU µs per delivery, all parts"),
    ("game", "redis_us_per_delivery", "game: the same, Redis"),
    ("game", "cpu_us_per_delivery_ticks", "game: all parts, from ticks (check)"),
    ("acked", "sets_per_s", "acked: sets per second (8 connections x 16 in flight, with id)"),
    ("acked", "p50_ms", "acked: p50 latency, ms"),
    ("acked", "p99_ms", "acked: p99 latency, ms"),
    ("acked", "cpu_us_per_set", "acked: server CPU µs per set, all parts"),
    ("acked", "inst_us_per_set", "acked: the same, the instances"),
    ("acked", "redis_us_per_set", "acked: the same, Redis"),
    ("acked", "cpu_us_per_set_ticks", "acked: all parts, from ticks (check)"),
    ("persist", "sets_per_s", "persist: plain sets per second (8 connections, pipelined)"),
    ("persist", "cpu_us_per_set", "persist: server CPU µs per set, all parts (writes included)"),
    ("persist", "inst_us_per_set", "persist: the same, the instances"),
    ("persist", "redis_us_per_set", "persist: the same, Redis"),
    ("persist", "cpu_us_per_set_ticks", "persist: all parts, from ticks (check)"),
    ("persist", "keys_ok", "persist: every key's last value on every instance"),
]


def render_table(
    results: dict[str, dict[str, list[dict[str, Any]]]], setups: list[str], rounds: int
) -> str:
    """Medians over rounds, one column per setup, then each Redis setup's ratio to `files`."""
    ratio_of = [s for s in setups if SETUPS[s].redis] if "files" in setups else []
    head = ["Metric", *(SETUPS[s].label for s in setups)]
    head += [f"{SETUPS[s].label} / 1 on files" for s in ratio_of]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(" --- " for _ in head) + "|"]
    for scenario, field, label in METRICS:
        if scenario not in results:
            continue
        med: dict[str, Any] = {}
        cells = []
        for s in setups:
            runs = results[scenario].get(s)
            if runs is None:
                med[s] = None
                cells.append("")
                continue
            med[s] = bench.summarize([r.get(field) for r in runs if "error" not in r])
            failed = sum("error" in r for r in runs)
            cells.append(bench.fmt(med[s]) + (f" ({failed} failed)" if failed else ""))
        for s in ratio_of:
            a, b = med.get(s), med.get("files")
            numbers = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (a, b))
            cells.append(f"{a / b:.2f}" if numbers and b else "")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return f"median of {rounds} round(s)\n\n" + "\n".join(lines)


# --- main -----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds per scenario (default 3)")
    parser.add_argument("--quick", action="store_true", help="1 round, small sizes: a check")
    parser.add_argument(
        "--scenarios", default=",".join(SCENARIOS), help=f"from {','.join(SCENARIOS)} (all)"
    )
    parser.add_argument(
        "--setups", default=",".join(SETUPS), help=f"from {','.join(SETUPS)} (all)"
    )
    parser.add_argument("--json", type=Path, help="save raw results to this file")
    parser.add_argument(
        "--redis-server",
        default=shutil.which("redis-server") or "/usr/bin/redis-server",
        help="the redis-server program (default: on PATH)",
    )
    parser.add_argument(
        "--reference",
        type=Path,
        default=bench.DEFAULT_REFERENCE,
        help=f"run.sh of the reference server (default {bench.DEFAULT_REFERENCE}, relative "
        "to the repository)",
    )
    parser.add_argument(
        "--bun",
        type=Path,
        default=bench.DEFAULT_BUN,
        help=f"bun that runs the load generator (default {bench.DEFAULT_BUN}, else on PATH)",
    )
    parser.add_argument("--python", default=None, help="Python that runs objstore")
    parser.add_argument("--server-cpu", type=int, default=0, help="CPU of the instances (0)")
    parser.add_argument(
        "--redis-cpu", type=int, default=None, help="CPU of redis-server (default: --server-cpu)"
    )
    parser.add_argument(
        "--client-cpu", type=int, default=1, help="CPU of the load generator and this script (1)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folders")
    opts = parser.parse_args(argv)
    if opts.quick:
        opts.rounds = 1
    if opts.rounds < 1:
        parser.error("--rounds must be at least 1")
    opts.scenarios = [s.strip() for s in opts.scenarios.split(",") if s.strip()]
    opts.setups = [s.strip() for s in opts.setups.split(",") if s.strip()]
    for name, given, known in (
        ("scenario", opts.scenarios, SCENARIOS),
        ("setup", opts.setups, tuple(SETUPS)),
    ):
        unknown = [s for s in given if s not in known]
        if unknown:
            parser.error(f"unknown {name}(s) {', '.join(unknown)}; from {', '.join(known)}")
    if not sys.platform.startswith("linux"):
        parser.error("Linux only: CPU time is read from /proc")
    if any(SETUPS[s].redis for s in opts.setups) and not os.access(opts.redis_server, os.X_OK):
        parser.error(f"no redis-server at {opts.redis_server}; give --redis-server")
    opts.reference = (bench.ROOT / opts.reference).resolve()
    if "reference" in opts.setups and not opts.reference.is_file():
        parser.error(f"no reference server at {opts.reference}; give --reference PATH/TO/run.sh")
    bun = (bench.ROOT / opts.bun).resolve()
    if not bun.is_file():
        found = shutil.which("bun")
        if not found:
            parser.error(f"no bun at {bun} nor on PATH; give --bun")
        bun = Path(found)
    opts.bun = bun
    if opts.python is None:
        venv = bench.ROOT / ".venv" / "bin" / "python"
        opts.python = str(venv) if venv.exists() else sys.executable
    if opts.redis_cpu is None:
        opts.redis_cpu = opts.server_cpu
    cpus = os.sched_getaffinity(0)
    wanted = {opts.server_cpu, opts.redis_cpu, opts.client_cpu}
    if not wanted <= cpus or opts.server_cpu == opts.client_cpu:
        print(
            f"warning: CPUs {sorted(wanted)} are not all of {sorted(cpus)}; running unpinned",
            file=sys.stderr,
        )
        opts.server_cpu = opts.redis_cpu = opts.client_cpu = None
    return opts


def run_one(
    scenario: str, setup: Setup, size: dict[str, int], opts: argparse.Namespace, work: Path
) -> dict[str, Any]:
    """One run of one scenario on one setup; errors become {"error": ...}."""
    work.mkdir()
    t0 = time.monotonic()
    try:
        result = RUNS[scenario](setup, size, opts, work)
    except bench.BenchError as exc:
        result = {"error": str(exc)}
    except Exception as exc:  # a harness bug or an unexpected answer: report, go on
        result = {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        bench.stop_all()
        if not opts.keep:
            shutil.rmtree(work, ignore_errors=True)
    result["wall_s"] = round(time.monotonic() - t0, 2)
    return result


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    sizes = QUICK if opts.quick else FULL
    bench.raise_nofile()
    if opts.client_cpu is not None:
        os.sched_setaffinity(0, {opts.client_cpu})

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    top = Path(tempfile.mkdtemp(prefix="objstore-redis-bench-"))
    results: dict[str, dict[str, list[dict[str, Any]]]] = {}
    failures = 0
    started = time.monotonic()
    try:
        for scenario in opts.scenarios:
            setups = [
                s for s in opts.setups if s != "reference" or scenario in REFERENCE_SCENARIOS
            ]
            results[scenario] = {s: [] for s in setups}
            for rnd in range(opts.rounds):
                for name in setups if rnd % 2 == 0 else setups[::-1]:
                    work = top / f"{scenario}-{name}-{rnd + 1}"
                    result = run_one(scenario, SETUPS[name], sizes[scenario], opts, work)
                    result["round"] = rnd + 1
                    failures += "error" in result
                    results[scenario][name].append(result)
                    print(
                        f"[{time.monotonic() - started:6.0f} s] {scenario} round {rnd + 1} "
                        f"{name}: {bench.brief(result)}",
                        file=sys.stderr,
                        flush=True,
                    )
    except KeyboardInterrupt:
        print("interrupted: stopping everything started", file=sys.stderr)
        return 130
    finally:
        bench.stop_all()
        if not opts.keep:
            shutil.rmtree(top, ignore_errors=True)
        else:
            print(f"temporary folders kept in {top}", file=sys.stderr)
    print()
    print(
        f"objstore instances on files and on Redis, {'quick, ' if opts.quick else ''}"
        f"{opts.rounds} round(s); instances on CPU {opts.server_cpu}, redis-server on CPU "
        f"{opts.redis_cpu}, load on CPU {opts.client_cpu}"
    )
    print()
    print(render_table(results, opts.setups, opts.rounds))
    print(f"\n{time.monotonic() - started:.0f} s in all")
    if opts.json:
        opts.json.write_text(
            json.dumps(
                {
                    "quick": opts.quick,
                    "rounds": opts.rounds,
                    "sizes": {s: sizes[s] for s in opts.scenarios},
                    "pinning": {
                        "instances": opts.server_cpu,
                        "redis": opts.redis_cpu,
                        "load": opts.client_cpu,
                    },
                    "results": results,
                },
                indent=2,
                default=str,
            )
        )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
