package query

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"golang.org/x/sync/errgroup"

	"github.com/wedsync/pulse/internal/chstore"
	"github.com/wedsync/pulse/internal/event"
	"github.com/wedsync/pulse/schema"
)

// timeframe is one value of the timeframe parameter and how it is read.
type timeframe struct {
	name   string
	span   time.Duration // window length
	bucket time.Duration // series bucket width
	source source        // where request figures come from
	ttl    time.Duration // cache lifetime of an answer
}

// source is a table of request figures: raw requests, or a rollup whose
// periods are as wide as the series buckets that read it, so that a bucket
// merges one state per (service, endpoint) and the window is read from
// rows of its own time only (rollups are sorted by time first).
type source struct {
	name, table, tcol string
	rollup            bool
}

var (
	rawSource      = source{name: "raw", table: "requests", tcol: "ts"}
	rollup5mSource = source{name: "rollup_5m", table: "requests_5m", tcol: "start", rollup: true}
	rollup1hSource = source{name: "rollup_1h", table: "requests_1h", tcol: "start", rollup: true}
)

var timeframes = []timeframe{
	{name: "1h", span: time.Hour, bucket: time.Minute, source: rawSource, ttl: ttl1h},
	{name: "24h", span: 24 * time.Hour, bucket: 5 * time.Minute, source: rollup5mSource, ttl: ttl24h},
	{name: "7d", span: 7 * 24 * time.Hour, bucket: time.Hour, source: rollup1hSource, ttl: ttlLong},
	{name: "30d", span: 30 * 24 * time.Hour, bucket: time.Hour, source: rollup1hSource, ttl: ttlLong},
}

func timeframeNamed(name string) timeframe {
	for _, tf := range timeframes {
		if tf.name == name {
			return tf
		}
	}
	panic("query: unknown timeframe " + name) // names are validated first
}

// window is the timeframe ending at the end of the bucket holding now:
// [from, to), aligned to whole buckets (of Unix time, so independent of
// any time zone).
func (tf timeframe) window(now time.Time) (from, to time.Time) {
	w := int64(tf.bucket / time.Second)
	end := (now.Unix()/w)*w + w
	to = time.Unix(end, 0).UTC()
	return to.Add(-tf.span), to
}

// resourceTypes are the resource types, in the order answers list them.
var resourceTypes = event.ResourceTypes

// ErrorRateDefinition is what error_rate means in every answer.
const ErrorRateDefinition = "share of responses with status 500-599; error_rate_4xx and error_rate_5xx are given apart"

// PerformanceResponse is the /system/performance answer. Series, Summary
// and SlowestEndpoints describe requests and are present unless metric is
// resource_usage; ResourceUsage is present when metric is resource_usage,
// or when no metric and no service or endpoint filter is given (resource
// samples are per host, not per service).
type PerformanceResponse struct {
	Timeframe           string           `json:"timeframe"`
	Metric              string           `json:"metric,omitempty"`
	Service             string           `json:"service,omitempty"`
	Endpoint            string           `json:"endpoint,omitempty"` // normalised, as stored
	BucketSeconds       int              `json:"bucket_seconds"`
	Source              string           `json:"source"`                      // raw, rollup_5m or rollup_1h: where request figures come from
	PercentileMethod    string           `json:"percentile_method,omitempty"` // exact (raw) or histogram (rollup, within 0.75%)
	ErrorRateDefinition string           `json:"error_rate_definition,omitempty"`
	From                time.Time        `json:"from"` // inclusive
	To                  time.Time        `json:"to"`   // exclusive; the last bucket may still be filling
	Series              []Point          `json:"series,omitempty"`
	Summary             *Stats           `json:"summary,omitempty"`
	SlowestEndpoints    *[]EndpointStats `json:"slowest_endpoints,omitempty"` // top 10 by P95
	ResourceUsage       []ResourceSeries `json:"resource_usage,omitempty"`
}

