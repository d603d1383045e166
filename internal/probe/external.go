package probe

import (
	"context"
	"errors"
	"math"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/wedsync/pulse/internal/event"
)

// ExternalHealthy is the answer time under which a dependency is healthy;
// slower answers are degraded.
const ExternalHealthy = time.Second

// Circuit states, as the details name them.
const (
	circuitClosed   = "closed"
	circuitOpen     = "open"
	circuitHalfOpen = "half_open"
)

// errServerError marks a 5xx answer as a failed call for the breaker.
var errServerError = errors.New("server error")

// breaker is the circuit breaker of one dependency: sony/gobreaker's state
// machine (closed; open after BreakerFailures consecutive failures; after
// BreakerCooldown one trial call, half-open, that closes or opens it
// again), plus what the details report and gobreaker does not keep: the
// consecutive failures across state changes (gobreaker starts counting
// afresh on each) and when the circuit opened. Only the probe's run
// touches it, one goroutine per dependency.
type breaker struct {
	cb       *gobreaker.CircuitBreaker[int] // the call's HTTP status
	failures int                            // consecutive, across state changes
	openedAt atomic.Int64                   // unix ns of the last opening; set by gobreaker's OnStateChange
}

func newBreaker(name string, failures int, cooldown time.Duration) *breaker {
	b := &breaker{}
	b.cb = gobreaker.NewCircuitBreaker[int](gobreaker.Settings{
		Name:        name,
		MaxRequests: 1, // one trial call when half-open
		Timeout:     cooldown,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= uint32(failures) },
		OnStateChange: func(_ string, _, to gobreaker.State) {
			if to == gobreaker.StateOpen {
				b.openedAt.Store(time.Now().UnixNano())
			}
		},
	})
	return b
}

// circuit names b's state.
func (b *breaker) circuit() string {
	switch b.cb.State() {
	case gobreaker.StateOpen:
		return circuitOpen
	case gobreaker.StateHalfOpen:
		return circuitHalfOpen
	}
	return circuitClosed
}

// externalProbe checks the external dependencies.
type externalProbe struct {
	deps     []Dependency
	breakers []*breaker
	client   *http.Client
	cooldown time.Duration
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
	p := &externalProbe{deps: cfg.External, client: newHTTPClient(), cooldown: cfg.BreakerCooldown}
	for _, dep := range cfg.External {
		p.breakers = append(p.breakers, newBreaker(dep.Name, cfg.BreakerFailures, cfg.BreakerCooldown))
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
	var latency time.Duration
	var callErr error
	code, err := b.cb.Execute(func() (int, error) {
		cctx, cancel := context.WithTimeout(ctx, dep.Timeout)
		defer cancel()
		var code int
		code, latency, callErr = get(cctx, p.client, dep.URL, nil)
		if callErr == nil && code >= 500 {
			return code, errServerError
		}
		return code, callErr
	})
	if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
		wait := p.cooldown - time.Since(time.Unix(0, b.openedAt.Load()))
		d := externalDetails{Error: "circuit open", Circuit: circuitOpen, ConsecutiveFailures: b.failures,
			RetryInS: ptr(math.Ceil(max(wait, 0).Seconds()))}
		return result(ts, "external", dep.Name, event.StatusCritical, 0, d)
	}
	d := externalDetails{LatencyMS: ptr(ms(latency))}
	status := byLatency(latency, ExternalHealthy, never)
	switch {
	case callErr != nil:
		d.Error, d.Cause = "unreachable", cause(callErr)
	case code >= 500:
		d.Error, d.HTTPStatus = "server error", code
	default:
		d.HTTPStatus = code
	}
	if d.Error == "" {
		b.failures = 0
	} else {
		status = event.StatusCritical
		b.failures++
	}
	d.Circuit, d.ConsecutiveFailures = b.circuit(), b.failures
	return result(ts, "external", dep.Name, status, *d.LatencyMS, d)
}
