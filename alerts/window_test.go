package alerts_test

import (
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wedsync/pulse/alerts"
	"github.com/wedsync/pulse/internal/chstore"
	"github.com/wedsync/pulse/internal/event"
	"github.com/wedsync/pulse/internal/testenv"
	"github.com/wedsync/pulse/schema"
)

// base is a minute boundary in the recent past: test data lives in the
// minutes after it, and the evaluator's clock walks through them.
func base() time.Time { return time.Now().UTC().Truncate(time.Minute).Add(-2 * time.Hour) }

// minuteOf returns n requests of service spread over minute i after b,
// each taking ms and answering status.
func minuteOf(b time.Time, i, n int, service string, ms float64, status int) []event.Request {
	out := make([]event.Request, n)
	for j := range out {
		ts := b.Add(time.Duration(i)*time.Minute + time.Duration(j)*time.Minute/time.Duration(n))
		out[j] = req(ts, service, "/api/x", status, ms)
	}
	return out
}

// evaluator returns a window evaluator on n and store whose clock is clk.
func evaluator(t testing.TB, n *natsEnv, store *chstore.Store, clk *clock, yaml string) *alerts.Evaluator {
	t.Helper()
	return newEvaluator(t, alerts.EvaluatorConfig{Now: clk.Now, QueryTimeout: 20 * time.Second}, mustParse(t, yaml), n.js, store, nop)
}

func evaluate(t testing.TB, e *alerts.Evaluator) {
	t.Helper()
	if err := e.Evaluate(testCtx(t)); err != nil {
		t.Fatalf("Evaluate: %v", err)
	}
}

// TestHysteresis: a p95 series flapping around the threshold fires once
// and resolves once when a resolve threshold below it is set; the same
// series without hysteresis flaps, which shows the data does cross the
// threshold each time.
func TestHysteresis(t *testing.T) {
	p95s := []float64{1200, 950, 1100, 900, 1050, 850, 1150, 700, 600, 650}
	for name, store := range testenv.Backends(t) {
		t.Run(name, func(t *testing.T) {
			n := newNATS(t)
			c := collect(t, n.nc)
			b := base()
			var reqs []event.Request
			for i, v := range p95s {
				reqs = append(reqs, minuteOf(b, i, 20, "web", v, 200)...)
			}
			insertRequests(t, store, reqs)
			clk := newClock(b)
			e := evaluator(t, n, store, clk, `
window:
  - {name: p95_hysteresis, metric: p95_ms, window: 1m, threshold: 1000, resolve_threshold: 800}
  - {name: p95_flapping, metric: p95_ms, window: 1m, threshold: 1000}
`)
			for i := range p95s {
				clk.Set(b.Add(time.Duration(i+1) * time.Minute))
				evaluate(t, e)
			}
			c.settle(n.nc)
			fires, resolves := c.of("p95_hysteresis", alerts.StateFiring), c.of("p95_hysteresis", alerts.StateResolved)
			if len(fires) != 1 || len(resolves) != 1 {
				t.Fatalf("with hysteresis: %d firing, %d resolved; want 1 and 1", len(fires), len(resolves))
			}
			if v := *resolves[0].alert.Value; v != 700 || !resolves[0].alert.ResolvedAt.Equal(b.Add(8*time.Minute)) {
				t.Errorf("resolved at %v with p95 %v; want at minute 8 with 700", resolves[0].alert.ResolvedAt, v)
			}
			if got := fires[0].alert.Count; got != 1 {
				t.Errorf("firing count %d; want 1", got)
			}
			if got := resolves[0].alert.Count; got != 4 {
				t.Errorf("resolved count %d; want 4 (the evaluations above the threshold: 1200, 1100, 1050, 1150)", got)
			}
			if got := len(c.of("p95_flapping", alerts.StateFiring)); got != 4 {
				t.Errorf("without hysteresis: %d firing; want 4 (the data crosses 1000 four times)", got)
			}
			if s := e.Status(); s.Degraded || s.Evaluations != uint64(len(p95s)) || s.Firing != 0 {
				t.Errorf("status %+v; want healthy, %d evaluations, nothing firing", s, len(p95s))
			}
		})
	}
}

