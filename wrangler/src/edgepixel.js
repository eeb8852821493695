// The JavaScript side of edgepixel's worker: it moves a request into the
// Go module (wrangler/cmd/edgepixel-worker, whose exports.go documents the
// memory protocol), turns the answer into a Response, and performs the
// deliveries the Go side asks for. Which bytes go where, and what a
// failure means for the events, is decided in Go (wrangler/worker); this
// file only does the network calls, their timeouts and retries.

import { wasiImports } from "./wasi.js";

// Outcomes reported to ep_next (wrangler/worker: Start, Delivered, Failed).
const START = 0, DELIVERED = 1, FAILED = 2;

// Waits before each attempt of one POST: a few quick tries, as the Fastly
// module's Batcher makes (edge/pixel/batch.go).
const BACKOFF_MS = [0, 50, 250, 1000];
// A POST that has not answered in this long counts as failed.
const TIMEOUT_MS = 5000;
// A batch's delivery ends within the delivery deadline from its close
// (the delivery_deadline_ms var, wrangler/worker DefaultDeliveryDeadline):
// its batch POSTs by half of it, its fallback by all of it; then its
// hand-over to the spool has SPOOL_PUT_MS more. All of it, with the
// batch's wait, ends within the 30 s Cloudflare gives ctx.waitUntil work
// after a response: delivered, spooled, or counted lost.
const SPOOL_PUT_MS = 4000;
// The spool's Durable Object binding (wrangler.toml [[durable_objects]]),
// optional: without it a batch the aggregators did not take in time is
// counted lost.
const SPOOL_BINDING = "SPOOL";
// The Workers KV bindings (wrangler.toml [[kv_namespaces]]), both
// optional: SALTS, where edgepixel-salt writes the visitor-id salts, and
// SETTINGS, the per-site settings under the names the Fastly module's
// config store uses (wrangler/worker SettingsKeys), which replace the
// vars of those names. An isolate uses what it read for the kv_cache_ms
// var (parsed, and a bad value reported, by the Go side) before reading
// again. A rotation writes tomorrow's salt a day ahead, so minutes of
// caching never leave a day without its salt.
const SALTS_BINDING = "SALTS";
const SETTINGS_BINDING = "SETTINGS";
// A background read of KV that has not ended in this long (its request
// was cancelled) no longer stops another.
const KV_READ_MS = 10000;
// The aggregator's refusals that retrying cannot fix (pixel.ErrRejected).
const REFUSED = new Set([400, 401, 413]);
// How much of a refused POST's answer is logged.
const REFUSAL_BYTES = 200;
// Marks a batch whose delivery a request has started.
const STARTED = -1;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

// nl keeps a request.cf string on its one line of the request block.
const nl = (v) => (v == null ? "" : String(v).replace(/[\r\n]/g, " "));

export class EdgePixel {
  // module is the compiled WebAssembly.Module; env the Worker's env.
  // Construct inside a fetch: the Go runtime draws random numbers as it
  // starts, which workerd refuses at global scope.
  constructor(module, env, opts = {}) {
    let memory;
    // opts (tests): fetch, sleep, clock.
    this.instance = new WebAssembly.Instance(module, wasiImports(module, () => memory, opts.clock));
    this.x = this.instance.exports;
    memory = this.x.memory;
    this.fetch = opts.fetch ?? ((...a) => fetch(...a));
    this.sleep = opts.sleep ?? ((ms) => new Promise((r) => setTimeout(r, ms)));
    this.x._initialize();
    this.maxBody = this.x.ep_max_body();
    let cfg = "";
    for (const [k, v] of Object.entries(env ?? {})) {
      // A var in wrangler.toml may be a TOML number or boolean too.
      if (["string", "number", "boolean"].includes(typeof v)) cfg += k + "\0" + v + "\0";
      // A binding goes by its name alone: the Go side checks it (a
      // misspelt SPOOL said nothing until an outage lost events).
      else if (v && typeof v === "object") cfg += k + "\0\0";
    }
    const n = this.write(encoder.encode(cfg), 0);
    this.x.ep_init(n);
    this.batchWait = this.x.ep_batch_wait();
    this.deliveryDeadline = this.x.ep_delivery_deadline();
    this.spool = env?.[SPOOL_BINDING];
    this.saltsKV = kvBinding(env, SALTS_BINDING);
    this.settingsKV = kvBinding(env, SETTINGS_BINDING);
    this.kvCacheMs = this.x.ep_kv_cache_ms();
    this.saltKeys = this.answer(this.x.ep_salt_keys()).lines;
    this.kvAt = -Infinity; // when KV was last read
    this.kvReading = -Infinity; // when a background read began
    this.settings = null; // the settings last given to the Go side
    // Batches given out and not delivered, by id: when each is due by
    // age (a Date.now() value), or STARTED once a request delivers it.
    this.batches = new Map();
  }

