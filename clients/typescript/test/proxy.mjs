// A small HTTP proxy in front of Pulse that can delay requests or answer
// 503 for a while, and remembers when each Idempotency-Key was seen.
import { createServer } from "node:http";

export async function startProxy(t, target) {
  const p = {
    delayMs: () => 0,
    unavailableUntil: 0,
    seen: new Map(), // Idempotency-Key -> [times]
    requests: 0,
    answered503: 0,
  };
  const server = createServer(async (req, res) => {
    p.requests++;
    const chunks = [];
    for await (const c of req) chunks.push(c);
    const key = req.headers["idempotency-key"] ?? "";
    if (!p.seen.has(key)) p.seen.set(key, []);
    p.seen.get(key).push(Date.now());
    if (Date.now() < p.unavailableUntil) {
      p.answered503++;
      res.writeHead(503, { "retry-after": "1", "content-type": "application/json" });
      res.end(JSON.stringify({ error: "unavailable", message: "the proxy says so" }));
      return;
    }
    const delay = p.delayMs();
    if (delay > 0) await new Promise((r) => setTimeout(r, delay));
    // The request goes on even when the client gave up waiting: its answer is
    // lost, which is what a retry with the same key must survive.
    const headers = { ...req.headers };
    delete headers.host;
    delete headers.connection;
    delete headers["content-length"];
    try {
      const up = await fetch(target + req.url, { method: req.method, headers, body: Buffer.concat(chunks) });
      const body = Buffer.from(await up.arrayBuffer());
      if (!res.destroyed) {
        res.writeHead(up.status, Object.fromEntries(up.headers));
        res.end(body);
      }
    } catch {
      if (!res.destroyed) res.destroy();
    }
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  p.url = `http://127.0.0.1:${server.address().port}`;
  t.after(() => new Promise((resolve) => { server.closeAllConnections(); server.close(resolve); }));
  return p;
}