// Stats are the request figures of a bucket, a window or an endpoint.
// Figures of no requests are null.
type Stats struct {
	Count             uint64   `json:"count"`
	RequestsPerSecond float64  `json:"requests_per_second"` // count / the bucket's (or window's) seconds
	AvgMS             *float64 `json:"avg_ms"`
	P50MS             *float64 `json:"p50_ms"`
	P95MS             *float64 `json:"p95_ms"`
	P99MS             *float64 `json:"p99_ms"`
	MaxMS             *float64 `json:"max_ms"`
	Errors4xx         uint64   `json:"errors_4xx"`
	Errors5xx         uint64   `json:"errors_5xx"`
	ErrorRate4xx      *float64 `json:"error_rate_4xx"`
	ErrorRate5xx      *float64 `json:"error_rate_5xx"`
	ErrorRate         *float64 `json:"error_rate"` // = error_rate_5xx (see ErrorRateDefinition)
}

// Point is one bucket of a series; TS is its start.
type Point struct {
	TS time.Time `json:"ts"`
	Stats
}

// EndpointStats are the figures of one service's endpoint over the window.
type EndpointStats struct {
	Service  string `json:"service"`
	Endpoint string `json:"endpoint"`
	Stats
}

// ResourceSeries is the utilisation of one resource type over the window,
// over every host and name that reported it.
type ResourceSeries struct {
	Resource string          `json:"resource"`
	Points   []ResourcePoint `json:"points"`
}

// ResourcePoint is one bucket of a ResourceSeries; TS is its start.
type ResourcePoint struct {
	TS             time.Time `json:"ts"`
	Samples        uint64    `json:"samples"`
	AvgUtilisation *float64  `json:"avg_utilisation"`
	MaxUtilisation *float64  `json:"max_utilisation"`
}

type perfQuery struct {
	tf                        timeframe
	metric, service, endpoint string
}

func (a *API) performance(c echo.Context) error {
	p := newParams(c.Request().URL.RawQuery, "timeframe", "metric", "service", "endpoint")
	q := perfQuery{
		tf:       timeframeNamed(p.Enum("timeframe", "24h", "1h", "24h", "7d", "30d")),
		metric:   p.Enum("metric", "", "response_time", "throughput", "error_rate", "resource_usage"),
		service:  p.service("service"),
		endpoint: p.endpoint("endpoint"),
	}
	if q.metric == "resource_usage" {
		for _, f := range []string{"service", "endpoint"} {
			if v, _ := p.Get(f); v != "" {
				p.Bad(f, "does not apply to metric=resource_usage: resource samples are per host")
			}
		}
	}
	if err := p.Err(); err != nil {
		return err
	}
	key := a.cacheKey("performance", "timeframe="+q.tf.name, "metric="+q.metric, "service="+q.service, "endpoint="+q.endpoint)
	return a.answer(c, key, q.tf.ttl, func(ctx context.Context) (any, error) {
		return a.buildPerformance(ctx, q)
	})
}

// aggRow is one row of request aggregates as the queries below return it.
type aggRow struct {
	n, e4, e5 uint64
	sum, max  float64
	q         []float64 // P50, P95, P99: in ms, or latency bins when bins is set
	bins      bool      // q holds bins from schema.LatencyQuantiles
}

func (r *aggRow) dest() []any { return []any{&r.n, &r.e4, &r.e5, &r.sum, &r.max, &r.q} }

