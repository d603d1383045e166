import { randomUUID } from "node:crypto";
import { constants, gzip } from "node:zlib";

import { limits, toWire, validServiceName, type Metric, type WireMetric } from "./validate.js";

/** The ingest route, appended to a `url` that names only Pulse's origin. */
export const ingestPath = "/api/admin/system/metrics";

export type LogLevel = "debug" | "info" | "warn" | "error";

/**
 * Logger receives what the client has to say. Errors are reported once per
 * cause (a wrong token, Pulse unreachable, a refused batch), not per event;
 * `debug` lines are per batch. It must not throw.
 */
export type Logger = (level: LogLevel, message: string, details?: Record<string, unknown>) => void;

export interface PulseClientOptions {
  /** Pulse's base URL (`http://pulse:7480`) or the full ingest URL. */
  url: string;
  /** An ingest-scoped bearer token. */
  token: string;
  /** This service's name (a-z, 0-9, '_' or '-'); metrics may override it. */
  service: string;
  /** Events per request; default 500, at most 10,000 (Pulse's limit). */
  batchSize?: number;
  /** A partial batch is sent after at most this long; default 1000 ms. */
  flushIntervalMs?: number;
  /** Events held at most, queued and in flight; the oldest queued are dropped beyond it. Default 20,000. */
  maxBufferSize?: number;
  /** Batches in flight at once; default 2. */
  concurrency?: number;
  /** One attempt's timeout; default 10,000 ms. */
  requestTimeoutMs?: number;
  /** First retry delay; it doubles per attempt, with jitter, up to maxBackoffMs. Default 100 ms. */
  minBackoffMs?: number;
  /** Largest retry delay (a Retry-After may ask for more, up to 5 min). Default 30,000 ms. */
  maxBackoffMs?: number;
  /** Pulse's raw retention: older metrics are dropped, as Pulse would refuse them. Default 30 days. */
  retentionMs?: number;
  /** Compress bodies with gzip; default true. */
  gzip?: boolean;
  /** Where the client's messages go; default: warnings and errors to console.error. */
  logger?: Logger;
}

/** Counters the app can read; recorded = sent + dropped + failed + buffered + inFlight. */
export interface PulseStats {
  /** Metrics given to record(). */
  recorded: number;
  /** Events Pulse accepted (202). */
  sent: number;
  /** Attempts that were retried (network error, timeout, 429, 5xx). */
  retried: number;
  /** Events dropped by the client: invalid, buffer overflow, or recorded after shutdown. */
  dropped: number;
  droppedInvalid: number;
  droppedOverflow: number;
  /** Events of batches Pulse refused (4xx other than 429), or not confirmed by the shutdown deadline. */
  failed: number;
  /** Events waiting for a batch. */
  buffered: number;
  /** Events in batches being sent or retried. */
  inFlight: number;
  /** The last delivery error, cleared by the next success. */
  lastError?: string;
}

/**
 * PulseClient batches metrics and ships them to Pulse. record() never
 * blocks, never throws and returns nothing to await; flush() and
 * shutdown() return promises that never reject.
 */
export interface PulseClient {
  record(metric: Metric): void;
  flush(): Promise<void>;
  shutdown(deadlineMs?: number): Promise<PulseStats>;
  stats(): PulseStats;
  readonly service: string;
}

interface Batch {
  events: WireMetric[];
  key: string;
  firstSeq: number;
  done: Promise<void>;
}

type Outcome =
  | { kind: "sent" }
  | { kind: "retry"; reason: string; retryAfterMs: number }
  | { kind: "split" }
  | { kind: "refused"; status: number; reason: string; details?: unknown };

