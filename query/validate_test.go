package query_test

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/wedsync/pulse/internal/httpapi"
	"github.com/wedsync/pulse/internal/testenv"
	"github.com/wedsync/pulse/query"
)

// TestBadInput: every bad parameter is a 400 naming it, before any query
// (the API has no store here: reaching one would panic and answer 500).
func TestBadInput(t *testing.T) {
	e, _ := newServer(t, query.Config{}, nil, nil)
	long := strings.Repeat("a", 65)
	tests := []struct {
		target string
		fields []string
	}{
		{"/api/admin/system/performance?timeframe=2h", []string{"timeframe"}},
		{"/api/admin/system/performance?timeframe=", []string{"timeframe"}},
		{"/api/admin/system/performance?timeframe=1H", []string{"timeframe"}},
		{"/api/admin/system/performance?timeframe=1h&timeframe=24h", []string{"timeframe"}},
		{"/api/admin/system/performance?metric=latency", []string{"metric"}},
		{"/api/admin/system/performance?metric=", []string{"metric"}},
		{"/api/admin/system/performance?service=Web", []string{"service"}},
		{"/api/admin/system/performance?service=-web", []string{"service"}},
		{"/api/admin/system/performance?service=" + long, []string{"service"}},
		{"/api/admin/system/performance?service=web.api", []string{"service"}},
		{"/api/admin/system/performance?endpoint=/" + strings.Repeat("x", 512), []string{"endpoint"}},
		{"/api/admin/system/performance?endpoint=/api%00", []string{"endpoint"}},
		{"/api/admin/system/performance?endpoint=/api%ff", []string{"endpoint"}},
		{"/api/admin/system/performance?metric=resource_usage&service=web", []string{"service"}},
		{"/api/admin/system/performance?metric=resource_usage&endpoint=/x", []string{"endpoint"}},
		{"/api/admin/system/performance?foo=1", []string{"foo"}},
		{"/api/admin/system/performance?Timeframe=1h&page=5", []string{"Timeframe", "page"}},
		{"/api/admin/system/performance?limit=101", []string{"limit"}},
		{"/api/admin/system/performance?limit=-1", []string{"limit"}},
		{"/api/admin/system/performance?limit=ten", []string{"limit"}},
		{"/api/admin/system/performance?fill=yes", []string{"fill"}},
		{"/api/admin/system/performance?fill=true&fill=false", []string{"fill"}},
		{"/api/admin/system/performance?timeframe=%zz", []string{"query"}},
		{"/api/admin/system/performance?%01x%ff=1", []string{"?x?"}},
		{"/api/admin/system/performance?" + strings.Repeat("p", 100) + "=1", []string{strings.Repeat("p", 64)}},
		{"/api/admin/system/performance?timeframe=1y&metric=x&service=A&bogus=", []string{"bogus", "timeframe", "metric", "service"}},
		{"/api/admin/system/resources?resource_type=gpu", []string{"resource_type"}},
		{"/api/admin/system/resources?resource_type=", []string{"resource_type"}},
		{"/api/admin/system/resources?alert_threshold=1.5", []string{"alert_threshold"}},
		{"/api/admin/system/resources?alert_threshold=-0.1", []string{"alert_threshold"}},
		{"/api/admin/system/resources?alert_threshold=+0.5", []string{"alert_threshold"}},
		{"/api/admin/system/resources?alert_threshold=abc", []string{"alert_threshold"}},
		{"/api/admin/system/resources?alert_threshold=NaN", []string{"alert_threshold"}},
		{"/api/admin/system/resources?alert_threshold=Inf", []string{"alert_threshold"}},
		{"/api/admin/system/resources?alert_threshold=0x1p-1", []string{"alert_threshold"}},
		{"/api/admin/system/resources?alert_threshold=1e5", []string{"alert_threshold"}},
		{"/api/admin/system/resources?alert_threshold=0.5%25", []string{"alert_threshold"}},
		{"/api/admin/system/resources?alert_threshold=", []string{"alert_threshold"}},
		{"/api/admin/system/resources?alert_threshold=0.1&alert_threshold=0.2", []string{"alert_threshold"}},
		{"/api/admin/system/resources?host=app-1", []string{"host"}},
		{"/api/admin/system/health?component=cache", []string{"component"}},
		{"/api/admin/system/health?component=external_service", []string{"component"}},
		{"/api/admin/system/health?detailed=yes", []string{"detailed"}},
		{"/api/admin/system/health?detailed=1", []string{"detailed"}},
		{"/api/admin/system/health?detailed=", []string{"detailed"}},
		{"/api/admin/system/health?timeframe=2h", []string{"timeframe"}},
		{"/api/admin/system/health?timeframe=", []string{"timeframe"}},
		{"/api/admin/system/health?component=db&detailed=TRUE", []string{"component", "detailed"}},
	}
	for _, tt := range tests {
		t.Run(tt.target, func(t *testing.T) {
			testenv.WantFieldErrors(t, testenv.Get(t, e, tt.target, adminToken), tt.fields...)
		})
	}
}

