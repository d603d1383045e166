package pulseclient

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/wedsync/pulse/internal/testenv"
)

func testLogger(b *testenv.LogBuffer) zerolog.Logger { return zerolog.New(b) }

func metric(i int) Metric {
	return Metric{Endpoint: "/api/clients/{id}", Method: "GET", StatusCode: 200, ResponseTime: time.Duration(i%500) * time.Millisecond,
		RequestID: fmt.Sprintf("go-%d", i)}
}

func shutdown(t *testing.T, c *Client, d time.Duration) Stats {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return c.Shutdown(ctx)
}

// TestRestartExactlyOnce drives a handler wrapped by Middleware with 20,000
// requests while Pulse is killed and restarted: every request is stored
// once.
func TestRestartExactlyOnce(t *testing.T) {
	p := startPulse(t, "1000000/s")
	c, logs := newClient(t, p.url, Config{})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/clients/{id}", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
	h := c.Middleware(mux, MiddlewareOptions{RequestID: func(r *http.Request) string { return r.Header.Get("X-Request-Id") }})
	const total = 20000
	restarted := make(chan struct{})
	var slowest time.Duration
	for i := range total {
		req := httptest.NewRequest(http.MethodGet, fmt.Sprintf("/api/clients/%d", i), nil)
		req.Header.Set("X-Request-Id", fmt.Sprintf("mw-%d", i))
		rec := httptest.NewRecorder()
		start := time.Now()
		h.ServeHTTP(rec, req)
		slowest = max(slowest, time.Since(start))
		if rec.Code != http.StatusTeapot {
			t.Fatalf("status %d; want 418", rec.Code)
		}
		if i == 5000 {
			go func() {
				defer close(restarted)
				p.stop()
				time.Sleep(300 * time.Millisecond) // Pulse stays down a moment while requests go on
			}()
		}
		if i%500 == 0 {
			time.Sleep(time.Millisecond) // a paced stream of requests, not one burst
		}
	}
	<-restarted
	p.start()
	s := shutdown(t, c, 30*time.Second)
	if s.Sent != total || s.Dropped()+s.Failed != 0 {
		t.Fatalf("stats %+v; want %d sent, none dropped or failed", s, total)
	}
	if s.Retried == 0 {
		t.Error("the restart should have made the client retry")
	}
	if n := len(logs.Lines(`"level":"warn"`)); n < 1 || n > 2 {
		t.Errorf("%d warnings; want the outage reported once", n)
	}
	p.assertStored(t, total, true)
	if got := testenv.Count(t, p.store, "SELECT count() FROM "+p.store.T("requests")+" WHERE status_code = 418 AND endpoint = '/api/clients/{id}' AND method = 'GET'"); got != total {
		t.Errorf("rows with the route pattern, method and status = %d; want %d", got, total)
	}
	t.Logf("retried %d; slowest wrapped request %s", s.Retried, slowest)
}

func TestRateLimitStorm(t *testing.T) {
	p := startPulse(t, "4/s")
	c, _ := newClient(t, p.url, Config{BatchSize: 100, Concurrency: 4})
	const total = 3000
	for i := range total {
		c.Record(metric(i))
	}
	s := shutdown(t, c, 30*time.Second)
	if s.Sent != total {
		t.Fatalf("stats %+v; want %d sent", s, total)
	}
	if s.Retried < 5 {
		t.Errorf("retried %d; want a storm of 429s", s.Retried)
	}
	p.assertStored(t, total, true)
}

func TestOutageBufferBound(t *testing.T) {
	p := startPulse(t, "1000000/s")
	const bound, total = 1000, 5000
	c, logs := newClient(t, p.url, Config{BatchSize: 100, MaxBuffer: bound, FlushInterval: 50 * time.Millisecond})
	p.stop()
	for i := range total {
		c.Record(metric(i))
		if s := c.Stats(); s.Buffered+s.InFlight > bound {
			t.Fatalf("held %d > %d", s.Buffered+s.InFlight, bound)
		}
	}
	down := c.Stats()
	if down.DroppedOverflow != total-bound || down.Sent != 0 {
		t.Fatalf("stats %+v; want %d dropped, none sent", down, total-bound)
	}
	testenv.Eventually(t, 10*time.Second, "an error", func() bool { return strings.Contains(c.Stats().LastError, "request to Pulse failed") })
	p.start()
	s := shutdown(t, c, 30*time.Second)
	if s.Sent != bound || s.Recorded != s.Sent+s.Dropped()+s.Failed {
		t.Fatalf("stats %+v; want the %d newest sent", s, bound)
	}
	p.assertStored(t, bound, true)
	// The two batches being retried (concurrency x batch size) stay; of the
	// queued events, the newest survived and the oldest were dropped.
	id := "toUInt64(substring(request_id, 4))"
	if got := testenv.Count(t, p.store, "SELECT count() FROM "+p.store.T("requests")+" WHERE "+id+" < 200"); got != 200 {
		t.Errorf("events of the in-flight batches stored: %d; want 200", got)
	}
	if got := testenv.Count(t, p.store, fmt.Sprintf("SELECT count() FROM %s WHERE %s >= %d", p.store.T("requests"), id, total-(bound-200))); got != bound-200 {
		t.Errorf("newest queued events stored: %d; want %d", got, bound-200)
	}
	if n := len(logs.Lines(`"level":"warn"`)); n > 3 {
		t.Errorf("%d warnings; want one per cause:\n%s", n, logs.String())
	}
	if len(logs.Lines("Pulse accepts metrics again")) != 1 {
		t.Errorf("recovery not reported:\n%s", logs.String())
	}
}

