package alerts

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/wedsync/pulse/alerts/rules"
	"github.com/wedsync/pulse/internal/chstore"
	"github.com/wedsync/pulse/schema"
)

// Querier is what the window evaluator and the alert API read from
// ClickHouse: a table's name qualified with the store's database, and the
// rows of a query. *chstore.Store is one.
type Querier interface {
	T(table string) string
	Query(ctx context.Context, query string) (chstore.Rows, error)
}

// sample is a window rule's value for one group in one evaluation.
type sample struct {
	labels map[string]string // the group's labels
	value  float64
	ok     bool // there was data: at least max(1, min_requests) rows
}

// week is how far back throughput_drop compares.
const week = 7 * 24 * time.Hour

// rollupWindow is the shortest window of a request rule that reads the
// request rollups rather than raw requests. A rule evaluated every few
// seconds over the last hours must not cost what the requests of hours
// cost (36 million an hour at 10,000 a second): over the rollups it merges
// a few states per group and period (schema.Tile: a 6-hour window is at
// most 6 hours, 22 five-minute periods and 8 minutes a group). Shorter
// windows read the raw requests of at most those minutes.
const rollupWindow = 5 * time.Minute

// windowQuery is the SQL that computes a rule over the window ending at
// now, and how to read its rows.
//
// Its rows select the group columns, then n (UInt64, the requests or rows
// behind the value), v (Float64) and x (Float64): for throughput_drop,
// x is the requests of the window a week earlier and v is left to
// evaluate; when bins is set, v is a latency bin (schema.LatencyQuantiles)
// and x the largest response time, which evaluate turns into milliseconds.
//
// A request rule whose window is at least rollupWindow reads the minutes
// that hold the window's end: [to - window, to), where to is now rounded up
// to a whole minute (a 5-minute window at 12:03:20 is 11:59-12:04, the last
// five minutes counting the current one; at 12:03:00 it is 11:58-12:03, as
// from raw rows). Its rates divide by the time the window covers up to now
// (elapsed); the week-earlier window of throughput_drop is whole, so the
// drop compares rates: 1 - (n / elapsed) / (x / window). Other rules read
// [now - window, now) of their raw rows, and elapsed is the window.
type windowQuery struct {
	sql     string
	groups  []string
	bins    bool
	elapsed float64 // seconds
	window  float64 // seconds
}

// newWindowQuery returns the query of r for the window ending at now.
//
// The SQL runs on ClickHouse 18.16 and on chDB: plain aggregates, -Merge
// combinators, countIf, quantileExact, toDateTime of a Unix time; no
// toStartOfInterval, no WITH FILL. An aggregate without GROUP BY returns
// one row even when no row matched, with n = 0.
func newWindowQuery(s Querier, r *rules.Window, now time.Time) windowQuery {
	win := r.Window.D()
	if rules.RequestMetric(r.Metric) && win >= rollupWindow {
		return rollupQuery(s, r, now)
	}
	from, to := now.Add(-win), now
	wq := windowQuery{groups: r.GroupBy, elapsed: win.Seconds(), window: win.Seconds()}
	var table, value string
	var where []string
	in := func(a, b time.Time) string {
		return "ts >= " + chstore.DateTime(a) + " AND ts < " + chstore.DateTime(b)
	}
	count, x := "toUInt64(count())", "toFloat64(0)"
	switch r.Metric {
	case rules.MetricP50, rules.MetricP95, rules.MetricP99:
		table = "requests"
		level := map[string]string{rules.MetricP50: "0.5", rules.MetricP95: "0.95", rules.MetricP99: "0.99"}[r.Metric]
		value = "toFloat64(quantileExact(" + level + ")(response_time_ms))"
		where = append(where, in(from, to))
	case rules.MetricErrorRate:
		table = "requests"
		value = "toFloat64(countIf(status_code >= 500)) / toFloat64(count())"
		where = append(where, in(from, to))
	case rules.MetricThroughput:
		table = "requests"
		value = "toFloat64(count()) / " + strconv.FormatFloat(wq.elapsed, 'f', -1, 64)
		where = append(where, in(from, to))
	case rules.MetricThroughputDrop:
		table = "requests"
		count = "toUInt64(countIf(ts >= " + chstore.DateTime(from) + "))"
		value = "toFloat64(0)" // computed from n and x
		x = "toFloat64(countIf(ts < " + chstore.DateTime(to.Add(-week)) + "))"
		where = append(where, "(("+in(from, to)+") OR ("+in(from.Add(-week), to.Add(-week))+"))")
	case rules.MetricResource:
		table = "resources"
		value = "toFloat64(avg(utilisation))"
		where = append(where, in(from, to))
	case rules.MetricHealth:
		table = "health_checks"
		value = "toFloat64(countIf(status = 'critical')) / toFloat64(count())"
		where = append(where, in(from, to), "status != 'unknown'")
	}
	r.Filters.Each(func(name, v string) { where = append(where, name+" = "+chstore.Quote(v)) })
	cols := append(append([]string{}, r.GroupBy...), count+" AS n", value+" AS v", x+" AS x")
	wq.sql = "SELECT " + strings.Join(cols, ", ") + " FROM " + s.T(table) + " WHERE " + strings.Join(where, " AND ") + groupBy(r.GroupBy)
	return wq
}

