package ingest

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// edgeMetrics are the edge's Prometheus metrics:
//
//	pulse_ingest_events_total                     events persisted (202)
//	pulse_ingest_publish_seconds                  request received to persisted, per accepted request
//	pulse_ingest_request_events                   events (or samples) per accepted request
//	pulse_ingest_rejected_requests_total{status}  requests refused: 4xx by status, and 503
//	pulse_ingest_unavailable_requests_total{reason}  the 503s by cause: not_connected, stream_full, timeout, error
//	pulse_ingest_abandoned_requests_total         requests whose client went away before the answer
//	pulse_ingest_unknown_fields_total             unknown fields ignored in persisted events (not by name: unbounded)
type edgeMetrics struct {
	events      prometheus.Counter
	seconds     prometheus.Histogram
	perRequest  prometheus.Histogram
	rejectedVec *prometheus.CounterVec
	unavailVec  *prometheus.CounterVec
	abandoned   prometheus.Counter
	unknown     prometheus.Counter
}

func newEdgeMetrics(reg prometheus.Registerer) (*edgeMetrics, error) {
	m := &edgeMetrics{
		events: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pulse_ingest_events_total", Help: "Events accepted: persisted in JetStream.",
		}),
		seconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "pulse_ingest_publish_seconds", Help: "Time from publish to JetStream acknowledgement of one ingest request.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
		perRequest: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "pulse_ingest_request_events", Help: "Events per accepted ingest request.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 8),
		}),
		rejectedVec: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pulse_ingest_rejected_requests_total", Help: "Ingest requests refused, by HTTP status.",
		}, []string{"status"}),
		unavailVec: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pulse_ingest_unavailable_requests_total", Help: "Ingest requests answered 503, by cause: not_connected, stream_full, timeout (not confirmed in time), error.",
		}, []string{"reason"}),
		abandoned: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pulse_ingest_abandoned_requests_total", Help: "Ingest requests whose client went away before the answer.",
		}),
		unknown: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pulse_ingest_unknown_fields_total", Help: "Fields with an unknown key ignored in accepted events (each occurrence in each event).",
		}),
	}
	for _, r := range []string{reasonNotConnected, reasonStreamFull, reasonTimeout, reasonError} {
		m.unavailVec.WithLabelValues(r)
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.events, m.seconds, m.perRequest, m.rejectedVec, m.unavailVec, m.abandoned, m.unknown} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *edgeMetrics) accepted(n, unknown int, d time.Duration) {
	m.events.Add(float64(n))
	m.unknown.Add(float64(unknown))
	m.seconds.Observe(d.Seconds())
	m.perRequest.Observe(float64(n))
}

func (m *edgeMetrics) rejected(status int) {
	m.rejectedVec.WithLabelValues(strconv.Itoa(status)).Inc()
}

func (m *edgeMetrics) unavailable(reason string) {
	m.rejectedVec.WithLabelValues("503").Inc()
	m.unavailVec.WithLabelValues(reason).Inc()
}

// Why a request was answered 503.
const (
	reasonNotConnected = "not_connected" // not persisted
	reasonStreamFull   = "stream_full"   // not persisted
	reasonTimeout      = "timeout"       // not confirmed in time: may be persisted
	reasonError        = "error"         // any other publish failure
)

func unavailableReason(err error) string {
	var apiErr *jetstream.APIError
	switch {
	case errors.Is(err, errNotConnected), errors.Is(err, nats.ErrConnectionClosed), errors.Is(err, nats.ErrNoResponders),
		errors.Is(err, nats.ErrConnectionDraining), errors.Is(err, nats.ErrConnectionReconnecting):
		return reasonNotConnected
	case errors.As(err, &apiErr) && (strings.Contains(apiErr.Description, "maximum") || strings.Contains(apiErr.Description, "resources exceeded")):
		return reasonStreamFull
	case errors.Is(err, errUnconfirmed), errors.Is(err, nats.ErrTimeout), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, jetstream.ErrAsyncPublishTimeout):
		return reasonTimeout
	}
	return reasonError
}
