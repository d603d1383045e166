package probe

import (
	"context"
	"time"

	"github.com/wedsync/pulse/internal/event"
)

// API thresholds: the spec's SLOs (average < 500 ms, P95 < 1 s, more than
// 99% success) mark healthy; far beyond them is critical.
const (
	APIAvgDegraded       = 500.0  // ms
	APIP95Degraded       = 1000.0 // ms
	APIP95Critical       = 3000.0 // ms: critical when P95 exceeds it
	APIErrorRateDegraded = 0.01
	APIErrorRateCritical = 0.05 // critical when the 5xx share exceeds it
)

// DefaultMinRequests is the default of Config.MinRequests: the requests a
// window must hold before its latency and error rate are rated.
const DefaultMinRequests = 20

// apiProbe rates the fleet's own recent requests.
type apiProbe struct {
	metrics     Metrics // nil: not configured
	window      time.Duration
	minRequests uint64 // fewer requests in the window are not rated
}

type apiDetails struct {
	Reason     string  `json:"reason,omitempty"`
	Cause      string  `json:"cause,omitempty"`
	Requests   uint64  `json:"requests"`
	MinSample  uint64  `json:"min_requests"` // the requests a window needs to be rated
	WindowS    float64 `json:"window_s"`
	P95MS      float64 `json:"p95_ms,omitempty"`
	AvgMS      float64 `json:"avg_ms,omitempty"`
	ErrorRate  float64 `json:"error_rate"` // 5xx share
	Throughput float64 `json:"requests_per_second"`
}

func newAPIProbe(cfg Config) *apiProbe {
	return &apiProbe{metrics: cfg.Metrics, window: cfg.MetricsWindow, minRequests: uint64(cfg.MinRequests)}
}

func (p *apiProbe) component() string { return "api" }
func (p *apiProbe) close()            {}

// Probe runs the check once.
func (p *apiProbe) Probe(ctx context.Context) []event.HealthResult {
	h, _ := p.run(ctx)
	return h
}

func (p *apiProbe) run(ctx context.Context) ([]event.HealthResult, []event.ResourceSample) {
	ts := time.Now().UTC()
	if p.metrics == nil {
		return []event.HealthResult{notConfigured(ts, "api", "")}, nil
	}
	d := apiDetails{WindowS: p.window.Seconds(), MinSample: p.minRequests}
	p95, avg, errRate, rps, n, err := p.metrics.APIStats(ctx, p.window)
	switch {
	case err != nil:
		d.Reason, d.Cause = "metrics unavailable", cause(err)
		return []event.HealthResult{result(ts, "api", "", event.StatusUnknown, 0, d)}, nil
	case n == 0:
		// No traffic is not a fault: nothing failed.
		d.Reason = "no traffic"
		return []event.HealthResult{result(ts, "api", "", event.StatusHealthy, 0, d)}, nil
	}
	d.Requests, d.P95MS, d.AvgMS, d.ErrorRate, d.Throughput = n, roundMS(p95), roundMS(avg), round4(errRate), round4(rps)
	if n < p.minRequests {
		// A handful of requests (one slow 502 among three) says nothing
		// about the fleet: too few to rate.
		d.Reason = "too few requests to rate"
		return []event.HealthResult{result(ts, "api", "", event.StatusHealthy, d.P95MS, d)}, nil
	}
	status := event.StatusHealthy
	switch {
	case p95 > APIP95Critical || errRate > APIErrorRateCritical:
		status = event.StatusCritical
	case avg >= APIAvgDegraded || p95 >= APIP95Degraded || errRate >= APIErrorRateDegraded:
		status = event.StatusDegraded
	}
	return []event.HealthResult{result(ts, "api", "", status, d.P95MS, d)}, nil
}
