// objstore client: protocol 2 over one WebSocket, for browsers and Node.
//
// An ES module without dependencies or build step, served by objstore at GET /client.js.
// Owns requests and their replies, reconnection (exponential backoff with full jitter)
// and the resumption of every watch from the highest revision it delivered. Knows
// nothing of the server's storage: only the wire messages of docs/protocol.md.
//
//   import { connect } from "/client.js";
//   const store = await connect("ws://localhost:3000/ws");
//   await store.set("score", 42);
//   for await (const change of store.watch({ prefix: "player/" })) { ... }
//
// In Node 20, pass the WebSocket class of the `ws` package: connect(url, { WebSocket }).
//
// Memory: the client holds the requests awaiting a reply, the requests waiting for a
// connection, and per watch the changes not yet taken by its for-await loop (or, before
// a for-await loop or an onChange is attached, every change so far; none when only
// onChange reads it) plus, while its (re)subscription's snapshot arrives, the
// revision of each key of that snapshot (as many as the server sends). Nothing else
// grows with what the server sends. One message is as large as the WebSocket allows
// (the ws package: its maxPayload, 100 MiB by default; browsers: no limit).

/**
 * @typedef {{ kind: "update"|"reset"|"ready", key: string|null, value: any, rev: number,
 *             deleted: boolean, expired: boolean, expires?: number,
 *             ephemeral?: boolean }} Change
 * (present only when so: expires, a value's deadline in ms since the Unix epoch;
 *  ephemeral: true, the key belongs to a connection)
 * @typedef {"connecting"|"open"|"reconnecting"|"closed"} Status
 * @typedef {{ WebSocket?: any, minBackoff?: number, maxBackoff?: number,
 *             openTimeout?: number, reconnect?: boolean, token?: string,
 *             onStatus?: (status: Status) => void }} ConnectOptions
 * (token: sent in an auth message as each connection opens, since a browser cannot set
 *  an Authorization header on a WebSocket; an unknown token ends the store)
 * @typedef {{ action: "set"|"delete"|"patch"|"incr", key: string, value?: any, by?: number,
 *             ifRev?: number, ttl?: number, ephemeral?: boolean }} BatchOp
 * @typedef {{ key: string, rev: number, changed: number|null, size: number,
 *             expires: number|null, ephemeral: boolean }} KeyInfo
 */

/** The root of every error of this client; `code` is the server's error code (or null). */
export class ObjstoreError extends Error {
  /** @param {string} message @param {string|null} [code] @param {number|null} [op] */
  constructor(message, code = null, op = null) {
    super(message);
    this.name = new.target.name;
    /** @type {string|null} */ this.code = code;
    /** In a batch, the index of the operation that failed. @type {number|null} */
    this.op = op;
  }
}
export class InvalidJSONError extends ObjstoreError {}
export class InvalidMessageError extends ObjstoreError {}
export class InvalidKeyError extends ObjstoreError {}
export class InvalidValueError extends ObjstoreError {}
export class NotFoundError extends ObjstoreError {}
export class TooLargeError extends ObjstoreError {}
export class StorageError extends ObjstoreError {}
export class InternalError extends ObjstoreError {}
/** The token (or, without one, anonymous clients) may not do this; or the token is unknown. */
export class ForbiddenError extends ObjstoreError {}
/** An `ifRev` that did not match: `rev` and `value` are the key's current ones. */
export class ConflictError extends ObjstoreError {
  /** @param {string} message @param {number} rev @param {any} value @param {number|null} op */
  constructor(message, rev, value, op = null) {
    super(message, "conflict", op);
    this.rev = rev;
    this.value = value;
  }
}
/** The connection was lost (or never made) before the reply: a write may have applied. */
export class ConnectionLostError extends ObjstoreError {}

const BY_CODE = {
  invalid_json: InvalidJSONError,
  invalid_message: InvalidMessageError,
  invalid_key: InvalidKeyError,
  invalid_value: InvalidValueError,
  not_found: NotFoundError,
  too_large: TooLargeError,
  forbidden: ForbiddenError,
  storage: StorageError,
  internal: InternalError,
};