// TestFor: a series fires only once its condition held for `for`; a blip
// shorter than that never fires, and its pending timer is dropped.
func TestFor(t *testing.T) {
	store := testenv.ClickHouse(t)
	n := newNATS(t)
	c := collect(t, n.nc)
	b := base()
	p95s := []float64{1200, 500, 1200, 1200, 1200, 1200, 500}
	var reqs []event.Request
	for i, v := range p95s {
		reqs = append(reqs, minuteOf(b, i, 10, "web", v, 200)...)
	}
	insertRequests(t, store, reqs)
	clk := newClock(b)
	e := evaluator(t, n, store, clk, `
window:
  - {name: p95_for, metric: p95_ms, window: 1m, threshold: 1000, resolve_threshold: 800, for: 2m}
`)
	wantPending := []int{1, 0, 1, 1, 0, 0, 0}
	for i := range p95s {
		clk.Set(b.Add(time.Duration(i+1) * time.Minute))
		evaluate(t, e)
		c.settle(n.nc)
		if got := e.Status().Pending; got != wantPending[i] {
			t.Errorf("after minute %d: %d pending; want %d", i, got, wantPending[i])
		}
		firing := len(c.of("p95_for", alerts.StateFiring))
		if wantFiring := map[bool]int{true: 1, false: 0}[i >= 4]; firing != wantFiring {
			t.Errorf("after minute %d: %d firing messages; want %d", i, firing, wantFiring)
		}
	}
	f := c.of("p95_for", alerts.StateFiring)[0].alert
	if !f.StartedAt.Equal(b.Add(5 * time.Minute)) {
		t.Errorf("started_at %v; want %v, two minutes after the condition started holding", f.StartedAt, b.Add(5*time.Minute))
	}
	if r := c.of("p95_for", alerts.StateResolved); len(r) != 1 || r[0].alert.ID != f.ID {
		t.Errorf("got %d resolved; want 1 of id %s", len(r), f.ID)
	}
}

// TestNoData: keep leaves a firing alert alone without data, resolve
// resolves it, alert fires for want of data and resolves when data is
// back below the threshold.
func TestNoData(t *testing.T) {
	store := testenv.ClickHouse(t)
	n := newNATS(t)
	c := collect(t, n.nc)
	b := base()
	reqs := minuteOf(b, 0, 10, "busy", 1500, 200)
	reqs = append(reqs, minuteOf(b, 1, 10, "quiet", 100, 200)...)
	insertRequests(t, store, reqs)
	clk := newClock(b.Add(time.Minute))
	e := evaluator(t, n, store, clk, `
window:
  - {name: keep, metric: p95_ms, filters: {service: busy}, window: 1m, threshold: 1000, no_data: keep}
  - {name: resolve, metric: p95_ms, filters: {service: busy}, window: 1m, threshold: 1000, no_data: resolve}
  - {name: alert, metric: p95_ms, filters: {service: quiet}, window: 1m, threshold: 1000, no_data: alert}
  - {name: grouped, metric: p95_ms, group_by: [service], filters: {service: nobody}, window: 1m, threshold: 1000, no_data: alert}
`)
	evaluate(t, e) // minute 0: busy is slow, quiet has no data
	clk.Set(b.Add(2 * time.Minute))
	evaluate(t, e) // minute 1: busy has no data, quiet is fast
	c.settle(n.nc)
	count := func(rule, state string) int { return len(c.of(rule, state)) }
	if count("keep", "firing") != 1 || count("keep", "resolved") != 0 {
		t.Errorf("keep: %d firing, %d resolved; want 1 and 0", count("keep", "firing"), count("keep", "resolved"))
	}
	if count("resolve", "firing") != 1 || count("resolve", "resolved") != 1 {
		t.Errorf("resolve: %d firing, %d resolved; want 1 and 1", count("resolve", "firing"), count("resolve", "resolved"))
	}
	if count("alert", "firing") != 1 || count("alert", "resolved") != 1 {
		t.Fatalf("alert: %d firing, %d resolved; want 1 and 1", count("alert", "firing"), count("alert", "resolved"))
	}
	if a := c.of("alert", "firing")[0].alert; a.Value != nil || !strings.Contains(a.Message, "no data") {
		t.Errorf("no-data alert has value %v, message %q; want null and a message saying no data", a.Value, a.Message)
	}
	if count("grouped", "firing") != 1 {
		t.Errorf("grouped rule without any data: %d firing; want 1 rule-wide alert", count("grouped", "firing"))
	}
	if s := e.Status(); s.Firing != 2 {
		t.Errorf("status %+v; want 2 firing (keep and grouped)", s)
	}
}

