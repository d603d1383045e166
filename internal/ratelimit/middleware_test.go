package ratelimit

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/wedsync/pulse/internal/auth"
	"github.com/wedsync/pulse/internal/httpapi"
	"github.com/wedsync/pulse/internal/testenv"
)

const (
	opsToken  = "Bearer admin-token-0123456789"
	ops2Token = "Bearer admin2-token-0123456789"
	webToken  = "Bearer ingest-token-0123456789"
)

// api is an echo server with an admin read route and an ingest route,
// each rate limited by its own middleware, counting handler calls.
type api struct {
	e     *echo.Echo
	r     *httpapi.Router
	calls int
	log   *testenv.LogBuffer
}

func newAPI(t *testing.T) *api {
	t.Helper()
	var s auth.StaticTokens
	s.Add("admin-token-0123456789", auth.Principal{Name: "ops", Scopes: []auth.Scope{auth.ScopeAdmin}})
	s.Add("admin2-token-0123456789", auth.Principal{Name: "ops2", Scopes: []auth.Scope{auth.ScopeAdmin}})
	s.Add("ingest-token-0123456789", auth.Principal{Name: "web", Scopes: []auth.Scope{auth.ScopeIngest}})
	a := &api{log: &testenv.LogBuffer{}}
	a.e = httpapi.New(zerolog.New(a.log))
	a.r = httpapi.NewRouter(a.e, &s)
	h := func(c echo.Context) error {
		a.calls++
		return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
	}
	a.r.Handle(http.MethodGet, "/api/admin/system/health", auth.ScopeAdmin, h)
	a.r.Handle(http.MethodPost, "/api/admin/system/metrics", auth.ScopeIngest, h)
	a.r.Handle(http.MethodGet, "/public", httpapi.Public, h)
	return a
}

func (a *api) do(method, path, authorization string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, nil)
	if authorization != "" {
		req.Header.Set(echo.HeaderAuthorization, authorization)
	}
	rec := httptest.NewRecorder()
	a.e.ServeHTTP(rec, req)
	return rec
}

func (a *api) health(authorization string) *httptest.ResponseRecorder {
	return a.do(http.MethodGet, "/api/admin/system/health", authorization)
}

// checkHeaders checks the RateLimit headers of rec.
func checkHeaders(t *testing.T, rec *httptest.ResponseRecorder, limit, remaining int) {
	t.Helper()
	h := rec.Header()
	if got := h.Get(HeaderLimit); got != strconv.Itoa(limit) {
		t.Errorf("%s = %q; want %d", HeaderLimit, got, limit)
	}
	if got := h.Get(HeaderRemaining); got != strconv.Itoa(remaining) {
		t.Errorf("%s = %q; want %d", HeaderRemaining, got, remaining)
	}
	if reset, err := strconv.Atoi(h.Get(HeaderReset)); err != nil || reset < 1 {
		t.Errorf("%s = %q; want whole seconds >= 1", HeaderReset, h.Get(HeaderReset))
	}
	if h.Get(HeaderPolicy) == "" {
		t.Errorf("no %s header", HeaderPolicy)
	}
}