func TestShutdownDeliversBuffered(t *testing.T) {
	p := startPulse(t, "1000000/s")
	c, _ := newClient(t, p.url, Config{BatchSize: 500, FlushInterval: time.Minute})
	for i := range 1234 {
		c.Record(metric(i))
	}
	testenv.Eventually(t, 10*time.Second, "two full batches sent", func() bool { return c.Stats().Sent == 1000 })
	if s := c.Stats(); s.Buffered != 234 {
		t.Fatalf("buffered %d; want 234 waiting for the timer", s.Buffered)
	}
	for i := 1234; i < 1300; i++ {
		c.Record(metric(i))
	}
	if err := c.Flush(context.Background()); err != nil || c.Stats().Sent != 1300 {
		t.Fatalf("flush: %v, sent %d; want 1300", err, c.Stats().Sent)
	}
	c.Record(metric(1300))
	s := shutdown(t, c, 10*time.Second)
	if s.Sent != 1301 || s.Buffered+s.InFlight != 0 {
		t.Fatalf("stats %+v; want 1301 sent", s)
	}
	c.Record(metric(0))
	if c.Stats().DroppedClosed != 1 {
		t.Error("a record after shutdown is not counted as dropped")
	}
	p.assertStored(t, 1301, true)
}

func TestShutdownDeadline(t *testing.T) {
	c, _ := newClient(t, "http://"+testenv.FreeAddr(t), Config{BatchSize: 50})
	for i := range 120 {
		c.Record(metric(i))
	}
	start := time.Now()
	s := shutdown(t, c, 300*time.Millisecond)
	if time.Since(start) > 2*time.Second {
		t.Errorf("shutdown took %s", time.Since(start))
	}
	if s.Failed != 120 || s.Buffered+s.InFlight != 0 {
		t.Errorf("stats %+v; want 120 failed, nothing held", s)
	}
}

func TestInvalidMetricsDropped(t *testing.T) {
	p := startPulse(t, "1000000/s")
	c, logs := newClient(t, p.url, Config{})
	with := func(f func(*Metric)) Metric { m := metric(0); m.RequestID = ""; f(&m); return m }
	bad := []Metric{
		with(func(m *Metric) { m.Endpoint = "/" + strings.Repeat("x", 512) }),
		with(func(m *Metric) { m.Endpoint = "" }),
		with(func(m *Metric) { m.Endpoint = "/a\x01" }),
		with(func(m *Metric) { m.StatusCode = 99 }),
		with(func(m *Metric) { m.ResponseTime = -time.Millisecond }),
		with(func(m *Metric) { m.ResponseTime = 25 * time.Hour }),
		with(func(m *Metric) { m.UserID = "nope" }),
		with(func(m *Metric) { m.ErrorMessage = strings.Repeat("é", 1025) }),
		with(func(m *Metric) { m.ErrorMessage = "\xff" }),
		with(func(m *Metric) { m.Method = "FETCH" }),
		with(func(m *Metric) { m.Service = "bad service" }),
		with(func(m *Metric) { m.RequestID = "has space" }),
		with(func(m *Metric) { m.Timestamp = time.Now().Add(10 * time.Minute) }),
		with(func(m *Metric) { m.Timestamp = time.Now().Add(-40 * 24 * time.Hour) }),
	}
	good := []Metric{
		with(func(m *Metric) {
			m.Endpoint, m.Method, m.UserID = "/"+strings.Repeat("é", 255), "post", "3f2b6c1e-8d4a-4b7e-9c2d-1a2b3c4d5e6f"
		}),
		with(func(m *Metric) { m.Service, m.ErrorMessage = "Checkout", strings.Repeat("x", 2048) }),
	}
	for _, m := range append(bad, good...) {
		c.Record(m)
	}
	s := shutdown(t, c, 10*time.Second)
	if s.DroppedInvalid != uint64(len(bad)) || s.Sent != uint64(len(good)) || s.Failed != 0 {
		t.Fatalf("stats %+v; want %d invalid dropped, %d sent, none failed", s, len(bad), len(good))
	}
	p.assertStored(t, uint64(len(good)), false)
	if len(logs.Lines("endpoint: must be at most 512 bytes")) != 1 {
		t.Errorf("no reason logged for the long endpoint:\n%s", logs.String())
	}
}

func TestWrongToken(t *testing.T) {
	p := startPulse(t, "1000000/s")
	c, logs := newClient(t, p.url, Config{Token: "wrong-token-0123456789", BatchSize: 10})
	for i := range 100 {
		c.Record(metric(i))
	}
	s := shutdown(t, c, 10*time.Second)
	if s.Failed != 100 || s.Retried != 0 || !strings.Contains(s.LastError, "401") {
		t.Fatalf("stats %+v; want 100 failed without retries, a 401 error", s)
	}
	if n := len(logs.Lines(`"level":"error"`)); n != 1 {
		t.Errorf("%d error lines; want 1:\n%s", n, logs.String())
	}
	if strings.Contains(logs.String(), "wrong-token") {
		t.Error("the token appears in the log")
	}
}

func TestConfigValidate(t *testing.T) {
	f := func(c Config, want string) {
		t.Helper()
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate(%+v) = %v; want an error about %s", c, err, want)
		}
	}
	f(Config{Token: "t", Service: "web"}, "url")
	f(Config{URL: "ftp://x", Token: "t", Service: "web"}, "url")
	f(Config{URL: "http://x", Service: "web"}, "token")
	f(Config{URL: "http://x", Token: "t", Service: "no spaces"}, "service")
	f(Config{URL: "http://x", Token: "t", Service: "web", BatchSize: 10001}, "batch size")
	if err := (Config{URL: "http://x", Token: "t", Service: "Web"}).Validate(); err != nil {
		t.Errorf("valid config: %v", err)
	}
}
