package auth

import (
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/wedsync/pulse/internal/testenv"
)

// logLines decodes the JSON lines of buf.
func logLines(t *testing.T, buf *testenv.LogBuffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range buf.Lines("{") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

// TestLogRejections: rejected credentials are logged with their reason and
// shape, never their value; a burst of 2,000 rejections from 8 goroutines
// writes one line per reason, the next line after the period counts those
// held back, and accepted credentials are not logged.
func TestLogRejections(t *testing.T) {
	var static StaticTokens
	static.Add("good-static-token-0123456789", Principal{Name: "ops", Scopes: []Scope{ScopeAdmin}})
	j := newTestJWT(t, JWTConfig{})
	var buf testenv.LogBuffer
	a := LogRejections(Chain(j, &static), zerolog.New(&buf), time.Minute)
	var clockMu sync.Mutex
	clock := time.Now()
	a.(*rejectLog).now = func() time.Time { clockMu.Lock(); defer clockMu.Unlock(); return clock }

	const badStatic = "wrong-static-token-sEcReT-4242"
	expired := hs256(t, supabase("user-1", map[string]any{"exp": now.Add(-time.Hour).Unix()}))
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 250 {
				tok := badStatic
				if (g+i)%2 == 0 {
					tok = expired
				}
				if _, err := a.Authenticate(tok); !errors.Is(err, ErrUnauthenticated) {
					t.Errorf("bad token accepted or odd error: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	if _, err := a.Authenticate("good-static-token-0123456789"); err != nil {
		t.Fatalf("good token refused: %v", err)
	}
	lines := logLines(t, &buf)
	if len(lines) != 2 {
		t.Fatalf("a burst of 2000 rejections with 2 reasons wrote %d lines; want 2:\n%v", len(lines), lines)
	}
	reasons := map[string]string{}
	for _, l := range lines {
		reasons[l["reason"].(string)] = l["shape"].(string)
	}
	if reasons["missing or invalid credentials"] != "opaque" || reasons["token is expired"] != "jwt" {
		t.Errorf("reasons and shapes %v; want the static token's (opaque) and the expired JWT's (jwt)", reasons)
	}

	// After the period, the next rejection is logged with the count held back.
	clockMu.Lock()
	clock = clock.Add(time.Minute)
	clockMu.Unlock()
	if _, err := a.Authenticate(badStatic); err == nil {
		t.Fatal("bad token accepted")
	}
	lines = logLines(t, &buf)
	if len(lines) != 3 || lines[2]["suppressed"] != float64(999) {
		t.Errorf("after the period: %d lines, last %v; want 3, the last with suppressed 999", len(lines), lines[len(lines)-1])
	}
	all := buf.String()
	for _, secret := range []string{badStatic, "sEcReT", expired, strings.Split(expired, ".")[1], "good-static-token"} {
		if strings.Contains(all, secret) {
			t.Errorf("the log holds a credential (or part of one) %q:\n%s", secret, all)
		}
	}
}
