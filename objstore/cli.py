"""The command line: flags and environment into a Config, logging, the banner, exit codes.

Owns argument parsing and process concerns (signals, exit codes, what a user
sees at start). It only fills :class:`~objstore.config.Config`; the server is
started by :func:`run`. ``main(argv)`` is testable without a subprocess.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from . import __version__, jsonvalues
from .config import (
    DEFAULT_HOST,
    DEFAULT_MAX_SIZE,
    DEFAULT_PORT,
    DURABILITY_MODES,
    Config,
    default_cache_dir,
)
from .console import pause_if_double_clicked
from .errors import StartupError, describe
from .fdlimit import WANTED_OPEN_FILES, raise_open_file_limit
from .logformat import LOG_FORMATS, formatter
from .origins import ANY_ORIGIN, is_loopback_host, normalize_allowed_origin
from .server import ObjstoreServer

__all__ = [
    "DATA_NOT_SAVED",
    "OK",
    "STARTUP_FAILURE",
    "USAGE_ERROR",
    "main",
    "parse_config",
    "run",
]

OK = 0
#: Bad flags or environment variables (argparse's own code).
USAGE_ERROR = 2
#: The server could not start: port in use, cache folder not writable or in use by
#: another objstore.
STARTUP_FAILURE = 3
#: A bug: an error objstore did not expect.
INTERNAL_ERROR = 1
#: Stopped, but the latest values of some keys could not be written to the cache
#: folder (a full disk, a folder that cannot be created): they are lost.
DATA_NOT_SAVED = 4
#: How many of the keys that could not be written are named in the log.
_KEYS_NAMED = 5

_LOG_LEVELS = ("debug", "info", "warning", "error")
logger = logging.getLogger("objstore")


def _build_parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="objstore",
        description=(
            "A realtime key-value store with pub/sub over WebSocket. "
            "Each flag can also be set by the environment variable named in its help."
        ),
    )
    parser.add_argument("--version", action="version", version=f"objstore {__version__}")
    parser.add_argument(
        "--host",
        default=env.get("HOST", DEFAULT_HOST),
        help="address to listen on; 0.0.0.0 shares on your network "
        f"(HOST, default {DEFAULT_HOST})",
    )
    parser.add_argument(
        "--port",
        default=env.get("PORT", str(DEFAULT_PORT)),
        help=f"port to listen on; 0 picks a free one (PORT, default {DEFAULT_PORT})",
    )
    parser.add_argument(
        "--cache-dir",
        default=env.get("CACHE_DIR") or None,
        help="folder holding one JSON file per key (CACHE_DIR, default .cache next to the "
        "executable, or in the working directory when run from source)",
    )
    parser.add_argument(
        "--max-size",
        default=env.get("MAX_SIZE", str(DEFAULT_MAX_SIZE)),
        help="largest WebSocket message or HTTP body accepted, in bytes "
        f"(MAX_SIZE, default {DEFAULT_MAX_SIZE}, 16 MiB)",
    )
    parser.add_argument(
        "--log-level",
        default=env.get("LOG_LEVEL", "info").lower(),
        help=f"one of {', '.join(_LOG_LEVELS)}; debug shows every message "
        "(LOG_LEVEL, default info)",
    )
    parser.add_argument(
        "--allow-origin",
        action="append",
        metavar="ORIGIN",
        help="let web pages from ORIGIN (like http://localhost:5173; * for any, null for "
        "file:// pages) use the store; pages served by objstore itself always may; "
        "repeat for more (ALLOW_ORIGIN, comma-separated, default none)",
    )
    parser.add_argument(
        "--token",
        default=env.get("OBJSTORE_TOKEN") or None,
        help="a token with every right; clients without it may then do nothing (unless "
        "--auth says otherwise); prefer the environment variable, which other users of "
        "this machine cannot see (OBJSTORE_TOKEN, default none: no access control)",
    )
    parser.add_argument(
        "--auth",
        metavar="FILE",
        default=env.get("OBJSTORE_AUTH") or None,
        help="a permissions file (TOML): named tokens with read and write rules by key "
        "prefix, and what clients without a token may do; reloaded when it changes "
        "(OBJSTORE_AUTH, default none)",
    )
    parser.add_argument(
        "--log-format",
        default=env.get("OBJSTORE_LOG_FORMAT", "text").lower(),
        help="text, or json for one JSON object per line (OBJSTORE_LOG_FORMAT, default text)",
    )
    parser.add_argument(
        "--metrics-token",
        default=env.get("OBJSTORE_METRICS_TOKEN") or None,
        help="require Authorization: Bearer TOKEN to read GET /metrics "
        "(OBJSTORE_METRICS_TOKEN, default none: anyone who may reach the server may)",
    )
    parser.add_argument(
        "--tls-cert",
        metavar="FILE",
        default=env.get("OBJSTORE_TLS_CERT") or None,
        help="serve wss:// and https:// with this PEM certificate chain (like Let's Encrypt's "
        "fullchain.pem); needs --tls-key (OBJSTORE_TLS_CERT, default none: ws:// and http://)",
    )
    parser.add_argument(
        "--tls-key",
        metavar="FILE",
        default=env.get("OBJSTORE_TLS_KEY") or None,
        help="the PEM private key of --tls-cert (like privkey.pem), without a passphrase "
        "(OBJSTORE_TLS_KEY)",
    )
    parser.add_argument(
        "--durability",
        default=env.get("OBJSTORE_DURABILITY", "async").lower(),
        help="memory: no files, everything is lost at a stop; async: written to the cache "
        "folder just after the set; sync: each write is flushed to disk (fsync) before it "
        "is acknowledged or sent to subscribers (OBJSTORE_DURABILITY, default async)",
    )
    parser.add_argument(
        "--redis",
        metavar="URL",
        default=env.get("REDIS_URL") or None,
        help="keep the store in Redis or Valkey instead of the cache folder, shared by every "
        "objstore given the same URL: redis://[:password@]host:6379/0, rediss:// for TLS, "
        "redis+sentinel://host:26379,host2:26379/mymaster/0 to follow a Sentinel-watched "
        "primary (REDIS_URL, default none)",
    )
    parser.add_argument(
        "--redis-replicas",
        metavar="N",
        default=env.get("OBJSTORE_REDIS_REPLICAS", "0"),
        help="with --redis, acknowledge a write only once N replicas of the Redis primary "
        "have it (Redis WAIT, 1 s at most; else the write fails with code storage), so that "
        "a failover loses no acknowledged write (OBJSTORE_REDIS_REPLICAS, default 0)",
    )
    return parser


def _allowed_origins(
    parser: argparse.ArgumentParser, flags: list[str] | None, env: Mapping[str, str]
) -> tuple[str, ...]:
    values = flags if flags is not None else env.get("ALLOW_ORIGIN", "").split(",")
    origins: list[str] = []
    for value in values:
        if flags is None and not value.strip():
            continue  # ALLOW_ORIGIN="" or a stray comma
        try:
            origin = normalize_allowed_origin(value)
        except ValueError as exc:
            parser.error(f"--allow-origin {exc}")
        if origin not in origins:
            origins.append(origin)
    return tuple(origins)


def _whole_number(
    parser: argparse.ArgumentParser, name: str, text: str, low: int, high: int
) -> int:
    try:
        number = int(text)
    except ValueError:
        number = low - 1
    if not low <= number <= high:
        parser.error(f"{name} must be a whole number from {low} to {high}, got {text!r}")
    return number


def parse_config(
    argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None
) -> Config:
    """Build the Config from *argv* and *env* (default: the process's); exits on bad input."""
    env = os.environ if env is None else env
    parser = _build_parser(env)
    args = parser.parse_args(argv)
    if args.log_level not in _LOG_LEVELS:
        parser.error(
            f"--log-level must be one of {', '.join(_LOG_LEVELS)}, got {args.log_level!r}"
        )
    if args.log_format not in LOG_FORMATS:
        parser.error(
            f"--log-format must be one of {', '.join(LOG_FORMATS)}, got {args.log_format!r}"
        )
    if args.metrics_token is not None and not args.metrics_token.strip():
        parser.error("--metrics-token must not be empty; give a token, or leave the flag out")
    if args.tls_cert is not None and args.tls_key is None:
        parser.error("--tls-cert needs --tls-key too: give both to serve TLS, or neither")
    if args.tls_key is not None and args.tls_cert is None:
        parser.error("--tls-key needs --tls-cert too: give both to serve TLS, or neither")
    if args.durability not in DURABILITY_MODES:
        parser.error(
            f"--durability must be one of {', '.join(DURABILITY_MODES)}, got {args.durability!r}"
        )
    if args.redis is not None:
        from .redislink import parse_url  # only with --redis: a faster start without

        try:
            parse_url(args.redis)
        except ValueError as exc:
            parser.error(f"--redis: {exc}")
        if args.durability != "async":
            parser.error(
                "--durability applies to the cache folder; with --redis the store is as "
                "durable as Redis is configured to be (see its appendfsync)"
            )
    return Config(
        host=args.host,
        port=_whole_number(parser, "--port", args.port, 0, 65535),
        cache_dir=Path(args.cache_dir) if args.cache_dir else default_cache_dir(),
        max_size=_whole_number(parser, "--max-size", args.max_size, 1024, 2**31),
        log_level=args.log_level,
        allow_origins=_allowed_origins(parser, args.allow_origin, env),
        token=args.token,
        auth_file=Path(args.auth) if args.auth else None,
        metrics_token=args.metrics_token,
        log_format=args.log_format,
        tls_cert=Path(args.tls_cert) if args.tls_cert else None,
        tls_key=Path(args.tls_key) if args.tls_key else None,
        durability=args.durability,
        redis_url=args.redis,
        redis_replicas=_whole_number(parser, "--redis-replicas", args.redis_replicas, 0, 64),
    )


def _setup_logging(level: str, log_format: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(log_format))
    root = logging.getLogger("objstore")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
    # websockets logs every HTTP answer and connection at INFO; ours is one line
    # per connection, so its own lines are shown only when debugging.
    logging.getLogger("objstore.websockets").setLevel(
        logging.DEBUG if level == "debug" else logging.WARNING
    )


def _lan_addresses() -> list[str]:
    """IPv4 addresses of this machine other than loopback, from its own host name."""
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)
    except OSError:
        return []
    return sorted({str(info[4][0]) for info in infos if not str(info[4][0]).startswith("127.")})


