"""The commands of the protocol applied to the store and the hub, for every transport.

Owns what every command does: a write changes the store (through the
:class:`~objstore.storage.Storage` seam) and publishes one update, encoded
once, to every subscriber; a read answers from the store; a subscription
sends what the client must know first (the current values, or what changed
since its revision) and then leaves it to the hub. WebSocket connections and
HTTP routes both call this module, so a command behaves the same whichever
way it arrives. Knows nothing of sockets or HTTP.

Commands go in, typed results come out (:mod:`objstore.results`): a write's
result carries its revision and, when the client asked for an
acknowledgement, the future of its reaching disk. Encoding them is the
transports' business (:mod:`objstore.replies` for WebSocket,
:mod:`objstore.rest` for HTTP).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Hashable, Iterable
from dataclasses import replace
from typing import Protocol, cast

from . import authorize, replies, valueops
from .commands import (
    MAX_PREFIX_SUBSCRIPTIONS,
    Auth,
    Batch,
    Command,
    Delete,
    Get,
    Incr,
    Keys,
    Patch,
    Set,
    Subscribe,
    SubscribePrefix,
    Unsubscribe,
    UnsubscribePrefix,
    Write,
)
from .errors import ClientError, Conflict, TooLarge, describe
from .hub import Hub, Subscriber
from .permissions import Grant
from .results import (
    Authenticated,
    BatchWritten,
    Done,
    KeyDetails,
    Listed,
    Read,
    Result,
    Subscribed,
    Written,
)
from .storage import Storage
from .updates import ExpiredUpdate, TimedUpdate, Update, encode_update
from .writer import FailureCallback, WriteResult

__all__ = ["Client", "StoreService"]


class Client(Hashable, Protocol):
    """Who sends commands: its subscriber in the hub, and who hears of failed writes.

    The client itself owns the ephemeral keys it sets.
    """

    @property
    def subscriber(self) -> Subscriber:
        """Where its updates go."""

    @property
    def report_failure(self) -> FailureCallback:
        """Told when a write it made without an id could not be saved."""

    def send(self, payload: bytes) -> None:
        """Send a message at once, ahead of replies still waiting (a subscription's values)."""

    def authenticate(self, token: str) -> Grant:
        """Act with the rights of *token* from now on; raises Forbidden for an unknown one."""

    @property
    def narrowed(self) -> dict[str, tuple[str, ...]]:
        """Its prefix subscriptions made of narrower ones: the prefix asked for, and the
        prefixes subscribed (the parts of it that its token may read)."""


class StoreService:
    """Applies commands to a :class:`~objstore.store.Store` and a :class:`~objstore.hub.Hub`."""

    def __init__(self, store: Storage, hub: Hub, max_value_size: int = 16 * 1024 * 1024) -> None:
        self.store = store
        self.hub = hub
        #: Largest value a patch or increment may make (the config's max size).
        self.max_value_size = max_value_size
        #: Told the earliest deadline after a write with a time to live; set by the server.
        self.deadline_changed: Callable[[float], None] | None = None
        #: Publishes an update: the hub's own publish, or (a store that makes writes
        #: durable first) one that waits for the writes before it.
        self._publish = store.when_durable(hub.publish, _key_of)

    # -- the original protocol ------------------------------------------------------------

    def get(self, key: str) -> bytes:
        """The reply to a get: ``{"key": K, "value": V}``, with ``null`` for a missing key."""
        return encode_update(key, self.store.get(key))

    def set(self, key: str, value: bytes, on_failure: FailureCallback | None = None) -> Update:
        """Store, persist and publish *value*; return the update.

        The update is encoded once and the same bytes go to every subscriber;
        *on_failure* hears of a failed file write.
        """
        update = Update(key, value, self.store.set(key, value, on_failure))
        self._publish(update)
        return update

    def set_and_wait(self, key: str, value: bytes) -> tuple[Update, WriteResult]:
        """Like :meth:`set`, and return a future of the file write too (``POST /set``: the
        original answered once its file was written)."""
        rev, result = self.store.write(key, value, wait=True, in_file=True)
        assert rev is not None
        assert result is not None
        update = Update(key, value, rev)
        self._publish(update)
        return update, result

    # -- every command ----------------------------------------------------------------------

    def execute(self, client: Client, command: Command) -> Result | None:
        """Apply *command* from *client*; return its result, None for a write without an id.

        A write without an id has no reply, as in the original: the setter hears
        of it through its own subscription, if it has one, and through its
        ``report_failure`` if its value cannot be written to disk. With an id,
        the result's ``written`` resolves once the change is on disk. Raises
        :class:`~objstore.errors.ClientError` for a command that cannot apply.
        """
        # Checks in turn rather than a table: a plain set, nearly every message, is
        # decided by the first, and any other set by the second.
        if type(command) is Set:
            if (
                command.id is None
                and command.if_rev is None
                and command.ttl is None
                and not command.ephemeral
            ):
                self.set(command.key, command.value, client.report_failure)
                return None
            return self._write(client, command)
        if isinstance(command, Get):
            key = command.key
            store = self.store
            if command.id is None:
                return Read(key, store.get(key), 0)
            return Read(key, store.get(key), store.revision(key), *store.details(key))
        if isinstance(command, Subscribe):
            return self._subscribe_key(client, command)
        if isinstance(command, Unsubscribe):
            # Ends the key's subscription whichever way it was made.
            self.hub.unsubscribe_any(client.subscriber, command.key)
            return Done()
        if isinstance(command, Batch):
            return self._batch(client, command)
        if isinstance(command, Keys):
            return self._keys(command)
        if isinstance(command, SubscribePrefix):
            return self._subscribe_prefix(client, command)
        if isinstance(command, UnsubscribePrefix):
            self._unsubscribe_prefix(client, command.prefix)
            return Done()
        if isinstance(command, Auth):
            return Authenticated(client.authenticate(command.token).name)
        return self._write(client, command)

    def execute_as(self, client: Client, grant: Grant, command: Command) -> Result | None:
        """:meth:`execute` for a client acting with *grant*: raises Forbidden for what it
        may not do; a listing or prefix subscription covers only the keys it may read."""
        if grant.everything:
            return self.execute(client, command)
        authorize.check(grant, command)
        if isinstance(command, Keys):
            return self._keys(command, grant.readable_within(command.prefix))
        if isinstance(command, SubscribePrefix):
            return self._subscribe_prefix(client, command, grant.readable_within(command.prefix))
        try:
            return self.execute(client, command)
        except Conflict as exc:
            if isinstance(command, Batch):
                authorize.hide_unreadable(grant, exc, [op.key for op in command.ops])
            elif isinstance(command, Set | Delete | Patch | Incr):
                authorize.hide_unreadable(grant, exc, [command.key])
            raise

    # -- writes ------------------------------------------------------------------------------

    def _write(self, client: Client, command: Write) -> Written | None:
        wait = command.id is not None
        result = self._apply(client, command, wait)
        return result if wait else None

    def _apply(self, client: Client, command: Write, wait: bool) -> Written:
        """Apply one write; with *wait*, its result has the future of its durability."""
        store = self.store
        key = command.key
        kind = type(command)  # each a final dataclass: compared by identity, once
        is_set = kind is Set
        owner: Client | None = None
        if is_set:
            a_set = cast("Set", command)
            value: bytes | None = a_set.value
            ttl = a_set.ttl
            if a_set.ephemeral:
                owner = client
        elif kind is Delete:
            value, ttl = None, None
        else:
            if command.if_rev is not None:
                self._check_rev(key, command.if_rev)
            value = self._new_value(command, store.get(key))
            ttl = cast("Patch | Incr", command).ttl
        rev, written = store.write(
            key,
            value,
            if_rev=command.if_rev,
            ttl=ttl,
            owner=owner,
            keep_owner=not is_set and kind is not Delete,
            wait=wait,
            on_failure=None if wait else client.report_failure,
        )
        action = _ACTIONS[kind]
        if rev is None:  # the deletion of a key without a value: nothing changed
            return Written(action, key, store.rev, deleted=False)
        self._publish(self._update(key, value, rev))
        if ttl is not None:
            self._deadline_changed()
        return Written(action, key, rev, value, True if kind is Delete else None, written)

    def _new_value(self, command: Write, current: bytes | None) -> bytes | None:
        """The value *command* makes of *current*: raises ClientError when it cannot."""
        if isinstance(command, Set):
            return command.value
        if isinstance(command, Delete):
            return None
        if isinstance(command, Patch):
            value = valueops.apply_patch(current, command.patch, key=command.key)
        else:
            value = valueops.increment(current, command.by, key=command.key)
        if len(value) > self.max_value_size:
            raise TooLarge(
                f"too large: the {command.__class__.__name__.lower()} would make key "
                f"{describe(command.key)} {len(value)} bytes, over the limit of "
                f"{self.max_value_size}; nothing changed"
            )
        return value

    def _check_rev(self, key: str, if_rev: int) -> None:
        current = self.store.revision(key)
        if current != if_rev:
            raise Conflict.mismatch(key, current, if_rev, self.store.get(key))

    def _batch(self, client: Client, command: Batch) -> BatchWritten | None:
        """Check every op against the store as the ops before it leave it, then apply all."""
        store = self.store
        planned: dict[str, tuple[bytes | None, int]] = {}
        rev = store.rev
        for index, op in enumerate(command.ops):
            try:
                key = op.key
                current, current_rev = planned.get(key) or (store.get(key), store.revision(key))
                if op.if_rev is not None and op.if_rev != current_rev:
                    raise Conflict.mismatch(key, current_rev, op.if_rev, current)
                value = self._new_value(op, current)
                if value is not None or current is not None:
                    rev += 1
                    # A key the batch deleted is at revision 0, as any key without a value.
                    planned[key] = (value, 0 if value is None else rev)
            except ClientError as exc:
                exc.op = index
                raise
        wait = command.id is not None
        # Checked above: applied without their revision checks, which the ops
        # before them would fail.
        results = [
            self._apply(client, op if op.if_rev is None else replace(op, if_rev=None), wait)
            for op in command.ops
        ]
        if not wait:
            return None
        futures = [result.written for result in results if result.written is not None]
        return BatchWritten(store.rev, results, _all_written(futures))

    # -- reads -------------------------------------------------------------------------------

    def _keys(self, command: Keys, parts: tuple[str, ...] | None = None) -> Listed:
        """A page of keys; with *parts*, only of the keys under those prefixes (sorted, none
        starting with another, so that their keys come in order, part after part)."""
        store = self.store
        if parts is None or parts == (command.prefix,):
            keys = store.keys(command.prefix, command.after, command.limit + 1)
        else:
            keys = []
            for part in parts:
                keys += store.keys(part, command.after, command.limit + 1 - len(keys))
                if len(keys) > command.limit:
                    break
        next_key = None
        if len(keys) > command.limit:
            del keys[command.limit :]
            next_key = keys[-1]
        if not command.details:
            return Listed(keys, next_key)
        details = []
        for key in keys:
            expires, ephemeral = store.details(key)
            value = store.get(key)
            size = 0 if value is None else len(value)
            changed = store.changed_at(key)
            details.append(KeyDetails(store.revision(key), changed, size, expires, ephemeral))
        return Listed(keys, next_key, details)

    # -- subscriptions -----------------------------------------------------------------------

    def _subscribe_key(self, client: Client, command: Subscribe) -> Subscribed:
        key = command.key
        rev_form = command.id is not None
        if rev_form:
            self.hub.subscribe_rev(client.subscriber, key)
        else:
            self.hub.subscribe(client.subscriber, key)
        reset = self._send_state(
            client, rev_form=rev_form, since=command.since, kind="key", name=key
        )
        return self._subscribed(command.since, reset)

    def _subscribe_prefix(
        self, client: Client, command: SubscribePrefix, parts: tuple[str, ...] | None = None
    ) -> Subscribed:
        """Subscribe to a prefix; with *parts* (narrower prefixes, the readable part of it),
        to each of them instead, as one subscription that unsubscribing the prefix ends."""
        prefix = command.prefix
        hub = self.hub
        if parts is None or parts == (prefix,):
            parts = (prefix,)
        if hub.prefixes_of(client.subscriber) + len(parts) > MAX_PREFIX_SUBSCRIPTIONS:
            raise TooLarge(
                f"too large: this connection holds {MAX_PREFIX_SUBSCRIPTIONS} prefix "
                "subscriptions, the most allowed; unsubscribe from some first"
            )
        rev_form = command.id is not None
        for part in parts:
            hub.subscribe_prefix(client.subscriber, part, rev_form)
        if parts != (prefix,):
            client.narrowed[prefix] = parts
        reset = self._send_state(
            client,
            rev_form=rev_form,
            since=command.since,
            kind="prefix",
            name=prefix,
            parts=parts,
        )
        return self._subscribed(command.since, reset)

    def _unsubscribe_prefix(self, client: Client, prefix: str) -> None:
        narrowed = client.narrowed
        parts = narrowed.pop(prefix, None) if narrowed else None
        for part in parts or (prefix,):
            self.hub.unsubscribe_prefix(client.subscriber, part)

    def initial_state(
        self, *, kind: str, name: str, since: int | None, parts: tuple[str, ...] | None = None
    ) -> tuple[bool, list[Update]]:
        """What a new subscription to the key or prefix *name* must receive first.

        *parts*: for a prefix, the narrower prefixes it covers (the part of it a
        client may read), default the prefix itself.

        Returns whether the client must reset what it holds, and the updates, in
        revision order: with *since*, the latest change after it of each key
        covered (deletions included) when the history holds them all; else
        (a reset, or no *since*) the current value of every key covered.
        Revision order, not key order, so that a client cut off midway has
        every change up to the highest revision it received.
        """
        store = self.store
        names = (name,) if parts is None or kind == "key" else parts
        if since is not None:
            changes = store.changes_since(since)
            if changes is not None:
                return False, [
                    self._update(change.key, store.get(change.key), change.rev)
                    for change in changes
                    if (change.key == name if kind == "key" else change.key.startswith(names))
                ]
        if kind == "key":
            keys: Iterable[str] = [name]
        else:
            keys = itertools.chain.from_iterable(store.matching(part) for part in names)
        # Thousands of keys for a prefix: the lookups are bound once.
        get, revision, update = store.get, store.revision, self._update
        state: list[Update] = []
        append = state.append
        for key in keys:
            value = get(key)
            if value is not None:
                append(update(key, value, revision(key)))
        state.sort(key=_by_revision)
        return since is not None, state

    def _send_state(
        self,
        client: Client,
        *,
        rev_form: bool,
        since: int | None,
        kind: str,
        name: str,
        parts: tuple[str, ...] | None = None,
    ) -> bool:
        """Send a new subscription's first messages (see :meth:`initial_state`)."""
        reset, updates = self.initial_state(kind=kind, name=name, since=since, parts=parts)
        send = client.send
        if reset:
            send(replies.encode_reset(kind, name))
        for update in updates:
            send(update.rev_payload if rev_form else update.payload)
        return reset

    def _subscribed(self, since: int | None, reset: bool) -> Subscribed:
        return Subscribed(self.store.rev, None if since is None else reset)

    # -- ends of keys ------------------------------------------------------------------------

    def expire_due(self, now: float) -> int:
        """Delete the keys whose deadline has come, telling subscribers; return how many."""
        expired = self.store.expire_due(now)
        for key, rev in expired:
            self._publish(ExpiredUpdate(key, rev))
        return len(expired)

    def release(self, owner: Hashable) -> int:
        """Delete the ephemeral keys of *owner* (a client gone), telling subscribers."""
        released = self.store.release(owner)
        for key, rev in released:
            self._publish(Update(key, None, rev))
        return len(released)

    def _update(self, key: str, value: bytes | None, rev: int) -> Update:
        """The update of a change, saying the key's deadline and kind when it has them."""
        if value is not None:
            expires, ephemeral = self.store.details(key)
            if expires is not None or ephemeral:
                return TimedUpdate(key, value, rev, expires, ephemeral)
        return Update(key, value, rev)

    def _deadline_changed(self) -> None:
        callback = self.deadline_changed
        if callback is not None:
            deadline = self.store.next_deadline()
            if deadline is not None:
                callback(deadline)


def _by_revision(update: Update) -> int:
    return update.rev


def _key_of(update: Update) -> str:
    return update.key


_ACTIONS: dict[type, str] = {Set: "set", Delete: "delete", Patch: "patch", Incr: "incr"}


def _all_written(results: list[WriteResult]) -> WriteResult:
    """A future that resolves once every one of *results* has: to the first error, or None."""
    combined: WriteResult = asyncio.get_running_loop().create_future()
    pending = [result for result in results if not result.done()]
    failure = next((r.result() for r in results if r.done() and r.result() is not None), None)
    if not pending or failure is not None:
        combined.set_result(failure)
        return combined
    left = len(pending)

    def one_done(result: WriteResult) -> None:
        nonlocal left
        left -= 1
        if combined.done():
            return
        if result.result() is not None:
            combined.set_result(result.result())
        elif left == 0:
            combined.set_result(None)

    for result in pending:
        result.add_done_callback(one_done)
    return combined