// TestMetrics: every metric computes what its doc says, on both backends.
func TestMetrics(t *testing.T) {
	for name, store := range testenv.Backends(t) {
		t.Run(name, func(t *testing.T) {
			n := newNATS(t)
			c := collect(t, n.nc)
			b := base()
			now := b.Add(10 * time.Minute)
			var reqs []event.Request
			for i := 1; i <= 100; i++ { // response times 1..100 ms in the last minute, 7 5xx and 3 4xx
				status := 200
				switch {
				case i <= 7:
					status = 503
				case i <= 10:
					status = 404
				}
				reqs = append(reqs, req(now.Add(-time.Minute+time.Duration(i)*time.Second/2), "api", "/api/q", status, float64(i)))
			}
			for i := 0; i < 20; i++ { // a quiet service with too few requests for min_requests
				reqs = append(reqs, req(now.Add(-30*time.Second), "tiny", "/t", 500, 9999))
			}
			for i := 0; i < 30; i++ { // 30 drops in the last 5 minutes against 100 a week earlier
				reqs = append(reqs, req(now.Add(-5*time.Minute+time.Duration(i)*time.Second), "drops", "/d", 200, 10))
			}
			for i := 0; i < 100; i++ {
				reqs = append(reqs, req(now.Add(-7*24*time.Hour-5*time.Minute+time.Duration(i)*time.Second), "drops", "/d", 200, 10))
			}
			insertRequests(t, store, reqs)
			insertResources(t, store, []event.ResourceSample{
				{Timestamp: now.Add(-90 * time.Second), Host: "h1", Resource: "cpu", Utilisation: 0.8},
				{Timestamp: now.Add(-30 * time.Second), Host: "h1", Resource: "cpu", Utilisation: 0.9},
				{Timestamp: now.Add(-30 * time.Second), Host: "h2", Resource: "cpu", Utilisation: 0.2},
				{Timestamp: now.Add(-30 * time.Second), Host: "h1", Resource: "memory", Utilisation: 0.99},
			})
			var health []event.HealthResult
			for i, st := range []string{"critical", "critical", "critical", "healthy", "unknown", "unknown"} {
				health = append(health, event.HealthResult{Timestamp: now.Add(-time.Duration(i+1) * 10 * time.Second), Component: "database", Status: st})
			}
			health = append(health, event.HealthResult{Timestamp: now.Add(-10 * time.Second), Component: "auth", Status: "healthy"})
			insertHealth(t, store, health)

			clk := newClock(now)
			e := evaluator(t, n, store, clk, `
window:
  - {name: p50, metric: p50_ms, filters: {service: api}, window: 1m, threshold: 1}
  - {name: p95, metric: p95_ms, filters: {service: api}, window: 1m, threshold: 1}
  - {name: p99, metric: p99_ms, filters: {service: api, endpoint: /api/q}, window: 1m, threshold: 1}
  - {name: errors, metric: error_rate, group_by: [service, endpoint], window: 1m, threshold: 0.05, min_requests: 50}
  - {name: rps, metric: throughput_rps, filters: {service: api}, window: 1m, threshold: 1}
  - {name: drop, metric: throughput_drop, filters: {service: drops}, window: 5m, threshold: 0.5, min_requests: 50}
  - {name: cpu, metric: resource_utilisation, filters: {resource: cpu}, group_by: [host], window: 2m, threshold: 0.5}
  - {name: health, metric: health_critical, group_by: [component], window: 2m, threshold: 0.5}
scaling:
  - {name: more, direction: up, factor: 1.5, metric: throughput_rps, window: 1m, threshold: 1}
  - {name: fewer, direction: down, factor: 0.5, metric: resource_utilisation, filters: {resource: cpu, host: h2}, window: 2m, threshold: 0.25}
`)
			evaluate(t, e)
			want := map[string]float64{"p50": 51, "p95": 96, "p99": 100, "errors": 0.07, "rps": 100.0 / 60, "drop": 0.7,
				"cpu": 0.85, "health": 0.75, "more": 120.0 / 60, "fewer": 0.2}
			// Transitions are published after Evaluate returns; wait for
			// all of them (a busy machine can take a while).
			testenv.Eventually(t, 10*time.Second, "every rule's alert", func() bool {
				c.settle(n.nc)
				return len(c.all()) >= len(want)
			})
			got := map[string]alerts.Alert{}
			for _, r := range c.all() {
				if _, dup := got[r.alert.Rule]; dup {
					t.Errorf("rule %s fired twice", r.alert.Rule)
				}
				got[r.alert.Rule] = r.alert
			}
			for rule, v := range want {
				a, ok := got[rule]
				if !ok {
					t.Errorf("rule %s did not fire; want value %v", rule, v)
					continue
				}
				if a.Value == nil || math.Abs(*a.Value-v) > 1e-9 {
					t.Errorf("rule %s: value %s; want %v (message %q)", rule, fmtPtr(a.Value), v, a.Message)
				}
			}
			if l := got["errors"].Labels; l["service"] != "api" || l["endpoint"] != "/api/q" {
				t.Errorf("errors labels %v; want the api group only (tiny has fewer than min_requests)", l)
			}
			if l := got["cpu"].Labels; l["host"] != "h1" || l["resource"] != "cpu" {
				t.Errorf("cpu labels %v; want host h1 (h2 is below) and the filter resource=cpu", l)
			}
			if l := got["health"].Labels; l["component"] != "database" {
				t.Errorf("health labels %v; want component database", l)
			}
			more, fewer := got["more"], got["fewer"]
			if more.Kind != alerts.KindScaling || more.Direction != "up" || more.Factor != 1.5 || more.Severity != "info" {
				t.Errorf("scale-up recommendation %+v; want kind scaling, direction up, factor 1.5, severity info", more)
			}
			if fewer.Direction != "down" || fewer.Factor != 0.5 {
				t.Errorf("scale-down recommendation %+v; want direction down, factor 0.5", fewer)
			}
			for _, r := range c.all() {
				want := "pulse.alerts." + r.alert.Severity + "." + r.alert.Rule
				if r.alert.Kind == alerts.KindScaling {
					want = "pulse.scaling." + r.alert.Direction + "." + r.alert.Rule
				}
				if r.subject != want {
					t.Errorf("rule %s published on %q; want %q", r.alert.Rule, r.subject, want)
				}
			}
		})
	}
}

