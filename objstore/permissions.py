"""Who may do what: tokens, their read and write rules by key prefix, and the anonymous rules.

Owns the rules of access control and their file format, checked as it is read.
Pure: it parses text it is given (TOML, with the standard library's
:mod:`tomllib`) and answers questions; it opens no file and knows nothing of
connections, HTTP or the wire protocol. Reading the file and reloading it is
:mod:`objstore.access`'s; applying the rules to each command is
:mod:`objstore.authorize`'s.

The file (``--auth FILE``)::

    [anonymous]                 # optional: what a client without a token may do
    read = ["public/"]

    [tokens.display]            # a named token
    token = "kq3...long secret..."
    read = ["scores/"]

    [tokens.admin]
    token = "..."
    read = [""]                 # "" is every key
    write = [""]
    metrics = true              # may read /metrics

A rule is a key prefix; a key is readable (writable) when it starts with one
of the token's ``read`` (``write``) prefixes. Writing does not imply reading.
Without any token configured everybody may do everything, as the original
server allowed. ``--token T`` is a token named ``token`` with every right.

Tokens are compared in constant time: a presented token is hashed and its
digest compared with every token's digest with :func:`hmac.compare_digest`,
whatever matches first. Bounds: a token of at most 1,024 bytes is looked up
(a longer one is unknown without being hashed); a file is at most 1 MiB.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from .errors import describe
from .keys import MAX_KEY_BYTES

__all__ = [
    "EVERYTHING",
    "MAX_RULES_BYTES",
    "MIN_TOKEN_CHARS",
    "NOTHING",
    "Grant",
    "Rules",
    "RulesError",
    "parse_rules",
    "single_token_rules",
]

#: The shortest token accepted: a token is a password.
MIN_TOKEN_CHARS: Final = 16
#: The longest token looked up; a longer one is unknown.
MAX_TOKEN_BYTES: Final = 1024
#: The largest permissions file read.
MAX_RULES_BYTES: Final = 1024 * 1024
_TOKEN_HINT: Final = "make one with: openssl rand -base64 24"


class RulesError(ValueError):
    """A permissions file (or --token) that cannot be used; the message says what to fix."""


@dataclass(frozen=True, slots=True)
class Grant:
    """What one client may do: read and write key prefixes, and whether it may read metrics.

    ``name`` names the token (``anonymous`` without one). Prefixes are kept
    minimal and sorted: none starts with another.
    """

    name: str
    read: tuple[str, ...] = ()
    write: tuple[str, ...] = ()
    metrics: bool = False
    #: Whether it may read and write every key (then nothing needs checking).
    everything: bool = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "everything", self.read == ("",) and self.write == ("",))

    def can_read(self, key: str) -> bool:
        """Whether it may read *key* (or subscribe to it)."""
        return _covered(self.read, key)

    def can_write(self, key: str) -> bool:
        """Whether it may set, patch, increment or delete *key*."""
        return _covered(self.write, key)

    def readable_within(self, prefix: str) -> tuple[str, ...]:
        """The prefixes, at or under *prefix*, that cover every key it may read there.

        ``(prefix,)`` when it may read every key starting with *prefix*; the read
        prefixes that start with *prefix* when only some; ``()`` when none.
        """
        if _covered(self.read, prefix):
            return (prefix,)
        return tuple(rule for rule in self.read if rule.startswith(prefix))


#: Every right: the grant of everybody when no token is configured.
EVERYTHING: Final = Grant("everyone", ("",), ("",), metrics=True)
#: No right at all.
NOTHING: Final = Grant("anonymous")


def _covered(prefixes: tuple[str, ...], key: str) -> bool:
    return key.startswith(prefixes)  # False for no prefix at all


def _minimal(prefixes: Iterable[str]) -> tuple[str, ...]:
    """Sorted, without any prefix that another one already covers."""
    kept: list[str] = []
    for prefix in sorted(set(prefixes)):
        if not kept or not prefix.startswith(kept[-1]):
            kept.append(prefix)
    return tuple(kept)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


@dataclass(frozen=True, slots=True)
class Rules:
    """The tokens and the anonymous grant; ``enabled`` is False when no token is configured."""

    anonymous: Grant = EVERYTHING
    tokens: tuple[tuple[bytes, Grant], ...] = ()
    enabled: bool = False
    #: Where they came from, for messages: a file's path, ``--token``, or ``defaults``.
    source: str = "defaults"

    def grant_for(self, token: str | None) -> Grant | None:
        """The grant of *token*; the anonymous one for None; None for an unknown token."""
        if token is None:
            return self.anonymous
        if len(token) > MAX_TOKEN_BYTES:
            return None
        presented = _digest(token)
        found: Grant | None = None
        for digest, grant in self.tokens:
            # Every digest is compared, so the time taken does not tell which matched.
            if hmac.compare_digest(digest, presented) and found is None:
                found = grant
        return found

    def named(self, name: str) -> Grant | None:
        """The grant of the token named *name* now (``anonymous`` too), or None if gone."""
        if name == self.anonymous.name:
            return self.anonymous
        return next((grant for _, grant in self.tokens if grant.name == name), None)


def single_token_rules(token: str) -> Rules:
    """The rules of ``--token T``: one token with every right, and nothing for anonymous."""
    _check_token(token, "--token")
    grant = Grant("token", ("",), ("",), metrics=True)
    return Rules(NOTHING, ((_digest(token), grant),), True, "--token")


def parse_rules(text: str, source: str, *, extra_token: str | None = None) -> Rules:
    """The rules of a permissions file's *text*; raises :class:`RulesError` naming *source*.

    *extra_token* (``--token`` given with ``--auth``) is added as a token named
    ``token`` with every right.
    """
    if len(text.encode("utf-8", "surrogatepass")) > MAX_RULES_BYTES:
        raise RulesError(f"{source}: over {MAX_RULES_BYTES} bytes; a permissions file is small")
    import tomllib  # only with a permissions file: a faster start without

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RulesError(f"{source}: not valid TOML: {exc}") from None
    _only(data, {"anonymous", "tokens"}, source, "the file")
    anonymous = NOTHING
    if "anonymous" in data:
        table = _table(data["anonymous"], source, "[anonymous]")
        anonymous = _grant("anonymous", table, source, "[anonymous]")
    tokens: list[tuple[bytes, Grant]] = []
    seen: dict[bytes, str] = {}
    declared = _table(data.get("tokens", {}), source, "[tokens]")
    entries: list[tuple[str, Any]] = list(declared.items())
    if extra_token is not None:
        if "token" in declared:
            raise RulesError(
                f'{source}: a token is named "token", the name --token takes; rename it'
            )
        entries.append(("token", {"token": extra_token, "read": [""], "write": [""]}))
    for name, entry in entries:
        where = f"[tokens.{name}]" if name != "token" or extra_token is None else "--token"
        table = _table(entry, source, where)
        if name == "anonymous":
            raise RulesError(f"{source}: {where}: the name anonymous is taken; rename it")
        secret = table.get("token")
        if not isinstance(secret, str):
            raise RulesError(f'{source}: {where}: needs token = "..." (a string)')
        _check_token(secret, f"{source}: {where}")
        digest = _digest(secret)
        if digest in seen:
            raise RulesError(
                f"{source}: {where} has the same token as [tokens.{seen[digest]}]; "
                "give each its own"
            )
        seen[digest] = name
        grant = _grant(name, {k: v for k, v in table.items() if k != "token"}, source, where)
        tokens.append((digest, grant))
    if not tokens:
        raise RulesError(
            f"{source}: no token: add a [tokens.NAME] table with a token, or run without --auth"
        )
    return Rules(anonymous, tuple(tokens), True, source)


def _check_token(token: str, where: str) -> None:
    if len(token) < MIN_TOKEN_CHARS:
        raise RulesError(
            f"{where}: a token of {len(token)} characters is too easy to guess; "
            f"use at least {MIN_TOKEN_CHARS} ({_TOKEN_HINT})"
        )
    if len(token.encode("utf-8", "surrogatepass")) > MAX_TOKEN_BYTES:
        raise RulesError(f"{where}: a token is at most {MAX_TOKEN_BYTES} bytes")
    if not token.isprintable() or token != token.strip():
        raise RulesError(
            f"{where}: a token must be printable, without spaces at its ends "
            "(it travels in an HTTP header)"
        )


def _grant(name: str, table: Mapping[str, Any], source: str, where: str) -> Grant:
    _only(table, {"read", "write", "metrics"}, source, where)
    metrics = table.get("metrics", False)
    if not isinstance(metrics, bool):
        raise RulesError(f"{source}: {where}: metrics must be true or false")
    return Grant(
        name,
        _prefixes(table.get("read", []), source, where, "read"),
        _prefixes(table.get("write", []), source, where, "write"),
        metrics,
    )


def _prefixes(value: Any, source: str, where: str, what: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
        raise RulesError(
            f'{source}: {where}: {what} must be a list of key prefixes, e.g. ["scores/"] '
            f'(or [""] for every key), got {describe(value)}'
        )
    for prefix in value:
        if len(prefix.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
            raise RulesError(f"{source}: {where}: the prefix {describe(prefix)} is too long")
    return _minimal(value)


def _table(value: Any, source: str, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise RulesError(f"{source}: {where} must be a table, got {describe(value)}")
    return value


def _only(table: Mapping[str, Any], allowed: set[str], source: str, where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise RulesError(
            f"{source}: {where}: unknown setting {describe(unknown[0])}; "
            f"expected {', '.join(sorted(allowed))}"
        )
