package alerts_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/wedsync/pulse/alerts"
	"github.com/wedsync/pulse/internal/event"
	"github.com/wedsync/pulse/internal/testenv"
)

// tail runs Tail on a connection of its own until the test ends.
func tail(t *testing.T, n *natsEnv, severities []string) *testenv.LogBuffer {
	t.Helper()
	nc, _ := n.conn(t)
	out := &testenv.LogBuffer{}
	testenv.Run(t, func(ctx context.Context) error {
		return alerts.Tail(ctx, nc, alerts.TailConfig{Severities: severities}, out)
	})
	testenv.Eventually(t, 5*time.Second, "tail subscribed", func() bool { return strings.HasPrefix(out.String(), "# listening on ") })
	return out
}

// TestTail: `pulse alerts tail` prints one readable line per alert the
// evaluators publish, filters by severity, and defuses control
// characters in what it prints.
func TestTail(t *testing.T) {
	n := newNATS(t)
	all := tail(t, n, nil)
	warnings := tail(t, n, []string{"warning"})
	in := newInstant(t, alerts.InstantConfig{}, mustParse(t, instantRules(t, time.Second)), n.js, nop)
	testenv.Run(t, in.Run)
	in.Observe([]event.Request{
		req(time.Now(), "api", "/pay", 502, 10),
		req(time.Now(), "web", "/slow\x1b[2J", 200, 6000),
	})
	testenv.Eventually(t, 10*time.Second, "firing and resolved lines", func() bool {
		return strings.Count(all.String(), "RESOLVED") == 2
	})
	lines := strings.Split(strings.TrimSpace(all.String()), "\n")
	if len(lines) != 5 {
		t.Fatalf("got %d lines; want a header and 4 alert lines:\n%s", len(lines), all.String())
	}
	var fired string
	for _, l := range lines {
		if strings.Contains(l, "FIRING") && strings.Contains(l, "server_error") {
			fired = l
		}
	}
	for _, want := range []string{"CRITICAL", "FIRING", "server_error", "endpoint=/pay service=api", "value=502 threshold=500 count=1", "status_code >= 500"} {
		if !strings.Contains(fired, want) {
			t.Errorf("line %q lacks %q", fired, want)
		}
	}
	if _, err := time.Parse(time.RFC3339, strings.Fields(fired)[0]); err != nil {
		t.Errorf("line %q does not start with an RFC 3339 time", fired)
	}
	if strings.Contains(all.String(), "\x1b") || !strings.Contains(all.String(), "/slow?[2J") {
		t.Errorf("control characters were printed raw:\n%q", all.String())
	}
	w := warnings.String()
	if !strings.Contains(w, "slow_response") || strings.Contains(w, "server_error") {
		t.Errorf("--severity warning printed:\n%s\nwant the slow_response lines only", w)
	}
	if !strings.Contains(w, "pulse.alerts.warning.>") {
		t.Errorf("header %q does not name the warning subject", strings.Split(w, "\n")[0])
	}
}

// TestTailFiring: an alert that keeps firing announces nothing more, so
// `pulse alerts tail --firing` starts with what is firing now (of the
// severities asked for), read from the state bucket; without state yet it
// says none is.
func TestTailFiring(t *testing.T) {
	n := newNATS(t)
	firing := func(severities []string) string {
		t.Helper()
		nc, _ := n.conn(t)
		out := &testenv.LogBuffer{}
		testenv.Run(t, func(ctx context.Context) error {
			return alerts.Tail(ctx, nc, alerts.TailConfig{Severities: severities, Firing: true}, out)
		})
		testenv.Eventually(t, 5*time.Second, "tail subscribed", func() bool { return strings.Contains(out.String(), "# listening on ") })
		return out.String()
	}
	if got := firing(nil); !strings.HasPrefix(got, "# firing now: 0\n# listening on ") {
		t.Errorf("before any alert:\n%s\nwant \"# firing now: 0\" then the header", got)
	}
	in := newInstant(t, alerts.InstantConfig{}, mustParse(t, instantRules(t, time.Hour)), n.js, nop)
	testenv.Run(t, in.Run)
	in.Observe([]event.Request{req(time.Now(), "api", "/pay", 502, 10)})
	testenv.Eventually(t, 10*time.Second, "server_error in the state bucket", func() bool {
		as, err := alerts.Firing(testCtx(t), n.kv)
		return err == nil && len(as) == 1
	})
	got := firing(nil)
	lines := strings.Split(got, "\n")
	if len(lines) < 3 || lines[0] != "# firing now: 1" || !strings.Contains(lines[1], "FIRING") ||
		!strings.Contains(lines[1], "server_error") || !strings.HasPrefix(lines[2], "# listening on ") {
		t.Errorf("with server_error firing:\n%s\nwant \"# firing now: 1\", its FIRING line, then the header", got)
	}
	if got := firing([]string{"warning"}); !strings.HasPrefix(got, "# firing now: 0\n") {
		t.Errorf("--severity warning with a critical alert firing:\n%s\nwant none firing", got)
	}
}

// TestTailBadSeverity: an unknown severity is refused before subscribing.
func TestTailBadSeverity(t *testing.T) {
	n := newNATS(t)
	err := alerts.Tail(context.Background(), n.nc, alerts.TailConfig{Severities: []string{"urgent"}}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "urgent") {
		t.Fatalf("got %v; want an error naming the severity", err)
	}
}

// TestTailNotAnAlert: a message on an alert subject that is not an alert
// is shown as such, not skipped silently and not a crash.
func TestTailNotAnAlert(t *testing.T) {
	n := newNATS(t)
	out := tail(t, n, nil)
	if err := n.nc.Publish("pulse.alerts.critical.junk", []byte("not json")); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 5*time.Second, "the junk line", func() bool { return strings.Contains(out.String(), "not an alert on pulse.alerts.critical.junk") })
}
