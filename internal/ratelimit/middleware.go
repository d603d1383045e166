package ratelimit

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/rs/zerolog"

	"github.com/wedsync/pulse/internal/httpapi"
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
// 429, code "rate_limited", and Retry-After.
//
// When l fails, onErr decides (see the package doc); fallback is the
// Limiter of Fallback and may be nil under the other policies. Failures
// are logged to log at most once per LogInterval, without the error text.
//
// Without Redis (make run), pass one Memory as both l and fallback: it
// never fails. One Memory may serve every class: keys hold the class.
//
// Middleware panics if l is nil, class is empty, limit is invalid, or
// onErr is Fallback without a fallback: a wiring mistake.
func Middleware(l Limiter, class string, limit Limit, fallback Limiter, onErr Policy, log zerolog.Logger) echo.MiddlewareFunc {
	if err := limit.Validate(); err != nil {
		panic("ratelimit.Middleware: " + err.Error())
	}
	if l == nil || class == "" || onErr < Fallback || onErr > FailClosed || (onErr == Fallback && fallback == nil) {
		panic(fmt.Sprintf("ratelimit.Middleware: need a limiter, a class and a known policy with its fallback (class %q, policy %s)", class, onErr))
	}
	return newMiddleware(l, class, limit, fallback, onErr, log).handle
}

func newMiddleware(l Limiter, class string, limit Limit, fallback Limiter, onErr Policy, log zerolog.Logger) *middleware {
	return &middleware{
		l: l, fallback: fallback, class: class, limit: limit, policy: onErr,
		log:        log.With().Str("component", "ratelimit").Str("class", class).Logger(),
		policyHdr:  fmt.Sprintf("%d;w=%d", limit.Requests, seconds(limit.Per)),
		retryEvery: RetryInterval,
		logEvery:   LogInterval,
	}
}

type middleware struct {
	l, fallback Limiter
	class       string
	limit       Limit
	policy      Policy
	log         zerolog.Logger
	policyHdr   string
	retryEvery  time.Duration // RetryInterval; tests shorten it
	logEvery    time.Duration // LogInterval; tests shorten it

	failing atomic.Bool // l failed and has not answered since

	mu         sync.Mutex
	retryAt    time.Time // while failing and now is before, l is not asked
	lastLog    time.Time
	reported   bool // a failure was logged and its recovery not yet
	unreported int  // failures since the last log line
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
		h.Set(HeaderReset, strconv.Itoa(seconds(res.ResetAfter)))
		h.Set(HeaderPolicy, m.policyHdr)
		if !res.Allowed {
			retry := max(res.RetryAfter, time.Second)
			e := httpapi.Errorf(http.StatusTooManyRequests, "rate_limited",
				fmt.Sprintf("rate limit of %d requests per %s exceeded; retry in %d s", m.limit.Requests, m.limit.Per, seconds(retry)))
			e.RetryAfter = retry
			return e
		}
		return next(c)
	}
}

// decide returns the decision on key, nil to let the request through
// undecided (FailOpen), or the error to answer with.
func (m *middleware) decide(ctx context.Context, key string) (*Result, error) {
	if m.primaryUsable() {
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

func (m *middleware) primaryUsable() bool {
	if !m.failing.Load() {
		return true
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return !time.Now().Before(m.retryAt)
}

func (m *middleware) failed(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	m.failing.Store(true)
	m.retryAt = now.Add(m.retryEvery)
	m.unreported++
	if !m.lastLog.IsZero() && now.Sub(m.lastLog) < m.logEvery {
		return
	}
	m.log.Warn().Str("kind", errorKind(err)).Int("failures", m.unreported).Stringer("policy", m.policy).
		Msg("rate limiter failing; deciding by policy until it answers")
	m.lastLog, m.reported, m.unreported = now, true, 0
}

func (m *middleware) succeeded() {
	if !m.failing.Load() {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.failing.Load() {
		return
	}
	m.failing.Store(false)
	// Logged only after a logged failure, so a flapping Redis logs no more
	// than one pair of lines per LogInterval.
	if m.reported {
		m.log.Info().Int("failures_since_last_line", m.unreported).Msg("rate limiter answering again")
		m.reported = false
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
