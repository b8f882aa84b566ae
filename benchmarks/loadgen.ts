// Load generator of the objstore benchmarks, run by Bun (benchmarks/run.py starts it).
//
//   bun benchmarks/loadgen.ts fanout  --url ws://127.0.0.1:P/ws --subscribers N --sets M [--key fan]
//   bun benchmarks/loadgen.ts game    --url ws://127.0.0.1:P/ws --clients 50 --keys 50 --rate 30 --seconds S
//   bun benchmarks/loadgen.ts persist --url ws://127.0.0.1:P/ws --connections 8 --keys 1000 --sets T --expect FILE
//   bun benchmarks/loadgen.ts idle    --url ws://127.0.0.1:P/ws --connections C
//   bun benchmarks/loadgen.ts http    --url http://127.0.0.1:P --clients 50 --seconds S
//   bun benchmarks/loadgen.ts prefix10k --url ws://127.0.0.1:P/ws --keys 10000 --repeats 5 --subscribers 20 --hot 100 --rate 1000 --seconds 3 [--modes prefix,key]
//   bun benchmarks/loadgen.ts acked   --url ws://127.0.0.1:P/ws --connections 8 --inflight 16 --keys 1000 --sets T
//   bun benchmarks/loadgen.ts connect --url ws://127.0.0.1:P/ws --connections 10000 --keys 100 --inflight 256 [--mode reconnect] [--get 1]
//   bun benchmarks/loadgen.ts sse     --url ws://127.0.0.1:P/ws --streams 100 --sets 2000
//
// --url may list several servers, comma-separated (instances sharing one store): the clients
// of fanout, game, persist and acked are spread over them in turn, the first on the first
// (fanout's publisher is on the first).
//
// Every scenario prints JSON lines on stdout: {"phase":"start"} when its setup is done and the
// measured phase begins, {"phase":"end"} when the measured phase is over (the runner reads the
// server's CPU time at both), then ONE result line (an object with "scenario"). prefix10k,
// acked and connect print {"mark":"NAME_start"} and {"mark":"NAME_end"} around each measured phase instead
// (the runner reads the server's CPU time at each). idle prints
// {"ready": C} instead and holds its connections until stdin closes or SIGTERM.
// Exit status 0 when the scenario ran (its result says whether it completed), 1 on an error
// (a result line with "error" is printed then too).
//
// Uses Bun's built-in WebSocket client only. All clients live in this one process, so
// performance.now() is one clock for every latency measured.

type Args = Record<string, string>;

function parseArgs(argv: string[]): { scenario: string; args: Args } {
  const [scenario = "", ...rest] = argv;
  const args: Args = {};
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i];
    if (!a.startsWith("--")) throw new Error(`unexpected argument ${a}`);
    const eq = a.indexOf("=");
    if (eq > 0) args[a.slice(2, eq)] = a.slice(eq + 1);
    else {
      if (i + 1 >= rest.length) throw new Error(`${a} needs a value`);
      args[a.slice(2)] = rest[++i];
    }
  }
  return { scenario, args };
}

function num(args: Args, name: string, fallback?: number): number {
  const text = args[name];
  if (text === undefined) {
    if (fallback === undefined) throw new Error(`--${name} is required`);
    return fallback;
  }
  const n = Number(text);
  if (!Number.isFinite(n) || n < 0) throw new Error(`--${name} must be a number, got ${text}`);
  return n;
}

function str(args: Args, name: string, fallback?: string): string {
  const text = args[name] ?? fallback;
  if (text === undefined) throw new Error(`--${name} is required`);
  return text;
}

function emit(obj: unknown): void {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Resolves when check() is true, polling every `every` ms; false on timeout. */
async function until(check: () => boolean, timeoutMs: number, every = 2): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  while (!check()) {
    if (performance.now() > deadline) return false;
    await sleep(every);
  }
  return true;
}

/** The key of the get used as a barrier: no one subscribes to it, so its reply is unambiguous. */
const SYNC_KEY = "__bench_sync__";
const SYNC_GET = JSON.stringify({ action: "get", key: SYNC_KEY });
const decoder = new TextDecoder();

/**
 * One WebSocket connection. onUpdate sees every message that is not the reply of a sync get,
 * as the raw text (parsing is left to the scenario, which may not need to).
 */
class Client {
  ws!: WebSocket;
  private syncWaiters: Array<() => void> = [];
  closed = false;
  errors = 0;
  constructor(public onUpdate: (text: string) => void) {}

