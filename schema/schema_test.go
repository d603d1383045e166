package schema_test

import (
	"context"
	"math"
	"math/rand/v2"
	"os"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/rs/zerolog"

	"github.com/wedsync/pulse/internal/chstore"
	"github.com/wedsync/pulse/internal/testenv"
	"github.com/wedsync/pulse/schema"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

func ctx(t testing.TB) context.Context {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	return c
}

func TestMigrations(t *testing.T) {
	ms, err := schema.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) == 0 {
		t.Fatal("got no migrations; want some")
	}
	for i, m := range ms {
		if i > 0 && m.Version <= ms[i-1].Version {
			t.Errorf("migration %d_%s: version not above %d", m.Version, m.Name, ms[i-1].Version)
		}
		if len(m.Statements) == 0 {
			t.Errorf("migration %d_%s: got no statements", m.Version, m.Name)
		}
		for _, stmt := range m.Statements {
			if strings.HasSuffix(stmt, ";") || strings.Contains(stmt, "\n--") || strings.HasPrefix(stmt, "--") {
				t.Errorf("migration %d_%s: statement keeps a ';' or a comment:\n%s", m.Version, m.Name, stmt)
			}
			if !strings.Contains(stmt, "IF NOT EXISTS {{db}}.") {
				t.Errorf("migration %d_%s: statement is not CREATE ... IF NOT EXISTS {{db}}.name:\n%s", m.Version, m.Name, stmt)
			}
		}
	}
	if got, want := schema.Latest(), ms[len(ms)-1].Version; got != want {
		t.Errorf("got Latest() %d; want %d", got, want)
	}
}

// empty drops everything the migrations and Migrate created in the store's
// database, leaving it as a fresh one.
func empty(t *testing.T, s *chstore.Store) {
	t.Helper()
	for _, table := range []string{"requests_1m_mv", "requests_1m", "requests", "schema_migrations"} {
		if err := s.Exec(ctx(t), "DROP TABLE IF EXISTS "+s.T(table)); err != nil {
			t.Fatalf("drop %s: %v", table, err)
		}
	}
}

