package ratelimit

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/wedsync/pulse/internal/httpapi"
	"github.com/wedsync/pulse/internal/safeerr"
)

// Policy is what Middleware does with a request when its Limiter fails.
type Policy int

const (
	// Fallback decides with the fallback Limiter (in-process): still
	// limited, per process. Pulse's choice for every class.
	Fallback Policy = iota
	// FailOpen lets the request through unlimited, without RateLimit
	// headers.
	FailOpen
	// FailClosed answers 503 with Retry-After.
	FailClosed
)

func (p Policy) String() string {
	switch p {
	case Fallback:
		return "fallback"
	case FailOpen:
		return "fail_open"
	case FailClosed:
		return "fail_closed"
	}
	return "policy(" + strconv.Itoa(int(p)) + ")"
}

// RetryInterval is how long Middleware leaves a failed Limiter alone
// before asking it again; meanwhile its Policy decides.
const RetryInterval = 500 * time.Millisecond

// LogInterval is the least time between two log lines about a failing
// Limiter, per Middleware.
const LogInterval = time.Minute

// Response headers (draft-ietf-httpapi-ratelimit-headers-07), in seconds.
const (
	HeaderLimit     = "RateLimit-Limit"
	HeaderRemaining = "RateLimit-Remaining"
	HeaderReset     = "RateLimit-Reset"
	HeaderPolicy    = "RateLimit-Policy"
)

// Middleware limits the requests of each principal on the routes it wraps
// to limit, in buckets of their own for class (e.g. ClassAdmin). Use it
// through httpapi.Router.Use, after authentication: the key is the name of
// httpapi.PrincipalOf (on a route without a principal, the client's
// address). It sets the RateLimit-Limit, -Remaining, -Reset and -Policy
// headers on every response it lets through or refuses, and refuses with
// 429, code "rate_limited", and Retry-After: the seconds until a request
// is allowed again, which RateLimit-Reset then repeats (see reset).
//
// When l fails, onErr decides (see the package doc); fallback is the
// Limiter of Fallback and may be nil under the other policies. Failures
// are logged to log at most once per LogInterval, without the error text.
//
// Without Redis (make run), pass one Memory as both l and fallback: it
// never fails. One Memory may serve every class: keys hold the class.
//
// When reg is not nil, Middleware registers its counters on it, labelled
// with class (one Middleware per class and registry):
// pulse_ratelimit_refused_requests_total{class},
// pulse_ratelimit_limiter_errors_total{class} (failed calls to l) and
// pulse_ratelimit_policy_decisions_total{class,policy} (requests decided
// by onErr because l failed or is left alone after a failure).
//
// Middleware panics if l is nil, class is empty, limit is invalid, or
// onErr is Fallback without a fallback: a wiring mistake.
func Middleware(l Limiter, class string, limit Limit, fallback Limiter, onErr Policy, reg prometheus.Registerer, log zerolog.Logger) echo.MiddlewareFunc {
	if err := limit.Validate(); err != nil {
		panic("ratelimit.Middleware: " + err.Error())
	}
	if l == nil || class == "" || onErr < Fallback || onErr > FailClosed || (onErr == Fallback && fallback == nil) {
		panic(fmt.Sprintf("ratelimit.Middleware: need a limiter, a class and a known policy with its fallback (class %q, policy %s)", class, onErr))
	}
	m := newMiddleware(l, class, limit, fallback, onErr, log)
	m.register(reg)
	return m.handle
}

func newMiddleware(l Limiter, class string, limit Limit, fallback Limiter, onErr Policy, log zerolog.Logger) *middleware {
	return &middleware{
		l: l, fallback: fallback, class: class, limit: limit, policy: onErr,
		log:       log.With().Str("component", "ratelimit").Str("class", class).Logger(),
		policyHdr: fmt.Sprintf("%d;w=%d", limit.Requests, seconds(limit.Per)),
		outage:    safeerr.Outage{Retry: RetryInterval, LogEvery: LogInterval},
	}
}

type middleware struct {
	l, fallback Limiter
	class       string
	limit       Limit
	policy      Policy
	log         zerolog.Logger
	policyHdr   string
	outage      safeerr.Outage // of l: RetryInterval and LogInterval; tests shorten them

	refused  atomic.Uint64 // requests answered 429
	errors   atomic.Uint64 // failed calls to l
	byPolicy atomic.Uint64 // requests decided by policy
}

