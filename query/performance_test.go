package query_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wedsync/pulse/internal/event"
	"github.com/wedsync/pulse/internal/testenv"
	"github.com/wedsync/pulse/query"
)

// perfRoute is one (service, endpoint) of the dataset with its latency
// distribution (lognormal, median exp(mu)) and error shares.
type perfRoute struct {
	service, endpoint string
	mu                float64
	p4xx, p5xx        float64
}

// perfRoutes have P95s 40% apart, so that the slowest-endpoint ranking is
// the same from the latency histograms (within 0.75%) as from exact
// percentiles. Two services share /api/clients/:id.
func perfRoutes() []perfRoute {
	endpoints := []string{"/api/clients/:id", "/api/forms", "/api/forms/:id/submit", "/api/payments", "/api/messages", "/api/timeline",
		"/api/clients/:id", "/", "/api/search", "/api/reports", "/api/export", "/api/guests"}
	services := []string{"web", "api", "jobs"}
	var out []perfRoute
	for i, ep := range endpoints {
		out = append(out, perfRoute{
			service:  services[i%len(services)],
			endpoint: ep,
			mu:       math.Log(15 * math.Pow(1.4, float64(i))),
			p4xx:     0.02 + 0.01*float64(i%4),
			p5xx:     0.005 * float64(i%5),
		})
	}
	return out
}

const day = 24 * time.Hour

// perfRequests is the known dataset, relative to now: dense in the last
// hour, lighter over the last day, week and month, with dense hours, gaps
// that leave empty buckets, rows on every window's edges and rows older
// than every window. Latencies are multiples of 1/16 ms so that both
// backends store them exactly.
func perfRequests(now time.Time) []event.Request {
	r := rand.New(rand.NewPCG(20261127, 293))
	routes := perfRoutes()
	var out []event.Request
	add := func(ts time.Time) {
		rt := routes[r.IntN(len(routes))]
		ms := math.Round(math.Exp(rt.mu+0.7*r.NormFloat64())*16) / 16
		status := uint16(200)
		switch p := r.Float64(); {
		case p < rt.p5xx:
			status = []uint16{500, 502, 503, 599}[r.IntN(4)]
		case p < rt.p5xx+rt.p4xx:
			status = []uint16{400, 404, 429, 499}[r.IntN(4)]
		case p < 0.2:
			status = []uint16{201, 204, 302}[r.IntN(3)]
		}
		out = append(out, event.Request{Timestamp: ts, Service: rt.service, Endpoint: rt.endpoint, Method: "GET",
			StatusCode: status, ResponseTimeMS: ms, RequestID: fmt.Sprint(len(out))})
	}
	// spread adds n rows at now - an offset in (lo, hi], outside [gapLo, gapHi).
	spread := func(n int, lo, hi, gapLo, gapHi time.Duration) {
		for range n {
			for {
				off := lo + time.Duration(r.Int64N(int64((hi-lo)/time.Second))+1)*time.Second
				if off >= gapLo && off < gapHi {
					continue
				}
				add(now.Add(-off))
				break
			}
		}
	}
	// Dense hours are whole hours, so that 1-hour buckets hold them whole.
	hour := now.Sub(now.Truncate(time.Hour))
	spread(144_000, 0, time.Hour, 20*time.Minute, 25*time.Minute)
	spread(46_000, time.Hour, day, 5*time.Hour, 6*time.Hour)
	spread(30_000, day, 7*day, 2*day, 2*day+3*time.Hour)
	spread(12_000, 3*day+hour, 3*day+hour+time.Hour, 0, 0)
	spread(30_000, 7*day, 30*day, 10*day, 12*day)
	spread(12_000, 20*day+hour, 20*day+hour+time.Hour, 0, 0)
	spread(1_000, 31*day, 35*day, 0, 0)
	for _, tf := range []string{"1h", "24h", "7d", "30d"} {
		from, to := expectedWindow(tf, now)
		for range 5 {
			add(from)
			add(from.Add(-time.Second))
			add(to.Add(-time.Second))
			add(to)
		}
	}
	return out
}

// perfResources are utilisation samples of two hosts every 10 minutes over
// 31 days; network and connections have none.
func perfResources(now time.Time) []resourceRow {
	r := rand.New(rand.NewPCG(7, 11))
	var out []resourceRow
	for off := time.Duration(0); off < 31*day; off += 10 * time.Minute {
		for _, host := range []string{"app-1", "app-2"} {
			for _, res := range []string{"cpu", "memory", "disk"} {
				u := math.Round(r.Float64()*1024) / 1024
				name := ""
				if res == "disk" {
					name = "/"
				}
				out = append(out, resourceRow{ts: now.Add(-off - time.Duration(r.IntN(600))*time.Second), host: host, resource: res, name: name,
					used: u * 64, capacity: 64, utilisation: u})
			}
		}
	}
	return out
}

