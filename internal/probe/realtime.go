package probe

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/wedsync/pulse/internal/event"
)

// Realtime thresholds of the handshake time (connect, TLS and upgrade).
const (
	RealtimeHealthy  = 300 * time.Millisecond
	RealtimeDegraded = time.Second
)

// closeWait bounds how long the probe waits for the server's close frame.
const closeWait = 500 * time.Millisecond

var (
	errNotUpgraded = errors.New("handshake refused")
	errBadAccept   = errors.New("bad handshake")
)

// realtimeProbe opens a WebSocket and closes it again.
type realtimeProbe struct {
	u   *url.URL // nil: not configured
	tls *tls.Config
}

type realtimeDetails struct {
	Error      string  `json:"error,omitempty"`
	Cause      string  `json:"cause,omitempty"`
	HTTPStatus int     `json:"http_status,omitempty"`
	Scheme     string  `json:"scheme"`
	LatencyMS  float64 `json:"latency_ms"`
	Closed     string  `json:"closed,omitempty"` // "clean" when the server answered the close frame, else "abrupt"
}

func newRealtimeProbe(cfg Config) *realtimeProbe {
	p := &realtimeProbe{}
	if cfg.RealtimeURL != "" {
		p.u, _ = url.Parse(cfg.RealtimeURL) // validated
	}
	return p
}

func (p *realtimeProbe) component() string { return "realtime" }
func (p *realtimeProbe) close()            {}

// Probe runs the check once.
func (p *realtimeProbe) Probe(ctx context.Context) []event.HealthResult {
	h, _ := p.run(ctx)
	return h
}

func (p *realtimeProbe) run(ctx context.Context) ([]event.HealthResult, []event.ResourceSample) {
	ts := time.Now().UTC()
	if p.u == nil {
		return []event.HealthResult{notConfigured(ts, "realtime", "")}, nil
	}
	d := realtimeDetails{Scheme: p.u.Scheme}
	latency, code, clean, err := p.handshake(ctx)
	d.LatencyMS = ms(latency)
	status := byLatency(latency, RealtimeHealthy, RealtimeDegraded)
	switch {
	case errors.Is(err, errNotUpgraded):
		d.Error, d.HTTPStatus, status = "handshake refused", code, event.StatusCritical
	case errors.Is(err, errBadAccept):
		d.Error, d.HTTPStatus, status = "bad handshake", code, event.StatusCritical
	case err != nil:
		d.Error, d.Cause, status = "unreachable", cause(err), event.StatusCritical
	default:
		d.HTTPStatus, d.Closed = code, "abrupt"
		if clean {
			d.Closed = "clean"
		}
	}
	return []event.HealthResult{result(ts, "realtime", "", status, d.LatencyMS, d)}, nil
}

// handshake opens a WebSocket with coder/websocket's client, which
// performs and validates RFC 6455's opening handshake (101, Upgrade,
// Connection, Sec-WebSocket-Accept), and closes it again with status 1000
// (normal closure), waiting up to closeWait for the server's close frame.
// It returns the time to a validated 101 answer (connect, TLS and
// upgrade), the answer's status, and whether the server answered the
// close frame.
func (p *realtimeProbe) handshake(ctx context.Context) (time.Duration, int, bool, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if p.tls != nil {
		cfg = p.tls.Clone()
	}
	cfg.NextProtos = []string{"http/1.1"} // an HTTP/2 connection cannot be upgraded
	var conn atomic.Pointer[net.Conn]     // the TCP connection, to cut a close handshake short
	var dialer net.Dialer
	tr := &http.Transport{
		TLSClientConfig:   cfg,
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dialer.DialContext(ctx, network, addr)
			if err == nil {
				conn.Store(&c)
			}
			return c, err
		},
	}
	defer tr.CloseIdleConnections()
	start := time.Now()
	ws, resp, err := websocket.Dial(ctx, p.u.String(), &websocket.DialOptions{
		HTTPClient:      &http.Client{Transport: tr},
		HTTPHeader:      http.Header{"User-Agent": {"pulse-probe"}},
		CompressionMode: websocket.CompressionDisabled,
	})
	latency := time.Since(start)
	switch {
	case err != nil && resp == nil:
		return latency, 0, false, err
	case err != nil && resp.StatusCode != http.StatusSwitchingProtocols:
		return latency, resp.StatusCode, false, errNotUpgraded
	case err != nil:
		return latency, resp.StatusCode, false, errBadAccept
	}
	done := make(chan error, 1)
	go func() { done <- ws.Close(websocket.StatusNormalClosure, "") }()
	t := time.NewTimer(closeWait)
	defer t.Stop()
	select {
	case err = <-done:
		return latency, resp.StatusCode, err == nil, nil
	case <-t.C:
		if c := conn.Load(); c != nil {
			(*c).Close() // Close returns at once: no answer, an abrupt close
		}
		<-done
		return latency, resp.StatusCode, false, nil
	}
}