  // write copies bytes into the input buffer at off (growing it) and
  // returns the length written.
  write(bytes, off) {
    const p = this.x.ep_buffer(off + bytes.length);
    new Uint8Array(this.x.memory.buffer, p + off, bytes.length).set(bytes);
    return bytes.length;
  }

  // answer reads an export's answer at ptr: two words, header lines, body.
  answer(ptr) {
    const dv = new DataView(this.x.memory.buffer);
    const len = dv.getUint32(ptr, true);
    if (len === 0) return null;
    const a = dv.getUint32(ptr + 4, true);
    const b = dv.getUint32(ptr + 8, true);
    const nh = dv.getUint32(ptr + 12, true);
    const nb = dv.getUint32(ptr + 16, true);
    const mem = new Uint8Array(this.x.memory.buffer);
    const lines = decoder.decode(mem.subarray(ptr + 20, ptr + 20 + nh)).split("\n");
    lines.pop();
    // The body is copied out: the buffer is reused by the next call.
    const body = mem.slice(ptr + 20 + nh, ptr + 20 + nh + nb);
    return { a, b, lines, body };
  }

  // serve answers request; a delivery it started is handed to waitUntil.
  async serve(request, ctx) {
    if ((this.saltsKV || this.settingsKV) && Date.now() - this.kvAt >= this.kvCacheMs) {
      if (this.kvAt === -Infinity) {
        // Until a first read has ended, each request reads KV and waits
        // for its own read: a request must not wait on another's I/O
        // (settle says why).
        await this.readKV();
      } else if (!(Date.now() - this.kvReading < KV_READ_MS)) {
        // Later ones are served with what was read while one request's
        // waitUntil reads afresh.
        this.kvReading = Date.now();
        const reading = this.readKV().finally(() => { this.kvReading = -Infinity; });
        if (ctx) ctx.waitUntil(reading);
      }
    }
    let body = null;
    if (request.method !== "GET" && request.method !== "HEAD" && request.body) {
      body = await readCapped(request.body, this.maxBody, request.headers.get("content-length"));
    }
    return this.serveSync(request, body, ctx);
  }

  // serveSync is serve with the body already read (at most maxBody bytes).
  serveSync(request, body, ctx) {
    const cf = request.cf ?? {};
    let text = request.method + "\n" + request.url + "\n" + nl(cf.country) + "\n" + nl(cf.regionCode) + "\n" +
      nl(cf.city) + "\n" + nl(cf.asn) + "\n" + nl(cf.botManagement?.verifiedBot ? "verified" : cf.botManagement?.score) + "\n" + nl(cf.colo) + "\n";
    for (const [k, v] of request.headers) text += k + ":" + v + "\n";
    // encodeInto needs room for 3 bytes per UTF-16 unit at most.
    const room = text.length * 3;
    const p = this.x.ep_buffer(room + (body ? body.length : 0));
    const { written } = encoder.encodeInto(text, new Uint8Array(this.x.memory.buffer, p, room));
    if (body) new Uint8Array(this.x.memory.buffer, p + written, body.length).set(body);
    const r = this.answer(this.x.ep_serve(written, body ? body.length : 0));
    const headers = new Headers();
    for (const line of r.lines) {
      const i = line.indexOf(": ");
      headers.append(line.slice(0, i), line.slice(i + 2));
    }
    const nobody = r.a === 204 || r.a === 304 || request.method === "HEAD";
    // A body the module encoded itself (s.js, gzipped when the client
    // takes gzip) goes out as it is: workerd encodes a body with a
    // Content-Encoding header again unless told it is done, and s.js
    // reached browsers gzipped twice, so the tracker never ran (found by a
    // new-user tester). encodeBody is Cloudflare's Response option.
    const encodeBody = headers.has("content-encoding") ? "manual" : "automatic";
    const response = new Response(nobody ? null : r.body, { status: r.a, headers, encodeBody });
    if (r.b !== 0) this.settle(r.b & 0x7fffffff, r.b >>> 31 === 1, ctx, cf.colo);
    return response;
  }