// expectedWindow is the documented window: timeframe long, ending at the
// end of the bucket holding now.
func expectedWindow(tf string, now time.Time) (from, to time.Time) {
	span, w := timeframeSpec(tf)
	end := (now.Unix()/int64(w/time.Second) + 1) * int64(w/time.Second)
	to = time.Unix(end, 0).UTC()
	return to.Add(-span), to
}

func timeframeSpec(tf string) (span, bucket time.Duration) {
	switch tf {
	case "1h":
		return time.Hour, time.Minute
	case "24h":
		return day, 5 * time.Minute
	case "7d":
		return 7 * day, time.Hour
	default:
		return 30 * day, time.Hour
	}
}

// agg is what the test computes from the dataset for a set of rows.
type agg struct {
	n, e4, e5 uint64
	sum, max  float64
	vals      []float64
}

func (a *agg) add(q event.Request) {
	a.n++
	switch {
	case q.StatusCode >= 500:
		a.e5++
	case q.StatusCode >= 400:
		a.e4++
	}
	a.sum += q.ResponseTimeMS
	a.max = max(a.max, q.ResponseTimeMS)
	a.vals = append(a.vals, q.ResponseTimeMS)
}

// quantileExact is ClickHouse's quantileExact: the element at index
// floor(level * n) of the sorted sample.
func quantileExact(sorted []float64, level float64) float64 {
	return sorted[min(int(level*float64(len(sorted))), len(sorted)-1)]
}

var levels = []float64{0.5, 0.95, 0.99}

// checkStats compares every figure of got with the rows of a over seconds.
// Counts, error rates and the maximum are exact; the average is exact but
// for the order of summation. Percentiles are exact when exact is set;
// otherwise (latency histograms) within 0.75%, whatever the sample's size:
// they come from the bin holding the exact percentile.
func checkStats(t *testing.T, what string, got query.Stats, a *agg, seconds float64, exact bool, acc *accuracy) {
	t.Helper()
	if got.Count != a.n || got.Errors4xx != a.e4 || got.Errors5xx != a.e5 {
		t.Errorf("%s: got count %d, 4xx %d, 5xx %d; want %d, %d, %d", what, got.Count, got.Errors4xx, got.Errors5xx, a.n, a.e4, a.e5)
	}
	if want := float64(a.n) / seconds; got.RequestsPerSecond != want {
		t.Errorf("%s: got requests_per_second %v; want %v", what, got.RequestsPerSecond, want)
	}
	figures := map[string]*float64{"avg_ms": got.AvgMS, "p50_ms": got.P50MS, "p95_ms": got.P95MS, "p99_ms": got.P99MS, "max_ms": got.MaxMS,
		"error_rate_4xx": got.ErrorRate4xx, "error_rate_5xx": got.ErrorRate5xx, "error_rate": got.ErrorRate}
	if a.n == 0 {
		for name, v := range figures {
			if v != nil {
				t.Errorf("%s: got %s %v for no requests; want null", what, name, *v)
			}
		}
		return
	}
	for name, v := range figures {
		if v == nil {
			t.Errorf("%s: got %s null; want a number (%d requests)", what, name, a.n)
			return
		}
	}
	if want := a.sum / float64(a.n); math.Abs(*got.AvgMS-want) > 1e-9*want {
		t.Errorf("%s: got avg_ms %v; want %v", what, *got.AvgMS, want)
	}
	if *got.MaxMS != a.max {
		t.Errorf("%s: got max_ms %v; want %v", what, *got.MaxMS, a.max)
	}
	if want := float64(a.e4) / float64(a.n); *got.ErrorRate4xx != want {
		t.Errorf("%s: got error_rate_4xx %v; want %v", what, *got.ErrorRate4xx, want)
	}
	if want := float64(a.e5) / float64(a.n); *got.ErrorRate5xx != want || *got.ErrorRate != want {
		t.Errorf("%s: got error_rate_5xx %v, error_rate %v; want both %v (error_rate is the 5xx share)", what, *got.ErrorRate5xx, *got.ErrorRate, want)
	}
	sorted := slices.Clone(a.vals)
	slices.Sort(sorted)
	for i, v := range []*float64{got.P50MS, got.P95MS, got.P99MS} {
		want := quantileExact(sorted, levels[i])
		switch {
		case exact:
			if *v != want {
				t.Errorf("%s: got P%g %v; want exactly %v (n=%d)", what, levels[i]*100, *v, want, a.n)
			}
		default:
			rel := (*v - want) / want
			acc.add(math.Abs(rel), fmt.Sprintf("%s P%g (n=%d)", what, levels[i]*100, a.n))
			if math.Abs(rel) > maxHistogramError {
				t.Errorf("%s: got P%g %v; want %v within 0.75%% (relative error %+.3f%%, n=%d)", what, levels[i]*100, *v, want, rel*100, a.n)
			}
		}
	}
}

