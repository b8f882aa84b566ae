"""The Lua scripts that change a shared store in Redis, each one atomic step.

Owns the layout of a store in Redis and every change made to it. All keys
share one hash tag, so that one script may touch them all (and a Redis
Cluster would keep them in one slot): with the default prefix ``{objstore}:``

- ``meta`` (hash): ``rev``, the revision of the last change, and ``epoch``, a
  name made when the store is created, so that a store emptied or replaced is
  told from the one before;
- ``v`` and ``r`` (hashes): every key's value (compact JSON) and revision;
- ``x`` (sorted set): deadlines, ms since the epoch by Redis's clock;
- ``o`` (hash): the owner of every ephemeral key (``<instance>/<connection>``),
  with the sets ``own:<owner>`` and ``inst:<instance>`` of their keys;
- ``lease`` (sorted set): every live instance and the end of its lease;
- ``log`` (stream): one entry per change, its ID ``<rev>-0``, fields ``k`` (the
  key), ``v`` (the value; none for a deletion), ``e`` (deadline), ``o``
  (owner) and ``x`` (``1``: deleted by its deadline). Trimmed to about
  ``HISTORY`` entries: the change feed of every instance, read from a position.

Every change takes the next revision and adds its entry to the log in the
same script, so the log holds every revision in order, without gaps: a reader
that finds one knows it fell behind the trimming. Each script gets the prefix
and the log's length as its first two arguments. Scripts never scan the whole
store: the snapshot reads a page at a time. Pure text and argument encoding;
no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "LEASE",
    "PREFIX",
    "READ_PAGE",
    "REAP",
    "RELEASE",
    "STATE",
    "SWEEP",
    "WRITE",
    "Op",
    "write_args",
]

#: The hash tag and prefix of every key of a store.
PREFIX = "{objstore}:"

_PRELUDE = """
local P = ARGV[1]
local MAXLEN = ARGV[2]
local V, R, X, O = P .. 'v', P .. 'r', P .. 'x', P .. 'o'
local META, LOG, LEASES = P .. 'meta', P .. 'log', P .. 'lease'
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function epoch()
  local e = redis.call('HGET', META, 'epoch')
  if not e then
    local t = redis.call('TIME')
    e = t[1] .. '.' .. t[2]
    redis.call('HSET', META, 'epoch', e)
  end
  return e
end
local function next_rev()
  return string.format('%d', redis.call('HINCRBY', META, 'rev', 1))
end
local function instance_of(owner)
  return string.match(owner, '^([^/]*)/')
end
local function disown(key, owner)
  redis.call('HDEL', O, key)
  redis.call('SREM', P .. 'own:' .. owner, key)
  redis.call('SREM', P .. 'inst:' .. instance_of(owner), key)
end
local function remove(key, expired)
  local rev = next_rev()
  redis.call('HDEL', V, key)
  redis.call('HDEL', R, key)
  redis.call('ZREM', X, key)
  local owner = redis.call('HGET', O, key)
  if owner then disown(key, owner) end
  if expired then
    redis.call('XADD', LOG, 'MAXLEN', '~', MAXLEN, rev .. '-0', 'k', key, 'x', '1')
  else
    redis.call('XADD', LOG, 'MAXLEN', '~', MAXLEN, rev .. '-0', 'k', key)
  end
  return rev
end
"""

#: Apply a list of operations, all or none. ARGV[3]: the instance; ARGV[4]: how many;
#: then 8 fields per operation (see :class:`Op`). Answers ``{'ok', epoch, revs, values}``
#: (revision ``'0'`` for the deletion of a key without a value; ``values`` the new
#: value of each increment, ``''`` for others), ``{'conflict', index, rev, value}``
#: when an ``if_rev`` does not hold, ``{'stale', index, rev}`` when the value an
#: operation was computed from changed since (compute it again), or ``{'nolease'}``.
WRITE = (
    _PRELUDE
    + """
