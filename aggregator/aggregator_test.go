package aggregator

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/wedsync/pulse/internal/chstore"
	"github.com/wedsync/pulse/internal/event"
	"github.com/wedsync/pulse/internal/stream"
	"github.com/wedsync/pulse/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// pipeline is an aggregator running against a fresh NATS server and store.
type pipeline struct {
	js     jetstream.JetStream
	nc     *nats.Conn
	agg    *Aggregator
	store  *chstore.Store
	cancel context.CancelFunc
	done   chan error
}

// startPipeline starts an aggregator registering its metrics on reg, if
// not nil.
func startPipeline(t *testing.T, store *chstore.Store, cfg Config, reg prometheus.Registerer, setup ...func(*Aggregator)) *pipeline {
	t.Helper()
	ns := testenv.NATS(t)
	nc, js := testenv.Connect(t, ns.ClientURL())
	testenv.Streams(t, js, stream.Config{})
	p := &pipeline{js: js, nc: nc, store: store, done: make(chan error, 1)}
	p.agg = newAggregator(t, cfg, js, store, reg)
	for _, f := range setup {
		f(p.agg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	go func() { p.done <- p.agg.Run(ctx) }()
	t.Cleanup(p.stop)
	return p
}

func newAggregator(t *testing.T, cfg Config, js jetstream.JetStream, store Store, reg prometheus.Registerer) *Aggregator {
	t.Helper()
	a, err := New(cfg, js, store, reg, zerolog.Nop())
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return a
}

func (p *pipeline) stop() {
	if p.cancel != nil {
		p.cancel()
		<-p.done
		p.cancel = nil
	}
}

var base = time.Now().UTC().Truncate(time.Second).Add(-time.Hour)

func requests(prefix string, n int) []event.Request {
	out := make([]event.Request, n)
	for i := range out {
		out[i] = event.Request{
			Timestamp: base.Add(time.Duration(i) * time.Millisecond), Service: "web", Endpoint: "/api/clients/:id",
			Method: "GET", StatusCode: uint16(200 + i%4*100), ResponseTimeMS: float64(i%500) + 0.5,
			RequestID: fmt.Sprintf("%s-%d", prefix, i),
		}
	}
	return out
}

func publishBatch(t *testing.T, js jetstream.JetStream, reqs []event.Request) {
	t.Helper()
	msg := &nats.Msg{Subject: stream.SubjectEdgeRequests, Header: nats.Header{stream.HeaderEncoding: []string{stream.EncodingBatchV1}},
		Data: event.AppendBatch(nil, reqs)}
	if _, err := js.PublishMsg(context.Background(), msg); err != nil {
		t.Fatalf("publish: %v", err)
	}
}

func publishRaw(t *testing.T, js jetstream.JetStream, subject string, data []byte) {
	t.Helper()
	if _, err := js.Publish(context.Background(), subject, data); err != nil {
		t.Fatalf("publish %s: %v", subject, err)
	}
}

func storedIDs(t *testing.T, s *chstore.Store) []string {
	t.Helper()
	rows, err := s.Query(context.Background(), "SELECT request_id FROM "+s.T("requests"))
	if err != nil {
		t.Fatalf("read request ids: %v", err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// seen is an EventObserver that counts what it saw.
type seen struct {
	mu  sync.Mutex
	ids map[string]int
}

func (s *seen) Observe(reqs []event.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, q := range reqs {
		s.ids[q.RequestID]++
	}
}

// TestEventsSentEqualRowsStored sends edge batches, direct JSON from the
// fleet and poison messages, and compares the multiset of request IDs
// stored with the one sent, on both ClickHouse backends.
func TestEventsSentEqualRowsStored(t *testing.T) {
	for name, store := range testenv.Backends(t) {
		t.Run(name, func(t *testing.T) {
			obs := &seen{ids: map[string]int{}}
			p := startPipeline(t, store, Config{MaxRows: 700, MaxDelay: 50 * time.Millisecond}, nil,
				func(a *Aggregator) { a.SetEventObserver(obs) })
			var want []string
			for b := range 5 {
				reqs := requests(fmt.Sprintf("edge%d", b), 500)
				publishBatch(t, p.js, reqs)
				for _, q := range reqs {
					want = append(want, q.RequestID)
				}
			}
			// The fleet publishing straight to NATS: one event, then an
			// array; one without a request_id gets a deterministic one.
			publishRaw(t, p.js, "pulse.ingest.requests.checkout", []byte(`{"endpoint":"/pay/42","response_time_ms":12,"status_code":200,"request_id":"direct-1"}`))
			publishRaw(t, p.js, "pulse.ingest.requests.checkout", []byte(`[{"endpoint":"/pay","response_time_ms":1,"status_code":201,"request_id":"direct-2"},{"endpoint":"/pay","response_time_ms":2,"status_code":500}]`))
			want = append(want, "direct-1", "direct-2")
			// Poison: each goes to the dead-letter subject, none blocks.
			publishRaw(t, p.js, "pulse.ingest.requests.checkout", []byte(`{"endpoint":`))
			publishRaw(t, p.js, "pulse.ingest.requests.checkout", []byte(`{"endpoint":"/x","response_time_ms":-1,"status_code":200}`))
			publishRaw(t, p.js, "pulse.ingest.requests.Bad.Service", []byte(`{"endpoint":"/x","response_time_ms":1,"status_code":200}`))
			publishRaw(t, p.js, stream.SubjectEdgeRequests, []byte{1, 2, 3})
			publishRaw(t, p.js, "pulse.ingest.other", []byte(`{}`))
			ancient := requests("ancient", 1)
			ancient[0].Timestamp = time.Unix(-86400, 0)
			publishBatch(t, p.js, ancient)
			publishBatch(t, p.js, requests("after-poison", 10))
			for i := range 10 {
				want = append(want, fmt.Sprintf("after-poison-%d", i))
			}

			total := uint64(len(want) + 1) // plus the event without a request_id
			testenv.Eventually(t, 20*time.Second, "all rows stored", func() bool {
				return testenv.Count(t, store, "SELECT count() FROM "+store.T("requests")) >= total
			})
			p.stop()

			got := storedIDs(t, store)
			generated := slices.IndexFunc(got, func(id string) bool { return len(id) > 5 && id[:5] == "nats-" })
			if generated < 0 {
				t.Fatalf("no generated request_id among %d rows", len(got))
			}
			got = slices.Delete(got, generated, generated+1)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Fatalf("stored %d request ids; want %d (first stored %v)", len(got), len(want), got[:min(5, len(got))])
			}
			obs.mu.Lock()
			for _, id := range want {
				if obs.ids[id] != 1 {
					t.Errorf("event %s observed %d times; want once", id, obs.ids[id])
					break
				}
			}
			obs.mu.Unlock()
			if n := p.agg.Stats().DeadLetters.Load(); n != 6 {
				t.Errorf("dead letters = %d; want 6", n)
			}
			assertDeadLetters(t, p.js, 6)
			rollup := testenv.Count(t, store, "SELECT toUInt64(countMerge(requests)) FROM "+store.T("requests_1m"))
			if rollup != total {
				t.Errorf("rollup counts %d requests; want %d", rollup, total)
			}
		})
	}
}

func assertDeadLetters(t *testing.T, js jetstream.JetStream, want int) {
	t.Helper()
	msgs := deadLetters(t, js)
	for _, m := range msgs {
		if m.Headers().Get(stream.HeaderReason) == "" || m.Headers().Get(stream.HeaderSubject) == "" {
			t.Errorf("dead letter on %s lacks reason or subject headers: %v", m.Subject(), m.Headers())
		}
	}
	if len(msgs) != want {
		t.Errorf("dead-letter stream holds %d messages; want %d", len(msgs), want)
	}
}

// deadLetters returns the messages of the dead-letter stream (up to 100).
func deadLetters(t *testing.T, js jetstream.JetStream) []jetstream.Msg {
	t.Helper()
	ctx := context.Background()
	st, err := js.Stream(ctx, "PULSE_DEADLETTER")
	if err != nil {
		t.Fatal(err)
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.FetchNoWait(100)
	if err != nil {
		t.Fatal(err)
	}
	var msgs []jetstream.Msg
	for m := range batch.Messages() {
		msgs = append(msgs, m)
	}
	return msgs
}

// TestRedeliveryDoesNotDuplicate stores part of a message's rows, as a
// crashed aggregator might have, then lets the message be redelivered: the
// aggregator must insert exactly the missing rows.
func TestRedeliveryDoesNotDuplicate(t *testing.T) {
	for name, store := range testenv.Backends(t) {
		t.Run(name, func(t *testing.T) {
			ns := testenv.NATS(t)
			_, js := testenv.Connect(t, ns.ClientURL())
			testenv.Streams(t, js, stream.Config{})
			reqs := requests("redeliver", 100)
			publishBatch(t, js, reqs)

			// A first delivery that is never acked.
			ctx := context.Background()
			cons, err := js.CreateOrUpdateConsumer(ctx, "PULSE_INGEST", jetstream.ConsumerConfig{
				Durable: "aggregator", AckPolicy: jetstream.AckExplicitPolicy, AckWait: time.Second, MaxDeliver: -1})
			if err != nil {
				t.Fatal(err)
			}
			msgs, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			for range msgs.Messages() {
			}
			// Rows 0..59 of stream message 1 were committed before the "crash".
			if err := store.Insert(ctx, "", "requests", Columns(reqs[:60], 1)); err != nil {
				t.Fatal(err)
			}

			agg := newAggregator(t, Config{MaxDelay: 20 * time.Millisecond, AckWait: 5 * time.Second}, js, store, nil)
			runCtx, cancel := context.WithCancel(ctx)
			var wg sync.WaitGroup
			wg.Go(func() { _ = agg.Run(runCtx) })
			testenv.Eventually(t, 20*time.Second, "redelivered message committed", func() bool {
				return agg.Stats().Batches.Load() == 1
			})
			cancel()
			wg.Wait()

			if got := testenv.Count(t, store, "SELECT count() FROM "+store.T("requests")); got != 100 {
				t.Errorf("rows = %d; want 100", got)
			}
			if got := testenv.Count(t, store, "SELECT uniqExact(request_id) FROM "+store.T("requests")); got != 100 {
				t.Errorf("distinct request ids = %d; want 100", got)
			}
			if got := agg.Skipped(); got != 60 {
				t.Errorf("skipped rows = %d; want 60", got)
			}
			if got := testenv.Count(t, store, "SELECT toUInt64(countMerge(requests)) FROM "+store.T("requests_1m")); got != 100 {
				t.Errorf("rollup counts %d; want 100", got)
			}
			info, err := cons.Info(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if info.NumAckPending != 0 || info.NumPending != 0 {
				t.Errorf("consumer: %d pending acks, %d pending; want none", info.NumAckPending, info.NumPending)
			}
		})
	}
}

// TestResourcesAndHealthStored sends resource samples (from the edge and
// straight from a host) and health results, plus a poison message of each
// kind, and finds each valid row once in its table.
func TestResourcesAndHealthStored(t *testing.T) {
	for name, store := range testenv.Backends(t) {
		t.Run(name, func(t *testing.T) {
			p := startPipeline(t, store, Config{MaxDelay: 50 * time.Millisecond}, nil)
			ts := base.Format(time.RFC3339)
			publishRaw(t, p.js, stream.SubjectResources+"edge", []byte(`[{"host":"web-1","resource":"cpu","used":1.5,"capacity":2,"timestamp":"`+ts+`"},
				{"host":"web-1","resource":"disk","name":"/","used":40,"capacity":100,"timestamp":"`+ts+`"}]`))
			publishRaw(t, p.js, stream.SubjectResources+"db-1", []byte(`{"host":"db-1","resource":"memory","used":3,"utilisation":0.5}`))
			publishRaw(t, p.js, stream.SubjectResources+"db-1", []byte(`{"host":"db-1","resource":"gpu","used":3,"utilisation":0.5}`))
			publishRaw(t, p.js, stream.SubjectHealth+"database", []byte(`[{"timestamp":"`+ts+`","component":"database","status":"healthy","response_time_ms":4.5,"details":{"active_connections":3}},
				{"timestamp":"`+ts+`","component":"external","target":"stripe","status":"critical","response_time_ms":5000}]`))
			publishRaw(t, p.js, stream.SubjectHealth+"database", []byte(`[{"timestamp":"`+ts+`","component":"database","status":"great"}]`))

			testenv.Eventually(t, 20*time.Second, "rows in resources and health_checks", func() bool {
				return testenv.Count(t, store, "SELECT count() FROM "+store.T("resources")) >= 3 &&
					testenv.Count(t, store, "SELECT count() FROM "+store.T("health_checks")) >= 2 &&
					p.agg.Stats().DeadLetters.Load() >= 2
			})
			p.stop()
			if got := testenv.Count(t, store, "SELECT count() FROM "+store.T("resources")+" WHERE host = 'web-1' AND resource = 'cpu' AND utilisation = 0.75"); got != 1 {
				t.Errorf("web-1 cpu rows with utilisation 0.75: %d; want 1", got)
			}
			if got := testenv.Count(t, store, "SELECT count() FROM "+store.T("resources")); got != 3 {
				t.Errorf("resource rows = %d; want 3", got)
			}
			if got := testenv.Count(t, store, "SELECT count() FROM "+store.T("health_checks")+" WHERE component = 'external' AND target = 'stripe' AND status = 'critical'"); got != 1 {
				t.Errorf("stripe critical rows: %d; want 1", got)
			}
			var details string
			if err := store.QueryRow(context.Background(), "SELECT details FROM "+store.T("health_checks")+" WHERE component = 'database'", &details); err != nil || details != `{"active_connections":3}` {
				t.Errorf("database details %q, %v; want {\"active_connections\":3}", details, err)
			}
			if n := p.agg.Stats().DeadLetters.Load(); n != 2 {
				t.Errorf("dead letters = %d; want 2", n)
			}
		})
	}
}

// TestLargeMessagesBoundedBatches publishes a backlog of large messages
// (edge batches of 5,000 events) before the aggregator starts: every batch
// it inserts stays near its row limit instead of swallowing the backlog,
// and messages as large as the server allows still get through.
func TestLargeMessagesBoundedBatches(t *testing.T) {
	store := testenv.ClickHouse(t)
	ns := testenv.NATS(t)
	_, js := testenv.Connect(t, ns.ClientURL())
	testenv.Streams(t, js, stream.Config{})
	for m := range 40 {
		publishBatch(t, js, requests(fmt.Sprintf("big%d", m), 5000))
	}
	// One message close to the server's 8 MiB maximum payload.
	huge := requests("huge", 100_000)
	publishBatch(t, js, huge)

	var largest atomic.Int64
	p := &pipeline{js: js, store: store, done: make(chan error, 1)}
	p.agg = newAggregator(t, Config{MaxRows: 10_000, MaxDelay: 50 * time.Millisecond}, js, store, nil)
	p.agg.batchRows = largestBatch{&largest}
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	go func() { p.done <- p.agg.Run(ctx) }()
	t.Cleanup(p.stop)

	const total = 40*5000 + 100_000
	testenv.Eventually(t, 60*time.Second, "backlog stored", func() bool {
		return testenv.Count(t, store, "SELECT count() FROM "+store.T("requests")) >= total
	})
	p.stop()
	if got := testenv.Count(t, store, "SELECT count() FROM "+store.T("requests")); got != total {
		t.Errorf("rows = %d; want %d", got, total)
	}
	// A batch may overshoot its limit by what one fetch brings: at most
	// the server's maximum payload (8 MiB, about 120,000 of these events).
	// Fetching by message count took the whole 300,000-event backlog.
	if l := largest.Load(); l > 160_000 || l < 5000 {
		t.Errorf("largest insert %d rows; want at most 10,000 plus one fetch of 8 MiB", l)
	}
	if got := testenv.Count(t, store, "SELECT count() FROM "+store.T("requests")+" WHERE substring(request_id, 1, 5) = 'huge-'"); got != 100_000 {
		t.Errorf("rows of the largest message = %d; want 100000", got)
	}
}

// largestBatch stands in for the batch-rows histogram and keeps the
// largest insert.
type largestBatch struct{ largest *atomic.Int64 }

func (b largestBatch) Observe(rows float64) {
	for {
		cur := b.largest.Load()
		if int64(rows) <= cur || b.largest.CompareAndSwap(cur, int64(rows)) {
			return
		}
	}
}
