// Bad input and the integrations, against a real `pulse serve`.
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { test } from "node:test";

import { createPulseClient, limits, toWire } from "../dist/index.js";
import { withPulse, withPulseMiddleware } from "../dist/next.js";
import { withPulseHttp } from "../dist/node.js";
import { Pulse, ingestToken, logs, metric } from "./pulse.mjs";

const user = "3f2b6c1e-8d4a-4b7e-9c2d-1a2b3c4d5e6f";

test("metrics Pulse would refuse are dropped with a reason; the valid ones of the batch are stored", async (t) => {
  const pulse = await Pulse.create(t);
  const logger = logs();
  const c = createPulseClient({ url: pulse.url, token: ingestToken, service: "web", logger });
  const bad = [
    metric(0, { endpoint: "/" + "x".repeat(limits.maxEndpointBytes) }),
    metric(0, { endpoint: "" }),
    metric(0, { endpoint: "/a\u0001b" }),
    metric(0, { statusCode: 99 }),
    metric(0, { statusCode: 200.5 }),
    metric(0, { responseTimeMs: -1 }),
    metric(0, { responseTimeMs: NaN }),
    metric(0, { userId: "not-a-uuid" }),
    metric(0, { userId: "00000000-0000-0000-0000-000000000000" }),
    metric(0, { errorMessage: "é".repeat(1025) }),
    metric(0, { method: "FETCH" }),
    metric(0, { service: "Bad Service" }),
    metric(0, { requestId: "has space" }),
    metric(0, { timestamp: new Date(Date.now() + 10 * 60_000) }),
    metric(0, { timestamp: "2026-01-01 10:00:00" }),
    metric(0, { timestamp: Date.now() - 40 * 24 * 3600_000 }),
    null,
  ];
  const good = [
    metric(1, { endpoint: "/" + "é".repeat(255), userId: user, method: "post", errorMessage: "x".repeat(2048) }),
    metric(2, { timestamp: new Date().toISOString(), service: "Checkout", requestId: "req-1" }),
    metric(3, { timestamp: "2026-12-06T10:00:00.5+01:00", statusCode: 599 }),
  ];
  for (const m of [...bad, ...good]) c.record(m);
  const s = await c.shutdown(10_000);
  assert.equal(s.droppedInvalid, bad.length, JSON.stringify(s));
  assert.equal(s.sent, good.length);
  assert.equal(s.failed, 0, "no batch may be refused whole");
  assert.equal(await pulse.storedSettles(good.length), good.length);
  const reasons = logger.at("warn").map((l) => l.details?.reason);
  assert.ok(reasons.some((r) => /endpoint: must be at most 512 bytes/.test(r)), JSON.stringify(reasons));
  assert.ok(reasons.some((r) => /status_code/.test(r)));
});

test("toWire mirrors Pulse's rules at their edges", () => {
  const now = Date.parse("2026-06-20T14:03:00Z");
  const f = (m) => toWire({ endpoint: "/x", responseTimeMs: 1, statusCode: 200, ...m }, "web", now, limits.defaultRetentionMs);
  assert.equal(f({ endpoint: "/" + "x".repeat(511) }).reason, undefined);
  assert.match(f({ endpoint: "/" + "x".repeat(512) }).reason, /endpoint/);
  assert.equal(f({ responseTimeMs: limits.maxResponseTimeMs }).reason, undefined);
  assert.match(f({ responseTimeMs: limits.maxResponseTimeMs + 1 }).reason, /response_time_ms/);
  assert.equal(f({ statusCode: 100 }).reason, undefined);
  assert.match(f({ statusCode: 600 }).reason, /status_code/);
  assert.equal(f({ service: "a".repeat(64) }).reason, undefined);
  assert.match(f({ service: "a".repeat(65) }).reason, /service/);
  assert.match(f({ service: "-web" }).reason, /service/);
  assert.equal(f({ requestId: "r".repeat(128) }).reason, undefined);
  assert.match(f({ requestId: "r".repeat(129) }).reason, /request_id/);
  assert.equal(f({ timestamp: now + 5 * 60_000 }).reason, undefined);
  assert.match(f({ timestamp: now + 5 * 60_000 + 1 }).reason, /future/);
  assert.equal(f({ method: "patch" }).metric.method, "PATCH");
  assert.equal(f({}).metric.timestamp, "2026-06-20T14:03:00.000Z");
});

