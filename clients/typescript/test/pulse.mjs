// Test helpers: a real `pulse serve` on free ports with a fresh ClickHouse
// database, and a client that records what it logs.
import { execFile, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { randomBytes } from "node:crypto";

const repo = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
export const ingestToken = "ingest-" + randomBytes(12).toString("hex");
export const adminToken = "admin-" + randomBytes(12).toString("hex");

function clickhouseDSN() {
  let dsn = process.env.PULSE_TEST_CLICKHOUSE_DSN;
  if (!dsn) {
    try {
      const env = readFileSync(join(repo, ".work/services.env"), "utf8");
      dsn = /PULSE_TEST_CLICKHOUSE_DSN='([^']*)'/.exec(env)?.[1];
    } catch {
      // no services.env: scripts/services.sh has not run
    }
  }
  if (!dsn) throw new Error("no ClickHouse: run scripts/services.sh (or make test), or set PULSE_TEST_CLICKHOUSE_DSN");
  const u = new URL(dsn);
  u.pathname = "";
  return u;
}

export async function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** poll calls cond until it returns a truthy value, or fails after timeoutMs. */
export async function poll(what, timeoutMs, cond) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      last = await cond();
      if (last) return last;
    } catch (err) {
      if (err.fatal) throw err;
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms (last: ${last})`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Pulse is a `pulse serve` child process on its own data dir, ports and
 * ClickHouse database; stop() and start() keep all three.
 */
export class Pulse {
  static async create(t, { ingestLimit = "1000000/s", args = [] } = {}) {
    const p = new Pulse();
    p.dir = await mkdtemp(join(tmpdir(), "pulse-ts-"));
    p.db = "t_ts_" + randomBytes(6).toString("hex");
    p.ch = clickhouseDSN();
    p.httpPort = await freePort();
    p.natsPort = await freePort();
    p.url = `http://127.0.0.1:${p.httpPort}`;
    p.ingestLimit = ingestLimit;
    p.args = args;
    p.stderr = "";
    t.after(() => p.destroy());
    await p.start();
    return p;
  }

  async start() {
    const args = [
      "serve",
      "--clickhouse-dsn", `${this.ch.toString().replace(/\/$/, "")}/${this.db}`,
      "--data-dir", this.dir,
      "--http-addr", `127.0.0.1:${this.httpPort}`,
      "--nats-listen", `127.0.0.1:${this.natsPort}`,
      "--batch-delay", "50ms",
      "--drain-grace", "0s",
      "--ack-wait", "5s", // a killed aggregator's unacked messages come back soon
      ...this.args,
    ];
    this.proc = spawn(process.env.PULSE_BIN, args, {
      env: {
        ...process.env,
        PULSE_INGEST_TOKENS: `app:${ingestToken}`,
        PULSE_ADMIN_TOKENS: `admin:${adminToken}`,
        PULSE_INGEST_RATE_LIMIT: this.ingestLimit,
        PULSE_ADMIN_RATE_LIMIT: "100000/min",
        PULSE_LOG_FORMAT: "json",
      },
      stdio: ["ignore", "ignore", "pipe"],
    });
    this.exited = new Promise((resolve) => this.proc.once("exit", resolve));
    this.proc.stderr.on("data", (d) => {
      this.stderr = (this.stderr + d).slice(-20000);
    });
    await poll("pulse serving", 60_000, async () => {
      if (this.proc.exitCode !== null) throw Object.assign(new Error(`pulse exited: ${this.stderr}`), { fatal: true });
      return (await fetch(`${this.url}/readyz`)).status === 200;
    });
  }

  /** stop kills the process (SIGKILL by default) and waits for it to exit. */
  async stop(signal = "SIGKILL") {
    if (this.proc && this.proc.exitCode === null && this.proc.signalCode === null) {
      this.proc.kill(signal);
      await this.exited;
    }
  }

  /** stored returns the rows in the database's requests table. */
  async stored() {
    const res = await fetch(`${this.url}/api/admin/system/stats`, { headers: { authorization: `Bearer ${adminToken}` } });
    if (res.status !== 200) throw new Error(`stats: ${res.status} ${await res.text()}`);
    return (await res.json()).requests_stored;
  }

  /** storedSettles waits until the stored rows reach want and stay there for a moment; it returns the count. */
  async storedSettles(want, timeoutMs = 30_000) {
    await poll(`${want} rows stored`, timeoutMs, async () => (await this.stored()) >= want);
    await new Promise((r) => setTimeout(r, 400)); // several aggregator batch delays: a late duplicate would land
    return this.stored();
  }

  async destroy() {
    await this.stop();
    const host = this.ch.hostname;
    const port = this.ch.port || "9000";
    await new Promise((resolve) =>
      execFile("clickhouse-client", ["--host", host, "--port", port, "-q", `DROP DATABASE IF EXISTS ${this.db}`], () => resolve()),
    );
    await rm(this.dir, { recursive: true, force: true });
  }
}

/** logs returns a logger that keeps what it is told. */
export function logs() {
  const lines = [];
  const logger = (level, message, details) => lines.push({ level, message, details });
  logger.lines = lines;
  logger.at = (...levels) => lines.filter((l) => levels.includes(l.level));
  return logger;
}

export function metric(i, extra = {}) {
  return { endpoint: "/api/clients/[id]", method: "GET", statusCode: 200, responseTimeMs: (i % 500) + 0.5, ...extra };
}
