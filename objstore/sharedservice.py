"""The commands of the protocol on a shared store (Redis), where writes are decided elsewhere.

Owns the write side of :class:`~objstore.service.StoreService` for a
:class:`~objstore.redisstore.RedisStore`: every write becomes operations of
one atomic script, and its result (revision, new value, conflict) arrives
later, once Redis decided and this instance applied the change. Reads,
subscriptions and listings are the base service's, answered from the
instance's copy. Changes are published as the store's feed brings them, by
whichever instance made them, so the service publishes nothing when it writes.

Compare-and-set, batches and plain increments of integers are decided in
Redis alone. A patch, or an increment that Redis cannot do exactly (floats,
huge numbers), is computed here from the copy and written on the condition
that the key is still at the revision it was computed from; when another
instance changed it meanwhile, it is computed again once this instance has
that change (at most :data:`MAX_ATTEMPTS` times).

A client's later messages wait for its writes where the order matters (see
:meth:`~objstore.sharedsession.SharedClientSession.hold_until`): a read waits
for every write before it, and any message waits for a write that may be
computed again.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Sequence
from typing import Any, Final

from . import authorize, replies
from .commands import Batch, Command, Delete, Incr, Patch, Set, Write
from .errors import ClientError, Conflict, ObjstoreError, StorageError
from .hub import Hub
from .permissions import Grant
from .redismirror import FeedChange
from .redisscripts import Op
from .redisstore import RedisStore, WriteOutcome
from .results import BatchWritten, Result, Written
from .service import Client, StoreService
from .updates import ExpiredUpdate, Update
from .writer import WriteResult

__all__ = ["MAX_ATTEMPTS", "SharedStoreService"]

#: Times a computed write (a patch) is tried before the client is told to try again.
MAX_ATTEMPTS: Final = 20
#: Integers Redis adds exactly (HINCRBY: 64 bits), as JSON text.
_INTEGER = re.compile(rb"-?[1-9][0-9]{0,16}|0")
_ACTIONS: dict[type, str] = {Set: "set", Delete: "delete", Patch: "patch", Incr: "incr"}

#: Makes the operations of an attempt; and, given Redis's answer, fills the result.
Plan = Callable[[], tuple[list[Op], Callable[[WriteOutcome], None]]]


class SharedStoreService(StoreService):
    """:class:`StoreService` whose writes go to a store shared by several instances."""

    # The shared store reads as any Storage does; every method of StoreService that
    # writes through Storage is overridden here, so its sync writes are never needed.
    store: RedisStore  # type: ignore[assignment]

    def __init__(
        self, store: RedisStore, hub: Hub, max_value_size: int = 16 * 1024 * 1024
    ) -> None:
        super().__init__(store, hub, max_value_size)  # type: ignore[arg-type]
        store.publish = self._publish_change

    def _publish_change(self, change: FeedChange) -> None:
        """Publish a change the feed brought (made by any instance)."""
        if change.value is None:
            update: Update = (
                ExpiredUpdate(change.key, change.rev)
                if change.expired
                else Update(change.key, None, change.rev)
            )
        else:
            update = self._update(change.key, change.value, change.rev)
        self.hub.publish(update)

    # -- commands -----------------------------------------------------------------------

    def execute(self, client: Client, command: Command) -> Result | None:
        if (
            type(command) is Set
            and command.id is None
            and command.if_rev is None
            and command.ttl is None
            and not command.ephemeral
        ):
            # The original set: no result, nothing to compute; queued as it is.
            sent = getattr(client, "write_sent", None)
            if sent is not None:
                sent()
                self.store.set_plain(command.key, command.value, client)  # type: ignore[arg-type]
                return None
        if (
            type(command) is Set
            and command.if_rev is None
            and not command.ephemeral
            and command.id is not None
        ):
            # A set no condition can fail, acknowledged: queued as it is too.
            written = _Acknowledged(Written("set", command.key, 0), asyncio.get_running_loop())
            hold = getattr(client, "hold_until", None)
            if hold is not None:
                hold(written.future, False)
            self.store.set_plain(command.key, command.value, written, _ms(command.ttl))
            written.result.written = written.future
            return written.result
        if isinstance(command, Set | Delete | Patch | Incr):
            return self._write_shared(client, command)
        if isinstance(command, Batch):
            return self._batch_shared(client, command)
        return super().execute(client, command)

    def execute_as(self, client: Client, grant: Grant, command: Command) -> Result | None:
        result = super().execute_as(client, grant, command)
        written: WriteResult | None = getattr(result, "written", None)
        if written is not None and not grant.everything:
            if isinstance(command, Batch):
                keys = [op.key for op in command.ops]
            else:
                keys = [getattr(command, "key", "")]
            # Before any other callback: the conflict is hidden before it is sent.
            written.add_done_callback(lambda done: _hide_unreadable(grant, done, keys))
        return result

    def set(self, key: str, value: bytes, on_failure: Any = None) -> Update:
        """Send *value* (a plain set); the update is published when the feed brings it."""
        written = _Acknowledged(Written("set", key, 0), asyncio.get_running_loop())
        if on_failure is not None:
            written.future.add_done_callback(lambda done: _report(on_failure, done))
        self.store.set_plain(key, value, written)
        return Update(key, value, 0)

    def set_and_wait(self, key: str, value: bytes) -> tuple[Update, WriteResult]:
        written = _Acknowledged(Written("set", key, 0), asyncio.get_running_loop())
        self.store.set_plain(key, value, written)
        return Update(key, value, 0), written.future

    def expire_due(self, now: float) -> int:
        """Nothing: the store sweeps its deadlines itself, once for every instance."""
        return 0

    def release(self, owner: object) -> int:
        """Delete *owner*'s ephemeral keys (after its writes); the feed tells subscribers."""
        self.store.release(owner)
        return 0

    # -- writes -------------------------------------------------------------------------

    def _write_shared(self, client: Client, command: Write) -> Written | None:
        wait = command.id is not None
        result = Written(
            _ACTIONS[type(command)],
            command.key,
            0,
            deleted=True if isinstance(command, Delete) else None,
        )
        owner = (
            self.store.owner_name(client)
            if isinstance(command, Set) and command.ephemeral
            else None
        )

        def plan() -> tuple[list[Op], Callable[[WriteOutcome], None]]:
            op, value = self._op(
                command, owner, seen=True, may_add=True, current=self.store.get(command.key)
            )

            def done(outcome: WriteOutcome) -> None:
                rev = outcome.revs[0]
                if isinstance(command, Delete):
                    result.deleted = rev is not None
                result.rev = self.store.rev if rev is None else rev
                if isinstance(command, Patch | Incr):
                    result.value = outcome.values[0] if op.kind == "i" else value

            return [op], done

        computed = isinstance(command, Patch | Incr)
        settled = self._attempt(plan, client, None if wait else client, computed=computed)
        if not wait:
            return None
        result.written = settled
        return result

    def _op(
        self,
        command: Write,
        owner: str | None,
        *,
        seen: bool,
        may_add: bool,
        current: bytes | None,
    ) -> tuple[Op, bytes | None]:
        """The operation of *command* and the value it makes (None: unknown here, or a
        deletion). *seen*: a computed value is written on the condition that the key is
        still at its revision in the copy (its first operation in a batch); *may_add*:
        an increment may be left to Redis (a key no other operation of a batch touches)."""
        key = command.key
        if isinstance(command, Set):
            return Op(key, "s", command.value, command.if_rev, None, _ms(command.ttl), owner), (
                command.value
            )
        if isinstance(command, Delete):
            return Op(key, "d", if_rev=command.if_rev), None
        if (
            isinstance(command, Incr)
            and may_add
            and type(command.by) is int
            and abs(command.by) < 10**17
            and (current is None or _INTEGER.fullmatch(current))
        ):
            by = str(command.by).encode()
            return Op(key, "i", by, command.if_rev, None, _ms(command.ttl), keep=True), None
        value = self._new_value(command, current)
        revision = self.store.revision(key) if seen else None
        op = Op(key, "s", value or b"", command.if_rev, revision, _ms(command.ttl), keep=True)
        return op, value

    def _batch_shared(self, client: Client, command: Batch) -> BatchWritten | None:
        wait = command.id is not None
        results = [
            Written(
                _ACTIONS[type(op)], op.key, 0, deleted=True if isinstance(op, Delete) else None
            )
            for op in command.ops
        ]
        repeated = _repeated_keys(command.ops)
        batch = BatchWritten(0, results)

        def plan() -> tuple[list[Op], Callable[[WriteOutcome], None]]:
            ops: list[Op] = []
            made: dict[str, bytes | None] = {}
            values: list[bytes | None] = []
            for index, op in enumerate(command.ops):
                key = op.key
                first = key not in made
                current = self.store.get(key) if first else made[key]
                owner = (
                    self.store.owner_name(client) if isinstance(op, Set) and op.ephemeral else None
                )
                try:
                    # A key the batch touches again is computed here, never added in Redis.
                    planned, value = self._op(
                        op, owner, seen=first, may_add=key not in repeated, current=current
                    )
                except ClientError as exc:
                    exc.op = index
                    raise
                made[key] = value
                values.append(value)
                ops.append(planned)

            def done(outcome: WriteOutcome) -> None:
                for index, (written, op) in enumerate(zip(results, command.ops, strict=True)):
                    rev = outcome.revs[index]
                    if isinstance(op, Delete):
                        written.deleted = rev is not None
                    written.rev = self.store.rev if rev is None else rev
                    if isinstance(op, Patch | Incr):
                        written.value = outcome.values[index] or values[index]
                batch.rev = max(
                    (rev for rev in outcome.revs if rev is not None), default=self.store.rev
                )

            return ops, done

        computed = any(isinstance(op, Patch | Incr) for op in command.ops)
        settled = self._attempt(plan, client, None if wait else client, computed=computed)
        if not wait:
            return None
        batch.written = settled
        return batch

    def _attempt(
        self,
        plan: Plan,
        client: Client | None,
        report: Any = None,
        *,
        computed: bool = False,
    ) -> WriteResult:
        """Send the operations of *plan*; return a future that resolves once the write is
        settled: to None (done, and applied here), or to the error. *report*: told of
        an error instead (a client, or a failure callback) when nobody waits for it.
        Raises ClientError when the first plan cannot be made."""
        ops, done = plan()
        settled: WriteResult = asyncio.get_running_loop().create_future()
        if report is not None:
            settled.add_done_callback(lambda future: _report(report, future))
        hold = getattr(client, "hold_until", None)
        if hold is not None:
            hold(settled, computed)
        self._send(plan, ops, done, settled, 1)
        return settled

    def _send(
        self,
        plan: Plan,
        ops: list[Op],
        done: Callable[[WriteOutcome], None],
        settled: WriteResult,
        attempt: int,
    ) -> None:
        def answered(future: asyncio.Future[WriteOutcome]) -> None:
            error = future.exception()
            if error is not None:
                if not isinstance(error, StorageError):
                    error = StorageError(
                        f"the Redis store failed the write ({error}); not written"
                    )
                settled.set_result(error)
                return
            outcome = future.result()
            if outcome.kind == "ok":
                done(outcome)
                settled.set_result(None)
            elif outcome.kind == "conflict":
                op = ops[outcome.index]
                conflict = Conflict.mismatch(op.key, outcome.rev, op.if_rev or 0, outcome.value)
                if len(ops) > 1:
                    conflict.op = outcome.index
                settled.set_result(conflict)
            elif outcome.kind == "stale" and attempt < MAX_ATTEMPTS:
                self.store.when_applied(outcome.rev).add_done_callback(
                    lambda _: self._again(plan, settled, attempt + 1)
                )
            elif outcome.kind == "stale":
                settled.set_result(
                    StorageError(
                        f"key {ops[outcome.index].key!r} changed {MAX_ATTEMPTS} times while "
                        "this write was computed; not written, try again"
                    )
                )
            else:
                settled.set_result(
                    StorageError(
                        "this instance's lease on the Redis store ended (was it paused?); "
                        "the ephemeral key was not written, try again"
                    )
                )

        self.store.write(ops).add_done_callback(answered)

    def _again(self, plan: Plan, settled: WriteResult, attempt: int) -> None:
        try:
            ops, done = plan()
        except ClientError as exc:
            settled.set_result(exc)
            return
        self._send(plan, ops, done, settled, attempt)


