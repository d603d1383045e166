package query_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/wedsync/pulse/internal/event"
	"github.com/wedsync/pulse/internal/testenv"
	"github.com/wedsync/pulse/query"
	"github.com/wedsync/pulse/schema"
)

const (
	// dbDetails carries facts and things no answer may show.
	dbDetails = `{"slow_queries_count": 3, "connection_usage": 12, "max_connections": 100,
		"dsn": "postgres://pulse:hunter2@db.internal:5432/app", "host": "10.0.0.5", "password": "hunter2",
		"nested": {"note": "primary at 10.0.0.5:5432 ok", "api_key": "sk_live_123"}, "pg_stat_statements": true}`
	paymentsDetails = `{"url": "https://payments.internal/health", "status_code": 200, "circuit": "closed"}`
	emailDetails    = `{"error": "unreachable", "cause": "connection refused", "circuit": "open", "last_error": "dial smtp.internal:587"}`
)

// healthDataset is a month of probe runs, relative to now:
//   - database: a run every 10 minutes, mostly healthy; latest healthy;
//   - auth: not configured now (a few runs 8 days ago, when it was);
//   - realtime: never probed;
//   - api: latest degraded, earlier runs of every status;
//   - external: payments healthy, email critical, sms stopped two days ago;
//   - pipeline: latest unknown although configured (its probe could not tell).
func healthDataset(now time.Time) []healthRow {
	var rows []healthRow
	for i := range 31 * 144 {
		st := event.StatusHealthy
		switch {
		case i%50 == 7:
			st = event.StatusCritical
		case i%17 == 3:
			st = event.StatusDegraded
		case i%97 == 5:
			st = event.StatusUnknown
		}
		d := ""
		if i == 0 {
			d = dbDetails
		}
		rows = append(rows, healthRow{ts: now.Add(-30*time.Second - time.Duration(i)*10*time.Minute), component: "database", status: st,
			responseTimeMS: 42 + float64(i%7), details: d})
	}
	for i := range 10 {
		rows = append(rows, healthRow{ts: now.Add(-8*day - time.Duration(i)*time.Minute), component: "auth", status: event.StatusHealthy, responseTimeMS: 80})
	}
	rows = append(rows, healthRow{ts: now.Add(-time.Minute), component: "auth", status: event.StatusUnknown,
		details: `{"configured": false, "reason": "no auth health URL configured"}`})
	for i := 1; i <= 100; i++ {
		st := []string{event.StatusHealthy, event.StatusCritical, event.StatusUnknown, event.StatusDegraded}[i%4]
		rows = append(rows, healthRow{ts: now.Add(-time.Duration(i) * 5 * time.Minute), component: "api", status: st, responseTimeMS: 100})
	}
	rows = append(rows,
		healthRow{ts: now.Add(-15 * time.Second), component: "api", status: event.StatusDegraded, responseTimeMS: 300,
			details: `{"p95_ms": 812.5, "error_rate": 0.004}`},
		healthRow{ts: now.Add(-20 * time.Second), component: "external", target: "payments", status: event.StatusHealthy, responseTimeMS: 120, details: paymentsDetails},
		healthRow{ts: now.Add(-25 * time.Second), component: "external", target: "email", status: event.StatusCritical, responseTimeMS: 5000, details: emailDetails},
		healthRow{ts: now.Add(-2 * day), component: "external", target: "sms", status: event.StatusHealthy, responseTimeMS: 90},
		healthRow{ts: now.Add(-10 * time.Minute), component: "pipeline", status: event.StatusHealthy, responseTimeMS: 3},
		healthRow{ts: now.Add(-10 * time.Second), component: "pipeline", status: event.StatusUnknown, details: `{"reason": "redis check timed out"}`},
	)
	return rows
}

// wantUptime computes uptime from rows as documented: runs in (now-d, now],
// up when healthy or degraded, unknown runs left out.
func wantUptime(rows []healthRow, component string, now time.Time) query.Uptime {
	w := func(d time.Duration) query.UptimeWindow {
		var out query.UptimeWindow
		for _, r := range rows {
			if r.component != component || !r.ts.After(now.Add(-d)) || r.ts.After(now) {
				continue
			}
			switch r.status {
			case event.StatusHealthy, event.StatusDegraded:
				out.Up++
				out.Checks++
			case event.StatusCritical:
				out.Checks++
			}
		}
		if out.Checks > 0 {
			r := float64(out.Up) / float64(out.Checks)
			out.Ratio = &r
		}
		return out
	}
	return query.Uptime{Last24h: w(day), Last7d: w(7 * day), Last30d: w(30 * day)}
}

