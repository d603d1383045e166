package ingest

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/wedsync/pulse/internal/event"
	"github.com/wedsync/pulse/internal/stream"
	"github.com/wedsync/pulse/internal/testenv"
)

// coalescing is the edge configuration the coalescing tests use.
var coalescing = Config{CoalesceDelay: 5 * time.Millisecond}

// postSingles posts one single-event request per id, all at once, and
// returns the statuses by id.
func (v *env) postSingles(t *testing.T, ids []int, prefix string) map[int]int {
	t.Helper()
	var mu sync.Mutex
	got := map[int]int{}
	var wg sync.WaitGroup
	for _, i := range ids {
		wg.Go(func() {
			rec := v.do(post{body: strings.NewReader(line(prefix, i))})
			mu.Lock()
			got[i] = rec.Code
			mu.Unlock()
		})
	}
	wg.Wait()
	return got
}

// onceEach fails unless the stream holds exactly the events prefix-i for
// i in [0, n), each once.
func (v *env) onceEach(t *testing.T, prefix string, n int) {
	t.Helper()
	seen := map[string]int{}
	for _, q := range v.stored(t) {
		seen[q.RequestID]++
	}
	for i := range n {
		id := want(prefix, i).RequestID
		if seen[id] != 1 {
			t.Errorf("%s stored %d times; want once", id, seen[id])
		}
		delete(seen, id)
	}
	for id, c := range seen {
		t.Errorf("unexpected event %s stored %d times", id, c)
	}
}

func TestCoalesceGroupsSingleEvents(t *testing.T) {
	v := newEnv(t, nil, coalescing, stream.Config{})
	const n = 300
	ids := make([]int, n)
	for i := range ids {
		ids[i] = i
	}
	for i, code := range v.postSingles(t, ids, "c") {
		if code != http.StatusAccepted {
			t.Fatalf("event %d: status %d; want 202", i, code)
		}
	}
	v.onceEach(t, "c", n)
	msgs := v.messages(t)
	if len(msgs) >= n/2 {
		t.Errorf("%d single events took %d messages; want them coalesced into far fewer", n, len(msgs))
	}
	for _, m := range msgs {
		if m.Header.Get(jetstream.MsgIDHeader) == "" {
			t.Errorf("message %d has no Nats-Msg-Id", m.Sequence)
		}
	}
	if got := v.edge.Stats().Accepted.Load(); got != n {
		t.Errorf("Stats().Accepted = %d; want %d", got, n)
	}
}

func TestCoalesceRetryStoredOnce(t *testing.T) {
	v := newEnv(t, nil, coalescing, stream.Config{})
	// The same events, concurrently and again after their 202.
	for round := range 3 {
		ids := []int{0, 1, 2, 3, 0, 1, 2, 3, 4}
		for i, code := range v.postSingles(t, ids, "r") {
			if code != http.StatusAccepted {
				t.Fatalf("round %d, event %d: status %d; want 202", round, i, code)
			}
		}
	}
	v.onceEach(t, "r", 5)
	// Another caller's event with the same request ID is its own event.
	if rec := v.do(post{body: strings.NewReader(line("r", 0)), token: otherToken}); rec.Code != http.StatusAccepted {
		t.Fatalf("other caller: status %d; want 202", rec.Code)
	}
	if got := len(v.stored(t)); got != 6 {
		t.Errorf("stored %d events; want 6 (5 of one caller, 1 of the other)", got)
	}
}

// A second edge on the same NATS (another replica, or this one after a
// restart) recognises a retry of an event the first edge stored.
func TestCoalesceRetryOnAnotherEdge(t *testing.T) {
	a := newEnv(t, nil, coalescing, stream.Config{})
	for i, code := range a.postSingles(t, []int{0, 1, 2}, "x") {
		if code != http.StatusAccepted {
			t.Fatalf("edge A, event %d: status %d", i, code)
		}
	}
	b := newEnv(t, a.ns, coalescing, a.sc)
	for i, code := range b.postSingles(t, []int{0, 1, 2, 3}, "x") {
		if code != http.StatusAccepted {
			t.Fatalf("edge B, event %d: status %d", i, code)
		}
	}
	a.onceEach(t, "x", 4)
	// And while both run, A learns B's batches from the log.
	testenv.Eventually(t, 10*time.Second, "edge A learned edge B's event", func() bool {
		a.edge.coalesce.mu.Lock()
		defer a.edge.coalesce.mu.Unlock()
		k := a.edge.coalesce.key("web", want("x", 3).RequestID)
		return a.edge.coalesce.win.get(k, time.Now()) != nil
	})
	if rec := a.do(post{body: strings.NewReader(line("x", 3))}); rec.Code != http.StatusAccepted {
		t.Fatalf("edge A, retry of B's event: status %d", rec.Code)
	}
	a.onceEach(t, "x", 4)
}