// TestWindowRestart: an evaluator replaced while its alert fires (a new
// process on the same KV bucket) does not fire it again, and resolves it
// when the data recovers, with the same id.
func TestWindowRestart(t *testing.T) {
	store := testenv.ClickHouse(t)
	n := newNATS(t)
	c := collect(t, n.nc)
	b := base()
	reqs := append(minuteOf(b, 0, 10, "web", 2000, 200), minuteOf(b, 1, 10, "web", 2000, 200)...)
	insertRequests(t, store, append(reqs, minuteOf(b, 2, 10, "web", 100, 200)...))
	const yaml = "window:\n  - {name: slow, metric: p95_ms, window: 1m, threshold: 1000}\n"
	clk := newClock(b.Add(time.Minute))
	_, js1 := n.conn(t)
	first := newEvaluator(t, alerts.EvaluatorConfig{Now: clk.Now}, mustParse(t, yaml), js1, store, nop)
	evaluate(t, first)
	fired := c.wait("slow", alerts.StateFiring, 1, 5*time.Second)

	_, js2 := n.conn(t)
	second := newEvaluator(t, alerts.EvaluatorConfig{Now: clk.Now}, mustParse(t, yaml), js2, store, nop)
	clk.Set(b.Add(2 * time.Minute)) // still slow
	evaluate(t, second)
	if s := second.Status(); s.Firing != 1 {
		t.Errorf("restarted evaluator: status %+v; want the alert it found in KV firing", s)
	}
	clk.Set(b.Add(3 * time.Minute)) // recovered
	evaluate(t, second)
	// The evaluators publish on connections of their own: wait for the
	// resolution rather than flushing the collector's.
	c.wait("slow", alerts.StateResolved, 1, 30*time.Second)
	c.settle(n.nc)
	if got := len(c.of("slow", alerts.StateFiring)); got != 1 {
		t.Errorf("got %d firing messages; want 1 (no duplicate after the restart)", got)
	}
	res := c.of("slow", alerts.StateResolved)
	if len(res) != 1 || res[0].alert.ID != fired[0].alert.ID || res[0].alert.Count != 2 {
		t.Errorf("got resolved %+v; want one of id %s with count 2", res, fired[0].alert.ID)
	}
}

