// Scenarios that drive objstore's JavaScript client in Node, for tests/test_client_js.py.
//
//   node scenarios.mjs NAME WS_URL
//
// Each scenario prints JSON lines on stdout (what the test checks) and, where the test
// must act on the server (stop it, write while the client is away), waits for a line
// on stdin. With OBJSTORE_GLOBAL_WEBSOCKET=1 (Node 22 and later) the client uses Node's
// own global WebSocket; otherwise (Node 20 has none) the ws package's class is passed in.

import readline from "node:readline";
import { WebSocket as WsPackageWebSocket } from "ws";
import {
  ConflictError,
  ConnectionLostError,
  ForbiddenError,
  InvalidKeyError,
  InvalidMessageError,
  InvalidValueError,
  ObjstoreError,
  TooLargeError,
  connect,
} from "../../objstore/static/client.js";

const useGlobal = process.env.OBJSTORE_GLOBAL_WEBSOCKET === "1";
if (useGlobal && typeof globalThis.WebSocket !== "function") throw new Error(`node ${process.version} has no global WebSocket`);
/** The class each scenario passes to connect: none (so the global one) or the ws package's. */
const WebSocket = useGlobal ? undefined : WsPackageWebSocket;
const [name, url] = process.argv.slice(2);
const lines = readline.createInterface({ input: process.stdin });
/** @type {string[]} */ const received = [];
/** @type {((line: string) => void)|null} */ let waiter = null;
lines.on("line", (line) => {
  if (waiter) {
    const wake = waiter;
    waiter = null;
    wake(line);
  } else received.push(line);
});
/** The next line the test sends. @returns {Promise<string>} */
function nextLine() {
  const line = received.shift();
  if (line !== undefined) return Promise.resolve(line);
  return new Promise((resolve) => (waiter = resolve));
}
/** @param {unknown} value */
function say(value) {
  process.stdout.write(JSON.stringify(value) + "\n");
}

/** @param {() => Promise<unknown>} action */
async function failure(action) {
  try {
    await action();
  } catch (error) {
    if (!(error instanceof ObjstoreError)) throw error;
    const e = /** @type {any} */ (error);
    return { class: e.name, code: e.code, op: e.op, rev: e.rev, value: e.value, message: e.message, instance: e };
  }
  throw new Error("no error");
}

