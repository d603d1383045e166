package alerts

import (
	"context"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/wedsync/pulse/aggregator"
	"github.com/wedsync/pulse/alerts/rules"
	"github.com/wedsync/pulse/internal/event"
	"github.com/wedsync/pulse/internal/testenv"
)

// TestRollupWindows: request rules of windows of rollupWindow or more read
// the rollups over the minutes holding the window's end (now 12:10:20, a
// 10-minute window: 12:01-12:11), and agree with the exact figures of those
// minutes' requests: counts, error rate and rates exactly, percentiles
// within the histogram's 0.75%, per service, per endpoint and for one
// endpoint, on both backends.
func TestRollupWindows(t *testing.T) {
	base := time.Now().UTC().Truncate(time.Hour).Add(-3 * time.Hour)
	now := base.Add(10*time.Minute + 20*time.Second)
	from := base.Add(time.Minute) // 10 whole minutes up to the end of the current one
	var reqs []event.Request
	exact := map[string][]float64{} // endpoint -> response times in the window
	var n, e5 uint64
	for k := range 2000 { // one every 0.4 s, back from now: 13 minutes and 20 s
		ts := now.Add(-time.Duration(k) * 400 * time.Millisecond).Truncate(time.Second)
		ep := []string{"/a", "/b"}[k%2]
		ms := float64(k%300+1) * float64(k%2+1)
		status := uint16(200)
		if k%10 == 3 {
			status = 503
		}
		reqs = append(reqs, event.Request{Timestamp: ts, Service: "api", Endpoint: ep, Method: "GET", StatusCode: status, ResponseTimeMS: ms, RequestID: "r"})
		if !ts.Before(from) {
			exact[ep] = append(exact[ep], ms)
			n++
			if status >= 500 {
				e5++
			}
		}
	}
	// Another service, out of every filter below but in the unfiltered rule.
	reqs = append(reqs, event.Request{Timestamp: now.Add(-time.Minute), Service: "web", Endpoint: "/a", Method: "GET", StatusCode: 200, ResponseTimeMS: 5, RequestID: "r"})
	quantile := func(v []float64, level float64) float64 {
		s := slices.Sorted(slices.Values(v))
		return s[int(level*float64(len(s)))]
	}
	for name, s := range testenv.Backends(t) {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := s.Insert(ctx, "", "requests", aggregator.Columns(reqs, 1)); err != nil {
				t.Fatal(err)
			}
			f := func(r rules.Window, want map[string]float64, tolerance float64) {
				t.Helper()
				r.Window = rules.Duration(10 * time.Minute)
				got, err := evaluate(ctx, s, &r, now)
				if err != nil {
					t.Fatalf("%s: %v", r.Name, err)
				}
				if len(got) != len(want) {
					t.Fatalf("%s: got %d groups %v; want %d", r.Name, len(got), got, len(want))
				}
				for _, sm := range got {
					w, ok := want[sm.labels["endpoint"]]
					if !ok || !sm.ok || math.Abs(sm.value-w) > tolerance*w {
						t.Errorf("%s %v: got %v (ok %v); want %v within %g%%", r.Name, sm.labels, sm.value, sm.ok, w, tolerance*100)
					}
				}
			}
			all := append(slices.Clone(exact["/a"]), exact["/b"]...)
			f(rules.Window{Name: "p95 by endpoint", Metric: rules.MetricP95, GroupBy: []string{"endpoint"}, Filters: rules.Filters{Service: "api"}},
				map[string]float64{"/a": quantile(exact["/a"], 0.95), "/b": quantile(exact["/b"], 0.95)}, 0.0075)
			f(rules.Window{Name: "p99 of /b", Metric: rules.MetricP99, Filters: rules.Filters{Service: "api", Endpoint: "/b"}},
				map[string]float64{"": quantile(exact["/b"], 0.99)}, 0.0075)
			f(rules.Window{Name: "p50 of api", Metric: rules.MetricP50, Filters: rules.Filters{Service: "api"}},
				map[string]float64{"": quantile(all, 0.5)}, 0.0075)
			f(rules.Window{Name: "error rate", Metric: rules.MetricErrorRate, Filters: rules.Filters{Service: "api"}},
				map[string]float64{"": float64(e5) / float64(n)}, 1e-12)
			// The window covers 9 minutes and 20 seconds up to now.
			f(rules.Window{Name: "throughput", Metric: rules.MetricThroughput},
				map[string]float64{"": float64(n+1) / now.Sub(from).Seconds()}, 1e-12)
		})
	}
}