/** A FIFO of fixed capacity whose oldest element can be dropped in O(1). */
class Ring<T> {
  private items: (T | undefined)[];
  private head = 0;
  length = 0;
  constructor(capacity: number) {
    this.items = new Array(capacity);
  }
  push(v: T): void {
    this.items[(this.head + this.length) % this.items.length] = v;
    this.length++;
  }
  shift(): T | undefined {
    if (this.length === 0) return undefined;
    const v = this.items[this.head];
    this.items[this.head] = undefined;
    this.head = (this.head + 1) % this.items.length;
    this.length--;
    return v;
  }
  take(n: number): T[] {
    const out = new Array<T>(n);
    for (let i = 0; i < n; i++) out[i] = this.shift() as T;
    return out;
  }
}

const defaultLogger: Logger = (level, message, details) => {
  if (level === "warn" || level === "error") {
    if (details) console.error(`pulse-client: ${message}`, details);
    else console.error(`pulse-client: ${message}`);
  }
};

function gzipAsync(data: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    gzip(data, { level: constants.Z_BEST_SPEED }, (err, out) => (err ? reject(err) : resolve(out)));
  });
}

/** retryAfterMs reads a Retry-After header: seconds or an HTTP date. */
function retryAfterMs(h: string | null, now: number): number {
  if (!h) return 0;
  const s = Number(h);
  if (Number.isFinite(s)) return Math.max(0, s * 1000);
  const t = Date.parse(h);
  return Number.isFinite(t) ? Math.max(0, t - now) : 0;
}

function errorText(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  // fetch says "fetch failed"; the reason (ECONNREFUSED, ENOTFOUND, ...) is in its cause.
  const cause = (err as { cause?: { code?: unknown; message?: unknown; errors?: { code?: unknown }[] } }).cause;
  const why = cause?.code ?? cause?.errors?.[0]?.code ?? cause?.message;
  return why ? `${err.message} (${String(why)})` : err.message;
}

class Client implements PulseClient {
  readonly service: string;
  private readonly endpoint: string;
  private readonly token: string;
  private readonly batchSize: number;
  private readonly maxBuffer: number;
  private readonly concurrency: number;
  private readonly timeoutMs: number;
  private readonly minBackoff: number;
  private readonly maxBackoff: number;
  private readonly retentionMs: number;
  private readonly gzip: boolean;
  private readonly log: Logger;
  private readonly keyPrefix = randomUUID();

  private readonly queue: Ring<WireMetric>;
  private readonly inflight = new Set<Batch>();
  private inflightEvents = 0;
  private enqueued = 0; // events ever queued; the sequence number of the next
  private forceThrough = 0; // events queued before this are sent regardless of batch size
  private timerDue = false;
  private batchSeq = 0;
  private closed = false;
  private readonly abort = new AbortController(); // aborts everything at the shutdown deadline
  private readonly timer: ReturnType<typeof setInterval>;
  private waiters: (() => void)[] = [];

  private counters = { recorded: 0, sent: 0, retried: 0, droppedInvalid: 0, droppedOverflow: 0, droppedClosed: 0, failed: 0 };
  private lastError: string | undefined;
  private failing = false; // an outage was reported and has not ended
  private readonly reported = new Set<string>(); // causes already logged
  private shutdownPromise: Promise<PulseStats> | undefined;

