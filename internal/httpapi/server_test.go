package httpapi

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/wedsync/pulse/internal/auth"
	"github.com/wedsync/pulse/internal/testenv"
)

// TestServerListenFallback: a taken address is an error, unless the
// server may fall back to a free port of the same host.
func TestServerListenFallback(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	addr := taken.Addr().String()

	strict := &Server{Addr: addr, Log: zerolog.Nop()}
	if _, err := strict.Listen(); err == nil || !strings.Contains(err.Error(), addr) {
		t.Errorf("Listen on a taken %s without fallback: %v; want an error naming it", addr, err)
	}
	lax := &Server{Addr: addr, FallbackToFreePort: true, Log: zerolog.Nop()}
	got, err := lax.Listen()
	if err != nil {
		t.Fatalf("Listen with fallback: %v", err)
	}
	defer lax.ln.Close()
	if host, port, _ := net.SplitHostPort(got.String()); host != "127.0.0.1" || got.String() == addr || port == "0" {
		t.Errorf("fallback address %s; want another port of 127.0.0.1 than %s", got, addr)
	}
	if again, _ := lax.Listen(); again.String() != got.String() {
		t.Errorf("second Listen: %s; want the bound %s", again, got)
	}
}

// TestServerShutdown: when Run's context ends, /readyz answers 503 while
// the listener still accepts, for the drain grace; then the listener
// closes and Run returns nil.
func TestServerShutdown(t *testing.T) {
	const grace = 3 * time.Second
	srv := &Server{Addr: "127.0.0.1:0", DrainGrace: grace, ShutdownTimeout: 10 * time.Second, Log: zerolog.Nop()}
	e := New(zerolog.Nop())
	NewHealth(srv.Draining).Register(NewRouter(e, &auth.StaticTokens{}))
	srv.Handler = e
	addr, cancel, done := start(t, srv)
	readyz := func() int {
		t.Helper()
		resp, err := http.Get("http://" + addr.String() + "/readyz")
		if err != nil {
			t.Fatalf("GET /readyz: %v", err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := readyz(); code != http.StatusOK {
		t.Fatalf("/readyz while serving = %d; want 200", code)
	}
	if srv.Draining() {
		t.Error("Draining while serving; want false")
	}

	stopped := time.Now()
	cancel()
	testenv.Eventually(t, grace, "Draining after the context ended", srv.Draining)
	if code := readyz(); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz in the drain grace = %d; want 503", code)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v; want nil", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Run did not return within a minute of its context's end")
	}
	if d := time.Since(stopped); d < grace {
		t.Errorf("Run returned %s after the context ended; want the grace %s first", d, grace)
	}
	if c, err := net.Dial("tcp", addr.String()); err == nil {
		c.Close()
		t.Error("the listener still accepts after Run returned")
	}
}

// TestServerLimits: the production defaults apply when fields are zero: a
// 64 KiB header limit, and a client that sends no headers is dropped after
// ReadHeaderTimeout.
func TestServerLimits(t *testing.T) {
	srv := &Server{Addr: "127.0.0.1:0", ReadHeaderTimeout: 200 * time.Millisecond, Log: zerolog.Nop(),
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })}
	addr, cancel, done := start(t, srv)
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	f := func(header string, want int) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr.String()+"/", nil)
		req.Header.Set("X-Big", header)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("GET with a %d-byte header: %v", len(header), err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET with a %d-byte header = %d; want %d", len(header), resp.StatusCode, want)
		}
	}
	f(strings.Repeat("x", 60<<10), http.StatusNoContent)
	f(strings.Repeat("x", 80<<10), http.StatusRequestHeaderFieldsTooLarge)

	// A client that opens a connection and sends half a request line.
	c, err := net.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprint(c, "GET / HT")
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.ReadAll(bufio.NewReader(c)); err != nil {
		t.Errorf("a client without headers: %v; want the server to close the connection", err)
	}
}

// start binds srv and runs it until cancel is called; done receives Run's
// result.
func start(t *testing.T, srv *Server) (addr net.Addr, cancel func(), done <-chan error) {
	t.Helper()
	addr, err := srv.Listen()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- srv.Run(ctx) }()
	return addr, cancel, errc
}