// TestClickHouseDown: when ClickHouse stops answering, a firing alert is
// not resolved and the evaluator says it is degraded; once ClickHouse is
// back the evaluation resumes and the alert resolves on real data.
func TestClickHouseDown(t *testing.T) {
	srv := testenv.StartClickHouseServer(t)
	ctx := testCtx(t)
	store, err := chstore.Open(ctx, srv.DSN("alerts_down"), nop)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	if _, err := schema.Migrate(ctx, store); err != nil {
		t.Fatal(err)
	}
	n := newNATS(t)
	c := collect(t, n.nc)
	b := base()
	insertRequests(t, store, append(minuteOf(b, 0, 10, "web", 2000, 200), minuteOf(b, 1, 10, "web", 100, 200)...))
	clk := newClock(b.Add(time.Minute))
	e := newEvaluator(t, alerts.EvaluatorConfig{Now: clk.Now, QueryTimeout: 3 * time.Second},
		mustParse(t, "window:\n  - {name: slow, metric: p95_ms, window: 1m, threshold: 1000, no_data: resolve}\n"), n.js, store, nop)
	evaluate(t, e)
	c.wait("slow", alerts.StateFiring, 1, 5*time.Second)

	srv.Stop()
	clk.Set(b.Add(2 * time.Minute)) // the data of this minute would resolve it
	if err := e.Evaluate(ctx); err == nil {
		t.Fatal("Evaluate with ClickHouse down returned nil")
	}
	c.settle(n.nc)
	if got := len(c.of("slow", alerts.StateResolved)); got != 0 {
		t.Fatalf("got %d resolved messages while ClickHouse was down; want 0", got)
	}
	s := e.Status()
	if !s.Degraded || !strings.Contains(s.Reason, "ClickHouse") || s.Firing != 1 {
		t.Errorf("status %+v; want degraded naming ClickHouse, the alert still firing", s)
	}
	if keys := kvKeys(t, n.kv, "window."); len(keys) != 1 {
		t.Errorf("KV holds %d window alerts; want the firing one", len(keys))
	}

	srv.Start()
	testenv.Eventually(t, 30*time.Second, "evaluation after ClickHouse is back", func() bool {
		return e.Evaluate(ctx) == nil
	})
	c.wait("slow", alerts.StateResolved, 1, 5*time.Second)
	if s := e.Status(); s.Degraded || s.Reason != "" {
		t.Errorf("status %+v; want healthy again", s)
	}
}

