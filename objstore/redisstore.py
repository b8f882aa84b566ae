"""The shared store: every value in Redis or Valkey, served by any number of instances.

Owns an instance's side of a store kept in Redis (``--redis``): writes sent
as atomic scripts (:mod:`objstore.redisscripts`), the change feed read from
its position, the instance's lease (for its connections' ephemeral keys), the
sweeps of deadlines and of dead instances, and the instance's copy of the
store (:class:`~objstore.redismirror.Mirror`) that answers every read.

How a change travels: an instance sends the script; Redis applies it and
appends it to the log, at the next revision of the one counter; every
instance (the writer too) reads the log in order and applies each change to
its copy, publishing it to its subscribers. So every instance publishes the
same changes with the same revisions in the same order, and a write is
acknowledged once its own instance has applied it (so that the writer's next
read sees it). Writes queue in one line per instance, sent in pipelines as
they come (many concurrent writers share a round trip) and applied in the
order sent.

When Redis goes away: writes fail with code ``storage`` (never acknowledged);
reads answer what the instance last knew; ``/readyz`` says not ready. The
feed reconnects by itself and goes on from the last revision it applied; if
the log was trimmed past it meanwhile, or the store was replaced (its epoch
changed, or its revision went back: a failover that lost writes), the copy
is read again and subscribers are told what changed, or (a replaced store)
every connection is closed so that clients start afresh.

Memory: the copy (the whole store, as the file store holds it); the write
queue is bounded by the sessions (each stops reading past
:data:`~objstore.session.MAX_WAITING_REPLIES` writes in flight).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import hashlib
import heapq
import itertools
import logging
import secrets
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Final, Protocol, TypeVar

from redis.asyncio import Redis
from redis.exceptions import NoScriptError, RedisError, ResponseError

from . import redisscripts as scripts
from .errors import StartupError, StorageError
from .keyspace import HISTORY_SIZE, Change
from .redislink import RedisTarget, describe_url, parse_url
from .redismirror import FeedChange, KeyRecord, Mirror
from .writer import LATENCY_BUCKETS

__all__ = [
    "LEASE_SECONDS",
    "PlainWriter",
    "RedisStore",
    "WriteOutcome",
]

logger = logging.getLogger("objstore.redis")

#: An instance that has not renewed its lease for this long is taken for dead, and its
#: connections' ephemeral keys are deleted (within a second more).
LEASE_SECONDS: Final = 10.0
_RENEW_EVERY: Final = 2.0
_REAP_EVERY: Final = 1.0
#: How often deadlines are swept (a key expires at most this late, plus the feed).
_SWEEP_EVERY: Final = 0.25
#: Deadlines this close (by this machine's clock) are swept for, in case Redis's runs ahead.
_CLOCK_SLACK: Final = 2.0
_FEED_BLOCK_MS: Final = 1000
_FEED_COUNT: Final = 1000
_PAGE: Final = 1000
_SWEEP_LIMIT: Final = 500
#: Scripts sent in one round trip at most.
_PIPELINE: Final = 512
#: Plain sets in one script call at most.
_PLAIN_GROUP: Final = 256
#: How long a write waits for its replicas (``--redis-replicas``), in ms.
_WAIT_MS: Final = 1000
#: Seconds a command may take before Redis is taken for unreachable.
_TIMEOUT: Final = 5.0
_RETRY_AFTER: Final = 0.5

_T = TypeVar("_T")


@dataclass(slots=True)
class WriteOutcome:
    """What Redis answered to a write: ``ok`` with each operation's revision (None: a
    deletion of nothing) and each increment's new value; ``conflict`` or ``stale`` at
    operation *index*, with the key's revision (and value, for a conflict); or
    ``nolease`` (the instance was taken for dead)."""

    kind: str
    revs: list[int | None] = field(default_factory=list)
    values: list[bytes | None] = field(default_factory=list)
    index: int = 0
    rev: int = 0
    value: bytes | None = None


@dataclass(slots=True)
class _Queued:
    script: str
    args: list[Any]
    future: asyncio.Future[Any]


class PlainWriter(Protocol):
    """Who made a plain set: told once it is applied here (None) or why it failed."""

    def write_done(self, error: StorageError | None, rev: int) -> None: ...


#: A set without conditions waiting in the queue: key, value, time to live in ms (or
#: None), and who to tell.
_PlainSet = tuple[str, bytes, int | None, "PlainWriter | None"]


class _Script:
    __slots__ = ("sha", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.sha = hashlib.sha1(text.encode()).hexdigest()


_SCRIPTS = {
    name: _Script(getattr(scripts, name))
    for name in ("WRITE", "SWEEP", "LEASE", "REAP", "RELEASE", "STATE", "READ_PAGE")
}


class WriteStats:
    """Counts of the writes sent to Redis, as /metrics reads them of a writer."""

    def __init__(self, queue: deque[Any]) -> None:
        self._queue = queue
        self.failures = 0
        self.failure: StorageError | None = None
        self._counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self._sum = 0.0

    @property
    def pending(self) -> int:
        return len(self._queue)

    def took(self, seconds: float) -> None:
        self._counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self._sum += seconds

    def latency(self) -> tuple[list[int], float]:
        return list(itertools.accumulate(self._counts)), self._sum


class RedisStore:
    """A store kept in Redis: reads from this instance's copy, writes through scripts."""

    def __init__(
        self,
        url: str,
        *,
        replicas: int = 0,
        prefix: str = scripts.PREFIX,
        lease: float = LEASE_SECONDS,
        history_size: int = HISTORY_SIZE,
    ) -> None:
        self.target: RedisTarget = parse_url(url)
        #: Replicas that must confirm a write (WAIT) before it is acknowledged.
        self.replicas = replicas
        self.url = describe_url(url)
        self.prefix = prefix
        self.lease = lease
        self.history_size = history_size
        #: This process's name in the store: its ephemeral keys' owners start with it.
        self.instance = secrets.token_hex(8)
        self.mirror = Mirror(history_size=history_size)
        self.epoch: bytes | None = None
        #: Told of every change applied, in revision order: set by the service.
        self.publish: Callable[[FeedChange], object] = _ignore
        #: Called when the store was replaced under this instance: set by the server.
        self.on_reset: Callable[[], object] = _ignore
        #: Values stored (sets, patches, increments) by every instance, as applied here.
        self.sets = 0
        self._queue: deque[_Queued | _PlainSet] = deque()
        self.writer = WriteStats(self._queue)
        self._wake: asyncio.Event | None = None
        #: Set while no write is queued or being sent.
        self._idle: asyncio.Event | None = None
        #: (revision, order, what to call once this instance has applied the revision).
        self._waiters: list[tuple[int, int, Callable[[], object]]] = []
        self._waiter_order = itertools.count()
        self._owners: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
        self._owner_numbers = itertools.count(1)
        self._client: Redis | None = None
        self._feed: Redis | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._feed_error: str | None = "not connected yet"
        self._resync_needed = False
        #: The log had an entry this instance cannot read: read the whole store again.
        self._reread_needed = False
        self._closing = False
        self._log = prefix + "log"

    # -- opening and closing ----------------------------------------------------------

    async def start(self) -> None:
        """Connect, take a lease and read the store. Raises StartupError when Redis cannot
        be reached or refuses."""
        name = f"objstore-{self.instance}"
        self._client = self.target.client(timeout=_TIMEOUT, name=name)
        self._feed = self.target.client(timeout=_FEED_BLOCK_MS / 1000 + _TIMEOUT, name=name)
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        try:
            await self._client.ping()
            await self._take_lease(renew=False)
            await self._read_store()
        except (RedisError, OSError) as exc:
            await self._close_clients()
            raise StartupError(
                f"cannot use the Redis store at {self.url}: {_reason(exc)}; start Redis or "
                "check --redis / REDIS_URL"
            ) from None
        self._feed_error = None
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._send_writes()),
            loop.create_task(self._follow_feed()),
            loop.create_task(self._keep_up()),
        ]
        logger.info(
            "store in Redis at %s: %d keys at revision %d; this instance is %s",
            self.url,
            len(self.mirror),
            self.mirror.rev,
            self.instance,
        )

    async def close(self) -> list[str]:
        """Send the writes queued, give up the lease (so that other instances delete its
        ephemeral keys at once) and disconnect. Returns no keys: nothing is left unsaved
        that a retry could save."""
        self._closing = True
        if self._idle is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), _TIMEOUT)
        for task in self._tasks:
            task.cancel()
        # A cancelled XREAD may end as if it had timed out (redis-py returns no entries)
        # and only after its block: the feed's connection is closed under it, and the
        # loops stop on _closing too.
        _, running = await asyncio.wait(self._tasks, timeout=0.05)
        if running and self._feed is not None:
            await self._feed.connection_pool.disconnect()
            await asyncio.wait(running, timeout=_TIMEOUT)
        if self._client is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._client.zadd(self.prefix + "lease", {self.instance: 0})
        self._fail_queued(StorageError("the server is stopping; not written"))
        # Writes Redis took that the feed has not brought back: they are in the store.
        self._wake_waiters(everyone=True)
        await self._close_clients()
        return []

    async def _close_clients(self) -> None:
        for client in (self._client, self._feed):
            if client is not None:
                await client.aclose()

    # -- reads (the copy) ---------------------------------------------------------------

    @property
    def rev(self) -> int:
        return self.mirror.rev

    def get(self, key: str) -> bytes | None:
        return self.mirror.get(key)

    def revision(self, key: str) -> int:
        return self.mirror.revision(key)

    def keys(self, prefix: str = "", after: str | None = None, limit: int = 100) -> list[str]:
        return self.mirror.keys(prefix, after, limit)

    def matching(self, prefix: str) -> Iterator[str]:
        return self.mirror.matching(prefix)

    def changes_since(self, since: int) -> list[Change] | None:
        return self.mirror.changes_since(since)

    def details(self, key: str) -> tuple[int | None, bool]:
        return self.mirror.details(key)

    def changed_at(self, key: str) -> int | None:
        return self.mirror.changed_at(key)

    def mark_time(self, now: float) -> None:
        self.mirror.mark_time(now)

    def __len__(self) -> int:
        return len(self.mirror)

    def __contains__(self, key: object) -> bool:
        return key in self.mirror

    def stored_bytes(self) -> int:
        return self.mirror.stored_bytes()

    def next_deadline(self) -> float | None:
        """None: the store sweeps its deadlines itself (once, whichever instance does)."""
        return None

    def readiness(self) -> str | None:
        """None while Redis answers; else why not (naming no address)."""
        if self._feed_error is not None:
            return "the Redis store cannot be reached; retrying"
        if self.writer.failure is not None:
            return "writes to the Redis store are failing"
        return None

    def when_durable(
        self, deliver: Callable[[_T], object], key_of: Callable[[_T], str]
    ) -> Callable[[_T], object]:
        """*deliver* itself: changes are published as the feed brings them, once in Redis."""
        return deliver

    # -- writes -------------------------------------------------------------------------

    def owner_name(self, client: object) -> str:
        """The name of *client* (a connection) as the owner of ephemeral keys."""
        name = self._owners.get(client)
        if name is None:
            name = self._owners[client] = f"{self.instance}/{next(self._owner_numbers)}"
        return name

    def write(self, ops: list[scripts.Op]) -> asyncio.Future[WriteOutcome]:
        """Apply *ops*, all or none, after every write sent before; the future resolves
        once this instance has applied them (``ok``), or to why not; it raises
        StorageError when Redis could not be asked."""
        args = [self.prefix, self.history_size, *scripts.write_args(self.instance, ops)]
        future = self._enqueue("WRITE", args)
        outcome: asyncio.Future[WriteOutcome] = future.get_loop().create_future()
        future.add_done_callback(lambda done: self._written(done, outcome))
        return outcome

    def set_plain(
        self, key: str, value: bytes, writer: PlainWriter | None, ttl_ms: int | None = None
    ) -> None:
        """Set *value* (with a deadline *ttl_ms* from now, or none), a set no condition can
        fail, after every write sent before; *writer* hears its revision once it is
        applied here, or why it failed. Such sets queued one after another go to Redis as
        one script call, so they cost little each."""
        self._queue.append((key, value, ttl_ms, writer))
        assert self._wake is not None
        assert self._idle is not None
        self._wake.set()
        self._idle.clear()

    def release(self, owner: object) -> None:
        """Delete the ephemeral keys of *owner* (a connection gone), after its writes."""
        name = self._owners.pop(owner, None)
        if name is not None:
            self._enqueue("RELEASE", [self.prefix, self.history_size, name])

    def _enqueue(self, script: str, args: list[Any]) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self._closing and not self._tasks:
            future.set_exception(StorageError("the server is stopping; not written"))
            return future
        self._queue.append(_Queued(script, args, future))
        assert self._wake is not None
        assert self._idle is not None
        self._wake.set()
        self._idle.clear()
        return future

    def _written(self, done: asyncio.Future[Any], outcome: asyncio.Future[WriteOutcome]) -> None:
        if outcome.done():
            return
        error = done.exception()
        if error is not None:
            outcome.set_exception(error)
            return
        reply = done.result()
        kind = reply[0].decode()
        if kind == "ok":
            revs = [int(rev) or None for rev in reply[2]]
            values = [value or None for value in reply[3]]
            result = WriteOutcome("ok", revs, values)
            last = max((rev for rev in revs if rev is not None), default=0)
            self._when_applied(last, outcome, result)
        elif kind == "conflict":
            outcome.set_result(
                WriteOutcome(
                    "conflict", index=int(reply[1]), rev=int(reply[2]), value=reply[3] or None
                )
            )
        elif kind == "stale":
            outcome.set_result(WriteOutcome("stale", index=int(reply[1]), rev=int(reply[2])))
        else:
            outcome.set_result(WriteOutcome("nolease"))

    def when_applied(self, rev: int) -> asyncio.Future[None]:
        """A future that resolves once this instance has applied revision *rev*."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._when_applied(rev, future, None)
        return future

    def _when_applied(self, rev: int, future: asyncio.Future[Any], result: Any) -> None:
        if rev <= self.mirror.rev:
            future.set_result(result)
            return
        call: Callable[[], object] = partial(_resolve, future, result)
        heapq.heappush(self._waiters, (rev, next(self._waiter_order), call))

    def _wake_waiters(self, everyone: bool = False) -> None:
        waiters = self._waiters
        rev = self.mirror.rev
        while waiters and (everyone or waiters[0][0] <= rev):
            heapq.heappop(waiters)[2]()

    async def _send_writes(self) -> None:
        """Send queued scripts in pipelines, one round trip at a time, in order."""
        queue = self._queue
        wake = self._wake
        idle = self._idle
        assert wake is not None
        assert idle is not None
        while True:
            if not queue:
                idle.set()
                wake.clear()
                await wake.wait()
                continue
            batch: list[_Queued] = []
            while queue and len(batch) < _PIPELINE:
                item = queue.popleft()
                if type(item) is tuple:
                    plains = [item]
                    while queue and type(queue[0]) is tuple and len(plains) < _PLAIN_GROUP:
                        plains.append(queue.popleft())  # type: ignore[arg-type]
                    batch.append(self._plain_group(plains))
                else:
                    batch.append(item)  # type: ignore[arg-type]
            await self._send(batch)

    def _plain_group(self, plains: list[_PlainSet]) -> _Queued:
        """One script call for plain sets queued one after another (no condition can fail
        them: they are applied together, in order)."""
        args: list[Any] = [self.prefix, self.history_size, self.instance, len(plains)]
        for key, value, ttl_ms, _ in plains:
            args += (key, "s", value, "", "", "" if ttl_ms is None else ttl_ms, "", "")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.add_done_callback(partial(self._plains_written, plains))
        return _Queued("WRITE", args, future)

    def _plains_written(self, plains: list[_PlainSet], done: asyncio.Future[Any]) -> None:
        error = done.exception()
        if error is None and done.result()[0] != b"ok":
            error = StorageError(f"the Redis store refused the write ({done.result()[0]!r})")
        if error is not None:
            failure = error if isinstance(error, StorageError) else StorageError(str(error))
            for *_, writer in plains:
                if writer is not None:
                    writer.write_done(failure, 0)
            return
        revs = done.result()[2]
        if int(revs[0]) == self.mirror.rev + 1 and all(plain[2] is None for plain in plains):
            # The next changes of the store, and this instance knows all they did: applied
            # and published now, a round trip before the log brings them (then skipped).
            self._apply_made(plains, revs)
        if int(revs[-1]) <= self.mirror.rev:
            _tell_written(plains, revs)
            return
        last = int(revs[-1])
        call: Callable[[], object] = partial(_tell_written, plains, revs)
        heapq.heappush(self._waiters, (last, next(self._waiter_order), call))

    def _apply_made(self, plains: list[_PlainSet], revs: list[bytes]) -> None:
        mirror = self.mirror
        publish = self.publish
        for (key, value, _, _), rev in zip(plains, revs, strict=True):
            change = FeedChange(int(rev), key, value)
            if mirror.apply(change):
                self.sets += 1
                publish(change)
        self._wake_waiters()

    async def _send(self, batch: list[_Queued]) -> None:
        """Send *batch* in one round trip and settle each item's future."""
        assert self._client is not None
        started = time.monotonic()
        try:
            replies = await self._pipeline(batch)
            if any(isinstance(reply, NoScriptError) for reply in replies):
                # Redis restarted or failed over: its script cache is empty. Every reply
                # from the first NOSCRIPT on is one (the cache empties all at once).
                first = next(i for i, r in enumerate(replies) if isinstance(r, NoScriptError))
                for script in _SCRIPTS.values():
                    await self._client.script_load(script.text)
                replies[first:] = await self._pipeline(batch[first:])
        except (RedisError, OSError) as exc:
            error = _unreachable(exc, self.url)
            self.writer.failures += 1
            self.writer.failure = error
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(error)
            return
        self.writer.took(time.monotonic() - started)
        self.writer.failure = None
        for item, reply in zip(batch, replies, strict=True):
            if item.future.done():
                continue
            if isinstance(reply, StorageError):
                item.future.set_exception(reply)
            elif isinstance(reply, ResponseError):
                logger.error("Redis refused a write: %s", reply)
                item.future.set_exception(
                    StorageError(f"the Redis store refused the write ({reply}); not written")
                )
            else:
                item.future.set_result(reply)

    async def _pipeline(self, batch: list[_Queued]) -> list[Any]:
        assert self._client is not None
        pipe = self._client.pipeline(transaction=False)
        for item in batch:
            pipe.evalsha(_SCRIPTS[item.script].sha, 0, *item.args)
        if self.replicas:
            pipe.execute_command("WAIT", self.replicas, _WAIT_MS)
        replies: list[Any] = await pipe.execute(raise_on_error=False)
        if not self.replicas:
            return replies
        confirmed = replies.pop()
        if isinstance(confirmed, int) and confirmed < self.replicas:
            error = StorageError(
                f"written on the Redis primary but confirmed by {confirmed} of "
                f"{self.replicas} replicas within {_WAIT_MS} ms: a failover now could lose "
                "it; check the replicas"
            )
            replies = [error if isinstance(reply, list) else reply for reply in replies]
        return replies

    def _fail_queued(self, error: StorageError) -> None:
        while self._queue:
            item = self._queue.popleft()
            if isinstance(item, tuple):
                if item[3] is not None:
                    item[3].write_done(error, 0)
            elif not item.future.done():
                item.future.set_exception(error)

    async def _call(self, client: Redis, script: str, *args: Any) -> Any:
        """Run *script* now (not in the write line), loading it when Redis lacks it."""
        known = _SCRIPTS[script]
        full = [self.prefix, self.history_size, *args]
        try:
            return await client.evalsha(known.sha, 0, *full)
        except NoScriptError:
            return await client.eval(known.text, 0, *full)

    # -- the copy and the feed --------------------------------------------------------

    async def _read_store(self) -> None:
        """Read every key and the recent log into a new copy."""
        assert self._client is not None
        client = self._client
        rev_text, epoch = await self._call(client, "STATE")
        rev = int(rev_text)
        records: dict[str, KeyRecord] = {}
        cursor: Any = b"0"
        while True:
            cursor, flat = await self._call(client, "READ_PAGE", cursor, _PAGE)
            for i in range(0, len(flat), 5):
                key = flat[i].decode()
                record = KeyRecord(
                    flat[i + 1],
                    int(flat[i + 2]),
                    int(float(flat[i + 3])) if flat[i + 3] else None,
                    flat[i + 4].decode() or None,
                )
                known = records.get(key)
                if known is None or known.rev < record.rev:
                    records[key] = record
            if cursor in (b"0", 0, "0"):
                break
        history = await self._read_history(rev)
        mirror = Mirror(records, rev, self.history_size)
        if history:
            mirror.space = type(mirror.space)(
                mirror.space.values,
                mirror.space.revs,
                rev,
                history=history,
                base=history[0].rev - 1,
                history_size=self.history_size,
            )
        old, self.mirror = self.mirror, mirror
        replaced = self.epoch is not None and (epoch != self.epoch or rev < old.rev)
        if replaced and epoch == self.epoch:
            # The revision went back: a failover lost changes that clients may have seen.
            # A new epoch tells every instance, including those that never saw them.
            epoch = f"{time.time():.6f}.{self.instance}".encode()
            await client.hset(self.prefix + "meta", "epoch", epoch)
        first = self.epoch is None
        self.epoch = epoch
        if first:
            return
        if replaced:
            logger.warning(
                "the store in Redis was replaced or lost changes (a flush, a failover): "
                "every connection is closed so that its client starts afresh"
            )
            self.on_reset()
            self._wake_waiters(everyone=True)
            return
        # Tell subscribers what changed while this instance could not follow.
        for key, _ in list(old.items()):
            if key not in mirror:
                self.publish(FeedChange(rev, key, None))
        for key, record in records.items():
            if old.revision(key) != record.rev:
                self.publish(
                    FeedChange(record.rev, key, record.value, record.expires, record.owner)
                )
        self._wake_waiters()

    async def _read_history(self, rev: int) -> list[Change]:
        """The changes the log holds up to *rev*, when it holds every one up to it."""
        assert self._client is not None
        entries: Any = await self._client.xrevrange(
            self._log, f"{rev}-0", "-", count=self.history_size
        )
        changes: list[Change] = []
        for entry_id, fields in entries:  # newest first: back to the first it cannot read
            try:
                changes.append(
                    Change(_rev_of(entry_id), fields[b"k"].decode(), b"v" not in fields)
                )
            except (KeyError, ValueError):
                break
        changes.reverse()
        if not changes or changes[-1].rev != rev:
            return []
        if any(b.rev != a.rev + 1 for a, b in itertools.pairwise(changes)):
            return []
        return changes

    async def _follow_feed(self) -> None:
        """Read the log from the last revision applied, for ever; reconnect after errors."""
        assert self._feed is not None
        feed = self._feed
        while not self._closing:
            try:
                if self._reread_needed:
                    self._reread_needed = False
                    await self._read_store()
                if self._resync_needed or self._feed_error is not None:
                    self._resync_needed = False
                    await self._check_store()
                reply: Any = await feed.xread(
                    {self._log: f"{self.mirror.rev}-0"}, count=_FEED_COUNT, block=_FEED_BLOCK_MS
                )
                if reply:
                    self._apply(reply[0][1])
            except (RedisError, OSError) as exc:
                if self._closing:
                    return
                if self._feed_error is None:
                    logger.warning(
                        "lost the Redis store at %s (%s); reads answer what this instance "
                        "knows, writes fail until it is back",
                        self.url,
                        _reason(exc),
                    )
                    self._feed_error = _reason(exc)
                await asyncio.sleep(_RETRY_AFTER)
                continue
            except Exception:
                # A bug must not stop this instance from following the store for good.
                logger.exception("could not apply the store's log; reading the store again")
                self._reread_needed = True
                await asyncio.sleep(_RETRY_AFTER)
                continue
            if self._feed_error is not None:
                logger.warning("the Redis store at %s is back", self.url)
                self._feed_error = None

    async def _check_store(self) -> None:
        """After an error or a sign of it: read the copy again when the log cannot say what
        changed (trimmed past this instance, or the store replaced)."""
        assert self._feed is not None
        rev_text, epoch = await self._call(self._feed, "STATE")
        rev = int(rev_text)
        if epoch == self.epoch and rev >= self.mirror.rev:
            first: Any = await self._feed.xrange(
                self._log, f"{self.mirror.rev + 1}-0", "+", count=1
            )
            if rev == self.mirror.rev or (first and _rev_of(first[0][0]) == self.mirror.rev + 1):
                return
        await self._read_store()

    def _apply(self, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> None:
        mirror = self.mirror
        publish = self.publish
        for entry_id, fields in entries:
            rev = _rev_of(entry_id)
            if rev <= mirror.rev:
                continue  # applied when its write was answered
            if rev != mirror.rev + 1:
                # The log was trimmed past this instance: read the store again.
                self._resync_needed = True
                break
            value = fields.get(b"v")
            expires = fields.get(b"e")
            owner = fields.get(b"o")
            try:
                change = FeedChange(
                    rev,
                    fields[b"k"].decode(),
                    value,
                    None if expires is None else int(expires),
                    None if owner is None else owner.decode(),
                    b"x" in fields,
                )
            except (KeyError, ValueError):  # ValueError covers a key that is not UTF-8
                logger.error(
                    "entry %s of the store's log is not one objstore wrote (fields %s); "
                    "reading the whole store again instead",
                    entry_id.decode(errors="replace"),
                    sorted(field.decode(errors="replace") for field in fields),
                )
                self._reread_needed = True
                break
            if mirror.apply(change):
                if value is not None:
                    self.sets += 1
                publish(change)
        self._wake_waiters()

    # -- leases and sweeps --------------------------------------------------------------

    async def _take_lease(self, *, renew: bool) -> bool:
        assert self._client is not None
        taken, _, epoch = await self._call(
            self._client,
            "LEASE",
            self.instance,
            int(self.lease * 1000),
            "renew" if renew else "take",
        )
        if self.epoch is not None and epoch != self.epoch:
            self._resync_needed = True
        return bool(taken)

    async def _keep_up(self) -> None:
        """Sweep due deadlines, renew the lease, reap dead instances' keys."""
        assert self._client is not None
        client = self._client
        loop = asyncio.get_running_loop()
        renew_at = reap_at = loop.time()
        while not self._closing:
            await asyncio.sleep(_SWEEP_EVERY)
            try:
                deadline = self.mirror.next_deadline()
                if deadline is not None and deadline <= time.time() + _CLOCK_SLACK:
                    while await self._call(client, "SWEEP", _SWEEP_LIMIT) >= _SWEEP_LIMIT:
                        pass
                now = loop.time()
                if now >= renew_at:
                    renew_at = now + _RENEW_EVERY
                    if not await self._take_lease(renew=True):
                        logger.warning(
                            "this instance's lease ended before it was renewed (was the "
                            "process paused?): other instances may have deleted its "
                            "connections' ephemeral keys; taking a new lease"
                        )
                        await self._take_lease(renew=False)
                if now >= reap_at:
                    reap_at = now + _REAP_EVERY
                    while await self._call(client, "REAP", _SWEEP_LIMIT) >= _SWEEP_LIMIT:
                        pass
            except (RedisError, OSError):
                continue  # the feed tells of it; try again at the next round


def _resolve(future: asyncio.Future[Any], result: Any) -> None:
    if not future.done():
        future.set_result(result)


def _tell_written(plains: list[_PlainSet], revs: list[bytes]) -> None:
    for (*_, writer), rev in zip(plains, revs, strict=True):
        if writer is not None:
            writer.write_done(None, int(rev))


def _rev_of(entry_id: bytes) -> int:
    return int(entry_id.partition(b"-")[0])


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().rstrip(".") or type(exc).__name__
    return text[:200]


def _unreachable(exc: BaseException, url: str) -> StorageError:
    return StorageError(
        f"the Redis store cannot be reached ({_reason(exc)}); not written, "
        "try again once it is back"
    )


def _ignore(*_: object) -> None:
    return None