func (r *aggRow) stats(seconds float64) Stats {
	s := Stats{Count: r.n, RequestsPerSecond: float64(r.n) / seconds, Errors4xx: r.e4, Errors5xx: r.e5}
	if r.n == 0 {
		return s
	}
	s.AvgMS = num(r.sum / float64(r.n))
	s.MaxMS = num(r.max)
	if len(r.q) == 3 {
		p := [3]float64(r.q)
		if r.bins {
			// A bin's middle may lie above the largest request it holds.
			for i, bin := range p {
				p[i] = min(schema.LatencyMS(bin), r.max)
			}
		}
		s.P50MS, s.P95MS, s.P99MS = num(p[0]), num(p[1]), num(p[2])
	}
	s.ErrorRate4xx = ratio(r.e4, r.n)
	s.ErrorRate5xx = ratio(r.e5, r.n)
	s.ErrorRate = s.ErrorRate5xx
	return s
}

// Request aggregates, in aggRow's order: exact ones over raw rows, merged
// states over a rollup, whose percentiles are latency bins (in the order
// of the latencies they stand for, so that q[2] ranks by P95 either way).
const (
	rawAggs = "count() AS n, countIf(status_code >= 400 AND status_code < 500) AS e4, countIf(status_code >= 500) AS e5, " +
		"sum(response_time_ms) AS s, max(response_time_ms) AS mx, quantilesExact(0.5, 0.95, 0.99)(response_time_ms) AS q"
	rollupAggs = "countMerge(requests) AS n, sumMerge(errors_4xx) AS e4, sumMerge(errors_5xx) AS e5, " +
		"sumMerge(duration_sum) AS s, maxMerge(duration_max) AS mx, " +
		schema.LatencyQuantiles + " AS q"
)

// requestSource returns the table, its time column and the aggregates of q.
func (a *API) requestSource(q perfQuery) (table, tcol, aggs string) {
	src, aggs := q.tf.source, rawAggs
	if src.rollup {
		aggs = rollupAggs
	}
	return a.store.T(src.table), src.tcol, aggs
}

// timeRange is the condition tcol in [from, to).
func timeRange(tcol string, from, to time.Time) string {
	return tcol + " >= " + chstore.DateTime(from) + " AND " + tcol + " < " + chstore.DateTime(to)
}

// bucketExpr is the start of the bucket of width w seconds holding tcol, as
// Unix seconds (toStartOfInterval is missing from ClickHouse 18.16).
func bucketExpr(tcol string, w int64) string {
	return "toUInt64(intDiv(toUInt32(" + tcol + "), " + strconv.FormatInt(w, 10) + ") * " + strconv.FormatInt(w, 10) + ")"
}