func tables(t *testing.T, s *chstore.Store) map[string]string {
	t.Helper()
	rows, err := s.Query(ctx(t), "SELECT name, engine FROM system.tables WHERE database = "+chstore.Quote(s.Database()))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var name, engine string
		if err := rows.Scan(&name, &engine); err != nil {
			t.Fatal(err)
		}
		out[name] = engine
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestMigrate(t *testing.T) {
	ms, err := schema.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	var all []uint32
	for _, m := range ms {
		all = append(all, m.Version)
	}
	wantTables := map[string]string{
		"requests":          "MergeTree",
		"requests_1m":       "AggregatingMergeTree",
		"requests_1m_mv":    "MaterializedView",
		"schema_migrations": "MergeTree",
		"resources":         "MergeTree",
		"health_checks":     "MergeTree",
	}
	const wantNames = "requests,requests_1m,resources,health_checks"
	for name, s := range testenv.Backends(t) {
		t.Run(name, func(t *testing.T) {
			c := ctx(t)
			empty(t, s)
			if v, err := schema.Current(c, s); err != nil || v != 0 {
				t.Fatalf("fresh database: got Current %d, %v; want 0, nil", v, err)
			}
			applied, err := schema.Migrate(c, s)
			if err != nil || !reflect.DeepEqual(applied, all) {
				t.Fatalf("first Migrate: got %v, %v; want %v, nil", applied, err, all)
			}
			if v, err := schema.Current(c, s); err != nil || v != schema.Latest() {
				t.Errorf("got Current %d, %v; want Latest %d", v, err, schema.Latest())
			}
			if n := testenv.Count(t, s, "SELECT count() FROM "+s.T("schema_migrations")); n != uint64(len(all)) {
				t.Errorf("got %d recorded migrations; want %d", n, len(all))
			}
			var names string
			if err := s.QueryRow(c, "SELECT arrayStringConcat(groupArray(name), ',') FROM (SELECT name FROM "+
				s.T("schema_migrations")+" ORDER BY version)", &names); err != nil || names != wantNames {
				t.Errorf("got recorded names %q, %v; want %q", names, err, wantNames)
			}
			if got := tables(t, s); !reflect.DeepEqual(got, wantTables) {
				t.Errorf("got tables %v; want %v", got, wantTables)
			}

			applied, err = schema.Migrate(c, s)
			if err != nil || len(applied) != 0 {
				t.Errorf("second Migrate: got %v, %v; want nothing applied", applied, err)
			}
			if n := testenv.Count(t, s, "SELECT count() FROM "+s.T("schema_migrations")); n != uint64(len(all)) {
				t.Errorf("after a second Migrate: got %d recorded migrations; want %d", n, len(all))
			}

			// A migration interrupted before it was recorded is applied again
			// over the objects it had created.
			if err := s.Exec(c, "DROP TABLE "+s.T("schema_migrations")); err != nil {
				t.Fatal(err)
			}
			applied, err = schema.Migrate(c, s)
			if err != nil || !reflect.DeepEqual(applied, all) {
				t.Errorf("Migrate over existing tables: got %v, %v; want %v, nil", applied, err, all)
			}

			// The view feeds the rollup.
			if err := s.Insert(c, "", "requests", requestColumns([]time.Time{time.Date(2026, 3, 15, 10, 0, 30, 0, time.UTC)}, []float64{12.5}, []uint16{503})); err != nil {
				t.Fatal(err)
			}
			var n, e5 uint64
			var minute time.Time
			if err := s.QueryRow(c, "SELECT countMerge(requests), sumMerge(errors_5xx), min(minute) FROM "+s.T("requests_1m"), &n, &e5, &minute); err != nil {
				t.Fatal(err)
			}
			if want := time.Date(2026, 3, 15, 10, 0, 0, 0, time.UTC); n != 1 || e5 != 1 || !minute.Equal(want) {
				t.Errorf("rollup of one row: got count %d, 5xx %d, minute %v; want 1, 1, %v", n, e5, minute, want)
			}
		})
	}
}

// requestColumns returns rows of all requests columns with the given times,
// durations and status codes.
func requestColumns(ts []time.Time, durations []float64, status []uint16) []chstore.Column {
	n := len(ts)
	service, endpoint, method := make([]string, n), make([]string, n), make([]string, n)
	user, errMsg, reqID := make([]uuid.UUID, n), make([]string, n), make([]string, n)
	seq, idx := make([]uint64, n), make([]uint32, n)
	for i := range n {
		service[i], endpoint[i], method[i] = "api", "/v1/items/{id}", "GET"
		user[i] = uuid.UUID{15: byte(i)}
		if status[i] >= 500 {
			errMsg[i] = "upstream failed"
		}
		reqID[i] = "req-" + uuid.UUID{0: byte(i >> 16), 1: byte(i >> 8), 2: byte(i)}.String()
		seq[i], idx[i] = uint64(i/1000+1), uint32(i%1000)
	}
	return []chstore.Column{
		{Name: "ts", Values: ts},
		{Name: "service", Values: service},
		{Name: "endpoint", Values: endpoint},
		{Name: "method", Values: method},
		{Name: "status_code", Values: status},
		{Name: "response_time_ms", Values: durations},
		{Name: "user_id", Values: user},
		{Name: "error_message", Values: errMsg},
		{Name: "request_id", Values: reqID},
		{Name: "stream_seq", Values: seq},
		{Name: "seq_idx", Values: idx},
	}
}

func insertAt(t *testing.T, s *chstore.Store, ts ...time.Time) {
	t.Helper()
	d, st := make([]float64, len(ts)), make([]uint16, len(ts))
	for i := range ts {
		d[i], st[i] = 10, 200
	}
	if err := s.Insert(ctx(t), "", "requests", requestColumns(ts, d, st)); err != nil {
		t.Fatal(err)
	}
}

// partitions lists "table/partition" of the active parts of the
// retention-managed tables, sorted.
func partitions(t *testing.T, s *chstore.Store) []string {
	t.Helper()
	rows, err := s.Query(ctx(t), "SELECT DISTINCT table, partition FROM system.parts WHERE active AND database = "+
		chstore.Quote(s.Database())+" AND table IN ('requests', 'requests_1m')")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var table, part string
		if err := rows.Scan(&table, &part); err != nil {
			t.Fatal(err)
		}
		out = append(out, table+"/"+part)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

func TestDropExpired(t *testing.T) {
	day := 24 * time.Hour
	shortRollup := schema.Retention{Raw: schema.DefaultRetention.Raw, Rollup: day}
	tests := []struct {
		name       string
		now        time.Time
		rows       []time.Time
		wantRaw    []string // dropped with DefaultRetention
		wantRollup []string // then dropped with a rollup retention of a day
		wantLeft   []string
	}{
		{
			name: "40 days, 10 days, today",
			now:  time.Date(2026, 3, 15, 12, 0, 0, 0, time.UTC),
			rows: []time.Time{
				time.Date(2026, 2, 3, 12, 0, 0, 0, time.UTC),  // 40 days before
				time.Date(2026, 3, 5, 12, 0, 0, 0, time.UTC),  // 10 days before
				time.Date(2026, 3, 15, 11, 0, 0, 0, time.UTC), // today
			},
			wantRaw:    []string{"requests/20260203"},
			wantRollup: []string{"requests_1m/202602"},
			wantLeft:   []string{"requests/20260305", "requests/20260315", "requests_1m/202603"},
		},
		{
			name: "month boundary",
			now:  time.Date(2026, 3, 1, 0, 30, 0, 0, time.UTC),
			rows: []time.Time{
				time.Date(2026, 1, 20, 0, 30, 0, 0, time.UTC), // 40 days before
				time.Date(2026, 2, 19, 0, 30, 0, 0, time.UTC), // 10 days before
				time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC),   // today
			},
			wantRaw: []string{"requests/20260120"},
			// February ends at now - 30 minutes, after the cutoff of now - 1 day.
			wantRollup: []string{"requests_1m/202601"},
			wantLeft:   []string{"requests/20260219", "requests/20260301", "requests_1m/202602", "requests_1m/202603"},
		},
		{
			name: "partition ending exactly at the cutoff",
			now:  time.Date(2026, 3, 31, 0, 0, 0, 0, time.UTC),
			rows: []time.Time{
				time.Date(2026, 2, 28, 23, 59, 59, 0, time.UTC), // partition ends at the cutoff
				time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC),     // partition starts at the cutoff
			},
			wantRaw:    []string{"requests/20260228"},
			wantRollup: []string{"requests_1m/202602"},
			wantLeft:   []string{"requests/20260301", "requests_1m/202603"},
		},
		{
			name:     "nothing expired",
			now:      time.Date(2026, 3, 15, 12, 0, 0, 0, time.UTC),
			rows:     []time.Time{time.Date(2026, 3, 14, 0, 0, 0, 0, time.UTC)},
			wantLeft: []string{"requests/20260314", "requests_1m/202603"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for name, s := range testenv.Backends(t) {
				t.Run(name, func(t *testing.T) {
					c := ctx(t)
					insertAt(t, s, tt.rows...)
					got, err := schema.DropExpired(c, s, schema.DefaultRetention, tt.now)
					if err != nil || !slices.Equal(got, tt.wantRaw) {
						t.Errorf("default retention: got %q, %v; want %q", got, err, tt.wantRaw)
					}
					got, err = schema.DropExpired(c, s, shortRollup, tt.now)
					if err != nil || !slices.Equal(got, tt.wantRollup) {
						t.Errorf("rollup retention 1 day: got %q, %v; want %q", got, err, tt.wantRollup)
					}
					if got := partitions(t, s); !slices.Equal(got, tt.wantLeft) {
						t.Errorf("got partitions %q left; want %q", got, tt.wantLeft)
					}
					got, err = schema.DropExpired(c, s, shortRollup, tt.now)
					if err != nil || len(got) != 0 {
						t.Errorf("again: got %q, %v; want nothing dropped", got, err)
					}
				})
			}
		})
	}
}