  open(url: string, timeoutMs = 30000): Promise<void> {
    return new Promise((resolve, reject) => {
      let settled = false;
      const timer = setTimeout(() => {
        if (!settled) {
          settled = true;
          try { this.ws.close(); } catch {}
          reject(new Error(`connecting to ${url} timed out`));
        }
      }, timeoutMs);
      this.ws = new WebSocket(url);
      this.ws.onopen = () => {
        if (!settled) { settled = true; clearTimeout(timer); resolve(); }
      };
      this.ws.onerror = () => {
        this.errors++;
        if (!settled) { settled = true; clearTimeout(timer); reject(new Error(`cannot connect to ${url}`)); }
      };
      this.ws.onclose = () => {
        this.closed = true;
        if (!settled) { settled = true; clearTimeout(timer); reject(new Error(`connection to ${url} closed`)); }
        // A closed connection will never answer: release whoever waits for it.
        const waiters = this.syncWaiters;
        this.syncWaiters = [];
        for (const w of waiters) w();
      };
      this.ws.onmessage = (ev: MessageEvent) => {
        const text = typeof ev.data === "string" ? ev.data : decoder.decode(ev.data as ArrayBuffer);
        // Cheap test first: only sync replies contain the sync key.
        if (this.syncWaiters.length && text.includes(SYNC_KEY)) {
          const w = this.syncWaiters.shift();
          if (w) { w(); return; }
        }
        this.onUpdate(text);
      };
    });
  }

  send(text: string): void {
    this.ws.send(text);
  }

  /** A get round trip: every message this connection sent before it has been processed. */
  sync(timeoutMs = 60000): Promise<boolean> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs);
      this.syncWaiters.push(() => { clearTimeout(timer); resolve(!this.closed); });
      this.ws.send(SYNC_GET);
    });
  }

  /** Waits while the socket's send buffer holds more than `limit` bytes. */
  async drain(limit: number, timeoutMs = 60000): Promise<boolean> {
    return until(() => this.closed || this.ws.bufferedAmount <= limit, timeoutMs, 1);
  }

  close(): void {
    try { this.ws.close(); } catch {}
  }
}

/**
 * The URL of client `i` when `--url` lists several servers (comma-separated, several instances
 * of one store): client i uses the (i mod count)-th, so clients are spread evenly, the first
 * on the first.
 */
function urlOf(url: string, i: number): string {
  const urls = url.split(",");
  return urls[i % urls.length];
}

/**
 * Opens `count` clients (spread over the URLs of `url`, see urlOf), at most `batch` handshakes in flight at once (the servers' listen
 * backlogs are finite), runs `setup` on each once open. Returns them in index order.
 */
async function openMany(
  count: number,
  url: string,
  make: (i: number) => Client,
  setup: (c: Client, i: number) => Promise<void>,
  batch = 100,
): Promise<Client[]> {
  const clients: Client[] = new Array(count);
  let next = 0;
  async function worker() {
    while (next < count) {
      const i = next++;
      const c = make(i);
      await c.open(urlOf(url, i));
      await setup(c, i);
      clients[i] = c;
    }
  }
  const workers: Promise<void>[] = [];
  for (let w = 0; w < Math.min(batch, count); w++) workers.push(worker());
  await Promise.all(workers);
  return clients;
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  const idx = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[idx];
}

const round3 = (x: number) => Math.round(x * 1000) / 1000;

/** The non-negative integer after `"seq":` in text, or -1. */
function seqOf(text: string): number {
  const at = text.indexOf('"seq"');
  if (at < 0) return -1;
  let j = at + 5;
  while (text.charCodeAt(j) === 32) j++;
  if (text.charCodeAt(j) !== 58) return -1; // ':'
  j++;
  while (text.charCodeAt(j) === 32) j++;
  let n = 0;
  let digits = 0;
  for (let c = text.charCodeAt(j); c >= 48 && c <= 57; c = text.charCodeAt(++j)) {
    n = n * 10 + (c - 48);
    digits++;
  }
  return digits ? n : -1;
}

// --- 1. fanout ------------------------------------------------------------------------------

