"""Connections to Redis or Valkey from a URL: plain, TLS, or through Sentinel.

Owns how ``--redis`` is read and how clients are made from it:

- ``redis://[user:password@]host[:port][/db]`` and ``rediss://`` (TLS), as
  redis-py reads them (``?ssl_cert_reqs=none`` and the like work too);
- ``redis+sentinel://[:password@]host[:port][,host[:port]...]/service[/db]``
  (``rediss+sentinel://`` for TLS to the primary): the Sentinels are asked
  for the primary of *service*, and asked again after a failover, so that an
  instance follows the new primary without a restart. A password in this URL
  is the primary's; the Sentinels are asked without one unless the URL's
  query has ``sentinel_password=``.

Clients made here never retry a command on their own: a write retried
after its connection dropped could be applied twice (an increment, twice),
so a failure is the caller's to handle. Knows nothing of the store's layout.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlsplit

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["MISSING_LIBRARY", "RedisTarget", "describe_url", "parse_url"]

#: What to do when the redis library is not installed (it is in the executables).
MISSING_LIBRARY = (
    "the redis library, which a store in Redis needs, is not installed here: "
    "pip install 'objstore[redis]'"
)

_SENTINEL_SCHEMES = {"redis+sentinel": False, "rediss+sentinel": True}


@dataclass(frozen=True)
class RedisTarget:
    """Where the store is: a URL redis-py reads, or Sentinels and a service name."""

    url: str
    sentinels: tuple[tuple[str, int], ...] = ()
    service: str = ""
    db: int = 0
    password: str | None = field(default=None, repr=False)
    username: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)
    tls: bool = False

    def client(self, *, timeout: float, name: str, connect_timeout: float = 2.0) -> Redis:
        """A client (a pool of connections) that does not retry, with these timeouts, its
        connections named *name* (``CLIENT LIST`` shows which instance holds which)."""
        from redis.asyncio import Redis
        from redis.asyncio.retry import Retry
        from redis.asyncio.sentinel import Sentinel
        from redis.backoff import NoBackoff

        options: dict[str, Any] = {
            "socket_timeout": timeout,
            "socket_connect_timeout": connect_timeout,
            "socket_keepalive": True,
            "retry": Retry(NoBackoff(), 0),
            "decode_responses": False,
            "client_name": name,
        }
        if not self.sentinels:
            return Redis.from_url(self.url, **options)
        sentinel_options: dict[str, Any] = {
            "socket_timeout": connect_timeout,
            "socket_connect_timeout": connect_timeout,
        }
        if self.sentinel_password is not None:
            sentinel_options["password"] = self.sentinel_password
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            list(self.sentinels), sentinel_kwargs=sentinel_options
        )
        if self.tls:
            options["ssl"] = True
        client: Redis = sentinel.master_for(
            self.service,
            db=self.db,
            password=self.password,
            username=self.username,
            **options,
        )
        return client


def parse_url(url: str) -> RedisTarget:
    """Read *url*; raises ValueError with what is wrong, in words a user can act on."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        from redis.asyncio import Redis
    except ImportError:
        raise ValueError(MISSING_LIBRARY) from None
    if scheme in ("redis", "rediss", "unix"):
        try:
            Redis.from_url(url)  # checks what redis-py would refuse, without connecting
        except ValueError as exc:
            raise ValueError(f"invalid Redis URL {describe_url(url)}: {exc}") from None
        return RedisTarget(url=url)
    if scheme not in _SENTINEL_SCHEMES:
        if not scheme or "://" not in url:
            raise ValueError(
                f"invalid Redis URL {describe_url(url)}: expected redis://host:6379/0 "
                "(or rediss://, redis+sentinel://)"
            )
        raise ValueError(
            f"invalid Redis URL {describe_url(url)}: expected redis://, rediss:// or "
            "redis+sentinel://"
        )
    netloc = parts.netloc
    username = password = None
    if "@" in netloc:
        credentials, _, netloc = netloc.rpartition("@")
        user_text, has_password, password_text = credentials.partition(":")
        username = unquote(user_text) or None
        password = unquote(password_text) if has_password else None
    sentinels: list[tuple[str, int]] = []
    for item in netloc.split(","):
        host, _, port_text = item.strip().rpartition(":") if ":" in item else (item, "", "")
        host = host or item.strip()
        try:
            port = int(port_text) if port_text else 26379
        except ValueError:
            raise ValueError(
                f"invalid Redis URL {describe_url(url)}: port {port_text!r} is not a number"
            ) from None
        if not host:
            raise ValueError(f"invalid Redis URL {describe_url(url)}: a Sentinel has no host")
        sentinels.append((host.strip("[]"), port))
    path = [unquote(part) for part in parts.path.split("/") if part]
    if not path:
        raise ValueError(
            f"invalid Redis URL {describe_url(url)}: name the service after the Sentinels, "
            "as in redis+sentinel://host:26379/mymaster/0"
        )
    db = 0
    if len(path) > 1:
        if not path[1].isdigit():
            raise ValueError(
                f"invalid Redis URL {describe_url(url)}: database {path[1]!r} is not a number"
            )
        db = int(path[1])
    query = dict(parse_qsl(parts.query))
    return RedisTarget(
        url=url,
        sentinels=tuple(sentinels),
        service=path[0],
        db=db,
        password=password,
        username=username,
        sentinel_password=query.get("sentinel_password"),
        tls=_SENTINEL_SCHEMES[scheme],
    )


def describe_url(url: str) -> str:
    """*url* with its password replaced by ``***``, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc
    credentials, _, rest = netloc.rpartition("@")
    user = credentials.partition(":")[0]
    return parts._replace(netloc=f"{user}:***@{rest}").geturl()