// TestAuth: every route is for admins only.
func TestAuth(t *testing.T) {
	e, _ := newServer(t, query.Config{}, nil, nil)
	for _, route := range e.Routes() {
		for _, tc := range []struct {
			token string
			want  int
		}{{"", http.StatusUnauthorized}, {"not-a-known-token-at-all", http.StatusUnauthorized}, {ingestToken, http.StatusForbidden}} {
			if r := testenv.Get(t, e, route.Path, tc.token); r.Status != tc.want {
				t.Errorf("%s %s with token %q: got %d; want %d", route.Method, route.Path, tc.token, r.Status, tc.want)
			}
		}
	}
	if n := len(e.Routes()); n != 3 {
		t.Errorf("got %d routes; want 3", n)
	}
}

// TestGoodThresholds: the accepted spellings of alert_threshold.
func TestGoodThresholds(t *testing.T) {
	s := testenv.ChDB(t)
	e, _ := newServer(t, query.Config{}, s, nil)
	for v, want := range map[string]float64{"0": 0, "1": 1, "0.5": 0.5, ".25": 0.25, "1.0": 1, "5e-1": 0.5, "0.": 0, "": 0.8} {
		target := "/api/admin/system/resources?alert_threshold=" + v
		if v == "" {
			target = "/api/admin/system/resources"
		}
		var got query.ResourcesResponse
		getJSON(t, e, target, &got)
		if got.AlertThreshold != want {
			t.Errorf("%s: got alert_threshold %v; want %v", target, got.AlertThreshold, want)
		}
	}
}

// TestUnavailable: when ClickHouse is down, or slower than the query
// timeout, every route answers 503 with Retry-After, without internals,
// within its timeout.
func TestUnavailable(t *testing.T) {
	srv := testenv.StartClickHouseServer(t)
	s := openStore(t, srv.DSN("pulse_unavailable"))
	stopped, _ := newServer(t, query.Config{QueryTimeout: 3 * time.Second, RetryAfter: 7 * time.Second}, s, newMemCache(time.Now))
	srv.Stop()
	// A timeout shorter than any query, on backends that are up.
	slow, _ := newServer(t, query.Config{QueryTimeout: time.Nanosecond}, testenv.ChDB(t), nil)
	slowServer, _ := newServer(t, query.Config{QueryTimeout: time.Nanosecond}, testenv.ClickHouse(t), nil)
	targets := []string{
		"/api/admin/system/performance?timeframe=1h",
		"/api/admin/system/performance?timeframe=30d",
		"/api/admin/system/performance?metric=resource_usage",
		"/api/admin/system/resources",
		"/api/admin/system/health",
		"/api/admin/system/health?component=database&detailed=true",
	}
	for name, tc := range map[string]struct {
		e          *echo.Echo
		retryAfter string
	}{"stopped": {stopped, "7"}, "timeout-chdb": {slow, "5"}, "timeout-server": {slowServer, "5"}} {
		for _, target := range targets {
			t.Run(name+target, func(t *testing.T) {
				start := time.Now()
				r := testenv.Get(t, tc.e, target, adminToken)
				if took := time.Since(start); took > 5*time.Second {
					t.Errorf("took %v; want the answer within the query timeout", took)
				}
				if r.Status != http.StatusServiceUnavailable || r.Header.Get("Retry-After") != tc.retryAfter {
					t.Fatalf("got status %d, Retry-After %q, body %s; want 503, %s", r.Status, r.Header.Get("Retry-After"), r.Body, tc.retryAfter)
				}
				var body httpapi.ErrorBody
				if err := json.Unmarshal(r.Body, &body); err != nil || body.Error != "unavailable" {
					t.Errorf("got body %s; want error unavailable", r.Body)
				}
				for _, internal := range []string{"127.0.0.1", strconv.Itoa(srv.Port), "dial", "clickhouse://", "context deadline", "SELECT"} {
					if strings.Contains(string(r.Body), internal) {
						t.Errorf("the answer holds %q: %s", internal, r.Body)
					}
				}
			})
		}
	}
	// Once ClickHouse is back, so are the answers.
	srv.Start()
	testenv.Eventually(t, 10*time.Second, "answers after ClickHouse restarted", func() bool {
		return testenv.Get(t, stopped, "/api/admin/system/resources", adminToken).Status == http.StatusOK
	})
}