async function fanout(args: Args) {
  const url = str(args, "url");
  const n = num(args, "subscribers");
  const m = num(args, "sets");
  // A key of its own for each fan-out that shares a store with an earlier one.
  const key = str(args, "key", "fan");
  const timeoutMs = num(args, "timeout", 120) * 1000;
  const last = m - 1;
  const count = new Float64Array(n);
  const lastSeq = new Float64Array(n).fill(-1);
  const sawLast = new Uint8Array(n);
  let reordered = 0; // updates older than one already received
  let other = 0; // messages that are not updates of "fan" (errors...)
  let doneSubs = 0;
  const subs = await openMany(
    n,
    url,
    (i) =>
      new Client((text) => {
        // Fast path (this loop is the load generator's hot spot): read the number after
        // "seq": without parsing the whole message; anything unexpected goes to JSON.parse.
        let seq = seqOf(text);
        if (seq < 0) {
          let msg: any;
          try { msg = JSON.parse(text); } catch { other++; return; }
          if (msg?.key !== key || typeof msg?.value?.seq !== "number") { other++; return; }
          seq = msg.value.seq;
        }
        count[i]++;
        if (seq < lastSeq[i]) reordered++;
        lastSeq[i] = seq;
        if (seq === last && !sawLast[i]) { sawLast[i] = 1; doneSubs++; }
      }),
    async (c) => {
      c.send(JSON.stringify({ action: "subscribe", key }));
      if (!(await c.sync())) throw new Error("subscriber sync failed");
    },
  );
  const pub = new Client(() => {});
  await pub.open(urlOf(url, 0));
  const pad = "x".repeat(60);
  const frames: string[] = new Array(m);
  for (let i = 0; i < m; i++) frames[i] = JSON.stringify({ action: "set", key, value: { seq: i, pad } });
  // Messages that arrived before the publish phase (none on a fresh server) are not counted.
  count.fill(0);
  emit({ phase: "start" });
  const t0 = performance.now();
  for (let i = 0; i < m; i++) pub.send(frames[i]);
  // Stop early if the server drops the publisher or every subscriber: nothing more will come.
  await until(() => doneSubs === n || pub.closed || subs.every((c) => c.closed), timeoutMs, 1);
  const complete = doneSubs === n;
  const timedOut = !complete && !pub.closed && !subs.every((c) => c.closed);
  const elapsed = (performance.now() - t0) / 1000;
  emit({ phase: "end" });
  // Outside the measured phase: let anything still in flight arrive before judging the last value.
  await sleep(200);
  let deliveries = 0;
  let allLast = true;
  for (let i = 0; i < n; i++) {
    deliveries += count[i];
    if (lastSeq[i] !== last) allLast = false;
  }
  const closedEarly = subs.filter((c) => c.closed).length;
  const pubClosed = pub.closed;
  for (const c of subs) c.close();
  pub.close();
  emit({
    scenario: "fanout", subscribers: n, sets: m, complete, timed_out: timedOut,
    deliveries, expected: n * m, elapsed: Math.round(elapsed * 1e6) / 1e6,
    deliveries_per_s: Math.round(deliveries / elapsed),
    all_last: allLast && complete, subscribers_done: doneSubs, reordered, other_messages: other,
    closed_early: closedEarly, publisher_closed: pubClosed,
  });
}

// --- 2. game --------------------------------------------------------------------------------

async function game(args: Args) {
  const url = str(args, "url");
  const nClients = num(args, "clients", 50);
  const nKeys = num(args, "keys", 50);
  const rate = num(args, "rate", 30);
  const seconds = num(args, "seconds", 5);
  const keys = Array.from({ length: nKeys }, (_, i) => `player-${i}`);
  // Room for every expected latency, with margin; beyond it, only the count and max are kept.
  const cap = Math.ceil(nClients * rate * (seconds + 2) * nKeys * 1.2) + 1000;
  const lat = new Float64Array(cap);
  let nLat = 0;
  let received = 0;
  let maxLat = 0;
  let other = 0;
  let measuring = false;
  const clients = await openMany(
    nClients,
    url,
    () =>
      new Client((text) => {
        const now = performance.now();
        let msg: any;
        try { msg = JSON.parse(text); } catch { other++; return; }
        const t = msg?.value?.t;
        if (typeof t !== "number") { other++; return; }
        if (!measuring) return;
        received++;
        const l = now - t;
        if (l > maxLat) maxLat = l;
        if (nLat < cap) lat[nLat++] = l;
      }),
    async (c) => {
      for (const k of keys) c.send(JSON.stringify({ action: "subscribe", key: k }));
      if (!(await c.sync())) throw new Error("client sync failed");
    },
    50,
  );
  let sent = 0;
  const counters = new Array(nClients).fill(0);
  const period = 1000 / rate;
  const timers: Array<ReturnType<typeof setTimeout>> = [];
  let stopping = false;
  // Only clients with a key of their own set (client i sets player-i).
  const setters = Math.min(nClients, nKeys);
  measuring = true;
  emit({ phase: "start" });
  const t0 = performance.now();
  for (let i = 0; i < setters; i++) {
    const c = clients[i];
    const key = keys[i];
    const tick = () => {
      if (stopping || c.closed) return;
      c.send(JSON.stringify({ action: "set", key, value: { t: performance.now(), n: counters[i]++ } }));
      sent++;
    };
    // Phases spread evenly over one period.
    timers.push(setTimeout(() => {
      tick();
      timers.push(setInterval(tick, period));
    }, (i / setters) * period));
  }
  await sleep(seconds * 1000);
  stopping = true;
  for (const t of timers) { clearTimeout(t); clearInterval(t); }
  const setPhase = (performance.now() - t0) / 1000;
  await sleep(1000); // stragglers
  measuring = false;
  emit({ phase: "end" });
  const expected = sent * nClients;
  const sorted = lat.slice(0, nLat).sort();
  for (const c of clients) c.close();
  emit({
    scenario: "game", clients: nClients, keys: nKeys, rate, seconds,
    set_phase_s: round3(setPhase), sets: sent, expected, received,
    all_delivered: received === expected,
    p50_ms: round3(percentile(sorted, 50)), p99_ms: round3(percentile(sorted, 99)),
    max_ms: round3(maxLat), other_messages: other,
    closed_early: clients.filter((c) => c.closed).length,
  });
}