func TestMiddlewareAdminAndIngest(t *testing.T) {
	c := sharedClient(t)
	r := newRedisLimiter(t, c, testPrefix(t, c))
	a := newAPI(t)
	mem := NewMemory()
	a.r.Use(auth.ScopeAdmin, Middleware(r, ClassAdmin, DefaultAdmin, mem, Fallback, nil, zerolog.Nop()))
	a.r.Use(auth.ScopeIngest, Middleware(r, ClassIngest, DefaultIngest, mem, Fallback, nil, zerolog.Nop()))

	for i := range 60 {
		rec := a.health(opsToken)
		if rec.Code != http.StatusOK {
			t.Fatalf("admin request %d: %d %s; want 200", i+1, rec.Code, rec.Body)
		}
		checkHeaders(t, rec, 60, 59-i)
		if got := rec.Header().Get(HeaderReset); i == 59 && got != "1" {
			t.Errorf("last allowed request: %s = %q; want 1 (no request left, the next in a second)", HeaderReset, got)
		}
	}
	rec := a.health(opsToken)
	if rec.Code != http.StatusTooManyRequests {
		t.Fatalf("admin request 61: %d %s; want 429", rec.Code, rec.Body)
	}
	checkHeaders(t, rec, 60, 0)
	if got := rec.Header().Get("Retry-After"); got != "1" { // one request a second comes back
		t.Errorf("Retry-After = %q; want 1", got)
	}
	// RateLimit-Reset agrees with Retry-After: no request is left, and the
	// next one is allowed in a second.
	if got := rec.Header().Get(HeaderReset); got != "1" {
		t.Errorf("%s = %q; want 1, as Retry-After", HeaderReset, got)
	}
	if got := rec.Header().Get(HeaderPolicy); got != "60;w=60" {
		t.Errorf("%s = %q; want 60;w=60", HeaderPolicy, got)
	}
	var body httpapi.ErrorBody
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body.Error != "rate_limited" || body.Message == "" {
		t.Errorf("429 body %q: want an ErrorBody with code rate_limited", rec.Body)
	}
	if a.calls != 60 {
		t.Errorf("handler called %d times; want 60 (not for the refused request)", a.calls)
	}

	// Another principal has a bucket of its own.
	rec = a.health(ops2Token)
	if rec.Code != http.StatusOK {
		t.Fatalf("ops2: %d; want 200", rec.Code)
	}
	checkHeaders(t, rec, 60, 59)
	// The ingest class has its own limit and buckets, even for ops.
	rec = a.do(http.MethodPost, "/api/admin/system/metrics", opsToken)
	if rec.Code != http.StatusOK {
		t.Fatalf("ops on ingest: %d; want 200", rec.Code)
	}
	checkHeaders(t, rec, 6000, 5999)
	rec = a.do(http.MethodPost, "/api/admin/system/metrics", webToken)
	checkHeaders(t, rec, 6000, 5999)
	// Requests stopped by the guard are not counted and get no headers.
	rec = a.health(webToken)
	if rec.Code != http.StatusForbidden || rec.Header().Get(HeaderLimit) != "" {
		t.Errorf("ingest token on admin route: %d with %s %q; want 403 without headers", rec.Code, HeaderLimit, rec.Header().Get(HeaderLimit))
	}
	// Nothing was decided in process: Redis was up throughout.
	if n := mem.Len(); n != 0 {
		t.Errorf("fallback limiter holds %d buckets; want 0", n)
	}
}

// TestMiddlewareRefill checks that a refused principal is let in again
// once its window allows, on a 1-second limit.
func TestMiddlewareRefill(t *testing.T) {
	c := sharedClient(t)
	r := newRedisLimiter(t, c, testPrefix(t, c))
	a := newAPI(t)
	a.r.Use(auth.ScopeAdmin, Middleware(r, ClassAdmin, Limit{Requests: 3, Per: time.Second}, NewMemory(), Fallback, nil, zerolog.Nop()))
	for range 3 {
		if rec := a.health(opsToken); rec.Code != http.StatusOK {
			t.Fatalf("got %d; want 200", rec.Code)
		}
	}
	if rec := a.health(opsToken); rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") != "1" {
		t.Fatalf("request 4: %d, Retry-After %q; want 429, 1", rec.Code, rec.Header().Get("Retry-After"))
	}
	testenv.Eventually(t, 2*time.Second, "ops let in again", func() bool {
		return a.health(opsToken).Code == http.StatusOK
	})
}

// outage is an API limited through a private Redis that the test kills,
// pauses and restarts.
type outage struct {
	*api
	srv    *testenv.RedisServer
	client *redis.Client
	key    string // ops's admin bucket in Redis
}

func newOutage(t *testing.T, policy Policy, limit Limit) (*outage, *middleware) {
	t.Helper()
	srv := startRedisServer(t)
	client := srv.Client()
	r := newRedisLimiter(t, client, "pulse:rl:")
	a := newAPI(t)
	m := newMiddleware(r, ClassAdmin, limit, NewMemory(), policy, zerolog.New(a.log))
	a.r.Use(auth.ScopeAdmin, m.handle)
	return &outage{api: a, srv: srv, client: client, key: "pulse:rl:admin:ops"}, m
}

// redisUsed reports whether ops's bucket is in Redis.
func (o *outage) redisUsed() bool {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return o.client.Exists(ctx, o.key).Val() == 1
}

// bucket is ops's bucket in Redis ("" when absent).
func (o *outage) bucket() string {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return o.client.Get(ctx, o.key).Val()
}

// timedHealth makes a request as ops and fails the test if it took longer
// than within or was answered 5xx.
func (o *outage) timedHealth(t *testing.T, within time.Duration) *httptest.ResponseRecorder {
	t.Helper()
	start := time.Now()
	rec := o.health(opsToken)
	if d := time.Since(start); d > within {
		t.Errorf("request took %s; want at most %s", d, within)
	}
	if rec.Code >= 500 {
		t.Fatalf("got %d %s; want no 5xx", rec.Code, rec.Body)
	}
	return rec
}

