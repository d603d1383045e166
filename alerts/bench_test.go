package alerts_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/wedsync/pulse/alerts"
	"github.com/wedsync/pulse/internal/event"
	"github.com/wedsync/pulse/internal/testenv"
)

// BenchmarkAlertLatency measures the time from an event handed to Observe
// (what the aggregator does as it decodes a message) to its firing alert
// arriving at a core-NATS subscriber of pulse.alerts.>, through the KV
// create-if-absent and the JetStream publish. Each iteration is one
// triggering event of a new group, sent once the previous alert arrived;
// p50 and p99 are reported. `make bench` runs it with -benchtime 1000x.
func BenchmarkAlertLatency(b *testing.B) {
	n := newNATS(b)
	set := mustParse(b, instantRules(b, time.Hour))
	in := newInstant(b, alerts.InstantConfig{MaxGroups: 1 << 20}, set, n.js, nop)
	testenv.Run(b, in.Run)
	sub, err := n.nc.SubscribeSync(alerts.SubjectAlerts + ">")
	if err != nil {
		b.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := n.nc.Flush(); err != nil {
		b.Fatal(err)
	}
	in.Observe([]event.Request{req(time.Now(), "warmup", "/", 200, 1)})
	testenv.Eventually(b, 10*time.Second, "evaluator running", func() bool { return in.Stats().Observed.Load() > 0 })

	lat := make([]time.Duration, 0, b.N)
	batch := make([]event.Request, 1)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		batch[0] = req(time.Now(), "api", fmt.Sprintf("/bench/%d", i), 500, 1)
		start := time.Now()
		in.Observe(batch)
		if _, err := sub.NextMsg(5 * time.Second); err != nil {
			b.Fatalf("alert %d: %v", i, err)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkObserve is the aggregator's cost per decoded request: a batch
// of 1,000 requests of which none matches a rule (the common case), and
// one where every request matches a known group.
func BenchmarkObserve(b *testing.B) {
	in := newInstant(b, alerts.InstantConfig{}, mustParse(b, instantRules(b, time.Minute)), nil, nop)
	for _, bc := range []struct {
		name   string
		status int
	}{{"no-match", 200}, {"match", 503}} {
		reqs := make([]event.Request, 1000)
		for i := range reqs {
			reqs[i] = req(time.Now(), "web", "/api/clients/:id", bc.status, 42)
		}
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				in.Observe(reqs)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(reqs)), "ns/event")
		})
	}
}
