package alerts_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wedsync/pulse/alerts"
	"github.com/wedsync/pulse/alerts/rules"
	"github.com/wedsync/pulse/internal/event"
	"github.com/wedsync/pulse/internal/testenv"
)

// metric is one gathered single-series metric.
type metric struct {
	typ, help string
	value     float64
}

// gather reads reg's metrics by name. pulse_alerts_fired_total, one series
// per rule, is skipped: read it with testenv.Counter.
func gather(t testing.TB, reg *prometheus.Registry) map[string]metric {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	out := map[string]metric{}
	for _, mf := range mfs {
		if mf.GetName() == "pulse_alerts_fired_total" {
			continue
		}
		if len(mf.GetMetric()) != 1 {
			t.Fatalf("%s has %d series; want 1", mf.GetName(), len(mf.GetMetric()))
		}
		m := mf.GetMetric()[0]
		v := m.GetCounter().GetValue()
		if m.GetGauge() != nil {
			v = m.GetGauge().GetValue()
		}
		out[mf.GetName()] = metric{typ: mf.GetType().String(), help: mf.GetHelp(), value: v}
	}
	return out
}

// checkNames fails unless got holds exactly want, each a counter named
// *_total or a gauge, all under pulse_alerts_.
func checkNames(t testing.TB, got map[string]metric, want ...string) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("registered %d metrics; want %d: %v", len(got), len(want), got)
	}
	for _, name := range want {
		m, ok := got[name]
		switch {
		case !ok:
			t.Errorf("metric %s not registered", name)
		case !strings.HasPrefix(name, "pulse_alerts_"):
			t.Errorf("metric %s lacks the pulse_alerts_ prefix", name)
		case m.typ == "COUNTER" && !strings.HasSuffix(name, "_total"):
			t.Errorf("counter %s does not end in _total", name)
		case m.help == "":
			t.Errorf("metric %s has no help", name)
		}
	}
}

// TestInstantMetrics: the instant evaluator registers its counters on the
// registry it is given, they count what Observe does, and a second
// evaluator on the same registry is refused.
func TestInstantMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	set := mustParse(t, instantRules(t, time.Minute))
	in := newInstant(t, alerts.InstantConfig{MaxGroups: 1, Registerer: reg}, set, nil, nop)
	now := time.Now()
	in.Observe([]event.Request{req(now, "api", "/a", 500, 1), req(now, "api", "/b", 503, 1), req(now, "api", "/a", 200, 1)})
	// Every configured rule has its fired series from the start (TestBurst
	// checks that firing moves it).
	for rule, severity := range map[string]string{"server_error": "critical", "slow_response": "warning"} {
		if v := testenv.Counter(t, reg, "pulse_alerts_fired_total", "evaluator", "instant", "rule", rule, "severity", severity); v != 0 {
			t.Errorf("fired{%s} = %v before any alert; want 0", rule, v)
		}
	}
	got := gather(t, reg)
	checkNames(t, got,
		"pulse_alerts_instant_observed_requests_total", "pulse_alerts_instant_matches_total",
		"pulse_alerts_instant_overflow_matches_total", "pulse_alerts_instant_fired_total",
		"pulse_alerts_instant_resolved_total", "pulse_alerts_instant_joined_total",
		"pulse_alerts_instant_nats_failures_total", "pulse_alerts_instant_panics_total")
	for name, want := range map[string]float64{
		"pulse_alerts_instant_observed_requests_total": 3,
		"pulse_alerts_instant_matches_total":           2,
		"pulse_alerts_instant_overflow_matches_total":  1, // /b beyond MaxGroups 1
		"pulse_alerts_instant_panics_total":            0,
	} {
		if v := got[name].value; v != want {
			t.Errorf("%s = %v; want %v", name, v, want)
		}
	}
	if _, err := alerts.NewInstant(alerts.InstantConfig{Registerer: reg}, set, nil, nop); err == nil {
		t.Error("a second instant evaluator on the same registry was accepted")
	}
	if _, err := alerts.NewInstant(alerts.InstantConfig{Tick: -1}, set, nil, nop); err == nil {
		t.Error("NewInstant accepted a negative tick")
	}
}