// currentRequests are requests around the 5-minute window ending now.
func currentRequests(now time.Time) []event.Request {
	r := rand.New(rand.NewPCG(5, 300))
	var out []event.Request
	add := func(ts time.Time, ms float64, status uint16) {
		out = append(out, event.Request{Timestamp: ts, Service: "web", Endpoint: "/api/forms", StatusCode: status, ResponseTimeMS: ms})
	}
	for i := range 1000 {
		status := uint16(200)
		if i%40 == 0 {
			status = 503
		} else if i%25 == 0 {
			status = 404
		}
		add(now.Add(-time.Duration(r.IntN(300))*time.Second), math.Round(math.Exp(math.Log(90)+0.8*r.NormFloat64())*16)/16, status)
	}
	// The window is the minutes holding its end (schema.RecentMinutes).
	from, to := schema.RecentMinutes(now, query.CurrentWindow)
	add(from.Add(-time.Second), 99999, 500) // just outside
	add(now.Add(-10*time.Minute), 99999, 500)
	add(to, 99999, 500) // not yet: the next minute
	return out
}

func TestHealth(t *testing.T) {
	now := testNow()
	rows := healthDataset(now)
	reqs := currentRequests(now)
	// The expected current performance, from the requests of the minutes
	// holding the window's end, [from, to): at 12:03:20, 11:59-12:04.
	from, to := schema.RecentMinutes(now, query.CurrentWindow)
	var in []float64
	var e5 uint64
	var sum float64
	for _, q := range reqs {
		if !q.Timestamp.Before(from) && q.Timestamp.Before(to) {
			in = append(in, q.ResponseTimeMS)
			sum += q.ResponseTimeMS
			if q.StatusCode >= 500 {
				e5++
			}
		}
	}
	slices.Sort(in)
	avg, p95, errRate := sum/float64(len(in)), quantileExact(in, 0.95), float64(e5)/float64(len(in))
	wantPerf := query.CurrentPerformance{WindowSeconds: 300, RequestCount: uint64(len(in)), AvgResponseTime: avg, AvgResponseTimeMS: &avg,
		P95ResponseTimeMS: &p95, ErrorRate: &errRate, ThroughputRPS: float64(len(in)) / now.Sub(from).Seconds()}

	ptr := func(v float64) *float64 { return &v }
	tsp := func(d time.Duration) *time.Time { ts := now.Add(-d); return &ts }
	components := map[string]query.ComponentHealth{
		"database": {Name: "database", Status: "healthy", Configured: true, ResponseTimeMS: ptr(42), LastChecked: tsp(30 * time.Second)},
		"auth":     {Name: "auth", Status: "unknown", Reason: "no auth health URL configured", LastChecked: tsp(time.Minute)},
		"realtime": {Name: "realtime", Status: "unknown", Reason: "no probe results yet"},
		"api":      {Name: "api", Status: "degraded", Configured: true, ResponseTimeMS: ptr(300), LastChecked: tsp(15 * time.Second)},
		"external_services": {Name: "external_services", Status: "critical", Configured: true, Reason: "1 of 2 targets critical: email",
			Error: "1 of 2 targets critical: email", LastError: "email: unreachable: connection refused",
			ResponseTimeMS: ptr(5000), LastChecked: tsp(20 * time.Second), Targets: []query.TargetHealth{
				{Name: "email", Status: "critical", Configured: true, Reason: "unreachable: connection refused",
					Error: "check failed: unreachable", LastError: "unreachable: connection refused",
					ResponseTimeMS: ptr(5000), LastChecked: now.Add(-25 * time.Second)},
				{Name: "payments", Status: "healthy", Configured: true, ResponseTimeMS: ptr(120), LastChecked: now.Add(-20 * time.Second)},
			}},
		"pipeline": {Name: "pipeline", Status: "unknown", Configured: true, Reason: "redis check timed out", ResponseTimeMS: ptr(0),
			LastChecked: tsp(10 * time.Second)},
	}
	details := map[string]any{
		"database": map[string]any{"slow_queries_count": 3.0, "connection_usage": 12.0, "max_connections": 100.0,
			"nested": map[string]any{"note": "primary at [redacted] ok"}, "pg_stat_statements": true},
		"auth":     map[string]any{"configured": false, "reason": "no auth health URL configured"},
		"api":      map[string]any{"p95_ms": 812.5, "error_rate": 0.004},
		"pipeline": map[string]any{"reason": "redis check timed out"},
		"email":    map[string]any{"error": "unreachable", "cause": "connection refused", "circuit": "open", "last_error": "dial [redacted]"},
		"payments": map[string]any{"status_code": 200.0, "circuit": "closed"},
	}

	for name, s := range testenv.Backends(t) {
		t.Run(name, func(t *testing.T) {
			insertHealth(t, s, rows)
			insertRequests(t, s, reqs)
			clk := newClock(now)
			e, _ := newServer(t, query.Config{Now: clk.Now}, s, nil)

			tests := []struct {
				query   string
				overall string
				names   []string
			}{
				{"", "critical", answerNames},
				{"detailed=false", "critical", answerNames},
				{"timeframe=30d", "critical", answerNames},
				{"component=database", "healthy", []string{"database"}},
				{"component=api&detailed=false", "degraded", []string{"api"}},
				{"component=external", "critical", []string{"external_services"}}, // the spec's query schema's name
				{"component=external_services", "critical", []string{"external_services"}},
				{"component=auth", "unknown", []string{"auth"}},         // not configured: no verdict
				{"component=realtime", "unknown", []string{"realtime"}}, // never probed: no verdict
				{"component=pipeline", "degraded", []string{"pipeline"}},
			}
			for _, tt := range tests {
				t.Run(tt.query, func(t *testing.T) {
					var got query.HealthResponse
					getJSON(t, e, "/api/admin/system/health?"+tt.query, &got)
					if got.OverallStatus != tt.overall {
						t.Errorf("got overall_status %q; want %q", got.OverallStatus, tt.overall)
					}
					var want []query.ComponentHealth
					for _, n := range tt.names {
						want = append(want, components[n])
					}
					checkComponents(t, got.Components, want)
					// P95 from the latency histogram: within 0.75% of exact.
					if g := got.PerformanceMetrics.P95ResponseTimeMS; g == nil || math.Abs(*g-p95) > 0.0075*p95 {
						t.Errorf("got performance_metrics p95 %v; want %v within 0.75%%", fmtPtr(g), p95)
					} else {
						wantPerf.P95ResponseTimeMS = g
					}
					if !reflect.DeepEqual(got.PerformanceMetrics, wantPerf) {
						t.Errorf("got performance_metrics %s; want %s", js(got.PerformanceMetrics), js(wantPerf))
					}
					if len(got.Uptime) != len(tt.names) {
						t.Errorf("got uptime of %d components; want %d", len(got.Uptime), len(tt.names))
					}
					for _, n := range tt.names {
						if w := wantUptime(rows, storedName(n), now); !reflect.DeepEqual(got.Uptime[n], w) {
							t.Errorf("uptime of %s: got %s; want %s", n, js(got.Uptime[n]), js(w))
						}
					}
					if !got.LastUpdated.Equal(now) || got.UptimeDefinition != query.UptimeDefinition || got.ErrorRateDefinition != query.ErrorRateDefinition {
						t.Errorf("got last_updated %v, definitions %q, %q", got.LastUpdated, got.UptimeDefinition, got.ErrorRateDefinition)
					}
				})
			}

			// The uptime arithmetic is not vacuous: the windows differ.
			u := wantUptime(rows, "database", now)
			if u.Last24h.Checks == u.Last30d.Checks || *u.Last24h.Ratio == *u.Last30d.Ratio || u.Last30d.Checks != 4320-u30Unknown(rows, now) {
				t.Errorf("database uptime windows look degenerate: %s", js(u))
			}

			t.Run("detailed", func(t *testing.T) {
				var got query.HealthResponse
				r := getJSON(t, e, "/api/admin/system/health?detailed=true", &got)
				for _, c := range got.Components {
					checkDetails(t, c.Name, c.Details, details[c.Name])
					for _, tg := range c.Targets {
						checkDetails(t, c.Name+"/"+tg.Name, tg.Details, details[tg.Name])
					}
				}
				for _, secret := range []string{"hunter2", "10.0.0.5", "db.internal", "payments.internal", "smtp.internal", "sk_live", "postgres://"} {
					if bytes.Contains(r.Body, []byte(secret)) {
						t.Errorf("the answer holds %q: %s", secret, r.Body)
					}
				}
			})

			t.Run("stale", func(t *testing.T) {
				// Six minutes on, with no new probe results, nothing is current.
				clk.Set(now.Add(6 * time.Minute))
				defer clk.Set(now)
				var got query.HealthResponse
				getJSON(t, e, "/api/admin/system/health?component=database", &got)
				c := got.Components[0]
				if got.OverallStatus != "degraded" || c.Status != "unknown" || !c.Configured ||
					c.Reason != "no probe result since "+now.Add(-30*time.Second).Format(time.RFC3339) || c.ResponseTimeMS != nil {
					t.Errorf("got overall %q, component %s; want degraded, unknown and configured, with the time of the last result", got.OverallStatus, js(c))
				}
				getJSON(t, e, "/api/admin/system/health?component=external_services", &got)
				c = got.Components[0]
				if got.OverallStatus != "degraded" || c.Status != "unknown" || len(c.Targets) != 3 || c.Reason != "3 of 3 targets unknown: email, payments, sms" {
					t.Errorf("got overall %q, component %s; want degraded, unknown with 3 stale targets", got.OverallStatus, js(c))
				}
			})
		})
	}
}

