package pulseclient

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"testing"
	"time"
)

// proxy is a reverse proxy in front of a pulse serve that answers 503 with
// Retry-After: 1 until a moment, or holds Pulse's answer to a number of
// requests until their client gave up waiting, and records every request it
// sees. It is safe for concurrent use.
type proxy struct {
	url string
	rp  *httputil.ReverseProxy

	mu               sync.Mutex
	unavailableUntil time.Time // before it, requests are answered 503 without reaching Pulse
	hold             int       // the next hold requests reach Pulse, but its answer waits for the client to go
	seen             []proxied
}

// proxied is one request the proxy saw.
type proxied struct {
	key    string    // its Idempotency-Key
	at     time.Time // when it arrived
	status int       // the proxy's 503, or Pulse's answer
	held   bool      // Pulse's answer was held until the client gave up
}

// startProxy runs a proxy in front of target until the test ends.
func startProxy(t *testing.T, target string) *proxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	p := &proxy{rp: httputil.NewSingleHostReverseProxy(u)}
	p.rp.Transport = transport
	srv := httptest.NewServer(p)
	p.url = srv.URL
	t.Cleanup(func() { srv.Close(); transport.CloseIdleConnections() })
	return p
}

func (p *proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	p.mu.Lock()
	i := len(p.seen)
	unavailable := now.Before(p.unavailableUntil)
	held := !unavailable && p.hold > 0
	if held {
		p.hold--
	}
	p.seen = append(p.seen, proxied{key: r.Header.Get("Idempotency-Key"), at: now, held: held})
	p.mu.Unlock()
	if unavailable {
		p.setStatus(i, http.StatusServiceUnavailable)
		w.Header().Set("Retry-After", "1")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(`{"error":"unavailable","message":"the proxy answers 503"}` + "\n"))
		return
	}
	hw := &holdWriter{ResponseWriter: w, record: func(status int) { p.setStatus(i, status) }}
	if held {
		// Pulse gets the whole request and answers it even though the
		// client stops waiting: the batch is stored, its answer is lost.
		hw.hold = r.Context().Done()
		r = r.WithContext(context.WithoutCancel(r.Context()))
	}
	p.rp.ServeHTTP(hw, r)
}

func (p *proxy) setStatus(i, status int) {
	p.mu.Lock()
	p.seen[i].status = status
	p.mu.Unlock()
}

// requests returns what the proxy saw, by Idempotency-Key in order of arrival.
func (p *proxy) requests() map[string][]proxied {
	p.mu.Lock()
	defer p.mu.Unlock()
	byKey := map[string][]proxied{}
	for _, s := range p.seen {
		byKey[s.key] = append(byKey[s.key], s)
	}
	return byKey
}

// holdWriter records the status Pulse answered and, with hold set, writes
// it only once hold is closed (the client went away), or after 10 s.
type holdWriter struct {
	http.ResponseWriter
	record func(status int)
	hold   <-chan struct{}
}

func (w *holdWriter) WriteHeader(status int) {
	w.record(status)
	if w.hold != nil {
		t := time.NewTimer(10 * time.Second)
		select {
		case <-w.hold:
		case <-t.C:
		}
		t.Stop()
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *holdWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// TestUnavailablePeriod puts a proxy answering 503 with Retry-After: 1 for
// 2.5 s in front of Pulse: the client waits at least a second before each
// retry of a refused batch (its own backoff is at most 500 ms), then every
// event is stored once.
func TestUnavailablePeriod(t *testing.T) {
	p := startPulse(t, "1000000/s")
	px := startProxy(t, p.url)
	px.mu.Lock()
	px.unavailableUntil = time.Now().Add(2500 * time.Millisecond)
	px.mu.Unlock()
	c, _ := newClient(t, px.url, Config{BatchSize: 250})
	const total = 2000
	for i := range total {
		c.Record(metric(i))
	}
	s := shutdown(t, c, 30*time.Second)
	if s.Sent != total || s.Dropped()+s.Failed != 0 {
		t.Fatalf("stats %+v; want %d sent, none dropped or failed", s, total)
	}
	byKey := px.requests()
	if len(byKey) != total/250 {
		t.Errorf("%d idempotency keys; want one per batch, %d", len(byKey), total/250)
	}
	refused, waitedTwice := 0, false
	for key, reqs := range byKey {
		n503 := 0
		for i, r := range reqs {
			if r.status != http.StatusServiceUnavailable {
				continue
			}
			n503++
			if i+1 < len(reqs) {
				if gap := reqs[i+1].at.Sub(r.at); gap < time.Second {
					t.Errorf("batch %s: retried %s after a 503 with Retry-After: 1; want at least 1s", key, gap)
				}
			}
		}
		refused += n503
		waitedTwice = waitedTwice || n503 >= 2
		if last := reqs[len(reqs)-1].status; last != http.StatusAccepted {
			t.Errorf("batch %s: last answer %d; want 202", key, last)
		}
	}
	if refused == 0 || !waitedTwice {
		t.Errorf("%d answers 503, a batch refused twice: %t; want the period to refuse a batch more than once", refused, waitedTwice)
	}
	if s.Retried < uint64(refused) {
		t.Errorf("retried %d; want at least the %d answers 503", s.Retried, refused)
	}
	p.assertStored(t, total, true)
	t.Logf("%d answers 503, %d retries", refused, s.Retried)
}

// TestSlowServer puts a proxy in front of Pulse that holds the answer to
// the first three requests until the client's 300 ms request timeout made
// it give up: Pulse stored those batches, the client sent them again with
// the same Idempotency-Key, and every event is stored once.
func TestSlowServer(t *testing.T) {
	p := startPulse(t, "1000000/s")
	px := startProxy(t, p.url)
	const held = 3
	px.mu.Lock()
	px.hold = held
	px.mu.Unlock()
	c, _ := newClient(t, px.url, Config{BatchSize: 200, RequestTimeout: 300 * time.Millisecond})
	const total = 2000
	for i := range total {
		c.Record(metric(i))
	}
	s := shutdown(t, c, 30*time.Second)
	if s.Sent != total || s.Dropped()+s.Failed != 0 {
		t.Fatalf("stats %+v; want %d sent, none dropped or failed", s, total)
	}
	if s.Retried < held {
		t.Errorf("retried %d; want at least the %d timeouts", s.Retried, held)
	}
	byKey := px.requests()
	if len(byKey) != total/200 {
		t.Errorf("%d idempotency keys; want one per batch, %d", len(byKey), total/200)
	}
	nHeld := 0
	for key, reqs := range byKey {
		for i, r := range reqs {
			if !r.held {
				continue
			}
			nHeld++
			if r.status != http.StatusAccepted {
				t.Errorf("batch %s: Pulse answered the held request %d; want 202 (stored)", key, r.status)
			}
			if i+1 == len(reqs) {
				t.Errorf("batch %s: not sent again with its key after the timeout", key)
			}
		}
		if last := reqs[len(reqs)-1]; last.held || last.status != http.StatusAccepted {
			t.Errorf("batch %s: last request answered %d, held %t; want a 202 the client received", key, last.status, last.held)
		}
	}
	if nHeld != held {
		t.Errorf("%d requests held; want %d", nHeld, held)
	}
	p.assertStored(t, total, true)
}
