package query_test

import (
	"context"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/wedsync/pulse/aggregator"
	"github.com/wedsync/pulse/internal/chstore"
	"github.com/wedsync/pulse/internal/event"
	"github.com/wedsync/pulse/internal/testenv"
	"github.com/wedsync/pulse/query"
)

// The /performance benchmarks answer over BENCH_ROWS requests (default
// 1,000,000) spread over 30 days, with no cache, beside the raw ClickHouse
// quantile query over the same window's rows (x_raw = API time / raw time).
// On the ClickHouse server the rows live in the database pulse_bench_query,
// which is kept between runs and reloaded only when its row count differs,
// so that ten million rows are loaded once. PULSE_BENCH_BACKEND=chdb runs on
// chDB instead (loaded every run).
//
//	BENCH_ROWS=10000000 go test -run '^$' -bench Performance -tags chdb ./query
func BenchmarkPerformance24h(b *testing.B) { benchPerformance(b, "24h") }

func BenchmarkPerformance30d(b *testing.B) { benchPerformance(b, "30d") }

func BenchmarkPerformance1h(b *testing.B) { benchPerformance(b, "1h") }

func benchPerformance(b *testing.B, tf string) {
	b.ReportAllocs()
	s, now := benchStore(b)
	e, _ := newServer(b, query.Config{Now: func() time.Time { return now }}, s, nil)
	from, to := expectedWindow(tf, now)
	raw := "SELECT count(), quantilesExact(0.5, 0.95, 0.99)(response_time_ms) FROM " + s.T("requests") +
		" WHERE ts >= " + chstore.DateTime(from) + " AND ts < " + chstore.DateTime(to)
	var n uint64
	var q []float64
	const rawRuns = 5
	if err := s.QueryRow(ctx(b), raw, &n, &q); err != nil { // warm-up
		b.Fatal(err)
	}
	start := time.Now()
	for range rawRuns {
		if err := s.QueryRow(ctx(b), raw, &n, &q); err != nil {
			b.Fatal(err)
		}
	}
	rawMS := float64(time.Since(start).Microseconds()) / 1000 / rawRuns

	target := "/api/admin/system/performance?timeframe=" + tf
	var body int
	iters := 0
	start = time.Now()
	for b.Loop() {
		r := get(b, e, target, adminToken)
		if r.status != http.StatusOK {
			b.Fatalf("got %d: %s", r.status, r.body)
		}
		body = len(r.body)
		iters++
	}
	apiMS := float64(time.Since(start).Microseconds()) / 1000 / float64(iters)
	b.ReportMetric(apiMS, "api_ms/op")
	b.ReportMetric(rawMS, "raw_ms/op")
	b.ReportMetric(apiMS/rawMS, "x_raw")
	b.ReportMetric(float64(n), "window_rows")
	b.SetBytes(int64(body))
}

// benchStore returns a store holding BENCH_ROWS requests over the 30 days
// before the returned time.
func benchStore(b *testing.B) (*chstore.Store, time.Time) {
	b.Helper()
	rows := 1_000_000
	if v := os.Getenv("BENCH_ROWS"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f < 1 {
			b.Fatalf("BENCH_ROWS=%q: want a positive number", v)
		}
		rows = int(f)
	}
	var s *chstore.Store
	if os.Getenv("PULSE_BENCH_BACKEND") == "chdb" {
		s = testenv.ChDB(b)
	} else {
		dsn := testenv.ClickHouseDSN() + "/pulse_bench_query"
		s = openStore(b, dsn)
		if testenv.Count(b, s, "SELECT count() FROM "+s.T("requests")) != uint64(rows) {
			if err := s.Exec(ctx(b), "DROP DATABASE IF EXISTS "+"`pulse_bench_query`"); err != nil {
				b.Fatal(err)
			}
			s.Close()
			s = openStore(b, dsn)
		}
	}
	if testenv.Count(b, s, "SELECT count() FROM "+s.T("requests")) == 0 {
		loadBenchRows(b, s, rows, time.Now().UTC().Truncate(time.Second))
	}
	var last time.Time
	if err := s.QueryRow(ctx(b), "SELECT max(ts) FROM "+s.T("requests"), &last); err != nil {
		b.Fatal(err)
	}
	return s, last.Add(time.Second)
}

// loadBenchRows inserts n requests over the 30 days before now: 3 services
// of 40 endpoints, lognormal latencies, 1% 5xx and 3% 4xx.
func loadBenchRows(b *testing.B, s *chstore.Store, n int, now time.Time) {
	b.Helper()
	start := time.Now()
	r := rand.New(rand.NewPCG(1, 2))
	endpoints := make([]string, 40)
	for i := range endpoints {
		endpoints[i] = "/api/route" + strconv.Itoa(i) + "/:id"
	}
	services := []string{"web", "api", "jobs"}
	const batch = 100_000
	reqs := make([]event.Request, 0, batch)
	for i := 0; i < n; i += batch {
		reqs = reqs[:0]
		for range min(batch, n-i) {
			ep := r.IntN(len(endpoints))
			status := uint16(200)
			switch p := r.IntN(100); {
			case p < 1:
				status = 503
			case p < 4:
				status = 404
			}
			reqs = append(reqs, event.Request{
				Timestamp:      now.Add(-time.Duration(r.Int64N(int64(30*day/time.Second))+1) * time.Second),
				Service:        services[ep%len(services)],
				Endpoint:       endpoints[ep],
				Method:         "GET",
				StatusCode:     status,
				ResponseTimeMS: math.Exp(math.Log(20+float64(ep)*5) + 0.7*r.NormFloat64()),
			})
		}
		c, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		err := s.Insert(c, "", "requests", aggregator.Columns(reqs, uint64(i/batch+1)))
		cancel()
		if err != nil {
			b.Fatalf("load benchmark rows: %v", err)
		}
	}
	b.Logf("loaded %d rows in %v", n, time.Since(start).Round(time.Millisecond))
}