// rollupQuery is the query of a request rule over the request rollups: the
// rollups by service when neither its groups nor its filters name the
// endpoint, else by endpoint (sorted by endpoint when it filters one
// endpoint), each read over the periods that tile the window.
func rollupQuery(s Querier, r *rules.Window, now time.Time) windowQuery {
	from, to := schema.RecentMinutes(now, r.Window.D())
	wq := windowQuery{groups: r.GroupBy, elapsed: now.Sub(from).Seconds(), window: to.Sub(from).Seconds()}
	rollups := []schema.Rollup{schema.Service1h, schema.Service5m, schema.Service1m}
	switch {
	case r.Filters.Endpoint != "":
		rollups = []schema.Rollup{schema.Drill1h, schema.Drill5m, schema.Drill1m}
	case slices.Contains(r.GroupBy, "endpoint"):
		rollups = []schema.Rollup{schema.Endpoint1h, schema.Endpoint5m, schema.Endpoint1m}
	}
	var filter []string
	r.Filters.Each(func(name, v string) { filter = append(filter, " AND "+name+" = "+chstore.Quote(v)) })
	// tiles selects the groups and the states of [a, b), with cur 1 or 0.
	tiles := func(a, b time.Time, cur string) []string {
		cols := strings.Join(append(slices.Clone(r.GroupBy), cur+" AS cur", "requests", "errors_5xx", "duration_max", "latency"), ", ")
		return schema.TileSelects(s.T, a, b, rollups, cols, strings.Join(filter, ""))
	}
	parts := tiles(from, to, "1")
	count, value, x := "toUInt64(countMerge(requests))", "", "toFloat64(0)"
	switch r.Metric {
	case rules.MetricP50, rules.MetricP95, rules.MetricP99:
		i := map[string]string{rules.MetricP50: "1", rules.MetricP95: "2", rules.MetricP99: "3"}[r.Metric]
		value, x, wq.bins = "toFloat64(("+schema.LatencyQuantiles+")["+i+"])", "toFloat64(maxMerge(duration_max))", true
	case rules.MetricErrorRate:
		value = "toFloat64(sumMerge(errors_5xx)) / toFloat64(countMerge(requests))"
	case rules.MetricThroughput:
		value = "toFloat64(countMerge(requests)) / " + strconv.FormatFloat(wq.elapsed, 'f', -1, 64)
	case rules.MetricThroughputDrop:
		// Counts only, merged per window: no state of both windows is
		// merged into one.
		parts = append(parts, tiles(from.Add(-week), to.Add(-week), "0")...)
		inner := append(slices.Clone(r.GroupBy), "cur", "toUInt64(countMerge(requests)) AS c")
		for i, p := range parts {
			parts[i] = "SELECT " + strings.Join(inner, ", ") + " FROM (" + p + ") GROUP BY " + strings.Join(append(slices.Clone(r.GroupBy), "cur"), ", ")
		}
		cols := append(slices.Clone(r.GroupBy), "toUInt64(sumIf(c, cur = 1)) AS n", "toFloat64(0) AS v", "toFloat64(sumIf(c, cur = 0)) AS x")
		wq.sql = "SELECT " + strings.Join(cols, ", ") + " FROM (" + strings.Join(parts, " UNION ALL ") + ")" + groupBy(r.GroupBy)
		return wq
	}
	cols := append(slices.Clone(r.GroupBy), count+" AS n", value+" AS v", x+" AS x")
	wq.sql = "SELECT " + strings.Join(cols, ", ") + " FROM (" + strings.Join(parts, " UNION ALL ") + ")" + groupBy(r.GroupBy)
	return wq
}

