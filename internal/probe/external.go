package probe

import (
	"context"
	"math"
	"net/http"
	"sync"
	"time"

	"github.com/wedsync/pulse/internal/event"
)

// ExternalHealthy is the answer time under which a dependency is healthy;
// slower answers are degraded.
const ExternalHealthy = time.Second

// Circuit states.
const (
	circuitClosed   = "closed"
	circuitOpen     = "open"
	circuitHalfOpen = "half_open"
)

// breaker is the circuit breaker of one dependency. Only the probe's run
// touches it, one goroutine per dependency.
type breaker struct {
	state    string
	failures int       // consecutive
	openedAt time.Time // when it last opened
}

// externalProbe checks the external dependencies.
type externalProbe struct {
	deps     []Dependency
	breakers []*breaker
	client   *http.Client
	failures int
	cooldown time.Duration
	now      func() time.Time // the breakers' clock
}

type externalDetails struct {
	Error               string   `json:"error,omitempty"`
	Cause               string   `json:"cause,omitempty"`
	HTTPStatus          int      `json:"http_status,omitempty"`
	LatencyMS           *float64 `json:"latency_ms,omitempty"`
	Circuit             string   `json:"circuit"` // after this run: closed, open or half_open
	ConsecutiveFailures int      `json:"consecutive_failures"`
	RetryInS            *float64 `json:"retry_in_s,omitempty"` // open: seconds until the trial call
}

func newExternalProbe(cfg Config) *externalProbe {
	p := &externalProbe{deps: cfg.External, client: newHTTPClient(), failures: cfg.BreakerFailures,
		cooldown: cfg.BreakerCooldown, now: time.Now}
	for range cfg.External {
		p.breakers = append(p.breakers, &breaker{state: circuitClosed})
	}
	return p
}

func (p *externalProbe) component() string { return "external" }
func (p *externalProbe) close()            { p.client.CloseIdleConnections() }

// Probe runs the check once.
func (p *externalProbe) Probe(ctx context.Context) []event.HealthResult {
	h, _ := p.run(ctx)
	return h
}

func (p *externalProbe) run(ctx context.Context) ([]event.HealthResult, []event.ResourceSample) {
	ts := time.Now().UTC()
	if len(p.deps) == 0 {
		return []event.HealthResult{notConfigured(ts, "external", "")}, nil
	}
	out := make([]event.HealthResult, len(p.deps))
	var wg sync.WaitGroup
	for i := range p.deps {
		wg.Go(func() { out[i] = p.check(ctx, ts, p.deps[i], p.breakers[i]) })
	}
	wg.Wait()
	return out, nil
}

// check calls one dependency through its breaker.
func (p *externalProbe) check(ctx context.Context, ts time.Time, dep Dependency, b *breaker) event.HealthResult {
	now := p.now()
	if b.state == circuitOpen {
		if wait := p.cooldown - now.Sub(b.openedAt); wait > 0 {
			d := externalDetails{Error: "circuit open", Circuit: circuitOpen, ConsecutiveFailures: b.failures,
				RetryInS: ptr(math.Ceil(wait.Seconds()))}
			return result(ts, "external", dep.Name, event.StatusCritical, 0, d)
		}
		b.state = circuitHalfOpen // one trial call
	}
	cctx, cancel := context.WithTimeout(ctx, dep.Timeout)
	code, latency, err := get(cctx, p.client, dep.URL, nil)
	cancel()
	d := externalDetails{LatencyMS: ptr(ms(latency))}
	status := byLatency(latency, ExternalHealthy, never)
	switch {
	case err != nil:
		d.Error, d.Cause = "unreachable", cause(err)
	case code >= 500:
		d.Error, d.HTTPStatus = "server error", code
	default:
		d.HTTPStatus = code
	}
	if d.Error == "" {
		b.state, b.failures = circuitClosed, 0
	} else {
		status = event.StatusCritical
		b.failures++
		if b.state == circuitHalfOpen || b.failures >= p.failures {
			b.state, b.openedAt = circuitOpen, p.now()
		}
	}
	d.Circuit, d.ConsecutiveFailures = b.state, b.failures
	return result(ts, "external", dep.Name, status, *d.LatencyMS, d)
}
