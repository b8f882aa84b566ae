"""Protocol 2 against a model: replies, get and subscriptions agree on any sequence of writes.

Each example starts a real server on a fresh cache folder, sends a random
sequence of ``set``, ``delete``, ``patch``, ``incr`` and ``batch`` messages
(with ids, with and without ``ifRev``) over a small key space, and checks
every observation against a model kept here: a dict of values and a revision
counter, where each change takes the next revision, a delete of a missing key
takes none and a failed ``ifRev`` takes none and is a conflict. The
observations are the replies, a watcher of prefix ``""`` and one of ``"p/"``
subscribed before the writes, a ``get`` of every key, and a resume with
``since: R`` for every revision R, applied to the model's state at R.

Values are never floats, so that a value's JSON is exact; replies and
updates are compared as canonical JSON, so that ``true`` is never taken for
``1``.
"""

from __future__ import annotations

import asyncio
import copy
import json
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import ClientConnection, connect

from objstore.config import Config
from objstore.server import ObjstoreServer

from .conftest import Connect
from .helpers import recv_json

#: Keys whose values are anything; patched, never incremented.
OBJECT_KEYS = ["a", "b", "p/a", "p/b", "p/c"]
#: Keys that only ever hold integers; incremented, never patched.
NUMBER_KEYS = ["n", "p/n"]
ALL_KEYS = OBJECT_KEYS + NUMBER_KEYS

EXAMPLES = settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# -- what is sent ------------------------------------------------------------------------

#: ``ifRev`` as drawn: none, the key's revision when the op runs, one off it, or a number.
IF_REVS = st.one_of(st.none(), st.sampled_from(["current", "stale"]), st.integers(0, 12))

SCALARS = st.one_of(st.integers(-(2**60), 2**60), st.text('xyé😀"\\', max_size=4), st.booleans())
MEMBERS = st.sampled_from(["x", "y", "z"])
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(MEMBERS, inner | st.none(), max_size=3)
    ),
    max_leaves=6,
)
PATCHES = st.recursive(
    st.dictionaries(MEMBERS, SCALARS | st.none(), max_size=3),
    lambda inner: st.dictionaries(MEMBERS, SCALARS | st.none() | inner, max_size=3),
    max_leaves=6,
)


@dataclass(frozen=True)
class Op:
    """One write as drawn (``if_rev`` still symbolic)."""

    action: str
    key: str
    arg: Any = None
    if_rev: int | str | None = None


SINGLE_OPS = st.one_of(
    st.builds(Op, st.just("set"), st.sampled_from(OBJECT_KEYS), VALUES, IF_REVS),
    st.builds(Op, st.just("set"), st.sampled_from(NUMBER_KEYS), st.integers(-100, 100), IF_REVS),
    st.builds(Op, st.just("delete"), st.sampled_from(ALL_KEYS), st.none(), IF_REVS),
    st.builds(Op, st.just("patch"), st.sampled_from(OBJECT_KEYS), PATCHES, IF_REVS),
    st.builds(
        Op, st.just("incr"), st.sampled_from(NUMBER_KEYS), st.none() | st.integers(-5, 5), IF_REVS
    ),
)
#: A single op, or a batch of them.
MESSAGES = st.one_of(SINGLE_OPS, st.lists(SINGLE_OPS, min_size=1, max_size=4))


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386, written out plainly."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for name, member in patch.items():
        if member is None:
            result.pop(name, None)
        else:
            result[name] = merge_patch(result.get(name), member)
    return result


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


# -- the model -----------------------------------------------------------------------------


class ModelConflict(Exception):
    def __init__(self, members: dict[str, Any]) -> None:
        self.members = members


