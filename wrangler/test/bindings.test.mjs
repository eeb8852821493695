// The worker's JavaScript with the real Go module (see batching.test.mjs):
// what it says at start and at the first hit about its bindings and its
// visitor-id salts.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { EdgePixel } from "../src/edgepixel.js";
import { logged as loggedLines } from "../src/testlog.mjs";

const module = new WebAssembly.Module(readFileSync(process.env.EDGEPIXEL_WORKER_WASM));

// logged runs f and returns what it logged, console.error and the
// module's stderr, as one text.
const logged = async (f) => (await loggedLines(f)).join("\n");

const env = { ingest_url: "https://agg.test/ingest", aggregator_secret: "s", batch_wait_ms: "0" };
const hit = new Request("https://px.test/p.gif?site=js", { headers: { "cf-connecting-ip": "203.0.113.7" } });
const opts = { fetch: async () => new Response("", { status: 200 }) };

test("no salt at all is said at the first hit, with what to configure", async () => {
  const log = await logged(async () => {
    const ep = new EdgePixel(module, env, opts);
    await ep.serve(hit.clone());
  });
  assert.match(log, /no visitor salt for \d{4}-\d\d-\d\d: .*counted as no_salt; bind .* as SALTS .* visitor_salt_0/);
});

test("a SALTS binding that is not a KV namespace is said, not failed on", async () => {
  const log = await logged(async () => {
    const ep = new EdgePixel(module, { ...env, SALTS: { get: (id) => id } }, opts); // a Durable Object namespace, say
    assert.equal((await ep.serve(hit.clone())).status, 200);
  });
  assert.match(log, /SALTS is bound, but not to a KV namespace/);
  assert.doesNotMatch(log, /is not a function/);
});

test("a spool bound under another name is said at start, with the name meant", async () => {
  const log = await logged(async () => {
    const ep = new EdgePixel(module, { ...env, SPOL: { idFromName: () => ({}) } }, opts);
    await ep.serve(hit.clone());
  });
  assert.match(log, /no SPOOL binding .*lost, counted as delivery_failed/);
  assert.match(log, /SPOL.*did you mean SPOOL\?/);
});

test("a bound spool is not warned of", async () => {
  const log = await logged(async () => {
    new EdgePixel(module, { ...env, SPOOL: { idFromName: () => ({}) } }, opts);
  });
  assert.doesNotMatch(log, /SPOOL/);
});