func (a *API) buildPerformance(ctx context.Context, q perfQuery) (*PerformanceResponse, error) {
	from, to := q.tf.window(a.cfg.Now())
	w := int64(q.tf.bucket / time.Second)
	resp := &PerformanceResponse{
		Timeframe: q.tf.name, Metric: q.metric, Service: q.service, Endpoint: q.endpoint,
		BucketSeconds: int(w), Source: "raw", From: from, To: to,
	}
	requests := q.metric != "resource_usage"
	resources := q.metric == "resource_usage" || q.metric == "" && q.service == "" && q.endpoint == ""
	g, gctx := errgroup.WithContext(ctx)
	if requests {
		table, tcol, aggs := a.requestSource(q)
		where := timeRange(tcol, from, to)
		if q.service != "" {
			where += " AND service = " + chstore.Quote(q.service)
		}
		if q.endpoint != "" {
			where += " AND endpoint = " + chstore.Quote(q.endpoint)
		}
		resp.Source, resp.PercentileMethod = q.tf.source.name, "exact"
		if q.tf.source.rollup {
			resp.PercentileMethod = "histogram"
		}
		resp.ErrorRateDefinition = ErrorRateDefinition
		n := int(q.tf.span / q.tf.bucket)
		resp.Series = make([]Point, n)
		for i := range resp.Series {
			resp.Series[i].TS = from.Add(time.Duration(i) * q.tf.bucket)
		}
		g.Go(func() error {
			// WITH ROLLUP adds the whole window as a row of bucket 0, merged
			// from the buckets' states: one pass gives series and summary.
			// An empty window may give no row at all.
			sql := "SELECT " + bucketExpr(tcol, w) + " AS b, " + aggs + " FROM " + table + " WHERE " + where + " GROUP BY b WITH ROLLUP"
			var b uint64
			r := aggRow{bins: q.tf.source.rollup}
			summary := (&aggRow{}).stats(q.tf.span.Seconds())
			err := a.each(gctx, "performance series", sql, append([]any{&b}, r.dest()...), func() {
				if b == 0 {
					summary = r.stats(q.tf.span.Seconds())
				} else if i := (int64(b) - from.Unix()) / w; i >= 0 && i < int64(n) {
					resp.Series[i].Stats = r.stats(float64(w))
				}
			})
			resp.Summary = &summary
			return err
		})
		g.Go(func() error {
			sql := "SELECT service, endpoint, " + aggs + " FROM " + table + " WHERE " + where +
				" GROUP BY service, endpoint ORDER BY q[2] DESC, service, endpoint LIMIT 10"
			top := []EndpointStats{}
			var svc, ep string
			r := aggRow{bins: q.tf.source.rollup}
			err := a.each(gctx, "slowest endpoints", sql, append([]any{&svc, &ep}, r.dest()...), func() {
				top = append(top, EndpointStats{Service: svc, Endpoint: ep, Stats: r.stats(q.tf.span.Seconds())})
			})
			resp.SlowestEndpoints = &top
			return err
		})
	}
	if resources {
		g.Go(func() error {
			var err error
			resp.ResourceUsage, err = a.resourceSeries(gctx, from, to, w)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return resp, nil
}

// resourceSeries is the average and maximum utilisation of each resource
// type per bucket of w seconds in [from, to), from the raw samples.
func (a *API) resourceSeries(ctx context.Context, from, to time.Time, w int64) ([]ResourceSeries, error) {
	n := int((to.Unix() - from.Unix()) / w)
	index := map[string]int{}
	var out []ResourceSeries
	add := func(resource string) int {
		if i, ok := index[resource]; ok {
			return i
		}
		s := ResourceSeries{Resource: resource, Points: make([]ResourcePoint, n)}
		for i := range s.Points {
			s.Points[i].TS = from.Add(time.Duration(int64(i)*w) * time.Second)
		}
		index[resource] = len(out)
		out = append(out, s)
		return len(out) - 1
	}
	for _, r := range resourceTypes {
		add(r)
	}
	sql := "SELECT resource, " + bucketExpr("ts", w) + " AS b, count() AS n, avg(utilisation) AS av, max(utilisation) AS mx FROM " +
		a.store.T("resources") + " WHERE " + timeRange("ts", from, to) + " GROUP BY resource, b ORDER BY resource, b"
	var resource string
	var b, cnt uint64
	var avg, mx float64
	err := a.each(ctx, "resource usage series", sql, []any{&resource, &b, &cnt, &avg, &mx}, func() {
		if i := (int64(b) - from.Unix()) / w; i >= 0 && i < int64(n) {
			out[add(resource)].Points[i] = ResourcePoint{TS: time.Unix(int64(b), 0).UTC(), Samples: cnt, AvgUtilisation: num(avg), MaxUtilisation: num(mx)}
		}
	})
	if err != nil {
		return nil, err
	}
	// Types beyond the known ones (none today) follow them, by name.
	slices.SortStableFunc(out[len(resourceTypes):], func(x, y ResourceSeries) int { return strings.Compare(x.Resource, y.Resource) })
	return out, nil
}

// each runs sql and calls row after scanning each row into dest.
func (a *API) each(ctx context.Context, what, sql string, dest []any, row func()) error {
	rows, err := a.store.Query(ctx, sql)
	if err != nil {
		return a.unavailable(what, err)
	}
	defer rows.Close()
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return a.unavailable(what, err)
		}
		row()
	}
	if err := rows.Err(); err != nil {
		return a.unavailable(what, err)
	}
	return nil
}