def _banner(server: ObjstoreServer) -> str:
    config = server.config
    host = config.host
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else ("localhost" if host == "::" else host)
    if ":" in shown:
        shown = f"[{shown}]"
    port = server.port
    ws, http = ("wss", "https") if config.tls else ("ws", "http")
    base = f"{http}://{shown}:{port}"
    lines = [
        f"objstore {__version__}",
        f"  WebSocket  {ws}://{shown}:{port}/ws",
        f"  Test page  {base}/test",
        f"  HTTP       GET {base}/get/{{key}}   POST {base}/set",
        f"  REST       {base}/keys/{{key}}   Events {base}/events?prefix=",
        _store_line(server),
    ]
    if config.tls:
        lines.append(f"  TLS        certificate {config.tls_cert}, key {config.tls_key}")
    if config.durability == "sync":
        lines.append("  Durability sync: each write is on disk (fsync) before it is acknowledged")
    elif config.durability == "memory":
        lines.append("  Durability memory (--durability memory): nothing is written to disk")
    if config.allow_origins:
        allowed = (
            "any website (--allow-origin *)"
            if ANY_ORIGIN in config.allow_origins
            else ", ".join(config.allow_origins)
        )
        lines.append(f"  Allowed    pages from {allowed}")
    access = server.access
    if access.enabled:
        lines.append(f"  Access     tokens from {access.rules.source}; see --help for --auth")
    elif not is_loopback_host(host.lower()):
        lines.append(f"  WARNING    {_OPEN_WARNING}")
    if host in ("0.0.0.0", "", "::"):
        addresses = _lan_addresses()
        if addresses:
            lines += [f"  Network    {ws}://{address}:{port}/ws" for address in addresses]
        else:
            lines.append("  Network    use this machine's network address with port " + str(port))
    lines.append("Press Ctrl+C to stop.")
    return "\n".join(lines)