// answerNames are the components health answers, in order: the spec's
// names, and pipeline.
var answerNames = []string{"database", "auth", "realtime", "api", "external_services", "pipeline"}

// storedName is the name the probes store a component under.
func storedName(answered string) string {
	if answered == query.ExternalServices {
		return "external"
	}
	return answered
}

// u30Unknown counts the unknown database runs of the last 30 days.
func u30Unknown(rows []healthRow, now time.Time) uint64 {
	var n uint64
	for _, r := range rows {
		if r.component == "database" && r.status == event.StatusUnknown && r.ts.After(now.Add(-30*day)) {
			n++
		}
	}
	return n
}

func checkComponents(t *testing.T, got, want []query.ComponentHealth) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d components %s; want %d", len(got), js(got), len(want))
	}
	for i := range want {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Errorf("component %d:\ngot  %s\nwant %s", i, js(got[i]), js(want[i]))
		}
	}
}

func checkDetails(t *testing.T, what string, got map[string]any, want any) {
	t.Helper()
	if want == nil {
		if len(got) != 0 {
			t.Errorf("%s: got details %s; want none", what, js(got))
		}
		return
	}
	if !reflect.DeepEqual(any(got), want) {
		t.Errorf("%s: got details %s; want %s", what, js(got), js(want))
	}
}