/** @param {any} reply @returns {ObjstoreError} */
function errorFrom(reply) {
  const message = typeof reply.error === "string" ? reply.error : "the server answered with an error";
  const code = typeof reply.code === "string" ? reply.code : null;
  const op = Number.isInteger(reply.op) ? reply.op : null;
  if (code === "conflict") {
    return new ConflictError(message, Number.isInteger(reply.rev) ? reply.rev : 0, reply.value ?? null, op);
  }
  const Class = (code && Object.hasOwn(BY_CODE, code)) ? BY_CODE[/** @type {keyof BY_CODE} */ (code)] : ObjstoreError;
  return new Class(message, code, op);
}

/** @param {Record<string, any>} fields @returns {Record<string, any>} the defined fields */
/** *target* with the deadline (`expires`) and `ephemeral` of *message*, when it has them. */
function withDetails(target, message) {
  if (typeof message.expires === "number") target.expires = message.expires;
  if (message.ephemeral === true) target.ephemeral = true;
  return target;
}

function defined(fields) {
  return Object.fromEntries(Object.entries(fields).filter(([, v]) => v !== undefined));
}

/**
 * Connect to an objstore server; resolves once the first connection is open.
 * @param {string} url `ws://` or `wss://`, e.g. `ws://localhost:3000/ws`
 * @param {ConnectOptions} [options]
 * @returns {Promise<Store>}
 */
export async function connect(url, options = {}) {
  if (typeof url !== "string" || !/^wss?:\/\//i.test(url)) {
    throw new TypeError(`invalid url: expected ws:// or wss://, got ${JSON.stringify(url)}`);
  }
  const store = new Store(url, options);
  await store._opened();
  return store;
}

/** One connection to the store, reopened when lost. Create it with {@link connect}. */
export class Store {
  /** @param {string} url @param {ConnectOptions} options */
  constructor(url, options) {
    this.url = url;
    const WS = options.WebSocket ?? globalThis.WebSocket;
    if (typeof WS !== "function") {
      throw new TypeError("no WebSocket class: pass one, e.g. connect(url, { WebSocket }) with the ws package");
    }
    this._WS = WS;
    this._minBackoff = options.minBackoff ?? 100;
    this._maxBackoff = options.maxBackoff ?? 10000;
    this._openTimeout = options.openTimeout ?? 10000;
    this._reconnect = options.reconnect ?? true;
    this._onStatus = options.onStatus ?? null;
    this._token = options.token ?? null;
    /** @type {any} */ this._ws = null;
    this._isOpen = false;
    this._closed = false;
    this._nextId = 1;
    this._attempt = 0;
    /** @type {any} */ this._timer = null;
    /** Requests awaiting their reply on the current connection. @type {Map<number, {resolve: Function, reject: Function, what: string}>} */
    this._pending = new Map();
    /** Requests waiting for a connection. @type {Set<{send: Function, reject: Function}>} */
    this._waiting = new Set();
    /** @type {Set<Watch>} */ this._watches = new Set();
    /** @type {{resolve: Function, reject: Function, deadline: number}|null} */ this._first = null;
  }

  /** @returns {Promise<void>} */
  _opened() {
    return new Promise((resolve, reject) => {
      this._first = { resolve, reject, deadline: Date.now() + this._openTimeout };
      this._status("connecting");
      this._open();
    });
  }

  /** @param {Status} status */
  _status(status) {
    if (this._onStatus) this._onStatus(status);
  }