  // readKV reads the salts and the settings from their KV namespaces
  // into the Go module; a failed read keeps what it has (from a read
  // before, or the environment).
  async readKV() {
    await Promise.all([this.saltsKV && this.readSalts(), this.settingsKV && this.readSettings()]);
    this.kvAt = Date.now();
  }

  async readSalts() {
    try {
      const values = await Promise.all(this.saltKeys.map((k) => this.saltsKV.get(k)));
      let pairs = "";
      this.saltKeys.forEach((k, i) => { if (values[i] != null) pairs += k + "\0" + values[i] + "\0"; });
      this.x.ep_salts(this.write(encoder.encode(pairs), 0));
    } catch (e) {
      console.error(`edgepixel: reading the salts from KV ${SALTS_BINDING}: ${e}`);
    }
  }

  // readSettings reads the keys the Go side asks for, in rounds (the
  // sites listed decide which site.SITE keys there are), and gives it
  // them when they changed.
  async readSettings() {
    try {
      let pairs = "";
      for (let round = 0; round < 4; round++) {
        const keys = this.answer(this.x.ep_settings_keys(this.write(encoder.encode(pairs), 0))).lines;
        if (keys.length === 0) break;
        const values = await Promise.all(keys.map((k) => this.settingsKV.get(k)));
        keys.forEach((k, i) => { pairs += k + "\0" + (values[i] ?? "") + "\0"; });
      }
      if (pairs !== this.settings) {
        this.x.ep_settings(this.write(encoder.encode(pairs), 0));
        this.settings = pairs;
      }
    } catch (e) {
      console.error(`edgepixel: reading the settings from KV ${SETTINGS_BINDING}: ${e}`);
    }
  }

  // settle sees to the delivery of batch id, which holds this request's
  // events: at once when due (full, or waited long enough; the Go side
  // has closed it), else when the batch's wait from its first request
  // is over, unless another request has started it by then. Whichever
  // request starts a delivery drives all of it, and its waitUntil lasts
  // until the delivery has ended.
  //
  // Every promise a request waits for is its own: its timer, its
  // delivery. workerd runs the continuations of a promise in the request
  // that made it, and a request's promise resolved from another request
  // never went on: a batch woken by a later request (due by age before
  // the first request's timer fired) was never delivered, and the
  // requests waiting on it were cancelled as hung (TestWorkers in
  // tests/workers_test.go, "batching under concurrent load").
  //
  // colo (request.cf.colo) names the spool object the batch goes to if
  // the aggregators do not take it: one per data center, near it.
  settle(id, due, ctx, colo) {
    let at = this.batches.get(id);
    if (at === undefined) {
      at = Date.now() + this.batchWait; // when the batch is due by age
      this.batches.set(id, at);
    }
    let p;
    if (due) {
      p = this.start(id, colo);
    } else {
      // Date.now() stands still within a request on Workers: at is
      // reckoned from the time this isolate first saw the batch.
      p = this.sleep(Math.max(0, at - Date.now())).then(() => (this.batches.get(id) === at ? this.start(id, colo) : undefined));
    }
    if (ctx) ctx.waitUntil(p);
    else p.catch(() => {});
  }

  // start delivers batch id, which no request has started yet.
  async start(id, colo) {
    this.batches.set(id, STARTED);
    try {
      await this.deliver(id, colo);
    } finally {
      this.batches.delete(id);
    }
  }

  // deliver drives batch h's delivery to its end: each POST the Go side
  // asks for is made, retried, and its outcome reported back.
  async deliver(h, colo) {
    const start = Date.now();
    let d = this.next(h, START);
    try {
      while (d) {
        let ok;
        if (d.spool) {
          ok = await this.toSpool(d, colo, start + this.deliveryDeadline + SPOOL_PUT_MS);
        } else {
          const deadline = start + (d.fallback ? this.deliveryDeadline : this.deliveryDeadline / 2);
          ok = await this.post(d, deadline);
        }
        d = this.next(h, ok ? DELIVERED : FAILED);
      }
    } catch (e) {
      console.error("edgepixel: delivery:", e);
      while (d) d = this.next(h, FAILED); // the Go side counts what is lost
    }
  }

