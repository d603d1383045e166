package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/wedsync/pulse/internal/event"
	"github.com/wedsync/pulse/internal/stream"
	"github.com/wedsync/pulse/internal/testenv"
)

// TestAggregatorKill9 runs the aggregator as its own process, kills it with
// SIGKILL again and again while 200,000 events flow through the stream, and
// then finds every event stored exactly once.
func TestAggregatorKill9(t *testing.T) {
	const events, perMessage = 200_000, 500
	bin := pulseBinary(t, "")
	ns := testenv.NATS(t)
	_, js := testenv.Connect(t, ns.ClientURL())
	testenv.Streams(t, js, stream.Config{})
	store := testenv.ClickHouse(t)
	env := []string{
		"PULSE_NATS_URL=" + ns.ClientURL(),
		"PULSE_CLICKHOUSE_DSN=" + testenv.ClickHouseDSN() + "/" + store.Database(),
		"PULSE_LOG_FORMAT=json",
	}
	args := []string{"serve", "--data-dir", t.TempDir(), "--roles", "aggregator", "--batch-rows", "7000", "--batch-delay", "50ms", "--ack-wait", "5s"}
	agg := startPulse(t, bin, env, args...)

	// Publish at a steady pace, so that kills land at every stage.
	var published atomic.Int64
	pubDone := make(chan error, 1)
	go func() {
		base := time.Now().UTC().Add(-time.Hour)
		for m := 0; m < events/perMessage; m++ {
			reqs := make([]event.Request, perMessage)
			for i := range reqs {
				n := m*perMessage + i
				reqs[i] = event.Request{Timestamp: base.Add(time.Duration(n) * time.Millisecond), Service: "web",
					Endpoint: "/api/k", StatusCode: 200, ResponseTimeMS: float64(n % 1000), RequestID: fmt.Sprintf("k-%d", n)}
			}
			msg := &nats.Msg{Subject: stream.SubjectEdgeRequests, Header: nats.Header{stream.HeaderEncoding: []string{stream.EncodingBatchV1}},
				Data: event.AppendBatch(nil, reqs)}
			msg.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("kill-test-%d", m))
			if _, err := js.PublishMsg(context.Background(), msg); err != nil {
				pubDone <- err
				return
			}
			published.Add(perMessage)
			time.Sleep(20 * time.Millisecond)
		}
		pubDone <- nil
	}()

	procs := []*proc{agg}
	kills := 0
	for kills < 8 {
		time.Sleep(time.Duration(200+rand.IntN(1000)) * time.Millisecond)
		agg.kill()
		kills++
		agg = startPulse(t, bin, env, args...)
		procs = append(procs, agg)
	}
	if err := <-pubDone; err != nil {
		t.Fatalf("publish: %v", err)
	}
	t.Logf("published %d events; killed the aggregator %d times", published.Load(), kills)

	countQ := "SELECT count() FROM " + store.T("requests")
	testenv.Eventually(t, 120*time.Second, "all events stored", func() bool {
		return testenv.Count(t, store, countQ) >= events
	})
	if err := agg.terminate(30 * time.Second); err != nil {
		t.Errorf("aggregator exit after SIGTERM: %v", err)
	}

	assertExactlyOnce(t, store, "k-", events)
	skipped := 0.0
	for _, p := range procs {
		for _, l := range p.logLines() {
			if n, ok := l["rows"].(float64); ok && l["message"] == "rows already stored; not inserting them again" {
				skipped += n
			}
		}
	}
	t.Logf("rows found already stored after redelivery, and skipped: %.0f", skipped)
	st, err := js.Stream(context.Background(), "PULSE_INGEST")
	if err != nil {
		t.Fatal(err)
	}
	if n := st.CachedInfo().State.Msgs; n != 0 {
		t.Errorf("%d messages left in the stream; want 0 (all acked)", n)
	}
}
