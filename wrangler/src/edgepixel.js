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
// module's Batcher makes (edge/pixel/batch.go), within the 30 s a worker
// has after its response for ctx.waitUntil work.
const BACKOFF_MS = [0, 50, 250, 1000];
// A POST that has not answered in this long counts as failed.
const TIMEOUT_MS = 5000;
// The aggregator's refusals that retrying cannot fix (pixel.ErrRejected).
const REFUSED = new Set([400, 401, 413]);

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
    this.instance = new WebAssembly.Instance(module, wasiImports(module, () => memory));
    this.x = this.instance.exports;
    memory = this.x.memory;
    this.fetch = opts.fetch ?? ((...a) => fetch(...a));
    this.sleep = opts.sleep ?? ((ms) => new Promise((r) => setTimeout(r, ms)));
    this.x._initialize();
    this.maxBody = this.x.ep_max_body();
    let cfg = "";
    for (const [k, v] of Object.entries(env ?? {})) {
      if (typeof v === "string") cfg += k + "\0" + v + "\0";
    }
    const n = this.write(encoder.encode(cfg), 0);
    this.x.ep_init(n);
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
    let body = null;
    if (request.method !== "GET" && request.method !== "HEAD" && request.body) {
      body = await readCapped(request.body, this.maxBody);
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
    const response = new Response(nobody ? null : r.body, { status: r.a, headers });
    if (r.b !== 0) {
      const done = this.deliver(r.b);
      if (ctx) ctx.waitUntil(done);
    }
    return response;
  }

  // deliver drives delivery h to its end: each POST the Go side asks for
  // is made, retried, and its outcome reported back.
  async deliver(h) {
    let d = this.next(h, START);
    try {
      while (d) d = this.next(h, (await this.post(d)) ? DELIVERED : FAILED);
    } catch (e) {
      console.error("edgepixel: delivery:", e);
      while (d) d = this.next(h, FAILED); // the Go side counts what is lost
    }
  }

  next(h, outcome) {
    const r = this.answer(this.x.ep_next(h, outcome));
    if (!r) return null;
    const [url, ...hdr] = r.lines;
    const headers = {};
    for (const line of hdr) {
      const i = line.indexOf(": ");
      headers[line.slice(0, i)] = line.slice(i + 2);
    }
    return { url, headers, body: r.body, retry: r.a === 1 };
  }

  // post makes d's POST with retries; true once it was acknowledged.
  // d.url may list several aggregators separated by commas (ingest_url
  // "https://a/ingest,https://b/ingest"): each attempt tries them in
  // turn, starting one further along than the attempt before, until one
  // acknowledges or refuses for good; one that does not answer, or
  // answers 429 or 5xx, passes the POST to the next. The body and its
  // signature are the same for all: the aggregators share dedupe, so a
  // batch that reached two of them is stored once.
  async post(d) {
    const urls = d.url.split(",").map((u) => u.trim()).filter((u) => u);
    const tries = d.retry ? BACKOFF_MS : BACKOFF_MS.slice(0, 1);
    for (const wait of tries) {
      if (wait) await this.sleep(wait);
      const start = (this.nextURL = ((this.nextURL ?? -1) + 1) % urls.length);
      let retryAfter = 0;
      for (let i = 0; i < urls.length; i++) {
        const url = urls[(start + i) % urls.length];
        let resp;
        try {
          resp = await this.fetch(url, { method: "POST", headers: d.headers, body: d.body, signal: AbortSignal.timeout(TIMEOUT_MS) });
          await resp.arrayBuffer();
        } catch (e) {
          console.error(`edgepixel: POST ${url}: ${e}`);
          continue;
        }
        if (resp.ok) return true;
        console.error(`edgepixel: POST ${url}: ${resp.status}`);
        if (REFUSED.has(resp.status)) return false;
        retryAfter = Math.max(retryAfter, Number(resp.headers.get("Retry-After")) || 0);
      }
      if (retryAfter > 0 && retryAfter <= 1) await this.sleep(retryAfter * 1000);
    }
    return false;
  }
}

// readCapped reads a body stream up to max bytes and stops: a longer body
// is refused by its first max bytes (max is one more than allowed).
async function readCapped(stream, max) {
  const reader = stream.getReader();
  const chunks = [];
  let n = 0;
  while (n < max) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    n += value.length;
  }
  if (n >= max) reader.cancel().catch(() => {});
  const out = new Uint8Array(Math.min(n, max));
  let off = 0;
  for (const c of chunks) {
    const take = Math.min(c.length, out.length - off);
    out.set(c.subarray(0, take), off);
    off += take;
  }
  return out;
}
