package httpapi

import (
	"net/http"
	"testing"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wedsync/pulse/internal/auth"
	"github.com/wedsync/pulse/internal/testenv"
)

// TestRequestMetrics: every answer counts under its route template and
// status — guard refusals, a rate limit's 429, a panic's 500 — and URLs
// that match no route share one fixed label, whatever their path.
func TestRequestMetrics(t *testing.T) {
	s := newServer(t)
	reg := prometheus.NewRegistry()
	mw, err := RequestMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	s.e.Use(mw)
	limited := 0
	s.r.Use(auth.ScopeAdmin, func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if limited++; limited > 2 {
				return Errorf(http.StatusTooManyRequests, "rate_limited", "slow down")
			}
			return next(c)
		}
	})
	s.r.Handle(http.MethodGet, "/api/admin/users/:user_id", auth.ScopeAdmin, func(c echo.Context) error { return c.NoContent(http.StatusOK) })
	s.r.Handle(http.MethodGet, "/boom", Public, func(c echo.Context) error { panic("boom") })

	for i := range 5 {
		if rec := s.do(http.MethodGet, "/api/admin/users/"+string(rune('a'+i)), "Bearer "+adminToken); i >= 2 && rec.Code != http.StatusTooManyRequests {
			t.Fatalf("call %d = %d; want 429", i, rec.Code)
		}
	}
	s.do(http.MethodGet, "/api/admin/users/x", "")
	s.do(http.MethodGet, "/boom", "")
	for _, p := range []string{"/nope/1", "/nope/2", "/.env"} {
		s.do(http.MethodGet, p, "")
	}
	s.do(http.MethodPost, "/boom", "")
	s.do("BREW", "/boom", "")

	route := "/api/admin/users/:user_id"
	for _, c := range []struct {
		method, route, status string
		want                  float64
	}{
		{"GET", route, "200", 2},
		{"GET", route, "429", 3},
		{"GET", route, "401", 1},
		{"GET", "/boom", "500", 1},
		{"GET", UnmatchedRoute, "404", 3},
		{"POST", UnmatchedRoute, "405", 1},
		{"other", UnmatchedRoute, "405", 1},
	} {
		if got := testenv.Counter(t, reg, "pulse_http_requests_total", "method", c.method, "route", c.route, "status", c.status); got != c.want {
			t.Errorf("requests{%s %s %s} = %v; want %v", c.method, c.route, c.status, got, c.want)
		}
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "pulse_http_requests_total" && len(mf.GetMetric()) != 7 {
			t.Errorf("pulse_http_requests_total has %d series; want 7 (URLs must not become labels)", len(mf.GetMetric()))
		}
	}
	if _, err := RequestMetrics(reg); err == nil {
		t.Error("a second RequestMetrics on the same registry was accepted")
	}
}
