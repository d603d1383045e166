package httpapi

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// TestServerSlowClients: clients that trickle their headers (slowloris) or
// their body are cut off by ReadHeaderTimeout and ReadTimeout however
// steadily they trickle, and get no success; oversized headers get 431;
// and while all of them hold connections, other clients are served
// promptly.
func TestServerSlowClients(t *testing.T) {
	const (
		headerTimeout = 400 * time.Millisecond
		readTimeout   = 800 * time.Millisecond
		trickle       = 50 * time.Millisecond // one byte this often: never idle for long
		slowClients   = 20
	)
	srv := &Server{Addr: "127.0.0.1:0", ReadHeaderTimeout: headerTimeout, ReadTimeout: readTimeout, Log: zerolog.Nop(),
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if _, err := io.Copy(io.Discard, r.Body); err != nil {
				w.WriteHeader(http.StatusBadRequest)
				return
			}
			w.WriteHeader(http.StatusNoContent)
		})}
	addr, cancel, done := start(t, srv)
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	type result struct {
		kind   string
		held   time.Duration // from the first byte sent to the server's close
		answer string        // what the server wrote back, if anything
		err    error
	}
	results := make(chan result, 2*slowClients)
	var wg sync.WaitGroup
	slow := func(kind, head, body string) {
		defer wg.Done()
		c, err := net.Dial("tcp", addr.String())
		if err != nil {
			results <- result{kind: kind, err: err}
			return
		}
		defer c.Close()
		var answer strings.Builder
		closed := make(chan struct{})
		go func() { // the server's side: whatever it writes, then EOF
			_, _ = io.Copy(&answer, c)
			close(closed)
		}()
		t0 := time.Now()
		if _, err := io.WriteString(c, head); err != nil {
			results <- result{kind: kind, err: err}
			return
		}
		// Trickle body bytes, then endless header or body bytes, until the
		// server hangs up; give up after 10 s.
		tick := time.NewTicker(trickle)
		defer tick.Stop()
		giveUp := time.NewTimer(10 * time.Second)
		defer giveUp.Stop()
		for i := 0; ; i++ {
			select {
			case <-closed:
				results <- result{kind: kind, held: time.Since(t0), answer: answer.String()}
				return
			case <-giveUp.C:
				results <- result{kind: kind, err: fmt.Errorf("still connected after 10 s")}
				return
			case <-tick.C:
				_, _ = io.WriteString(c, body[i%len(body):i%len(body)+1])
			}
		}
	}
	wg.Add(2 * slowClients)
	for range slowClients {
		go slow("headers", "GET / HTTP/1.1\r\nHost: pulse\r\n", "X-Slow: abcdefghijklmnopqrstuvwxyz\r\n")
		go slow("body", "POST / HTTP/1.1\r\nHost: pulse\r\nContent-Length: 1000000\r\n\r\n", "x")
	}

	// Meanwhile: prompt answers for everyone else, 431 for huge headers.
	client := &http.Client{Timeout: 5 * time.Second}
	get := func(header string) (int, time.Duration) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr.String()+"/", nil)
		if header != "" {
			req.Header.Set("X-Big", header)
		}
		t0 := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET beside the slow clients: %v", err)
		}
		resp.Body.Close()
		return resp.StatusCode, time.Since(t0)
	}
	// Until the slow clients' time is up (the server cuts them off then).
	for t0 := time.Now(); time.Since(t0) < readTimeout; {
		if code, took := get(""); code != http.StatusNoContent || took > time.Second {
			t.Errorf("GET beside %d slow clients = %d in %v; want 204 within 1s", 2*slowClients, code, took)
		}
		if code, _ := get(strings.Repeat("x", 80<<10)); code != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("GET with an 80 KiB header = %d; want 431", code)
		}
	}

	wg.Wait()
	close(results)
	for r := range results {
		limit := headerTimeout
		if r.kind == "body" {
			limit = readTimeout
		}
		switch {
		case r.err != nil:
			t.Errorf("slow %s: %v", r.kind, r.err)
		case r.held < limit-100*time.Millisecond || r.held > limit+3*time.Second:
			t.Errorf("slow %s: cut off after %v; want about %v", r.kind, r.held, limit)
		case r.answer != "" && !strings.HasPrefix(r.answer, "HTTP/1.1 400 "):
			// net/http closes, or answers 400 when the deadline cut a line.
			t.Errorf("slow %s: got %q; want the connection closed, with at most a 400", r.kind, firstLine(r.answer))
		}
	}
}

func firstLine(s string) string {
	line, _, _ := bufio.NewReader(strings.NewReader(s)).ReadLine()
	return string(line)
}
