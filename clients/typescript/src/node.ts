// Plain Node http integration: wraps a request listener (http.createServer's
// argument, or an Express app) and records every request once its response
// has been sent.
import type { IncomingMessage, ServerResponse } from "node:http";

import type { PulseClient } from "./client.js";
import { defaultClient } from "./default.js";

export interface HttpOptions {
  /** The route template of a request, e.g. from your router; default: its path. */
  route?: (req: IncomingMessage) => string;
  /** The signed-in user's UUID, if any; it must not throw (a throw counts as no user). */
  userId?: (req: IncomingMessage) => string | undefined | null;
  /** The client; default: defaultClient(). */
  client?: PulseClient;
}

function pathOf(req: IncomingMessage): string {
  const u = req.url ?? "/";
  const q = u.search(/[?#]/);
  return q < 0 ? u : u.slice(0, q) || "/";
}

/**
 * observe records req once res is finished (or the client went away:
 * recorded with the status set so far). Call it first thing in a handler;
 * it returns at once.
 */
export function observe(req: IncomingMessage, res: ServerResponse, options: HttpOptions = {}): void {
  const start = performance.now();
  let done = false;
  const finish = () => {
    if (done) return;
    done = true;
    const client = options.client ?? defaultClient();
    let endpoint: string;
    let userId: string | undefined;
    try {
      endpoint = options.route?.(req) ?? pathOf(req);
    } catch {
      endpoint = pathOf(req);
    }
    try {
      userId = options.userId?.(req) ?? undefined;
    } catch {
      userId = undefined;
    }
    client.record({
      endpoint,
      method: req.method,
      statusCode: res.statusCode,
      responseTimeMs: performance.now() - start,
      userId,
    });
  };
  res.once("finish", finish);
  res.once("close", finish);
}

/**
 * withPulseHttp wraps a request listener: every request is recorded once
 * its response is sent. The listener runs unchanged.
 */
export function withPulseHttp<Req extends IncomingMessage, Res extends ServerResponse>(
  listener: (req: Req, res: Res) => void,
  options: HttpOptions = {},
): (req: Req, res: Res) => void {
  return (req, res) => {
    observe(req, res, options);
    listener(req, res);
  };
}

/** pulseMiddleware is the same as connect/Express middleware: app.use(pulseMiddleware()). */
export function pulseMiddleware(options: HttpOptions = {}) {
  return (req: IncomingMessage, res: ServerResponse, next: () => void): void => {
    observe(req, res, options);
    next();
  };
}

export { defaultClient, setDefaultClient } from "./default.js";
