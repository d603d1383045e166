package httpapi

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
)

// UnmatchedRoute is the route label of a request that matched no route
// (404, or 405 for a method the path does not serve): a fixed value, so
// that scanners probing random URLs cannot grow the label set.
const UnmatchedRoute = "unmatched"

// RequestMetrics returns middleware counting every answer of e by method,
// route and status, as
//
//	pulse_http_requests_total{method, route, status}
//	pulse_http_request_duration_seconds{method, route}
//
// registered on reg. The route is the template a request matched
// ("/api/admin/users/:user_id/metrics"), never its URL, and UnmatchedRoute
// when it matched none; methods other than the standard ones count as
// "other". Every answer counts: refusals by the guard (401, 403) and by
// rate limits (429), errors, and panics (as 500). Add it with e.Use after
// New; it answers a handler's error itself (through e's error handler) so
// that the status it counts is the one sent.
func RequestMetrics(reg prometheus.Registerer) (echo.MiddlewareFunc, error) {
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pulse_http_requests_total",
		Help: "HTTP answers by method, route template (\"" + UnmatchedRoute + "\" when no route matched) and status code.",
	}, []string{"method", "route", "status"})
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "pulse_http_request_duration_seconds",
		Help:    "Time from routing to the end of the handler, by method and route template.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 4, 9), // 0.5 ms .. 33 s
	}, []string{"method", "route"})
	if reg != nil {
		if err := reg.Register(requests); err != nil {
			return nil, err
		}
		if err := reg.Register(duration); err != nil {
			reg.Unregister(requests)
			return nil, err
		}
	}
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) (err error) {
			start := time.Now()
			observe := func(status int) {
				method, route := methodLabel(c.Request().Method), c.Path()
				if route == "" || errors.Is(err, echo.ErrNotFound) || errors.Is(err, echo.ErrMethodNotAllowed) {
					route = UnmatchedRoute
				}
				requests.WithLabelValues(method, route, strconv.Itoa(status)).Inc()
				duration.WithLabelValues(method, route).Observe(time.Since(start).Seconds())
			}
			defer func() {
				if r := recover(); r != nil {
					observe(http.StatusInternalServerError) // the recoverer answers 500
					panic(r)
				}
			}()
			err = next(c)
			if err != nil {
				c.Error(err)
			}
			observe(c.Response().Status)
			return nil
		}
	}, nil
}

// methodLabel bounds the method label to the standard methods.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return m
	}
	return "other"
}