// register exports m's counters on reg, when not nil.
func (m *middleware) register(reg prometheus.Registerer) {
	if reg == nil {
		return
	}
	counter := func(name, help string, v *atomic.Uint64, labels prometheus.Labels) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels},
			func() float64 { return float64(v.Load()) })
	}
	class := prometheus.Labels{"class": m.class}
	reg.MustRegister(
		counter("pulse_ratelimit_refused_requests_total", "Requests refused with 429 by the rate limit of their class.", &m.refused, class),
		counter("pulse_ratelimit_limiter_errors_total", "Failed calls to the rate limiter (Redis); the policy decided those requests.", &m.errors, class),
		counter("pulse_ratelimit_policy_decisions_total",
			"Requests decided by the failure policy because the rate limiter failed or was left alone after a failure.",
			&m.byPolicy, prometheus.Labels{"class": m.class, "policy": m.policy.String()}),
	)
}

func (m *middleware) handle(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		key := m.class + ":" + principal(c)
		ctx := c.Request().Context()
		res, err := m.decide(ctx, key)
		if err != nil {
			return err
		}
		if res == nil { // FailOpen
			return next(c)
		}
		h := c.Response().Header()
		h.Set(HeaderLimit, strconv.Itoa(res.Limit))
		h.Set(HeaderRemaining, strconv.Itoa(res.Remaining))
		h.Set(HeaderReset, strconv.Itoa(seconds(m.reset(res))))
		h.Set(HeaderPolicy, m.policyHdr)
		if !res.Allowed {
			m.refused.Add(1)
			retry := m.reset(res)
			e := httpapi.Errorf(http.StatusTooManyRequests, "rate_limited",
				fmt.Sprintf("rate limit of %d requests per %s exceeded; retry in %d s", m.limit.Requests, m.limit.Per, seconds(retry)))
			e.RetryAfter = retry
			return e
		}
		return next(c)
	}
}

// reset is RateLimit-Reset: when no request is left (Remaining 0, and
// always on a 429), how long until the next one is allowed, which is also
// the 429's Retry-After (at least a second); otherwise how long until the
// whole quota is back.
func (m *middleware) reset(res *Result) time.Duration {
	switch {
	case !res.Allowed:
		return max(res.RetryAfter, time.Second)
	case res.Remaining == 0:
		// The bucket is full again after ResetAfter; one request fits once
		// it is an interval below the period.
		return max(res.ResetAfter-m.limit.Per+m.limit.Per/time.Duration(m.limit.Requests), 0)
	}
	return res.ResetAfter
}

// decide returns the decision on key, nil to let the request through
// undecided (FailOpen), or the error to answer with.
func (m *middleware) decide(ctx context.Context, key string) (*Result, error) {
	if m.outage.Usable() {
		res, err := m.l.Allow(ctx, key, m.limit)
		if err == nil {
			m.succeeded()
			return &res, nil
		}
		// A caller that hung up is no sign of a failing Redis.
		if ctx.Err() == nil {
			m.failed(err)
		}
	}
	m.byPolicy.Add(1)
	switch m.policy {
	case FailOpen:
		return nil, nil
	case FailClosed:
		return nil, httpapi.Unavailable("rate limiting is unavailable; retry shortly", time.Second)
	}
	res, err := m.fallback.Allow(ctx, key, m.limit)
	if err != nil {
		return nil, fmt.Errorf("fallback rate limiter for %s: %w", m.class, err)
	}
	return &res, nil
}

func (m *middleware) failed(err error) {
	m.errors.Add(1)
	if log, n := m.outage.Failed(); log {
		m.log.Warn().Str("kind", errorKind(err)).Int("failures", n).Stringer("policy", m.policy).
			Msg("rate limiter failing; deciding by policy until it answers")
	}
}

func (m *middleware) succeeded() {
	if log, n := m.outage.Succeeded(); log {
		m.log.Info().Int("failures_since_last_line", n).Msg("rate limiter answering again")
	}
}

// principal is the bucket's owner: the authenticated principal, or the
// connection's address on a route without one (a wiring mistake, but
// still limited, and never by a spoofable header).
func principal(c echo.Context) string {
	if p, ok := httpapi.PrincipalOf(c); ok {
		return p.Name
	}
	host, _, err := net.SplitHostPort(c.Request().RemoteAddr)
	if err != nil {
		host = c.Request().RemoteAddr
	}
	return "addr:" + host
}

// seconds rounds d up to whole seconds.
func seconds(d time.Duration) int {
	return int((d + time.Second - 1) / time.Second)
}