  _open() {
    this._timer = null;
    let ws;
    try {
      ws = new this._WS(this.url);
    } catch (error) {
      this._lost(`could not connect to ${this.url}: ${error}`);
      return;
    }
    this._ws = ws;
    const openTimer = setTimeout(() => ws.close(), this._openTimeout);
    ws.onopen = () => {
      clearTimeout(openTimer);
      if (this._ws !== ws) return;
      this._nextId = 1;
      if (this._token === null) {
        this._ready();
        return;
      }
      // The token first, in a message: its reply comes before any other (replies keep order).
      const id = this._nextId++;
      this._pending.set(id, {
        resolve: () => this._ready(),
        reject: (/** @type {ObjstoreError} */ error) => {
          if (error instanceof ConnectionLostError) return;  // lost meanwhile: retried as usual
          if (!(error instanceof ForbiddenError)) error = new ForbiddenError(error.message, "forbidden");
          const first = this._first;
          this._first = null;
          if (first) first.reject(error);
          this._shutDown(error);
          ws.close();
        },
        what: "auth",
      });
      ws.send(JSON.stringify({ action: "auth", token: this._token, id }));
    };
    ws.onmessage = (/** @type {{data: any}} */ event) => {
      if (this._ws === ws && typeof event.data === "string") this._receive(event.data);
    };
    // An error is taken as the loss it announces: browsers follow it with a close event,
    // but Node 22's global WebSocket (undici) fires no close when the connection could
    // not be made (nodejs/undici#3546), which would leave the store never retrying.
    ws.onerror = ws.onclose = () => {
      clearTimeout(openTimer);
      if (this._ws !== ws) return;
      this._lost(`the connection to ${this.url} was lost`);
      if (ws.readyState !== 3) ws.close();
    };
  }

  /** The connection is open (and its token accepted): resume watches, send what waited. */
  _ready() {
    this._isOpen = true;
    this._attempt = 0;
    this._status("open");
    if (this._first) {
      this._first.resolve();
      this._first = null;
    }
    for (const watch of this._watches) watch._subscribe();
    const waiting = [...this._waiting];
    this._waiting.clear();
    for (const request of waiting) request.send();
  }

  /** The connection is gone (or could not be made): fail what was in flight, then retry. @param {string} why */
  _lost(why) {
    this._ws = null;
    const wasOpen = this._isOpen;
    this._isOpen = false;
    const pending = [...this._pending.values()];
    this._pending.clear();
    for (const { reject, what } of pending) {
      reject(
        new ConnectionLostError(
          this._closed
            ? `the store was closed before the reply to ${what} (a write may have been applied)`
            : `connection lost before the reply to ${what}; retry it once reconnected (a write may have been applied: read the key first)`,
        ),
      );
    }
    if (this._closed) return;
    const first = this._first;
    if (!this._reconnect || (first && Date.now() >= first.deadline)) {
      const error = new ConnectionLostError(
        first ? `could not connect to ${this.url}; check that the server runs and the address is right` : why,
      );
      if (first) first.reject(error);
      this._first = null;
      this._shutDown(error);
      return;
    }
    for (const watch of this._watches) watch._cutOff();
    if (wasOpen) this._status("reconnecting");
    const ceiling = Math.min(this._maxBackoff, this._minBackoff * 2 ** Math.min(this._attempt, 30));
    this._attempt += 1;
    let delay = Math.random() * ceiling;
    if (first) delay = Math.min(delay, Math.max(0, first.deadline - Date.now()));
    this._timer = setTimeout(() => this._open(), delay);
  }

  /** @param {ObjstoreError|null} error what the watches end with (null: they just end) */
  _shutDown(error) {
    this._closed = true;
    if (this._timer !== null) clearTimeout(this._timer);
    this._timer = null;
    const waiting = [...this._waiting];
    this._waiting.clear();
    for (const request of waiting) request.reject(error ?? new ConnectionLostError("the store was closed"));
    for (const watch of [...this._watches]) watch._end(error);
    this._status("closed");
  }

  /** @param {string} text */
  _receive(text) {
    let message;
    try {
      message = JSON.parse(text);
    } catch {
      return;
    }
    if (message === null || typeof message !== "object") return;
    if (Object.hasOwn(message, "id")) {
      const request = this._pending.get(message.id);
      if (request === undefined) return;
      this._pending.delete(message.id);
      if (message.ok === true) request.resolve(message);
      else request.reject(errorFrom(message));
      return;
    }
    if (message.reset === true) {
      for (const watch of this._watches) {
        if (watch._pendingFor(message)) {
          watch._reset();
          break;
        }
      }
      return;
    }
    if (typeof message.key === "string" && Number.isInteger(message.rev)) {
      for (const watch of this._watches) watch._offer(message);
    }
  }