@dataclass
class Model:
    """The key space as it should be: values, revisions, and every change in order."""

    values: dict[str, Any] = field(default_factory=dict)
    revs: dict[str, int] = field(default_factory=dict)
    rev: int = 0
    #: (rev, key, value or None for a deletion), one per change.
    changes: list[tuple[int, str, Any]] = field(default_factory=list)

    def clone(self) -> Model:
        return Model(copy.deepcopy(self.values), dict(self.revs), self.rev, list(self.changes))

    def state_at(self, rev: int) -> dict[str, Any]:
        """Every key's value after the change of revision *rev*."""
        state: dict[str, Any] = {}
        for change_rev, key, value in self.changes:
            if change_rev > rev:
                break
            if value is None:
                state.pop(key, None)
            else:
                state[key] = value
        return state

    def _change(self, key: str, value: Any) -> int:
        self.rev += 1
        if value is None:
            del self.values[key]
            del self.revs[key]
        else:
            self.values[key] = value
            self.revs[key] = self.rev
        self.changes.append((self.rev, key, value))
        return self.rev

    def resolve(self, op: Op) -> int | None:
        """The ``ifRev`` to send for *op* in the model's present state."""
        current = self.revs.get(op.key, 0)
        if op.if_rev == "current":
            return current
        if op.if_rev == "stale":
            return current + 1 if current == 0 else current - 1
        assert op.if_rev is None or isinstance(op.if_rev, int)
        return op.if_rev

    def apply(self, op: Op, if_rev: int | None) -> dict[str, Any]:
        """Apply *op*; return the members of its reply after ``ok``, or raise ModelConflict."""
        key = op.key
        current_rev = self.revs.get(key, 0)
        if if_rev is not None and if_rev != current_rev:
            raise ModelConflict(
                {
                    "error": f"conflict: key {json.dumps(key)} is at revision {current_rev}, "
                    f"not {if_rev}",
                    "code": "conflict",
                    "rev": current_rev,
                    "value": self.values.get(key),
                }
            )
        if op.action == "set":
            return {"rev": self._change(key, op.arg)}
        if op.action == "delete":
            if key not in self.values:
                return {
                    "rev": self._change(key, None) if False else self.rev + 0,
                    "deleted": False,
                }
            return {"rev": self._change(key, None), "deleted": True}
        if op.action == "patch":
            value = merge_patch(self.values.get(key), op.arg)
        else:
            value = self.values.get(key, 0) + (1 if op.arg is None else op.arg)
        return {"rev": self._change(key, value), "value": value}


def op_message(op: Op, if_rev: int | None) -> dict[str, Any]:
    message: dict[str, Any] = {"action": op.action, "key": op.key}
    if op.action in ("set", "patch"):
        message["value"] = op.arg
    elif op.action == "incr" and op.arg is not None:
        message["by"] = op.arg
    if if_rev is not None:
        message["ifRev"] = if_rev
    return message


