// npm run bench: the cost of record() on the app's thread, and the events/s
// one Node process ships to a local `pulse serve` (built from this repo
// unless PULSE_BIN is set). Needs `npm run build` and the ClickHouse server
// of scripts/services.sh.
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

import { createPulseClient } from "../dist/index.js";

const here = dirname(fileURLToPath(import.meta.url));
const metric = { endpoint: "/api/clients/[id]", method: "GET", statusCode: 200, responseTimeMs: 12.5, userId: "3f2b6c1e-8d4a-4b7e-9c2d-1a2b3c4d5e6f" };
const logger = () => {};

async function recordOverhead() {
  // Nothing listens there: events stay queued, the full buffer drops its oldest.
  const { freePort } = await import("../test/pulse.mjs");
  const c = createPulseClient({ url: `http://127.0.0.1:${await freePort()}`, token: "t", service: "web", maxBufferSize: 1 << 16, flushIntervalMs: 3_600_000, logger });
  const rounds = [];
  for (let r = 0; r < 5; r++) {
    const n = 1_000_000;
    globalThis.gc?.();
    const heap = process.memoryUsage().heapUsed;
    const start = process.hrtime.bigint();
    for (let i = 0; i < n; i++) c.record(metric);
    const ns = Number(process.hrtime.bigint() - start) / n;
    rounds.push({ ns, heapMB: (process.memoryUsage().heapUsed - heap) / 2 ** 20 });
  }
  await c.shutdown(100);
  rounds.sort((a, b) => a.ns - b.ns);
  return rounds[2];
}

async function ship() {
  const { Pulse } = await import("../test/pulse.mjs");
  const cleanups = [];
  const pulse = await Pulse.create({ after: (f) => cleanups.push(f) });
  try {
    const c = createPulseClient({ url: pulse.url, token: (await import("../test/pulse.mjs")).ingestToken, service: "web", maxBufferSize: 200_000, concurrency: 4, logger });
    const total = 300_000;
    const start = performance.now();
    for (let i = 0; i < total; i++) {
      c.record(metric);
      if (i % 1000 === 999) {
        // Yield as a server does between requests; wait when far ahead of the network.
        await new Promise((r) => setImmediate(r));
        while (c.stats().buffered > 100_000) await new Promise((r) => setTimeout(r, 1));
      }
    }
    await c.flush();
    const secs = (performance.now() - start) / 1000;
    const s = await c.shutdown(10_000);
    if (s.sent !== total) throw new Error(`sent ${s.sent}; want ${total}`);
    return { total, secs, perSec: total / secs, retried: s.retried };
  } finally {
    for (const f of cleanups) await f();
  }
}

let tmp;
if (!process.env.PULSE_BIN) {
  tmp = mkdtempSync(join(tmpdir(), "pulse-client-bench-"));
  process.env.PULSE_BIN = join(tmp, "pulse");
  execFileSync("go", ["build", "-o", process.env.PULSE_BIN, "./cmd/pulse"], { cwd: resolve(here, "../../.."), stdio: "inherit" });
}
try {
  const r = await recordOverhead();
  console.log(`record(): ${r.ns.toFixed(0)} ns/op (median of 5 x 1,000,000), heap growth ${r.heapMB.toFixed(1)} MB per 1,000,000 with the 65,536-event buffer full (node ${process.version})`);
  const s = await ship();
  console.log(`shipped ${s.total} events to a local pulse serve in ${s.secs.toFixed(2)} s: ${Math.round(s.perSec)} events/s (retried ${s.retried})`);
} finally {
  if (tmp) rmSync(tmp, { recursive: true, force: true });
}