  /**
   * Send *message* with the next id; resolves with the reply (waiting for a connection first).
   * *onReply* sees the reply at once, before the updates that follow it are handled
   * (a promise would see it only after them: ws hands over a read's messages in one go).
   * @param {Record<string, any>} message @param {(reply: any) => void} [onReply]
   * @returns {Promise<any>}
   */
  _request(message, onReply) {
    const what = message.key === undefined ? message.action : `${message.action} ${JSON.stringify(message.key)}`;
    return new Promise((resolve, reject) => {
      if (this._closed) {
        reject(new ConnectionLostError("the store is closed; connect again to send requests"));
        return;
      }
      const send = () => {
        const id = this._nextId++;
        this._pending.set(id, {
          resolve: onReply ? (/** @type {any} */ reply) => (onReply(reply), resolve(reply)) : resolve,
          reject,
          what,
        });
        this._ws.send(JSON.stringify({ ...message, id }));
      };
      if (this._isOpen) {
        send();
        return;
      }
      /** @type {{send: Function, reject: Function}} */
      const request = {
        send: () => {
          clearTimeout(timer);
          send();
        },
        reject: (/** @type {any} */ error) => {
          clearTimeout(timer);
          reject(error);
        },
      };
      const timer = setTimeout(() => {
        this._waiting.delete(request);
        reject(new ConnectionLostError(`no connection to ${this.url} within ${this._openTimeout} ms for ${what}; try again later`));
      }, this._openTimeout);
      this._waiting.add(request);
    });
  }

  /**
   * Store *value* under *key*; resolves with its revision once it is on disk.
   * @param {string} key @param {any} value
   * @param {{ifRev?: number, ttl?: number, ephemeral?: boolean}} [options]
   * @returns {Promise<number>}
   */
  async set(key, value, { ifRev, ttl, ephemeral } = {}) {
    const reply = await this._request(defined({ action: "set", key, value, ifRev, ttl, ephemeral: ephemeral || undefined }));
    return reply.rev;
  }

  /** The value of *key*, or null when it has none. @param {string} key @returns {Promise<any>} */
  async get(key) {
    return (await this.entry(key)).value;
  }

  /** The value of *key* and its revision (null and 0 when missing). @param {string} key @returns {Promise<{key: string, value: any, rev: number, expires?: number, ephemeral?: boolean}>} */
  async entry(key) {
    const reply = await this._request({ action: "get", key });
    return withDetails({ key: reply.key, value: reply.value, rev: reply.rev }, reply);
  }

  /** Delete *key*; resolves with whether it had a value. @param {string} key @param {{ifRev?: number}} [options] @returns {Promise<boolean>} */
  async delete(key, { ifRev } = {}) {
    return (await this._request(defined({ action: "delete", key, ifRev }))).deleted;
  }

  /** Apply a JSON merge patch to *key*; resolves with the new value. @param {string} key @param {any} patch @param {{ifRev?: number, ttl?: number}} [options] @returns {Promise<any>} */
  async patch(key, patch, { ifRev, ttl } = {}) {
    return (await this._request(defined({ action: "patch", key, value: patch, ifRev, ttl }))).value;
  }

  /** Add *by* to the number of *key*; resolves with the new number. @param {string} key @param {number} [by] @param {{ifRev?: number, ttl?: number}} [options] @returns {Promise<number>} */
  async incr(key, by = 1, { ifRev, ttl } = {}) {
    return (await this._request(defined({ action: "incr", key, by, ifRev, ttl }))).value;
  }

  /**
   * Every key starting with *prefix* (after *after*, if given), in UTF-8 order, fetched a
   * page at a time as iterated.
   * @param {{prefix?: string, page?: number, after?: string}} [options] @returns {AsyncGenerator<string>}
   */
  async *keys({ prefix = "", page = 100, after } = {}) {
    yield* this._list(prefix, page, after, undefined);
  }

  /**
   * As {@link Store#keys}, each key with its revision, time of last change (ms since the
   * epoch, late by at most about a second; null when the server does not know it), size
   * of its value as JSON, deadline and whether it is ephemeral.
   * @param {{prefix?: string, page?: number, after?: string}} [options] @returns {AsyncGenerator<KeyInfo>}
   */
  async *keyDetails({ prefix = "", page = 100, after } = {}) {
    for await (const entry of this._list(prefix, page, after, true)) {
      yield {
        key: entry.key,
        rev: entry.rev,
        changed: entry.changed ?? null,
        size: entry.size,
        expires: entry.expires ?? null,
        ephemeral: entry.ephemeral === true,
      };
    }
  }