  next(h, outcome) {
    return this.nextOf(this.x.ep_next(h, outcome));
  }

  // nextOf reads ep_next's answer: a POST to make, or null.
  nextOf(ptr) {
    const r = this.answer(ptr);
    return r && this.delivery(r);
  }

  // delivery reads a POST to make from an answer (nextOf).
  delivery(r) {
    const [url, ...hdr] = r.lines;
    const headers = {};
    for (const line of hdr) {
      const i = line.indexOf(": ");
      headers[line.slice(0, i)] = line.slice(i + 2);
    }
    return { url, headers, body: r.body, retry: (r.a & 1) !== 0, fallback: (r.a & 2) !== 0, spool: (r.a & 4) !== 0 };
  }

  // toSpool hands d's batch to the spool object for colo, which answers
  // once the batch is on its disk (or counted lost there); true then.
  async toSpool(d, colo, deadline) {
    if (!this.spool) return false;
    try {
      const stub = this.spool.get(this.spool.idFromName("colo:" + (colo || "none")));
      let timer;
      const late = new Promise((_, reject) => { timer = setTimeout(() => reject(new Error("no answer in time")), Math.max(0, deadline - Date.now())); });
      try {
        await Promise.race([stub.put(d.body), late]);
      } finally {
        clearTimeout(timer);
      }
      return true;
    } catch (e) {
      console.error(`edgepixel: handing a batch to the spool: ${e}`);
      return false;
    }
  }

  // spoolSend answers the POST that delivers a spooled batch now, signed
  // afresh (wrangler/worker SpoolDelivery), { hold: true } when there is
  // no URL to send it to (the spool keeps it for a deploy that sets one),
  // or null when it cannot be sent (it does not decode); one try through
  // the aggregators, the spool retrying later.
  spoolSend(batch) {
    const r = this.answer(this.x.ep_spool_send(this.write(batch, 0)));
    if (r && r.a & 8) return { hold: true };
    const d = r && this.delivery(r);
    if (d) d.retry = false;
    return d;
  }

  // spoolLost answers what replaces a spooled batch that must be dropped
  // (wrangler/worker SpoolLost): its events and the records that count
  // them lost; null when it does not decode.
  spoolLost(batch) {
    const r = this.answer(this.x.ep_spool_lost(this.write(batch, 0)));
    if (!r) return null;
    const records = [];
    let off = 0;
    for (const n of r.lines) {
      records.push(r.body.slice(off, off + Number(n)));
      off += Number(n);
    }
    return { events: r.a, records };
  }

  // spoolConfig answers the spool's settings (wrangler/worker Config).
  spoolConfig() {
    const [retryMs, retryMaxMs, maxBytes, maxAgeMs] = this.answer(this.x.ep_spool_config()).lines.map(Number);
    return { retryMs, retryMaxMs, maxBytes, maxAgeMs };
  }

  // post makes d's POST with retries until deadline (a Date.now() value);
  // true once it was acknowledged; false when not, with d.refused set to
  // the status when an aggregator refused it for good (REFUSED). d.url
  // may list several aggregators
  // separated by commas (ingest_url "https://a/ingest,https://b/ingest"):
  // each attempt tries them in turn, starting one further along than the
  // attempt before, until one acknowledges or refuses for good; one that
  // does not answer, or answers 429 or 5xx, passes the POST to the next.
  // The body and its signature are the same for all: the aggregators
  // share dedupe, so a batch that reached two of them is stored once.
  async post(d, deadline = Infinity) {
    const urls = d.url.split(",").map((u) => u.trim()).filter((u) => u);
    const tries = d.retry ? BACKOFF_MS : BACKOFF_MS.slice(0, 1);
    for (const wait of tries) {
      if (wait) await this.sleep(wait);
      const start = (this.nextURL = ((this.nextURL ?? -1) + 1) % urls.length);
      let retryAfter = 0;
      for (let i = 0; i < urls.length; i++) {
        const left = deadline - Date.now();
        if (left <= 0) return false;
        const url = urls[(start + i) % urls.length];
        let resp, answer;
        try {
          resp = await this.fetch(url, { method: "POST", headers: d.headers, body: d.body, signal: AbortSignal.timeout(Math.min(TIMEOUT_MS, left)) });
          answer = await resp.arrayBuffer();
        } catch (e) {
          console.error(`edgepixel: POST ${url}: ${e}`);
          continue;
        }
        if (resp.ok) return true;
        console.error(`edgepixel: POST ${url}: ${resp.status}${refusal(resp.status, answer, d)}`);
        if (REFUSED.has(resp.status)) {
          d.refused = resp.status;
          return false;
        }
        retryAfter = Math.max(retryAfter, Number(resp.headers.get("Retry-After")) || 0);
      }
      if (retryAfter > 0 && retryAfter <= 1) await this.sleep(retryAfter * 1000);
    }
    return false;
  }
}