// accuracy collects the relative errors of the rollup percentiles.
type accuracy struct {
	n      int
	maxRel float64
	worst  string
}

func (a *accuracy) add(rel float64, what string) {
	a.n++
	if rel > a.maxRel {
		a.maxRel, a.worst = rel, what
	}
}

// maxHistogramError bounds the relative error of a percentile read from a
// latency histogram: half a bin 1.5% wide (1.015^0.5 - 1), for any sample.
const maxHistogramError = 0.0075

type perfCase struct {
	params            url.Values
	service, endpoint string // the filters as the test applies them
	requests          bool   // request sections expected
	resources         bool   // resource_usage expected
}

func TestPerformance(t *testing.T) {
	now := testNow()
	reqs := perfRequests(now)
	res := perfResources(now)
	cases := []perfCase{
		{params: url.Values{"timeframe": {"1h"}}, requests: true, resources: true},
		{params: url.Values{"timeframe": {"1h"}, "fill": {"true"}}, requests: true, resources: true},
		{params: url.Values{}, requests: true, resources: true}, // 24h by default
		{params: url.Values{"fill": {"true"}, "limit": {"3"}}, requests: true, resources: true},
		{params: url.Values{"timeframe": {"7d"}, "fill": {"true"}, "limit": {"100"}}, requests: true, resources: true},
		{params: url.Values{"timeframe": {"30d"}}, requests: true, resources: true},
		{params: url.Values{"timeframe": {"30d"}, "fill": {"false"}, "limit": {"0"}}, requests: true, resources: true},
		{params: url.Values{"timeframe": {"24h"}, "service": {"web"}}, service: "web", requests: true},
		{params: url.Values{"timeframe": {"1h"}, "service": {"api"}, "endpoint": {"/api/forms/42/submit?draft=1"}},
			service: "api", endpoint: "/api/forms/:id/submit", requests: true},
		{params: url.Values{"timeframe": {"30d"}, "endpoint": {"/api/clients/9b2f0c1e-0000-4000-8000-00000000abcd"}},
			endpoint: "/api/clients/:id", requests: true},
		{params: url.Values{"timeframe": {"7d"}, "metric": {"resource_usage"}}, resources: true},
		{params: url.Values{"timeframe": {"1h"}, "metric": {"throughput"}}, requests: true},
		{params: url.Values{"timeframe": {"1h"}, "service": {"nobody"}}, service: "nobody", requests: true},
		{params: url.Values{"timeframe": {"30d"}, "service": {"nobody"}, "metric": {"error_rate"}}, service: "nobody", requests: true},
	}
	for name, s := range testenv.Backends(t) {
		t.Run(name, func(t *testing.T) {
			insertRequests(t, s, reqs)
			insertResources(t, s, res)
			if n := testenv.Count(t, s, "SELECT count() FROM "+s.T("requests")); n != uint64(len(reqs)) {
				t.Fatalf("stored %d requests; want %d", n, len(reqs))
			}
			e, _ := newServer(t, query.Config{Now: func() time.Time { return now }}, s, nil)
			var acc accuracy
			for _, tc := range cases {
				t.Run(tc.params.Encode(), func(t *testing.T) {
					var got query.PerformanceResponse
					getJSON(t, e, "/api/admin/system/performance?"+tc.params.Encode(), &got)
					checkPerformance(t, got, tc, reqs, res, now, &acc)
				})
			}
			// The compact answer: the summary alone, the same summary.
			var full, compact query.PerformanceResponse
			getJSON(t, e, "/api/admin/system/performance?timeframe=1h", &full)
			getJSON(t, e, "/api/admin/system/performance?timeframe=1h&series=false&limit=0", &compact)
			if compact.Series != nil || compact.SlowestEndpoints == nil || len(*compact.SlowestEndpoints) != 0 || compact.Summary == nil {
				t.Errorf("series=false&limit=0: got series %v, slowest %v, summary %v; want no series, no endpoints, a summary",
					compact.Series != nil, compact.SlowestEndpoints, compact.Summary != nil)
			} else if full.Summary == nil || !reflect.DeepEqual(*compact.Summary, *full.Summary) {
				t.Errorf("series=false summary %+v; want the full answer's %+v", *compact.Summary, full.Summary)
			}
			t.Logf("%d rollup percentiles held to 0.75%%: largest relative error %.3f%%, of %s", acc.n, acc.maxRel*100, acc.worst)
			// The bound was asserted on enough samples to mean something.
			if acc.n < 120 {
				t.Errorf("percentiles held to 0.75%% in only %d rollup figures; want at least 120", acc.n)
			}
		})
	}
}

