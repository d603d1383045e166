package probe

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/wedsync/pulse/internal/event"
)

// panicProbe panics on every run, with a value holding a secret.
type panicProbe struct{}

func (panicProbe) component() string { return "external_services" }
func (p panicProbe) Probe(ctx context.Context) []event.HealthResult {
	h, _ := p.run(ctx)
	return h
}
func (panicProbe) run(context.Context) ([]event.HealthResult, []event.ResourceSample) {
	panic("dial postgres://app:pw-SECRET-62@db:5432")
}
func (panicProbe) close() {}

// TestRunnerProbePanics: a probe that panics is recovered each run,
// reported critical ("probe failed") and published, counted, and logged
// without the panic's value.
func TestRunnerProbePanics(t *testing.T) {
	var logs bytes.Buffer
	pub := &memPublisher{}
	r, err := New(Config{}, pub, zerolog.New(&logs))
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		r.runOnce(context.Background(), panicProbe{})
	}
	if n := r.stats.Panics.Load(); n != 2 {
		t.Errorf("Panics = %d; want 2", n)
	}
	var got *event.HealthResult
	for _, h := range r.Latest() {
		if h.Component == "external_services" {
			got = &h
		}
	}
	if got == nil || got.Status != event.StatusCritical || !strings.Contains(string(got.Details), `"error":"probe failed"`) {
		t.Fatalf("latest external_services result %+v; want critical with error \"probe failed\"", got)
	}
	pub.mu.Lock()
	published := len(pub.msgs)
	pub.mu.Unlock()
	if published != 2 {
		t.Errorf("%d results published; want 2 (one per run)", published)
	}
	if !strings.Contains(logs.String(), "probe panicked") || strings.Contains(logs.String(), "SECRET") {
		t.Errorf("log %q; want a \"probe panicked\" line without the panic's value", logs.String())
	}
}