// --- 3. persist -----------------------------------------------------------------------------

async function persist(args: Args) {
  const url = str(args, "url");
  const nConn = num(args, "connections", 8);
  const nKeys = num(args, "keys", 1000);
  const total = num(args, "sets");
  const expectFile = args["expect"];
  const chunk = num(args, "chunk", 1000);
  let other = 0;
  const conns = await openMany(nConn, url, () => new Client(() => { other++; }), async (c) => {
    if (!(await c.sync())) throw new Error("sync failed");
  });
  // Set i goes to the connection of its key, so the sets of one key keep their order and the
  // last value of every key is known.
  const perConn: number[][] = Array.from({ length: nConn }, () => []);
  const expected: Record<string, unknown> = {};
  for (let i = 0; i < total; i++) {
    const k = i % nKeys;
    perConn[k % nConn].push(i);
    expected[`k${k}`] = { i };
  }
  emit({ phase: "start" });
  const t0 = performance.now();
  await Promise.all(
    conns.map(async (c, ci) => {
      const mine = perConn[ci];
      for (let start = 0; start < mine.length; start += chunk) {
        const end = Math.min(mine.length, start + chunk);
        for (let j = start; j < end; j++) {
          const i = mine[j];
          c.send(`{"action":"set","key":"k${i % nKeys}","value":{"i":${i}}}`);
        }
        // Keep the client's own buffer small; the server still sees one continuous stream.
        if (!(await c.drain(256 * 1024))) throw new Error("send buffer did not drain");
      }
      if (!(await c.sync(120000))) throw new Error("final get got no reply");
    }),
  );
  const elapsed = (performance.now() - t0) / 1000;
  emit({ phase: "end" });
  if (expectFile) await Bun.write(expectFile, JSON.stringify(expected));
  for (const c of conns) c.close();
  emit({
    scenario: "persist", connections: nConn, keys: nKeys, sets: total,
    elapsed: Math.round(elapsed * 1e6) / 1e6, sets_per_s: Math.round(total / elapsed),
    other_messages: other,
  });
}

// --- 4. idle --------------------------------------------------------------------------------

async function idle(args: Args) {
  const url = str(args, "url");
  const n = num(args, "connections");
  let updates = 0;
  const conns = await openMany(n, url, () => new Client(() => { updates++; }), async (c, i) => {
    c.send(JSON.stringify({ action: "subscribe", key: `idle-${i % 100}` }));
    if (!(await c.sync())) throw new Error("sync failed");
  });
  emit({ ready: n });
  await new Promise<void>((resolve) => {
    process.on("SIGTERM", () => resolve());
    process.on("SIGINT", () => resolve());
    process.stdin.on("end", () => resolve());
    process.stdin.on("close", () => resolve());
    process.stdin.on("error", () => resolve());
    process.stdin.resume();
  });
  const closedEarly = conns.filter((c) => c.closed).length;
  for (const c of conns) c.close();
  await until(() => conns.every((c) => c.closed), 5000, 10);
  emit({ scenario: "idle", connections: n, closed_early: closedEarly, updates });
}

// --- 5. http (fallback when wrk is missing) -------------------------------------------------

async function http(args: Args) {
  const base = str(args, "url").replace(/\/$/, "");
  const nClients = num(args, "clients", 50);
  const seconds = num(args, "seconds", 5);
  const key = str(args, "key", "k");
  const target = `${base}/get/${encodeURIComponent(key)}`;
  let ok = 0;
  let failed = 0;
  emit({ phase: "start" });
  const t0 = performance.now();
  const deadline = t0 + seconds * 1000;
  await Promise.all(
    Array.from({ length: nClients }, async () => {
      while (performance.now() < deadline) {
        try {
          const res = await fetch(target);
          await res.arrayBuffer();
          if (res.ok) ok++; else failed++;
        } catch { failed++; }
      }
    }),
  );
  const elapsed = (performance.now() - t0) / 1000;
  emit({ phase: "end" });
  emit({
    scenario: "http", clients: nClients, requests: ok + failed, ok, failed,
    elapsed: round3(elapsed), requests_per_s: Math.round((ok + failed) / elapsed),
  });
}

