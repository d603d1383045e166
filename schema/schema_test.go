package schema_test

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"reflect"
	"slices"
	"sort"
	"strings"
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
	for _, table := range []string{"requests_1m_svc_mv", "requests_1m_svc", "requests_1m_drill_mv", "requests_1m_drill", "requests_1m_ep_mv", "requests_1m_ep", "requests_5m_svc_mv", "requests_5m_svc", "requests_5m_drill_mv", "requests_5m_drill", "requests_5m_ep_mv", "requests_5m_ep", "requests_1h_svc_mv", "requests_1h_svc", "requests_1h_drill_mv", "requests_1h_drill", "requests_1h_ep_mv", "requests_1h_ep", "requests_1d_ep_mv", "requests_1d_ep",
		"requests_1m_hist_mv", "requests_1m_hist", "requests_1h_mv", "requests_1h", "requests_5m_mv", "requests_5m",
		"requests_1m_mv", "requests_1m", "requests", "resources", "health_checks", "schema_migrations"} {
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
		"requests":             "MergeTree",
		"requests_1m":          "AggregatingMergeTree",
		"requests_1m_mv":       "MaterializedView",
		"requests_5m":          "AggregatingMergeTree",
		"requests_5m_mv":       "MaterializedView",
		"requests_1h":          "AggregatingMergeTree",
		"requests_1h_mv":       "MaterializedView",
		"requests_1m_hist":     "AggregatingMergeTree",
		"requests_1m_hist_mv":  "MaterializedView",
		"requests_1m_svc":      "AggregatingMergeTree",
		"requests_1m_svc_mv":   "MaterializedView",
		"requests_1m_drill":    "AggregatingMergeTree",
		"requests_1m_drill_mv": "MaterializedView",
		"requests_1m_ep":       "AggregatingMergeTree",
		"requests_1m_ep_mv":    "MaterializedView",
		"requests_5m_svc":      "AggregatingMergeTree",
		"requests_5m_svc_mv":   "MaterializedView",
		"requests_5m_drill":    "AggregatingMergeTree",
		"requests_5m_drill_mv": "MaterializedView",
		"requests_5m_ep":       "AggregatingMergeTree",
		"requests_5m_ep_mv":    "MaterializedView",
		"requests_1h_svc":      "AggregatingMergeTree",
		"requests_1h_svc_mv":   "MaterializedView",
		"requests_1h_drill":    "AggregatingMergeTree",
		"requests_1h_drill_mv": "MaterializedView",
		"requests_1h_ep":       "AggregatingMergeTree",
		"requests_1h_ep_mv":    "MaterializedView",
		"requests_1d_ep":       "AggregatingMergeTree",
		"requests_1d_ep_mv":    "MaterializedView",
		"validation_runs":      "MergeTree",
		"audit_log":            "MergeTree",
		"alerts":               "MergeTree",
		"schema_migrations":    "MergeTree",
		"resources":            "MergeTree",
		"health_checks":        "MergeTree",
	}
	const wantNames = "requests,requests_1m,resources,health_checks,requests_5m,requests_1h,validation,alerts,requests_1m_hist,requests_svc_ep"
	for name, s := range testenv.Backends(t) {
		t.Run(name, func(t *testing.T) {
			c := ctx(t)
			empty(t, s)
			if v, err := schema.Current(c, s); err != nil || v != 0 {
				t.Fatalf("fresh database: got Current %d, %v; want 0, nil", v, err)
			}
			if err := schema.Ready(c, s); !errors.Is(err, schema.ErrNotMigrated) {
				t.Errorf("fresh database: got Ready %v; want ErrNotMigrated", err)
			}
			applied, err := schema.Migrate(c, s)
			if err != nil || !reflect.DeepEqual(applied, all) {
				t.Fatalf("first Migrate: got %v, %v; want %v, nil", applied, err, all)
			}
			if v, err := schema.Current(c, s); err != nil || v != schema.Latest() {
				t.Errorf("got Current %d, %v; want Latest %d", v, err, schema.Latest())
			}
			if err := schema.Ready(c, s); err != nil {
				t.Errorf("migrated database: got Ready %v; want nil", err)
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

			// The views feed the rollups.
			if err := s.Insert(c, "", "requests", requestColumns([]time.Time{time.Date(2026, 3, 15, 10, 7, 30, 0, time.UTC)}, []float64{12.5}, []uint16{503})); err != nil {
				t.Fatal(err)
			}
			for _, r := range []struct {
				table, column string
				want          time.Time
			}{
				{"requests_1m", "minute", time.Date(2026, 3, 15, 10, 7, 0, 0, time.UTC)},
				{"requests_1m_hist", "start", time.Date(2026, 3, 15, 10, 7, 0, 0, time.UTC)},
				{"requests_5m", "start", time.Date(2026, 3, 15, 10, 5, 0, 0, time.UTC)},
				{"requests_1h", "start", time.Date(2026, 3, 15, 10, 0, 0, 0, time.UTC)},
			} {
				var n, e5 uint64
				var start time.Time
				if err := s.QueryRow(c, "SELECT countMerge(requests), sumMerge(errors_5xx), min("+r.column+") FROM "+s.T(r.table), &n, &e5, &start); err != nil {
					t.Fatal(err)
				}
				if n != 1 || e5 != 1 || !start.Equal(r.want) {
					t.Errorf("%s of one row: got count %d, 5xx %d, %s %v; want 1, 1, %v", r.table, n, e5, r.column, start, r.want)
				}
			}
		})
	}
}

