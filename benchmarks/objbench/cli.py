"""The command line: flags into one Options, then every scenario, round and server in turn.

Owns the order of runs (servers alternate from round to round), the temporary folders,
stopping everything on errors and Ctrl+C, repeating the whole invocation (--consecutive),
and writing the table and the JSON. The scenarios and the table's layout live elsewhere.
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
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from .config import DEFAULT_BUN, DEFAULT_REFERENCE, SERVERS, Options
from .procs import CLK_TCK, ROOT, BenchError, cpu_seconds, raise_nofile, stop_all
from .redis import RedisServer
from .report import progress_line, render_summary, render_table
from .results import Row, RunResult, build_rows
from .scenarios import REGISTRY, Ctx, Scenario

__all__ = ["main", "parse_args", "run_one"]

DESCRIPTION = "Benchmarks of objstore against the reference (the original's Bun server)."


def _parser(names: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="run.py", description=DESCRIPTION)
    parser.add_argument("--rounds", type=int, default=3, help="rounds per scenario (default 3)")
    parser.add_argument(
        "--scenarios",
        default=None,
        help=f"comma-separated, from {','.join(names)} (default all of the backend's)",
    )
    parser.add_argument(
        "--backend",
        choices=("files", "redis"),
        default="files",
        help="the store objstore runs on: files (default), or a fresh redis-server of each "
        "run's own (--redis), whose CPU time then counts as objstore's",
    )
    parser.add_argument(
        "--redis-server",
        default=shutil.which("redis-server"),
        help="redis-server for --backend redis (default: on PATH)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="1 round, smaller sizes: a fast check"
    )
    parser.add_argument(
        "--consecutive",
        type=int,
        default=1,
        help="repeat the whole invocation N times and say whether each target held in "
        "every one (default 1)",
    )
    parser.add_argument("--json", type=Path, help="save raw results to this file")
    parser.add_argument(
        "--reference",
        type=Path,
        default=DEFAULT_REFERENCE,
        help=f"run.sh of the reference server (default {DEFAULT_REFERENCE}, "
        "relative to the repository)",
    )
    parser.add_argument(
        "--bun",
        type=Path,
        default=DEFAULT_BUN,
        help=f"bun that runs the load generator (default {DEFAULT_BUN}, relative "
        "to the repository; else bun on PATH)",
    )
    parser.add_argument(
        "--python",
        default=None,
        help="Python that runs objstore (default .venv/bin/python of the "
        "repository if present, else this one)",
    )
    parser.add_argument(
        "--wrk",
        default=shutil.which("wrk"),
        help="wrk for the HTTP scenarios (default: on PATH; without it http uses the "
        "load generator's fetch loop, and the others fail)",
    )
    parser.add_argument("--server-cpu", type=int, default=0, help="CPU the servers run on (0)")
    parser.add_argument(
        "--client-cpu",
        type=int,
        default=1,
        help="CPU the load generator, wrk and this script run on (1)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folders")
    return parser


def parse_args(argv: Sequence[str] | None) -> Options:
    """The flags, checked and resolved; exits with a usage line on a mistake."""
    names = list(REGISTRY)
    parser = _parser(names)
    ns = parser.parse_args(argv)
    if ns.quick:
        ns.rounds = 1
    if ns.rounds < 1:
        parser.error("--rounds must be at least 1")
    if ns.consecutive < 1:
        parser.error("--consecutive must be at least 1")
    if ns.scenarios is None:
        scenarios = tuple(s.name for s in REGISTRY.values() if ns.backend in s.backends)
    else:
        scenarios = tuple(s.strip() for s in ns.scenarios.split(",") if s.strip())
    unknown = [s for s in scenarios if s not in REGISTRY]
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}; from {', '.join(names)}")
    elsewhere = [s for s in scenarios if ns.backend not in REGISTRY[s].backends]
    if elsewhere:
        parser.error(f"scenario(s) {', '.join(elsewhere)} do not run with --backend {ns.backend}")
    if ns.backend == "redis" and not ns.redis_server:
        parser.error("--backend redis needs redis-server; install it or give --redis-server")
    if not sys.platform.startswith("linux"):
        parser.error("Linux only: server CPU time and memory are read from /proc")
    reference = (ROOT / ns.reference).resolve()
    if not reference.is_file():
        parser.error(f"no reference server at {reference}; give --reference PATH/TO/run.sh")
    bun = (ROOT / ns.bun).resolve()
    if not bun.is_file():
        found = shutil.which("bun")
        if not found:
            parser.error(f"no bun at {bun} nor on PATH; give --bun")
        bun = Path(found)
    python = ns.python
    if python is None:
        venv = ROOT / ".venv" / "bin" / "python"
        python = str(venv) if venv.exists() else sys.executable
    server_cpu: int | None = ns.server_cpu
    client_cpu: int | None = ns.client_cpu
    cpus = os.sched_getaffinity(0)
    if not {ns.server_cpu, ns.client_cpu} <= cpus or ns.server_cpu == ns.client_cpu:
        print(
            f"warning: CPUs {ns.server_cpu} and {ns.client_cpu} are not two distinct CPUs "
            f"of this process ({sorted(cpus)}); running unpinned",
            file=sys.stderr,
        )
        server_cpu = client_cpu = None
    return Options(
        python=python,
        reference=reference,
        bun=bun,
        wrk=ns.wrk,
        server_cpu=server_cpu,
        client_cpu=client_cpu,
        scenarios=scenarios,
        rounds=ns.rounds,
        quick=ns.quick,
        consecutive=ns.consecutive,
        keep=ns.keep,
        json=ns.json,
        backend=ns.backend,
        redis_server=ns.redis_server,
    )


def run_one(sc: Scenario, kind: str, opts: Options, work: Path, rnd: int) -> RunResult:
    """One run of one scenario against one server; errors become the result's error."""
    work.mkdir(parents=True)
    result = RunResult(sc.name, kind, rnd)
    t0 = time.monotonic()
    redis: RedisServer | None = None
    try:
        companions: tuple[int, ...] = ()
        if opts.backend == "redis" and kind == "objstore":
            assert opts.redis_server is not None
            redis = RedisServer(opts.redis_server, work / "redis", opts.server_cpu)
            redis.start()
            opts = replace(opts, objstore_args=(*opts.objstore_args, "--redis", redis.url))
            companions = (redis.pid,)
            redis_before = cpu_seconds(redis.pid)
        ctx = Ctx(sc.name, kind, sc.sizes(opts.quick), opts, work, rnd, companions)
        result.values = sc.run(ctx)
        if redis is not None:
            # Its share, for the whole run: the per-operation figures include it already.
            result.values["redis_cpu_s"] = cpu_seconds(redis.pid) - redis_before
    except BenchError as exc:
        result.error = str(exc)
    except Exception as exc:  # a harness bug or an unexpected answer: report, go on
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        if redis is not None:
            redis.stop()
        stop_all()  # whatever a failed run left behind
        if not opts.keep:
            shutil.rmtree(work, ignore_errors=True)
    result.wall_s = round(time.monotonic() - t0, 2)
    return result