def predict(
    model: Model, drawn: Op | list[Op], request_id: int | str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The message to send for *drawn* and its predicted reply; applies it to *model*."""
    if isinstance(drawn, Op):
        if_rev = model.resolve(drawn)
        message = {**op_message(drawn, if_rev), "id": request_id}
        try:
            return message, {"id": request_id, "ok": True, **model.apply(drawn, if_rev)}
        except ModelConflict as conflict:
            return message, {"id": request_id, **conflict.members}
    # A batch: all ops are checked on a copy first, then applied for real.
    trial = model.clone()
    ops: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    failure: dict[str, Any] | None = None
    for index, op in enumerate(drawn):
        if_rev = trial.resolve(op)
        ops.append(op_message(op, if_rev))
        if failure is None:
            try:
                results.append(trial.apply(op, if_rev))
            except ModelConflict as conflict:
                failure = {"id": request_id, **conflict.members, "op": index}
    message = {"action": "batch", "ops": ops, "id": request_id}
    if failure is not None:
        return message, failure
    model.values, model.revs, model.rev, model.changes = (
        trial.values,
        trial.revs,
        trial.rev,
        trial.changes,
    )
    return message, {"id": request_id, "ok": True, "rev": model.rev, "results": results}


def update(rev: int, key: str, value: Any) -> dict[str, Any]:
    """A subscription update in the id form."""
    if value is None:
        return {"key": key, "value": None, "rev": rev, "deleted": True}
    return {"key": key, "value": value, "rev": rev}


# -- talking to the server -------------------------------------------------------------------


async def until_reply(ws: ClientConnection, request_id: str) -> tuple[list[Any], Any]:
    """Every message up to the reply with *request_id*, and that reply."""
    messages: list[Any] = []
    while True:
        message = await recv_json(ws)
        if message.get("id") == request_id:
            return messages, message
        messages.append(message)


async def watched(ws: ClientConnection, count: int) -> list[Any]:
    """The next *count* messages of a watcher, then nothing more before a get's reply."""
    seen = [await recv_json(ws) for _ in range(count)]
    await ws.send(json.dumps({"action": "get", "key": "a", "id": "sync"}))
    extra, _ = await until_reply(ws, "sync")
    return seen + extra


def resumed(base: dict[str, Any], updates: list[Any]) -> dict[str, Any]:
    """*base* with *updates* applied (a deletion removes the key)."""
    state = dict(base)
    for message in updates:
        if message.get("deleted"):
            state.pop(message["key"], None)
        else:
            state[message["key"]] = message["value"]
    return state


def numbered(drawn: list[Op | list[Op]]) -> Iterator[tuple[int | str, Op | list[Op]]]:
    """Ids of both kinds, each unique."""
    for index, item in enumerate(drawn):
        yield (index if index % 2 else f"m{index}"), item


async def check_sequence(drawn: list[Op | list[Op]], cache_dir: Path) -> None:
    model = Model()
    sent = [predict(model, item, request_id) for request_id, item in numbered(drawn)]
    server = ObjstoreServer(Config(host="127.0.0.1", port=0, cache_dir=cache_dir))
    await server.start()
    url = f"ws://127.0.0.1:{server.port}/ws"
    try:
        async with connect(url) as writer, connect(url) as everything, connect(url) as under_p:
            for ws, prefix in ((everything, ""), (under_p, "p/")):
                await ws.send(json.dumps({"action": "subscribe", "prefix": prefix, "id": "w"}))
                assert await recv_json(ws) == {"id": "w", "ok": True, "rev": 0}

            for message, _ in sent:
                await writer.send(json.dumps(message))
            replies = [await recv_json(writer) for _ in sent]
            assert [canonical(r) for r in replies] == [canonical(e) for _, e in sent]

            changes = [update(*change) for change in model.changes]
            seen = await watched(everything, len(changes))
            assert [canonical(m) for m in seen] == [canonical(c) for c in changes]
            under = [c for c in changes if c["key"].startswith("p/")]
            seen = await watched(under_p, len(under))
            assert [canonical(m) for m in seen] == [canonical(c) for c in under]

            for key in ALL_KEYS:
                await writer.send(json.dumps({"action": "get", "key": key, "id": key}))
                reply = await recv_json(writer)
                expected = {
                    "id": key,
                    "ok": True,
                    "key": key,
                    "value": model.values.get(key),
                    "rev": model.revs.get(key, 0),
                }
                assert canonical(reply) == canonical(expected)

            final = model.state_at(model.rev)
            for since in range(model.rev + 1):
                for prefix in ("", "p/"):
                    message = {"action": "subscribe", "prefix": prefix, "since": since}
                    await writer.send(json.dumps({**message, "id": "r"}))
                    updates, reply = await until_reply(writer, "r")
                    assert reply == {"id": "r", "ok": True, "rev": model.rev, "reset": False}
                    revs = [u["rev"] for u in updates]
                    assert revs == sorted(set(revs))
                    assert all(since < rev <= model.rev for rev in revs)
                    assert all(u["key"].startswith(prefix) for u in updates)
                    latest = {
                        key: (rev, key, value)
                        for rev, key, value in model.changes
                        if rev > since and key.startswith(prefix)
                    }
                    assert [canonical(u) for u in updates] == [
                        canonical(update(*change)) for change in sorted(latest.values())
                    ]
                    base = {k: v for k, v in model.state_at(since).items() if k.startswith(prefix)}
                    expected_state = {k: v for k, v in final.items() if k.startswith(prefix)}
                    assert canonical(resumed(base, updates)) == canonical(expected_state)

            await writer.send(json.dumps({"action": "subscribe", "prefix": "p/", "id": "s"}))
            snapshot, reply = await until_reply(writer, "s")
            assert reply == {"id": "s", "ok": True, "rev": model.rev}
            expected_snapshot = sorted(
                (model.revs[k], k, v) for k, v in final.items() if k.startswith("p/")
            )
            assert [canonical(m) for m in snapshot] == [
                canonical(update(*entry)) for entry in expected_snapshot
            ]
    finally:
        await server.stop()


@pytest.mark.timeout(120)
@EXAMPLES
@given(st.lists(MESSAGES, min_size=1, max_size=25))
def test_replies_get_and_subscriptions_agree_with_the_model(
    drawn: list[Op | list[Op]],
) -> None:
    """Replies, watchers, get and every resume agree with the model, on a fresh server."""
    with tempfile.TemporaryDirectory() as folder:
        asyncio.run(check_sequence(drawn, Path(folder) / "cache"))


async def test_a_batch_sees_a_key_it_deleted_at_revision_0(
    server: ObjstoreServer, client: Connect
) -> None:
    """After a delete in a batch, a later op of the batch sees the key at revision 0."""
    async with client() as ws:
        await ws.send(json.dumps({"action": "set", "key": "a", "value": 1, "id": 1}))
        assert await recv_json(ws) == {"id": 1, "ok": True, "rev": 1}
        ops = [
            {"action": "delete", "key": "a"},
            {"action": "set", "key": "a", "value": 2, "ifRev": 0},
        ]
        await ws.send(json.dumps({"action": "batch", "ops": ops, "id": 2}))
        assert await recv_json(ws) == {
            "id": 2,
            "ok": True,
            "rev": 3,
            "results": [{"rev": 2, "deleted": True}, {"rev": 3}],
        }
