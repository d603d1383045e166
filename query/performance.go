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
	source string        // the source an answer names: the width of the rollup periods its series read
	// Series and summaries read the rollup by service (every endpoint of
	// one or every service) or, for one endpoint, the rollup by endpoint,
	// both of the bucket's period; the slowest endpoints read the rollups
	// by endpoint that tile the window, coarsest first (see schema.Tile).
	// Each answer merges states in number of buckets x services, buckets
	// for one endpoint, or tiles x endpoints: never per request.
	// With an endpoint filter, the slowest endpoints read the tiles of the
	// rollups by endpoint sorted by endpoint (drillTiles) instead.
	byService, byEndpoint schema.Rollup
	tiles, drillTiles     []schema.Rollup
	ttl                   time.Duration // cache lifetime of an answer
}

var timeframes = []timeframe{
	{name: "1h", span: time.Hour, bucket: time.Minute, source: "rollup_1m", ttl: ttl1h,
		byService: schema.Service1m, byEndpoint: schema.Drill1m, tiles: []schema.Rollup{schema.Endpoint1h, schema.Endpoint5m, schema.Endpoint1m},
		drillTiles: []schema.Rollup{schema.Drill1h, schema.Drill5m, schema.Drill1m}},
	{name: "24h", span: 24 * time.Hour, bucket: 5 * time.Minute, source: "rollup_5m", ttl: ttl24h,
		byService: schema.Service5m, byEndpoint: schema.Drill5m, tiles: []schema.Rollup{schema.Endpoint1h, schema.Endpoint5m},
		drillTiles: []schema.Rollup{schema.Drill1h, schema.Drill5m}},
	{name: "7d", span: 7 * 24 * time.Hour, bucket: time.Hour, source: "rollup_1h", ttl: ttlLong,
		byService: schema.Service1h, byEndpoint: schema.Drill1h, tiles: []schema.Rollup{schema.Endpoint1d, schema.Endpoint1h},
		drillTiles: []schema.Rollup{schema.Drill1h}},
	{name: "30d", span: 30 * 24 * time.Hour, bucket: time.Hour, source: "rollup_1h", ttl: ttlLong,
		byService: schema.Service1h, byEndpoint: schema.Drill1h, tiles: []schema.Rollup{schema.Endpoint1d, schema.Endpoint1h},
		drillTiles: []schema.Rollup{schema.Drill1h}},
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
	Source              string           `json:"source"`                      // rollup_1m, rollup_5m or rollup_1h: where request figures come from; raw for resource_usage alone
	PercentileMethod    string           `json:"percentile_method,omitempty"` // histogram (rollup, within 0.75%)
	ErrorRateDefinition string           `json:"error_rate_definition,omitempty"`
	From                time.Time        `json:"from"`             // inclusive
	To                  time.Time        `json:"to"`               // exclusive; the last bucket may still be filling
	Filled              bool             `json:"filled"`           // series hold every bucket (fill=true); otherwise only buckets with requests or samples
	Series              *[]Point         `json:"series,omitempty"` // by time
	Summary             *Stats           `json:"summary,omitempty"`
	SlowestEndpoints    *[]EndpointStats `json:"slowest_endpoints,omitempty"` // top limit (default 10) by P95
	ResourceUsage       []ResourceSeries `json:"resource_usage,omitempty"`
	// AvgResponseTime and P95ResponseTime are the summary's avg_ms and
	// p95_ms under the spec's names, 0 without requests; present with
	// the summary.
	AvgResponseTime *float64 `json:"avg_response_time,omitempty"`
	P95ResponseTime *float64 `json:"p95_response_time,omitempty"`
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
	fill                      bool // pad the series with the buckets that have no requests or samples
	series                    bool // answer the series (false with limit=0: the summary alone)
	limit                     int  // of slowest endpoints
}

// MaxSlowestEndpoints is the largest limit of slowest endpoints an answer gives.
const MaxSlowestEndpoints = 100

