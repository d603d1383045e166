package aggregator

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wedsync/pulse/internal/chstore"
	"github.com/wedsync/pulse/internal/stream"
	"github.com/wedsync/pulse/internal/testenv"
)

// slowFirstInsert is a real store whose first insert waits delay before
// it goes to the server, as an insert does behind a lagging replica.
type slowFirstInsert struct {
	Store
	delay   time.Duration
	started chan struct{}
	n       atomic.Int32
}

func (s *slowFirstInsert) Insert(ctx context.Context, queryID, table string, cols []chstore.Column) error {
	if s.n.Add(1) == 1 {
		close(s.started)
		time.Sleep(s.delay)
	}
	return s.Store.Insert(ctx, queryID, table, cols)
}

// TestSlowInsertKeepsNextBatch: while one aggregator's insert takes longer
// than AckWait, the next batch it already holds is heartbeated, so
// JetStream does not hand its message to a second aggregator; each event
// is stored once. (When the next batch waited unheartbeated in a buffer,
// the second aggregator stored it too, and then the first again.)
func TestSlowInsertKeepsNextBatch(t *testing.T) {
	store := testenv.ClickHouse(t)
	ns := testenv.NATS(t)
	_, js := testenv.Connect(t, ns.ClientURL())
	testenv.Streams(t, js, stream.Config{})
	cfg := Config{MaxRows: 100, MaxDelay: 20 * time.Millisecond, AckWait: 5 * time.Second}

	slow := &slowFirstInsert{Store: store, delay: 12 * time.Second, started: make(chan struct{})}
	a := newAggregator(t, cfg, js, slow, nil)
	b := newAggregator(t, cfg, js, store, nil)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()

	publishBatch(t, js, requests("slow-first", 100))
	wg.Go(func() { _ = a.Run(ctx) })
	select {
	case <-slow.started:
	case <-time.After(20 * time.Second):
		t.Fatal("the first insert did not start")
	}
	// Two more full batches for a while its insert hangs: the first waits
	// to be written, the second keeps a's fetcher busy, so that whatever
	// JetStream redelivers goes to b.
	publishBatch(t, js, requests("slow-next", 100))
	time.Sleep(300 * time.Millisecond)
	publishBatch(t, js, requests("slow-last", 100))
	time.Sleep(300 * time.Millisecond)
	wg.Go(func() { _ = b.Run(ctx) })

	testenv.Eventually(t, 40*time.Second, "every batch committed", func() bool {
		return testenv.Count(t, store, "SELECT uniqExact(request_id) FROM "+store.T("requests")) >= 300 &&
			a.Stats().Batches.Load() >= 1
	})
	time.Sleep(2 * time.Second) // room for a second copy to land, were there one
	if got := testenv.Count(t, store, "SELECT count() FROM "+store.T("requests")); got != 300 {
		t.Errorf("rows = %d; want 300 (each event once); aggregator a committed %d batches, b %d",
			got, a.Stats().Batches.Load(), b.Stats().Batches.Load())
	}
}