func groupBy(groups []string) string {
	if len(groups) == 0 {
		return ""
	}
	return " GROUP BY " + strings.Join(groups, ", ")
}

// evaluate runs r's query for the window ending at now.
func evaluate(ctx context.Context, s Querier, r *rules.Window, now time.Time) ([]sample, error) {
	q := newWindowQuery(s, r, now)
	rows, err := s.Query(ctx, q.sql)
	if err != nil {
		return nil, fmt.Errorf("evaluate rule %s: %w", r.Name, err)
	}
	defer rows.Close()
	need := max(r.MinRequests, 1)
	var out []sample
	for rows.Next() {
		g := make([]string, len(q.groups))
		var n uint64
		var v, x float64
		dest := make([]any, 0, len(g)+3)
		for i := range g {
			dest = append(dest, &g[i])
		}
		dest = append(dest, &n, &v, &x)
		if err := rows.Scan(dest...); err != nil {
			return nil, fmt.Errorf("evaluate rule %s: read row: %w", r.Name, err)
		}
		sm := sample{labels: map[string]string{}, value: v}
		for i, name := range q.groups {
			sm.labels[name] = g[i]
		}
		switch {
		case r.Metric == rules.MetricThroughputDrop:
			sm.ok = x >= float64(need)
			if sm.ok {
				sm.value = 1 - (float64(n)/q.elapsed)/(x/q.window)
			}
		case rules.RequestMetric(r.Metric):
			sm.ok = n >= need
			if q.bins {
				// A bin's middle may lie above the largest request it holds.
				sm.value = min(schema.LatencyMS(v), x)
			}
		default:
			sm.ok = n > 0
		}
		if math.IsNaN(sm.value) || math.IsInf(sm.value, 0) {
			sm.ok = false
		}
		if !sm.ok {
			sm.value = math.NaN()
		}
		out = append(out, sm)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("evaluate rule %s: %w", r.Name, err)
	}
	return out, nil
}

// describe says what r's value is, for messages.
func describe(r *rules.Window, v float64) string {
	name := map[string]string{
		rules.MetricP50: "p50 response time", rules.MetricP95: "p95 response time", rules.MetricP99: "p99 response time",
		rules.MetricErrorRate: "error rate (5xx)", rules.MetricThroughput: "throughput",
		rules.MetricThroughputDrop: "throughput drop against a week earlier", rules.MetricResource: "utilisation",
		rules.MetricHealth: "share of critical probe runs",
	}[r.Metric]
	if r.Metric == rules.MetricResource && r.Filters.Resource != "" {
		name = r.Filters.Resource + " utilisation"
	}
	return name + " " + unit(r.Metric, v)
}

// unit formats v in the unit of metric.
func unit(metric string, v float64) string {
	if math.IsNaN(v) {
		return "(no data)"
	}
	switch metric {
	case rules.MetricP50, rules.MetricP95, rules.MetricP99:
		return strconv.FormatFloat(v, 'f', 0, 64) + " ms"
	case rules.MetricThroughput:
		return strconv.FormatFloat(v, 'f', 1, 64) + " req/s"
	default:
		return strconv.FormatFloat(v*100, 'f', 1, 64) + "%"
	}
}
