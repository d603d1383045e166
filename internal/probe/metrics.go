package probe

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/wedsync/pulse/internal/chstore"
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

// StoreMetrics computes Metrics from the raw requests table in ClickHouse.
//
// An auth request is one whose service is "auth" or whose endpoint starts
// with "/auth/" (Supabase's /auth/v1/...) or "/api/auth/" (the app's own
// auth routes). It failed when its status is 5xx (the auth service broke)
// or 429 (it refused to serve): a 401 or 403 is auth doing its job, a
// credential rejected, and is not a failure. The window is (now - window,
// now], at the table's one-second resolution.
type StoreMetrics struct {
	Store *chstore.Store
	Now   func() time.Time // default time.Now
}

// AuthEndpointPrefixes and AuthService select auth requests.
var (
	AuthEndpointPrefixes = []string{"/auth/", "/api/auth/"}
	AuthService          = "auth"
)

func (m StoreMetrics) window(window time.Duration) string {
	now := time.Now()
	if m.Now != nil {
		now = m.Now()
	}
	return "ts > " + chstore.DateTime(now.Add(-window)) + " AND ts <= " + chstore.DateTime(now)
}

// AuthFailureRate implements Metrics.
func (m StoreMetrics) AuthFailureRate(ctx context.Context, window time.Duration) (float64, uint64, error) {
	conds := []string{"service = " + chstore.Quote(AuthService)}
	for _, p := range AuthEndpointPrefixes {
		conds = append(conds, "endpoint LIKE "+chstore.Quote(p+"%"))
	}
	var n, failed uint64
	err := m.Store.QueryRow(ctx, "SELECT count(), countIf(status_code >= 500 OR status_code = 429) FROM "+m.Store.T("requests")+
		" WHERE "+m.window(window)+" AND ("+strings.Join(conds, " OR ")+")", &n, &failed)
	if err != nil {
		return 0, 0, fmt.Errorf("query auth failure rate: %w", err)
	}
	if n == 0 {
		return 0, 0, nil
	}
	return float64(failed) / float64(n), n, nil
}

// APIStats implements Metrics. P95 is exact (quantileExact), as the query
// API computes it.
func (m StoreMetrics) APIStats(ctx context.Context, window time.Duration) (p95, avgMS, errorRate, rps float64, count uint64, err error) {
	var n, e5 uint64
	var sum float64
	err = m.Store.QueryRow(ctx, "SELECT count(), countIf(status_code >= 500), sum(response_time_ms), quantileExact(0.95)(response_time_ms) FROM "+
		m.Store.T("requests")+" WHERE "+m.window(window), &n, &e5, &sum, &p95)
	if err != nil {
		return 0, 0, 0, 0, 0, fmt.Errorf("query api stats: %w", err)
	}
	if n == 0 || math.IsNaN(p95) {
		return 0, 0, 0, 0, 0, nil
	}
	return p95, sum / float64(n), float64(e5) / float64(n), float64(n) / window.Seconds(), n, nil
}
