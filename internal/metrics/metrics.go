// Package metrics exposes Pulse's own Prometheus metrics: what the edge
// accepted and refused, stream backlog, aggregator batch sizes and insert
// latency, dead letters. Components report through small Observer
// interfaces they declare; counters they already keep are read on scrape.
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
	insertSeconds  prometheus.Histogram
	batchRows      prometheus.Histogram
	insertFailures prometheus.Counter
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
		insertSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "pulse_aggregator_insert_seconds", Help: "Duration of one committed ClickHouse insert, retries included.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
		batchRows: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "pulse_aggregator_batch_rows", Help: "Rows per committed ClickHouse insert.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 10),
		}),
		insertFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pulse_aggregator_insert_failures_total", Help: "Failed insert attempts; each is retried.",
		}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pulse_ingest_rejected_requests_total", Help: "Ingest requests refused, by HTTP status.",
		}, []string{"status"}),
	}
	reg.MustRegister(m.publishSeconds, m.publishEvents, m.insertSeconds, m.batchRows, m.insertFailures, m.rejected)
	return m
}

// Handler serves the registry in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

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

// ObserveInsert records a committed insert of rows that took d.
func (m *Metrics) ObserveInsert(rows int, d time.Duration) {
	if m == nil {
		return
	}
	m.insertSeconds.Observe(d.Seconds())
	m.batchRows.Observe(float64(rows))
}

// ObserveInsertFailure records a failed insert attempt.
func (m *Metrics) ObserveInsertFailure() {
	if m == nil {
		return
	}
	m.insertFailures.Inc()
}

// Registerer is the registry, for components that register what they
// count themselves.
func (m *Metrics) Registerer() prometheus.Registerer { return m.reg }