def _store_line(server: ObjstoreServer) -> str:
    config = server.config
    if config.redis_url is not None:
        from .redislink import describe_url

        return (
            f"  Store      Redis at {describe_url(config.redis_url)} ({len(server.storage)} keys)"
        )
    if config.durability == "memory":
        return "  Cache      none: values are kept in memory only and lost when it stops"
    return f"  Cache      {config.cache_dir.resolve()} ({len(server.storage)} keys loaded)"


_OPEN_WARNING = (
    "no token: anyone who can reach this port can read and write everything; "
    "add --token or --auth FILE"
)


def _report_load(server: ObjstoreServer) -> None:
    report = server.load_report
    if report.renamed:
        logger.info("renamed %d files to their objstore names", len(report.renamed))
    if report.temp_files_removed:
        logger.info("removed %d leftover temporary files", report.temp_files_removed)
    if report.set_aside:
        logger.warning(
            "%d files could not be loaded and were renamed *.corrupt; see the warnings above",
            len(report.set_aside),
        )


def _raise_open_file_limit() -> None:
    limit = raise_open_file_limit()
    if limit.after != limit.before:
        logger.info("open-file limit raised from %s to %s", limit.before, limit.after)
    if not limit.enough:
        logger.warning(
            "the system allows only %s open files, so fewer than %s clients can connect at "
            "once; raise the limit (ulimit -n %d) before starting objstore for more",
            limit.after,
            limit.after,
            WANTED_OPEN_FILES,
        )


