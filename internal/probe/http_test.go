package probe

import (
	"bufio"
	"context"
	"crypto/sha1"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wedsync/pulse/internal/event"
	"github.com/wedsync/pulse/internal/testenv"
)

func newAuth(t *testing.T, c Config) *authProbe {
	t.Helper()
	p := newAuthProbe(testConfig(c))
	t.Cleanup(p.close)
	return p
}

// TestAuthProbe walks the auth health URL through fast, slow, failing,
// closed and recovered.
func TestAuthProbe(t *testing.T) {
	var gotKey atomic.Value
	srv := newSwitchServer(t, ok)
	fast := func(w http.ResponseWriter, r *http.Request) {
		gotKey.Store(r.Header.Get("apikey"))
		ok(w, r)
	}
	p := newAuth(t, Config{AuthHealthURL: srv.url("/auth/v1/health"), AuthAPIKey: "anon-key-1"})
	steps := []struct {
		name    string
		handler http.HandlerFunc
		stopped bool
		status  string
		check   func(d map[string]any)
	}{
		{"fast", fast, false, event.StatusHealthy, func(d map[string]any) {
			if d["http_status"] != float64(200) || d["metrics"] != "not configured" || d["failure_rate"] != nil {
				t.Errorf("fast: details %v; want http_status 200, metrics not configured, failure_rate null", d)
			}
		}},
		{"slow", slow(250*time.Millisecond, 200), false, event.StatusDegraded, func(d map[string]any) {
			if d["latency_ms"].(float64) < 250 {
				t.Errorf("slow: latency_ms %v; want >= 250", d["latency_ms"])
			}
		}},
		{"503", status(503), false, event.StatusCritical, func(d map[string]any) {
			if d["error"] != "unexpected status" || d["http_status"] != float64(503) {
				t.Errorf("503: details %v", d)
			}
		}},
		{"redirect", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "http://elsewhere.invalid/", http.StatusFound)
		}, false, event.StatusCritical, nil},
		{"closed", fast, true, event.StatusCritical, func(d map[string]any) {
			if d["error"] != "unreachable" || d["cause"] != "connection refused" {
				t.Errorf("closed: details %v; want unreachable, connection refused", d)
			}
		}},
		{"recovered", fast, false, event.StatusHealthy, nil},
	}
	running := true
	for _, s := range steps {
		srv.set(s.handler)
		switch {
		case s.stopped && running:
			srv.stop()
			running = false
		case !s.stopped && !running:
			srv.start()
			running = true
		}
		h, d := one(t, p, 3*time.Second)
		wantStatus(t, s.name, h, s.status)
		if s.check != nil {
			s.check(d)
		}
	}
	if gotKey.Load() != "anon-key-1" {
		t.Errorf("apikey header %v; want the configured key", gotKey.Load())
	}
}

func TestAuthNotConfigured(t *testing.T) {
	h, _ := one(t, newAuth(t, Config{}), time.Second)
	wantStatus(t, "no auth url", h, event.StatusUnknown)
}

func TestAuthTimeout(t *testing.T) {
	srv := newSwitchServer(t, slow(2*time.Second, 200))
	h, d := one(t, newAuth(t, Config{AuthHealthURL: srv.url("/auth/v1/health")}), 300*time.Millisecond)
	wantStatus(t, "hanging auth", h, event.StatusCritical)
	if d["cause"] != "timeout" {
		t.Errorf("cause %v; want timeout", d["cause"])
	}
}

// wsServer is a WebSocket endpoint that performs the opening handshake
// as told and then reads the client's close frame.
type wsServer struct {
	*httptest.Server
	accept    func(key string) string
	code      int
	delay     time.Duration
	query     atomic.Value // the raw query of the last handshake
	closeCode atomic.Int32 // status of the client's close frame, when masked
}

func newWSServer(t *testing.T, tlsOn bool) *wsServer {
	s := &wsServer{accept: acceptKey, code: http.StatusSwitchingProtocols}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.query.Store(r.URL.RawQuery)
		time.Sleep(s.delay)
		if s.code != http.StatusSwitchingProtocols {
			w.WriteHeader(s.code)
			return
		}
		if r.Header.Get("Sec-WebSocket-Version") != "13" || !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		conn, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
			s.accept(r.Header.Get("Sec-WebSocket-Key")) + "\r\n\r\n")
		// A text frame first, which the client must skip, as a server may
		// send one before it sees the close.
		rw.Write([]byte{0x81, 5, 'h', 'e', 'l', 'l', 'o'})
		rw.Flush()
		conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		s.readClose(rw.Reader)
		rw.Write([]byte{0x88, 2, 0x03, 0xe8})
		rw.Flush()
	})
	if tlsOn {
		s.Server = httptest.NewTLSServer(h)
	} else {
		s.Server = httptest.NewServer(h)
	}
	t.Cleanup(s.Close)
	return s
}

