package alerts

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/wedsync/pulse/alerts/rules"
	"github.com/wedsync/pulse/internal/chstore"
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

// windowQuery returns the SQL that computes r over [from, to), and the
// group columns it selects first. Every query selects, after the groups,
// n (UInt64, the rows behind the value), v (Float64) and, for
// throughput_drop, prev (UInt64, the rows a week earlier).
//
// The SQL runs on ClickHouse 18.16 and on chDB: plain aggregates,
// countIf, quantileExact, toDateTime of a Unix time; no
// toStartOfInterval, no WITH FILL. An aggregate without GROUP BY returns
// one row even when no row matched, with n = 0.
func windowQuery(s Querier, r *rules.Window, from, to time.Time) (string, []string) {
	var table, value string
	var where []string
	groups := r.GroupBy
	span := to.Sub(from).Seconds()
	in := func(a, b time.Time) string {
		return "ts >= " + chstore.DateTime(a) + " AND ts < " + chstore.DateTime(b)
	}
	count := "toUInt64(count())"
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
		value = "toFloat64(count()) / " + strconv.FormatFloat(span, 'f', -1, 64)
		where = append(where, in(from, to))
	case rules.MetricThroughputDrop:
		table = "requests"
		count = "toUInt64(countIf(ts >= " + chstore.DateTime(from) + "))"
		value = "toFloat64(0)" // computed from n and prev
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
	cols := append(append([]string{}, groups...), count+" AS n", value+" AS v")
	if r.Metric == rules.MetricThroughputDrop {
		cols = append(cols, "toUInt64(countIf(ts < "+chstore.DateTime(to.Add(-week))+")) AS prev")
	}
	q := "SELECT " + strings.Join(cols, ", ") + " FROM " + s.T(table) + " WHERE " + strings.Join(where, " AND ")
	if len(groups) > 0 {
		q += " GROUP BY " + strings.Join(groups, ", ")
	}
	return q, groups
}

// evaluate runs r's query for the window ending at now.
func evaluate(ctx context.Context, s Querier, r *rules.Window, now time.Time) ([]sample, error) {
	from := now.Add(-r.Window.D())
	q, groups := windowQuery(s, r, from, now)
	rows, err := s.Query(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("evaluate rule %s: %w", r.Name, err)
	}
	defer rows.Close()
	need := max(r.MinRequests, 1)
	var out []sample
	for rows.Next() {
		g := make([]string, len(groups))
		var n, prev uint64
		var v float64
		dest := make([]any, 0, len(groups)+3)
		for i := range g {
			dest = append(dest, &g[i])
		}
		dest = append(dest, &n, &v)
		if r.Metric == rules.MetricThroughputDrop {
			dest = append(dest, &prev)
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, fmt.Errorf("evaluate rule %s: read row: %w", r.Name, err)
		}
		sm := sample{labels: map[string]string{}, value: v}
		for i, name := range groups {
			sm.labels[name] = g[i]
		}
		switch {
		case r.Metric == rules.MetricThroughputDrop:
			sm.ok = prev >= need
			if sm.ok {
				sm.value = 1 - float64(n)/float64(prev)
			}
		case rules.RequestMetric(r.Metric):
			sm.ok = n >= need
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