def run_invocation(opts: Options, top: Path, started: float) -> list[RunResult]:
    """Every chosen scenario, round by round, the servers alternating."""
    results: list[RunResult] = []
    for name in opts.scenarios:
        sc = REGISTRY[name]
        for rnd in range(1, opts.rounds + 1):
            order = sc.servers if rnd % 2 == 1 else sc.servers[::-1]
            for kind in order:
                result = run_one(sc, kind, opts, top / f"{name}-{kind}-{rnd}", rnd)
                results.append(result)
                print(
                    progress_line(time.monotonic() - started, result), file=sys.stderr, flush=True
                )
    return results


def _declared(opts: Options) -> list[tuple[str, tuple[Any, ...]]]:
    return [(name, REGISTRY[name].metrics) for name in REGISTRY if name in opts.scenarios]


def _grouped(results: Sequence[RunResult]) -> dict[str, dict[str, list[dict[str, Any]]]]:
    out: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for r in results:
        out.setdefault(r.scenario, {s: [] for s in SERVERS})[r.server].append(r.to_json())
    return out


def write_json(opts: Options, invocations: Sequence[tuple[list[RunResult], list[Row]]]) -> None:
    """The raw results: every run's values, and each invocation's table."""
    assert opts.json is not None
    doc: dict[str, Any] = {
        "quick": opts.quick,
        "rounds": opts.rounds,
        "consecutive": opts.consecutive,
        "sizes": {s: REGISTRY[s].sizes(opts.quick) for s in opts.scenarios},
        "clock_ticks_per_s": CLK_TCK,
        "backend": opts.backend,
    }
    if len(invocations) == 1:
        results, rows = invocations[0]
        doc["results"] = _grouped(results)
        doc["table"] = [asdict(r) for r in rows]
    else:
        doc["invocations"] = [
            {"results": _grouped(results), "table": [asdict(r) for r in rows]}
            for results, rows in invocations
        ]
    opts.json.write_text(json.dumps(doc, indent=2, default=str))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmarks; exit status 1 when a run failed, 130 on Ctrl+C."""
    opts = parse_args(argv)
    raise_nofile()
    if opts.client_cpu is not None:
        os.sched_setaffinity(0, {opts.client_cpu})

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    top = Path(tempfile.mkdtemp(prefix="objstore-bench-"))
    invocations: list[tuple[list[RunResult], list[Row]]] = []
    failures = 0
    started = time.monotonic()
    try:
        for i in range(opts.consecutive):
            results = run_invocation(opts, top / f"invocation-{i + 1}", started)
            failures += sum(r.error is not None for r in results)
            rows = build_rows(_declared(opts), results)
            invocations.append((results, rows))
            print()
            which = f" (invocation {i + 1} of {opts.consecutive})" if opts.consecutive > 1 else ""
            print(
                f"objstore vs reference, {'quick, ' if opts.quick else ''}{opts.rounds} round(s)"
                f"{which}; server on CPU {opts.server_cpu}, load on CPU {opts.client_cpu}"
                + (
                    "; objstore on a fresh redis-server (its CPU counted)"
                    * (opts.backend == "redis")
                )
            )
            print()
            print(render_table(rows, opts.rounds), flush=True)
    except KeyboardInterrupt:
        print("interrupted: stopping everything started", file=sys.stderr)
        return 130
    finally:
        stop_all()
        if not opts.keep:
            shutil.rmtree(top, ignore_errors=True)
        else:
            print(f"temporary folders kept in {top}", file=sys.stderr)
    if opts.consecutive > 1:
        print()
        print(f"Targets over {opts.consecutive} consecutive invocations")
        print()
        print(render_summary([rows for _, rows in invocations]))
    if opts.json:
        write_json(opts, invocations)
    return 1 if failures else 0
