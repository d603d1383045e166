// Delivery against a real `pulse serve`: what is recorded is stored exactly
// once through restarts, 429 storms, 503 periods, slow answers and outages.
import assert from "node:assert/strict";
import { test } from "node:test";

import { createPulseClient } from "../dist/index.js";
import { withPulse } from "../dist/next.js";
import { Pulse, freePort, ingestToken, logs, metric, poll } from "./pulse.mjs";
import { startProxy } from "./proxy.mjs";

function client(url, o = {}) {
  const logger = logs();
  const c = createPulseClient({ url, token: ingestToken, service: "web", minBackoffMs: 20, maxBackoffMs: 500, logger, ...o });
  return { c, logger };
}

test("a Next.js handler driven with 20,000 requests while Pulse is restarted: 20,000 rows, none twice", async (t) => {
  const pulse = await Pulse.create(t);
  const { c, logger } = client(pulse.url);
  const GET = withPulse(async (req) => new Response(JSON.stringify({ ok: new URL(req.url).pathname }), { status: 200 }), {
    route: "/api/clients/[id]",
    client: c,
  });
  const total = 20_000;
  let restarted;
  let slowest = 0;
  for (let i = 0; i < total; i++) {
    const start = performance.now();
    const res = await GET(new Request(`http://app.local/api/clients/${i}`));
    slowest = Math.max(slowest, performance.now() - start);
    assert.equal(res.status, 200);
    if (i === 5_000) restarted = pulse.stop("SIGKILL").then(() => new Promise((r) => setTimeout(r, 300))).then(() => pulse.start());
    if (i % 200 === 0) await new Promise((r) => setImmediate(r)); // let the client's I/O run, as an app's would
  }
  await restarted;
  const s = await c.shutdown(30_000);
  assert.equal(s.recorded, total);
  assert.equal(s.sent, total, JSON.stringify(s));
  assert.equal(s.dropped + s.failed, 0);
  assert.equal(await pulse.storedSettles(total), total);
  assert.ok(s.retried > 0, "the restart should have made the client retry");
  assert.ok(logger.at("warn").length >= 1, "the outage is reported");
  t.diagnostic(`retried ${s.retried}, slowest wrapped request ${slowest.toFixed(2)} ms`);
});

test("a 429 storm: everything stored once, retries counted", async (t) => {
  const pulse = await Pulse.create(t, { ingestLimit: "4/s" });
  const { c } = client(pulse.url, { batchSize: 100, concurrency: 4 });
  const total = 3_000;
  for (let i = 0; i < total; i++) c.record(metric(i));
  const s = await c.shutdown(30_000);
  assert.equal(s.sent, total, JSON.stringify(s));
  assert.ok(s.retried >= 5, `retried ${s.retried}; want a storm of 429s`);
  assert.match(String(c.stats().lastError ?? "none"), /none|429/);
  assert.equal(await pulse.storedSettles(total), total);
});

test("a 503 period with Retry-After: the client waits as asked, then delivers once", async (t) => {
  const pulse = await Pulse.create(t);
  const proxy = await startProxy(t, pulse.url);
  proxy.unavailableUntil = Date.now() + 2_500;
  const { c } = client(proxy.url, { batchSize: 250 });
  const total = 2_000;
  for (let i = 0; i < total; i++) c.record(metric(i));
  const s = await c.shutdown(30_000);
  assert.equal(s.sent, total, JSON.stringify(s));
  assert.ok(proxy.answered503 > 0);
  // Retry-After: 1 means no attempt of a batch follows the previous one sooner than 1 s.
  for (const [key, times] of proxy.seen) {
    for (let i = 1; i < times.length; i++) {
      if (times[i - 1] < proxy.unavailableUntil) assert.ok(times[i] - times[i - 1] >= 950, `${key}: retried after ${times[i] - times[i - 1]} ms`);
    }
  }
  assert.equal(await pulse.storedSettles(total), total);
});

