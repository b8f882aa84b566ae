"""The one configuration object of objstore, and where its defaults come from.

Owns every setting and its default. Flags and environment variables are read by
:mod:`objstore.cli`, which only fills this object; nothing else reads them.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_MAX_SIZE",
    "DEFAULT_PORT",
    "DURABILITY_MODES",
    "Config",
    "default_cache_dir",
]

DEFAULT_PORT = 3000
DEFAULT_HOST = "127.0.0.1"
#: 16 MiB, the message limit of the original server's runtime.
DEFAULT_MAX_SIZE = 16 * 1024 * 1024
#: What ``--durability`` accepts: no files, write-behind (the default), fsync before the ack.
DURABILITY_MODES = ("memory", "async", "sync")


def default_cache_dir() -> Path:
    """``.cache`` next to the executable when frozen, else in the working directory.

    A frozen one-file executable unpacks itself into a temporary folder, so the
    folder of ``sys.executable`` (symlinks resolved) is used, never the
    folder the code was unpacked to.
    """
    if getattr(sys, "frozen", False):
        return Path(sys.executable).resolve().parent / ".cache"
    return Path.cwd() / ".cache"


@dataclass(frozen=True, slots=True)
class Config:
    """Every setting of a server; all fields have working defaults."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    #: Folder holding one JSON file per key; created if missing.
    cache_dir: Path = Path(".cache")
    #: Largest WebSocket message and HTTP request body accepted, in bytes.
    max_size: int = DEFAULT_MAX_SIZE
    log_level: str = "info"
    #: Seconds between keepalive pings; None disables them.
    ping_interval: float | None = 20.0
    #: Seconds to wait for a pong before closing the connection.
    ping_timeout: float | None = 20.0
    #: Seconds a subscriber that reads nothing may block its socket before it is
    #: closed (code 1008). Until then it only costs one pending update per key.
    stall_timeout: float = 60.0
    #: Seconds an HTTP connection may stay idle between requests (keep-alive), or
    #: take to send one, before it is closed.
    http_timeout: float = 10.0
    #: Origins (``scheme://host[:port]``, ``*`` or ``null``) of web pages that may use the
    #: store besides the server's own (see :mod:`objstore.origins`); they get CORS headers.
    allow_origins: tuple[str, ...] = ()
    #: One token with every right (``--token``); then clients without it may do nothing
    #: unless a permissions file says otherwise.
    token: str | None = field(default=None, repr=False)
    #: The permissions file (``--auth``): named tokens and their rules, reloadable.
    auth_file: Path | None = None
    #: When set, ``GET /metrics`` requires ``Authorization: Bearer <metrics_token>``.
    metrics_token: str | None = None
    #: Log lines as ``text`` (for people) or ``json`` (one object per line, for collectors).
    log_format: str = "text"
    #: PEM certificate chain and private key: with both, the port serves ``wss://`` and
    #: ``https://`` only (see :mod:`objstore.tls`); with neither, ``ws://`` and ``http://``.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    #: ``memory`` (no cache folder at all), ``async`` (written behind, the default) or
    #: ``sync`` (acknowledged and published once fsynced); see :mod:`objstore.store`.
    durability: str = "async"
    #: The URL of a Redis or Valkey that holds the store (``--redis``), shared by every
    #: instance given the same one; None: the cache folder (see :mod:`objstore.redisstore`).
    redis_url: str | None = field(default=None, repr=False)
    #: Replicas that must confirm each write (Redis WAIT) before it is acknowledged.
    redis_replicas: int = 0

    @property
    def tls(self) -> bool:
        """Whether the server speaks TLS (it needs both files)."""
        return self.tls_cert is not None and self.tls_key is not None
