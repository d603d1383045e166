package probe

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/wedsync/pulse/internal/event"
	"github.com/wedsync/pulse/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// logBuffer collects log lines from several goroutines.
type logBuffer struct{ testenv.LogBuffer }

func (b *logBuffer) logger() zerolog.Logger { return zerolog.New(b).Level(zerolog.DebugLevel) }

// memPublisher is a working in-memory stream: it keeps what is published,
// or refuses while fail is set.
type memPublisher struct {
	mu   sync.Mutex
	msgs []pubMsg
	fail atomic.Bool
}

type pubMsg struct {
	subject string
	data    []byte
}

func (p *memPublisher) Publish(_ context.Context, subject string, data []byte) error {
	if p.fail.Load() {
		return &net.OpError{Op: "dial", Net: "tcp", Err: os.ErrDeadlineExceeded}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.msgs = append(p.msgs, pubMsg{subject, bytes.Clone(data)})
	return nil
}

func (p *memPublisher) all() []pubMsg {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]pubMsg(nil), p.msgs...)
}

// health decodes every health message published so far.
func (p *memPublisher) health(t *testing.T) []event.HealthResult {
	t.Helper()
	var out []event.HealthResult
	for _, m := range p.all() {
		if !strings.HasPrefix(m.subject, "pulse.ingest.health.") {
			continue
		}
		hs, err := event.DecodeHealth(m.data, 100)
		if err != nil {
			t.Fatalf("published health %s does not decode: %v", m.data, err)
		}
		for _, h := range hs {
			if m.subject != "pulse.ingest.health."+h.Component {
				t.Errorf("result of %s published on %s", h.Component, m.subject)
			}
		}
		out = append(out, hs...)
	}
	return out
}

// details decodes a result's details.
func details(t *testing.T, h event.HealthResult) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(h.Details, &m); err != nil {
		t.Fatalf("details %s: %v", h.Details, err)
	}
	return m
}

// one runs a probe once with a timeout and checks it gave one valid
// result of component.
func one(t *testing.T, p prober, timeout time.Duration) (event.HealthResult, map[string]any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	hs := p.Probe(ctx)
	if len(hs) != 1 {
		t.Fatalf("%s: %d results; want 1", p.component(), len(hs))
	}
	valid(t, hs[0])
	if hs[0].Component != p.component() {
		t.Errorf("component %q; want %q", hs[0].Component, p.component())
	}
	return hs[0], details(t, hs[0])
}

// valid checks h the way the aggregator will, after a JSON round trip.
func valid(t *testing.T, hs ...event.HealthResult) {
	t.Helper()
	data, err := json.Marshal(hs)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := event.DecodeHealth(data, 1000); err != nil {
		t.Fatalf("results %s do not validate: %v", data, err)
	}
}

func wantStatus(t *testing.T, what string, h event.HealthResult, want string) {
	t.Helper()
	if h.Status != want {
		t.Errorf("%s: status %s; want %s (details %s)", what, h.Status, want, h.Details)
	}
}

// switchServer is an HTTP server on a fixed loopback address that a test
// can stop and start again, with a handler it can change.
type switchServer struct {
	t       *testing.T
	addr    string
	handler atomic.Value // http.HandlerFunc
	hits    atomic.Int64
	mu      sync.Mutex
	srv     *http.Server
	wg      sync.WaitGroup
}

func newSwitchServer(t *testing.T, h http.HandlerFunc) *switchServer {
	t.Helper()
	s := &switchServer{t: t}
	s.handler.Store(h)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = l.Addr().String()
	s.serve(l)
	t.Cleanup(s.stop)
	return s
}

func (s *switchServer) set(h http.HandlerFunc) { s.handler.Store(h) }

func (s *switchServer) url(path string) string { return "http://" + s.addr + path }

func (s *switchServer) serve(l net.Listener) {
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		s.handler.Load().(http.HandlerFunc)(w, r)
	})}
	s.mu.Lock()
	s.srv = srv
	s.mu.Unlock()
	s.wg.Go(func() { _ = srv.Serve(l) })
}

// stop closes the listener and every connection.
func (s *switchServer) stop() {
	s.mu.Lock()
	srv := s.srv
	s.srv = nil
	s.mu.Unlock()
	if srv != nil {
		srv.Close()
		s.wg.Wait()
	}
}

// start listens on the same address again.
func (s *switchServer) start() {
	s.t.Helper()
	var l net.Listener
	var err error
	deadline := time.Now().Add(5 * time.Second)
	for {
		if l, err = net.Listen("tcp", s.addr); err == nil {
			break
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("listen again on %s: %v", s.addr, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.serve(l)
}

func ok(w http.ResponseWriter, _ *http.Request) { w.Write([]byte(`{"status":"ok"}`)) }

func slow(d time.Duration, code int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(d):
		case <-r.Context().Done():
		}
		w.WriteHeader(code)
	}
}

func status(code int) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(code) }
}

// closedURL is a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func testConfig(c Config) Config {
	c.defaults()
	return c
}
