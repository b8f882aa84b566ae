"""Benchmarks of objstore against the reference (the original's Bun server), same protocol.

    python benchmarks/run.py [--rounds 3] [--quick] [--consecutive 1] [--json FILE]
        [--scenarios fanout100,fanout1000,game,persist,idle,startup,connect,reconnect,
                     http,http_post,rest,sse,prefix10k,acked,acked_sync,acked_memory]
        [--reference PATH/TO/run.sh] [--bun PATH/TO/bun]

Linux only (it reads /proc). Every server is started fresh, on a free port of 127.0.0.1 and
with a fresh temporary cache folder, pinned to one CPU (--server-cpu, 0); the load generator
(benchmarks/loadgen.ts, run by Bun) and wrk are pinned to another (--client-cpu, 1), and so is
this script. Within a scenario the servers alternate: objstore then reference in round 1,
reference then objstore in round 2, and so on. See benchmarks/README.md.

The code is the package benchmarks/objbench; this file is its entry, and keeps the names
other benchmark scripts import from it (`import run as bench`).
"""

from __future__ import annotations

import sys

from objbench.cli import main
from objbench.config import DEFAULT_BUN, DEFAULT_REFERENCE, SERVERS
from objbench.drivers import Loadgen, measure_marks, measure_phase, per_op_us
from objbench.procs import (
    CLK_TCK,
    ROOT,
    BenchError,
    cpu_seconds,
    free_port,
    main_thread_seconds,
    raise_nofile,
    rss_kib,
    sched_seconds,
    spawn,
    stop,
    stop_all,
)
from objbench.report import brief
from objbench.results import fmt, summarize
from objbench.servers import Server, get_many, running, ws_handshake

__all__ = [
    "CLK_TCK",
    "DEFAULT_BUN",
    "DEFAULT_REFERENCE",
    "ROOT",
    "SERVERS",
    "BenchError",
    "Loadgen",
    "Server",
    "brief",
    "cpu_seconds",
    "fmt",
    "free_port",
    "get_many",
    "main",
    "main_thread_seconds",
    "measure_marks",
    "measure_phase",
    "per_op_us",
    "raise_nofile",
    "rss_kib",
    "running",
    "sched_seconds",
    "spawn",
    "stop",
    "stop_all",
    "summarize",
    "ws_handshake",
]

#: The name the scripts written before the package call.
_raise_nofile = raise_nofile

if __name__ == "__main__":
    sys.exit(main())