// TestMiddlewareRedisKilled walks an outage under Fallback: Redis killed
// mid-test, requests still answered by the in-process limiter (never
// 500, never unlimited, quickly), one log line, then Redis back and used
// again.
func TestMiddlewareRedisKilled(t *testing.T) {
	o, _ := newOutage(t, Fallback, Limit{Requests: 5, Per: time.Minute})
	for i := range 2 {
		checkHeaders(t, o.timedHealth(t, time.Second), 5, 4-i)
	}
	if !o.redisUsed() {
		t.Fatal("ops's bucket is not in Redis")
	}

	o.srv.Stop()
	// The in-process buckets start full: 5 more allowed, then refused.
	for i := range 8 {
		rec := o.timedHealth(t, 200*time.Millisecond)
		if i < 5 {
			if rec.Code != http.StatusOK {
				t.Fatalf("outage request %d: %d; want 200 from the fallback", i+1, rec.Code)
			}
			checkHeaders(t, rec, 5, 4-i)
			continue
		}
		if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") == "" {
			t.Fatalf("outage request %d: %d; want 429 with Retry-After from the fallback", i+1, rec.Code)
		}
	}
	warn := o.log.Lines("rate limiter failing")
	if len(warn) != 1 {
		t.Fatalf("log has %d failure lines; want 1:\n%s", len(warn), strings.Join(warn, "\n"))
	}
	// go-redis retries refused dials in the background, so the call
	// usually ends at its own timeout.
	if !strings.Contains(warn[0], `"kind":"connection_refused"`) && !strings.Contains(warn[0], `"kind":"timeout"`) ||
		!strings.Contains(warn[0], `"class":"admin"`) {
		t.Errorf("failure line %s; want kind connection_refused or timeout, and class admin", warn[0])
	}
	if strings.Contains(warn[0], o.srv.Addr()) || strings.Contains(warn[0], o.srv.Addr()[strings.LastIndex(o.srv.Addr(), ":")+1:]) {
		t.Errorf("failure line %s shows Redis's address", warn[0])
	}

	o.srv.Start() // empty: no persistence
	testenv.Eventually(t, 3*time.Second, "Redis used again", func() bool {
		o.timedHealth(t, 200*time.Millisecond)
		return o.redisUsed()
	})
	if got := len(o.log.Lines("rate limiter answering again")); got != 1 {
		t.Errorf("log has %d recovery lines; want 1", got)
	}
	// Redis decides again: ops's fresh Redis bucket has one request in it.
	rec := o.timedHealth(t, time.Second)
	if rec.Code != http.StatusOK {
		t.Fatalf("after recovery: %d; want 200", rec.Code)
	}
	checkHeaders(t, rec, 5, 3)
}

// TestMiddlewareMetrics checks that the counters a scrape shows move: a
// refused request, then with Redis killed the failed call and the
// requests the policy decided. Two classes share one registry.
func TestMiddlewareMetrics(t *testing.T) {
	o, m := newOutage(t, Fallback, Limit{Requests: 2, Per: time.Minute})
	reg := prometheus.NewRegistry()
	m.register(reg)
	Middleware(NewMemory(), ClassIngest, DefaultIngest, NewMemory(), Fallback, reg, zerolog.Nop())
	counter := func(name string, labels ...string) float64 {
		t.Helper()
		return testenv.Counter(t, reg, name, append([]string{"class", ClassAdmin}, labels...)...)
	}
	for range 3 {
		o.timedHealth(t, time.Second)
	}
	if got := counter("pulse_ratelimit_refused_requests_total"); got != 1 {
		t.Errorf("refused after 3 requests on a limit of 2: %v; want 1", got)
	}
	if got := counter("pulse_ratelimit_policy_decisions_total", "policy", "fallback"); got != 0 {
		t.Errorf("policy decisions with Redis up: %v; want 0", got)
	}

	m.outage.Retry = time.Hour // one failed call, however slow the machine
	o.srv.Stop()
	for range 3 {
		o.timedHealth(t, 200*time.Millisecond)
	}
	if got := counter("pulse_ratelimit_limiter_errors_total"); got != 1 {
		t.Errorf("limiter errors: %v; want 1 (Redis left alone after it)", got)
	}
	if got := counter("pulse_ratelimit_policy_decisions_total", "policy", "fallback"); got != 3 {
		t.Errorf("policy decisions with Redis down: %v; want 3", got)
	}
	if got := counter("pulse_ratelimit_refused_requests_total"); got != 2 {
		t.Errorf("refused: %v; want 2 (the fallback's fresh bucket allows 2 of 3)", got)
	}
	if got := testenv.Counter(t, reg, "pulse_ratelimit_limiter_errors_total", "class", ClassIngest); got != 0 {
		t.Errorf("ingest limiter errors: %v; want 0", got)
	}
}

