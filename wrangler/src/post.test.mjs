// node --test: EdgePixel.post's delivery over several aggregators, with a
// fake fetch (no Go module needed: post uses only fetch and sleep).
import { test } from "node:test";
import assert from "node:assert/strict";
import { EdgePixel } from "./edgepixel.js";
import { logged } from "./testlog.mjs";

function fake(answers) {
  const calls = [];
  const self = {
    calls,
    sleep: async () => {},
    fetch: async (url) => {
      calls.push(url);
      const a = answers[url];
      if (a === "down") throw new TypeError("fetch failed");
      return new Response("", { status: a });
    },
  };
  return self;
}

const d = (url) => ({ url, headers: {}, body: new Uint8Array([1]), retry: true });

test("a dead or failing aggregator passes the batch to the next", async () => {
  for (const bad of ["down", 503, 429]) {
    const f = fake({ "http://a/ingest": bad, "http://b/ingest": 200 });
    f.nextURL = -1; // the first attempt starts at a
    assert.equal(await EdgePixel.prototype.post.call(f, d("http://a/ingest,http://b/ingest")), true);
    assert.deepEqual(f.calls, ["http://a/ingest", "http://b/ingest"], `a answered ${bad}`);
  }
});

test("a refusal for good is not passed on", async () => {
  const f = fake({ "http://a/ingest": 401, "http://b/ingest": 200 });
  f.nextURL = -1;
  assert.equal(await EdgePixel.prototype.post.call(f, d("http://a/ingest,http://b/ingest")), false);
  assert.deepEqual(f.calls, ["http://a/ingest"]);
});

test("attempts rotate the first aggregator", async () => {
  const f = fake({ "http://a/ingest": 200, "http://b/ingest": 200 });
  const firsts = [];
  for (let i = 0; i < 4; i++) {
    f.calls.length = 0;
    await EdgePixel.prototype.post.call(f, d("http://a/ingest, http://b/ingest"));
    firsts.push(f.calls[0]);
  }
  assert.deepEqual(firsts, ["http://a/ingest", "http://b/ingest", "http://a/ingest", "http://b/ingest"]);
});

test("all down: every attempt tries each, then it fails", async () => {
  const f = fake({ "http://a/ingest": "down", "http://b/ingest": 500 });
  assert.equal(await EdgePixel.prototype.post.call(f, d("http://a/ingest,http://b/ingest")), false);
  assert.equal(f.calls.length, 8); // 4 attempts x 2 aggregators
});

test("one URL works as before", async () => {
  const f = fake({ "http://a/ingest": 200 });
  assert.equal(await EdgePixel.prototype.post.call(f, d("http://a/ingest")), true);
  assert.deepEqual(f.calls, ["http://a/ingest"]);
});

test("a refusal is logged with the start of its answer and what to check", async () => {
  const answer = (status, body) => ({ sleep: async () => {}, fetch: async () => new Response(body, { status }) });
  const cases = [
    [401, "bad signature\n", {}, `POST http://a/ingest: 401 "bad signature"; check that the aggregator_secret secret is the aggregator's --secret`],
    [401, "", { fallback: true, headers: { Authorization: "Bearer x" } }, `POST http://a/ingest: 401; check that the log_token secret is the aggregator's --log-token`],
    [404, "404 page not found", {}, `POST http://a/ingest: 404 "404 page not found"; ingest_url must be the aggregator's /ingest`],
    [400, "x".repeat(1000), {}, `POST http://a/ingest: 400 "${"x".repeat(200)}"`],
  ];
  for (const [status, body, extra, want] of cases) {
    const lines = await logged(() => EdgePixel.prototype.post.call(answer(status, body), { ...d("http://a/ingest"), ...extra }));
    assert.ok(lines.some((l) => l.endsWith(want)), `${status}: logged ${JSON.stringify(lines)}, want one ending ${want}`);
  }
});