#: Allocations of container objects between two collections of the youngest
#: generation (Python's default: 700).
_GC_YOUNG_THRESHOLD = 10_000


def _tune_collector() -> None:
    """Make the garbage collector's work fit a server's, once the store is loaded.

    Nearly every object a message makes is freed by reference counting; the
    collector only looks for cycles. By default it looks every 700 allocations,
    through every young object, and ever more often through every old one:
    with thousands of connections that was 12 % of the CPU of connecting
    clients (perf). What was loaded at start (modules, the store) lives as long
    as the process: frozen, the collector never looks at it again.
    """
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(_GC_YOUNG_THRESHOLD, middle, old)


async def run(config: Config) -> int:
    """Run a server until SIGINT or SIGTERM (Ctrl+C or Ctrl+Break on Windows), then stop it.

    Returns the exit code: :data:`OK`, or :data:`DATA_NOT_SAVED` when values were lost.
    """
    _raise_open_file_limit()
    server = ObjstoreServer(config)
    await server.start()
    _tune_collector()
    _report_load(server)
    if config.tls:
        # The banner goes to stdout; this says it in the log too (also as JSON).
        logger.info(
            "serving wss:// and https:// on port %d with certificate %s",
            server.port,
            config.tls_cert,
        )
    if not server.access.enabled and not is_loopback_host(config.host.lower()):
        logger.warning("listening on %s with %s", config.host, _OPEN_WARNING)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    logger.info(
        "event loop: %s; JSON: %s",
        "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio",
        jsonvalues.BACKEND,
    )
    signals = [signal.SIGINT, signal.SIGTERM]
    if sys.platform == "win32":
        signals.append(signal.SIGBREAK)
        for number in signals:
            signal.signal(number, lambda *_: loop.call_soon_threadsafe(stop.set))
    else:
        for number in signals:
            loop.add_signal_handler(number, stop.set)
        # kill -HUP reloads the permissions file (it is also reloaded when it changes).
        loop.add_signal_handler(signal.SIGHUP, server.access.reload)
    # Only now: whoever waits for the banner may stop the server at once.
    print(_banner(server), flush=True)
    try:
        await stop.wait()
    finally:
        logger.info("stopping: closing connections and finishing writes")
        await server.stop()
    if server.unsaved_keys:
        _report_unsaved(server)
        return DATA_NOT_SAVED
    logger.info("stopped")
    return OK


def _report_unsaved(server: ObjstoreServer) -> None:
    keys = server.unsaved_keys
    named = ", ".join(describe(key) for key in keys[:_KEYS_NAMED])
    if len(keys) > _KEYS_NAMED:
        named += f" and {len(keys) - _KEYS_NAMED} more"
    logger.error(
        "stopped WITHOUT SAVING %d %s: their latest values could not be written to %s "
        "and are lost (%s); see the errors above",
        len(keys),
        "key" if len(keys) == 1 else "keys",
        server.config.cache_dir,
        named,
    )


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop where it is installed (Linux and macOS), else asyncio's own loop.

    Measured with benchmarks/run.py, uvloop serves about an eighth more HTTP
    requests per second; everything works without it, as on Windows.
    OBJSTORE_LOOP=asyncio forces the standard loop.
    """
    if os.environ.get("OBJSTORE_LOOP") == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``objstore`` and ``python -m objstore``; returns the exit code.

    ``objstore import DIR`` and ``objstore export DIR`` are handed to
    :mod:`objstore.transfercli`; anything else runs the server.
    """
    args = sys.argv[1:] if argv is None else list(argv)
    if args and args[0] in ("import", "export"):
        from .transfercli import main as transfer_main

        return transfer_main(args)
    config = parse_config(argv)
    _setup_logging(config.log_level, config.log_format)
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            code = runner.run(run(config))
    except StartupError as exc:
        print(f"objstore: {exc}", file=sys.stderr, flush=True)
        pause_if_double_clicked()
        return STARTUP_FAILURE
    except KeyboardInterrupt:  # a second Ctrl+C while stopping
        return OK
    except Exception:
        logger.exception("objstore stopped on an unexpected error; please report it")
        pause_if_double_clicked()
        return INTERNAL_ERROR
    return code
