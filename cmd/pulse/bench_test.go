package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"github.com/wedsync/pulse/aggregator"
	"github.com/wedsync/pulse/internal/chstore"
	"github.com/wedsync/pulse/internal/event"
	"github.com/wedsync/pulse/internal/testenv"
)

// The benchmarks here measure the whole system on this machine: a pulse
// process (embedded NATS, all roles) writing to the ClickHouse server, fed
// over HTTP from this process. Run them with scripts/bench.sh (make bench).

const (
	benchIngestToken = "bench-ingest-token-0123456789"
	benchAdminToken  = "bench-admin-token-0123456789"
)

// benchPulse starts `pulse serve` against a fresh database on the test
// ClickHouse server and returns the process, its base URL and the store.
func benchPulse(b *testing.B) (*proc, string, *chstore.Store) {
	b.Helper()
	store := testenv.ClickHouse(b)
	p := startPulse(b, pulseBinary(b, ""), []string{
		"PULSE_CLICKHOUSE_DSN=" + testenv.ClickHouseDSN() + "/" + store.Database(),
		"PULSE_INGEST_TOKENS=bench:" + benchIngestToken,
		"PULSE_ADMIN_TOKENS=admin:" + benchAdminToken,
		"PULSE_HTTP_ADDR=" + testenv.FreeAddr(b),
		"PULSE_NATS_LISTEN=" + testenv.FreeAddr(b),
		"PULSE_LOG_FORMAT=json",
		"PULSE_INGEST_RATE_LIMIT=1000000/s", // the load comes from one principal
	}, "serve", "--data-dir", b.TempDir())
	return p, "http://" + p.httpAddr(), store
}

// benchEvents returns n events as NDJSON bodies of perBody events each,
// rendered before timing starts.
func benchEvents(n, perBody int) [][]byte {
	now := time.Now().UTC().Add(-time.Minute).Format(time.RFC3339)
	endpoints := []string{"/api/clients/%d", "/api/forms/%d", "/api/bookings/%d/timeline", "/api/payments", "/auth/v1/token"}
	var bodies [][]byte
	var buf bytes.Buffer
	for i := 0; i < n; i++ {
		ep := fmt.Sprintf(endpoints[i%len(endpoints)], i%977)
		fmt.Fprintf(&buf, `{"endpoint":%q,"response_time_ms":%.2f,"status_code":%d,"service":"web","method":"GET","user_id":%q,"timestamp":%q,"request_id":"b-%d"}`+"\n",
			ep, float64(i%1500)+0.25, []int{200, 200, 200, 201, 304, 404, 500}[i%7], uuid.NewString(), now, i)
		if (i+1)%perBody == 0 || i == n-1 {
			bodies = append(bodies, bytes.Clone(buf.Bytes()))
			buf.Reset()
		}
	}
	return bodies
}

func post(client *http.Client, url string, body []byte) error {
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+benchIngestToken)
	req.Header.Set("Content-Type", "application/x-ndjson")
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