func TestDropExpiredRefusesShortRetention(t *testing.T) {
	s := testenv.ChDB(t)
	now := time.Date(2026, 3, 15, 12, 0, 0, 0, time.UTC)
	insertAt(t, s, now.Add(-48*time.Hour))
	for _, r := range []schema.Retention{{}, {Raw: time.Hour, Rollup: 400 * 24 * time.Hour}, {Raw: 30 * 24 * time.Hour}} {
		got, err := schema.DropExpired(ctx(t), s, r, now)
		if err == nil || len(got) != 0 {
			t.Errorf("retention %+v: got %q, %v; want an error and nothing dropped", r, got, err)
		}
		if err := schema.ApplyTTL(ctx(t), s, r); err == nil {
			t.Errorf("ApplyTTL %+v: got no error; want one", r)
		}
	}
	if got := partitions(t, s); len(got) != 2 {
		t.Errorf("got partitions %q; want the raw and the rollup one", got)
	}
}

// syncBuffer is a log destination safe for the job's goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (w *syncBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

func TestRetentionJob(t *testing.T) {
	for name, s := range testenv.Backends(t) {
		t.Run(name, func(t *testing.T) {
			now := time.Now().UTC()
			old := now.Add(-40 * 24 * time.Hour)
			insertAt(t, s, old, now)
			oldPart := "requests/" + old.Format("20060102")
			var log syncBuffer
			c, cancel := context.WithCancel(ctx(t))
			job := &schema.RetentionJob{Store: s, Retention: schema.DefaultRetention, Interval: 50 * time.Millisecond, Log: zerolog.New(&log)}
			done := make(chan error, 1)
			go func() { done <- job.Run(c) }()
			testenv.Eventually(t, 30*time.Second, oldPart+" to be dropped", func() bool {
				return !slices.Contains(partitions(t, s), oldPart)
			})
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: got %v; want nil after cancel", err)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("Run did not return within 30s of cancel")
			}
			if n := testenv.Count(t, s, "SELECT count() FROM "+s.T("requests")); n != 1 {
				t.Errorf("got %d raw rows left; want 1", n)
			}
			if !strings.Contains(log.String(), oldPart) {
				t.Errorf("got log %q; want it to name %s", log.String(), oldPart)
			}
		})
	}
}

