package probe

import (
	"context"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/wedsync/pulse/aggregator"
	"github.com/wedsync/pulse/internal/chstore"
	"github.com/wedsync/pulse/internal/event"
	"github.com/wedsync/pulse/internal/testenv"
)

// reqs makes n requests at ts of one service and endpoint with the given
// status and response time.
func reqs(ts time.Time, service, endpoint string, n int, code uint16, rt float64) []event.Request {
	out := make([]event.Request, n)
	for i := range out {
		out[i] = event.Request{Timestamp: ts, Service: service, Endpoint: endpoint, Method: "GET", StatusCode: code,
			ResponseTimeMS: rt, RequestID: fmt.Sprintf("%s-%s-%d-%d-%d", service, endpoint, code, ts.Unix(), i)}
	}
	return out
}

func insert(t *testing.T, s *chstore.Store, rows ...[]event.Request) {
	t.Helper()
	var all []event.Request
	for _, r := range rows {
		all = append(all, r...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Insert(ctx, "", "requests", aggregator.Columns(all, 1)); err != nil {
		t.Fatal(err)
	}
}

// fixed is a metrics source whose clock stands at now.
func fixed(s *chstore.Store, now time.Time) StoreMetrics {
	return StoreMetrics{Store: s, Now: func() time.Time { return now }}
}

// TestAPIProbe rates windows of known requests on both ClickHouse
// backends. Each case has its own hour, and the metrics' clock is set to
// the end of its window.
func TestAPIProbe(t *testing.T) {
	base := time.Now().UTC().Truncate(time.Hour).Add(-48 * time.Hour)
	type want struct {
		status         string
		p95, avg, rate float64
		n              uint64
	}
	type apiCase struct {
		name string
		rows [][]event.Request
		want want
	}
	var cases []apiCase
	at := func(i int) time.Time { return base.Add(time.Duration(i) * time.Hour) }
	add := func(name string, w want, rows ...[]event.Request) { cases = append(cases, apiCase{name, rows, w}) }
	add("healthy", want{event.StatusHealthy, 80, 62, 0, 100},
		reqs(at(0), "web", "/api/forms", 60, 200, 50), reqs(at(0), "web", "/api/forms", 40, 201, 80))
	add("slow average", want{event.StatusDegraded, 600, 600, 0, 50},
		reqs(at(1), "web", "/api/forms", 50, 200, 600))
	add("p95 over 1s", want{event.StatusDegraded, 1500, 0.9*100 + 0.1*1500, 0, 100},
		reqs(at(2), "web", "/api/a", 90, 200, 100), reqs(at(2), "web", "/api/b", 10, 200, 1500))
	add("2% errors", want{event.StatusDegraded, 100, 100, 0.02, 100},
		reqs(at(3), "web", "/api/a", 98, 200, 100), reqs(at(3), "web", "/api/a", 2, 502, 100))
	add("4xx are not errors", want{event.StatusHealthy, 100, 100, 0, 100},
		reqs(at(4), "web", "/api/a", 50, 200, 100), reqs(at(4), "web", "/api/a", 50, 404, 100))
	add("p95 over 3s", want{event.StatusCritical, 4000, 0.9*100 + 0.1*4000, 0, 100},
		reqs(at(5), "web", "/api/a", 90, 200, 100), reqs(at(5), "web", "/api/b", 10, 200, 4000))
	add("10% errors", want{event.StatusCritical, 100, 100, 0.1, 100},
		reqs(at(6), "web", "/api/a", 90, 200, 100), reqs(at(6), "web", "/api/a", 10, 500, 100))
	add("no traffic", want{event.StatusHealthy, 0, 0, 0, 0}) // no traffic is not a fault

	for name, store := range testenv.Backends(t) {
		t.Run(name, func(t *testing.T) {
			for _, c := range cases {
				if len(c.rows) > 0 {
					insert(t, store, c.rows...)
				}
			}
			for i, c := range cases {
				// The window (end - 5m, end] holds case i's rows only.
				m := fixed(store, at(i).Add(time.Minute))
				p95, avg, rate, rps, n, err := m.APIStats(context.Background(), 5*time.Minute)
				if err != nil {
					t.Fatalf("%s: %v", c.name, err)
				}
				// A 5-minute window reads the rollups: P95 from the latency
				// histogram, within 0.75% of exact.
				if n != c.want.n || math.Abs(p95-c.want.p95) > 0.0075*c.want.p95 || math.Abs(avg-c.want.avg) > 1e-9 || math.Abs(rate-c.want.rate) > 1e-12 {
					t.Errorf("%s: n %d p95 %v avg %v rate %v; want %d %v %v %v", c.name, n, p95, avg, rate, c.want.n, c.want.p95, c.want.avg, c.want.rate)
				}
				if wantRPS := float64(c.want.n) / 300; math.Abs(rps-wantRPS) > 1e-12 {
					t.Errorf("%s: rps %v; want %v", c.name, rps, wantRPS)
				}
				h, d := one(t, &apiProbe{metrics: m, window: 5 * time.Minute, minRequests: DefaultMinRequests}, 10*time.Second)
				wantStatus(t, c.name, h, c.want.status)
				if c.want.n == 0 {
					if d["reason"] != "no traffic" {
						t.Errorf("%s: reason %v; want no traffic", c.name, d["reason"])
					}
					continue
				}
				if math.Abs(h.ResponseTimeMS-p95) > 0.0005 || d["requests"] != float64(c.want.n) {
					t.Errorf("%s: response_time_ms %v, requests %v; want p95 %v (to the µs), %d", c.name, h.ResponseTimeMS, d["requests"], p95, c.want.n)
				}
			}
		})
	}
}

// TestAPIProbeMinSample: a window of fewer than the minimum sample is not
// rated (the README's three demo events, one a slow 502, are healthy),
// while a real error spike over the sample still is.
func TestAPIProbeMinSample(t *testing.T) {
	store := testenv.ClickHouse(t)
	base := time.Now().UTC().Truncate(time.Hour).Add(-24 * time.Hour)
	demo := append(append(reqs(base, "web", "/api/clients/1", 1, 200, 42), reqs(base, "web", "/api/forms", 1, 201, 130.5)...),
		reqs(base, "api", "/api/payments", 1, 502, 5400)...)
	spike := append(reqs(base.Add(time.Hour), "web", "/api/a", 19, 200, 40), reqs(base.Add(time.Hour), "web", "/api/a", 1, 502, 40)...)
	insert(t, store, demo, spike)
	f := func(name string, end time.Time, minRequests uint64, wantSt, wantReason string) {
		t.Helper()
		h, d := one(t, &apiProbe{metrics: fixed(store, end), window: 5 * time.Minute, minRequests: minRequests}, 10*time.Second)
		wantStatus(t, name, h, wantSt)
		if r, _ := d["reason"].(string); r != wantReason || d["min_requests"] != float64(minRequests) {
			t.Errorf("%s: reason %q, min_requests %v; want %q, %d", name, r, d["min_requests"], wantReason, minRequests)
		}
	}
	f("demo events", base.Add(time.Minute), DefaultMinRequests, event.StatusHealthy, "too few requests to rate")
	f("demo events, sample 3", base.Add(time.Minute), 3, event.StatusCritical, "")
	f("5% errors over 20 requests", base.Add(time.Hour+time.Minute), DefaultMinRequests, event.StatusDegraded, "")
}

// TestAPIProbeMetricsDown: a metrics source that cannot answer makes api
// unknown, with a reason.
func TestAPIProbeMetricsDown(t *testing.T) {
	store := testenv.ClickHouse(t)
	// What a 5-minute window reads: the per-service rollups.
	for _, table := range []string{"requests_1m_svc", "requests_5m_svc", "requests_1h_svc"} {
		if err := store.Exec(context.Background(), "DROP TABLE "+store.T(table)); err != nil {
			t.Fatal(err)
		}
	}
	h, d := one(t, &apiProbe{metrics: StoreMetrics{Store: store}, window: 5 * time.Minute}, 5*time.Second)
	wantStatus(t, "rollup tables gone", h, event.StatusUnknown)
	if d["reason"] != "metrics unavailable" {
		t.Errorf("details %v; want reason metrics unavailable", d)
	}
	h, _ = one(t, newAPIProbe(testConfig(Config{})), time.Second)
	wantStatus(t, "not configured", h, event.StatusUnknown)
}

// TestAuthFailureRate checks which requests count as auth requests and as
// failures, and how the rate rates the auth component.
func TestAuthFailureRate(t *testing.T) {
	base := time.Now().UTC().Truncate(time.Hour).Add(-72 * time.Hour)
	at := func(i int) time.Time { return base.Add(time.Duration(i) * time.Hour) }
	type tc struct {
		name   string
		rows   [][]event.Request
		rate   float64
		n      uint64
		status string
		note   string
	}
	cases := []tc{
		{"all fine", [][]event.Request{reqs(at(0), "web", "/auth/v1/token", 20, 200, 30)}, 0, 20, event.StatusHealthy, ""},
		{"401 and 403 are failed logins", [][]event.Request{
			reqs(at(1), "web", "/auth/v1/token", 18, 200, 30), reqs(at(1), "web", "/auth/v1/token", 1, 401, 30),
			reqs(at(1), "web", "/api/auth/login", 1, 403, 30),
			// A 401 outside the auth routes is not a login.
			reqs(at(1), "web", "/api/forms", 30, 401, 30),
		}, 0.1, 20, event.StatusDegraded, ""},
		{"10% 5xx", [][]event.Request{
			reqs(at(2), "web", "/api/auth/login", 18, 200, 30), reqs(at(2), "web", "/api/auth/login", 2, 503, 30),
			// Not auth requests: they must not count.
			reqs(at(2), "web", "/api/forms", 50, 500, 30), reqs(at(2), "web", "/authors", 50, 500, 30),
		}, 0.1, 20, event.StatusDegraded, ""},
		{"30% 5xx and 429 of service auth", [][]event.Request{
			reqs(at(3), "auth", "/token", 14, 200, 30), reqs(at(3), "auth", "/token", 3, 500, 30), reqs(at(3), "auth", "/verify", 3, 429, 30),
		}, 0.3, 20, event.StatusCritical, ""},
		{"too few to rate", [][]event.Request{reqs(at(4), "auth", "/token", 5, 500, 30)}, 1, 5, event.StatusHealthy, "too few requests"},
		{"no auth traffic", nil, 0, 0, event.StatusHealthy, "too few requests"},
	}
	srv := newSwitchServer(t, ok)
	for name, store := range testenv.Backends(t) {
		t.Run(name, func(t *testing.T) {
			for _, c := range cases {
				if len(c.rows) > 0 {
					insert(t, store, c.rows...)
				}
			}
			for i, c := range cases {
				m := fixed(store, at(i).Add(time.Minute))
				rate, n, err := m.AuthFailureRate(context.Background(), 5*time.Minute)
				if err != nil {
					t.Fatalf("%s: %v", c.name, err)
				}
				if n != c.n || math.Abs(rate-c.rate) > 1e-12 {
					t.Errorf("%s: rate %v of %d; want %v of %d", c.name, rate, n, c.rate, c.n)
				}
				p := newAuth(t, Config{AuthHealthURL: srv.url("/auth/v1/health")})
				p.metrics = m
				h, d := one(t, p, 10*time.Second)
				wantStatus(t, c.name, h, c.status)
				if c.note != "" && d["metrics"] != c.note {
					t.Errorf("%s: metrics %v; want %s", c.name, d["metrics"], c.note)
				}
				if c.n > 0 && d["failure_rate"] != c.rate {
					t.Errorf("%s: failure_rate %v; want %v", c.name, d["failure_rate"], c.rate)
				}
			}
		})
	}
}