test("a wrong token: one clear error, counted as failed, not one per event", async (t) => {
  const pulse = await Pulse.create(t);
  const logger = logs();
  const c = createPulseClient({ url: pulse.url, token: "wrong-token-0123456789", service: "web", batchSize: 10, logger });
  for (let i = 0; i < 100; i++) c.record(metric(i));
  const s = await c.shutdown(10_000);
  assert.equal(s.failed, 100, JSON.stringify(s));
  assert.equal(s.sent, 0);
  assert.equal(s.retried, 0, "a 401 is not retried");
  const errors = logger.at("error");
  assert.equal(errors.length, 1, JSON.stringify(errors));
  assert.match(errors[0].message, /token \(401\)/);
  assert.doesNotMatch(JSON.stringify(logger.lines), /wrong-token/, "the token never appears in a log");
});

test("a wrong URL path: one clear error naming the URL to check", async (t) => {
  const pulse = await Pulse.create(t);
  const logger = logs();
  const c = createPulseClient({ url: pulse.url + "/wrong/path", token: ingestToken, service: "web", batchSize: 10, logger });
  for (let i = 0; i < 50; i++) c.record(metric(i));
  const s = await c.shutdown(10_000);
  assert.equal(s.failed, 50);
  assert.equal(logger.at("error").length, 1, JSON.stringify(logger.lines));
  assert.match(logger.at("error")[0].message, /check the client's url/);
});

test("invalid options throw at creation, never later", () => {
  assert.throws(() => createPulseClient({ url: "", token: "t", service: "web" }), /url/);
  assert.throws(() => createPulseClient({ url: "ftp://x", token: "t", service: "web" }), /http/);
  assert.throws(() => createPulseClient({ url: "http://x", token: "", service: "web" }), /token/);
  assert.throws(() => createPulseClient({ url: "http://x", token: "t", service: "no spaces" }), /service/);
  const c = createPulseClient({ url: "http://x", token: "t", service: "web", logger: () => { throw new Error("bad logger"); } });
  assert.equal(c.record(undefined), undefined, "record returns nothing and does not throw");
  assert.equal(c.stats().droppedInvalid, 1);
});

test("the integrations record duration, status, method, route and user", async (t) => {
  const pulse = await Pulse.create(t);
  const c = createPulseClient({ url: pulse.url, token: ingestToken, service: "web" });

  // App Router handler: a thrown error is recorded as a 500 and rethrown.
  const handler = withPulse(
    async (req) => {
      if (req.method === "DELETE") throw new Error("boom");
      return new Response("ok", { status: 201 });
    },
    { route: "/api/forms/[id]", client: c, userId: () => user },
  );
  assert.equal((await handler(new Request("http://app/api/forms/1", { method: "POST" }))).status, 201);
  await assert.rejects(handler(new Request("http://app/api/forms/1", { method: "DELETE" })), /boom/);

  // Middleware: records what it answers itself, not pass-throughs.
  const mw = withPulseMiddleware(
    (req) => (new URL(req.url).pathname === "/admin" ? new Response(null, { status: 307, headers: { location: "/login" } }) : new Response(null, { headers: { "x-middleware-next": "1" } })),
    { client: c },
  );
  await mw(new Request("http://app/admin"));
  await mw(new Request("http://app/home"));

  // Plain Node http.
  const server = createServer(withPulseHttp((req, res) => { res.statusCode = req.url === "/missing" ? 404 : 200; res.end("x"); }, { client: c, route: (req) => req.url }));
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  t.after(() => new Promise((r) => server.close(r)));
  const base = `http://127.0.0.1:${server.address().port}`;
  assert.equal((await fetch(base + "/ok")).status, 200);
  assert.equal((await fetch(base + "/missing")).status, 404);
  await new Promise((r) => setTimeout(r, 20));

  const s = await c.shutdown(10_000);
  assert.equal(s.sent, 5, JSON.stringify(s));
  assert.equal(await pulse.storedSettles(5), 5);
  const perf = await fetch(`${pulse.url}/api/admin/system/performance?timeframe=1h&service=web`, {
    headers: { authorization: `Bearer ${(await import("./pulse.mjs")).adminToken}` },
  }).then((r) => r.json());
  assert.equal(perf.summary.count, 5, JSON.stringify(perf.summary));
});