func engineFull(t *testing.T, s *chstore.Store, table string) string {
	t.Helper()
	var e string
	if err := s.QueryRow(ctx(t), "SELECT engine_full FROM system.tables WHERE database = "+chstore.Quote(s.Database())+
		" AND name = "+chstore.Quote(table), &e); err != nil {
		t.Fatal(err)
	}
	return e
}

func TestApplyTTL(t *testing.T) {
	day := 24 * time.Hour
	stores := testenv.Backends(t)
	t.Run("chdb", func(t *testing.T) {
		s := stores["chdb"]
		tests := []struct {
			r           schema.Retention
			raw, rollup string // the TTL in engine_full
		}{
			{schema.DefaultRetention, "TTL ts + toIntervalDay(30) ", "TTL minute + toIntervalDay(400) "},
			{schema.DefaultRetention, "TTL ts + toIntervalDay(30) ", "TTL minute + toIntervalDay(400) "}, // again: no-op
			{schema.Retention{Raw: 3 * day, Rollup: 40 * day}, "TTL ts + toIntervalDay(3) ", "TTL minute + toIntervalDay(40) "},
			{schema.Retention{Raw: 36 * time.Hour, Rollup: 40 * day}, "TTL ts + toIntervalDay(2) ", "TTL minute + toIntervalDay(40) "},
			{schema.Retention{Raw: 30 * day, Rollup: 400 * day}, "TTL ts + toIntervalDay(30) ", "TTL minute + toIntervalDay(400) "},
		}
		for _, tt := range tests {
			if err := schema.ApplyTTL(ctx(t), s, tt.r); err != nil {
				t.Fatalf("ApplyTTL %+v: %v", tt.r, err)
			}
			for table, want := range map[string]string{"requests": tt.raw, "requests_1m": tt.rollup} {
				if got := engineFull(t, s, table); !strings.Contains(got, want) || strings.Count(got, " TTL ") != 1 {
					t.Errorf("ApplyTTL %+v: got %s engine %q; want one TTL, %q", tt.r, table, got, want)
				}
			}
		}
	})
	t.Run("clickhouse", func(t *testing.T) {
		s := stores["clickhouse"]
		before := engineFull(t, s, "requests") + engineFull(t, s, "requests_1m")
		for range 2 {
			if err := schema.ApplyTTL(ctx(t), s, schema.DefaultRetention); err != nil {
				t.Fatalf("ApplyTTL on %s: got %v; want no-op", s.Version(), err)
			}
		}
		if after := engineFull(t, s, "requests") + engineFull(t, s, "requests_1m"); after != before || strings.Contains(after, "TTL") {
			t.Errorf("ApplyTTL on %s changed the engines:\nbefore %q\nafter  %q", s.Version(), before, after)
		}
	})
}

// quantileExact is ClickHouse's quantileExact on a sorted sample: the
// element at index floor(level * n) (0-based; level * n computed in
// float64 as ClickHouse does), the last one for level 1.
func quantileExact(sorted []float64, level float64) float64 {
	if level >= 1 {
		return sorted[len(sorted)-1]
	}
	return sorted[int(level*float64(len(sorted)))]
}