test("a slow server whose answers come after the client's timeout: retries with the same key store once", async (t) => {
  const pulse = await Pulse.create(t);
  const proxy = await startProxy(t, pulse.url);
  let n = 0;
  proxy.delayMs = () => (n++ % 3 === 0 ? 600 : 50); // every third request outlives the timeout
  const { c } = client(proxy.url, { batchSize: 200, requestTimeoutMs: 300 });
  const total = 3_000;
  for (let i = 0; i < total; i++) c.record(metric(i));
  const s = await c.shutdown(30_000);
  assert.equal(s.sent, total, JSON.stringify(s));
  assert.ok(s.retried > 0, "timeouts should have been retried");
  const repeated = [...proxy.seen.values()].filter((v) => v.length > 1).length;
  assert.ok(repeated > 0, "some batch should have been sent twice with its key");
  assert.equal(await pulse.storedSettles(total), total);
});

test("Pulse down: record stays fast, the buffer bound holds, and the buffered events arrive when it returns", async (t) => {
  const pulse = await Pulse.create(t);
  const bound = 1_000;
  const { c, logger } = client(pulse.url, { batchSize: 100, maxBufferSize: bound, flushIntervalMs: 50 });
  await pulse.stop("SIGKILL");
  let worst = 0;
  const total = 5_000;
  for (let i = 0; i < total; i++) {
    const start = performance.now();
    c.record(metric(i));
    worst = Math.max(worst, performance.now() - start);
    const st = c.stats();
    assert.ok(st.buffered + st.inFlight <= bound, `held ${st.buffered + st.inFlight} > ${bound}`);
    if (i % 500 === 0) await new Promise((r) => setTimeout(r, 20));
  }
  const down = c.stats();
  assert.equal(down.droppedOverflow, total - bound, JSON.stringify(down));
  assert.equal(down.sent, 0);
  assert.match(down.lastError ?? "", /request to Pulse failed/);
  // One warning for the outage, one for the overflow; not one per event or per retry.
  assert.ok(logger.at("warn").length <= 3, JSON.stringify(logger.at("warn")));
  assert.ok(worst < 50, `slowest record() took ${worst} ms`);
  await pulse.start();
  const s = await c.shutdown(30_000);
  assert.equal(s.sent, bound, JSON.stringify(s));
  assert.equal(s.recorded, s.sent + s.dropped + s.failed);
  assert.equal(await pulse.storedSettles(bound), bound);
  assert.ok(logger.at("info").some((l) => /again/.test(l.message)), "recovery is reported");
});

test("shutdown() delivers what was buffered, and flush() waits for delivery", async (t) => {
  const pulse = await Pulse.create(t);
  const { c } = client(pulse.url, { batchSize: 500, flushIntervalMs: 60_000 });
  for (let i = 0; i < 1234; i++) c.record(metric(i));
  await poll("two full batches sent", 10_000, () => c.stats().sent === 1000);
  assert.equal(c.stats().buffered, 234, "a partial batch waits for the timer");
  for (let i = 0; i < 10; i++) c.record(metric(i));
  await c.flush();
  assert.equal(c.stats().sent, 1244);
  for (let i = 0; i < 66; i++) c.record(metric(i));
  const s = await c.shutdown(10_000);
  assert.equal(s.sent, 1310);
  assert.equal(s.buffered + s.inFlight, 0);
  c.record(metric(0));
  assert.equal(c.stats().dropped, 1, "a record after shutdown is dropped and counted");
  assert.equal(await pulse.storedSettles(1310), 1310);
});

test("shutdown() with Pulse unreachable returns by its deadline and counts what was not confirmed", async (t) => {
  const { c, logger } = client(`http://127.0.0.1:${await freePort()}`, { batchSize: 50 });
  for (let i = 0; i < 120; i++) c.record(metric(i));
  const start = Date.now();
  const s = await c.shutdown(500);
  assert.ok(Date.now() - start < 2_000, `shutdown took ${Date.now() - start} ms`);
  assert.equal(s.failed, 120, JSON.stringify(s));
  assert.equal(s.buffered + s.inFlight, 0);
  assert.equal(logger.at("warn").length, 1, "the outage is reported once");
  assert.match(logger.at("warn")[0].message, /ECONNREFUSED/, "with its cause");
});
