package aggregator

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/wedsync/pulse/internal/event"
	"github.com/wedsync/pulse/internal/stream"
	"github.com/wedsync/pulse/internal/testenv"
)

// BenchmarkAggregators drains b.N events, queued in the ingest stream in
// messages of 500 as edges publish them, into the ClickHouse server with
// one aggregator and then with two sharing the durable consumer, beside a
// raw insert of the same rows in batches of 50,000 measured in the same
// run. Reported: events/s of each, and each against the raw insert.
//
//	go test -run '^$' -bench BenchmarkAggregators -benchtime 500000x ./aggregator
func BenchmarkAggregators(b *testing.B) {
	const perMsg, perInsert = 500, 50_000
	reqs := requests("scale", b.N)

	store := testenv.ClickHouse(b)
	start := time.Now()
	for i := 0; i < len(reqs); i += perInsert {
		part := reqs[i:min(i+perInsert, len(reqs))]
		if err := store.Insert(context.Background(), "", "requests", Columns(part, uint64(i/perInsert+1))); err != nil {
			b.Fatalf("raw insert: %v", err)
		}
	}
	raw := float64(len(reqs)) / time.Since(start).Seconds()

	rates := map[int]float64{}
	for _, n := range []int{1, 2} {
		store := testenv.ClickHouse(b)
		ns := testenv.NATS(b)
		_, js := testenv.Connect(b, ns.ClientURL())
		testenv.Streams(b, js, stream.Config{})
		ctx := context.Background()
		for i := 0; i < len(reqs); i += perMsg {
			msg := &nats.Msg{Subject: stream.SubjectEdgeRequests, Header: nats.Header{stream.HeaderEncoding: []string{stream.EncodingBatchV1}},
				Data: event.AppendBatch(nil, reqs[i:min(i+perMsg, len(reqs))])}
			if _, err := js.PublishMsgAsync(msg); err != nil {
				b.Fatalf("publish: %v", err)
			}
		}
		select {
		case <-js.PublishAsyncComplete():
		case <-time.After(time.Minute):
			b.Fatal("publishes not acknowledged within a minute")
		}

		runCtx, cancel := context.WithCancel(ctx)
		done := make(chan error, n)
		start := time.Now()
		for range n {
			a, err := New(Config{}, js, store, nil, zerolog.Nop())
			if err != nil {
				b.Fatalf("New: %v", err)
			}
			go func() { done <- a.Run(runCtx) }()
		}
		want := uint64(len(reqs))
		for testenv.Count(b, store, "SELECT count() FROM "+store.T("requests")) < want {
			if time.Since(start) > 10*time.Minute {
				b.Fatal("not stored within 10 minutes")
			}
			time.Sleep(20 * time.Millisecond)
		}
		rates[n] = float64(want) / time.Since(start).Seconds()
		cancel()
		for range n {
			<-done
		}
		if got := testenv.Count(b, store, "SELECT uniqExact(request_id) FROM "+store.T("requests")); got != want {
			b.Fatalf("%d aggregators: %d distinct request ids stored, want %d", n, got, want)
		}
	}
	b.ReportMetric(raw, "raw_events/s")
	b.ReportMetric(rates[1], "1agg_events/s")
	b.ReportMetric(rates[2], "2agg_events/s")
	b.ReportMetric(rates[1]/raw, "1agg/raw")
	b.ReportMetric(rates[2]/raw, "2agg/raw")
	b.ReportMetric(rates[2]/rates[1], "2agg/1agg")
	b.ReportMetric(0, "ns/op")
}