func js(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

func TestHealthCache(t *testing.T) {
	now := testNow()
	for name, s := range testenv.Backends(t) {
		t.Run(name, func(t *testing.T) {
			insertHealth(t, s, []healthRow{{ts: now.Add(-time.Minute), component: "database", status: "healthy", responseTimeMS: 12}})
			clk := newClock(now)
			cache := newMemCache(clk.Now)
			e, api := newServer(t, query.Config{Now: clk.Now}, s, cache)
			status := func(want, wantCache string) []byte {
				t.Helper()
				var got query.HealthResponse
				r := getJSON(t, e, "/api/admin/system/health?component=database", &got)
				if got.Components[0].Status != want || r.Header.Get("X-Cache") != wantCache {
					t.Errorf("at %v: got status %q (X-Cache %q); want %q (%q)", clk.Now().Sub(now), got.Components[0].Status,
						r.Header.Get("X-Cache"), want, wantCache)
				}
				return r.Body
			}
			first := status("healthy", "miss")
			// A new probe result arrives; within 30 s the cached answer stands.
			insertHealth(t, s, []healthRow{{ts: now, component: "database", status: "critical", responseTimeMS: 900}})
			clk.Advance(29 * time.Second)
			if second := status("healthy", "hit"); !bytes.Equal(first, second) {
				t.Errorf("cached answer differs:\n%s\n%s", first, second)
			}
			if gets, hits, sets := cache.counts(); gets != 2 || hits != 1 || sets != 1 {
				t.Errorf("cache: got %d gets, %d hits, %d sets; want 2, 1, 1", gets, hits, sets)
			}
			if st := api.CacheStats(); st.Hits != 1 || st.Misses != 1 {
				t.Errorf("got cache stats %+v; want 1 hit, 1 miss", st)
			}
			clk.Advance(2 * time.Second)
			status("critical", "miss")
			// Another query is another key.
			var got query.HealthResponse
			if r := getJSON(t, e, "/api/admin/system/health?component=database&detailed=true", &got); r.Header.Get("X-Cache") != "miss" {
				t.Errorf("detailed answer: got X-Cache %q; want miss", r.Header.Get("X-Cache"))
			}
			for key, ttl := range cache.ttls {
				if ttl != 30*time.Second {
					t.Errorf("%s: got TTL %v; want 30s", key, ttl)
				}
			}

			// Performance answers live as long as their timeframe suits.
			for tf, ttl := range map[string]time.Duration{"1h": 10 * time.Second, "24h": 30 * time.Second, "7d": time.Minute, "30d": time.Minute} {
				target := "/api/admin/system/performance?timeframe=" + tf + "&service=web"
				var p query.PerformanceResponse
				if r := getJSON(t, e, target, &p); r.Header.Get("X-Cache") != "miss" {
					t.Errorf("%s: got X-Cache %q; want miss", target, r.Header.Get("X-Cache"))
				}
				if cache.lastTTL != ttl {
					t.Errorf("%s: got TTL %v; want %v", target, cache.lastTTL, ttl)
				}
				// The same query, written differently, is the same key.
				same := "/api/admin/system/performance?service=web&timeframe=" + tf
				if r := getJSON(t, e, same, &p); r.Header.Get("X-Cache") != "hit" {
					t.Errorf("%s: got X-Cache %q; want hit", same, r.Header.Get("X-Cache"))
				}
			}
			// No timeframe is 24h; an empty service is none.
			var p query.PerformanceResponse
			if r := getJSON(t, e, "/api/admin/system/performance?service=web", &p); r.Header.Get("X-Cache") != "hit" {
				t.Errorf("default timeframe: got X-Cache %q; want hit", r.Header.Get("X-Cache"))
			}
			clk.Advance(11 * time.Second)
			for tf, want := range map[string]string{"1h": "miss", "24h": "hit", "30d": "hit"} {
				if r := getJSON(t, e, "/api/admin/system/performance?service=web&timeframe="+tf, &p); r.Header.Get("X-Cache") != want {
					t.Errorf("%s after 11s: got X-Cache %q; want %s", tf, r.Header.Get("X-Cache"), want)
				}
			}
		})
	}
}

// TestConcurrent: many callers at once, with a cache and without, get the
// same answers (run with -race).
func TestConcurrent(t *testing.T) {
	now := testNow()
	for name, s := range testenv.Backends(t) {
		t.Run(name, func(t *testing.T) {
			insertHealth(t, s, healthDataset(now))
			insertRequests(t, s, currentRequests(now))
			cached, _ := newServer(t, query.Config{Now: func() time.Time { return now }}, s, newMemCache(func() time.Time { return now }))
			plain, _ := newServer(t, query.Config{Now: func() time.Time { return now }}, s, nil)
			targets := []string{"/api/admin/system/health", "/api/admin/system/performance?timeframe=1h", "/api/admin/system/resources"}
			want := map[string][]byte{}
			for _, target := range targets {
				want[target] = testenv.Get(t, plain, target, adminToken).Body
			}
			var wg sync.WaitGroup
			errs := make(chan string, 100)
			for i := range 12 {
				wg.Go(func() {
					e := cached
					if i%2 == 1 {
						e = plain
					}
					for _, target := range targets {
						r := testenv.Get(t, e, target, adminToken)
						if r.Status != http.StatusOK || !bytes.Equal(r.Body, want[target]) {
							errs <- fmt.Sprintf("%s: got %d, %d bytes; want 200 and the same answer", target, r.Status, len(r.Body))
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for e := range errs {
				t.Error(e)
			}
		})
	}
}
