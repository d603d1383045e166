package aggregator

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// registerMetrics creates the aggregator's metrics and, when reg is not
// nil, registers them on it, all or none. The counters and the last-insert gauge read
// Stats on each scrape, so /metrics and Stats cannot disagree; the two
// histograms are observed by flush.
//
//	pulse_aggregator_rows_total                     counter   rows committed
//	pulse_aggregator_batches_total                  counter   inserts committed
//	pulse_aggregator_insert_failures_total          counter   failed insert attempts
//	pulse_aggregator_dead_letters_total             counter   messages dead-lettered
//	pulse_aggregator_refused_messages_total         counter   of those, messages whose rows ClickHouse refused
//	pulse_aggregator_duplicate_rows_skipped_total   counter   redelivered rows already stored
//	pulse_aggregator_last_insert_seconds            gauge     duration of the last committed insert
//	pulse_aggregator_insert_seconds                 histogram duration of committed inserts
//	pulse_aggregator_batch_rows                     histogram rows per committed insert
func (a *Aggregator) registerMetrics(reg prometheus.Registerer) error {
	insertSeconds := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "pulse_aggregator_insert_seconds", Help: "Duration of one committed ClickHouse insert, retries included.",
		Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
	})
	batchRows := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "pulse_aggregator_batch_rows", Help: "Rows per committed ClickHouse insert.",
		Buckets: prometheus.ExponentialBuckets(1, 4, 10),
	})
	a.insertSeconds, a.batchRows = insertSeconds, batchRows
	if reg == nil {
		return nil
	}
	counter := func(name, help string, f func() uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(f()) })
	}
	st := &a.stats
	cs := []prometheus.Collector{
		insertSeconds,
		batchRows,
		counter("pulse_aggregator_rows_total", "Rows committed to ClickHouse.", st.Rows.Load),
		counter("pulse_aggregator_batches_total", "Inserts committed to ClickHouse.", st.Batches.Load),
		counter("pulse_aggregator_insert_failures_total", "Failed insert attempts; each is retried, or split when ClickHouse refuses the rows.", st.Retries.Load),
		counter("pulse_aggregator_dead_letters_total", "Ingest messages moved to the dead-letter subject because they were invalid.",
			st.DeadLetters.Load),
		counter("pulse_aggregator_refused_messages_total",
			"Ingest messages moved to the dead-letter subject because ClickHouse refused their rows (also counted in pulse_aggregator_dead_letters_total).",
			st.Refused.Load),
		counter("pulse_aggregator_duplicate_rows_skipped_total", "Redelivered rows found already stored and not inserted again.",
			a.sink.Skipped.Load),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "pulse_aggregator_last_insert_seconds", Help: "Duration of the last committed ClickHouse insert, retries included.",
		}, func() float64 { return time.Duration(st.LastInsert.Load()).Seconds() }),
	}
	for i, c := range cs {
		if err := reg.Register(c); err != nil {
			for _, r := range cs[:i] {
				reg.Unregister(r)
			}
			return fmt.Errorf("register aggregator metrics: %w", err)
		}
	}
	return nil
}
