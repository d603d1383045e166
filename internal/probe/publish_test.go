package probe

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/wedsync/pulse/internal/stream"
	"github.com/wedsync/pulse/internal/testenv"
)

// TestPublishMetrics runs a Runner and a HostSampler on one registry,
// publishing to an in-process JetStream: a scrape shows their runs and
// published messages, then, once the NATS connection is closed, their
// publish failures, each under its source.
func TestPublishMetrics(t *testing.T) {
	ns := testenv.NATS(t)
	nc, js := testenv.Connect(t, ns.ClientURL())
	testenv.Streams(t, js, stream.Config{})
	reg := prometheus.NewRegistry()
	pub := JetStreamPublisher{JS: js}
	r := startRunner(t, Config{Interval: 50 * time.Millisecond, Timeout: 50 * time.Millisecond, Registerer: reg}, pub, zerolog.Nop())
	host, err := NewHostSampler(HostConfig{Interval: 50 * time.Millisecond, Paths: []string{t.TempDir()}, Registerer: reg}, pub, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- host.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("host sampler Run: %v", err)
		}
	}()

	counter := func(name string, labels ...string) func() float64 {
		return func() float64 { return testenv.Counter(t, reg, name, labels...) }
	}
	published := map[string]func() float64{
		"probe": counter("pulse_probe_published_messages_total", "source", "probe"),
		"host":  counter("pulse_probe_published_messages_total", "source", "host"),
	}
	failures := map[string]func() float64{
		"probe": counter("pulse_probe_publish_failures_total", "source", "probe"),
		"host":  counter("pulse_probe_publish_failures_total", "source", "host"),
	}
	for _, source := range []string{"probe", "host"} {
		testenv.Eventually(t, 10*time.Second, source+" messages published", func() bool { return published[source]() > 0 })
		if f := failures[source](); f != 0 {
			t.Errorf("%s publish failures with NATS up: %v; want 0", source, f)
		}
	}
	if runs := testenv.Counter(t, reg, "pulse_probe_runs_total"); runs == 0 || runs > float64(r.Stats().Runs.Load()) {
		t.Errorf("pulse_probe_runs_total %v; want some, at most the %d runs counted", runs, r.Stats().Runs.Load())
	}

	nc.Close()
	for _, source := range []string{"probe", "host"} {
		testenv.Eventually(t, 10*time.Second, source+" publish failures counted", func() bool { return failures[source]() > 0 })
	}
}