// TestMiddlewareRedisHangs checks that a Redis that accepts connections
// but never answers delays a request by no more than the call timeout.
func TestMiddlewareRedisHangs(t *testing.T) {
	o, _ := newOutage(t, Fallback, Limit{Requests: 100, Per: time.Minute})
	checkHeaders(t, o.timedHealth(t, time.Second), 100, 99)
	o.srv.Pause()
	resumed := false
	defer func() {
		if !resumed {
			o.srv.Resume()
		}
	}()
	// The first request waits for the 50 ms timeout; the next ones do not
	// ask Redis until RetryInterval has passed.
	rec := o.timedHealth(t, 250*time.Millisecond)
	checkHeaders(t, rec, 100, 99) // the fallback's fresh bucket
	for range 10 {
		o.timedHealth(t, 250*time.Millisecond)
	}
	if got := len(o.log.Lines(`"kind":"timeout"`)); got != 1 {
		t.Errorf("log has %d timeout lines; want 1", got)
	}
	o.srv.Resume()
	resumed = true
	// Calls that timed out may still have been counted by Redis once it
	// resumed (the commands were written), so Redis's use shows as its
	// bucket changing, not as a particular Remaining.
	testenv.Eventually(t, 3*time.Second, "Redis used again", func() bool {
		before := o.bucket()
		o.timedHealth(t, 250*time.Millisecond)
		return o.bucket() != before
	})
}

// TestMiddlewareLogsOncePerInterval checks that a failing Redis asked on
// every request logs one line per interval, with the count of failures.
func TestMiddlewareLogsOncePerInterval(t *testing.T) {
	o, m := newOutage(t, Fallback, Limit{Requests: 1000, Per: time.Minute})
	m.outage.Retry = 0 // ask Redis every time
	o.srv.Stop()
	for range 20 {
		o.timedHealth(t, 200*time.Millisecond)
	}
	if got := len(o.log.Lines("rate limiter failing")); got != 1 {
		t.Fatalf("20 failures: %d log lines; want 1", got)
	}
	m.outage.LogEvery = 0
	o.timedHealth(t, 200*time.Millisecond)
	lines := o.log.Lines("rate limiter failing")
	if len(lines) != 2 || !strings.Contains(lines[1], `"failures":20`) {
		t.Errorf("after the interval: lines %q; want a second line counting 20 failures", lines)
	}
}

func TestMiddlewareFailOpen(t *testing.T) {
	o, _ := newOutage(t, FailOpen, Limit{Requests: 2, Per: time.Minute})
	o.srv.Stop()
	for i := range 5 { // more than the limit
		rec := o.timedHealth(t, 200*time.Millisecond)
		if rec.Code != http.StatusOK || rec.Header().Get(HeaderLimit) != "" {
			t.Fatalf("request %d: %d with %s %q; want 200 without RateLimit headers", i+1, rec.Code, HeaderLimit, rec.Header().Get(HeaderLimit))
		}
	}
}

func TestMiddlewareFailClosed(t *testing.T) {
	o, _ := newOutage(t, FailClosed, Limit{Requests: 2, Per: time.Minute})
	o.srv.Stop()
	start := time.Now()
	rec := o.health(opsToken)
	if d := time.Since(start); d > 200*time.Millisecond {
		t.Errorf("request took %s; want at most 200ms", d)
	}
	var body httpapi.ErrorBody
	_ = json.Unmarshal(rec.Body.Bytes(), &body)
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") != "1" || body.Error != "unavailable" {
		t.Errorf("got %d, Retry-After %q, body %q; want 503, 1, code unavailable", rec.Code, rec.Header().Get("Retry-After"), rec.Body)
	}
	if strings.Contains(rec.Body.String(), o.srv.Addr()) {
		t.Errorf("body %q shows Redis's address", rec.Body)
	}
}

// TestMiddlewareCallerGone checks that a request whose caller hung up is
// not taken for a Redis failure.
func TestMiddlewareCallerGone(t *testing.T) {
	o, m := newOutage(t, Fallback, Limit{Requests: 5, Per: time.Minute})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req := httptest.NewRequest(http.MethodGet, "/api/admin/system/health", nil).WithContext(ctx)
	req.Header.Set(echo.HeaderAuthorization, opsToken)
	o.e.ServeHTTP(httptest.NewRecorder(), req)
	if m.errors.Load() != 0 || !m.outage.Usable() || len(o.log.Lines("rate limiter failing")) != 0 {
		t.Error("a canceled request marked Redis as failing")
	}
}

