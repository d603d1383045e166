// Next.js App Router integration: a route-handler wrapper and a middleware
// wrapper. Both need the Node.js runtime (the client gzips with node:zlib).
import type { PulseClient } from "./client.js";
import { defaultClient } from "./default.js";
import { limits, truncateUtf8 } from "./validate.js";

export interface WithPulseOptions {
  /** The route template, e.g. "/api/clients/[id]"; default: the request's path (Pulse turns numeric and UUID segments into ":id"). */
  route?: string;
  /** The client; default: defaultClient() (PULSE_URL, PULSE_INGEST_TOKEN, PULSE_SERVICE). */
  client?: PulseClient;
  /** The signed-in user's UUID for a request, if any; it must not throw (a throw counts as no user). */
  userId?: (req: Request) => string | undefined | null;
}

function pathOf(req: Request): string {
  try {
    return new URL(req.url).pathname;
  } catch {
    return "/";
  }
}

function userOf(o: { userId?: WithPulseOptions["userId"] }, req: Request): string | undefined {
  try {
    return o.userId?.(req) ?? undefined;
  } catch {
    return undefined;
  }
}

function messageOf(err: unknown): string {
  const m = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
  return truncateUtf8(m, limits.maxErrorMessageBytes);
}

/**
 * withPulse wraps an App Router route handler: it records each request's
 * duration, status, method, route and user, and returns the handler's
 * response (or rethrows its error, recorded as a 500) unchanged. Recording
 * never blocks the response.
 */
export function withPulse<A extends unknown[], R extends Response>(
  handler: (req: Request, ...rest: A) => R | Promise<R>,
  options: WithPulseOptions = {},
): (req: Request, ...rest: A) => Promise<R> {
  return async (req: Request, ...rest: A): Promise<R> => {
    const start = performance.now();
    const client = options.client ?? defaultClient();
    try {
      const res = await handler(req, ...rest);
      client.record({
        endpoint: options.route ?? pathOf(req),
        method: req.method,
        statusCode: res.status >= 100 && res.status <= 599 ? res.status : 200,
        responseTimeMs: performance.now() - start,
        userId: userOf(options, req),
      });
      return res;
    } catch (err) {
      client.record({
        endpoint: options.route ?? pathOf(req),
        method: req.method,
        statusCode: 500,
        responseTimeMs: performance.now() - start,
        userId: userOf(options, req),
        errorMessage: messageOf(err),
      });
      throw err;
    }
  };
}

export interface PulseMiddlewareOptions extends Omit<WithPulseOptions, "route"> {
  /** The route template of a request; default: its path. */
  route?: (req: Request) => string;
}

/**
 * withPulseMiddleware wraps a Next.js middleware function. Middleware does
 * not see the route's own response, so it records only the requests the
 * middleware answers itself (redirects, refusals: any response that is not
 * NextResponse.next()), with the middleware's duration; wrap route handlers
 * with withPulse for the rest. Set the middleware's runtime to "nodejs".
 */
export function withPulseMiddleware<A extends unknown[], R extends Response | undefined | null | void>(
  middleware: (req: Request, ...rest: A) => R | Promise<R>,
  options: PulseMiddlewareOptions = {},
): (req: Request, ...rest: A) => Promise<R> {
  return async (req: Request, ...rest: A): Promise<R> => {
    const start = performance.now();
    const client = options.client ?? defaultClient();
    const endpoint = () => {
      try {
        return options.route?.(req) ?? pathOf(req);
      } catch {
        return pathOf(req);
      }
    };
    try {
      const res = await middleware(req, ...rest);
      // NextResponse.next() marks itself with x-middleware-next; a rewrite with x-middleware-rewrite.
      if (res && !res.headers.has("x-middleware-next") && !res.headers.has("x-middleware-rewrite")) {
        client.record({
          endpoint: endpoint(),
          method: req.method,
          statusCode: res.status >= 100 && res.status <= 599 ? res.status : 200,
          responseTimeMs: performance.now() - start,
          userId: userOf(options, req),
        });
      }
      return res;
    } catch (err) {
      client.record({
        endpoint: endpoint(),
        method: req.method,
        statusCode: 500,
        responseTimeMs: performance.now() - start,
        userId: userOf(options, req),
        errorMessage: messageOf(err),
      });
      throw err;
    }
  };
}

export { defaultClient, setDefaultClient } from "./default.js";