func (a *API) performance(c echo.Context) error {
	p := newParams(c.Request().URL.RawQuery, "timeframe", "metric", "service", "endpoint", "fill", "series", "limit")
	q := perfQuery{
		tf:       timeframeNamed(p.Enum("timeframe", "24h", "1h", "24h", "7d", "30d")),
		metric:   p.Enum("metric", "", "response_time", "throughput", "error_rate", "resource_usage"),
		service:  p.service("service"),
		endpoint: p.endpoint("endpoint"),
		fill:     p.Bool("fill", false),
		series:   p.Bool("series", true),
		limit:    p.Int("limit", 10, 0, MaxSlowestEndpoints),
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
	key := a.cacheKey("performance", "timeframe="+q.tf.name, "metric="+q.metric, "service="+q.service, "endpoint="+q.endpoint,
		"fill="+strconv.FormatBool(q.fill), "series="+strconv.FormatBool(q.series), "limit="+strconv.Itoa(q.limit))
	return a.answer(c, key, q.tf.ttl, func(ctx context.Context) (any, error) {
		return a.buildPerformance(ctx, q)
	})
}

// aggRow is one row of request aggregates as the queries below return it.
type aggRow struct {
	n, e4, e5 uint64
	sum, max  float64
	q         []float64 // P50, P95, P99 as latency bins from schema.LatencyQuantiles
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
		// A bin's middle may lie above the largest request it holds.
		for i, bin := range p {
			p[i] = min(schema.LatencyMS(bin), r.max)
		}
		s.P50MS, s.P95MS, s.P99MS = num(p[0]), num(p[1]), num(p[2])
	}
	s.ErrorRate4xx = ratio(r.e4, r.n)
	s.ErrorRate5xx = ratio(r.e5, r.n)
	s.ErrorRate = s.ErrorRate5xx
	return s
}

// rollupAggs are the request aggregates of a rollup's merged states, in
// aggRow's order; percentiles are latency bins (in the order of the
// latencies they stand for, so that q[2] ranks by P95).
const rollupAggs = "countMerge(requests) AS n, sumMerge(errors_4xx) AS e4, sumMerge(errors_5xx) AS e5, " +
	"sumMerge(duration_sum) AS s, maxMerge(duration_max) AS mx, " +
	schema.LatencyQuantiles + " AS q"

// timeRange is the condition tcol in [from, to).
func timeRange(tcol string, from, to time.Time) string {
	return tcol + " >= " + chstore.DateTime(from) + " AND " + tcol + " < " + chstore.DateTime(to)
}

