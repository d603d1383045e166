package probe

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/wedsync/pulse/internal/event"
)

// PingHealthy is the ping round trip of ClickHouse and Redis under which
// they are healthy; slower is degraded.
const PingHealthy = time.Second

// pipelineProbe checks Pulse's own pipeline: NATS and the ingest lag,
// ClickHouse and Redis. Each is a target of component "pipeline".
type pipelineProbe struct {
	js             jetstream.JetStream
	stream, cons   string
	lagDeg, lagCri uint64
	ch             Pinger
	redis          redis.UniversalClient
}

type natsDetails struct {
	Error          string   `json:"error,omitempty"`
	Cause          string   `json:"cause,omitempty"`
	Connection     string   `json:"connection"` // connected, reconnecting, ...
	RTTMS          *float64 `json:"rtt_ms,omitempty"`
	Consumer       string   `json:"consumer,omitempty"` // "not found" when the aggregator has not created it
	NumPending     *uint64  `json:"num_pending,omitempty"`
	NumAckPending  *int     `json:"num_ack_pending,omitempty"`
	Lag            *uint64  `json:"lag,omitempty"` // NumPending + NumAckPending, or the stream's messages without a consumer
	StreamMessages *uint64  `json:"stream_messages,omitempty"`
	StreamBytes    *uint64  `json:"stream_bytes,omitempty"`
	LagDegraded    uint64   `json:"lag_degraded"`
	LagCritical    uint64   `json:"lag_critical"`
}

type pingDetails struct {
	Error     string  `json:"error,omitempty"`
	Cause     string  `json:"cause,omitempty"`
	LatencyMS float64 `json:"latency_ms"`
}

func newPipelineProbe(cfg Config) *pipelineProbe {
	return &pipelineProbe{js: cfg.JetStream, stream: cfg.IngestStream, cons: cfg.IngestConsumer,
		lagDeg: cfg.LagDegraded, lagCri: cfg.LagCritical, ch: cfg.ClickHouse, redis: cfg.Redis}
}

func (p *pipelineProbe) component() string { return "pipeline" }
func (p *pipelineProbe) close()            {}

// Probe runs the check once.
func (p *pipelineProbe) Probe(ctx context.Context) []event.HealthResult {
	h, _ := p.run(ctx)
	return h
}

func (p *pipelineProbe) run(ctx context.Context) ([]event.HealthResult, []event.ResourceSample) {
	ts := time.Now().UTC()
	out := make([]event.HealthResult, 3)
	var wg sync.WaitGroup
	wg.Go(func() { out[0] = p.nats(ctx, ts) })
	wg.Go(func() {
		if p.ch == nil {
			out[1] = notConfigured(ts, "pipeline", "clickhouse")
			return
		}
		out[1] = ping(ts, "clickhouse", event.StatusCritical, func() error { return p.ch.Ping(ctx) })
	})
	wg.Go(func() {
		if p.redis == nil {
			out[2] = notConfigured(ts, "pipeline", "redis")
			return
		}
		// Without Redis, Pulse limits and caches in process: degraded.
		out[2] = ping(ts, "redis", event.StatusDegraded, func() error { return p.redis.Ping(ctx).Err() })
	})
	wg.Wait()
	return out, nil
}

// ping rates one ping; down is the status of a failed one.
func ping(ts time.Time, target, down string, f func() error) event.HealthResult {
	start := time.Now()
	err := f()
	latency := time.Since(start)
	d := pingDetails{LatencyMS: ms(latency)}
	status := byLatency(latency, PingHealthy, never)
	if err != nil {
		d.Error, d.Cause, status = "unreachable", cause(err), down
	}
	return result(ts, "pipeline", target, status, d.LatencyMS, d)
}

func (p *pipelineProbe) nats(ctx context.Context, ts time.Time) event.HealthResult {
	if p.js == nil {
		return notConfigured(ts, "pipeline", "nats")
	}
	d := natsDetails{LagDegraded: p.lagDeg, LagCritical: p.lagCri}
	nc := p.js.Conn()
	d.Connection = connState(nc.Status())
	if nc.Status() != nats.CONNECTED {
		d.Error = "disconnected"
		return result(ts, "pipeline", "nats", event.StatusCritical, 0, d)
	}
	start := time.Now()
	if err := nc.FlushWithContext(ctx); err != nil {
		d.Error, d.Cause = "unreachable", cause(err)
		if d.Connection = connState(nc.Status()); nc.Status() != nats.CONNECTED {
			d.Error = "disconnected" // it noticed meanwhile
		}
		return result(ts, "pipeline", "nats", event.StatusCritical, ms(time.Since(start)), d)
	}
	rtt := ms(time.Since(start))
	d.RTTMS = &rtt

	var lag uint64
	st, err := p.js.Stream(ctx, p.stream)
	if err != nil {
		d.Error, d.Cause = "stream unavailable", cause(err)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			d.Cause = "not found"
		}
		return result(ts, "pipeline", "nats", event.StatusCritical, rtt, d)
	}
	info := st.CachedInfo()
	d.StreamMessages, d.StreamBytes = &info.State.Msgs, &info.State.Bytes
	cons, err := st.Consumer(ctx, p.cons)
	switch {
	case errors.Is(err, jetstream.ErrConsumerNotFound):
		// The ingest stream is a work queue: what it holds is the backlog.
		d.Consumer, lag = "not found", info.State.Msgs
	case err != nil:
		d.Error, d.Cause = "consumer unavailable", cause(err)
		return result(ts, "pipeline", "nats", event.StatusDegraded, rtt, d)
	default:
		ci := cons.CachedInfo()
		lag = ci.NumPending + uint64(max(ci.NumAckPending, 0))
		d.NumPending, d.NumAckPending = &ci.NumPending, &ci.NumAckPending
	}
	d.Lag = &lag
	status := event.StatusHealthy
	switch {
	case lag >= p.lagCri:
		status = event.StatusCritical
	case lag >= p.lagDeg:
		status = event.StatusDegraded
	}
	return result(ts, "pipeline", "nats", status, rtt, d)
}

func connState(s nats.Status) string {
	switch s {
	case nats.CONNECTED:
		return "connected"
	case nats.RECONNECTING:
		return "reconnecting"
	case nats.CONNECTING:
		return "connecting"
	case nats.CLOSED:
		return "closed"
	case nats.DRAINING_SUBS, nats.DRAINING_PUBS:
		return "draining"
	}
	return "disconnected"
}