  constructor(o: PulseClientOptions) {
    if (!o || typeof o.url !== "string" || o.url === "") throw new TypeError("pulse-client: url is required");
    if (typeof o.token !== "string" || o.token === "") throw new TypeError("pulse-client: token is required");
    const service = String(o.service ?? "").toLowerCase();
    if (!validServiceName(service))
      throw new TypeError("pulse-client: service must be 1-64 characters of a-z, 0-9, '_' or '-', starting with a letter or digit");
    let u: URL;
    try {
      u = new URL(o.url);
    } catch {
      throw new TypeError("pulse-client: url is not a valid URL");
    }
    if (u.protocol !== "http:" && u.protocol !== "https:") throw new TypeError("pulse-client: url must be http or https");
    if (u.pathname === "/" || u.pathname === "") u.pathname = ingestPath;
    this.endpoint = u.toString();
    this.token = o.token;
    this.service = service;
    this.batchSize = o.batchSize ?? 500;
    this.maxBuffer = o.maxBufferSize ?? 20_000;
    this.concurrency = o.concurrency ?? 2;
    this.timeoutMs = o.requestTimeoutMs ?? 10_000;
    this.minBackoff = o.minBackoffMs ?? 100;
    this.maxBackoff = o.maxBackoffMs ?? 30_000;
    this.retentionMs = o.retentionMs ?? limits.defaultRetentionMs;
    this.gzip = o.gzip ?? true;
    const logger = o.logger ?? defaultLogger;
    this.log = (level, message, details) => {
      try {
        logger(level, message, details);
      } catch {
        // a logger must not break the client
      }
    };
    const interval = o.flushIntervalMs ?? 1000;
    if (!(this.batchSize >= 1 && this.batchSize <= 10_000)) throw new RangeError("pulse-client: batchSize must be 1-10000");
    if (!(this.maxBuffer >= this.batchSize)) throw new RangeError("pulse-client: maxBufferSize must be at least batchSize");
    if (!(this.concurrency >= 1)) throw new RangeError("pulse-client: concurrency must be at least 1");
    if (!(interval > 0)) throw new RangeError("pulse-client: flushIntervalMs must be positive");
    this.queue = new Ring(this.maxBuffer);
    this.timer = setInterval(() => this.tick(), interval);
    // The timer alone does not keep the process alive; shutdown() delivers what is left.
    this.timer.unref?.();
  }

  record(metric: Metric): void {
    try {
      this.counters.recorded++;
      if (this.closed) {
        this.counters.droppedClosed++;
        return;
      }
      const now = Date.now();
      const r = toWire(metric, this.service, now, this.retentionMs);
      if (r.reason !== undefined) {
        this.counters.droppedInvalid++;
        this.once("invalid:" + r.reason, "warn", "a metric Pulse would refuse was dropped", { reason: r.reason });
        return;
      }
      if (this.queue.length + this.inflightEvents >= this.maxBuffer) {
        if (this.queue.length === 0) {
          this.counters.droppedOverflow++;
          return;
        }
        this.queue.shift();
        this.counters.droppedOverflow++;
        this.once("overflow", "warn", "the buffer is full: dropping the oldest metrics (counted in stats().droppedOverflow)", {
          maxBufferSize: this.maxBuffer,
        });
      }
      this.queue.push(r.metric);
      this.enqueued++;
      if (this.queue.length >= this.batchSize && this.inflight.size < this.concurrency) setImmediate(() => this.pump());
    } catch (err) {
      // record() never throws into the app.
      this.once("record", "error", "record failed", { error: errorText(err) });
    }
  }

  stats(): PulseStats {
    const c = this.counters;
    const droppedAll = c.droppedInvalid + c.droppedOverflow + c.droppedClosed;
    const s: PulseStats = {
      recorded: c.recorded,
      sent: c.sent,
      retried: c.retried,
      dropped: droppedAll,
      droppedInvalid: c.droppedInvalid,
      droppedOverflow: c.droppedOverflow,
      failed: c.failed,
      buffered: this.queue.length,
      inFlight: this.inflightEvents,
    };
    if (this.lastError !== undefined) s.lastError = this.lastError;
    return s;
  }

  async flush(): Promise<void> {
    try {
      const target = this.enqueued;
      this.forceThrough = Math.max(this.forceThrough, target);
      this.pump();
      for (;;) {
        const head = this.enqueued - this.queue.length; // sequence number of the oldest queued event
        let pending = false;
        for (const b of this.inflight) if (b.firstSeq < target) pending = true;
        if (head >= target && !pending) return;
        await this.changed();
      }
    } catch (err) {
      this.once("flush", "error", "flush failed", { error: errorText(err) });
    }
  }

  shutdown(deadlineMs = 5000): Promise<PulseStats> {
    this.shutdownPromise ??= this.doShutdown(deadlineMs);
    return this.shutdownPromise;
  }

