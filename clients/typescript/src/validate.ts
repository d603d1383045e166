// Client-side validation that mirrors Pulse's (internal/event/event.go):
// Pulse refuses a batch whole when one of its events is invalid, so an
// invalid metric is dropped here, with a reason, instead of being sent.

/** Limits of a request metric, as Pulse enforces them. */
export const limits = {
  maxEndpointBytes: 512,
  maxErrorMessageBytes: 2048,
  maxRequestIdLength: 128,
  maxServiceLength: 64,
  maxResponseTimeMs: 24 * 60 * 60 * 1000,
  maxFutureSkewMs: 5 * 60 * 1000,
  defaultRetentionMs: 30 * 24 * 60 * 60 * 1000,
} as const;

/** One served request, as the app records it. */
export interface Metric {
  /** Route template (`/api/clients/[id]`) or path; required, at most 512 bytes. */
  endpoint: string;
  /** How long the request took, in milliseconds (0 to one day). */
  responseTimeMs: number;
  /** HTTP status code, an integer from 100 to 599. */
  statusCode: number;
  /** HTTP method such as GET; optional. */
  method?: string;
  /** The signed-in user's UUID; optional. */
  userId?: string;
  /** Error message of a failed request; optional, at most 2048 bytes. */
  errorMessage?: string;
  /** When the request was served; defaults to the moment record() was called. */
  timestamp?: Date | string | number;
  /** Overrides the client's service for this metric. */
  service?: string;
  /** A request ID unique per request (1-128 printable ASCII); Pulse generates one when absent. */
  requestId?: string;
}

/** A validated metric as Pulse reads it (one NDJSON line). */
export interface WireMetric {
  endpoint: string;
  response_time_ms: number;
  status_code: number;
  timestamp: string;
  service: string;
  method?: string;
  user_id?: string;
  error_message?: string;
  request_id?: string;
}

const methods = new Set(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"]);
const uuidRe = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;
const nilUUID = "00000000-0000-0000-0000-000000000000";
const serviceRe = /^[a-z0-9][a-z0-9_-]*$/;
// eslint-disable-next-line no-control-regex
const controlRe = /[\u0000-\u001f\u007f]/;
const printableAsciiRe = /^[\x21-\x7e]+$/;

const encoder = new TextEncoder();

function utf8Length(s: string): number {
  // Fast path: an ASCII string's length is its byte count.
  for (let i = 0; i < s.length; i++) {
    if (s.charCodeAt(i) > 0x7f) return encoder.encode(s).length;
  }
  return s.length;
}

/** validServiceName reports whether s can name a service in Pulse. */
export function validServiceName(s: string): boolean {
  return s.length >= 1 && s.length <= limits.maxServiceLength && serviceRe.test(s);
}

function timestampOf(t: Date | string | number | undefined, now: number): number | string {
  if (t === undefined) return now;
  if (t instanceof Date) return t.getTime();
  if (typeof t === "number") return t;
  // RFC 3339 with a time zone, as Pulse parses it.
  if (!/^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/.test(t)) return "bad";
  return Date.parse(t);
}

/**
 * toWire validates m and returns the line Pulse will store, or the reason
 * Pulse would refuse it. defaultService is the client's service; now and
 * retentionMs are the checks of the timestamp.
 */
export function toWire(
  m: Metric,
  defaultService: string,
  now: number,
  retentionMs: number,
): { metric: WireMetric; reason?: undefined } | { metric?: undefined; reason: string } {
  if (m === null || typeof m !== "object") return { reason: "metric: must be an object" };
  const { endpoint, responseTimeMs, statusCode } = m;
  if (typeof endpoint !== "string" || endpoint === "") return { reason: "endpoint: is required" };
  if (utf8Length(endpoint) > limits.maxEndpointBytes)
    return { reason: `endpoint: must be at most ${limits.maxEndpointBytes} bytes` };
  if (controlRe.test(endpoint))
    return { reason: "endpoint: must be printable UTF-8 without control characters" };
  if (typeof responseTimeMs !== "number" || !Number.isFinite(responseTimeMs) || responseTimeMs < 0 || responseTimeMs > limits.maxResponseTimeMs)
    return { reason: `response_time_ms: must be a number between 0 and ${limits.maxResponseTimeMs}` };
  if (typeof statusCode !== "number" || !Number.isInteger(statusCode) || statusCode < 100 || statusCode > 599)
    return { reason: "status_code: must be an integer between 100 and 599" };

  const service = (m.service ?? defaultService).toLowerCase();
  if (!validServiceName(service))
    return { reason: `service: must be 1-${limits.maxServiceLength} characters of a-z, 0-9, '_' or '-', starting with a letter or digit` };

  const ts = timestampOf(m.timestamp, now);
  if (typeof ts !== "number" || !Number.isFinite(ts))
    return { reason: "timestamp: must be a Date, epoch milliseconds, or an RFC 3339 date-time with a time zone" };
  if (ts > now + limits.maxFutureSkewMs) return { reason: "timestamp: is more than 5m0s in the future" };
  if (retentionMs > 0 && ts < now - retentionMs) return { reason: "timestamp: is older than the retention" };

  const out: WireMetric = {
    endpoint,
    response_time_ms: responseTimeMs,
    status_code: statusCode,
    timestamp: new Date(ts).toISOString(),
    service,
  };
  if (m.method !== undefined && m.method !== "") {
    const method = String(m.method).toUpperCase();
    if (!methods.has(method)) return { reason: "method: must be an HTTP method such as GET or POST" };
    out.method = method;
  }
  if (m.userId !== undefined && m.userId !== "") {
    if (typeof m.userId !== "string" || !uuidRe.test(m.userId) || m.userId === nilUUID)
      return { reason: "user_id: must be a UUID (8-4-4-4-12 hex digits)" };
    out.user_id = m.userId;
  }
  if (m.errorMessage !== undefined && m.errorMessage !== "") {
    // JSON.stringify escapes a lone surrogate and Pulse reads it as U+FFFD:
    // any string is valid UTF-8 on the wire.
    if (typeof m.errorMessage !== "string") return { reason: "error_message: must be a string" };
    if (utf8Length(m.errorMessage) > limits.maxErrorMessageBytes)
      return { reason: `error_message: must be at most ${limits.maxErrorMessageBytes} bytes` };
    out.error_message = m.errorMessage;
  }
  if (m.requestId !== undefined && m.requestId !== "") {
    if (typeof m.requestId !== "string" || m.requestId.length > limits.maxRequestIdLength || !printableAsciiRe.test(m.requestId))
      return { reason: `request_id: must be 1-${limits.maxRequestIdLength} printable ASCII characters` };
    out.request_id = m.requestId;
  }
  return { metric: out };
}

/**
 * truncateUtf8 cuts s to at most max bytes of UTF-8 without splitting a
 * character; the integrations use it for error messages.
 */
export function truncateUtf8(s: string, max: number): string {
  if (utf8Length(s) <= max) return s;
  let out = "";
  let n = 0;
  for (const ch of s) {
    const b = utf8Length(ch);
    if (n + b > max) break;
    out += ch;
    n += b;
  }
  return out;
}
