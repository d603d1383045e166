package schema

import (
	"time"

	"github.com/wedsync/pulse/internal/chstore"
)

// Rollup is one of the request rollups of migration 0010: its table and
// the width of its periods (start is aligned to multiples of it in Unix
// time). Its rows hold the states of requests_5m's columns; read them with
// countMerge, sumMerge, maxMerge and LatencyQuantiles.
type Rollup struct {
	Table  string
	Period time.Duration
}

// The rollups by service (one row per period and service, sorted by
// service and start), for figures over every endpoint of one or every
// service.
var (
	Service1m = Rollup{"requests_1m_svc", time.Minute}
	Service5m = Rollup{"requests_5m_svc", 5 * time.Minute}
	Service1h = Rollup{"requests_1h_svc", time.Hour}
)

// The rollups by endpoint sorted by time (one row per period, service and
// endpoint, sorted by start, service and endpoint), for figures per
// endpoint over a window: read the periods that Tile gives.
var (
	Endpoint1m = Rollup{"requests_1m_ep", time.Minute}
	Endpoint5m = Rollup{"requests_5m_ep", 5 * time.Minute}
	Endpoint1h = Rollup{"requests_1h_ep", time.Hour}
	Endpoint1d = Rollup{"requests_1d_ep", 24 * time.Hour}
)

// The rollups by endpoint sorted by endpoint (the rows of the rollups by
// endpoint, sorted by service, endpoint and start), for the figures of one
// endpoint.
var (
	Drill1m = Rollup{"requests_1m_drill", time.Minute}
	Drill5m = Rollup{"requests_5m_drill", 5 * time.Minute}
	Drill1h = Rollup{"requests_1h_drill", time.Hour}
)

// Span is a window [From, To) of whole periods of one rollup.
type Span struct {
	Rollup   Rollup
	From, To time.Time
}

// Tile covers [from, to) with whole periods of the rollups, the coarsest
// first wherever they fit, so that a read of the window merges the fewest
// states: an hour ending at 12:01 is 11:01-11:05 and 12:00-12:01 of 1-minute
// periods and 11:05-12:00 of 5-minute ones (16 states a group instead of
// 60). rollups are ordered coarsest first; from and to must be multiples of
// the finest period, or the finest spans are widened to its periods (a
// period holding from or to is read whole). Empty spans are left out.
func Tile(from, to time.Time, rollups ...Rollup) []Span {
	if len(rollups) == 0 || !from.Before(to) {
		return nil
	}
	r := rollups[0]
	if len(rollups) == 1 {
		return []Span{{r, floor(from, r.Period), ceil(to, r.Period)}}
	}
	a, b := ceil(from, r.Period), floor(to, r.Period)
	if !a.Before(b) {
		return Tile(from, to, rollups[1:]...)
	}
	out := Tile(from, a, rollups[1:]...)
	out = append(out, Span{r, a, b})
	return append(out, Tile(b, to, rollups[1:]...)...)
}

// floor and ceil align t down and up to a multiple of d in Unix time.
func floor(t time.Time, d time.Duration) time.Time {
	w := int64(d / time.Second)
	s := t.Unix()
	return time.Unix(s-((s%w)+w)%w, 0).UTC()
}

func ceil(t time.Time, d time.Duration) time.Time {
	f := floor(t, d)
	if f.Before(t) {
		return f.Add(d)
	}
	return f
}

// RecentMinutes is the window of whole minutes that reads the last d up to
// now from the rollups: [to - d, to), where to is now rounded up to a whole
// minute and d is rounded up to whole minutes. At 12:03:20 the last 5
// minutes are 11:59-12:04, the last five minutes counting the current one
// (4 minutes 20 seconds of them elapsed); at 12:03:00 they are 11:58-12:03,
// the rows of raw requests in [now - d, now).
func RecentMinutes(now time.Time, d time.Duration) (from, to time.Time) {
	to = ceil(now, time.Minute)
	return floor(to.Add(-d), time.Minute), to
}

// TileSelects are the queries of cols of the rows of the rollups that tile
// [from, to) (see Tile) and match where (conditions, each after " AND ";
// may be empty), one a span, to be joined by UNION ALL; table qualifies a
// table name (chstore.Store.T).
func TileSelects(table func(string) string, from, to time.Time, rollups []Rollup, cols, where string) []string {
	var parts []string
	for _, sp := range Tile(from, to, rollups...) {
		parts = append(parts, "SELECT "+cols+" FROM "+table(sp.Rollup.Table)+
			" WHERE start >= "+chstore.DateTime(sp.From)+" AND start < "+chstore.DateTime(sp.To)+where)
	}
	return parts
}