// acceptKey is the Sec-WebSocket-Accept a server must answer key with
// (RFC 6455, section 4.2.2).
func acceptKey(key string) string {
	h := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(h[:])
}

func (s *wsServer) readClose(r *bufio.Reader) {
	var hdr [6]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil || hdr[0] != 0x88 || hdr[1]&0x80 == 0 || hdr[1]&0x7f != 2 {
		return
	}
	var payload [2]byte
	if _, err := io.ReadFull(r, payload[:]); err != nil {
		return
	}
	for i := range payload {
		payload[i] ^= hdr[2+i]
	}
	s.closeCode.Store(int32(binary.BigEndian.Uint16(payload[:])))
}

func (s *wsServer) wsURL(query string) string {
	return "ws" + strings.TrimPrefix(s.URL, "http") + "/realtime/v1/websocket?" + query
}

func TestRealtimeProbe(t *testing.T) {
	const query = "apikey=realtime-key-9&vsn=1.0.0"
	for _, tt := range []struct {
		name   string
		setup  func(s *wsServer)
		status string
		err    string
	}{
		{"good", func(*wsServer) {}, event.StatusHealthy, ""},
		{"slow", func(s *wsServer) { s.delay = 350 * time.Millisecond }, event.StatusDegraded, ""},
		{"very slow", func(s *wsServer) { s.delay = 1100 * time.Millisecond }, event.StatusCritical, ""},
		{"wrong accept", func(s *wsServer) { s.accept = func(string) string { return "d3JvbmcK" } }, event.StatusCritical, "bad handshake"},
		{"not upgraded", func(s *wsServer) { s.code = http.StatusForbidden }, event.StatusCritical, "handshake refused"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := newWSServer(t, false)
			tt.setup(s)
			p := newRealtimeProbe(testConfig(Config{RealtimeURL: s.wsURL(query)}))
			h, d := one(t, p, 3*time.Second)
			wantStatus(t, tt.name, h, tt.status)
			if tt.err != "" && d["error"] != tt.err {
				t.Errorf("error %v; want %s", d["error"], tt.err)
			}
			if s.query.Load() != query {
				t.Errorf("server got query %v; want %s", s.query.Load(), query)
			}
			if tt.err == "" {
				if d["closed"] != "clean" {
					t.Errorf("closed %v; want clean", d["closed"])
				}
				if c := s.closeCode.Load(); c != 1000 {
					t.Errorf("server got close status %d; want a masked close frame with 1000", c)
				}
			}
			if tt.err == "not upgraded" && d["http_status"] != float64(403) {
				t.Errorf("http_status %v; want 403", d["http_status"])
			}
			if strings.Contains(string(h.Details), "realtime-key-9") {
				t.Errorf("details hold the apikey: %s", h.Details)
			}
		})
	}
}

func TestRealtimeTLS(t *testing.T) {
	s := newWSServer(t, true)
	p := newRealtimeProbe(testConfig(Config{RealtimeURL: s.wsURL("vsn=1.0.0")}))
	// Without trusting the test certificate the handshake fails.
	h, d := one(t, p, 3*time.Second)
	wantStatus(t, "untrusted certificate", h, event.StatusCritical)
	if d["cause"] != "tls handshake failed" {
		t.Errorf("cause %v; want tls handshake failed", d["cause"])
	}
	pool := x509.NewCertPool()
	pool.AddCert(s.Certificate())
	p.tls = &tls.Config{RootCAs: pool}
	h, d = one(t, p, 3*time.Second)
	wantStatus(t, "wss", h, event.StatusHealthy)
	if d["scheme"] != "wss" || d["closed"] != "clean" {
		t.Errorf("details %v; want scheme wss, closed clean", d)
	}
}

func TestRealtimeUnreachable(t *testing.T) {
	p := newRealtimeProbe(testConfig(Config{RealtimeURL: "ws://" + closedAddr(t) + "/realtime/v1/websocket"}))
	h, d := one(t, p, 3*time.Second)
	wantStatus(t, "closed port", h, event.StatusCritical)
	if d["error"] != "unreachable" || d["cause"] != "connection refused" {
		t.Errorf("details %v; want unreachable, connection refused", d)
	}
	h, _ = one(t, newRealtimeProbe(testConfig(Config{})), time.Second)
	wantStatus(t, "not configured", h, event.StatusUnknown)
}