// An edge killed between its two publishes left a batch in the edge log
// but not in the ingest stream, and its clients no 202. Their retries, to
// a new edge, store that batch once.
func TestCoalesceKilledBetweenPublishes(t *testing.T) {
	v := newEnv(t, nil, Config{}, stream.Config{}) // streams only
	reqs := []event.Request{want("k", 0), want("k", 1), want("k", 2)}
	for i := range reqs {
		reqs[i].Timestamp = now
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := v.js.PublishMsg(ctx, &nats.Msg{Subject: stream.SubjectEdgeLog, Data: event.AppendBatch(nil, reqs), Header: nats.Header{
		jetstream.MsgIDHeader: []string{"dead-edge.1"},
		stream.HeaderEncoding: []string{stream.EncodingBatchV1},
		stream.HeaderCaller:   []string{"web"},
		stream.HeaderEdge:     []string{"dead-edge"},
	}})
	if err != nil {
		t.Fatalf("publish to the edge log: %v", err)
	}
	if got := len(v.stored(t)); got != 0 {
		t.Fatalf("the ingest stream holds %d events before the retries; want 0", got)
	}
	w := newEnv(t, v.ns, coalescing, v.sc)
	for i, code := range w.postSingles(t, []int{1, 2}, "k") {
		if code != http.StatusAccepted {
			t.Fatalf("retry of event %d: status %d; want 202", i, code)
		}
	}
	// The whole batch is stored, once, with its original ID; a later
	// retry of its third event does not store it again.
	w.onceEach(t, "k", 3)
	if rec := w.do(post{body: strings.NewReader(line("k", 0))}); rec.Code != http.StatusAccepted {
		t.Fatalf("retry of event 0: status %d", rec.Code)
	}
	w.onceEach(t, "k", 3)
	for _, m := range w.messages(t) {
		if id := m.Header.Get(jetstream.MsgIDHeader); id != "dead-edge.1" {
			t.Errorf("stored message has Nats-Msg-Id %q; want the batch's dead-edge.1", id)
		}
	}
}

func TestCoalesceNATSDown(t *testing.T) {
	v := newEnv(t, nil, coalescing, stream.Config{})
	v.accept(t, post{body: strings.NewReader(line("d", 0))}, 1)
	v.nc.Close()
	rec := v.do(post{body: strings.NewReader(line("d", 1))})
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" {
		t.Fatalf("NATS closed: status %d, Retry-After %q; want 503 with Retry-After", rec.Code, rec.Header().Get("Retry-After"))
	}
	if got := v.edge.Stats().Unavailable.Load(); got != 1 {
		t.Errorf("Stats().Unavailable = %d; want 1", got)
	}
}

