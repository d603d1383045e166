package schema_test

import (
	"testing"
	"time"

	"github.com/wedsync/pulse/schema"
)

func TestTile(t *testing.T) {
	at := func(hm string) time.Time {
		v, err := time.Parse("15:04", hm)
		if err != nil {
			t.Fatal(err)
		}
		return time.Date(2026, 12, 6, v.Hour(), v.Minute(), 0, 0, time.UTC)
	}
	f := func(from, to string, rollups []schema.Rollup, want ...string) {
		t.Helper()
		var got []string
		for _, s := range schema.Tile(at(from), at(to), rollups...) {
			got = append(got, s.Rollup.Table+" "+s.From.Format("15:04")+"-"+s.To.Format("15:04"))
		}
		if len(got) != len(want) {
			t.Fatalf("Tile(%s, %s): got %q; want %q", from, to, got, want)
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("Tile(%s, %s): got %q; want %q", from, to, got, want)
			}
		}
	}
	all := []schema.Rollup{schema.Endpoint1h, schema.Endpoint5m, schema.Endpoint1m}
	f("11:01", "12:01", all, "requests_1m_ep 11:01-11:05", "requests_5m_ep 11:05-12:00", "requests_1m_ep 12:00-12:01")
	f("11:00", "12:00", all, "requests_1h_ep 11:00-12:00")
	f("10:55", "12:05", all, "requests_5m_ep 10:55-11:00", "requests_1h_ep 11:00-12:00", "requests_5m_ep 12:00-12:05")
	f("11:02", "11:04", all, "requests_1m_ep 11:02-11:04")
	f("11:04", "11:04", all)
	// Past the finest period the window widens to whole periods.
	f("11:02", "11:04", []schema.Rollup{schema.Endpoint1h, schema.Endpoint5m}, "requests_5m_ep 11:00-11:05")
	f("09:30", "12:00", []schema.Rollup{schema.Service1h}, "requests_1h_svc 09:00-12:00")
}