  /** @param {string} prefix @param {number} page @param {string|undefined} after @param {true|undefined} details */
  async *_list(prefix, page, after, details) {
    for (;;) {
      const reply = await this._request(defined({ action: "keys", prefix, limit: page, after, details }));
      yield* reply.keys;
      if (reply.next === null) return;
      after = reply.next;
    }
  }

  /**
   * Apply *ops* all or none; a failure is the error of the first failing op, with `.op`.
   * @param {BatchOp[]} ops @returns {Promise<{rev: number, results: any[]}>}
   */
  async batch(ops) {
    const reply = await this._request({ action: "batch", ops });
    return { rev: reply.rev, results: reply.results };
  }

  /**
   * Watch a key or a prefix: its current state (or, with *since*, what changed after
   * that revision), a "ready" change, then every change. Resumes across reconnections.
   * @param {{key?: string, prefix?: string, since?: number}} target @returns {Watch}
   */
  watch(target) {
    const hasKey = typeof target?.key === "string";
    if (hasKey === (typeof target?.prefix === "string")) {
      throw new TypeError(`invalid watch: give exactly one of key and prefix, got ${JSON.stringify(target)}`);
    }
    if (this._closed) throw new ConnectionLostError("the store is closed; connect again to watch");
    const watch = new Watch(this, hasKey ? { key: target.key } : { prefix: target.prefix }, target.since);
    this._watches.add(watch);
    if (this._isOpen) watch._subscribe();
    return watch;
  }

  /** Close the connection for good: requests in flight fail, watches end. */
  close() {
    if (this._closed) return;
    this._closed = true;
    const ws = this._ws;
    this._lost("the store was closed");
    if (ws) ws.close();
    this._shutDown(null);
  }
}

/** A watch of a key or a prefix: iterate it with for-await, or set `onChange`. */
export class Watch {
  /** @param {Store} store @param {{key: string}|{prefix: string}} target @param {number|undefined} since */
  constructor(store, target, since) {
    this._store = store;
    this.target = target;
    /** @type {((change: Change) => void)|null} */ this._onChange = null;
    /** The highest revision delivered once a subscription was ready. */
    this._highest = 0;
    /** While a (re)subscription's snapshot arrives: each key's revision delivered. @type {Map<string, number>|null} */
    this._phase = null;
    /** The since of the subscription in flight (undefined: a full snapshot). @type {number|undefined} */
    this._phaseSince = since;
    this._subscribed = false;
    /** @type {Change[]} */ this._queue = [];
    this._iterated = false;
    /** @type {((result: IteratorResult<Change>) => void)|null} */ this._wake = null;
    /** @type {Function|null} */ this._fail = null;
    this._done = false;
    /** @type {ObjstoreError|null} */ this._error = null;
    /**
     * Called once if the watch ends with an error (its subscription refused, say a
     * ForbiddenError, or the store shut down by one), for watches read with onChange.
     * @type {((error: ObjstoreError) => void)|null}
     */
    this.onError = null;
  }

  /**
   * Called with each change, as an alternative to for-await (both may be used). Changes
   * that came before either was attached are handed to the first one attached.
   * @type {((change: Change) => void)|null}
   */
  get onChange() {
    return this._onChange;
  }
  set onChange(callback) {
    this._onChange = callback;
    if (callback && !this._iterated) {
      const waiting = this._queue;
      this._queue = [];
      for (const change of waiting) this._call(change);
    }
  }

  /** @param {Change} change */
  _call(change) {
    const callback = this._onChange;
    if (!callback) return;
    try {
      callback(change);
    } catch (error) {
      // The reader's mistake must not leave the client half way through a message:
      // it surfaces as an uncaught error, after this message is handled.
      queueMicrotask(() => {
        throw error;
      });
    }
  }

