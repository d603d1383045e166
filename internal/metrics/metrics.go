// Package metrics exposes Pulse's own Prometheus metrics: what the edge
// accepted and refused, stream backlog. Components report through small
// Observer interfaces they declare, or register their own metrics on
// Registerer; counters they already keep are read on scrape.
package metrics

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics is one process's registry. Its methods are safe for concurrent
// use; a nil *Metrics observes nothing.
type Metrics struct {
	reg            *prometheus.Registry
	publishSeconds prometheus.Histogram
	publishEvents  prometheus.Histogram
	rejected       *prometheus.CounterVec
}

// New returns a registry with the Go runtime and process collectors and
// Pulse's pipeline metrics.
func New() *Metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := &Metrics{
		reg: reg,
		publishSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "pulse_ingest_publish_seconds", Help: "Time from publish to JetStream acknowledgement of one ingest request.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
		publishEvents: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "pulse_ingest_request_events", Help: "Events per accepted ingest request.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 8),
		}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pulse_ingest_rejected_requests_total", Help: "Ingest requests refused, by HTTP status.",
		}, []string{"status"}),
	}
	reg.MustRegister(m.publishSeconds, m.publishEvents, m.rejected)
	return m
}

// Handler serves the registry in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Registerer is the registry, for components that register their own
// metrics.
func (m *Metrics) Registerer() prometheus.Registerer { return m.reg }

// CounterFunc registers a counter whose value f reads on each scrape.
func (m *Metrics) CounterFunc(name, help string, f func() float64) {
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, f))
}

// GaugeFunc registers a gauge whose value f reads on each scrape.
func (m *Metrics) GaugeFunc(name, help string, f func() float64) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f))
}

// ObservePublish records an accepted ingest request.
func (m *Metrics) ObservePublish(events int, d time.Duration) {
	if m == nil {
		return
	}
	m.publishSeconds.Observe(d.Seconds())
	m.publishEvents.Observe(float64(events))
}

// ObserveRejected records an ingest request refused with status.
func (m *Metrics) ObserveRejected(status int) {
	if m == nil {
		return
	}
	m.rejected.WithLabelValues(strconv.Itoa(status)).Inc()
}