// TestExternalCircuitBreaker drives one dependency's breaker through
// closed, open, half-open and closed again. The breaker is gobreaker's,
// on the real clock: a 1 s cooldown, and polls for its end.
func TestExternalCircuitBreaker(t *testing.T) {
	srv := newSwitchServer(t, ok)
	const cooldown = time.Second
	p := newExternalProbe(testConfig(Config{
		External:        []Dependency{{Name: "payments", URL: srv.url("/health")}},
		BreakerCooldown: cooldown,
	}))
	t.Cleanup(p.close)

	step := func(what, status, circuit string, failures int, wantCall bool) map[string]any {
		t.Helper()
		before := srv.hits.Load()
		h, d := one(t, p, 3*time.Second)
		wantStatus(t, what, h, status)
		if h.Target != "payments" {
			t.Errorf("%s: target %q; want payments", what, h.Target)
		}
		if d["circuit"] != circuit || d["consecutive_failures"] != float64(failures) {
			t.Errorf("%s: circuit %v after %v failures; want %s after %d", what, d["circuit"], d["consecutive_failures"], circuit, failures)
		}
		if called := srv.hits.Load() > before; called != wantCall {
			t.Errorf("%s: dependency called: %v; want %v", what, called, wantCall)
		}
		return d
	}
	halfOpen := func() {
		t.Helper()
		testenv.Eventually(t, 5*cooldown, "the circuit half-open after the cooldown", func() bool {
			return p.breakers[0].circuit() == circuitHalfOpen
		})
	}
	step("up", event.StatusHealthy, "closed", 0, true)
	srv.set(status(503))
	step("first failure", event.StatusCritical, "closed", 1, true)
	step("second failure", event.StatusCritical, "closed", 2, true)
	d := step("third failure opens", event.StatusCritical, "open", 3, true)
	if d["error"] != "server error" || d["http_status"] != float64(503) {
		t.Errorf("failure details %v", d)
	}
	d = step("open: not called", event.StatusCritical, "open", 3, false)
	if d["retry_in_s"] != float64(1) || d["error"] != "circuit open" {
		t.Errorf("open details %v; want circuit open, retry_in_s 1", d)
	}
	halfOpen()
	step("half-open trial fails", event.StatusCritical, "open", 4, true)
	step("open again: not called", event.StatusCritical, "open", 4, false)
	srv.set(ok)
	halfOpen()
	step("half-open trial succeeds", event.StatusHealthy, "closed", 0, true)
	srv.set(status(404)) // an answer below 500 shows the service is up
	step("404", event.StatusHealthy, "closed", 0, true)
	srv.stop()
	d = step("unreachable", event.StatusCritical, "closed", 1, false)
	if d["error"] != "unreachable" || d["cause"] != "connection refused" {
		t.Errorf("unreachable details %v", d)
	}
}

func TestExternalSeveral(t *testing.T) {
	up := newSwitchServer(t, ok)
	slowSrv := newSwitchServer(t, slow(1100*time.Millisecond, 200))
	cfg := testConfig(Config{External: []Dependency{
		{Name: "payments", URL: up.url("/v1/health")},
		{Name: "email", URL: slowSrv.url("/status")},
		{Name: "sms", URL: "http://" + closedAddr(t) + "/ping"},
		{Name: "hanging", URL: slowSrv.url("/hang"), Timeout: 200 * time.Millisecond},
	}})
	p := newExternalProbe(cfg)
	t.Cleanup(p.close)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	hs, _ := p.run(ctx)
	valid(t, hs...)
	want := map[string]string{"payments": event.StatusHealthy, "email": event.StatusDegraded, "sms": event.StatusCritical, "hanging": event.StatusCritical}
	if len(hs) != len(want) {
		t.Fatalf("%d results; want %d", len(hs), len(want))
	}
	for _, h := range hs {
		wantStatus(t, h.Target, h, want[h.Target])
	}
	if d := details(t, hs[3]); d["cause"] != "timeout" {
		t.Errorf("hanging: cause %v; want timeout", d["cause"])
	}

	h, d := one(t, newExternalProbe(testConfig(Config{})), time.Second)
	wantStatus(t, "no dependencies", h, event.StatusUnknown)
	if d["configured"] != false || h.Target != "" {
		t.Errorf("not configured: target %q details %v", h.Target, d)
	}
}
