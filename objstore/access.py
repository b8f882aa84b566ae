"""The rules in force: read from ``--token`` and ``--auth FILE``, reloaded when the file changes.

Owns the current :class:`~objstore.permissions.Rules`, reading the permissions
file (bounded, never through a symbolic link's surprise: it is the operator's
own file, read like any config file, at most
:data:`~objstore.permissions.MAX_RULES_BYTES`), reloading it, and telling the
holders of grants (connections, event streams) when their rights changed so
that they stop at once. Knows nothing of sockets or HTTP beyond parsing an
``Authorization`` header's value.

Reloading: :meth:`Access.reload` (the server calls it on SIGHUP) and
:meth:`Access.check_file`, called every second, which reloads when the file's
size, modification time or inode changed (the way that works on Windows too).
A file that cannot be read or parsed at reload keeps the old rules, with one
logged error; at start it is a :class:`~objstore.errors.StartupError`.
"""

from __future__ import annotations

import logging
import os
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from .errors import StartupError
from .permissions import (
    EVERYTHING,
    MAX_RULES_BYTES,
    Grant,
    Rules,
    RulesError,
    parse_rules,
    single_token_rules,
)

__all__ = ["Access", "GrantHolder", "bearer_token"]

logger = logging.getLogger("objstore.access")


class GrantHolder(Protocol):
    """Something that acts with a grant for a while: a connection, an event stream."""

    grant: Grant

    def permissions_changed(self, grant: Grant | None) -> None:
        """The rules changed what it may do: *grant* is its new grant (None: revoked)."""


def bearer_token(headers: Mapping[str, str]) -> str | None:
    """The token of an ``Authorization: Bearer TOKEN`` header (lowercase names), or None.

    Another scheme, or a header without a token, counts as a token that is
    not one (the empty string), so that it is refused rather than ignored.
    """
    value = headers.get("authorization")
    if value is None:
        return None
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer":
        return ""
    return token.strip()


class Access:
    """The rules in force, and the holders of grants to tell when they change."""

    def __init__(self, token: str | None = None, auth_file: Path | None = None) -> None:
        """Read the rules; raises :class:`StartupError` with one clear line when they are bad."""
        self._token = token
        self._file = auth_file
        self._stamp: tuple[int, int, int] | None = None
        self._holders: weakref.WeakSet[GrantHolder] = weakref.WeakSet()
        try:
            self.rules = self._read()
        except RulesError as exc:
            raise StartupError(f"cannot use the permissions: {exc}") from None
        #: Whether any token is configured (else everybody may do everything). A file
        #: always configures one, so this does not change at a reload.
        self.enabled = self.rules.enabled

    def _read(self) -> Rules:
        if self._file is None:
            if self._token is None:
                return Rules()
            return single_token_rules(self._token)
        path = self._file
        try:
            with path.open("rb") as file:
                stat = os.fstat(file.fileno())
                data = file.read(MAX_RULES_BYTES + 1)
        except OSError as exc:
            raise RulesError(f"{path}: cannot be read: {exc.strerror or exc}") from None
        self._stamp = (stat.st_size, stat.st_mtime_ns, stat.st_ino)
        if len(data) > MAX_RULES_BYTES:
            raise RulesError(f"{path}: over {MAX_RULES_BYTES} bytes; a permissions file is small")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise RulesError(f"{path}: not UTF-8 text") from None
        return parse_rules(text, str(path), extra_token=self._token)

    def grant_for(self, token: str | None) -> Grant | None:
        """The grant of *token* (None: no token given); None for an unknown token."""
        rules = self.rules
        if not rules.enabled:
            return EVERYTHING
        return rules.grant_for(token)

    def hold(self, holder: GrantHolder) -> None:
        """Tell *holder* when the rules change its grant (held weakly)."""
        if self._file is not None:
            self._holders.add(holder)

    def reload(self) -> bool:
        """Read the file again; return whether the new rules are in force.

        Holders whose grant changed are told; a file that cannot be used leaves
        the rules as they were, with one logged error.
        """
        if self._file is None:
            return False
        try:
            rules = self._read()
        except RulesError as exc:
            logger.error("permissions not reloaded, the previous ones stay in force: %s", exc)
            return False
        self.rules = rules
        changed = 0
        for holder in list(self._holders):
            now = rules.named(holder.grant.name)
            if now != holder.grant:
                changed += 1
                holder.permissions_changed(now)
        logger.info(
            "permissions reloaded from %s: %d token(s); %d connection(s) whose rights "
            "changed were closed",
            self._file,
            len(rules.tokens),
            changed,
        )
        return True

    def check_file(self) -> bool:
        """Reload when the file looks changed (size, time or inode); return whether it did."""
        if self._file is None:
            return False
        try:
            stat = self._file.stat()
        except OSError:
            stamp = None
        else:
            stamp = (stat.st_size, stat.st_mtime_ns, stat.st_ino)
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        if stamp is None:
            # Gone (or being replaced): say so once, keep the rules.
            logger.error("permissions file %s cannot be read; the rules stay in force", self._file)
            return False
        return self.reload()
