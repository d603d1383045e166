package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wedsync/pulse/internal/stream"
	"github.com/wedsync/pulse/internal/testenv"
)

// TestEdgeKill9 kills the ingest edge with SIGKILL again and again while
// clients post single events (coalesced by the edge) and retry every one
// that got no 202, some of them also after their 202 as if the answer had
// been lost; the restarted edge takes the retries. Every event must be
// stored exactly once: nothing that got a 202 is lost, no retry stores an
// event twice.
func TestEdgeKill9(t *testing.T) {
	const events, workers = 12_000, 64
	bin := pulseBinary(t, "")
	ns := testenv.NATS(t)
	_, js := testenv.Connect(t, ns.ClientURL())
	testenv.Streams(t, js, stream.Config{})
	store := testenv.ClickHouse(t)
	addr := testenv.FreeAddr(t)
	env := []string{
		"PULSE_NATS_URL=" + ns.ClientURL(),
		"PULSE_CLICKHOUSE_DSN=" + testenv.ClickHouseDSN() + "/" + store.Database(),
		"PULSE_LOG_FORMAT=json", "PULSE_INGEST_TOKENS=fleet:" + testIngestToken, "PULSE_ADMIN_TOKENS=ops:" + testAdminToken,
		"PULSE_INGEST_RATE_LIMIT=1000000/min", "PULSE_HTTP_ADDR=" + addr,
	}
	startPulse(t, bin, env, "serve", "--roles", "aggregator", "--batch-delay", "50ms", "--http-addr", testenv.FreeAddr(t))
	edgeArgs := []string{"serve", "--roles", "ingest", "--coalesce-delay", "2ms"}
	edge := startPulse(t, bin, env, edgeArgs...)

	client := &http.Client{Timeout: 10 * time.Second}
	base := time.Now().UTC().Add(-time.Minute)
	post := func(i int) error {
		body := fmt.Sprintf(`{"endpoint":"/api/k","response_time_ms":%d,"status_code":200,"service":"web","request_id":"e-%d","timestamp":%q}`,
			i%1000, i, base.Add(time.Duration(i)*time.Millisecond).Format(time.RFC3339Nano))
		req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/api/admin/system/metrics", strings.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+testIngestToken)
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	}
	// postUntilAccepted retries like a fleet client: until a 202, with a
	// bounded number of attempts.
	var retries atomic.Int64
	postUntilAccepted := func(i int) error {
		for attempt := 0; ; attempt++ {
			err := post(i)
			if err == nil {
				return nil
			}
			if attempt == 400 {
				return fmt.Errorf("event %d: no 202 after %d attempts: %w", i, attempt, err)
			}
			retries.Add(1)
			time.Sleep(time.Duration(25+rand.IntN(50)) * time.Millisecond)
		}
	}

	var next atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, workers)
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= events {
					return
				}
				if err := postUntilAccepted(i); err != nil {
					errc <- err
					return
				}
				// One in ten answers is "lost": the client sends the event
				// again, now or a little later (maybe to a restarted edge).
				if i%10 == 0 {
					if i%20 == 0 {
						time.Sleep(time.Duration(rand.IntN(500)) * time.Millisecond)
					}
					if err := postUntilAccepted(i); err != nil {
						errc <- err
						return
					}
				}
			}
		})
	}
	kills := 0
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for kills < 4 {
		select {
		case <-done:
		case <-time.After(time.Duration(300+rand.IntN(700)) * time.Millisecond):
			edge.kill()
			kills++
			edge = startPulse(t, bin, env, edgeArgs...)
			continue
		}
		break
	}
	<-done
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	t.Logf("%d events posted, the edge killed %d times, %d retries", events, kills, retries.Load())
	if kills < 2 {
		t.Fatalf("the edge was killed %d times before the clients finished; want at least 2 (make the run longer)", kills)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	countQ := "SELECT count() FROM " + store.T("requests")
	for testenv.Count(t, store, countQ) < events {
		select {
		case <-ctx.Done():
			t.Fatalf("stored %d of %d events within 2 minutes", testenv.Count(t, store, countQ), events)
		case <-time.After(100 * time.Millisecond):
		}
	}
	// Let any late batch (a retry's re-publish) land before counting.
	if err := settle(ctx, func() uint64 { return testenv.Count(t, store, countQ) }); err != nil {
		t.Fatal(err)
	}
	assertExactlyOnce(t, store, "e-", events)
}

// settle waits until f returns the same value for a second.
func settle(ctx context.Context, f func() uint64) error {
	last, since := f(), time.Now()
	for time.Since(since) < time.Second {
		select {
		case <-ctx.Done():
			return errors.New("the count did not settle")
		case <-time.After(100 * time.Millisecond):
		}
		if v := f(); v != last {
			last, since = v, time.Now()
		}
	}
	return nil
}
