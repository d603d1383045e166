package aggregator

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/rs/zerolog"

	"github.com/wedsync/pulse/internal/stream"
	"github.com/wedsync/pulse/internal/testenv"
)

// TestMetricsRegistered runs an aggregator with its metrics on a pedantic
// registry: every metric is there from the start, and the counters and
// histograms follow a real insert and a dead letter.
func TestMetricsRegistered(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	store := testenv.ClickHouse(t)
	p := startPipeline(t, store, Config{MaxDelay: 50 * time.Millisecond}, reg)

	types := map[string]dto.MetricType{
		"pulse_aggregator_rows_total":                   dto.MetricType_COUNTER,
		"pulse_aggregator_batches_total":                dto.MetricType_COUNTER,
		"pulse_aggregator_insert_failures_total":        dto.MetricType_COUNTER,
		"pulse_aggregator_dead_letters_total":           dto.MetricType_COUNTER,
		"pulse_aggregator_refused_messages_total":       dto.MetricType_COUNTER,
		"pulse_aggregator_duplicate_rows_skipped_total": dto.MetricType_COUNTER,
		"pulse_aggregator_last_insert_seconds":          dto.MetricType_GAUGE,
		"pulse_aggregator_insert_seconds":               dto.MetricType_HISTOGRAM,
		"pulse_aggregator_batch_rows":                   dto.MetricType_HISTOGRAM,
	}
	got := gather(t, reg)
	for name, typ := range types {
		mf, ok := got[name]
		if !ok {
			t.Errorf("%s not registered", name)
			continue
		}
		if mf.GetType() != typ {
			t.Errorf("%s is a %v; want a %v", name, mf.GetType(), typ)
		}
	}
	if len(got) != len(types) {
		t.Errorf("registered %d metric families; want %d", len(got), len(types))
	}
	if v := value(got["pulse_aggregator_rows_total"]); v != 0 {
		t.Errorf("rows_total before any insert = %v; want 0", v)
	}

	publishBatch(t, p.js, requests("metrics", 25))
	publishRaw(t, p.js, stream.SubjectRequests+"web", []byte(`{"endpoint":`))
	testenv.Eventually(t, 20*time.Second, "rows and dead letter counted", func() bool {
		got = gather(t, reg)
		return value(got["pulse_aggregator_rows_total"]) == 25 && value(got["pulse_aggregator_dead_letters_total"]) == 1
	})
	p.stop()
	got = gather(t, reg)
	batches := value(got["pulse_aggregator_batches_total"])
	if batches < 1 || batches != float64(p.agg.Stats().Batches.Load()) {
		t.Errorf("batches_total = %v; want at least 1 and Stats' %d", batches, p.agg.Stats().Batches.Load())
	}
	if h := got["pulse_aggregator_batch_rows"].GetMetric()[0].GetHistogram(); h.GetSampleSum() != 25 || float64(h.GetSampleCount()) != batches {
		t.Errorf("batch_rows: sum %v over %d inserts; want 25 over %v", h.GetSampleSum(), h.GetSampleCount(), batches)
	}
	if h := got["pulse_aggregator_insert_seconds"].GetMetric()[0].GetHistogram(); float64(h.GetSampleCount()) != batches || h.GetSampleSum() <= 0 {
		t.Errorf("insert_seconds: %d inserts taking %vs; want %v taking more than 0s", h.GetSampleCount(), h.GetSampleSum(), batches)
	}
	if v := value(got["pulse_aggregator_last_insert_seconds"]); v <= 0 {
		t.Errorf("last_insert_seconds = %v; want more than 0", v)
	}
	if n := testenv.Count(t, store, "SELECT count() FROM "+store.T("requests")); n != 25 {
		t.Errorf("rows stored = %d; want 25", n)
	}

	// A second aggregator cannot register the same metrics again, and
	// leaves the registry as it was.
	if _, err := New(Config{}, p.js, store, reg, zerolog.Nop()); err == nil || !strings.Contains(err.Error(), "register aggregator metrics") {
		t.Errorf("second New on one registry: %v; want a registration error", err)
	}
	if n := len(gather(t, reg)); n != len(types) {
		t.Errorf("after a failed registration the registry holds %d families; want %d", n, len(types))
	}
}

// TestConfig checks the one config contract: zero fields take defaults,
// New refuses what Validate refuses.
func TestConfig(t *testing.T) {
	f := func(cfg Config, wantErr string) {
		t.Helper()
		err := cfg.Validate()
		a, nerr := New(cfg, nil, nil, nil, zerolog.Nop())
		switch {
		case wantErr == "" && (err != nil || nerr != nil):
			t.Errorf("%+v: Validate %v, New %v; want no error", cfg, err, nerr)
		case wantErr != "" && (err == nil || !strings.Contains(err.Error(), wantErr)):
			t.Errorf("%+v: Validate %v; want an error about %q", cfg, err, wantErr)
		case wantErr != "" && (nerr == nil || nerr.Error() != err.Error() || a != nil):
			t.Errorf("%+v: New %v, %v; want nil and Validate's error", cfg, a, nerr)
		}
	}
	f(Config{}, "")
	f(Config{MaxRows: 1, MaxDelay: time.Millisecond, AckWait: 5 * time.Second}, "")
	f(Config{MaxRows: -1}, "batch rows")
	f(Config{MaxRows: 1_000_001}, "batch rows")
	f(Config{MaxDelay: time.Microsecond}, "batch delay")
	f(Config{AckWait: time.Second}, "ack wait")

	a, err := New(Config{MaxRows: 7}, nil, nil, nil, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	want := Config{Stream: "PULSE_INGEST", Consumer: DefaultConsumer, MaxRows: 7, MaxDelay: time.Second, AckWait: time.Minute,
		Retention: 30 * 24 * time.Hour, DrainTimeout: 30 * time.Second, FetchBytes: 128}
	if a.cfg != want {
		t.Errorf("config after New = %+v; want %+v", a.cfg, want)
	}
}

func gather(t *testing.T, g prometheus.Gatherer) map[string]*dto.MetricFamily {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		out[mf.GetName()] = mf
	}
	return out
}

// value is the value of a family's only counter or gauge.
func value(mf *dto.MetricFamily) float64 {
	if mf == nil || len(mf.GetMetric()) != 1 {
		return -1
	}
	m := mf.GetMetric()[0]
	if c := m.GetCounter(); c != nil {
		return c.GetValue()
	}
	return m.GetGauge().GetValue()
}