class _Acknowledged:
    """A set queued without conditions whose result someone waits for: told its revision
    (or its failure) by the store, it fills the result and resolves the future."""

    __slots__ = ("future", "result")

    def __init__(self, result: Written, loop: asyncio.AbstractEventLoop) -> None:
        self.result = result
        self.future: WriteResult = loop.create_future()

    def write_done(self, error: StorageError | None, rev: int) -> None:
        self.result.rev = rev
        self.future.set_result(error)


def _repeated_keys(ops: Sequence[Write]) -> set[str]:
    seen: set[str] = set()
    repeated: set[str] = set()
    for op in ops:
        (repeated if op.key in seen else seen).add(op.key)
    return repeated


def _ms(ttl: float | None) -> int | None:
    return None if ttl is None else max(1, round(ttl * 1000))


def _report(report: Any, future: WriteResult) -> None:
    """Tell a writer that nobody waits for of its write's failure."""
    error = future.result()
    if error is None:
        return
    if callable(report):
        report(error)
    elif isinstance(error, StorageError):
        report.report_failure(error)
    else:
        report.send(replies.encode_error_reply(error, None))


def _hide_unreadable(grant: Grant, done: WriteResult, keys: list[str]) -> None:
    error: ObjstoreError | None = done.result()
    if isinstance(error, Conflict):
        authorize.hide_unreadable(grant, error, keys)
