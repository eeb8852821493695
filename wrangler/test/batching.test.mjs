// The worker's JavaScript with the real Go module, under Node's test
// runner: batching across requests and what each request's waitUntil
// waits for. tests/workers_test.go (TestWorkerJS) runs it with
// EDGEPIXEL_WORKER_WASM set to each build of the module; the same code
// runs in workerd under concurrent load in TestWorkers.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { EdgePixel } from "../src/edgepixel.js";

const module = new WebAssembly.Module(readFileSync(process.env.EDGEPIXEL_WORKER_WASM));

// fakeFetch records each POST and answers it when the test says.
function fakeFetch() {
  const calls = [];
  const fetch = (url, init) => new Promise((resolve) => calls.push({ url, init, answer: (status) => resolve(new Response("", { status })) }));
  return { calls, fetch };
}

// fakeTimers holds the requests' sleeps (each request's wait for its
// batch) until the test fires them; the clock stands still, so the Go
// side never finds a batch due by age.
function fakeTimers() {
  const pending = [];
  return {
    pending,
    sleep: () => new Promise((resolve) => pending.push(resolve)),
    fire() { pending.splice(0).forEach((f) => f()); },
    clock: () => 1767225600000, // 2026-01-01
  };
}

const tick = (ms) => new Promise((r) => setTimeout(r, ms));
async function until(cond, what) {
  for (let i = 0; i < 500 && !cond(); i++) await tick(10);
  assert.ok(cond(), what);
}

const env = (wait) => ({ ingest_url: "https://agg.test/ingest", aggregator_secret: "s", batch_wait_ms: String(wait) });
const pixel = (i) => new Request(`https://px.test/p.gif?site=js&url=https%3A%2F%2Fex.test%2F${i}`);

test("requests share a batch; the request that starts its delivery waits for all of it", async () => {
  const f = fakeFetch();
  const t = fakeTimers();
  const ep = new EdgePixel(module, env(100), { fetch: f.fetch, ...t });
  const waits = [];
  const ctx = { waitUntil: (p) => waits.push(p) };
  for (let i = 0; i < 3; i++) assert.equal((await ep.serve(pixel(i), ctx)).status, 200);
  assert.equal(waits.length, 3, "every request waits for its batch");
  assert.equal(t.pending.length, 3, "each request waits on its own timer");
  await tick(20);
  assert.equal(f.calls.length, 0, "delivered before the batch's wait");
  const settled = waits.map(() => false);
  waits.forEach((p, i) => p.then(() => { settled[i] = true; }));
  t.fire();
  await until(() => f.calls.length === 1, "one POST for the batch");
  await tick(50);
  assert.equal(f.calls.length, 1, "the batch was delivered more than once");
  assert.equal(f.calls[0].url, "https://agg.test/ingest");
  assert.deepEqual(settled, [false, true, true], "the first request delivers; the others' waits end at their timers");
  // Refused (no retry): the same events go as NDJSON lines, readable here.
  f.calls[0].answer(400);
  await until(() => f.calls.length === 2, "the fallback POST");
  assert.equal(f.calls[1].url, "https://agg.test/ingest/ndjson");
  const lines = new TextDecoder().decode(f.calls[1].init.body).trim().split("\n");
  assert.equal(lines.filter((l) => l.includes('"event_id"')).length, 3, "the three requests' events in one batch");
  assert.equal(settled[0], false, "the delivering request's waitUntil ended before its delivery");
  f.calls[1].answer(200);
  await Promise.all(waits);
  // The batch ended: the next request opens another.
  const more = [];
  await ep.serve(pixel(9), { waitUntil: (p) => more.push(p) });
  t.fire();
  await until(() => f.calls.length === 3, "the next batch's POST");
  f.calls[2].answer(200);
  await Promise.all(more);
});

test("a full batch is delivered at once by the request that filled it", async () => {
  const f = fakeFetch();
  const t = fakeTimers();
  const ep = new EdgePixel(module, env(5000), { fetch: f.fetch, ...t });
  const waits = [];
  const body = JSON.stringify(Array.from({ length: 100 }, (_, i) => ({ site: "js", name: "e" + i })));
  for (let i = 0; i < 5; i++) {
    const r = await ep.serve(new Request("https://px.test/e", { method: "POST", body }), { waitUntil: (p) => waits.push(p) });
    assert.equal(r.status, 204);
  }
  // The fifth request filled the batch: it started the delivery itself,
  // within its own serve, before any timer fired (workerd runs a
  // promise's continuations only in the request that made it).
  assert.equal(f.calls.length, 1, "the full batch's POST, its wait never fired");
  let last = false;
  waits[4].then(() => { last = true; });
  t.fire(); // the first four requests' timers find the batch started
  await Promise.all(waits.slice(0, 4));
  await tick(20);
  assert.equal(last, false, "the filling request's waitUntil ended before its delivery");
  assert.equal(f.calls.length, 1, "the batch was delivered twice");
  f.calls[0].answer(200);
  await Promise.all(waits);
});

test("batch_wait_ms=0: each request's events are their own batch", async () => {
  const f = fakeFetch();
  const ep = new EdgePixel(module, env(0), { fetch: f.fetch });
  const waits = [];
  for (let i = 0; i < 2; i++) await ep.serve(pixel(i), { waitUntil: (p) => waits.push(p) });
  await until(() => f.calls.length === 2, "two POSTs");
  for (const c of f.calls) c.answer(200);
  await Promise.all(waits);
});