// TestLeader: of two replicas exactly one evaluates; stopping it cleanly
// hands over at once, and killing it (its NATS connection gone, no
// release) hands over within the lease time.
func TestLeader(t *testing.T) {
	store := testenv.ClickHouse(t)
	n := newNATS(t)
	const lease = time.Second
	yaml := "window:\n  - {name: slow, metric: p95_ms, window: 1m, threshold: 1000}\n"
	type replica struct {
		e    *alerts.Evaluator
		stop func()
		kill func()
	}
	start := func(name string) *replica {
		nc, js := n.conn(t)
		e := newEvaluator(t, alerts.EvaluatorConfig{Interval: 50 * time.Millisecond, Lease: lease, Instance: name},
			mustParse(t, yaml), js, store, nop)
		stop := testenv.Run(t, e.Run)
		return &replica{e: e, stop: stop, kill: func() { nc.Close(); stop() }}
	}
	leaderOf := func(rs ...*replica) []*replica {
		var out []*replica
		for _, r := range rs {
			if r.e.Status().Leader {
				out = append(out, r)
			}
		}
		return out
	}
	a, b := start("a"), start("b")
	testenv.Eventually(t, 5*time.Second, "a leader", func() bool { return len(leaderOf(a, b)) == 1 })
	leader := leaderOf(a, b)[0]
	other := map[*replica]*replica{a: b, b: a}[leader]
	testenv.Eventually(t, 5*time.Second, "leader evaluating", func() bool { return leader.e.Status().Evaluations >= 5 })
	if s := other.e.Status(); s.Leader || s.Evaluations != 0 {
		t.Fatalf("follower status %+v; want not leader and no evaluations", s)
	}

	// Kill the leader: no release, the follower must notice the lease
	// is no longer renewed.
	killed := time.Now()
	leader.kill()
	testenv.Eventually(t, 3*lease, "takeover after the leader died", func() bool { return other.e.Status().Leader })
	took := time.Since(killed)
	t.Logf("takeover %s after the leader was killed (lease %s)", took, lease)
	// The follower checks every lease/5 and takes over once the revision
	// stood still for a lease: 1.2 leases, plus scheduling slack on a
	// loaded machine (the Eventually above bounds it at 3 leases).
	testenv.Eventually(t, 5*time.Second, "new leader evaluating", func() bool { return other.e.Status().Evaluations > 0 })

	// A clean stop releases the lease: a third replica takes over at once.
	c3 := start("c")
	stopped := time.Now()
	other.stop()
	testenv.Eventually(t, 3*lease, "takeover after a clean stop", func() bool { return c3.e.Status().Leader })
	took = time.Since(stopped)
	t.Logf("takeover %s after a clean stop", took)
	// Without the release it would take a whole lease: anything under
	// one proves the release.
	if took >= lease {
		t.Errorf("takeover after a clean stop took %s; want under the lease %s (released, not expired)", took, lease)
	}
}

func fmtPtr(v *float64) string {
	if v == nil {
		return "null"
	}
	return strconv.FormatFloat(*v, 'g', -1, 64)
}

// TestErrorRateMinSample: an error_rate rule without min_requests takes
// the evaluator's minimum sample (20 by default): the README's three demo
// events, one a 502, fire nothing, while a real spike over the sample does;
// a smaller configured sample rates the three.
func TestErrorRateMinSample(t *testing.T) {
	store := testenv.ClickHouse(t)
	n := newNATS(t)
	c := collect(t, n.nc)
	now := base().Add(10 * time.Minute)
	var reqs []event.Request
	for i, st := range []int{200, 201, 502} { // the README's demo events
		reqs = append(reqs, req(now.Add(-time.Duration(i+1)*time.Second), "demo", "/api/payments", st, 5400))
	}
	for i := range 25 { // 2 of 25 (8%) are 5xx
		st := 200
		if i < 2 {
			st = 503
		}
		reqs = append(reqs, req(now.Add(-time.Duration(i+1)*time.Second), "busy", "/api/forms", st, 40))
	}
	insertRequests(t, store, reqs)
	const yaml = `
window:
  - {name: errors, metric: error_rate, group_by: [service], window: 1m, threshold: 0.01}
`
	fired := func(cfg alerts.EvaluatorConfig, want int) []string {
		t.Helper()
		cfg.Now, cfg.QueryTimeout = newClock(now).Now, 20*time.Second
		evaluate(t, newEvaluator(t, cfg, mustParse(t, yaml), n.js, store, nop))
		// Transitions are published after Evaluate returns.
		testenv.Eventually(t, 10*time.Second, "the alerts", func() bool {
			c.settle(n.nc)
			return len(c.all()) >= want
		})
		var services []string
		for _, r := range c.all() {
			services = append(services, r.alert.Labels["service"])
		}
		slices.Sort(services)
		return services
	}
	if got := fired(alerts.EvaluatorConfig{}, 1); !slices.Equal(got, []string{"busy"}) {
		t.Errorf("default minimum sample: alerts for %v; want busy only (demo has 3 requests < 20)", got)
	}
	// A fresh NATS (fresh alert state) for an evaluator whose sample is 3.
	n = newNATS(t)
	c = collect(t, n.nc)
	if got := fired(alerts.EvaluatorConfig{MinRequests: 3}, 2); !slices.Equal(got, []string{"busy", "demo"}) {
		t.Errorf("minimum sample 3: alerts for %v; want busy and demo", got)
	}
}
