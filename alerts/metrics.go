package alerts

import (
	"fmt"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// register registers cs on reg, all or none; a nil reg registers nothing.
func register(reg prometheus.Registerer, cs ...prometheus.Collector) error {
	if reg == nil {
		return nil
	}
	for i, c := range cs {
		if err := reg.Register(c); err != nil {
			for _, done := range cs[:i] {
				reg.Unregister(done)
			}
			return fmt.Errorf("register metrics: %w", err)
		}
	}
	return nil
}

// counterOf is a counter reading v on each scrape.
func counterOf(name, help string, v *atomic.Uint64) prometheus.Collector {
	return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(v.Load()) })
}

// gaugeOf is a gauge that is 1 while f returns true, else 0.
func gaugeOf(name, help string, f func() bool) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 {
		if f() {
			return 1
		}
		return 0
	})
}

// firedVec is pulse_alerts_fired_total of one evaluator ("instant" or
// "window"): firing alerts this replica published, by rule and severity.
// The evaluators share the name, told apart by the evaluator label, and
// start every configured rule's series at 0 so that rate() sees the first
// one. Rules come from the rule file, so the label set is bounded.
func firedVec(evaluator string, ruleSeverity map[string]string) *prometheus.CounterVec {
	v := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name:        "pulse_alerts_fired_total",
		Help:        "Firing alerts this replica published, by evaluator (instant, window), rule and severity.",
		ConstLabels: prometheus.Labels{"evaluator": evaluator},
	}, []string{"rule", "severity"})
	for rule, severity := range ruleSeverity {
		v.WithLabelValues(rule, severity)
	}
	return v
}