  private async doShutdown(deadlineMs: number): Promise<PulseStats> {
    this.closed = true;
    clearInterval(this.timer);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const deadline = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), Math.max(0, deadlineMs));
    });
    const delivered = await Promise.race([this.flush().then(() => true), deadline]);
    clearTimeout(timer);
    if (!delivered) {
      this.abort.abort();
      await Promise.all([...this.inflight].map((b) => b.done));
      const left = this.queue.length;
      this.queue.take(left);
      this.counters.failed += left;
      this.log("error", "shutdown deadline passed: metrics not confirmed by Pulse are counted as failed", {
        deadlineMs,
        failed: this.counters.failed,
      });
    }
    return this.stats();
  }

  private tick(): void {
    if (this.queue.length > 0) {
      this.timerDue = true;
      this.pump();
    }
  }

  /** pump cuts batches from the queue while a sending slot is free. */
  private pump(): void {
    while (this.inflight.size < this.concurrency && this.queue.length > 0 && !this.abort.signal.aborted) {
      const head = this.enqueued - this.queue.length;
      const full = this.queue.length >= this.batchSize;
      if (!full && !this.timerDue && head >= this.forceThrough && !this.closed) break;
      const events = this.queue.take(Math.min(this.batchSize, this.queue.length));
      if (this.queue.length === 0) this.timerDue = false;
      this.start(events, `${this.keyPrefix}-${++this.batchSeq}`, head);
    }
  }

  private start(events: WireMetric[], key: string, firstSeq: number): void {
    const b = { events, key, firstSeq } as Batch;
    this.inflight.add(b);
    this.inflightEvents += events.length;
    b.done = this.deliver(b)
      .catch((err) => {
        this.counters.failed += b.events.length;
        this.once("deliver", "error", "delivering a batch failed", { error: errorText(err) });
      })
      .finally(() => {
        this.inflight.delete(b);
        this.inflightEvents -= b.events.length;
        this.notify();
        this.pump();
      });
  }

  /** deliver sends one batch until Pulse accepts or refuses it, or shutdown aborts. */
  private async deliver(b: Batch): Promise<void> {
    const text = b.events.map((e) => JSON.stringify(e)).join("\n") + "\n";
    const body = this.gzip ? await gzipAsync(text) : Buffer.from(text);
    for (let attempt = 0; ; attempt++) {
      if (this.abort.signal.aborted) {
        this.counters.failed += b.events.length;
        return;
      }
      const out = await this.attempt(b, body);
      if (out.kind !== "sent" && this.abort.signal.aborted) {
        this.counters.failed += b.events.length;
        return;
      }
      switch (out.kind) {
        case "sent":
          this.counters.sent += b.events.length;
          if (this.failing) {
            this.failing = false;
            this.reported.clear();
            this.log("info", "Pulse accepts metrics again", { lastError: this.lastError });
          }
          this.lastError = undefined;
          this.log("debug", "batch delivered", { events: b.events.length, attempts: attempt + 1 });
          return;
        case "split": {
          // 413: the halves go as batches of their own, with keys derived
          // from this one, so that their retries stay deduplicated too.
          const half = Math.ceil(b.events.length / 2);
          this.log("debug", "batch too large for Pulse: splitting it", { events: b.events.length });
          this.start(b.events.slice(0, half), b.key + "a", b.firstSeq);
          this.start(b.events.slice(half), b.key + "b", b.firstSeq + half);
          return;
        }
        case "refused":
          this.counters.failed += b.events.length;
          this.lastError = out.reason;
          this.once(`refused:${out.status}`, "error", out.reason, {
            status: out.status,
            events: b.events.length,
            details: out.details,
          });
          return;
        case "retry": {
          this.counters.retried++;
          this.lastError = out.reason;
          if (!this.failing) {
            this.failing = true;
            this.log("warn", `cannot deliver to Pulse, retrying with backoff: ${out.reason}`, { url: this.origin() });
          } else {
            this.log("debug", "retrying a batch", { reason: out.reason, attempt: attempt + 1 });
          }
          const base = Math.min(this.maxBackoff, this.minBackoff * 2 ** Math.min(attempt, 30));
          const jittered = base / 2 + Math.random() * (base / 2);
          await this.sleep(Math.max(jittered, Math.min(out.retryAfterMs, 300_000)));
        }
      }
    }
  }

  private async attempt(b: Batch, body: Buffer): Promise<Outcome> {
    const ctl = new AbortController();
    const onAbort = () => ctl.abort();
    this.abort.signal.addEventListener("abort", onAbort);
    const timer = setTimeout(() => ctl.abort(), this.timeoutMs);
    try {
      const headers: Record<string, string> = {
        "content-type": "application/x-ndjson",
        authorization: `Bearer ${this.token}`,
        "idempotency-key": b.key,
      };
      if (this.gzip) headers["content-encoding"] = "gzip";
      const res = await fetch(this.endpoint, { method: "POST", headers, body: body as unknown as BodyInit, signal: ctl.signal });
      const text = await res.text();
      const status = res.status;
      if (status === 202 || status === 200) return { kind: "sent" };
      const after = retryAfterMs(res.headers.get("retry-after"), Date.now());
      let parsed: { message?: string; details?: unknown } = {};
      try {
        parsed = JSON.parse(text);
      } catch {
        // not a Pulse answer: a proxy's page
      }
      const said = parsed.message ? `: ${parsed.message}` : "";
      if (status === 408 || status === 429 || status >= 500)
        return { kind: "retry", reason: `Pulse answered ${status}${said}`, retryAfterMs: after };
      if (status === 413 && b.events.length > 1) return { kind: "split" };
      let reason: string;
      switch (status) {
        case 401:
          reason = "Pulse refused the token (401): check the client's ingest token";
          break;
        case 403:
          reason = "Pulse refused the token (403): it is not an ingest-scoped token";
          break;
        case 404:
        case 405:
          reason = `Pulse answered ${status} at ${this.origin()}${ingestPath}: check the client's url`;
          break;
        default:
          reason = `Pulse refused a batch of ${b.events.length} metrics (${status})${said}`;
      }
      return { kind: "refused", status, reason, details: parsed.details };
    } catch (err) {
      const why = this.abort.signal.aborted ? "shutdown deadline" : ctl.signal.aborted ? `no answer within ${this.timeoutMs} ms` : errorText(err);
      return { kind: "retry", reason: `request to Pulse failed: ${why}`, retryAfterMs: 0 };
    } finally {
      clearTimeout(timer);
      this.abort.signal.removeEventListener("abort", onAbort);
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      if (this.abort.signal.aborted) return resolve();
      const onAbort = () => {
        clearTimeout(t);
        resolve();
      };
      const t = setTimeout(() => {
        this.abort.signal.removeEventListener("abort", onAbort);
        resolve();
      }, ms);
      t.unref?.();
      this.abort.signal.addEventListener("abort", onAbort, { once: true });
    });
  }

  private origin(): string {
    return new URL(this.endpoint).origin;
  }

  /** once logs a cause the first time it is seen since the last success. */
  private once(cause: string, level: LogLevel, message: string, details?: Record<string, unknown>): void {
    if (this.reported.has(cause)) {
      this.log("debug", message, details);
      return;
    }
    if (this.reported.size < 100) this.reported.add(cause);
    this.log(level, message, details);
  }

  private changed(): Promise<void> {
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  private notify(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }
}

/**
 * createPulseClient returns a client that batches metrics and ships them to
 * Pulse. It throws only for invalid options (a missing url, token or
 * service), at start-up, never later.
 */
export function createPulseClient(options: PulseClientOptions): PulseClient {
  return new Client(options);
}