local inst = ARGV[3]
local n = tonumber(ARGV[4])
local planned = {}
local rev = tonumber(redis.call('HGET', META, 'rev') or '0')
local owned = false
for i = 0, n - 1 do
  local b = 5 + i * 8
  local key, kind = ARGV[b], ARGV[b + 1]
  local if_rev, seen = ARGV[b + 3], ARGV[b + 4]
  local current = 1
  if kind ~= 's' or if_rev ~= '' or seen ~= '' then
    current = planned[key]
    if current == nil then current = tonumber(redis.call('HGET', R, key) or '0') end
  end
  if if_rev ~= '' and tonumber(if_rev) ~= current then
    return {'conflict', i, current, redis.call('HGET', V, key) or ''}
  end
  if seen ~= '' and tonumber(seen) ~= current then return {'stale', i, current} end
  if kind == 'i' then
    local value = redis.call('HGET', V, key)
    if value and not (#value <= 18 and (value == '0' or string.match(value, '^%-?[1-9]%d*$'))) then
      return {'stale', i, current}
    end
  end
  if ARGV[b + 6] ~= '' then owned = true end
  if kind == 'd' then
    if current ~= 0 then
      rev = rev + 1
      planned[key] = 0
    end
  else
    rev = rev + 1
    planned[key] = rev
  end
end
local now = now_ms()
if owned then
  local lease = redis.call('ZSCORE', LEASES, inst)
  if not lease or tonumber(lease) < now then return {'nolease'} end
end
local e = epoch()
local revs, values = {}, {}
for i = 0, n - 1 do
  local b = 5 + i * 8
  local key, kind, value = ARGV[b], ARGV[b + 1], ARGV[b + 2]
  local ttl, owner, keep = ARGV[b + 5], ARGV[b + 6], ARGV[b + 7]
  if kind == 'd' then
    if redis.call('HEXISTS', V, key) == 1 then
      revs[i + 1] = remove(key, false)
    else
      revs[i + 1] = '0'
    end
    values[i + 1] = ''
  else
    if kind == 'i' then
      redis.call('HINCRBY', V, key, value)
      value = redis.call('HGET', V, key)
      values[i + 1] = value
    else
      redis.call('HSET', V, key, value)
      values[i + 1] = ''
    end
    local r = next_rev()
    redis.call('HSET', R, key, r)
    local current_owner = redis.call('HGET', O, key)
    if keep == '1' then owner = current_owner or '' end
    if current_owner and current_owner ~= owner then disown(key, current_owner) end
    if owner ~= '' and current_owner ~= owner then
      redis.call('HSET', O, key, owner)
      redis.call('SADD', P .. 'own:' .. owner, key)
      redis.call('SADD', P .. 'inst:' .. instance_of(owner), key)
    end
    local fields = {'k', key, 'v', value}
    if ttl ~= '' then
      local deadline = string.format('%d', now + tonumber(ttl))
      redis.call('ZADD', X, deadline, key)
      fields[#fields + 1] = 'e'
      fields[#fields + 1] = deadline
    else
      redis.call('ZREM', X, key)
    end
    if owner ~= '' then
      fields[#fields + 1] = 'o'
      fields[#fields + 1] = owner
    end
    redis.call('XADD', LOG, 'MAXLEN', '~', MAXLEN, r .. '-0', unpack(fields))
    revs[i + 1] = r
  end
end
return {'ok', e, revs, values}
"""
)

#: Delete at most ARGV[3] keys whose deadline has come (by Redis's clock), each with an
#: ``x`` entry. However many instances sweep at once, a key expires once.
SWEEP = (
    _PRELUDE
    + """
local due = redis.call('ZRANGEBYSCORE', X, '-inf', now_ms(), 'LIMIT', 0, tonumber(ARGV[3]))
for _, key in ipairs(due) do
  if redis.call('HEXISTS', V, key) == 1 then
    remove(key, true)
  else
    redis.call('ZREM', X, key)
  end
end
return #due
"""
)

#: Take the lease of instance ARGV[3] to now + ARGV[4] ms. ARGV[5] ``renew``: only while
#: its lease has not ended (answers 0 when it had: the instance was taken for dead).
#: Also answers the store's revision and epoch.
LEASE = (
    _PRELUDE
    + """
local now = now_ms()
local e = epoch()
local rev = redis.call('HGET', META, 'rev') or '0'
if ARGV[5] == 'renew' then
  local lease = redis.call('ZSCORE', LEASES, ARGV[3])
  if not lease or tonumber(lease) < now then return {0, rev, e} end
end
redis.call('ZADD', LEASES, now + tonumber(ARGV[4]), ARGV[3])
return {1, rev, e}
"""
)

#: Delete the ephemeral keys of one instance whose lease ended, at most ARGV[3] at a
#: time; once it has none left, forget its lease. Answers how many were taken.
REAP = (
    _PRELUDE
    + """
local dead = redis.call('ZRANGEBYSCORE', LEASES, '-inf', now_ms(), 'LIMIT', 0, 1)
if #dead == 0 then return 0 end
local inst = dead[1]
local set = P .. 'inst:' .. inst
local keys = redis.call('SPOP', set, tonumber(ARGV[3]))
for _, key in ipairs(keys) do
  local owner = redis.call('HGET', O, key)
  if owner and instance_of(owner) == inst then remove(key, false) end
end
if redis.call('SCARD', set) == 0 then redis.call('ZREM', LEASES, inst) end
return #keys
"""
)

#: Delete the ephemeral keys of the owner ARGV[3] (a connection gone).
RELEASE = (
    _PRELUDE
    + """
local set = P .. 'own:' .. ARGV[3]
local keys = redis.call('SMEMBERS', set)
table.sort(keys)
local count = 0
for _, key in ipairs(keys) do
  if redis.call('HGET', O, key) == ARGV[3] then
    remove(key, false)
    count = count + 1
  end
end
redis.call('DEL', set)
return count
"""
)

#: The store's revision and epoch.
STATE = (
    _PRELUDE
    + """
return {redis.call('HGET', META, 'rev') or '0', epoch()}
"""
)

#: One page of a snapshot: ARGV[3] the HSCAN cursor, ARGV[4] the page size. Answers the
#: next cursor and, per key, its name, value, revision, deadline and owner (``''``
#: for none).
READ_PAGE = (
    _PRELUDE
    + """
local page = redis.call('HSCAN', V, ARGV[3], 'COUNT', tonumber(ARGV[4]))
local out = {}
local pairs_ = page[2]
for i = 1, #pairs_, 2 do
  local key = pairs_[i]
  out[#out + 1] = key
  out[#out + 1] = pairs_[i + 1]
  out[#out + 1] = redis.call('HGET', R, key) or '0'
  out[#out + 1] = redis.call('ZSCORE', X, key) or ''
  out[#out + 1] = redis.call('HGET', O, key) or ''
end
return {page[1], out}
"""
)


@dataclass(frozen=True, slots=True)
class Op:
    """One operation of :data:`WRITE`.

    *kind*: ``s`` set *value*, ``d`` delete, ``i`` add the integer *value* to an
    integer value (exactly, in Redis). *if_rev*: the client's compare-and-set;
    *seen*: the revision the value was computed from (a patch), checked alike
    but answered as ``stale``. *ttl_ms*: a deadline that many ms from now;
    *owner*: makes the key ephemeral; *keep*: keep its owner as it is.
    """

    key: str
    kind: str
    value: bytes = b""
    if_rev: int | None = None
    seen: int | None = None
    ttl_ms: int | None = None
    owner: str | None = None
    keep: bool = False


def write_args(instance: str, ops: list[Op]) -> list[str | bytes]:
    """The arguments of :data:`WRITE` after the prefix and the log's length."""
    args: list[str | bytes] = [instance, str(len(ops))]
    for op in ops:
        args += [
            op.key,
            op.kind,
            op.value,
            "" if op.if_rev is None else str(op.if_rev),
            "" if op.seen is None else str(op.seen),
            "" if op.ttl_ms is None else str(op.ttl_ms),
            op.owner or "",
            "1" if op.keep else "",
        ]
    return args