// TestMiddlewareWithoutPrincipal checks the keying of a route without a
// principal: the connection's address, never a forwarded header.
func TestMiddlewareWithoutPrincipal(t *testing.T) {
	a := newAPI(t)
	a.r.Use(httpapi.Public, Middleware(NewMemory(), "public", Limit{Requests: 1, Per: time.Minute}, nil, FailOpen, nil, zerolog.Nop()))
	f := func(remote, forwarded string, want int) {
		t.Helper()
		req := httptest.NewRequest(http.MethodGet, "/public", nil)
		req.RemoteAddr = remote
		if forwarded != "" {
			req.Header.Set("X-Forwarded-For", forwarded)
			req.Header.Set("X-Real-IP", forwarded)
		}
		rec := httptest.NewRecorder()
		a.e.ServeHTTP(rec, req)
		if rec.Code != want {
			t.Errorf("from %s (forwarded %q): %d; want %d", remote, forwarded, rec.Code, want)
		}
	}
	f("192.0.2.1:1000", "", http.StatusOK)
	f("192.0.2.1:1001", "", http.StatusTooManyRequests) // same host, other port
	f("192.0.2.1:1002", "198.51.100.9", http.StatusTooManyRequests)
	f("192.0.2.2:1000", "", http.StatusOK)
}

func TestMiddlewarePanicsOnBadWiring(t *testing.T) {
	f := func(name string, build func()) {
		t.Helper()
		defer func() {
			if recover() == nil {
				t.Errorf("%s: no panic", name)
			}
		}()
		build()
	}
	mem := NewMemory()
	f("nil limiter", func() { Middleware(nil, ClassAdmin, DefaultAdmin, mem, Fallback, nil, zerolog.Nop()) })
	f("no class", func() { Middleware(mem, "", DefaultAdmin, mem, Fallback, nil, zerolog.Nop()) })
	f("invalid limit", func() { Middleware(mem, ClassAdmin, Limit{}, mem, Fallback, nil, zerolog.Nop()) })
	f("fallback without limiter", func() { Middleware(mem, ClassAdmin, DefaultAdmin, nil, Fallback, nil, zerolog.Nop()) })
	f("unknown policy", func() { Middleware(mem, ClassAdmin, DefaultAdmin, mem, Policy(7), nil, zerolog.Nop()) })
}

func TestErrorKind(t *testing.T) {
	srv := startRedisServer(t)
	c := srv.Client()
	ctx := context.Background()
	f := func(err error, want string) {
		t.Helper()
		if err == nil {
			t.Fatalf("want an error of kind %s", want)
		}
		if got := errorKind(err); got != want {
			t.Errorf("errorKind(%q) = %s; want %s", err, got, want)
		}
	}
	f(c.Do(ctx, "NOSUCHCOMMAND").Err(), "redis_err")
	f(c.Do(ctx, "GET").Err(), "redis_err")
	f(context.DeadlineExceeded, "timeout")
	f(context.Canceled, "canceled")
	srv.Pause()
	tctx, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
	f(c.Ping(tctx).Err(), "timeout")
	cancel()
	srv.Resume()
	srv.Stop()
	f(c.Ping(ctx).Err(), "connection_refused")
	c.Close()
	f(c.Ping(ctx).Err(), "client_closed")
}

// TestMiddlewareMemoryOnly checks the wiring without Redis: one Memory as
// limiter and fallback, shared by both classes.
func TestMiddlewareMemoryOnly(t *testing.T) {
	a := newAPI(t)
	mem := NewMemory()
	a.r.Use(auth.ScopeAdmin, Middleware(mem, ClassAdmin, Limit{Requests: 2, Per: time.Minute}, mem, Fallback, nil, zerolog.Nop()))
	a.r.Use(auth.ScopeIngest, Middleware(mem, ClassIngest, Limit{Requests: 3, Per: time.Minute}, mem, Fallback, nil, zerolog.Nop()))
	for i, want := range []int{http.StatusOK, http.StatusOK, http.StatusTooManyRequests} {
		if rec := a.health(opsToken); rec.Code != want {
			t.Fatalf("admin request %d: %d; want %d", i+1, rec.Code, want)
		}
	}
	rec := a.do(http.MethodPost, "/api/admin/system/metrics", opsToken)
	if rec.Code != http.StatusOK {
		t.Fatalf("ingest after admin refusal: %d; want 200", rec.Code)
	}
	checkHeaders(t, rec, 3, 2)
	if n := mem.Len(); n != 2 {
		t.Errorf("Memory holds %d buckets; want 2 (admin:ops, ingest:ops)", n)
	}
}