// --- 6. prefix10k (objstore's prefix subscriptions; the reference runs the key mode only) ----

/** Opens one connection whose every message goes to `handler` (no sync gets on it). */
async function openRaw(url: string, handler: (text: string) => void): Promise<Client> {
  const c = new Client(handler);
  await c.open(url);
  return c;
}

async function prefix10k(args: Args) {
  const url = str(args, "url");
  const nKeys = num(args, "keys", 10000);
  const repeats = num(args, "repeats", 5);
  const nSubs = num(args, "subscribers", 20);
  const nHot = num(args, "hot", 100);
  const rate = num(args, "rate", 1000);
  const seconds = num(args, "seconds", 3);
  const modes = str(args, "modes", "prefix,key").split(",").filter((m) => m);
  const timeoutMs = num(args, "timeout", 120) * 1000;
  const prefix = "p/";
  const width = String(nKeys - 1).length;
  const keyOf = (i: number) => prefix + String(i).padStart(width, "0");
  // Values of about 100 bytes as stored: {"n":12345,"pad":"xxx..."}.
  const pad = "x".repeat(80);

  // Load: 4 connections pipeline the sets, then a get round trip on each; then a pause, so
  // that the files written behind are written before anything is measured.
  const loaders = await openMany(4, url, () => new Client(() => {}), async () => {});
  for (let i = 0; i < nKeys; i++) {
    loaders[i % 4].send(JSON.stringify({ action: "set", key: keyOf(i), value: { n: i, pad } }));
  }
  for (const c of loaders) if (!(await c.sync(120000))) throw new Error("loading sync failed");
  for (const c of loaders) c.close();
  await sleep(1500);

  // (a) Time from a prefix subscribe with an id to its reply, on a fresh connection each time.
  const subscribe: Array<{ ms: number; snapshot: number; distinct: number; key_order: boolean }> = [];
  for (let r = 0; r < repeats; r++) {
    // Whether the snapshot came in key order is recorded, not judged: the order is the
    // server's choice (objstore sends it in revision order).
    let snapshot = 0;
    let keyOrder = true;
    let lastKey = "";
    const keysSeen = new Set<string>();
    let replied = false;
    let t1 = 0;
    const c = await openRaw(url, (text) => {
      if (text.includes('"ok"')) {
        const msg = JSON.parse(text);
        if (msg.id === r + 1) { t1 = performance.now(); replied = true; return; }
      }
      const at = text.indexOf('"key":"');
      if (at >= 0) {
        const key = text.slice(at + 7, text.indexOf('"', at + 7));
        if (key <= lastKey) keyOrder = false;
        lastKey = key;
        keysSeen.add(key);
      }
      snapshot++;
    });
    emit({ mark: `sub${r}_start` });
    const t0 = performance.now();
    c.send(JSON.stringify({ action: "subscribe", prefix, id: r + 1 }));
    if (!(await until(() => replied || c.closed, timeoutMs, 1))) throw new Error("no reply to subscribe");
    emit({ mark: `sub${r}_end` });
    if (!replied) throw new Error("the connection closed before the subscribe's reply");
    subscribe.push({ ms: round3(t1 - t0), snapshot, distinct: keysSeen.size, key_order: keyOrder });
    c.close();
    await sleep(100);
  }

  // (b) Fan-out of paced sets of `nHot` keys under the prefix to `nSubs` subscribers, that
  // hold either the prefix or a key subscription to each of those keys. Without ids, so
  // that both modes deliver the same original-form messages.
  const hot = Array.from({ length: nHot }, (_, j) => keyOf(Math.floor((j * nKeys) / nHot)));
  const total = Math.round(rate * seconds);
  const out: Record<string, unknown> = {};
  for (const mode of modes) {
    const lat = new Float64Array(total * nSubs);
    let nLat = 0;
    let measuring = false;
    let other = 0;
    const seen = new Float64Array(nSubs);
    const subs = await openMany(
      nSubs,
      url,
      (i) =>
        new Client((text) => {
          const now = performance.now();
          if (!measuring) { seen[i]++; return; }
          let msg: any;
          try { msg = JSON.parse(text); } catch { other++; return; }
          const t = msg?.value?.t;
          if (typeof t !== "number") { other++; return; }
          lat[nLat++] = now - t;
        }),
      async (c, i) => {
        if (mode === "prefix") {
          c.send(JSON.stringify({ action: "subscribe", prefix }));
          if (!(await until(() => seen[i] >= nKeys || c.closed, timeoutMs, 2))) {
            throw new Error("prefix snapshot incomplete");
          }
        } else {
          for (const k of hot) c.send(JSON.stringify({ action: "subscribe", key: k }));
        }
        if (!(await c.sync())) throw new Error("subscriber sync failed");
      },
      nSubs,
    );
    const pub = await openRaw(url, () => {});
    measuring = true;
    emit({ mark: `fan_${mode}_start` });
    const t0 = performance.now();
    let sent = 0;
    await new Promise<void>((resolve) => {
      const timer = setInterval(() => {
        const due = Math.min(total, Math.floor(((performance.now() - t0) / 1000) * rate) + 1);
        while (sent < due) {
          const i = sent++;
          pub.send(JSON.stringify({ action: "set", key: hot[i % nHot], value: { seq: i, t: performance.now(), pad } }));
        }
        if (sent >= total || pub.closed) { clearInterval(timer); resolve(); }
      }, 1);
    });
    const expected = sent * nSubs;
    await until(() => nLat >= expected || subs.every((c) => c.closed), timeoutMs, 1);
    emit({ mark: `fan_${mode}_end` });
    measuring = false;
    const sorted = lat.slice(0, nLat).sort();
    out[mode] = {
      subscribers: nSubs, sets: sent, expected, received: nLat, all_delivered: nLat === expected,
      p50_ms: round3(percentile(sorted, 50)), p99_ms: round3(percentile(sorted, 99)),
      max_ms: round3(sorted.length ? sorted[sorted.length - 1] : NaN), other_messages: other,
      closed_early: subs.filter((c) => c.closed).length,
    };
    for (const c of subs) c.close();
    pub.close();
    await sleep(200);
  }
  emit({ scenario: "prefix10k", keys: nKeys, subscribe, ...out });
}