const scenarios = {
  async operations() {
    const store = await connect(url, { WebSocket });
    const out = {};
    out.set = await store.set("score", 42);
    out.get = await store.get("score");
    out.entry = await store.entry("score");
    out.missing = await store.get("nothing");
    out.missingEntry = await store.entry("nothing");
    out.setIfRev = await store.set("score", 43, { ifRev: out.set });
    out.create = await store.set("fresh", "x", { ifRev: 0 });
    out.patch = await store.patch("doc", { a: 1, b: { c: 2 } });
    out.patch2 = await store.patch("doc", { b: { c: null, d: 3 } });
    out.incr = await store.incr("hits");
    out.incrBy = await store.incr("hits", 2.5);
    out.ttl = await store.set("brief", 1, { ttl: 300 });
    out.delete = await store.delete("fresh");
    out.deleteMissing = await store.delete("fresh");
    for (const key of ["player/a", "player/b", "player/c", "player/d", "player/e"]) await store.set(key, key);
    out.keys = [];
    for await (const key of store.keys({ prefix: "player/", page: 2 })) out.keys.push(key);
    out.keysAfter = [];
    for await (const key of store.keys({ prefix: "player/", page: 2, after: "player/c" })) out.keysAfter.push(key);
    out.details = [];
    for await (const info of store.keyDetails({ prefix: "player/", page: 2, after: "player/c" })) {
      out.details.push({ ...info, changed: typeof info.changed });
    }
    out.batch = await store.batch([
      { action: "set", key: "a", value: 1 },
      { action: "incr", key: "n", by: 2 },
      { action: "incr", key: "n", by: 2 },
      { action: "delete", key: "a" },
    ]);
    store.close();
    say(out);
  },

  async errors() {
    const store = await connect(url, { WebSocket });
    const rev = await store.set("k", "v");
    const out = {
      conflict: await failure(() => store.set("k", "w", { ifRev: rev + 100 })),
      invalidKey: await failure(() => store.get("")),
      invalidValue: await failure(() => store.incr("k")),
      invalidMessage: await failure(() => store.incr("k", /** @type {any} */ ("1"))),
      tooLarge: await failure(async () => {
        for await (const key of store.keys({ page: 1001 })) void key;
      }),
      batch: await failure(() =>
        store.batch([
          { action: "set", key: "x", value: 1 },
          { action: "delete", key: "k", ifRev: 7 },
        ]),
      ),
      classes: [ConflictError, InvalidKeyError, InvalidValueError, InvalidMessageError, TooLargeError].map(
        (c) => Object.getPrototypeOf(c) === ObjstoreError,
      ),
      untouched: await store.get("x"),
    };
    store.close();
    say(out);
  },

  // Watches p/ and prints every change; the test restarts the server meanwhile.
  async watch() {
    /** @type {string[]} */ const statuses = [];
    const store = await connect(url, { WebSocket, minBackoff: 50, maxBackoff: 200, onStatus: (s) => statuses.push(s) });
    const watch = store.watch({ prefix: "p/" });
    say({ watching: true });
    for await (const change of watch) {
      say({ change });
      if (change.key === "p/end") break;
    }
    store.close();
    say({ statuses });
  },

  // Two watches covering one key (a prefix and the key), printed with their names.
  async overlap() {
    const store = await connect(url, { WebSocket, minBackoff: 50, maxBackoff: 200 });
    for (const [label, target] of [["prefix", { prefix: "p/" }], ["key", { key: "p/a" }]]) {
      store.watch(target).onChange = (change) => say({ [label]: [change.kind, change.key, change.rev] });
    }
    await nextLine();
    store.close();
  },

  // A full snapshot cut off midway (the socket cut as a network failure would) is
  // followed by a reset and the whole snapshot again.
  async cutoff() {
    const store = await connect(url, { WebSocket, minBackoff: 50, maxBackoff: 200 });
    const watch = store.watch({ prefix: "p/" });
    /** @type {[string, number][]} */ const runs = [];
    let cut = false;
    for await (const change of watch) {
      if (!cut) {
        cut = true;
        // ws can drop the socket as a network failure would; Node's own WebSocket can
        // only close it, which the store takes as the same loss.
        const socket = /** @type {any} */ (store)._ws;
        if (socket.terminate) socket.terminate();
        else socket.close();
      }
      const last = runs.at(-1);
      if (last && last[0] === change.kind) last[1]++;
      else runs.push([change.kind, 1]);
      if (change.kind === "ready") break;
    }
    store.close();
    say({ runs });
  },

  // A watch with onChange instead of for-await, closed on a line from the test.
  async onchange() {
    const store = await connect(url, { WebSocket });
    const watch = store.watch({ key: "k" });
    watch.onChange = (change) => say({ change });
    await nextLine();
    watch.close();
    await store.set("k", "after close");
    say({ closed: await store.get("k") });
    store.close();
  },

  // A for-await loop started after the watch's first changes came gets them too.
  async late() {
    const store = await connect(url, { WebSocket });
    const watch = store.watch({ key: "k" });
    await store.set("k", 1);
    await store.get("k");
    for await (const change of watch) {
      say({ change });
      if (change.kind === "update") break;
    }
    store.close();
  },

  // An onChange that throws: the error surfaces uncaught, the other watch still gets the change.
  async throwing() {
    /** @type {string[]} */ const uncaught = [];
    process.on("uncaughtException", (error) => uncaught.push(error.message));
    const store = await connect(url, { WebSocket });
    const seen = [];
    store.watch({ key: "k" }).onChange = (change) => {
      if (change.kind === "update") throw new Error(`reader failed at ${change.rev}`);
    };
    store.watch({ prefix: "" }).onChange = (change) => seen.push([change.kind, change.rev]);
    await store.set("k", 1);
    await store.set("k", 2);
    say({ seen, uncaught, value: await store.get("k") });
    store.close();
  },

  // Without a WebSocket option the global class is used (Node 22+, browsers); none is an error.
  // A token (OBJSTORE_TEST_TOKEN) sent in an auth message; refusals are ForbiddenError; an
  // unknown token fails connect.
  async token() {
    const store = await connect(url, { WebSocket, token: process.env.OBJSTORE_TEST_TOKEN });
    const rev = await store.set("w/a", 1);
    const forbidden = await failure(() => store.set("other", 1));
    store.close();
    const anonymous = await connect(url, { WebSocket });
    const refused = await failure(() => anonymous.get("w/a"));
    anonymous.close();
    const unknown = await failure(() => connect(url, { WebSocket, token: "not-a-known-token-0000" }));
    say({
      rev,
      forbidden: [forbidden.class, forbidden.code],
      refused: [refused.class, refused.code],
      unknown: [unknown.class, unknown.code],
      isForbidden: forbidden.instance instanceof ForbiddenError,
    });
  },

  async global() {
    const saved = globalThis.WebSocket;
    /** @type {any} */ (globalThis).WebSocket = undefined;
    let missing;
    try {
      await connect(url);
    } catch (e) {
      missing = [/** @type {Error} */ (e).name, /** @type {Error} */ (e).message];
    }
    /** @type {any} */ (globalThis).WebSocket = saved ?? WsPackageWebSocket;
    const store = await connect(url);
    const rev = await store.set("k", "global");
    store.close();
    /** @type {any} */ (globalThis).WebSocket = saved;
    say({ missing, rev });
  },

  // Nothing listens at the url: connect gives up after openTimeout.
  async refused() {
    /** @type {string[]} */ const statuses = [];
    const started = Date.now();
    const error = await failure(() => connect(url, { WebSocket, openTimeout: 500, onStatus: (s) => statuses.push(s) }));
    const waited = Date.now() - started;
    let badUrl;
    try {
      await connect("http://localhost:1/ws", { WebSocket });
    } catch (e) {
      badUrl = [/** @type {Error} */ (e).name, /** @type {Error} */ (e).message];
    }
    say({ error: [error.class, error.code, error.message], statuses, waitedEnough: waited >= 450 && waited < 3000, badUrl });
  },

  // Without reconnect, a loss ends the watch with the error and closes the store.
  async noreconnect() {
    /** @type {string[]} */ const statuses = [];
    const store = await connect(url, { WebSocket, reconnect: false, onStatus: (s) => statuses.push(s) });
    const watch = store.watch({ key: "k" });
    say({ watching: true });
    let ended;
    try {
      for await (const change of watch) void change;
      ended = "done";
    } catch (error) {
      ended = [/** @type {Error} */ (error).name, /** @type {Error} */ (error).message];
    }
    const after = await failure(() => store.get("k"));
    say({ ended, after: [after.class, after.message], statuses });
  },

  // store.close() ends a for-await loop and fails a request still waiting for its reply.
  async close() {
    const store = await connect(url, { WebSocket });
    const watch = store.watch({ key: "k" });
    /** @type {string[]} */ const kinds = [];
    for await (const change of watch) {
      kinds.push(change.kind);
      const request = failure(() => store.get("k"));
      store.close();
      say({ request: (await request).message });
    }
    say({ kinds, ended: "done" });
  },

  // Requests fired until the connection is lost under them; each one must settle.
  async inflight() {
    const store = await connect(url, { WebSocket, minBackoff: 50, maxBackoff: 200 });
    /** @type {Promise<unknown>[]} */ const fired = [];
    let lost = false;
    const counts = { ok: 0, lostInFlight: 0, other: 0 };
    const fire = setInterval(() => {
      for (let i = 0; i < 20; i++) {
        fired.push(
          store.incr("n").then(
            () => counts.ok++,
            (error) => {
              if (error instanceof ConnectionLostError && error.message.startsWith("connection lost before the reply to incr \"n\"")) {
                counts.lostInFlight++;
                if (!lost) {
                  lost = true;
                  clearInterval(fire);
                  say({ lost: error.message });
                }
              } else counts.other++;
            },
          ),
        );
      }
    }, 2);
    say({ firing: true });
    await nextLine();
    await Promise.all(fired);
    say({ fired: fired.length, ...counts, after: typeof (await store.get("n")) });
    store.close();
  },
};

const scenario = scenarios[/** @type {keyof typeof scenarios} */ (name)];
if (!scenario) throw new Error(`unknown scenario ${name}`);
await scenario();
lines.close();