// TestMigrateBackfillsRollups upgrades a database holding requests from
// before the histogram rollups existed: the migrations that create them
// fill them from requests over the spans their answers read (2 hours, 3
// and 32 days), once, however often they run; their views add the requests
// inserted afterwards.
func TestMigrateBackfillsRollups(t *testing.T) {
	hour := time.Now().UTC().Truncate(time.Hour)
	// Minutes after the hour, so that none falls before a span's start.
	old := []time.Time{
		hour.Add(-40*24*time.Hour + 10*time.Minute), // in requests_1m only
		hour.Add(-10*24*time.Hour + 10*time.Minute), // and in requests_1h
		hour.Add(-2*24*time.Hour + 10*time.Minute),  // and in requests_5m
		hour.Add(-2*time.Hour + 10*time.Minute),     // and in requests_1m_hist
		hour.Add(-2*time.Hour + 10*time.Minute),
		hour.Add(-2*time.Hour + 13*time.Minute),
		hour.Add(-3*time.Hour + 10*time.Minute), // in all but requests_1m_hist
	}
	counts := func(t *testing.T, s *chstore.Store) []uint64 {
		var out []uint64
		for _, table := range rollups {
			out = append(out, testenv.Count(t, s, "SELECT toUInt64(countMerge(requests)) FROM "+s.T(table)))
		}
		return out
	}
	for name, s := range testenv.Backends(t) {
		t.Run(name, func(t *testing.T) {
			c := ctx(t)
			// The database as the migrations before 0005 left it.
			for _, table := range []string{"requests_1m_svc_mv", "requests_1m_svc", "requests_1m_drill_mv", "requests_1m_drill", "requests_1m_ep_mv", "requests_1m_ep", "requests_5m_svc_mv", "requests_5m_svc", "requests_5m_drill_mv", "requests_5m_drill", "requests_5m_ep_mv", "requests_5m_ep", "requests_1h_svc_mv", "requests_1h_svc", "requests_1h_drill_mv", "requests_1h_drill", "requests_1h_ep_mv", "requests_1h_ep", "requests_1d_ep_mv", "requests_1d_ep",
				"requests_1m_hist_mv", "requests_1m_hist", "requests_1h_mv", "requests_1h", "requests_5m_mv", "requests_5m", "schema_migrations"} {
				if err := s.Exec(c, "DROP TABLE "+s.T(table)); err != nil {
					t.Fatal(err)
				}
			}
			insertAt(t, s, old...)
			if got, want := testenv.Count(t, s, "SELECT toUInt64(countMerge(requests)) FROM "+s.T("requests_1m")), uint64(len(old)); got != want {
				t.Fatalf("got %d requests in requests_1m; want %d", got, want)
			}
			for range 2 { // the second run finds the tables and adds nothing
				if _, err := schema.Migrate(c, s); err != nil {
					t.Fatal(err)
				}
				// The rollups of 0010 hold what the rollup of their period
				// held (requests_1d_ep: requests_1h's).
				if got, want := counts(t, s), []uint64{7, 3, 5, 6, 3, 3, 3, 5, 5, 5, 6, 6, 6, 6}; !slices.Equal(got, want) {
					t.Errorf("after Migrate: got %v requests in %v; want %v", got, rollups, want)
				}
				if err := s.Exec(c, "DROP TABLE "+s.T("schema_migrations")); err != nil {
					t.Fatal(err)
				}
			}
			// The views add every request inserted from then on, however old,
			// and their states merge with the backfilled ones.
			insertAt(t, s, hour.Add(-2*time.Hour+14*time.Minute), hour.Add(-10*24*time.Hour+10*time.Minute))
			if got, want := counts(t, s), []uint64{9, 5, 7, 8, 5, 5, 5, 7, 7, 7, 8, 8, 8, 8}; !slices.Equal(got, want) {
				t.Errorf("after more inserts: got %v requests in %v; want %v", got, rollups, want)
			}
			type bucket struct {
				start time.Time
				n     uint64
				p50   float64
			}
			read := func(table, column string) []bucket {
				rows, err := s.Query(c, "SELECT "+column+", countMerge(requests), "+schema.LatencyQuantiles+" FROM "+
					s.T(table)+" GROUP BY "+column+" ORDER BY "+column)
				if err != nil {
					t.Fatal(err)
				}
				defer rows.Close()
				var out []bucket
				for rows.Next() {
					var b bucket
					var q []float64
					if err := rows.Scan(&b.start, &b.n, &q); err != nil {
						t.Fatal(err)
					}
					b.p50 = schema.LatencyMS(q[0])
					out = append(out, b)
				}
				return out
			}
			p50 := schema.LatencyMS(latencyBin(10)) // every request took 10 ms
			at := func(d time.Duration, n uint64) bucket { return bucket{hour.Add(d), n, p50} }
			if got, want := read("requests_1m_hist", "start"), []bucket{
				at(-10*24*time.Hour+10*time.Minute, 1), at(-2*time.Hour+10*time.Minute, 2), at(-2*time.Hour+13*time.Minute, 1), at(-2*time.Hour+14*time.Minute, 1),
			}; !slices.Equal(got, want) {
				t.Errorf("got requests_1m_hist %v; want %v", got, want)
			}
			if got, want := read("requests_5m", "start"), []bucket{
				at(-10*24*time.Hour+10*time.Minute, 1), at(-2*24*time.Hour+10*time.Minute, 1), at(-3*time.Hour+10*time.Minute, 1), at(-2*time.Hour+10*time.Minute, 4),
			}; !slices.Equal(got, want) {
				t.Errorf("got requests_5m %v; want %v", got, want)
			}
			if got, want := read("requests_1h", "start"), []bucket{
				at(-10*24*time.Hour, 2), at(-2*24*time.Hour, 1), at(-3*time.Hour, 1), at(-2*time.Hour, 4),
			}; !slices.Equal(got, want) {
				t.Errorf("got requests_1h %v; want %v", got, want)
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

// rollups are the rollup tables, in the order retention handles them. Every
// request lands in each of them.
var rollups = []string{"requests_1m", "requests_1m_hist", "requests_5m", "requests_1h",
	"requests_1m_svc", "requests_1m_drill", "requests_1m_ep", "requests_5m_svc", "requests_5m_drill", "requests_5m_ep", "requests_1h_svc", "requests_1h_drill", "requests_1h_ep", "requests_1d_ep"}

// everyRollup replaces each "requests_1m/partition" of want with that
// partition of every rollup table, in the order of rollups.
func everyRollup(want []string) []string {
	var out []string
	for _, w := range want {
		part, ok := strings.CutPrefix(w, "requests_1m/")
		if !ok {
			out = append(out, w)
			continue
		}
		for _, r := range rollups {
			out = append(out, r+"/"+part)
		}
	}
	return out
}

// partitions lists "table/partition" of the active parts of requests and
// the rollups, sorted.
func partitions(t *testing.T, s *chstore.Store) []string {
	t.Helper()
	rows, err := s.Query(ctx(t), "SELECT DISTINCT table, partition FROM system.parts WHERE active AND database = "+
		chstore.Quote(s.Database())+" AND table IN ('requests', '"+strings.Join(rollups, "', '")+"')")
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
		wantRollup []string // then dropped with a rollup retention of a day (requests_1m/P: P of every rollup)
		wantLeft   []string // requests_1m/P: P of every rollup
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
					if want := everyRollup(tt.wantRollup); err != nil || !slices.Equal(got, want) {
						t.Errorf("rollup retention 1 day: got %q, %v; want %q", got, err, want)
					}
					wantLeft := everyRollup(tt.wantLeft)
					sort.Strings(wantLeft)
					if got := partitions(t, s); !slices.Equal(got, wantLeft) {
						t.Errorf("got partitions %q left; want %q", got, wantLeft)
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
	if got := partitions(t, s); len(got) != 1+len(rollups) {
		t.Errorf("got partitions %q; want the raw one and one of each rollup", got)
	}
}

func TestRetentionJob(t *testing.T) {
	for name, s := range testenv.Backends(t) {
		t.Run(name, func(t *testing.T) {
			now := time.Now().UTC()
			old := now.Add(-40 * 24 * time.Hour)
			insertAt(t, s, old, now)
			oldPart := "requests/" + old.Format("20060102")
			var log testenv.LogBuffer
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
			raw, rollup string // the TTL in engine_full, after the time column
		}{
			{schema.DefaultRetention, "toIntervalDay(30) ", "toIntervalDay(400) "},
			{schema.DefaultRetention, "toIntervalDay(30) ", "toIntervalDay(400) "}, // again: no-op
			{schema.Retention{Raw: 3 * day, Rollup: 40 * day}, "toIntervalDay(3) ", "toIntervalDay(40) "},
			{schema.Retention{Raw: 36 * time.Hour, Rollup: 40 * day}, "toIntervalDay(2) ", "toIntervalDay(40) "},
			{schema.Retention{Raw: 30 * day, Rollup: 400 * day}, "toIntervalDay(30) ", "toIntervalDay(400) "},
		}
		for _, tt := range tests {
			if err := schema.ApplyTTL(ctx(t), s, tt.r); err != nil {
				t.Fatalf("ApplyTTL %+v: %v", tt.r, err)
			}
			wants := map[string]string{
				"requests":          "TTL ts + " + tt.raw,
				"requests_1m":       "TTL minute + " + tt.rollup,
				"requests_1m_hist":  "TTL start + " + tt.rollup,
				"requests_5m":       "TTL start + " + tt.rollup,
				"requests_1h":       "TTL start + " + tt.rollup,
				"requests_1m_svc":   "TTL start + " + tt.rollup,
				"requests_1m_drill": "TTL start + " + tt.rollup,
				"requests_1m_ep":    "TTL start + " + tt.rollup,
				"requests_5m_svc":   "TTL start + " + tt.rollup,
				"requests_5m_drill": "TTL start + " + tt.rollup,
				"requests_5m_ep":    "TTL start + " + tt.rollup,
				"requests_1h_svc":   "TTL start + " + tt.rollup,
				"requests_1h_drill": "TTL start + " + tt.rollup,
				"requests_1h_ep":    "TTL start + " + tt.rollup,
				"requests_1d_ep":    "TTL start + " + tt.rollup,
			}
			for table, want := range wants {
				if got := engineFull(t, s, table); !strings.Contains(got, want) || strings.Count(got, " TTL ") != 1 {
					t.Errorf("ApplyTTL %+v: got %s engine %q; want one TTL, %q", tt.r, table, got, want)
				}
			}
		}
	})
	t.Run("clickhouse", func(t *testing.T) {
		s := stores["clickhouse"]
		engines := func() string {
			var all string
			for _, table := range append([]string{"requests"}, rollups...) {
				all += engineFull(t, s, table) + "\n"
			}
			return all
		}
		before := engines()
		for range 2 {
			if err := schema.ApplyTTL(ctx(t), s, schema.DefaultRetention); err != nil {
				t.Fatalf("ApplyTTL on %s: got %v; want no-op", s.Version(), err)
			}
		}
		if after := engines(); after != before || strings.Contains(after, "TTL") {
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

// TestRollupAccuracy is the accuracy requirement of the rollups: over a day
// of a known lognormal sample, the percentiles merged from the per-minute
// t-digest states are within 1% of the exact ones, those of the five-minute
// and one-hour latency histograms come from the bins of the exact ones
// (within 0.75%), and counts, sums and max are exact in each.
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

			// The histogram rollups; n * level is a whole number at every
			// level, where quantilesTiming alone would pick one rank lower
			// than quantileExact.
			for _, table := range []string{"requests_1m_hist", "requests_5m", "requests_1h",
				"requests_1m_svc", "requests_1m_drill", "requests_1m_ep", "requests_5m_svc", "requests_5m_drill", "requests_5m_ep", "requests_1h_svc", "requests_1h_drill", "requests_1h_ep", "requests_1d_ep"} {
				var count, e4, e5 uint64
				var sum, maxD float64
				var bins []float64
				err := s.QueryRow(c, "SELECT countMerge(requests), sumMerge(errors_4xx), sumMerge(errors_5xx), sumMerge(duration_sum), "+
					"maxMerge(duration_max), "+schema.LatencyQuantiles+" FROM "+s.T(table),
					&count, &e4, &e5, &sum, &maxD, &bins)
				if err != nil {
					t.Fatal(err)
				}
				if count != n || e4 != want4xx || e5 != want5xx || maxD != rawMax {
					t.Errorf("%s: got count %d, 4xx %d, 5xx %d, max %v; want %d, %d, %d, %v", table, count, e4, e5, maxD, n, want4xx, want5xx, rawMax)
				}
				if rel := math.Abs(sum-wantSum) / wantSum; rel > 1e-9 {
					t.Errorf("%s: got duration sum %v; want %v (relative error %.3g > 1e-9)", table, sum, wantSum, rel)
				}
				if len(bins) != len(levels) {
					t.Fatalf("%s: got %d quantiles; want %d", table, len(bins), len(levels))
				}
				for i, l := range levels {
					if got, want := bins[i], latencyBin(exact[i]); got != want {
						t.Errorf("%s P%g: got bin %v; want %v, the bin of exact %v", table, l*100, got, want, exact[i])
					}
					got := schema.LatencyMS(bins[i])
					rel := (got - exact[i]) / exact[i]
					t.Logf("%s %s P%g: histogram %.4f, exact %.4f, relative error %+.4f%%", name, table, l*100, got, exact[i], rel*100)
					if math.Abs(rel) > 0.0075 {
						t.Errorf("%s P%g: got %v; want %v within 0.75%% (relative error %+.3f%%)", table, l*100, got, exact[i], rel*100)
					}
				}
			}
		})
	}
}

// latencyBin is the latency bin holding ms, as the migrations compute it
// (see 0005_requests_5m.sql).
func latencyBin(ms float64) float64 {
	b := math.Floor(math.Log(max(ms, 0.001)*1000) / math.Log(1.015))
	if ms >= 0.001 {
		b++
	}
	return min(b, 1810)
}

// TestLatencyQuantilesEmpty: the percentiles of no requests are NaN on
// both backends (chDB refuses to turn a NaN into an integer).
func TestLatencyQuantilesEmpty(t *testing.T) {
	for name, s := range testenv.Backends(t) {
		t.Run(name, func(t *testing.T) {
			var bins []float64
			if err := s.QueryRow(ctx(t), "SELECT "+schema.LatencyQuantiles+" FROM "+s.T("requests_1h"), &bins); err != nil {
				t.Fatal(err)
			}
			if len(bins) != 3 || !math.IsNaN(bins[0]) || !math.IsNaN(schema.LatencyMS(bins[0])) {
				t.Errorf("got %v; want three NaN", bins)
			}
		})
	}
}

// TestLatencyBins follows single response times from 0 to a day through
// the views of both histogram rollups: each comes back as its bin, and
// LatencyMS reads that within 0.75% (0 below 0.001 ms).
func TestLatencyBins(t *testing.T) {
	values := []float64{0, 0.0001, 0.000999, 0.001, 0.001015, 0.0011, 0.0625, 1, 2.5, 26.2, 26.5, 100, 1000, 60_000, 3_600_000, 86_400_000}
	r := rand.New(rand.NewPCG(3, 4))
	for range 500 {
		values = append(values, math.Round(math.Exp(r.Float64()*math.Log(86_400_000_000))-1)/1000) // 1 µs to a day, log-uniform
	}
	base := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	ts := make([]time.Time, len(values))
	status := make([]uint16, len(values))
	for i := range values {
		ts[i], status[i] = base.Add(time.Duration(i)*time.Hour), 200 // one request per hour: one per state
	}
	for name, s := range testenv.Backends(t) {
		t.Run(name, func(t *testing.T) {
			c := ctx(t)
			if err := s.Insert(c, "", "requests", requestColumns(ts, values, status)); err != nil {
				t.Fatal(err)
			}
			for _, table := range []string{"requests_1m_hist", "requests_5m", "requests_1h",
				"requests_1m_svc", "requests_1m_drill", "requests_1m_ep", "requests_5m_svc", "requests_5m_drill", "requests_5m_ep", "requests_1h_svc", "requests_1h_drill", "requests_1h_ep"} { // not requests_1d_ep: a day is 24 of these requests
				rows, err := s.Query(c, "SELECT start, "+schema.LatencyQuantiles+" FROM "+s.T(table)+" GROUP BY start ORDER BY start")
				if err != nil {
					t.Fatal(err)
				}
				i := 0
				for ; rows.Next(); i++ {
					var start time.Time
					var bins []float64
					if err := rows.Scan(&start, &bins); err != nil {
						t.Fatal(err)
					}
					if i >= len(values) || !start.Equal(ts[i]) {
						t.Fatalf("%s: got state %d at %v; want one per request at %v", table, i, start, ts[min(i, len(ts)-1)])
					}
					v := values[i]
					// ln may differ in the last bit between Go and ClickHouse,
					// which would move a value on a bin's edge (0.001015 ms) into
					// its neighbour.
					if want := latencyBin(v); len(bins) != 3 || bins[0] != bins[2] || math.Abs(bins[0]-want) > 1 || bins[0] != want && v != 0.001015 {
						t.Errorf("%s: %v ms: got bins %v; want %v", table, v, bins, want)
						continue
					}
					got := schema.LatencyMS(bins[0])
					if v < 0.001 {
						if got != 0 {
							t.Errorf("%s: %v ms: got %v; want 0", table, v, got)
						}
					} else if rel := math.Abs(got-v) / v; rel > 0.0075 {
						t.Errorf("%s: %v ms: got %v (bin %v); want within 0.75%% (%.3f%%)", table, v, got, bins[0], rel*100)
					}
				}
				rows.Close()
				if i != len(values) {
					t.Errorf("%s: got %d states; want %d", table, i, len(values))
				}
			}
		})
	}
}
