package aggregator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/wedsync/pulse/internal/event"
	"github.com/wedsync/pulse/internal/stream"
	"github.com/wedsync/pulse/internal/testenv"
)

// TestPoisonBatchIsolated makes ClickHouse refuse two specific events (a
// MATERIALIZED column whose throwIf fires on their request IDs) inside a
// batch of 24 messages: the aggregator must split the batch until the two
// messages holding them are alone, dead-letter those two with the server's
// reason, commit every other event exactly once, and carry on with what
// comes after. On both backends.
func TestPoisonBatchIsolated(t *testing.T) {
	for name, store := range testenv.Backends(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			if err := store.Exec(ctx, "ALTER TABLE "+store.T("requests")+
				" ADD COLUMN poison UInt8 MATERIALIZED throwIf(request_id IN ('m5-17', 'm18-0'))"); err != nil {
				t.Fatalf("add the refusing column: %v", err)
			}
			ns := testenv.NATS(t)
			_, js := testenv.Connect(t, ns.ClientURL())
			testenv.Streams(t, js, stream.Config{})
			var want []string
			for m := range 24 {
				reqs := requests(fmt.Sprintf("m%d", m), 40)
				publishBatch(t, js, reqs)
				if m == 5 || m == 18 {
					continue // refused: the whole message is dead-lettered
				}
				for _, q := range reqs {
					want = append(want, q.RequestID)
				}
			}
			// All 24 messages are in the stream before the aggregator
			// starts, so its first batch holds them all.
			agg := newAggregator(t, Config{MaxDelay: 500 * time.Millisecond, AckWait: 5 * time.Second}, js, store, nil)
			stop := testenv.Run(t, agg.Run)
			testenv.Eventually(t, 30*time.Second, "the refused messages dead-lettered", func() bool {
				return agg.Stats().Refused.Load() == 2
			})
			// The pipeline carries on.
			after := requests("after", 30)
			publishBatch(t, js, after)
			for _, q := range after {
				want = append(want, q.RequestID)
			}
			testenv.Eventually(t, 30*time.Second, "the events after the poison stored", func() bool {
				return testenv.Count(t, store, "SELECT count() FROM "+store.T("requests")+" WHERE request_id LIKE 'after-%'") == 30
			})
			stop()

			slices.Sort(want)
			if got := storedIDs(t, store); !slices.Equal(got, want) {
				t.Errorf("stored %d request ids; want %d, each once", len(got), len(want))
			}
			if got := agg.Stats().DeadLetters.Load(); got != 2 {
				t.Errorf("dead letters = %d; want 2", got)
			}
			if agg.Stats().Retries.Load() == 0 {
				t.Error("no failed insert counted; the batch was never refused (is the poison column there?)")
			}
			var dead []string
			for _, m := range deadLetters(t, js) {
				if reason := m.Headers().Get(stream.HeaderReason); !strings.Contains(reason, "throwIf") {
					t.Errorf("dead letter's %s = %q; want the server's throwIf refusal", stream.HeaderReason, reason)
				}
				reqs, err := event.DecodeBatch(nil, m.Data())
				if err != nil {
					t.Fatal(err)
				}
				dead = append(dead, reqs[0].RequestID)
			}
			slices.Sort(dead)
			if want := []string{"m18-0", "m5-0"}; !slices.Equal(dead, want) {
				t.Errorf("dead-lettered messages start with %v; want %v", dead, want)
			}
			if got := testenv.Count(t, store, "SELECT toUInt64(countMerge(requests)) FROM "+store.T("requests_1m")); got != uint64(len(want)) {
				t.Errorf("rollup counts %d; want %d", got, len(want))
			}
			info, err := js.Consumer(ctx, "PULSE_INGEST", DefaultConsumer)
			if err != nil {
				t.Fatal(err)
			}
			if in := info.CachedInfo(); in.NumAckPending != 0 || in.NumPending != 0 {
				t.Errorf("consumer: %d pending acks, %d pending; want none", in.NumAckPending, in.NumPending)
			}
		})
	}
}

// TestPermanent classifies insert failures: only the server refusing the
// rows is permanent.
func TestPermanent(t *testing.T) {
	f := func(name string, err error, want bool) {
		t.Helper()
		if got := permanent(err); got != want {
			t.Errorf("%s: permanent(%v) = %v; want %v", name, err, got, want)
		}
	}
	wrap := func(err error) error { return fmt.Errorf("insert into requests: %w", err) }
	f("throwIf", wrap(&clickhouse.Exception{Code: 395, Message: "Value passed to 'throwIf' function is non zero"}), true)
	f("type mismatch", wrap(&clickhouse.Exception{Code: 53}), true)
	f("parse", wrap(&clickhouse.Exception{Code: 6}), true)
	f("chDB throwIf", wrap(errors.New("Code: 395. DB::Exception: Value passed to 'throwIf' function is non-zero. (FUNCTION_THROW_IF_VALUE_IS_NON_ZERO)")), true)
	f("too many parts", wrap(&clickhouse.Exception{Code: 252, Message: "Too many parts"}), false)
	f("memory", wrap(&clickhouse.Exception{Code: 241}), false)
	f("timeout", wrap(&clickhouse.Exception{Code: 159}), false)
	f("unknown table", wrap(&clickhouse.Exception{Code: 60}), false)
	f("chDB memory", wrap(errors.New("Code: 241. DB::Exception: Memory limit exceeded")), false)
	f("connection refused", wrap(&net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}), false)
	f("eof", wrap(io.ErrUnexpectedEOF), false)
	f("deadline", wrap(context.DeadlineExceeded), false)
	f("canceled", wrap(context.Canceled), false)
	f("a message that only quotes a code", wrap(errors.New("dial tcp: Code: 395. of the proxy")), false)
}
