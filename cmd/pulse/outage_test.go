package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/wedsync/pulse/internal/chstore"
	"github.com/wedsync/pulse/internal/stream"
	"github.com/wedsync/pulse/internal/testenv"
)

// TestClickHouseOutage stops the ClickHouse server for 20 s while events
// keep arriving over HTTP: the edge must keep answering 202, and once the
// server is back every event must be stored exactly once.
func TestClickHouseOutage(t *testing.T) {
	bin := pulseBinary(t, "")
	ch := testenv.StartClickHouseServer(t)
	ns := testenv.NATS(t)
	_, js := testenv.Connect(t, ns.ClientURL())
	testenv.Streams(t, js, stream.Config{})
	db := testenv.DatabaseName(t)
	const token = "ingest-token-for-the-outage-test"
	p := startPulse(t, bin, []string{
		"PULSE_NATS_URL=" + ns.ClientURL(),
		"PULSE_CLICKHOUSE_DSN=" + ch.DSN(db),
		"PULSE_INGEST_TOKENS=load:" + token,
		"PULSE_ADMIN_TOKENS=admin:admin-token-for-the-outage-test",
		"PULSE_HTTP_ADDR=" + testenv.FreeAddr(t),
		"PULSE_LOG_FORMAT=json",
	}, "serve", "--data-dir", t.TempDir(), "--batch-delay", "100ms", "--ack-wait", "10s")
	url := "http://" + p.httpAddr() + "/api/admin/system/metrics"

	// Load: 200-event NDJSON posts every 25 ms until told to stop.
	var sent, failed atomic.Int64
	stop := make(chan struct{})
	loadDone := make(chan struct{})
	go func() {
		defer close(loadDone)
		client := &http.Client{Timeout: 10 * time.Second}
		for n := 0; ; {
			select {
			case <-stop:
				return
			case <-time.After(25 * time.Millisecond):
			}
			var body bytes.Buffer
			for i := 0; i < 200; i++ {
				fmt.Fprintf(&body, `{"endpoint":"/api/o","response_time_ms":%d,"status_code":200,"request_id":"o-%d"}`+"\n", (n+i)%700, n+i)
			}
			req, _ := http.NewRequest(http.MethodPost, url, &body)
			req.Header.Set("Authorization", "Bearer "+token)
			req.Header.Set("Content-Type", "application/x-ndjson")
			resp, err := client.Do(req)
			if err != nil || resp.StatusCode != http.StatusAccepted {
				failed.Add(1)
				if err == nil {
					resp.Body.Close()
				}
				continue
			}
			resp.Body.Close()
			n += 200
			sent.Store(int64(n))
		}
	}()

	time.Sleep(3 * time.Second)
	before := sent.Load()
	ch.Stop()
	t.Logf("ClickHouse stopped after %d events", before)
	time.Sleep(20 * time.Second)
	during := sent.Load() - before
	ch.Start()
	t.Logf("ClickHouse restarted; %d events accepted while it was down", during)
	time.Sleep(3 * time.Second)
	close(stop)
	<-loadDone

	if failed.Load() != 0 {
		t.Errorf("%d ingest requests were not answered 202", failed.Load())
	}
	// How many is a figure of the machine; that the edge kept accepting
	// is the contract.
	if during == 0 {
		t.Error("no events accepted during the outage; the edge should keep accepting")
	}
	ctx := context.Background()
	store, err := chstore.Open(ctx, ch.DSN(db), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	total := uint64(sent.Load())
	countQ := "SELECT count() FROM " + store.T("requests")
	testenv.Eventually(t, 90*time.Second, "every accepted event stored", func() bool {
		return testenv.Count(t, store, countQ) >= total
	})
	if err := p.terminate(30 * time.Second); err != nil {
		t.Errorf("pulse exit after SIGTERM: %v", err)
	}
	assertExactlyOnce(t, store, "o-", total)
}
