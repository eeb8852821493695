// edgepixel on Cloudflare Workers: wrangler.toml's main module. See
// edgepixel.js for what happens to a request, wrangler/README.md for
// deploying.
import module from "../build/edgepixel.wasm";
import { EdgePixel } from "./edgepixel.js";

// The Durable Object that keeps what the aggregators did not take in
// time (wrangler.toml [[durable_objects]]; spool.js).
export { Spool } from "./spool.js";

// One per isolate, made inside the first fetch: workerd allows no random
// values at global scope, and the Go runtime draws some as it starts.
let edge;

export default {
  async fetch(request, env, ctx) {
    edge ??= new EdgePixel(module, env);
    try {
      return await edge.serve(request, ctx);
    } catch (e) {
      // A trap or exit leaves the module unusable: the next request
      // starts a fresh one. Deliveries of the old one that had not ended
      // are lost, as when an isolate is evicted.
      edge = undefined;
      console.error("edgepixel: the wasm module failed:", e);
      return new Response("internal error\n", { status: 500 });
    }
  },
};