  _subscribe() {
    this._phase ??= new Map();
    this._subscribed = true;
    const since = this._phaseSince;
    const ready = (/** @type {any} */ reply) => this._ready(reply.rev);
    this._store._request(defined({ action: "subscribe", ...this.target, since }), ready).catch(
      (error) => {
        if (!(error instanceof ConnectionLostError)) this._end(error);
      },
    );
  }

  /** @param {any} message @returns {boolean} whether a reset message is for this watch's subscription in flight */
  _pendingFor(message) {
    if (this._phase === null || this._done) return false;
    return "key" in this.target ? message.key === this.target.key : message.prefix === this.target.prefix;
  }

  _reset() {
    this._phase = new Map();
    this._phaseSince = undefined;
    this._emit({ kind: "reset", key: null, value: null, rev: 0, deleted: false, expired: false });
  }

  /** @param {number} rev */
  _ready(rev) {
    if (this._done) return;
    this._phase = null;
    this._highest = Math.max(this._highest, rev);
    this._phaseSince = this._highest;
    this._emit({ kind: "ready", key: null, value: null, rev, deleted: false, expired: false });
  }

  /** The connection was lost: resubscribe later from where this watch is. */
  _cutOff() {
    if (this._phase === null) {
      this._phaseSince = this._highest > 0 ? this._highest : this._phaseSince;
    } else if (this._phaseSince === undefined && this._phase.size > 0) {
      // A full snapshot cut off midway: the next one does not name the keys deleted
      // meanwhile, so the reader must drop what it holds first.
      this._reset();
    }
  }

  /** An update from the connection: deliver it if it is this watch's and new to it. @param {any} message */
  _offer(message) {
    if (this._done || !this._subscribed) return;
    const key = message.key;
    if ("key" in this.target ? key !== this.target.key : !key.startsWith(this.target.prefix)) return;
    const rev = message.rev;
    if (this._phase !== null) {
      // Until the reply, updates of other subscriptions mix with this snapshot, out of
      // revision order: skip per key, not by the highest revision.
      if (this._phaseSince !== undefined && rev <= this._phaseSince) return;
      const last = this._phase.get(key);
      if (last !== undefined && rev <= last) return;
      this._phase.set(key, rev);
    } else {
      if (rev <= this._highest) return;
      this._highest = rev;
    }
    const deleted = message.deleted === true;
    this._emit(withDetails({ kind: "update", key, value: deleted ? null : message.value, rev, deleted,
                             expired: message.expired === true }, message));
  }

  /** @param {Change} change */
  _emit(change) {
    this._call(change);
    // Kept for a for-await loop, or until a reader is attached.
    if (!this._iterated && this._onChange) return;
    if (this._wake) {
      const wake = this._wake;
      this._wake = this._fail = null;
      wake({ value: change, done: false });
    } else {
      this._queue.push(change);
    }
  }

  /** @param {ObjstoreError|null} error */
  _end(error) {
    if (this._done) return;
    this._done = true;
    this._error = error;
    this._store._watches.delete(this);
    if (error && this.onError) {
      try {
        this.onError(error);
      } catch (thrown) {
        queueMicrotask(() => {
          throw thrown;
        });
      }
    }
    if (this._wake && this._fail) {
      const [wake, fail] = [this._wake, this._fail];
      this._wake = this._fail = null;
      if (error) fail(error);
      else wake({ value: undefined, done: true });
    }
  }

  /** Stop watching: the for-await loop ends, the server subscription goes. */
  close() {
    if (this._done) return;
    const store = this._store;
    this._end(null);
    const same = [...store._watches].some((w) => JSON.stringify(w.target) === JSON.stringify(this.target));
    if (!same && store._isOpen) {
      store._request({ action: "unsubscribe", ...this.target }).catch(() => {});
    }
  }

  /** @returns {AsyncIterator<Change>} */
  [Symbol.asyncIterator]() {
    this._iterated = true;
    return {
      next: () => {
        const change = this._queue.shift();
        if (change) return Promise.resolve({ value: change, done: false });
        if (this._done) {
          const error = this._error;
          this._error = null;
          return error ? Promise.reject(error) : Promise.resolve({ value: undefined, done: true });
        }
        return new Promise((resolve, reject) => {
          this._wake = resolve;
          this._fail = reject;
        });
      },
      return: () => {
        this.close();
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }
}