// --- 7. acked (objstore's sets with an id, each awaited) ------------------------------------

async function acked(args: Args) {
  const url = str(args, "url");
  const nConn = num(args, "connections", 8);
  const inflight = num(args, "inflight", 16);
  const nKeys = num(args, "keys", 1000);
  const total = num(args, "sets");
  const timeoutMs = num(args, "timeout", 120) * 1000;
  const lat = new Float64Array(total);
  let nLat = 0;
  let failed = 0;
  let next = 0; // the next set to send, over all connections
  let firstError = "";
  const sentAt = new Float64Array(total);
  const conns: Client[] = [];
  const sendNext = (c: Client) => {
    if (next >= total) return;
    const i = next++;
    sentAt[i] = performance.now();
    c.send(`{"action":"set","key":"a${i % nKeys}","value":{"i":${i}},"id":${i}}`);
  };
  for (let ci = 0; ci < nConn; ci++) {
    const c: Client = await openRaw(urlOf(url, ci), (text) => {
      const now = performance.now();
      let msg: any;
      try { msg = JSON.parse(text); } catch { msg = null; }
      if (typeof msg?.id === "number" && msg.ok === true) lat[nLat++] = now - sentAt[msg.id];
      else {
        failed++;
        if (!firstError) firstError = text.slice(0, 200);
      }
      sendNext(c);
    });
    conns.push(c);
  }
  emit({ mark: "acked_start" });
  const t0 = performance.now();
  for (const c of conns) for (let j = 0; j < inflight; j++) sendNext(c);
  await until(() => nLat + failed >= total || conns.every((c) => c.closed), timeoutMs, 1);
  const elapsed = (performance.now() - t0) / 1000;
  emit({ mark: "acked_end" });
  for (const c of conns) c.close();
  const sorted = lat.slice(0, nLat).sort();
  emit({
    scenario: "acked", connections: nConn, inflight, keys: nKeys, sets: total, acked: nLat,
    failed, first_error: firstError, elapsed: round3(elapsed), sets_per_s: Math.round(nLat / elapsed),
    p50_ms: round3(percentile(sorted, 50)), p99_ms: round3(percentile(sorted, 99)),
    max_ms: round3(sorted.length ? sorted[sorted.length - 1] : NaN),
  });
}

// --- 8. connect and reconnect (new connections, each subscribing until it has its value) ----

/** The http:// base of a ws://HOST:PORT/ws URL. */
function httpBase(url: string): string {
  return url.replace(/^ws/, "http").replace(/\/ws$/, "");
}