// tiled is a query of the rows of the rollups by endpoint that tile [from,
// to) (see schema.Tile) and match filter (conditions, each after " AND "):
// service, endpoint and their states, to be merged per endpoint.
func (a *API) tiled(from, to time.Time, rollups []schema.Rollup, filter string) string {
	return strings.Join(schema.TileSelects(a.store.T, from, to, rollups,
		"service, endpoint, requests, errors_4xx, errors_5xx, duration_sum, duration_max, latency", filter), " UNION ALL ")
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
		BucketSeconds: int(w), Source: "raw", Filled: q.fill, From: from, To: to,
	}
	requests := q.metric != "resource_usage"
	resources := q.metric == "resource_usage" || q.metric == "" && q.service == "" && q.endpoint == ""
	g, gctx := errgroup.WithContext(ctx)
	if requests {
		var filter string
		if q.service != "" {
			filter += " AND service = " + chstore.Quote(q.service)
		}
		if q.endpoint != "" {
			filter += " AND endpoint = " + chstore.Quote(q.endpoint)
		}
		rollup, tiles := q.tf.byService, q.tf.tiles
		if q.endpoint != "" {
			rollup, tiles = q.tf.byEndpoint, q.tf.drillTiles
		}
		table, where := a.store.T(rollup.Table), timeRange("start", from, to)+filter
		resp.Source, resp.PercentileMethod = q.tf.source, "histogram"
		resp.ErrorRateDefinition = ErrorRateDefinition
		g.Go(func() error {
			if !q.series {
				return nil
			}
			sql := "SELECT " + bucketExpr("start", w) + " AS b, " + rollupAggs + " FROM " + table + " WHERE " + where + " GROUP BY b ORDER BY b"
			var b uint64
			var r aggRow
			series := []Point{}
			err := a.each(gctx, "performance series", sql, append([]any{&b}, r.dest()...), func() {
				if ts := time.Unix(int64(b), 0).UTC(); !ts.Before(from) && ts.Before(to) {
					series = append(series, Point{TS: ts, Stats: r.stats(float64(w))})
				}
			})
			if q.fill {
				series = fill(series, func(p Point) time.Time { return p.TS }, from, to, q.tf.bucket, func(ts time.Time) Point {
					return Point{TS: ts, Stats: (&aggRow{}).stats(float64(w))}
				})
			}
			resp.Series = &series
			return err
		})
		g.Go(func() error {
			// Its own query: on ClickHouse 18.16 GROUP BY ... WITH ROLLUP
			// over many blocks gives one total row per partial
			// aggregation, none of them the whole window's.
			sql := "SELECT " + rollupAggs + " FROM " + table + " WHERE " + where
			var r aggRow
			err := a.each(gctx, "performance summary", sql, r.dest(), func() {})
			summary := r.stats(q.tf.span.Seconds())
			resp.Summary = &summary
			avg, p95 := 0.0, 0.0
			if summary.AvgMS != nil && summary.P95MS != nil {
				avg, p95 = *summary.AvgMS, *summary.P95MS
			}
			resp.AvgResponseTime, resp.P95ResponseTime = &avg, &p95
			return err
		})
		g.Go(func() error {
			top := []EndpointStats{}
			resp.SlowestEndpoints = &top
			if q.limit == 0 {
				return nil
			}
			sql := "SELECT service, endpoint, " + rollupAggs + " FROM (" + a.tiled(from, to, tiles, filter) + ")" +
				" GROUP BY service, endpoint ORDER BY q[2] DESC, service, endpoint LIMIT " + strconv.Itoa(q.limit)
			var svc, ep string
			var r aggRow
			return a.each(gctx, "slowest endpoints", sql, append([]any{&svc, &ep}, r.dest()...), func() {
				top = append(top, EndpointStats{Service: svc, Endpoint: ep, Stats: r.stats(q.tf.span.Seconds())})
			})
		})
	}
	if resources {
		g.Go(func() error {
			var err error
			resp.ResourceUsage, err = a.resourceSeries(gctx, from, to, w, q.fill)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return resp, nil
}

// fill returns points, sorted by time (ts) and each at the start of a
// bucket of width w in [from, to), with the point empty makes for each
// bucket they lack.
func fill[P any](points []P, ts func(P) time.Time, from, to time.Time, w time.Duration, empty func(time.Time) P) []P {
	out := make([]P, 0, int(to.Sub(from)/w))
	i := 0
	for t := from; t.Before(to); t = t.Add(w) {
		if i < len(points) && ts(points[i]).Equal(t) {
			out = append(out, points[i])
			i++
		} else {
			out = append(out, empty(t))
		}
	}
	return out
}

// resourceSeries is the average and maximum utilisation of each resource
// type per bucket of w seconds in [from, to), from the raw samples: every
// bucket when fill is set, else the buckets with samples.
func (a *API) resourceSeries(ctx context.Context, from, to time.Time, w int64, fillEmpty bool) ([]ResourceSeries, error) {
	index := map[string]int{}
	var out []ResourceSeries
	add := func(resource string) int {
		if i, ok := index[resource]; ok {
			return i
		}
		index[resource] = len(out)
		out = append(out, ResourceSeries{Resource: resource, Points: []ResourcePoint{}})
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
		if ts := time.Unix(int64(b), 0).UTC(); !ts.Before(from) && ts.Before(to) {
			s := &out[add(resource)]
			s.Points = append(s.Points, ResourcePoint{TS: ts, Samples: cnt, AvgUtilisation: num(avg), MaxUtilisation: num(mx)})
		}
	})
	if err != nil {
		return nil, err
	}
	if fillEmpty {
		for i := range out {
			out[i].Points = fill(out[i].Points, func(p ResourcePoint) time.Time { return p.TS }, from, to, time.Duration(w)*time.Second,
				func(ts time.Time) ResourcePoint { return ResourcePoint{TS: ts} })
		}
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
