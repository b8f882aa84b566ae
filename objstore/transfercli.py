"""The command lines ``objstore import DIR`` and ``objstore export DIR``.

Owns their flags, the lines they print and their exit codes (those of
:mod:`objstore.cli`: 0 done, 2 bad flags, 3 when Redis cannot be reached or
the folder cannot be used, with one line on stderr). The moves themselves
are :mod:`objstore.transfer`'s. :func:`objstore.cli.main` hands argv over
when its first argument is ``import`` or ``export``; the server's own
command line is untouched.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from . import transfer
from .cli import OK, STARTUP_FAILURE
from .errors import StartupError
from .logformat import formatter
from .redislink import MISSING_LIBRARY, describe_url, parse_url

__all__ = ["COMMANDS", "main"]

#: The first arguments that name a transfer rather than the server's flags.
COMMANDS = ("import", "export")


def _build_parser(command: str, env: Mapping[str, str]) -> argparse.ArgumentParser:
    if command == "import":
        description = (
            "Copy every key of a cache folder (values and deadlines) into a Redis store. "
            "The folder is only read. Ephemeral keys are never in a folder; keys whose "
            "deadline has passed are skipped."
        )
    else:
        description = (
            "Write every key of a Redis store (values and deadlines) into a new cache "
            "folder, which a file-store objstore then serves with --cache-dir. Ephemeral "
            "keys (presence of live connections) are left out."
        )
    parser = argparse.ArgumentParser(prog=f"objstore {command}", description=description)
    parser.add_argument(
        "dir",
        metavar="DIR",
        help="the cache folder to read"
        if command == "import"
        else "the folder to write: new, or empty",
    )
    parser.add_argument(
        "--redis",
        metavar="URL",
        default=env.get("REDIS_URL") or None,
        help="the Redis or Valkey store, as for objstore --redis: "
        "redis://[:password@]host:6379/0 (REDIS_URL)",
    )
    if command == "import":
        parser.add_argument(
            "--overwrite",
            action="store_true",
            help="import into a store that already holds keys: keys of the same name are "
            "replaced, the others kept (without it, a store with keys is refused)",
        )
    return parser


def main(argv: Sequence[str], env: Mapping[str, str] | None = None) -> int:
    """Run ``objstore import|export`` from *argv* (its first item the command); returns the
    exit code. Exits with 2 (argparse) on bad flags."""
    env = os.environ if env is None else env
    command, rest = argv[0], list(argv[1:])
    parser = _build_parser(command, env)
    args = parser.parse_args(rest)
    if args.redis is None:
        parser.error("--redis URL (or REDIS_URL) is needed: the Redis store to use")
    try:
        parse_url(args.redis)
    except ValueError as exc:
        parser.error(f"--redis: {exc}")
    _setup_logging()
    folder = Path(args.dir)
    if importlib.util.find_spec("redis") is None:
        print(f"objstore: {MISSING_LIBRARY}", file=sys.stderr, flush=True)
        return STARTUP_FAILURE
    where = f"the Redis store at {describe_url(args.redis)}"
    try:
        if command == "import":
            report = asyncio.run(
                transfer.import_folder(args.redis, folder, overwrite=args.overwrite)
            )
            moved = f"imported {folder} into {where}"
        else:
            report = asyncio.run(transfer.export_store(args.redis, folder))
            moved = f"exported {where} to {folder}"
    except StartupError as exc:
        print(f"objstore: {exc}", file=sys.stderr, flush=True)
        return STARTUP_FAILURE
    except KeyboardInterrupt:
        print(f"objstore: {command} interrupted; run it again", file=sys.stderr, flush=True)
        return STARTUP_FAILURE
    for name, reason in report.unreadable:
        print(f"objstore: skipped {name}: {reason}", file=sys.stderr)
    print(report.summary(moved), flush=True)
    return OK


def _setup_logging() -> None:
    """Warnings and errors only, on stderr: the summary is the command's output."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter("text"))
    root = logging.getLogger("objstore")
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    root.propagate = False