// checkPerformance compares every figure of got with the dataset.
func checkPerformance(t *testing.T, got query.PerformanceResponse, tc perfCase, reqs []event.Request, res []resourceRow, now time.Time, acc *accuracy) {
	t.Helper()
	tf := tc.params.Get("timeframe")
	if tf == "" {
		tf = "24h"
	}
	span, bucket := timeframeSpec(tf)
	from, to := expectedWindow(tf, now)
	w := int64(bucket / time.Second)
	n := int(span / bucket)
	const raw = false // every timeframe reads a rollup
	wantSource, wantMethod := map[string]string{"1h": "rollup_1m", "24h": "rollup_5m", "7d": "rollup_1h", "30d": "rollup_1h"}[tf], "histogram"
	filled := tc.params.Get("fill") == "true"
	limit := 10
	if l := tc.params.Get("limit"); l != "" {
		limit, _ = strconv.Atoi(l)
	}
	if got.Filled != filled {
		t.Errorf("got filled %v; want %v", got.Filled, filled)
	}
	if got.Timeframe != tf || got.BucketSeconds != int(w) || !got.From.Equal(from) || !got.To.Equal(to) ||
		got.Metric != tc.params.Get("metric") || got.Service != tc.service || got.Endpoint != tc.endpoint {
		t.Errorf("got timeframe %q, bucket_seconds %d, from %v, to %v, metric %q, service %q, endpoint %q; want %q, %d, %v, %v, %q, %q, %q",
			got.Timeframe, got.BucketSeconds, got.From, got.To, got.Metric, got.Service, got.Endpoint,
			tf, w, from, to, tc.params.Get("metric"), tc.service, tc.endpoint)
	}
	if !now.After(got.From) || !now.Before(got.To) || got.To.Sub(got.From) != span {
		t.Errorf("got window [%v, %v); want %v long, holding now %v", got.From, got.To, span, now)
	}
	if !tc.requests {
		if got.Series != nil || got.Summary != nil || got.SlowestEndpoints != nil {
			t.Errorf("got request sections for metric=%s; want none", tc.params.Get("metric"))
		}
	} else {
		if got.Source != wantSource || got.PercentileMethod != wantMethod || got.ErrorRateDefinition != query.ErrorRateDefinition {
			t.Errorf("got source %q, percentile_method %q, error_rate_definition %q; want %q, %q, %q",
				got.Source, got.PercentileMethod, got.ErrorRateDefinition, wantSource, wantMethod, query.ErrorRateDefinition)
		}
		buckets := make([]agg, n)
		var total agg
		perRoute := map[[2]string]*agg{}
		for _, q := range reqs {
			if q.Timestamp.Before(from) || !q.Timestamp.Before(to) ||
				tc.service != "" && q.Service != tc.service || tc.endpoint != "" && q.Endpoint != tc.endpoint {
				continue
			}
			buckets[(q.Timestamp.Unix()-from.Unix())/w].add(q)
			total.add(q)
			k := [2]string{q.Service, q.Endpoint}
			if perRoute[k] == nil {
				perRoute[k] = &agg{}
			}
			perRoute[k].add(q)
		}
		// The buckets the series holds: every one when filled, else those
		// with requests.
		var want []int
		empty := 0
		for i := range buckets {
			if buckets[i].n == 0 {
				empty++
			}
			if filled || buckets[i].n > 0 {
				want = append(want, i)
			}
		}
		if tc.service == "" && tc.endpoint == "" && empty == 0 {
			t.Errorf("no empty bucket in the %s window; the dataset's gaps should leave some", tf)
		}
		if got.Series == nil {
			t.Fatal("got no series")
		}
		if len(*got.Series) != len(want) {
			t.Fatalf("got %d points; want %d (fill=%v, %d of %d buckets empty)", len(*got.Series), len(want), filled, empty, n)
		}
		for j, p := range *got.Series {
			i := want[j]
			if want := from.Add(time.Duration(i) * bucket); !p.TS.Equal(want) {
				t.Errorf("point %d: got ts %v; want %v", j, p.TS, want)
			}
			checkStats(t, fmt.Sprintf("point %d (%v)", j, p.TS), p.Stats, &buckets[i], float64(w), raw, acc)
		}
		if got.Summary == nil {
			t.Fatal("got no summary")
		}
		checkStats(t, "summary", *got.Summary, &total, span.Seconds(), raw, acc)
		// The slowest endpoints: top 10 by exact P95.
		type ranked struct {
			key [2]string
			p95 float64
		}
		var order []ranked
		for k, a := range perRoute {
			s := slices.Clone(a.vals)
			slices.Sort(s)
			order = append(order, ranked{k, quantileExact(s, 0.95)})
		}
		slices.SortFunc(order, func(x, y ranked) int {
			if x.p95 != y.p95 {
				if x.p95 > y.p95 {
					return -1
				}
				return 1
			}
			return strings.Compare(x.key[0]+"\x00"+x.key[1], y.key[0]+"\x00"+y.key[1])
		})
		if len(order) > limit {
			order = order[:limit]
		}
		if got.SlowestEndpoints == nil {
			t.Fatal("got no slowest_endpoints")
		}
		var gotKeys, wantKeys [][2]string
		for _, se := range *got.SlowestEndpoints {
			gotKeys = append(gotKeys, [2]string{se.Service, se.Endpoint})
		}
		for _, o := range order {
			wantKeys = append(wantKeys, o.key)
		}
		if !slices.Equal(gotKeys, wantKeys) {
			t.Errorf("got slowest endpoints %v; want %v", gotKeys, wantKeys)
		} else {
			for _, se := range *got.SlowestEndpoints {
				checkStats(t, "slowest "+se.Service+" "+se.Endpoint, se.Stats, perRoute[[2]string{se.Service, se.Endpoint}], span.Seconds(), raw, acc)
			}
		}
	}
	if !tc.resources {
		if got.ResourceUsage != nil {
			t.Errorf("got resource_usage for %s; want none", tc.params.Encode())
		}
		return
	}
	type ragg struct {
		n        uint64
		sum, max float64
	}
	want := map[string][]ragg{}
	for _, rt := range []string{"cpu", "memory", "disk", "network", "connections"} {
		want[rt] = make([]ragg, n)
	}
	for _, r := range res {
		if r.ts.Before(from) || !r.ts.Before(to) {
			continue
		}
		b := &want[r.resource][(r.ts.Unix()-from.Unix())/w]
		b.n++
		b.sum += r.utilisation
		b.max = max(b.max, r.utilisation)
	}
	var names []string
	for _, rs := range got.ResourceUsage {
		names = append(names, rs.Resource)
	}
	if wantNames := []string{"cpu", "memory", "disk", "network", "connections"}; !slices.Equal(names, wantNames) {
		t.Fatalf("got resource series %v; want %v", names, wantNames)
	}
	for _, rs := range got.ResourceUsage {
		var idx []int
		for i, b := range want[rs.Resource] {
			if filled || b.n > 0 {
				idx = append(idx, i)
			}
		}
		if len(rs.Points) != len(idx) || rs.Points == nil {
			t.Fatalf("%s: got %d points; want %d (fill=%v)", rs.Resource, len(rs.Points), len(idx), filled)
		}
		for j, p := range rs.Points {
			i := idx[j]
			wb := want[rs.Resource][i]
			what := fmt.Sprintf("%s point %d", rs.Resource, i)
			if wt := from.Add(time.Duration(i) * bucket); !p.TS.Equal(wt) || p.Samples != wb.n {
				t.Errorf("%s: got ts %v, %d samples; want %v, %d", what, p.TS, p.Samples, wt, wb.n)
				continue
			}
			if wb.n == 0 {
				if p.AvgUtilisation != nil || p.MaxUtilisation != nil {
					t.Errorf("%s: got figures for no samples; want null", what)
				}
				continue
			}
			if p.AvgUtilisation == nil || p.MaxUtilisation == nil {
				t.Errorf("%s: got null figures; want numbers", what)
				continue
			}
			if avg := wb.sum / float64(wb.n); math.Abs(*p.AvgUtilisation-avg) > 1e-9 || *p.MaxUtilisation != wb.max {
				t.Errorf("%s: got avg %v, max %v; want %v, %v", what, *p.AvgUtilisation, *p.MaxUtilisation, avg, wb.max)
			}
		}
	}
}
