// node --test: EdgePixel.post's delivery over several aggregators, with a
// fake fetch (no Go module needed: post uses only fetch and sleep).
import { test } from "node:test";
import assert from "node:assert/strict";
import { EdgePixel } from "./edgepixel.js";

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
