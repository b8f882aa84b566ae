"""objstore's benchmarks against the reference, as a package: `python benchmarks/run.py`.

procs (processes, /proc), servers, drivers (the load generator) and wrk run things;
results and report are pure; scenarios/ holds one module per family, each registering
its scenarios with their sizes and metrics; cli fills Options and runs them.
"""

from __future__ import annotations

from .cli import main

__all__ = ["main"]