// TestRollupAccuracy is the accuracy requirement of the one-minute rollup:
// over a day of a known lognormal sample, the percentiles merged from the
// per-minute t-digest states are within 1% of the exact ones, and counts,
// sums and max are exact.
func TestRollupAccuracy(t *testing.T) {
	const (
		n     = 200_000
		sigma = 0.8
	)
	mu := math.Log(120)
	levels := []float64{0.5, 0.95, 0.99}
	r := rand.New(rand.NewPCG(20260315, 1))
	day := time.Date(2026, 3, 15, 0, 0, 0, 0, time.UTC)
	ts := make([]time.Time, n)
	durations := make([]float64, n)
	status := make([]uint16, n)
	var want4xx, want5xx uint64
	for i := range n {
		ts[i] = day.Add(time.Duration(r.Int64N(int64(24 * time.Hour))))
		durations[i] = math.Exp(mu + sigma*r.NormFloat64())
		switch p := r.IntN(100); {
		case p < 80:
			status[i] = 200
		case p < 85:
			status[i] = 302
		case p < 93:
			status[i] = []uint16{400, 404, 429, 499}[p%4]
			want4xx++
		default:
			status[i] = []uint16{500, 502, 503, 599}[p%4]
			want5xx++
		}
	}
	sorted := slices.Clone(durations)
	slices.Sort(sorted)
	var wantSum float64
	for _, d := range durations {
		wantSum += d
	}
	wantMax := sorted[n-1]
	exact := make([]float64, len(levels))
	for i, l := range levels {
		exact[i] = quantileExact(sorted, l)
	}
	// chDB stores the TSV text of a float to within 2 units in the last place
	// (see chstore's TestFloatRoundTrip); the native protocol stores its bits.
	storeRel := map[string]float64{"clickhouse": 0, "chdb": 1e-15}

	for name, s := range testenv.Backends(t) {
		t.Run(name, func(t *testing.T) {
			c := ctx(t)
			// Four batches, like the aggregator's, each spread over the day.
			const batches = 4
			for b := range batches {
				lo, hi := b*n/batches, (b+1)*n/batches
				if err := s.Insert(c, "", "requests", requestColumns(ts[lo:hi], durations[lo:hi], status[lo:hi])); err != nil {
					t.Fatal(err)
				}
			}
			states := testenv.Count(t, s, "SELECT count() FROM "+s.T("requests_1m"))
			minutes := testenv.Count(t, s, "SELECT uniqExact(minute) FROM "+s.T("requests_1m"))
			if minutes != 1440 {
				t.Errorf("got %d minutes in the rollup; want 1440", minutes)
			}

			var count, e4, e5 uint64
			var sum, maxD float64
			var q []float64
			err := s.QueryRow(c, "SELECT countMerge(requests), sumMerge(errors_4xx), sumMerge(errors_5xx), sumMerge(duration_sum), "+
				"maxMerge(duration_max), arrayMap(x -> toFloat64(x), quantilesTDigestMerge(0.5, 0.95, 0.99)(quantiles)) FROM "+s.T("requests_1m"),
				&count, &e4, &e5, &sum, &maxD, &q)
			if err != nil {
				t.Fatal(err)
			}
			if count != n || e4 != want4xx || e5 != want5xx {
				t.Errorf("got count %d, 4xx %d, 5xx %d; want %d, %d, %d", count, e4, e5, n, want4xx, want5xx)
			}
			if rel := math.Abs(sum-wantSum) / wantSum; rel > 1e-9 {
				t.Errorf("got duration sum %v; want %v (relative error %.3g > 1e-9)", sum, wantSum, rel)
			}
			// The rollup's max is exactly the stored max, which is the
			// sample's max as stored by the backend.
			var rawMax float64
			var rawExact []float64
			if err := s.QueryRow(c, "SELECT max(response_time_ms), quantilesExact(0.5, 0.95, 0.99)(response_time_ms) FROM "+s.T("requests"), &rawMax, &rawExact); err != nil {
				t.Fatal(err)
			}
			if maxD != rawMax {
				t.Errorf("got maxMerge %v; want the raw max %v", maxD, rawMax)
			}
			if rel := math.Abs(rawMax-wantMax) / wantMax; rel > storeRel[name] {
				t.Errorf("got stored max %v; want %v", rawMax, wantMax)
			}
			// quantileExact in this test is the definition ClickHouse uses.
			for i := range levels {
				if rel := math.Abs(rawExact[i]-exact[i]) / exact[i]; rel > storeRel[name] {
					t.Errorf("P%g: got ClickHouse quantileExact %v; want this test's %v", levels[i]*100, rawExact[i], exact[i])
				}
			}
			if len(q) != len(levels) {
				t.Fatalf("got %d quantiles; want %d", len(q), len(levels))
			}
			for i, l := range levels {
				rel := (q[i] - exact[i]) / exact[i]
				t.Logf("%s P%g: rollup t-digest %.4f, exact %.4f, relative error %+.4f%% (%d states, %d minutes)",
					name, l*100, q[i], exact[i], rel*100, states, minutes)
				if math.Abs(rel) > 0.01 {
					t.Errorf("P%g: got %v; want %v within 1%% (relative error %+.3f%%)", l*100, q[i], exact[i], rel*100)
				}
			}
		})
	}
}
