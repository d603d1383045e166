package probe

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/wedsync/pulse/internal/chstore"
	"github.com/wedsync/pulse/schema"
)

// Metrics gives the probes figures of the fleet's recent requests.
//
// AuthFailureRate returns, over the window ending now, the share of auth
// requests that failed and the number of auth requests (0 requests: rate
// 0). APIStats returns the P95 and average response time in milliseconds,
// the 5xx share, the requests per second and the request count of all
// requests in the window (0 requests: all figures 0).
type Metrics interface {
	AuthFailureRate(ctx context.Context, window time.Duration) (rate float64, count uint64, err error)
	APIStats(ctx context.Context, window time.Duration) (p95, avgMS, errorRate, rps float64, count uint64, err error)
}

// StoreMetrics computes Metrics from the requests in ClickHouse: APIStats
// from the request rollups (see APIStats), AuthFailureRate from raw
// requests.
//
// An auth request is one whose service is "auth" or whose endpoint starts
// with "/auth/" (Supabase's /auth/v1/...) or "/api/auth/" (the app's own
// auth routes). It failed when its status is 5xx (the auth service broke),
// 429 (it refused to serve), or 401 or 403: a failed login, which the
// spec's auth check counts (auth_audit_log's login_failed), since a burst
// of them is credential stuffing or a broken sign-in form. No rollup
// counts these statuses, so the auth figures read raw requests over (now - window, now], at the table's
// one-second resolution; the table's sort key (service, endpoint, ts)
// limits the read to the auth requests of the window (plus the granules
// around them), whatever the rest of the traffic.
type StoreMetrics struct {
	Store *chstore.Store
	Now   func() time.Time // default time.Now
}

// AuthEndpointPrefixes and AuthService select auth requests.
var (
	AuthEndpointPrefixes = []string{"/auth/", "/api/auth/"}
	AuthService          = "auth"
)

func (m StoreMetrics) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

func (m StoreMetrics) window(window time.Duration) string {
	now := m.now()
	return "ts > " + chstore.DateTime(now.Add(-window)) + " AND ts <= " + chstore.DateTime(now)
}

// AuthFailureRate implements Metrics.
func (m StoreMetrics) AuthFailureRate(ctx context.Context, window time.Duration) (float64, uint64, error) {
	conds := []string{"service = " + chstore.Quote(AuthService)}
	for _, p := range AuthEndpointPrefixes {
		conds = append(conds, "endpoint LIKE "+chstore.Quote(p+"%"))
	}
	var n, failed uint64
	err := m.Store.QueryRow(ctx, "SELECT count(), countIf(status_code >= 500 OR status_code IN (401, 403, 429)) FROM "+m.Store.T("requests")+
		" WHERE "+m.window(window)+" AND ("+strings.Join(conds, " OR ")+")", &n, &failed)
	if err != nil {
		return 0, 0, fmt.Errorf("query auth failure rate: %w", err)
	}
	if n == 0 {
		return 0, 0, nil
	}
	return float64(failed) / float64(n), n, nil
}

// RollupWindow is the shortest window whose API figures come from the
// request rollups rather than raw requests (see APIStats).
const RollupWindow = 5 * time.Minute

// APIStats implements Metrics. A window of RollupWindow or more reads the
// per-service rollups over the whole minutes holding its end
// (schema.RecentMinutes: the last 5 minutes at 12:03:20 are 11:59-12:04),
// merging a few states a service whatever the traffic; its rate divides by
// the time they cover up to now, and P95 is read from the latency
// histogram, within 0.75% of exact. A shorter window reads its raw
// requests, (now - window, now], with an exact P95 (quantileExact).
func (m StoreMetrics) APIStats(ctx context.Context, window time.Duration) (p95, avgMS, errorRate, rps float64, count uint64, err error) {
	var n, e5 uint64
	var sum, mx float64
	seconds := window.Seconds()
	if window >= RollupWindow {
		now := m.now()
		from, to := schema.RecentMinutes(now, window)
		seconds = now.Sub(from).Seconds()
		var bins []float64
		union := strings.Join(schema.TileSelects(m.Store.T, from, to,
			[]schema.Rollup{schema.Service1h, schema.Service5m, schema.Service1m}, "requests, errors_5xx, duration_sum, duration_max, latency", ""), " UNION ALL ")
		err = m.Store.QueryRow(ctx, "SELECT toUInt64(countMerge(requests)), toUInt64(sumMerge(errors_5xx)), sumMerge(duration_sum), maxMerge(duration_max), "+
			schema.LatencyQuantiles+" FROM ("+union+")", &n, &e5, &sum, &mx, &bins)
		if err == nil && len(bins) == 3 {
			// A bin's middle may lie above the largest request it holds.
			p95 = min(schema.LatencyMS(bins[1]), mx)
		}
	} else {
		err = m.Store.QueryRow(ctx, "SELECT count(), countIf(status_code >= 500), sum(response_time_ms), quantileExact(0.95)(response_time_ms) FROM "+
			m.Store.T("requests")+" WHERE "+m.window(window), &n, &e5, &sum, &p95)
	}
	if err != nil {
		return 0, 0, 0, 0, 0, fmt.Errorf("query api stats: %w", err)
	}
	if n == 0 || math.IsNaN(p95) {
		return 0, 0, 0, 0, 0, nil
	}
	return p95, sum / float64(n), float64(e5) / float64(n), float64(n) / seconds, n, nil
}