// refusal says why an aggregator did not take d: the start of its
// answer (the aggregator says there what it found wrong), and for the
// statuses a wrong configuration gets, what to check, since the status
// alone does not tell a wrong secret from a wrong URL.
function refusal(status, answer, d) {
  let why = decoder.decode(new Uint8Array(answer, 0, Math.min(answer.byteLength, REFUSAL_BYTES))).replace(/\s+/g, " ").trim();
  why = why ? ` ${JSON.stringify(why)}` : "";
  if (status === 401 || status === 403) {
    const bearer = Object.keys(d.headers).some((k) => k.toLowerCase() === "authorization");
    why += bearer
      ? "; check that the log_token secret is the aggregator's --log-token"
      : "; check that the aggregator_secret secret is the aggregator's --secret";
  } else if (status === 404) {
    why += d.fallback
      ? "; ndjson_url must be the aggregator's /ingest/ndjson"
      : "; ingest_url must be the aggregator's /ingest";
  }
  return why;
}

// kvBinding returns env's binding name if it is a KV namespace. Another
// kind of binding, or a var, under that name is said once and not used:
// it would fail every read with "get is not a function", and without
// its salts the events carry no visitor id.
function kvBinding(env, name) {
  const b = env?.[name];
  if (b == null) return undefined;
  if (typeof b.get === "function" && typeof b.getWithMetadata === "function") return b;
  console.error(`edgepixel: ${name} is bound, but not to a KV namespace, so it is not read: bind a namespace as ${name} in wrangler.toml [[kv_namespaces]] (wrangler/README.md)`);
  return undefined;
}

// DRAIN_BYTES is how much of a body past the cap readCapped reads and
// discards, as Go's net/http server does for a handler that left its
// body unread (256 KiB): workerd keeps a connection whose request body
// was read to its end, and closes one whose body was cancelled, without
// a "Connection: close" a worker cannot set, so a client's next request
// on it failed.
const DRAIN_BYTES = 256 << 10;

// refusedBody is what readCapped gives for a body it did not read: max
// bytes, which the module refuses as too large unread; one zeroed buffer
// for every such request.
let refused = null;
function refusedBody(max) {
  if (refused === null || refused.length !== max) refused = new Uint8Array(max);
  return refused;
}

// readCapped reads a body stream up to max bytes: a longer body is
// refused by its first max bytes (max is one more than allowed). The
// rest of a longer body is read to its end and dropped when it is at
// most DRAIN_BYTES more, and otherwise cancelled once that much more has
// been read, or at once when its Content-Length (length, null if none)
// says it is longer.
async function readCapped(stream, max, length) {
  const reader = stream.getReader();
  if (length != null && Number(length) > max + DRAIN_BYTES) {
    reader.cancel().catch(() => {});
    return refusedBody(max);
  }
  const chunks = [];
  let n = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (n < max) chunks.push(value);
    n += value.length;
    if (n > max + DRAIN_BYTES) {
      reader.cancel().catch(() => {});
      break;
    }
  }
  const out = new Uint8Array(Math.min(n, max));
  let off = 0;
  for (const c of chunks) {
    const take = Math.min(c.length, out.length - off);
    out.set(c.subarray(0, take), off);
    off += take;
  }
  return out;
}
