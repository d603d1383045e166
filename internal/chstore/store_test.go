package chstore_test

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"net/url"
	"os"
	"os/exec"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/google/uuid"
	"github.com/rs/zerolog"

	"github.com/wedsync/pulse/internal/chstore"
	"github.com/wedsync/pulse/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

func ctx(t testing.TB) context.Context {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return c
}

// typesRow is one row of the scratch table of TestInsertScanTypes.
type typesRow struct {
	n   uint32
	ts  time.Time
	s   string
	u8  uint8
	u16 uint16
	u32 uint32
	u64 uint64
	i64 int64
	f64 float64
	id  uuid.UUID
}

func TestInsertScanTypes(t *testing.T) {
	want := []typesRow{
		{n: 0, ts: time.Unix(0, 0).UTC(), s: "", id: uuid.Nil},
		{n: 1, ts: time.Unix(1, 0).UTC(), s: "plain", u8: 1, u16: 1, u32: 1, u64: 1, i64: -1, f64: -0.5,
			id: uuid.MustParse("123e4567-e89b-12d3-a456-426614174000")},
		{n: 2, ts: time.Date(1999, 12, 31, 23, 59, 59, 0, time.UTC), s: "tab\there\tand\tthere",
			u8: math.MaxUint8, u16: math.MaxUint16, u32: math.MaxUint32, u64: math.MaxUint64, i64: math.MaxInt64,
			f64: 0.1, id: uuid.Max},
		{n: 3, ts: time.Date(2026, 3, 15, 12, 34, 56, 0, time.UTC), s: "new\nline\r\ncrlf", i64: math.MinInt64,
			f64: 1.0 / 3, id: uuid.MustParse("00000000-0000-0000-0000-000000000001")},
		{n: 4, ts: time.Date(2106, 2, 7, 6, 28, 15, 0, time.UTC), s: `back\slash \t \n \\ trailing\`,
			f64: 123456.789, i64: 42},
		{n: 5, ts: time.Date(2026, 7, 1, 0, 0, 0, 0, time.FixedZone("UTC+5", 5*3600)),
			s: `'single' "double" ` + "`back`", f64: 1e-300},
		{n: 6, ts: time.Date(2001, 9, 9, 1, 46, 39, 0, time.UTC), s: "unicode ✓ 日本語 🙂 é", f64: -1.7976931348623157e308},
		{n: 7, ts: time.Unix(86400, 0).UTC(), s: "nul\x00byte \\N \x01\b\f", f64: math.Inf(1)},
		{n: 8, ts: time.Unix(999999999, 0).UTC(), s: "'; DROP TABLE x; --", f64: math.Inf(-1)},
		{n: 9, ts: time.Unix(1700000000, 999999999), s: strings.Repeat("long ", 1000), f64: 1e-310},
	}
	cols := func(rows []typesRow) []chstore.Column {
		var (
			n   []uint32
			ts  []time.Time
			s   []string
			u8  []uint8
			u16 []uint16
			u32 []uint32
			u64 []uint64
			i64 []int64
			f64 []float64
			id  []uuid.UUID
		)
		for _, r := range rows {
			n, ts, s = append(n, r.n), append(ts, r.ts), append(s, r.s)
			u8, u16, u32, u64 = append(u8, r.u8), append(u16, r.u16), append(u32, r.u32), append(u64, r.u64)
			i64, f64, id = append(i64, r.i64), append(f64, r.f64), append(id, r.id)
		}
		return []chstore.Column{
			{Name: "n", Values: n}, {Name: "ts", Values: ts}, {Name: "s", Values: s},
			{Name: "u8", Values: u8}, {Name: "u16", Values: u16}, {Name: "u32", Values: u32},
			{Name: "u64", Values: u64}, {Name: "i64", Values: i64}, {Name: "f64", Values: f64},
			{Name: "id", Values: id},
		}
	}
	for name, s := range testenv.Backends(t) {
		t.Run(name, func(t *testing.T) {
			c := ctx(t)
			err := s.Exec(c, "CREATE TABLE "+s.T("types")+` (n UInt32, ts DateTime, s String, u8 UInt8,
				u16 UInt16, u32 UInt32, u64 UInt64, i64 Int64, f64 Float64, id UUID) ENGINE = MergeTree() ORDER BY n`)
			if err != nil {
				t.Fatalf("create table: %v", err)
			}
			if err := s.Insert(c, "", "types", cols(want)); err != nil {
				t.Fatalf("insert: %v", err)
			}
			rows, err := s.Query(c, "SELECT n, ts, s, u8, u16, u32, u64, i64, f64, id FROM "+s.T("types")+" ORDER BY n")
			if err != nil {
				t.Fatalf("query: %v", err)
			}
			defer rows.Close()
			var got []typesRow
			for rows.Next() {
				var r typesRow
				if err := rows.Scan(&r.n, &r.ts, &r.s, &r.u8, &r.u16, &r.u32, &r.u64, &r.i64, &r.f64, &r.id); err != nil {
					t.Fatalf("scan: %v", err)
				}
				got = append(got, r)
			}
			if err := rows.Err(); err != nil {
				t.Fatalf("rows: %v", err)
			}
			if len(got) != len(want) {
				t.Fatalf("got %d rows; want %d", len(got), len(want))
			}
			for i, w := range want {
				g := got[i]
				w.ts = w.ts.Truncate(time.Second).UTC() // DateTime holds seconds
				if g.ts.Location() != time.UTC {
					t.Errorf("row %d: got time in %v; want UTC", i, g.ts.Location())
				}
				if !reflect.DeepEqual(g, w) {
					if g.s != w.s {
						t.Errorf("row %d: got string %q; want %q", i, g.s, w.s)
					}
					g.s, w.s = "", ""
					t.Errorf("row %d (strings aside):\ngot  %+v\nwant %+v", i, g, w)
				}
			}
		})
	}
}

// TestFloatRoundTrip checks Float64 fidelity over the magnitudes metrics
// take (1e-6 to 1e12). The native protocol carries the bits: exact. chDB
// parses the TSV text with ClickHouse's fast float reader ("usually the
// same value, in rare cases it may differ by the least significant bit"),
// measured here: about 1 in 25 values is 1 or 2 units in the last place
// off (at most 4.5e-16 relative); 5e-324, the smallest subnormal, reads as 0. Text
// written with fewer significant digits than needed would be off by far
// more than the bound.
func TestFloatRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 11))
	var vals []float64
	for len(vals) < 30_000 {
		switch len(vals) % 3 {
		case 0:
			vals = append(vals, (r.Float64()-0.5)*math.Pow(10, float64(r.IntN(19)-6)))
		case 1:
			vals = append(vals, math.Exp(r.NormFloat64()*0.8+math.Log(120)))
		default:
			vals = append(vals, float64(r.IntN(10_000_000))/1000)
		}
	}
	vals = append(vals, 0, math.Copysign(0, -1), math.Inf(1), math.Inf(-1), 0.1, 1.0/3, 2.0/3, 1e-6, 123456789.123)
	// Whole numbers (disk bytes, counts) come back exact on both backends:
	// a disk capacity once read back as 97793294336.00002.
	whole := len(vals)
	vals = append(vals, 97793294336, 97793294000, 1<<53-1, -4e15, 1e15)
	for range 2000 {
		vals = append(vals, float64(r.Int64N(1<<53)))
	}
	maxRel := map[string]float64{"clickhouse": 0, "chdb": 1e-15}
	for name, s := range testenv.Backends(t) {
		t.Run(name, func(t *testing.T) {
			c := ctx(t)
			if err := s.Exec(c, "CREATE TABLE "+s.T("floats")+" (i UInt32, x Float64) ENGINE = MergeTree() ORDER BY i"); err != nil {
				t.Fatal(err)
			}
			idx := make([]uint32, len(vals))
			for i := range idx {
				idx[i] = uint32(i)
			}
			if err := s.Insert(c, "", "floats", []chstore.Column{{Name: "i", Values: idx}, {Name: "x", Values: vals}}); err != nil {
				t.Fatal(err)
			}
			rows, err := s.Query(c, "SELECT i, x FROM "+s.T("floats")+" ORDER BY i")
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			n, off := 0, 0
			for rows.Next() {
				var i uint32
				var x float64
				if err := rows.Scan(&i, &x); err != nil {
					t.Fatal(err)
				}
				n++
				want := vals[i]
				if x == want && math.Signbit(x) == math.Signbit(want) {
					continue
				}
				off++
				if int(i) >= whole {
					t.Errorf("row %d: whole number %v read back as %v", i, want, x)
				}
				if rel := math.Abs(x-want) / math.Abs(want); !(rel <= maxRel[name]) {
					t.Errorf("row %d: got %v; want %v (relative error %.3g; at most %g allowed)", i, x, want, rel, maxRel[name])
				}
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
			if n != len(vals) {
				t.Fatalf("got %d rows; want %d", n, len(vals))
			}
			t.Logf("%s: %d of %d values not bit-identical", name, off, n)
		})
	}
}

func TestInsertRefusesOutOfRangeTimes(t *testing.T) {
	for name, s := range testenv.Backends(t) {
		for _, ts := range []time.Time{time.Unix(-1, 0), time.Unix(math.MaxUint32+1, 0), {}} {
			t.Run(name+"/"+ts.UTC().Format(time.DateTime), func(t *testing.T) {
				c := ctx(t)
				if err := s.Exec(c, "CREATE TABLE IF NOT EXISTS "+s.T("times")+" (ts DateTime) ENGINE = MergeTree() ORDER BY ts"); err != nil {
					t.Fatalf("create table: %v", err)
				}
				err := s.Insert(c, "", "times", []chstore.Column{{Name: "ts", Values: []time.Time{ts}}})
				if err == nil || !strings.Contains(err.Error(), "outside the DateTime range") {
					t.Fatalf("insert %v: got error %v; want an out-of-range error", ts, err)
				}
				if n := testenv.Count(t, s, "SELECT count() FROM "+s.T("times")); n != 0 {
					t.Fatalf("got %d rows; want 0", n)
				}
			})
		}
	}
}

func TestInsertColumnErrors(t *testing.T) {
	for name, s := range testenv.Backends(t) {
		c := ctx(t)
		if err := s.Exec(c, "CREATE TABLE "+s.T("two")+" (a UInt32, b String) ENGINE = MergeTree() ORDER BY a"); err != nil {
			t.Fatalf("create table: %v", err)
		}
		f := func(what string, cols []chstore.Column) {
			t.Helper()
			t.Run(name+"/"+what, func(t *testing.T) {
				if err := s.Insert(c, "", "two", cols); err == nil {
					t.Fatalf("insert %s: got no error; want one", what)
				}
			})
		}
		f("unequal lengths", []chstore.Column{{Name: "a", Values: []uint32{1, 2}}, {Name: "b", Values: []string{"x"}}})
		f("unsupported type", []chstore.Column{{Name: "a", Values: []int{1}}, {Name: "b", Values: []string{"x"}}})
		f("unknown column", []chstore.Column{{Name: "a", Values: []uint32{1}}, {Name: "nope", Values: []string{"x"}}})
		t.Run(name+"/no rows", func(t *testing.T) {
			err := s.Insert(c, "", "two", []chstore.Column{{Name: "a", Values: []uint32{}}, {Name: "b", Values: []string{}}})
			if err != nil {
				t.Fatalf("insert of no rows: got %v; want nil", err)
			}
		})
		if n := testenv.Count(t, s, "SELECT count() FROM "+s.T("two")); n != 0 {
			t.Errorf("%s: got %d rows after failed and empty inserts; want 0", name, n)
		}
	}
}

func TestScanFloatArray(t *testing.T) {
	tests := []struct {
		query string
		want  []float64
	}{
		{"SELECT [1.5, 2.25]", []float64{1.5, 2.25}},
		{"SELECT [-0.125, 1e-10, 3e300]", []float64{-0.125, 1e-10, 3e300}},
		{"SELECT CAST([] AS Array(Float64))", []float64{}},
		// quantileExact of 0..10 at level q is element floor(q*11).
		{"SELECT quantilesExact(0.5, 0.9, 1)(toFloat64(number)) FROM (SELECT number FROM system.numbers LIMIT 11)", []float64{5, 9, 10}},
		{"SELECT arrayMap(x -> toFloat64(x), quantilesTDigest(0.5, 0.99)(toFloat64(number))) FROM (SELECT 7 AS number)", []float64{7, 7}},
		{"SELECT quantilesTDigest(0.5, 0.99)(toFloat64(number)) FROM (SELECT 7 AS number)", []float64{7, 7}}, // Array(Float32)
	}
	for name, s := range testenv.Backends(t) {
		for _, tt := range tests {
			t.Run(name+"/"+tt.query, func(t *testing.T) {
				var got []float64
				if err := s.QueryRow(ctx(t), tt.query, &got); err != nil {
					t.Fatalf("got error %v; want none", err)
				}
				if got == nil || !reflect.DeepEqual(got, tt.want) {
					t.Fatalf("got %#v; want %#v", got, tt.want)
				}
			})
		}
	}
}

func TestQueryRow(t *testing.T) {
	for name, s := range testenv.Backends(t) {
		t.Run(name, func(t *testing.T) {
			c := ctx(t)
			var n uint64
			err := s.QueryRow(c, "SELECT number FROM system.numbers WHERE number > 5 LIMIT 0", &n)
			if !errors.Is(err, chstore.ErrNoRows) {
				t.Errorf("no rows: got error %v; want ErrNoRows", err)
			}
			if err := s.QueryRow(c, "SELECT number FROM system.numbers WHERE number > 5 LIMIT 3", &n); err != nil || n != 6 {
				t.Errorf("first of several rows: got %d, %v; want 6, nil", n, err)
			}
			if err := s.QueryRow(c, "SELECT no_such_function()", &n); err == nil || errors.Is(err, chstore.ErrNoRows) {
				t.Errorf("bad query: got error %v; want a server error", err)
			}
			var str string
			if err := s.QueryRow(c, "SELECT 1, 2", &str); err == nil {
				t.Errorf("two columns into one destination: got no error; want one")
			}
		})
	}
}

func TestQuote(t *testing.T) {
	tests := []string{
		"",
		"plain",
		"it's",
		`\`,
		`\'`,
		`trailing\`,
		`'; SELECT 1; --`,
		`\' OR 1 = 1 --`,
		"new\nline\r\n",
		"tab\tseparated",
		"nul\x00byte",
		"unicode ✓ 日本語 🙂",
		"\xff\xfe invalid utf-8",
		`"double" ` + "`back`",
		"what? @x $1 {a:String}",
		`\N`,
		`\x41 \u0041 \\`,
	}
	for name, s := range testenv.Backends(t) {
		for _, want := range tests {
			t.Run(name+"/"+want, func(t *testing.T) {
				var got string
				var n uint64
				if err := s.QueryRow(ctx(t), "SELECT "+chstore.Quote(want)+", length("+chstore.Quote(want)+")", &got, &n); err != nil {
					t.Fatalf("SELECT %s: %v", chstore.Quote(want), err)
				}
				if got != want || n != uint64(len(want)) {
					t.Fatalf("got %q (%d bytes); want %q (%d bytes)", got, n, want, len(want))
				}
			})
		}
	}
}

func TestDateTimeExpression(t *testing.T) {
	for name, s := range testenv.Backends(t) {
		for _, want := range []time.Time{
			time.Unix(1, 0).UTC(),
			time.Date(2026, 3, 29, 1, 30, 0, 0, time.UTC),
			time.Date(2026, 3, 29, 3, 30, 0, 0, time.FixedZone("CEST", 2*3600)),
		} {
			t.Run(name+"/"+want.Format(time.RFC3339), func(t *testing.T) {
				var got time.Time
				var unix uint32
				if err := s.QueryRow(ctx(t), "SELECT "+chstore.DateTime(want)+", toUInt32("+chstore.DateTime(want)+")", &got, &unix); err != nil {
					t.Fatal(err)
				}
				if !got.Equal(want) || got.Location() != time.UTC || int64(unix) != want.Unix() {
					t.Fatalf("got %v (unix %d); want %v (unix %d)", got, unix, want.UTC(), want.Unix())
				}
			})
		}
	}
}

func TestOpenErrors(t *testing.T) {
	const secret = "secretpw"
	live := testenv.ClickHouseDSN() // clickhouse://host:port, reachable
	tests := []struct {
		dsn  string
		want string // in the error text
	}{
		{"mysql://u:" + secret + "@127.0.0.1:3306/db", `scheme must be clickhouse:// or chdb:, not "mysql"`},
		{"127.0.0.1:9000", "parse ClickHouse DSN"},
		{"file:///tmp/x", `scheme must be clickhouse:// or chdb:, not "file"`},
		{"clickhouse://u:" + secret + "@[::1", "invalid URL"},
		{"chdb:", "chdb needs a data path"},
		{"chdb:?database=x", "chdb needs a data path"},
		{"chdb:" + os.TempDir() + "/pulse-other?database=bad-name", "database name must be"},
		{"clickhouse://u:" + secret + "@127.0.0.1:1/bad-name", "database name must be"},
		{"clickhouse://u:" + secret + "@127.0.0.1:1/1db", "database name must be"},
		{"clickhouse://u:" + secret + "@127.0.0.1:1/" + strings.Repeat("d", 65), "database name must be"},
		{"clickhouse://u:" + secret + "@127.0.0.1:1/a/b", "database name must be"},
		{"clickhouse://u:" + secret + "@/db", "missing host:port"},
		{"clickhouse://u:" + secret + "@127.0.0.1:1/db", "connect to ClickHouse"},
		{strings.Replace(live, "://", "://default:"+secret+"@", 1) + "/db", "connect to ClickHouse"},
		{strings.Replace(live, "://", "://nosuchuser:"+secret+"@", 1) + "/db", "connect to ClickHouse"},
	}
	for _, tt := range tests {
		t.Run(tt.dsn, func(t *testing.T) {
			s, err := chstore.Open(ctx(t), tt.dsn, zerolog.Nop())
			if err == nil {
				s.Close()
				t.Fatalf("got no error; want one containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got error %q; want it to contain %q", err, tt.want)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("got error %q; want it without the password", err)
			}
		})
	}
}

// TestChDBOnePath: a process has one chDB session, so a second data path
// is refused while the first is open.
func TestChDBOnePath(t *testing.T) {
	testenv.ChDB(t) // the session is open at the test binary's path
	s, err := chstore.Open(ctx(t), "chdb:"+t.TempDir()+"?database=other", zerolog.Nop())
	if err == nil {
		s.Close()
		t.Fatal("got a second chDB path opened; want an error")
	}
	if !strings.Contains(err.Error(), "already uses chdb at another path") {
		t.Errorf("got error %q; want it to say chdb is in use at another path", err)
	}
}

func TestClose(t *testing.T) {
	admin := testenv.ClickHouse(t)
	db := testenv.DatabaseName(t)
	t.Cleanup(func() {
		if err := admin.Exec(context.Background(), "DROP DATABASE IF EXISTS `"+db+"`"); err != nil {
			t.Errorf("drop %s: %v", db, err)
		}
	})
	s, err := chstore.Open(ctx(t), testenv.ClickHouseDSN()+"/"+db, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if n := testenv.Count(t, s, "SELECT count() FROM system.databases WHERE name = "+chstore.Quote(db)); n != 1 {
		t.Errorf("Open: got %d databases named %s; want it created", n, db)
	}
	if err := s.Close(); err != nil {
		t.Errorf("first Close: got %v; want nil", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: got %v; want nil", err)
	}
	if err := s.Ping(ctx(t)); err == nil {
		t.Errorf("Ping after Close: got nil; want an error")
	}
	var nilStore *chstore.Store
	if err := nilStore.Close(); err != nil {
		t.Errorf("Close of a nil Store: got %v; want nil", err)
	}
}

// TestConcurrentUse runs inserts and queries from several goroutines on
// each backend (the race detector watches the Store).
func TestConcurrentUse(t *testing.T) {
	for name, s := range testenv.Backends(t) {
		t.Run(name, func(t *testing.T) {
			c := ctx(t)
			if err := s.Exec(c, "CREATE TABLE "+s.T("conc")+" (g UInt32, n UInt64) ENGINE = MergeTree() ORDER BY g"); err != nil {
				t.Fatal(err)
			}
			const workers, rounds, rows = 8, 10, 100
			errs := make(chan error, workers)
			for w := range workers {
				go func() {
					for range rounds {
						g, n := make([]uint32, rows), make([]uint64, rows)
						for i := range g {
							g[i], n[i] = uint32(w), uint64(i)
						}
						if err := s.Insert(c, "", "conc", []chstore.Column{{Name: "g", Values: g}, {Name: "n", Values: n}}); err != nil {
							errs <- err
							return
						}
						var cnt uint64
						if err := s.QueryRow(c, "SELECT count() FROM "+s.T("conc")+" WHERE g = "+strconv.Itoa(w), &cnt); err != nil {
							errs <- err
							return
						}
					}
					errs <- nil
				}()
			}
			for range workers {
				if err := <-errs; err != nil {
					t.Error(err)
				}
			}
			if n := testenv.Count(t, s, "SELECT count() FROM "+s.T("conc")); n != workers*rounds*rows {
				t.Errorf("got %d rows; want %d", n, workers*rounds*rows)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	stores := testenv.Backends(t)
	tests := []struct {
		backend string
		major   int
		minor   int
		ttl     bool
	}{
		{"clickhouse", 18, 16, false},
		{"chdb", 26, 5, true},
	}
	for _, tt := range tests {
		t.Run(tt.backend, func(t *testing.T) {
			s := stores[tt.backend]
			var v string
			if err := s.QueryRow(ctx(t), "SELECT version()", &v); err != nil {
				t.Fatal(err)
			}
			if got := s.Version(); got.Major != tt.major || got.Minor != tt.minor || got.HasTTL() != tt.ttl {
				t.Errorf("version() %q: got %v (TTL %t); want %d.%d (TTL %t)", v, got, got.HasTTL(), tt.major, tt.minor, tt.ttl)
			}
			if !strings.HasPrefix(v, s.Version().String()+".") {
				t.Errorf("got String() %q; want a prefix of %q", s.Version(), v)
			}
			if s.Kind() != tt.backend {
				t.Errorf("got Kind() %q; want %q", s.Kind(), tt.backend)
			}
			if err := s.Ping(ctx(t)); err != nil {
				t.Errorf("ping: %v", err)
			}
		})
	}
}

func TestRunningQueries(t *testing.T) {
	for name, s := range testenv.Backends(t) {
		t.Run(name, func(t *testing.T) {
			ids, err := s.RunningQueries(ctx(t), "pulse-test-nothing-runs-")
			if err != nil || len(ids) != 0 {
				t.Fatalf("got %v, %v; want no IDs, no error", ids, err)
			}
		})
	}
}

// TestRunningQueriesServer sees a slow query on the server by its ID prefix
// while it runs, and no longer once it is over.
func TestRunningQueriesServer(t *testing.T) {
	s := testenv.ClickHouse(t)
	c := ctx(t)
	done := make(chan error, 1)
	go func() {
		qc := clickhouse.Context(c, clickhouse.WithQueryID("pulse-test-slow-1"))
		done <- s.Exec(qc, "SELECT sleep(2)")
	}()
	testenv.Eventually(t, 10*time.Second, "the slow query in RunningQueries", func() bool {
		ids, err := s.RunningQueries(c, "pulse-test-slow-")
		if err != nil {
			t.Fatalf("running queries: %v", err)
		}
		if len(ids) > 1 || len(ids) == 1 && ids[0] != "pulse-test-slow-1" {
			t.Fatalf("got running IDs %q; want [pulse-test-slow-1]", ids)
		}
		return len(ids) == 1
	})
	if ids, err := s.RunningQueries(c, "pulse-test-other-"); err != nil || len(ids) != 0 {
		t.Errorf("other prefix: got %q, %v; want none", ids, err)
	}
	if err := <-done; err != nil {
		t.Fatalf("slow query: %v", err)
	}
	testenv.Eventually(t, 10*time.Second, "the slow query to leave RunningQueries", func() bool {
		ids, err := s.RunningQueries(c, "pulse-test-slow-")
		return err == nil && len(ids) == 0
	})
}

// TestChDBTimeZone runs the chDB checks in a child process whose TZ is far
// from UTC: chDB reads TZ when it loads, and DateTime text, partition IDs and
// rollup minutes must not depend on it.
func TestChDBTimeZone(t *testing.T) {
	if os.Getenv("PULSE_TEST_CHDB_TZ_CHILD") == "" {
		for _, tz := range []string{"America/New_York", "Asia/Kolkata"} {
			t.Run(tz, func(t *testing.T) {
				cmd := exec.CommandContext(ctx(t), os.Args[0], "-test.run=^TestChDBTimeZone$", "-test.count=1", "-test.v")
				cmd.Env = append(os.Environ(), "TZ="+tz, "PULSE_TEST_CHDB_TZ_CHILD=1")
				out, err := cmd.CombinedOutput()
				if err != nil || !strings.Contains(string(out), "child checked chDB time zone") {
					t.Fatalf("child with TZ=%s: %v\n%s", tz, err, out)
				}
			})
		}
		s := testenv.ChDB(t)
		checkChDBTimeZone(t, s)
		return
	}
	checkChDBTimeZone(t, testenv.ChDB(t))
	if !t.Failed() {
		t.Logf("child checked chDB time zone (TZ=%s)", os.Getenv("TZ"))
	}
}

func checkChDBTimeZone(t *testing.T, s *chstore.Store) {
	t.Helper()
	c := ctx(t)
	var epoch time.Time
	var text string
	if err := s.QueryRow(c, "SELECT toDateTime(0), toString(toDateTime(0))", &epoch, &text); err != nil {
		t.Fatal(err)
	}
	if !epoch.Equal(time.Unix(0, 0)) || text != "1970-01-01 00:00:00" {
		t.Errorf("toDateTime(0): got %v (text %q); want 1970-01-01T00:00:00Z", epoch, text)
	}
	// 2026-03-15 02:30 UTC is the 14th in New York and 08:00 in Kolkata:
	// its daily partition and its minute must be those of UTC.
	ts := time.Date(2026, 3, 15, 2, 30, 45, 0, time.UTC)
	err := s.Insert(c, "", "requests", []chstore.Column{
		{Name: "ts", Values: []time.Time{ts}},
		{Name: "service", Values: []string{"svc"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	var part string
	var minute time.Time
	if err := s.QueryRow(c, "SELECT partition FROM system.parts WHERE active AND database = "+chstore.Quote(s.Database())+
		" AND table = 'requests'", &part); err != nil {
		t.Fatal(err)
	}
	if err := s.QueryRow(c, "SELECT minute FROM "+s.T("requests_1m"), &minute); err != nil {
		t.Fatal(err)
	}
	if part != "20260315" || !minute.Equal(ts.Truncate(time.Minute)) {
		t.Errorf("got partition %s, minute %v; want 20260315, %v", part, minute, ts.Truncate(time.Minute))
	}
}

// BenchmarkInsert inserts 50,000 rows of the requests columns per operation
// into each backend (the materialized view of requests_1m runs too).
func BenchmarkInsert(b *testing.B) {
	const rows = 50_000
	cols, size := requestColumns(rows)
	for name, s := range testenv.Backends(b) {
		b.Run(name, func(b *testing.B) {
			c := ctx(b)
			b.ReportAllocs()
			b.SetBytes(size)
			n := 0
			for b.Loop() {
				if err := s.Insert(c, "", "requests", cols); err != nil {
					b.Fatal(err)
				}
				n++
			}
			b.ReportMetric(float64(rows)*float64(n)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}

// requestColumns returns n rows of the requests columns spread over a day,
// and their size in bytes as Go values (strings by length).
func requestColumns(n int) ([]chstore.Column, int64) {
	var (
		ts       = make([]time.Time, n)
		service  = make([]string, n)
		endpoint = make([]string, n)
		method   = make([]string, n)
		status   = make([]uint16, n)
		rt       = make([]float64, n)
		user     = make([]uuid.UUID, n)
		errMsg   = make([]string, n)
		reqID    = make([]string, n)
		seq      = make([]uint64, n)
		idx      = make([]uint32, n)
	)
	base := time.Date(2026, 3, 15, 0, 0, 0, 0, time.UTC)
	services := []string{"api", "auth", "billing", "search"}
	endpoints := []string{"/v1/users", "/v1/orders/{id}", "/v1/search", "/healthz"}
	var size int64
	for i := range n {
		ts[i] = base.Add(time.Duration(i) * 24 * time.Hour / time.Duration(n))
		service[i] = services[i%len(services)]
		endpoint[i] = endpoints[i/7%len(endpoints)]
		method[i] = "GET"
		status[i] = []uint16{200, 200, 200, 201, 404, 500}[i%6]
		rt[i] = float64(i%997) * 1.25
		user[i] = uuid.UUID{byte(i), byte(i >> 8), byte(i >> 16), 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
		if status[i] >= 500 {
			errMsg[i] = "upstream timeout\tretrying"
		}
		reqID[i] = "req-" + user[i].String()
		seq[i] = uint64(i / 100)
		idx[i] = uint32(i % 100)
		size += 4 + 2 + 8 + 16 + 8 + 4 + int64(len(service[i])+len(endpoint[i])+len(method[i])+len(errMsg[i])+len(reqID[i]))
	}
	return []chstore.Column{
		{Name: "ts", Values: ts},
		{Name: "service", Values: service},
		{Name: "endpoint", Values: endpoint},
		{Name: "method", Values: method},
		{Name: "status_code", Values: status},
		{Name: "response_time_ms", Values: rt},
		{Name: "user_id", Values: user},
		{Name: "error_message", Values: errMsg},
		{Name: "request_id", Values: reqID},
		{Name: "stream_seq", Values: seq},
		{Name: "seq_idx", Values: idx},
	}, size
}

// TestOpenTLS reaches the ClickHouse server through a TLS proxy with a
// certificate from a test CA: ca= trusts it, without it the certificate is
// refused, and a proxy demanding client certificates takes cert= and key=.
func TestOpenTLS(t *testing.T) {
	ca := testenv.NewCA(t)
	u, err := url.Parse(testenv.ClickHouseDSN())
	if err != nil {
		t.Fatal(err)
	}
	proxy := ca.TLSProxy(t, u.Host, false)
	mutual := ca.TLSProxy(t, u.Host, true)
	db := testenv.DatabaseName(t)
	dsn := func(host, query string) string { return "clickhouse://default:@" + host + "/" + db + "?" + query }
	t.Cleanup(func() {
		if s, err := chstore.Open(ctx(t), testenv.ClickHouseDSN()+"/default", zerolog.Nop()); err == nil {
			_ = s.Exec(ctx(t), "DROP DATABASE IF EXISTS "+db)
			s.Close()
		}
	})

	for _, q := range []string{"ca=" + ca.CAFile, "secure=true&ca=" + ca.CAFile} {
		s, err := chstore.Open(ctx(t), dsn(proxy, q), zerolog.Nop())
		if err != nil {
			t.Fatalf("open over TLS with %s: %v", q, err)
		}
		if err := s.Ping(ctx(t)); err != nil {
			t.Errorf("ping over TLS: %v", err)
		}
		s.Close()
	}
	s, err := chstore.Open(ctx(t), dsn(mutual, "ca="+ca.CAFile+"&cert="+ca.ClientCert+"&key="+ca.ClientKey), zerolog.Nop())
	if err != nil {
		t.Fatalf("open over mutual TLS: %v", err)
	}
	s.Close()

	f := func(dsn, want string) {
		t.Helper()
		s, err := chstore.Open(ctx(t), dsn, zerolog.Nop())
		if err == nil {
			s.Close()
			t.Fatalf("%s: no error; want one saying %q", dsn, want)
		}
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v; want it to say %q", dsn, err, want)
		}
	}
	f(dsn(proxy, "secure=true"), "certificate signed by unknown authority")
	f(dsn(proxy, ""), "connect to ClickHouse") // plain protocol to a TLS port
	f(dsn(proxy, "secure=yes"), "secure must be true or false")
	f(dsn(proxy, "ca="+ca.CAFile+".missing"), "read ClickHouse CA file")
	f(dsn(proxy, "ca="+ca.CAFile+"&cert="+ca.ClientCert), "cert and key go together")
	f(dsn(mutual, "ca="+ca.CAFile), "connect to ClickHouse")
}
