// The /admin page of Pulse. It reads only the admin JSON API, with the
// token from sessionStorage in the Authorization header. Every value from
// the API reaches the page as text (textContent, text nodes, attributes
// that are never URLs or handlers), never as HTML.
(() => {
  "use strict";

  const TOKEN_KEY = "pulse.admin.token";
  const REQUEST_TIMEOUT_MS = 15000;

  // The refresh schedule: each task runs at login (a few hundred ms apart),
  // then every `every` seconds, its phase shifted by `slot` seconds so that
  // the requests spread over the half minute. `requests` is what one run
  // sends on average; the total stays well inside the admin rate limit
  // (60/min per principal): see requestsPerMinute.
  const tasks = [
    { name: "now", every: 30, slot: 0, requests: 2, run: () => loadNow() },
    { name: "trends", every: 30, slot: 7, requests: 1, run: () => loadTrends() },
    { name: "pipeline", every: 30, slot: 14, requests: 1.5, run: () => loadPipeline() },
    { name: "resources", every: 60, slot: 21, requests: 1, run: () => loadResources() },
    { name: "rules", every: 600, slot: 26, requests: 1, run: () => loadRules() },
    { name: "architecture", every: 300, slot: 28, requests: 2, run: () => loadArchitecture() },
  ];
  const requestsPerMinute = tasks.reduce((n, t) => n + (t.requests * 60) / t.every, 0);

  // Validation pairs, as validate.Supported knows them.
  const validationPairs = {
    database: ["schema", "permissions", "performance", "security"],
    auth: ["permissions", "performance", "security"],
    realtime: ["performance", "security"],
    api: ["performance", "security"],
    deployment: ["schema", "performance", "security"],
  };
  const knownStatuses = new Set(["healthy", "degraded", "unhealthy", "critical", "down", "unknown",
    "firing", "resolved", "pass", "fail", "valid", "invalid", "warning", "info", "page", "error"]);

  const $ = (id) => document.getElementById(id);
  const violations = [];
  document.addEventListener("securitypolicyviolation", (e) => violations.push(e.violatedDirective));

  let token = null;
  let session = 0; // bumped on sign-in and sign-out; stale timers and answers see a different number
  let timers = [];
  let pausedUntil = 0;
  let requestsSent = 0;
  const state = {
    alerts: null,
    trend: { timeframe: "1h", service: "", endpoint: "", sort: "p95_ms", desc: true, rows: [] },
    known: new Map(), // service -> Set of endpoints seen in answers
    charts: {},
    stats: null, // { at, body } of the previous /system/stats answer
    insert: null, // { at, sum, count } of the previous insert latency reading
    pipelineTick: 0,
  };

  // ---- elements, as text only ----

  function h(tag, props, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (v == null || v === false) continue;
      if (k === "class") e.className = v;
      else if (k === "status") e.dataset.status = statusKey(v);
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? "" : String(v));
    }
    for (const kid of kids.flat()) {
      if (kid == null || kid === false) continue;
      e.append(kid instanceof Node ? kid : String(kid));
    }
    return e;
  }

  function statusKey(s) {
    const k = String(s).toLowerCase();
    return knownStatuses.has(k) ? k : "unknown";
  }

  function badge(status, text) {
    return h("span", { class: "status", status }, text == null ? String(status) : text);
  }

  const fmt = {
    ms(v) {
      if (v == null || !isFinite(v)) return "–";
      return `${+Number(v).toPrecision(3)} ms`;
    },
    num(v) {
      if (v == null || !isFinite(v)) return "–";
      if (Math.abs(v) >= 1000) return Math.round(v).toLocaleString("en-US");
      return String(+Number(v).toPrecision(3));
    },
    pct(v) {
      if (v == null || !isFinite(v)) return "–";
      return `${(v * 100).toFixed(v > 0 && v < 0.001 ? 3 : 1)}%`;
    },
    bytes(v) {
      if (v == null || !isFinite(v)) return "–";
      const units = ["B", "KiB", "MiB", "GiB", "TiB"];
      let i = 0;
      while (Math.abs(v) >= 1024 && i < units.length - 1) {
        v /= 1024;
        i++;
      }
      return `${+v.toPrecision(3)} ${units[i]}`;
    },
    time(ts) {
      if (!ts) return "–";
      const d = new Date(ts);
      if (isNaN(d)) return String(ts);
      const p = (n) => String(n).padStart(2, "0");
      const day = `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}`;
      return `${day} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
    },
    ago(ts) {
      const s = Math.round((Date.now() - new Date(ts).getTime()) / 1000);
      if (!isFinite(s)) return "";
      if (s < 60) return `${Math.max(s, 0)} s ago`;
      if (s < 3600) return `${Math.round(s / 60)} min ago`;
      if (s < 172800) return `${Math.round(s / 3600)} h ago`;
      return `${Math.round(s / 86400)} d ago`;
    },
  };

  // ---- panels: loading, empty, error and data states ----

  function panel(id) {
    const section = $(id);
    return {
      section,
      stateEl: section.querySelector('[data-role="state"]'),
      body: section.querySelector('[data-role="body"]'),
      shown: false,
    };
  }
  const panels = Object.fromEntries(
    ["now", "trends", "resources", "alerts", "architecture", "pipeline"].map((id) => [id, panel(id)]),
  );

  function showLoading(p) {
    p.section.setAttribute("aria-busy", "true");
    if (!p.shown) setState(p, "loading", "Loading…");
  }
  function setState(p, kind, text) {
    p.section.setAttribute("aria-busy", kind === "loading" ? "true" : "false");
    p.stateEl.hidden = false;
    p.stateEl.dataset.kind = kind;
    p.stateEl.textContent = text;
    p.body.hidden = !p.shown;
  }
  function showData(p) {
    p.shown = true;
    p.section.setAttribute("aria-busy", "false");
    p.stateEl.hidden = true;
    p.stateEl.textContent = "";
    delete p.stateEl.dataset.kind;
    p.body.hidden = false;
  }
  function showEmpty(p, text) {
    p.shown = false;
    setState(p, "empty", text);
  }
  function showError(p, err) {
    if (err instanceof SignedOut) return;
    const when = p.shown ? ` Showing the last answer.` : "";
    setState(p, "error", `${describe(err)}${when}`);
  }

  function describe(err) {
    if (err instanceof ApiError) {
      if (err.status === 429) return "Rate limited by Pulse: waiting before the next refresh.";
      if (err.status === 0) return `Pulse did not answer (${err.message}).`;
      return `Pulse answered ${err.status}: ${err.message}`;
    }
    return `Could not show this panel: ${err && err.message ? err.message : err}`;
  }

  // ---- the API ----

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }
  class SignedOut extends Error {}

  async function api(path, { method = "GET", body, text = false } = {}) {
    const mine = session;
    if (pausedUntil > Date.now()) {
      throw new ApiError(429, "rate limited");
    }
    const headers = { Authorization: `Bearer ${token}`, Accept: text ? "text/plain" : "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let res;
    requestsSent++;
    try {
      res = await fetch(path, {
        method, headers, body: body === undefined ? undefined : JSON.stringify(body),
        cache: "no-store", credentials: "omit", referrerPolicy: "no-referrer",
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      });
    } catch (e) {
      throw new ApiError(0, e && e.name === "TimeoutError" ? "timed out" : "network error");
    }
    if (mine !== session) throw new SignedOut("signed out");
    if (res.status === 401 || res.status === 403) {
      const msg = res.status === 401
        ? "Pulse refused this token (401): it is unknown, malformed or expired. Paste a valid admin token."
        : "This token is valid but may not read the admin API (403): use an admin token.";
      signOut(msg);
      throw new SignedOut(msg);
    }
    if (res.status === 429) {
      const after = parseInt(res.headers.get("Retry-After") || "", 10);
      const wait = isFinite(after) && after > 0 ? after : 30;
      pausedUntil = Math.max(pausedUntil, Date.now() + wait * 1000);
      banner(`Pulse's rate limit for this token was reached (429): refreshing pauses for ${wait} s.`);
      throw new ApiError(429, "rate limited");
    }
    if (!res.ok) {
      let message = res.statusText || "error";
      try {
        const b = await res.json();
        if (b && b.message) message = String(b.message);
      } catch (_) { /* not JSON */ }
      throw new ApiError(res.status, message);
    }
    markUpdated();
    return text ? res.text() : res.json();
  }

  function markUpdated() {
    const t = $("updated");
    const now = new Date();
    t.textContent = fmt.time(now).slice(11);
    t.setAttribute("datetime", now.toISOString());
    if (pausedUntil <= Date.now()) banner("");
  }

  function banner(text) {
    const b = $("banner");
    b.textContent = text;
    b.hidden = text === "";
  }

  // ---- sign in and out ----

  function showLogin(message) {
    $("app").hidden = true;
    $("login").hidden = false;
    const m = $("login-message");
    m.textContent = message || "";
    m.hidden = !message;
    $("token").value = "";
    $("token").focus();
  }

  function signOut(message) {
    session++;
    token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    timers.forEach(clearTimeout);
    timers = [];
    showLogin(message);
  }

  function signIn(t) {
    token = t;
    sessionStorage.setItem(TOKEN_KEY, t);
    session++;
    pausedUntil = 0;
    state.stats = null;
    state.insert = null;
    $("login").hidden = true;
    $("app").hidden = false;
    Object.values(panels).forEach(showLoading);
    start();
  }

  // ---- scheduling ----

  function start() {
    const mine = session;
    timers.forEach(clearTimeout);
    timers = [];
    tasks.forEach((task, i) => {
      const tick = async () => {
        if (mine !== session) return;
        if (!document.hidden && pausedUntil <= Date.now()) {
          try {
            await task.run();
          } catch (_) { /* each task shows its own error */ }
        }
        if (mine !== session) return;
        let next = task.every * 1000;
        if (pausedUntil > Date.now()) next = Math.max(next, pausedUntil - Date.now() + task.slot * 1000);
        timers.push(setTimeout(tick, next));
      };
      // First run at once (150 ms apart), the second shifted by the slot.
      timers.push(setTimeout(async () => {
        if (mine !== session) return;
        try {
          await task.run();
        } catch (_) { /* shown by the task */ }
        if (mine === session) timers.push(setTimeout(tick, (task.every + task.slot) * 1000));
      }, i * 150));
    });
  }

  // refreshNow runs every task at once, for the person who does not want
  // to wait for the schedule (after a load test, say). It sends what one
  // round of the schedule sends; the button is disabled until the round
  // is done, and a rate-limit pause is honoured and said.
  async function refreshNow() {
    const button = $("refresh");
    if (pausedUntil > Date.now()) {
      banner(`Pulse's rate limit for this token was reached (429): refreshing resumes in ${Math.ceil((pausedUntil - Date.now()) / 1000)} s.`);
      return;
    }
    button.disabled = true;
    try {
      await Promise.allSettled(tasks.map((task) => task.run()));
    } finally {
      button.disabled = false;
    }
  }

  // ---- Now ----

  async function loadNow() {
    const p = panels.now;
    showLoading(p);
    const [health, alerts] = await Promise.allSettled([
      api("/api/admin/system/health"),
      api("/api/admin/alerts?limit=200"),
    ]);
    if (alerts.status === "fulfilled") {
      state.alerts = alerts.value;
      renderAlerts();
    } else {
      showError(panels.alerts, alerts.reason);
    }
    if (health.status === "rejected") {
      showError(p, health.reason);
      setOverall("unknown", "unknown");
      return;
    }
    renderNow(health.value, alerts.status === "fulfilled" ? alerts.value : null);
    showData(p);
  }

  function setOverall(status, text) {
    const o = $("overall");
    o.dataset.status = statusKey(status);
    o.textContent = text;
  }

  function renderNow(health, alerts) {
    setOverall(health.overall_status, health.overall_status || "unknown");
    const firing = $("firing");
    firing.replaceChildren();
    const list = alerts ? (alerts.alerts || []).filter((a) => a.state === "firing") : null;
    if (list == null) {
      firing.append(h("li", { class: "note" }, "Alerts could not be read: see the Alerts panel."));
    } else if (list.length === 0) {
      firing.append(h("li", { class: "note" }, "Nothing is firing."));
    }
    for (const a of list || []) {
      firing.append(h("li", { class: "alert", status: a.severity },
        badge(a.severity), " ", h("strong", null, a.rule), " ", labelText(a.labels),
        h("span", { class: "note" }, ` since ${fmt.time(a.started_at)} (${fmt.ago(a.started_at)})`)));
    }

    const cards = $("components");
    cards.replaceChildren();
    const uptime = health.uptime || {};
    for (const c of health.components || []) {
      const up = uptime[c.name] || {};
      const upText = ["24h", "7d", "30d"].map((w) => {
        const u = up[w];
        return h("span", { class: "up" }, `${w} `, h("strong", null, u && u.ratio != null ? fmt.pct(u.ratio) : "no checks"));
      });
      const card = h("article", { class: "card", status: c.status, "aria-label": `${c.name}: ${c.status}` },
        h("h4", null, c.name),
        badge(c.status),
        c.reason ? h("p", { class: "note" }, c.reason) : null,
        h("dl", { class: "kv" },
          h("dt", null, "latency"), h("dd", null, fmt.ms(c.response_time_ms)),
          h("dt", null, "last check"), h("dd", null, c.last_checked ? fmt.ago(c.last_checked) : "–")),
        h("p", { class: "uptime" }, h("span", { class: "sr-only" }, "uptime: "), upText),
      );
      if (c.targets && c.targets.length) {
        card.append(h("ul", { class: "targets" }, c.targets.map((t) =>
          h("li", null, `${t.name} `, badge(t.status), ` ${fmt.ms(t.response_time_ms)}`))));
      }
      cards.append(card);
    }
    const pm = health.performance_metrics;
    $("recent").textContent = pm
      ? `Last ${Math.round(pm.window_seconds / 60)} min: ${fmt.num(pm.request_count)} requests, P95 ${fmt.ms(pm.p95_response_time_ms)}, 5xx ${fmt.pct(pm.error_rate)}, ${fmt.num(pm.throughput_rps)} requests/s.`
      : "";
  }

  function labelText(labels) {
    const parts = Object.entries(labels || {}).sort(([a], [b]) => a.localeCompare(b)).map(([k, v]) => `${k}=${v}`);
    return h("span", { class: "labels" }, parts.join(" "));
  }

  // ---- Trends ----

  function trendQuery() {
    const t = state.trend;
    const q = new URLSearchParams({ timeframe: t.timeframe, fill: "true", limit: "20" });
    if (t.service) q.set("service", t.service);
    if (t.endpoint) q.set("endpoint", t.endpoint);
    return `/api/admin/system/performance?${q}`;
  }

  async function loadTrends() {
    const p = panels.trends;
    showLoading(p);
    let perf;
    try {
      perf = await api(trendQuery());
    } catch (e) {
      showError(p, e);
      throw e;
    }
    renderTrends(perf);
  }

  function renderTrends(perf) {
    const p = panels.trends;
    for (const e of perf.slowest_endpoints || []) {
      if (!state.known.has(e.service)) state.known.set(e.service, new Set());
      state.known.get(e.service).add(e.endpoint);
    }
    renderFilters();
    const s = perf.summary || {};
    const dl = $("trend-summary");
    dl.replaceChildren();
    const fig = (k, v) => dl.append(h("div", null, h("dt", null, k), h("dd", null, v)));
    fig("requests", fmt.num(s.count));
    fig("P50", fmt.ms(s.p50_ms));
    fig("P95", fmt.ms(s.p95_ms));
    fig("P99", fmt.ms(s.p99_ms));
    fig("throughput", `${fmt.num(s.requests_per_second)}/s`);
    fig("4xx", fmt.pct(s.error_rate_4xx));
    fig("5xx", fmt.pct(s.error_rate_5xx));

    state.trend.rows = perf.slowest_endpoints || [];
    renderSlowest();
    if (!s.count) {
      showEmpty(p, `No requests in the last ${state.trend.timeframe}${state.trend.service ? ` for ${state.trend.service}` : ""}${state.trend.endpoint ? ` ${state.trend.endpoint}` : ""}.`);
      return;
    }
    showData(p);
    const series = perf.series || [];
    const xs = series.map((b) => Date.parse(b.ts) / 1000);
    const col = (k, scale = 1) => series.map((b) => (b[k] == null ? null : b[k] * scale));
    chart("latency", [xs, col("p50_ms"), col("p95_ms"), col("p99_ms")],
      [{ label: "P50", stroke: "#2563eb" }, { label: "P95", stroke: "#d97706", dash: [6, 3] }, { label: "P99", stroke: "#dc2626", dash: [2, 2] }],
      (v) => fmt.ms(v));
    chart("throughput", [xs, col("requests_per_second")], [{ label: "requests/s", stroke: "#059669", fill: "rgba(5,150,105,0.12)" }],
      (v) => fmt.num(v));
    chart("errors", [xs, col("error_rate_4xx", 100), col("error_rate_5xx", 100)],
      [{ label: "4xx", stroke: "#d97706" }, { label: "5xx", stroke: "#dc2626", dash: [6, 3] }],
      (v) => (v == null ? "–" : `${+v.toPrecision(3)}%`));
  }

  // sparse shows a series' points when it has few values, so that a lone
  // bucket between gaps is seen.
  function sparse(u, si) {
    return u.data[si].filter((v) => v != null).length < 100;
  }

  function chart(name, data, series, value) {
    const holder = $(`chart-${name}`);
    const width = Math.max(holder.clientWidth, 260);
    const old = state.charts[name];
    if (old && old.series.length === series.length + 1) {
      old.setData(data);
      return;
    }
    if (old) old.destroy();
    const opts = {
      width, height: 180,
      cursor: { focus: { prox: 16 } },
      legend: { live: true },
      scales: { x: { time: true } },
      axes: [{}, { size: 60, values: (u, vals) => vals.map((v) => value(v).replace(" ms", "")) }],
      series: [{ label: "time", value: (u, v) => (v == null ? "–" : fmt.time(v * 1000)) },
        ...series.map((s) => ({ width: 2, spanGaps: false, value: (u, v) => value(v), points: { show: sparse }, ...s }))],
    };
    state.charts[name] = new uPlot(opts, data, holder);
  }

  if (typeof ResizeObserver !== "undefined") {
    new ResizeObserver(() => {
      for (const [name, c] of Object.entries(state.charts)) {
        const w = Math.max($(`chart-${name}`).clientWidth, 260);
        if (Math.abs(c.width - w) > 4) c.setSize({ width: w, height: 180 });
      }
    }).observe(document.querySelector(".charts"));
  }

  function renderFilters() {
    const sel = $("service");
    const ep = $("endpoint");
    const t = state.trend;
    const fill = (select, first, values, current) => {
      select.replaceChildren(h("option", { value: "" }, first),
        ...[...values].sort().map((v) => h("option", { value: v }, v)));
      select.value = current;
    };
    const services = new Set(state.known.keys());
    if (t.service) services.add(t.service);
    fill(sel, "all services", services, t.service);
    const eps = new Set();
    for (const [svc, set] of state.known) if (!t.service || svc === t.service) set.forEach((e) => eps.add(e));
    if (t.endpoint) eps.add(t.endpoint);
    fill(ep, "all endpoints", eps, t.endpoint);
  }

  function renderSlowest() {
    const t = state.trend;
    const rows = [...t.rows].sort((a, b) => {
      const x = a[t.sort], y = b[t.sort];
      const c = typeof x === "string" ? String(x).localeCompare(String(y)) : (x ?? -1) - (y ?? -1);
      return t.desc ? -c : c;
    });
    for (const th of document.querySelectorAll("#slowest th")) {
      const key = th.querySelector("button").dataset.sort;
      th.setAttribute("aria-sort", key === t.sort ? (t.desc ? "descending" : "ascending") : "none");
    }
    const tbody = document.querySelector("#slowest tbody");
    tbody.replaceChildren();
    if (rows.length === 0) {
      tbody.append(h("tr", null, h("td", { colspan: 8, class: "note" }, "No endpoints in this window.")));
      return;
    }
    for (const r of rows) {
      const link = h("a", {
        href: "#trends", class: "endpoint",
        onclick: (e) => {
          e.preventDefault();
          setTrend({ service: r.service, endpoint: r.endpoint });
          $("trends-title").scrollIntoView();
        },
      }, r.endpoint);
      link.title = `Show the trend of ${r.service} ${r.endpoint}`;
      tbody.append(h("tr", null,
        h("td", null, r.service), h("td", null, link),
        h("td", { class: "num" }, fmt.num(r.count)),
        h("td", { class: "num" }, fmt.ms(r.p50_ms)), h("td", { class: "num" }, fmt.ms(r.p95_ms)), h("td", { class: "num" }, fmt.ms(r.p99_ms)),
        h("td", { class: "num" }, fmt.pct(r.error_rate_4xx)), h("td", { class: "num" }, fmt.pct(r.error_rate_5xx))));
    }
  }

  function setTrend(change) {
    Object.assign(state.trend, change);
    for (const b of document.querySelectorAll("#timeframes button")) {
      b.setAttribute("aria-pressed", String(b.dataset.timeframe === state.trend.timeframe));
    }
    renderFilters();
    loadTrends().catch(() => {});
  }

  // ---- Resources ----

  async function loadResources() {
    const p = panels.resources;
    showLoading(p);
    let r;
    try {
      r = await api("/api/admin/system/resources");
    } catch (e) {
      showError(p, e);
      throw e;
    }
    const items = r.items || [];
    if (items.length === 0) {
      showEmpty(p, `No host reported resources in the last ${Math.round((r.window_seconds || 600) / 60)} minutes.`);
      return;
    }
    const threshold = r.alert_threshold;
    const byHost = new Map();
    for (const it of items) {
      if (!byHost.has(it.host)) byHost.set(it.host, []);
      byHost.get(it.host).push(it);
    }
    const hosts = $("hosts");
    hosts.replaceChildren();
    for (const [host, list] of [...byHost].sort(([a], [b]) => a.localeCompare(b))) {
      hosts.append(h("article", { class: "card host" }, h("h4", null, host),
        h("ul", { class: "bars" }, list.map((it) => resourceRow(it, threshold)))));
    }
    showData(p);
  }

  function resourceRow(it, threshold) {
    const u = it.utilisation;
    const over = it.above_threshold;
    const bar = h("span", { class: "bar", "aria-hidden": "true" }, h("span", { class: "fill" }), h("span", { class: "mark" }));
    bar.firstChild.style.width = `${Math.min(Math.max((u || 0) * 100, 0), 100)}%`;
    bar.lastChild.style.left = `${Math.min(Math.max(threshold * 100, 0), 100)}%`;
    if (over) bar.dataset.over = "true";
    const qty = (v) => (it.resource === "memory" || it.resource === "disk" ? fmt.bytes(v) : fmt.num(v));
    return h("li", null,
      h("span", { class: "what" }, it.resource, it.name ? ` ${it.name}` : ""),
      bar,
      h("span", { class: "value" }, it.capacity > 0 ? `${fmt.pct(u)} (${qty(it.used)} of ${qty(it.capacity)})` : `${qty(it.used)} used`),
      over ? badge("critical", `above ${fmt.pct(threshold)}`) : badge("healthy", "ok"));
  }

  // ---- Alerts ----

  function renderAlerts() {
    const p = panels.alerts;
    const all = state.alerts.alerts || [];
    const alerts = all.filter((a) => a.kind !== "scaling");
    const scaling = all.filter((a) => a.kind === "scaling");
    const tbody = document.querySelector("#alert-list tbody");
    tbody.replaceChildren();
    if (alerts.length === 0) {
      tbody.append(h("tr", null, h("td", { colspan: 7, class: "note" }, "Nothing fired in the last 24 hours.")));
    }
    for (const a of alerts) {
      tbody.append(h("tr", null,
        h("td", null, badge(a.state)), h("td", null, badge(a.severity)), h("td", null, a.rule),
        h("td", null, labelText(a.labels)),
        h("td", { class: "num" }, `${fmt.num(a.value)} / ${fmt.num(a.threshold)}`),
        h("td", null, fmt.time(a.started_at), a.resolved_at ? h("span", { class: "note" }, ` resolved ${fmt.time(a.resolved_at)}`) : null),
        h("td", null, a.message)));
    }
    const ul = $("scaling");
    ul.replaceChildren();
    if (scaling.length === 0) ul.append(h("li", { class: "note" }, "No scaling recommendation in the last 24 hours."));
    for (const s of scaling) {
      ul.append(h("li", null, badge(s.state), " ", h("strong", null, s.rule), " ", s.message, h("span", { class: "note" }, ` (${fmt.time(s.started_at)})`)));
    }
    showData(p);
  }

  async function loadRules() {
    const ul = $("rule-list");
    let r;
    try {
      r = await api("/api/admin/alerts/rules");
    } catch (e) {
      ul.replaceChildren(h("li", { class: "error" }, describe(e)));
      throw e;
    }
    ul.replaceChildren();
    for (const x of r.instant || []) {
      ul.append(h("li", null, h("strong", null, x.name), ` (instant, ${x.severity}): ${x.field} ${x.op} ${x.value}`));
    }
    for (const x of [...(r.window || []), ...(r.scaling || [])]) {
      ul.append(h("li", null, h("strong", null, x.name), ` (${x.direction ? "scaling" : "window"}, ${x.severity}): ${x.metric} ${x.op} ${x.threshold} for ${x.for} over ${x.window}`));
    }
    if (!ul.firstChild) ul.append(h("li", { class: "note" }, "No rules."));
  }

  // ---- Architecture ----

  async function loadArchitecture() {
    const p = panels.architecture;
    showLoading(p);
    const [hist, comp] = await Promise.allSettled([
      api("/api/admin/architecture/history?limit=50"),
      api("/api/admin/architecture/compliance"),
    ]);
    if (hist.status === "rejected" && comp.status === "rejected") {
      showError(p, hist.reason);
      throw hist.reason;
    }
    const v = $("validations");
    v.replaceChildren();
    if (hist.status === "rejected") {
      v.append(h("p", { class: "error" }, describe(hist.reason)));
    } else {
      renderValidations(v, hist.value.runs || []);
    }
    const c = $("compliance");
    c.replaceChildren();
    if (comp.status === "rejected") {
      c.append(h("p", { class: "error" }, describe(comp.reason)));
    } else {
      renderCompliance(c, comp.value);
    }
    showData(p);
  }

  function renderValidations(root, runs) {
    const latest = new Map();
    for (const r of runs) {
      const k = `${r.component}/${r.validation_type}`;
      if (!latest.has(k) || r.checked_at > latest.get(k).checked_at) latest.set(k, r);
    }
    if (latest.size === 0) {
      root.append(h("p", { class: "note" }, "No validation has run yet: run one above."));
      return;
    }
    const list = [...latest.values()].sort((a, b) => `${a.component}/${a.validation_type}`.localeCompare(`${b.component}/${b.validation_type}`));
    root.append(h("div", { class: "scroll" }, h("table", null,
      h("thead", null, h("tr", null, ["Check", "Result", "Errors", "Warnings", "Info", "Checked"].map((x) => h("th", { scope: "col" }, x)))),
      h("tbody", null, list.map((r) => h("tr", null,
        h("td", null, `${r.component}/${r.validation_type}`),
        h("td", null, badge(r.valid ? "valid" : "invalid", r.valid ? "valid" : "invalid")),
        h("td", { class: "num" }, String(r.errors)), h("td", { class: "num" }, String(r.warnings)), h("td", { class: "num" }, String(r.infos)),
        h("td", null, fmt.time(r.checked_at))))))));
    const bySeverity = { critical: [], warning: [], info: [] };
    for (const r of list) {
      for (const i of r.issues || []) (bySeverity[i.severity] || bySeverity.info).push({ run: r, issue: i });
    }
    for (const sev of ["critical", "warning", "info"]) {
      const found = bySeverity[sev];
      if (found.length === 0) continue;
      root.append(h("details", { class: "findings", open: sev === "critical" },
        h("summary", null, badge(sev), ` ${found.length} ${sev === "info" ? "notes" : sev + "s"}`),
        h("ul", { class: "plain" }, found.map(({ run, issue }) => h("li", null,
          h("strong", null, `${run.component}/${run.validation_type} · ${issue.object}`), ": ", issue.message,
          issue.recommendation ? h("p", { class: "note" }, `Recommendation: ${issue.recommendation}`) : null)))));
    }
  }

  function renderCompliance(root, report) {
    for (const f of report.frameworks || []) {
      root.append(h("article", { class: "card", status: f.compliant ? "pass" : "fail" },
        h("h4", null, f.framework),
        badge(f.compliant ? "pass" : "fail", f.compliant ? "compliant" : "not compliant"),
        h("p", { class: "note" }, `${f.passed} passed, ${f.failed} failed`),
        h("ul", { class: "plain controls-list" }, (f.controls || []).map((c) => h("li", null,
          badge(c.status), " ", c.title,
          c.status !== "pass" && c.recommendations && c.recommendations.length
            ? h("ul", { class: "recs" }, c.recommendations.map((r) => h("li", null, r))) : null)))));
    }
    if (!root.firstChild) root.append(h("p", { class: "note" }, "No compliance frameworks."));
  }

  function fillValidateForm() {
    const comp = $("v-component");
    const typ = $("v-type");
    comp.replaceChildren(...Object.keys(validationPairs).map((c) => h("option", { value: c }, c)));
    comp.value = "deployment";
    const types = () => {
      const prev = typ.value;
      typ.replaceChildren(...validationPairs[comp.value].map((t) => h("option", { value: t }, t)));
      if (validationPairs[comp.value].includes(prev)) typ.value = prev;
    };
    comp.addEventListener("change", types);
    types();
    typ.value = "security";
    $("validate-form").addEventListener("submit", async (e) => {
      e.preventDefault();
      const status = $("validate-status");
      const button = e.target.querySelector("button");
      button.disabled = true;
      status.textContent = `Running ${comp.value}/${typ.value}…`;
      try {
        const r = await api("/api/admin/architecture/validate", {
          method: "POST", body: { component: comp.value, validation_type: typ.value },
        });
        status.textContent = `${r.component}/${r.validation_type}: ${r.valid ? "valid" : "invalid"}, ${(r.issues || []).length} findings.`;
        await loadArchitecture();
      } catch (err) {
        if (!(err instanceof SignedOut)) status.textContent = `Validation failed: ${describe(err)}`;
      } finally {
        button.disabled = false;
      }
    });
  }

  // ---- Pipeline ----

  async function loadPipeline() {
    const p = panels.pipeline;
    showLoading(p);
    const withMetrics = state.pipelineTick++ % 2 === 0;
    const [stats, metrics] = await Promise.allSettled([
      api("/api/admin/system/stats"),
      withMetrics ? api("/metrics", { text: true }) : Promise.resolve(null),
    ]);
    if (stats.status === "rejected") {
      showError(p, stats.reason);
      throw stats.reason;
    }
    const now = Date.now();
    const s = stats.value;
    const prev = state.stats;
    state.stats = { at: now, body: s };
    if (metrics.status === "fulfilled" && metrics.value != null) readInsertLatency(metrics.value, now);

    const dl = $("pipeline-figures");
    dl.replaceChildren();
    const fig = (k, v, note) => dl.append(h("div", null, h("dt", null, k), h("dd", null, v, note ? h("span", { class: "note" }, ` ${note}`) : null)));
    const rate = (get) => {
      if (!prev) return "measuring…";
      const a = get(prev.body), b = get(s);
      if (a == null || b == null) return "–";
      return `${fmt.num(Math.max(b - a, 0) / ((now - prev.at) / 1000))}/s`;
    };
    fig("events accepted", s.ingest ? rate((x) => x.ingest && x.ingest.events_accepted) : "no ingest role here",
      s.ingest ? `${fmt.num(s.ingest.events_accepted)} in all` : "");
    fig("events stored", rate((x) => x.requests_stored), `${fmt.num(s.requests_stored)} in all`);
    fig("stream backlog", `${fmt.num(s.stream.messages)} messages`, fmt.bytes(s.stream.bytes));
    if (s.aggregator) {
      fig("dead letters", fmt.num(s.aggregator.dead_letters));
      fig("insert retries", fmt.num(s.aggregator.insert_retries));
      fig("rows inserted", fmt.num(s.aggregator.rows_inserted), `${fmt.num(s.aggregator.batches_inserted)} batches`);
    } else {
      fig("aggregator", "not in this process");
    }
    if (s.ingest) fig("rejected / unavailable", `${fmt.num(s.ingest.requests_rejected)} / ${fmt.num(s.ingest.requests_unavailable)}`);
    const ins = state.insert;
    fig("insert latency", ins && ins.mean != null ? fmt.ms(ins.mean * 1000) : "–", ins && ins.over ? `mean over ${ins.over}` : "");
    showData(p);
  }

  // readInsertLatency keeps the mean batch insert time, over the last
  // minute when batches were inserted in it, else since the start.
  function readInsertLatency(text, now) {
    const read = (name) => {
      const m = text.match(new RegExp(`^${name} ([0-9.eE+-]+)$`, "m"));
      return m ? Number(m[1]) : null;
    };
    const sum = read("pulse_aggregator_insert_seconds_sum");
    const count = read("pulse_aggregator_insert_seconds_count");
    if (sum == null || count == null) {
      state.insert = { mean: null };
      return;
    }
    const prev = state.insert;
    let mean = count > 0 ? sum / count : null;
    let over = count > 0 ? "all batches" : "";
    if (prev && prev.count != null && count > prev.count) {
      mean = (sum - prev.sum) / (count - prev.count);
      over = `the last ${Math.round((now - prev.at) / 1000)} s`;
    }
    state.insert = { at: now, sum, count, mean, over };
  }

  // ---- wiring ----

  function init() {
    $("login-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const t = $("token").value.trim();
      if (t) signIn(t);
    });
    $("signout").addEventListener("click", () => signOut("Signed out."));
    $("refresh").addEventListener("click", () => refreshNow());
    for (const b of document.querySelectorAll("#timeframes button")) {
      b.addEventListener("click", () => setTrend({ timeframe: b.dataset.timeframe }));
    }
    $("service").addEventListener("change", (e) => setTrend({ service: e.target.value, endpoint: "" }));
    $("endpoint").addEventListener("change", (e) => setTrend({ endpoint: e.target.value }));
    $("trend-form").addEventListener("submit", (e) => e.preventDefault());
    for (const b of document.querySelectorAll("#slowest th button")) {
      b.addEventListener("click", () => {
        const t = state.trend;
        if (t.sort === b.dataset.sort) t.desc = !t.desc;
        else {
          t.sort = b.dataset.sort;
          t.desc = !["service", "endpoint"].includes(t.sort);
        }
        renderSlowest();
      });
    }
    fillValidateForm();
    const saved = sessionStorage.getItem(TOKEN_KEY);
    if (saved) signIn(saved);
    else showLogin("");
  }

  window.pulseDashboard = {
    requestsPerMinute,
    requestsSent: () => requestsSent,
    violations: () => violations.slice(),
    // chartData is what a chart draws now (x values, then each series), for tests.
    chartData: (name) => (state.charts[name] ? state.charts[name].data.map((a) => Array.from(a)) : null),
  };

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