type Wave = {
  conns: WebSocket[]; done: number; failed: number; firstError: string;
  t0: number; tLast: number; lat: Float64Array; nLat: number;
};

/**
 * Opens `n` connections, at most `limit` of them not yet done at once (Infinity: all at
 * once), each subscribing to `c-{i % keys}` (and sending a get after it when `get`); one is
 * done at the first message that carries its key's value. Resolves when every one is done
 * or has failed, or at the timeout.
 */
function openWave(url: string, n: number, keys: number, limit: number, get: boolean, timeoutMs: number): Promise<Wave> {
  const w: Wave = {
    conns: new Array(n), done: 0, failed: 0, firstError: "", t0: performance.now(), tLast: 0,
    lat: new Float64Array(n), nLat: 0,
  };
  return new Promise((resolve) => {
    let next = 0;
    let active = 0;
    const timer = setTimeout(() => {
      // The connections still waiting count as failed: without a value after the timeout.
      if (w.done + w.failed < n) w.firstError ||= `${n - w.done - w.failed} timed out after ${timeoutMs} ms`;
      w.failed = n - w.done;
      resolve(w);
    }, timeoutMs);
    const settle = () => {
      active--;
      if (w.done + w.failed === n) { clearTimeout(timer); resolve(w); return; }
      pump();
    };
    const openOne = (i: number) => {
      const key = `c-${i % keys}`;
      const started = performance.now();
      let finished = false;
      const fail = (why: string) => {
        if (finished) return;
        finished = true;
        w.failed++;
        if (!w.firstError) w.firstError = why;
        settle();
      };
      const ws = new WebSocket(url);
      w.conns[i] = ws;
      ws.onopen = () => {
        ws.send(JSON.stringify({ action: "subscribe", key }));
        if (get) ws.send(JSON.stringify({ action: "get", key }));
      };
      ws.onmessage = (ev: MessageEvent) => {
        if (finished) return;
        const text = typeof ev.data === "string" ? ev.data : decoder.decode(ev.data as ArrayBuffer);
        let msg: any;
        try { msg = JSON.parse(text); } catch { return; }
        if (msg?.key !== key || msg.value == null) return;
        finished = true;
        const now = performance.now();
        w.tLast = Math.max(w.tLast, now);
        w.lat[w.nLat++] = now - started;
        w.done++;
        settle();
      };
      ws.onerror = () => fail(`connection ${i} failed`);
      ws.onclose = (ev: CloseEvent) => fail(`connection ${i} closed (${ev.code}) before its value`);
    };
    const pump = () => {
      while (next < n && active < limit) {
        active++;
        openOne(next++);
      }
    };
    if (n === 0) { clearTimeout(timer); resolve(w); return; }
    pump();
  });
}

async function connect(args: Args) {
  const url = str(args, "url");
  const n = num(args, "connections");
  const keys = num(args, "keys", 100);
  const inflight = num(args, "inflight", 256);
  const mode = str(args, "mode", "connect");
  const get = num(args, "get", 0) > 0;
  const timeoutMs = num(args, "timeout", 120) * 1000;
  if (mode !== "connect" && mode !== "reconnect") throw new Error(`--mode must be connect or reconnect, got ${mode}`);
  // --setup 0: the keys are not set first (a server that answers every subscribe with a
  // value, like stackfloor.py's websockets server, which reads no request body).
  const setup = num(args, "setup", 1) > 0;
  const base = httpBase(url);
  for (let k = 0; setup && k < keys; k++) {
    const res = await fetch(`${base}/set`, {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ key: `c-${k}`, value: { k } }),
    });
    await res.arrayBuffer();
    if (!res.ok) throw new Error(`POST /set of c-${k} answered ${res.status}`);
  }
  await sleep(300); // the files written behind are written before anything is measured
  let old: WebSocket[] = [];
  if (mode === "reconnect") {
    const first = await openWave(url, n, keys, inflight, get, timeoutMs);
    if (first.done !== n) throw new Error(`${first.failed} of the first ${n} connections failed: ${first.firstError}`);
    old = first.conns;
    await sleep(500);
  }
  emit({ mark: "wave_start" });
  for (const ws of old) { ws.onclose = null; ws.onerror = null; ws.onmessage = null; try { ws.close(); } catch {} }
  const w = await openWave(url, n, keys, mode === "reconnect" ? Infinity : inflight, get, timeoutMs);
  emit({ mark: "wave_end" });
  const elapsed = ((w.tLast || performance.now()) - w.t0) / 1000;
  const sorted = w.lat.slice(0, w.nLat).sort();
  for (const ws of w.conns) { if (ws) { ws.onclose = null; ws.onerror = null; try { ws.close(); } catch {} } }
  await sleep(200);
  emit({
    scenario: mode, connections: n, keys, inflight: mode === "reconnect" ? "all" : inflight,
    get, done: w.done, failed: w.failed, first_error: w.firstError, elapsed: round3(elapsed),
    connections_per_s: Math.round(w.done / elapsed),
    p50_ms: round3(percentile(sorted, 50)), p99_ms: round3(percentile(sorted, 99)),
    max_ms: round3(sorted.length ? sorted[sorted.length - 1] : NaN),
  });
}