// postAll posts every body to url from workers concurrent clients, each
// body once, and returns when all were answered.
func postAll(b *testing.B, url string, bodies [][]byte, workers int) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: workers}}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < len(bodies); i = int(next.Add(1)) - 1 {
				if err := post(client, url, bodies[i]); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// rawInsert measures the raw limit: the same rows inserted with
// clickhouse-go in 50,000-row batches straight into the requests table
// (materialized view included), no NATS, no HTTP. It returns rows/s.
func rawInsert(b *testing.B, store *chstore.Store, n int) float64 {
	b.Helper()
	bodies := benchEvents(n, 50000)
	d := event.Decoder{Rules: event.Rules{Now: time.Now()}, DefaultService: "web", MaxEvents: 50000}
	var batches [][]chstore.Column
	for _, body := range bodies {
		reqs, err := d.NDJSON(body)
		if err != nil {
			b.Fatal(err)
		}
		batches = append(batches, aggregator.Columns(reqs, 1))
	}
	ctx := context.Background()
	start := time.Now()
	for _, cols := range batches {
		if err := store.Insert(ctx, "", "requests", cols); err != nil {
			b.Fatal(err)
		}
	}
	return float64(n) / time.Since(start).Seconds()
}

// BenchmarkEndToEnd sends b.N events as NDJSON bodies of 5,000 over HTTP
// from 4 connections and stops the clock when the last one is a row in
// ClickHouse. It reports events/s beside the raw clickhouse-go insert rate
// of the same number of rows measured in the same run, and their ratio.
func BenchmarkEndToEnd(b *testing.B) {
	_, url, store := benchPulse(b)
	raw := rawInsert(b, testenv.ClickHouse(b), max(b.N, 200_000))

	bodies := benchEvents(b.N, 5000)
	b.ResetTimer()
	start := time.Now()
	postAll(b, url+"/api/admin/system/metrics", bodies, 4)
	accepted := time.Since(start)
	countQ := "SELECT count() FROM " + store.T("requests")
	testenv.Eventually(b, 5*time.Minute, "all events stored", func() bool {
		return testenv.Count(b, store, countQ) >= uint64(b.N)
	})
	elapsed := time.Since(start)
	b.StopTimer()
	e2e := float64(b.N) / elapsed.Seconds()
	b.ReportMetric(e2e, "events/s")
	b.ReportMetric(float64(b.N)/accepted.Seconds(), "accepted/s")
	b.ReportMetric(raw, "raw_rows/s")
	b.ReportMetric(e2e/raw, "ratio")
}

// BenchmarkSingleEventPost measures requests/s of one-event POSTs from 32
// concurrent clients, each answered only after JetStream persisted it.
func BenchmarkSingleEventPost(b *testing.B) {
	_, url, _ := benchPulse(b)
	bodies := benchEvents(b.N, 1)
	b.ResetTimer()
	start := time.Now()
	postAll(b, url+"/api/admin/system/metrics", bodies, 32)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "requests/s")
}

// BenchmarkServeLatency measures what TestServeEmbedded only checks: each
// iteration posts a slow and a failing request for an endpoint of its own
// and times, from sending it, the moment both are rows in ClickHouse and
// the moment the endpoint's server_error alert arrives on NATS. It reports the
// median and the worst of each, in milliseconds (with the default
// --batch-delay of 1s, rows wait up to a second by design).
func BenchmarkServeLatency(b *testing.B) {
	p, url, store := benchPulse(b)
	nc, err := nats.Connect(p.natsURL())
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	// The subscription stamps each server_error alert as it arrives.
	type firing struct {
		endpoint string
		at       time.Time
	}
	fired := make(chan firing, 256)
	if _, err := nc.Subscribe("pulse.alerts.>", func(m *nats.Msg) {
		var a struct {
			Rule, State string
			Labels      map[string]string
		}
		if json.Unmarshal(m.Data, &a) == nil && a.Rule == "server_error" && a.State == "firing" {
			fired <- firing{a.Labels["endpoint"], time.Now()}
		}
	}); err != nil {
		b.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		b.Fatal(err)
	}
	client := &http.Client{}
	var toRow, toAlert []time.Duration
	b.ResetTimer()
	for i := range b.N {
		endpoint := fmt.Sprintf("/api/latency/e%d", i) // not all digits: kept as it is, not :id
		body := fmt.Appendf(nil, `{"endpoint":%q,"response_time_ms":5400,"status_code":200,"service":"web"}`+"\n"+
			`{"endpoint":%q,"response_time_ms":42,"status_code":502,"service":"web"}`, endpoint, endpoint)
		sent := time.Now() // the alert may arrive before the 202 does
		if err := post(client, url+"/api/admin/system/metrics", body); err != nil {
			b.Fatal(err)
		}
		q := "SELECT count() FROM " + store.T("requests") + " WHERE endpoint = " + chstore.Quote(endpoint)
		testenv.Eventually(b, time.Minute, "both events stored", func() bool { return testenv.Count(b, store, q) == 2 })
		toRow = append(toRow, time.Since(sent))
		for timeout := time.After(time.Minute); len(toAlert) <= i; {
			select {
			case f := <-fired:
				if f.endpoint == endpoint {
					toAlert = append(toAlert, f.at.Sub(sent))
				}
			case <-timeout:
				b.Fatalf("no server_error alert for %s within a minute", endpoint)
			}
		}
	}
	b.StopTimer()
	report := func(ds []time.Duration, unit string) {
		slices.Sort(ds)
		b.ReportMetric(float64(ds[len(ds)/2])/float64(time.Millisecond), unit+"_p50_ms")
		b.ReportMetric(float64(ds[len(ds)-1])/float64(time.Millisecond), unit+"_max_ms")
	}
	report(toRow, "row")
	report(toAlert, "alert")
}
