// The spool: a Durable Object (wrangler.toml [[durable_objects]], bound
// as SPOOL) that keeps the batches the aggregators did not take in time
// and delivers them when they are back (wrangler/worker's spool.go says
// what goes in and why). One object per data center ("colo:" + its
// code), near the isolates that use it.
//
// put stores a batch on disk before it answers: Durable Object storage
// holds an answer back until the writes before it are durable, so the
// worker counts a batch as saved only once it is. alarm() delivers the
// stored batches oldest first, each signed afresh by the Go module,
// deleting each once an aggregator acknowledged it; while they fail it
// waits spool_retry_ms, doubling to spool_retry_max_ms. A batch past
// spool_max_age_s, one that does not fit in spool_max_bytes, and one
// the aggregator refuses for good (400, 413) is replaced by the records
// that count its events lost (delivery_failed), delivered the same way.

import { DurableObject } from "cloudflare:workers";
import module from "../build/edgepixel.wasm";
import { EdgePixel } from "./edgepixel.js";

// Storage keys: META the bookkeeping; HEAD + seq an item's header
// { t: when stored (ms), size, parts, lost: whether it counts a loss };
// BODY + seq + "/" + part its bytes in parts of at most PART bytes (a
// value may hold at most 128 KiB in a key-value backed object, 2 MB in
// a SQLite-backed one).
const META = "meta";
const HEAD = "h/";
const BODY = "b/";
const PART = 120 << 10;
// An alarm run delivers for at most this long, then continues in a new
// one (an alarm handler's wall time is limited).
const ROUND_MS = 20000;
// How long one POST of a spooled batch may take (all aggregators listed).
const POST_MS = 10000;

const seqKey = (n) => String(n).padStart(16, "0");

export class Spool extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    this.edge = null;
    ctx.blockConcurrencyWhile(async () => {
      this.meta = (await ctx.storage.get(META)) ?? { next: 0, bytes: 0, items: 0, fails: 0 };
    });
  }

  // go returns the Go module, made at first use (not in the constructor:
  // an object may be made only to be asked nothing).
  go() {
    if (!this.edge) {
      this.edge = new EdgePixel(module, this.env);
      this.cfg = this.edge.spoolConfig();
    }
    return this.edge;
  }

  // put stores batch (bytes a worker's Go side handed over) and answers
  // once it is durable: { stored: true }, or { stored: false, lost: n }
  // when it did not fit and its n events were counted lost instead.
  async put(batch) {
    this.go();
    batch = new Uint8Array(batch);
    if (this.meta.bytes + batch.length > this.cfg.maxBytes) {
      const lost = await this.lose(batch, `the spool holds ${this.meta.bytes} bytes, at most ${this.cfg.maxBytes} (spool_max_bytes)`);
      return { stored: false, lost };
    }
    await this.store([batch], false);
    return { stored: true };
  }

  // store writes items (bytes each; lost: they count a loss) and deletes
  // the item gone ({ seq, h }, or none) in one commit, and sees that an
  // alarm will deliver what it holds.
  async store(items, lost, gone) {
    const entries = {};
    for (const bytes of items) {
      const seq = seqKey(this.meta.next++);
      const parts = Math.max(1, Math.ceil(bytes.length / PART));
      for (let i = 0; i < parts; i++) entries[BODY + seq + "/" + i] = bytes.slice(i * PART, (i + 1) * PART);
      entries[HEAD + seq] = { t: Date.now(), size: bytes.length, parts, lost };
      this.meta.bytes += bytes.length;
      this.meta.items++;
    }
    const del = gone ? this.forget(gone.seq, gone.h) : [];
    entries[META] = { ...this.meta };
    // Writes issued with no await between them are committed together:
    // a batch is never both gone and not yet replaced by its loss.
    const writes = [this.ctx.storage.put(entries)];
    if (del.length) writes.push(this.ctx.storage.delete(del));
    try {
      await Promise.all(writes);
    } catch (e) {
      this.meta = (await this.ctx.storage.get(META)) ?? this.meta;
      throw e;
    }
    if (this.meta.items > 0 && (await this.ctx.storage.getAlarm()) == null) {
      await this.ctx.storage.setAlarm(Date.now() + this.wait());
    }
  }

  // forget takes item seq out of the bookkeeping and answers its keys.
  forget(seq, h) {
    const keys = [HEAD + seq];
    for (let i = 0; i < h.parts; i++) keys.push(BODY + seq + "/" + i);
    this.meta.bytes -= h.size;
    this.meta.items--;
    return keys;
  }

  // remove deletes item seq.
  async remove(seq, h) {
    await this.store([], false, { seq, h });
  }

  // lose stores the records that count batch's events lost in place of
  // item gone (if any), and answers how many events it held.
  async lose(batch, why, gone) {
    const l = this.go().spoolLost(batch);
    if (!l) {
      console.error(`edgepixel: spool: a batch that does not decode was dropped (${why})`);
      if (gone) await this.remove(gone.seq, gone.h);
      return 0;
    }
    await this.store(l.records, true, gone);
    console.error(`edgepixel: spool: ${l.events} events counted lost (delivery_failed): ${why}`);
    return l.events;
  }

  // wait is how long to wait after the failed rounds so far.
  wait() {
    const { retryMs, retryMaxMs } = this.cfg;
    return Math.min(retryMaxMs, retryMs * 2 ** Math.min(this.meta.fails, 30));
  }

  async alarm() {
    const edge = this.go();
    const start = Date.now();
    while (Date.now() - start < ROUND_MS) {
      const heads = await this.ctx.storage.list({ prefix: HEAD, limit: 16 });
      if (heads.size === 0) {
        this.meta.fails = 0;
        await this.ctx.storage.put(META, { ...this.meta });
        return;
      }
      for (const [key, h] of heads) {
        const seq = key.slice(HEAD.length);
        const keys = [];
        for (let i = 0; i < h.parts; i++) keys.push(BODY + seq + "/" + i);
        const parts = await this.ctx.storage.get(keys);
        const bytes = new Uint8Array(h.size);
        let off = 0;
        for (const k of keys) {
          const p = parts.get(k);
          bytes.set(p, off);
          off += p.length;
        }
        const old = Date.now() - h.t > this.cfg.maxAgeMs;
        if (old && !h.lost) {
          await this.lose(bytes, `held longer than ${this.cfg.maxAgeMs / 1000} s (spool_max_age_s)`, { seq, h });
          continue;
        }
        if (old) {
          console.error("edgepixel: spool: a loss count older than spool_max_age_s was dropped: the aggregators never took it");
          await this.remove(seq, h);
          continue;
        }
        const d = edge.spoolSend(bytes);
        if (!d) {
          await this.remove(seq, h);
          continue;
        }
        if (!d.hold && (await edge.post(d, Date.now() + POST_MS))) {
          this.meta.fails = 0;
          await this.remove(seq, h);
          continue;
        }
        if ((d.refused === 400 || d.refused === 413) && !h.lost) {
          await this.lose(bytes, `the aggregator refused the batch (${d.refused})`, { seq, h });
          continue;
        }
        // Not taken: try again later, oldest first.
        this.meta.fails++;
        await this.ctx.storage.put(META, { ...this.meta });
        await this.ctx.storage.setAlarm(Date.now() + this.wait());
        console.error(`edgepixel: spool: ${this.meta.items} batches (${this.meta.bytes} bytes) wait for ${d.hold ? "an ingest_url" : "the aggregators"}; next try in ${this.wait()} ms`);
        return;
      }
    }
    await this.ctx.storage.setAlarm(Date.now());
  }
}
