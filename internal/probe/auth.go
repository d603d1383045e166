package probe

import (
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/wedsync/pulse/internal/event"
)

// Auth thresholds.
const (
	AuthHealthy         = 200 * time.Millisecond // slower answers are degraded
	AuthFailureDegraded = 0.05                   // failure rate from which auth is degraded
	AuthFailureCritical = 0.25                   // and critical
	MinAuthRequests     = 10                     // fewer auth requests in the window are not rated
)

// maxBody bounds what a check reads of an answer.
const maxBody = 64 << 10

// newHTTPClient returns a client of the probe's own, which follows no
// redirect (a redirect would carry the apikey header to another host) and
// keeps a connection alive between runs, so that a run measures the
// service rather than the connection setup (except the first run).
func newHTTPClient() *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			ForceAttemptHTTP2:     true,
			MaxIdleConnsPerHost:   2,
			IdleConnTimeout:       time.Minute,
			TLSHandshakeTimeout:   5 * time.Second,
			ExpectContinueTimeout: time.Second,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// get sends a GET and reads (at most maxBody of) the answer; it returns the
// status and the time to the end of the answer.
func get(ctx context.Context, c *http.Client, url string, header http.Header) (int, time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, 0, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("User-Agent", "pulse-probe")
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return 0, time.Since(start), err
	}
	_, err = io.Copy(io.Discard, io.LimitReader(resp.Body, maxBody))
	resp.Body.Close()
	return resp.StatusCode, time.Since(start), err
}

// authProbe checks the auth service.
type authProbe struct {
	url     string // "": not configured
	header  http.Header
	client  *http.Client
	metrics Metrics
	window  time.Duration
}

type authDetails struct {
	Error        string   `json:"error,omitempty"`
	Cause        string   `json:"cause,omitempty"`
	HTTPStatus   int      `json:"http_status,omitempty"`
	LatencyMS    float64  `json:"latency_ms"`
	FailureRate  *float64 `json:"failure_rate"`            // null when unknown
	AuthRequests *uint64  `json:"auth_requests,omitempty"` // in the window
	WindowS      float64  `json:"window_s"`
	Metrics      string   `json:"metrics,omitempty"` // why the failure rate is not rated: not configured, unavailable, too few requests
}

func newAuthProbe(cfg Config) *authProbe {
	p := &authProbe{url: cfg.AuthHealthURL, client: newHTTPClient(), metrics: cfg.Metrics, window: cfg.MetricsWindow, header: http.Header{}}
	if cfg.AuthAPIKey != "" {
		p.header.Set("apikey", cfg.AuthAPIKey)
	}
	return p
}

func (p *authProbe) component() string { return "auth" }
func (p *authProbe) close()            { p.client.CloseIdleConnections() }

// Probe runs the check once.
func (p *authProbe) Probe(ctx context.Context) []event.HealthResult {
	h, _ := p.run(ctx)
	return h
}

func (p *authProbe) run(ctx context.Context) ([]event.HealthResult, []event.ResourceSample) {
	ts := time.Now().UTC()
	if p.url == "" {
		return []event.HealthResult{notConfigured(ts, "auth", "")}, nil
	}
	d := authDetails{WindowS: p.window.Seconds()}
	// The failure rate is read while the health URL answers.
	var (
		wg          sync.WaitGroup
		rate        float64
		count       uint64
		metricsErr  error
		haveMetrics = p.metrics != nil
	)
	if haveMetrics {
		wg.Go(func() { rate, count, metricsErr = p.metrics.AuthFailureRate(ctx, p.window) })
	}
	code, latency, err := get(ctx, p.client, p.url, p.header)
	wg.Wait()
	d.LatencyMS = ms(latency)

	status := byLatency(latency, AuthHealthy, never)
	switch {
	case !haveMetrics:
		d.Metrics = "not configured"
	case metricsErr != nil:
		d.Metrics = "unavailable"
	default:
		d.AuthRequests = &count
		if count > 0 {
			d.FailureRate = ptr(round4(rate))
		}
		switch {
		case count < MinAuthRequests:
			d.Metrics = "too few requests"
		case rate >= AuthFailureCritical:
			status = event.StatusCritical
		case rate >= AuthFailureDegraded:
			status = worse(status, event.StatusDegraded)
		}
	}
	switch {
	case err != nil:
		d.Error, d.Cause, status = "unreachable", cause(err), event.StatusCritical
	case code < 200 || code > 299:
		d.Error, d.HTTPStatus, status = "unexpected status", code, event.StatusCritical
	default:
		d.HTTPStatus = code
	}
	return []event.HealthResult{result(ts, "auth", "", status, d.LatencyMS, d)}, nil
}
