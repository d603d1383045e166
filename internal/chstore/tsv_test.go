package chstore

import (
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

func TestParseVersion(t *testing.T) {
	tests := []struct {
		in   string
		want Version
		ttl  bool
	}{
		{"18.16.1", Version{18, 16}, false},
		{"19.5.3.8", Version{19, 5}, false},
		{"19.6.1.1", Version{19, 6}, true},
		{"20.1", Version{20, 1}, true},
		{"26.5.1.1", Version{26, 5}, true},
		{"", Version{}, false},
		{"garbage", Version{}, false},
	}
	for _, tt := range tests {
		got := parseVersion(tt.in)
		if got != tt.want || got.HasTTL() != tt.ttl {
			t.Errorf("parseVersion(%q): got %v (TTL %t); want %v (TTL %t)", tt.in, got, got.HasTTL(), tt.want, tt.ttl)
		}
	}
}

func TestValidIdent(t *testing.T) {
	tests := map[string]bool{
		"pulse": true, "_x": true, "t_abc_123": true, "A1": true, strings.Repeat("a", 64): true,
		"": false, "1db": false, "bad-name": false, "a.b": false, "a`b": false, "a b": false,
		"é": false, strings.Repeat("a", 65): false,
	}
	for in, want := range tests {
		if got := validIdent(in); got != want {
			t.Errorf("validIdent(%q): got %t; want %t", in, got, want)
		}
	}
}

func TestQuoteIdent(t *testing.T) {
	tests := map[string]string{"a": "`a`", "a`b": "`a\\`b`", `a\b`: "`a\\\\b`"}
	for in, want := range tests {
		if got := quoteIdent(in); got != want {
			t.Errorf("quoteIdent(%q): got %s; want %s", in, got, want)
		}
	}
}

func TestRedact(t *testing.T) {
	err := errors.New("auth as u:hunter2 failed: hunter2")
	tests := []struct {
		err    error
		secret string
		want   string
	}{
		{err, "hunter2", "auth as u:**** failed: ****"},
		{err, "", err.Error()},
		{err, "absent", err.Error()},
	}
	for _, tt := range tests {
		if got := redact(tt.err, tt.secret).Error(); got != tt.want {
			t.Errorf("redact(%q, %q): got %q; want %q", tt.err, tt.secret, got, tt.want)
		}
	}
	if redact(nil, "x") != nil {
		t.Errorf("redact(nil): got an error; want nil")
	}
}

func TestAppendTSV(t *testing.T) {
	id := uuid.MustParse("123e4567-e89b-12d3-a456-426614174000")
	tests := []struct {
		name string
		cols []Column
		want string
	}{
		{"times are ten digits", []Column{{"ts", []time.Time{time.Unix(0, 0), time.Unix(86400, 0), time.Unix(1700000000, 5)}}},
			"0000000000\n0000086400\n1700000000\n"},
		{"strings are escaped", []Column{{"s", []string{"a\tb", "c\nd", `e\f`, "g\rh", "i\x00j", "k'l\"m", `\N`}}},
			"a\\tb\nc\\nd\ne\\\\f\ng\\rh\ni\\0j\nk'l\"m\n\\\\N\n"},
		{"numbers", []Column{
			{"u8", []uint8{255}}, {"u16", []uint16{65535}}, {"u32", []uint32{math.MaxUint32}},
			{"u64", []uint64{math.MaxUint64}}, {"i64", []int64{math.MinInt64}},
			{"f", []float64{0.1}}, {"g", []float64{math.Inf(-1)}}, {"h", []float64{math.NaN()}}, {"id", []uuid.UUID{id}},
		}, "255\t65535\t4294967295\t18446744073709551615\t-9223372036854775808\t0.1\t-inf\tnan\t123e4567-e89b-12d3-a456-426614174000\n"},
		{"no rows", []Column{{"a", []string{}}, {"b", []uint8{}}}, ""},
	}
	for _, tt := range tests {
		got, err := appendTSV(nil, tt.cols)
		if err != nil || string(got) != tt.want {
			t.Errorf("%s: got %q, %v; want %q", tt.name, got, err, tt.want)
		}
	}
	if _, err := appendTSV(nil, []Column{{"a", []uint8{1}}, {"b", []uint8{1, 2}}}); err == nil {
		t.Errorf("unequal column lengths: got no error; want one")
	}
	if _, err := appendTSV(nil, []Column{{"a", []int{1}}}); err == nil {
		t.Errorf("[]int column: got no error; want one")
	}
}

// TestParseTSV reads text the way chDB writes it (TabSeparated escaping).
func TestParseTSV(t *testing.T) {
	out := "a\\tb\\nc\\\\d\\'e\t1\t[1.5,-2,inf]\t2026-03-15 12:34:56\n\t0\t[]\t1970-01-01 00:00:00\n"
	r := parseTSV([]byte(out))
	type row struct {
		s  string
		n  uint8
		fs []float64
		ts time.Time
	}
	want := []row{
		{"a\tb\nc\\d'e", 1, []float64{1.5, -2, math.Inf(1)}, time.Date(2026, 3, 15, 12, 34, 56, 0, time.UTC)},
		{"", 0, []float64{}, time.Unix(0, 0).UTC()},
	}
	var got []row
	for r.Next() {
		var g row
		if err := r.Scan(&g.s, &g.n, &g.fs, &g.ts); err != nil {
			t.Fatalf("scan: %v", err)
		}
		got = append(got, g)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v; want %+v", got, want)
	}
	if err := r.Scan(new(string)); err == nil {
		t.Errorf("scan after the last row: got no error; want one")
	}
	bad := []struct {
		field string
		dest  any
	}{
		{"256", new(uint8)}, {"-1", new(uint64)}, {"x", new(float64)}, {"2026-13-01 00:00:00", new(time.Time)},
		{"not-a-uuid", new(uuid.UUID)}, {"[1,x]", new([]float64)}, {"1", new(int)},
	}
	for _, b := range bad {
		if err := scanField(b.field, b.dest); err == nil {
			t.Errorf("scanField(%q, %T): got no error; want one", b.field, b.dest)
		}
	}
	r = parseTSV([]byte("1\t2\n"))
	r.Next()
	if err := r.Scan(new(uint8)); err == nil {
		t.Errorf("one destination for two columns: got no error; want one")
	}
}
