package pulseclient

import (
	"context"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/wedsync/pulse/internal/testenv"
)

// BenchmarkRecord is the cost of Record on the caller's goroutine: validate
// and queue one metric (Pulse unreachable, so nothing is sent meanwhile and
// the full buffer drops its oldest).
func BenchmarkRecord(b *testing.B) {
	c, err := New(Config{URL: "http://" + testenv.FreeAddr(b), Token: "t", Service: "web", MaxBuffer: 1 << 16, FlushInterval: time.Hour}, zerolog.Nop())
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		c.Shutdown(ctx)
	}()
	m := Metric{Endpoint: "/api/clients/{id}", Method: "GET", StatusCode: 200, ResponseTime: 12 * time.Millisecond,
		UserID: "3f2b6c1e-8d4a-4b7e-9c2d-1a2b3c4d5e6f"}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		c.Record(m)
	}
}

// BenchmarkShip is how many events per second one client ships to a local
// pulse serve (events/s), recording as fast as it can and flushing at the
// end; every event must be accepted.
func BenchmarkShip(b *testing.B) {
	p := startPulse(b, "1000000/s")
	c, err := New(Config{URL: p.url, Token: ingestToken, Service: "web", MaxBuffer: 200_000, Concurrency: 4}, zerolog.Nop())
	if err != nil {
		b.Fatal(err)
	}
	m := Metric{Endpoint: "/api/clients/{id}", Method: "GET", StatusCode: 200, ResponseTime: 12 * time.Millisecond}
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for b.Loop() {
		c.Record(m)
		if s := c.Stats(); s.Buffered > 100_000 {
			// Keep below the bound: the figure is what is shipped, not dropped.
			for c.Stats().Buffered > 50_000 {
				time.Sleep(time.Millisecond)
			}
		}
	}
	if err := c.Flush(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
	s := c.Shutdown(context.Background())
	if s.Sent != uint64(b.N) {
		b.Fatalf("stats %+v; want %d sent", s, b.N)
	}
}