// TestHistoryMetrics: a message on an alert subject that is not an alert,
// published on the real NATS, moves the history writer's malformed
// counter; a valid alert moves its rows counter.
func TestHistoryMetrics(t *testing.T) {
	store := testenv.ClickHouse(t)
	n := newNATS(t)
	reg := prometheus.NewRegistry()
	h := newHistory(t, alerts.HistoryConfig{MaxWait: 100 * time.Millisecond, Registerer: reg}, n.js, store, nop)
	checkNames(t, gather(t, reg), "pulse_alerts_history_rows_total",
		"pulse_alerts_history_malformed_messages_total", "pulse_alerts_history_insert_failures_total")
	if _, err := n.js.Publish(testCtx(t), "pulse.alerts.critical.junk", []byte(`not json`)); err != nil {
		t.Fatal(err)
	}
	a := &alerts.Alert{ID: "m1", Kind: alerts.KindAlert, Rule: "errors", State: alerts.StateFiring, Severity: "critical",
		StartedAt: time.Now().UTC().Truncate(time.Second), Count: 1}
	data, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.js.Publish(testCtx(t), a.Subject(), data); err != nil {
		t.Fatal(err)
	}
	testenv.Run(t, h.Run)
	testenv.Eventually(t, 20*time.Second, "malformed and stored alerts counted", func() bool {
		got := gather(t, reg)
		return got["pulse_alerts_history_malformed_messages_total"].value == 1 && got["pulse_alerts_history_rows_total"].value == 1
	})
	if v := gather(t, reg)["pulse_alerts_history_insert_failures_total"].value; v != 0 {
		t.Errorf("insert failures = %v; want 0", v)
	}
	if _, err := alerts.NewHistory(alerts.HistoryConfig{Batch: -1}, n.js, store, nop); err == nil {
		t.Error("NewHistory accepted a negative batch")
	}
}

// TestEvaluatorMetrics: the evaluator exports pulse_alerts_evaluator_degraded
// (the gauge pulse serve used to mirror, same name, type and help), which
// turns 1 when an evaluation cannot reach the state store, and counts its
// evaluations.
func TestEvaluatorMetrics(t *testing.T) {
	store := testenv.ClickHouse(t)
	n := newNATS(t)
	nc, js := n.conn(t)
	reg := prometheus.NewRegistry()
	e := newEvaluator(t, alerts.EvaluatorConfig{Timeout: time.Second, Registerer: reg},
		mustParse(t, "window:\n  - {name: w, metric: p95_ms, threshold: 1}\n"), js, store, nop)
	if v := testenv.Counter(t, reg, "pulse_alerts_fired_total", "evaluator", "window", "rule", "w", "severity", "warning"); v != 0 {
		t.Errorf("fired{w} = %v before any evaluation; want 0", v)
	}
	got := gather(t, reg)
	checkNames(t, got, "pulse_alerts_evaluator_degraded", "pulse_alerts_evaluator_leader", "pulse_alerts_evaluator_evaluations_total")
	if m := got["pulse_alerts_evaluator_degraded"]; m.typ != "GAUGE" || m.value != 0 ||
		m.help != "1 when the last window evaluation could not run every rule." {
		t.Errorf("degraded before any evaluation: %+v; want a gauge at 0 with the help pulse serve exported", m)
	}
	nc.Close()
	if err := e.Evaluate(testCtx(t)); err == nil {
		t.Fatal("Evaluate without NATS returned nil")
	}
	got = gather(t, reg)
	if v := got["pulse_alerts_evaluator_degraded"].value; v != 1 {
		t.Errorf("degraded = %v after a failed evaluation; want 1", v)
	}
	if v := got["pulse_alerts_evaluator_evaluations_total"].value; v != 1 {
		t.Errorf("evaluations = %v; want 1", v)
	}
	if _, err := alerts.NewEvaluator(alerts.EvaluatorConfig{Lease: time.Millisecond}, rules.Default(), js, store, nop); err == nil {
		t.Error("NewEvaluator accepted a 1ms lease")
	}
	if _, err := alerts.NewAPI(alerts.APIConfig{QueryTimeout: -1}, rules.Default(), js, store, nop); err == nil {
		t.Error("NewAPI accepted a negative timeout")
	}
}