func TestCoalesceClientGone(t *testing.T) {
	v := newEnv(t, nil, coalescing, stream.Config{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req := newPost(post{body: strings.NewReader(line("g", 0))}).WithContext(ctx)
	v.e.ServeHTTP(httptest.NewRecorder(), req)
	if a, u := v.edge.Stats().Abandoned.Load(), v.edge.Stats().Unavailable.Load(); a != 1 || u != 0 {
		t.Errorf("Stats() Abandoned %d, Unavailable %d; want 1, 0", a, u)
	}
	if strings.Contains(v.log.String(), "503") {
		t.Errorf("a client that went away was logged as a 503:\n%s", v.log)
	}
}

func TestWindowExpiry(t *testing.T) {
	var w window
	t0 := time.Unix(1000, 0)
	w.init(4*time.Minute, t0)
	b := &batch{created: t0}
	for i := range 100 {
		w.put(key{uint64(i), 1}, b, t0)
	}
	if w.get(key{5, 1}, t0.Add(4*time.Minute-time.Second)) != b {
		t.Fatal("a key was forgotten within its window")
	}
	if w.get(key{5, 1}, t0.Add(4*time.Minute)) != nil {
		t.Fatal("a key outlived its window")
	}
	// Later keys rotate the generations; the old ones leave memory.
	for i := range 6 {
		at := t0.Add(time.Duration(i+1) * time.Minute)
		w.put(key{uint64(1000 + i), 2}, &batch{created: at}, at)
	}
	if n := w.len(); n >= 100 {
		t.Errorf("the window holds %d keys after five quarter windows; want the first 100 dropped", n)
	}
}

// BenchmarkPublishSingles publishes b.N single events from 256 concurrent
// callers through the edge's coalescer (edge log + ingest stream, each
// answered after both acknowledgements) and, as the raw limit in the same
// run, the same events with plain nats.go: one async JetStream publish per
// event, all acknowledged. It reports both rates and their ratio.
func BenchmarkPublishSingles(b *testing.B) {
	const callers = 256
	v := newEnv(b, nil, Config{CoalesceDelay: time.Millisecond}, stream.Config{MaxBytes: 8 << 30})
	reqs := make([]event.Request, b.N)
	for i := range reqs {
		reqs[i] = want("bench", i)
	}
	run := func(publish func(i int) error) float64 {
		b.Helper()
		var next atomic.Int64
		var wg sync.WaitGroup
		start := time.Now()
		for range callers {
			wg.Go(func() {
				for {
					i := int(next.Add(1)) - 1
					if i >= b.N {
						return
					}
					if err := publish(i); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		return float64(b.N) / time.Since(start).Seconds()
	}
	b.ResetTimer()
	edge := run(func(i int) error { return v.edge.publishSingle(context.Background(), "web", reqs[i]) })
	v.purge(b)
	js, err := jetstream.New(v.nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		b.Fatal(err)
	}
	raw := run(func(i int) error {
		f, err := js.PublishMsgAsync(&nats.Msg{Subject: stream.SubjectEdgeRequests, Data: event.AppendBatch(nil, reqs[i:i+1]),
			Header: nats.Header{jetstream.MsgIDHeader: []string{"raw-" + reqs[i].RequestID}}}, jetstream.WithStallWait(time.Minute))
		if err != nil {
			return err
		}
		select {
		case <-f.Ok():
			return nil
		case err := <-f.Err():
			return err
		}
	})
	b.StopTimer()
	b.ReportMetric(edge, "edge_events/s")
	b.ReportMetric(raw, "raw_publish_events/s")
	b.ReportMetric(edge/raw, "ratio")
}

// A batch the ingest stream did not confirm in time is answered 503 with
// "did not confirm"; the client's retry, once the stream is back, stores
// the event once, from the batch the edge log holds.
func TestCoalesceUnconfirmedThenRetried(t *testing.T) {
	v := newEnv(t, nil, Config{CoalesceDelay: time.Millisecond, PublishTimeout: 300 * time.Millisecond}, stream.Config{})
	v.accept(t, post{body: strings.NewReader(line("u", 0))}, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := v.js.DeleteStream(ctx, v.sc.IngestStream); err != nil {
		t.Fatal(err)
	}
	// Something takes the ingest subject and never answers.
	sub, err := v.nc.Subscribe(stream.SubjectEdgeRequests, func(*nats.Msg) {})
	if err != nil {
		t.Fatal(err)
	}
	rec := v.do(post{body: strings.NewReader(line("u", 1))})
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "did not confirm in time") {
		t.Fatalf("unconfirmed publish: status %d, body %s; want 503 saying it did not confirm in time", rec.Code, rec.Body)
	}
	if err := sub.Unsubscribe(); err != nil {
		t.Fatal(err)
	}
	testenv.Streams(t, v.js, v.sc)
	for range 2 {
		v.accept(t, post{body: strings.NewReader(line("u", 1))}, 1)
	}
	if got := v.stored(t); len(got) != 1 || got[0].RequestID != want("u", 1).RequestID {
		t.Fatalf("stored %+v; want u-1 once", got)
	}
}