// --- 9. sse (streams of GET /events?key=K; one publisher over WebSocket) --------------------

async function sse(args: Args) {
  const url = str(args, "url");
  const n = num(args, "streams");
  const m = num(args, "sets");
  const key = str(args, "key", "s");
  const timeoutMs = num(args, "timeout", 120) * 1000;
  const last = m - 1;
  const count = new Float64Array(n);
  const lastSeq = new Float64Array(n).fill(-1);
  const ready = new Uint8Array(n);
  const ended = new Uint8Array(n);
  let nReady = 0;
  let doneStreams = 0;
  let firstError = "";
  const aborts: AbortController[] = [];
  const target = `${httpBase(url)}/events?key=${encodeURIComponent(key)}`;
  const readers = Array.from({ length: n }, async (_, i) => {
    const abort = new AbortController();
    aborts.push(abort);
    try {
      const res = await fetch(target, { signal: abort.signal, headers: { Accept: "text/event-stream" } });
      if (!res.ok || !res.body) throw new Error(`GET /events answered ${res.status}`);
      const reader = res.body.getReader();
      const dec = new TextDecoder();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        let end: number;
        while ((end = buf.indexOf("\n\n")) >= 0) {
          const event = buf.slice(0, end);
          buf = buf.slice(end + 2);
          if (event.includes("event: ready")) {
            if (!ready[i]) { ready[i] = 1; nReady++; }
          } else if (event.includes("event: update")) {
            const seq = seqOf(event);
            if (seq < 0) continue;
            count[i]++;
            lastSeq[i] = seq;
            if (seq === last) doneStreams++;
          }
        }
      }
    } catch (e) {
      if (!abort.signal.aborted && !firstError) firstError = String((e as Error)?.message ?? e);
    } finally {
      ended[i] = 1;
    }
  });
  if (!(await until(() => nReady === n || ended.some((x) => x === 1), timeoutMs, 2)) || nReady !== n) {
    throw new Error(`only ${nReady} of ${n} streams became ready: ${firstError}`);
  }
  const pub = new Client(() => {});
  await pub.open(url);
  const pad = "x".repeat(60);
  const frames: string[] = new Array(m);
  for (let i = 0; i < m; i++) frames[i] = JSON.stringify({ action: "set", key, value: { seq: i, pad } });
  count.fill(0);
  emit({ phase: "start" });
  const t0 = performance.now();
  for (let i = 0; i < m; i++) pub.send(frames[i]);
  await until(() => doneStreams >= n || pub.closed || ended.every((x) => x === 1), timeoutMs, 1);
  const complete = doneStreams >= n;
  const elapsed = (performance.now() - t0) / 1000;
  emit({ phase: "end" });
  await sleep(200);
  let deliveries = 0;
  let allLast = true;
  for (let i = 0; i < n; i++) {
    deliveries += count[i];
    if (lastSeq[i] !== last) allLast = false;
  }
  const closedEarly = Array.from(ended).filter((x) => x === 1).length;
  for (const a of aborts) a.abort();
  pub.close();
  await Promise.allSettled(readers);
  emit({
    scenario: "sse", streams: n, sets: m, complete, deliveries, expected: n * m,
    elapsed: Math.round(elapsed * 1e6) / 1e6, deliveries_per_s: Math.round(deliveries / elapsed),
    all_last: allLast && complete, closed_early: closedEarly, first_error: firstError,
  });
}

// --- main -----------------------------------------------------------------------------------

const scenarios: Record<string, (a: Args) => Promise<void>> = {
  fanout, game, persist, idle, http, prefix10k, acked, connect, sse,
};

async function main() {
  let scenario = "";
  try {
    const parsed = parseArgs(process.argv.slice(2));
    scenario = parsed.scenario;
    const run = scenarios[scenario];
    if (!run) throw new Error(`unknown scenario ${JSON.stringify(scenario)}; one of ${Object.keys(scenarios).join(", ")}`);
    await run(parsed.args);
    process.exit(0);
  } catch (e) {
    emit({ scenario, error: String((e as Error)?.message ?? e) });
    process.exit(1);
  }
}

main();
