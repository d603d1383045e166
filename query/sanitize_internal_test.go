package query

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/wedsync/pulse/internal/chstore"
	"github.com/wedsync/pulse/internal/event"
)

func TestScrub(t *testing.T) {
	f := func(in, want string) {
		t.Helper()
		if got := scrub(in); got != want {
			t.Errorf("scrub(%q): got %q; want %q", in, got, want)
		}
	}
	f("connection refused", "connection refused")
	f("dial tcp 10.1.2.3:5432: connect: connection refused", "dial tcp [redacted]: connect: connection refused")
	f("GET https://user:pw@auth.internal/health failed", "GET [redacted] failed")
	f("connect to smtp.internal:587 timed out", "connect to [redacted] timed out")
	f("redis at [::1]:6379 down", "redis at [redacted] down")
	f("auth failed: password=hunter2 user=x", "auth failed: password=[redacted] user=x")
	f("token: abc.def", "token=[redacted]")
	f("Auth service returned 503", "Auth service returned 503")
	f("took 812.5 ms at 10:30", "took 812.5 ms at 10:30")
	long := scrub(strings.Repeat("é", 300))
	if len(long) > maxDetailString+len("…") || !strings.HasSuffix(long, "…") {
		t.Errorf("scrub of 600 bytes: got %d bytes %q; want at most %d and an ellipsis", len(long), long, maxDetailString)
	}
	if got := scrub("bad \xff utf8"); got != "bad ? utf8" {
		t.Errorf("scrub of invalid UTF-8: got %q", got)
	}
}

func TestSensitiveKey(t *testing.T) {
	for k, want := range map[string]bool{
		"password": true, "db_password": true, "DSN": true, "database_connection_string": true, "connectionString": true,
		"api_keys": true, "apiKey": true, "internal_service_endpoints": true, "url": true, "health_url": true, "host": true,
		"remote_addr": true, "ip": true, "client_secret": true, "access_token": true, "private_key": true,
		"slow_queries_count": false, "max_connections": false, "recent_failure_rate": false, "status_code": false,
		"circuit": false, "error": false, "reason": false, "configured": false, "p95_ms": false, "keyspace_hits": false,
	} {
		if got := sensitiveKey(k); got != want {
			t.Errorf("sensitiveKey(%q): got %v; want %v", k, got, want)
		}
	}
}

func TestParseDetails(t *testing.T) {
	for _, bad := range []string{"", "not json", "[1,2]", `"text"`, `{"a":1} {"b":2}`, `{"a":`, "null"} {
		if got := parseDetails(bad); got != nil {
			t.Errorf("parseDetails(%q): got %v; want nil", bad, got)
		}
	}
	got := parseDetails(`{"n": 12345678901234567890, "list": ["ok", "http://x.internal/a"], "deep": {"token": "t", "k": {"host": "h"}}, "ok": true, "none": null}`)
	want := map[string]any{
		"n": got["n"], "list": []any{"ok", "[redacted]"}, "deep": map[string]any{"k": map[string]any{}}, "ok": true, "none": nil,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %#v; want %#v", got, want)
	}
	if n, ok := got["n"].(interface{ String() string }); !ok || n.String() != "12345678901234567890" {
		t.Errorf("a large integer: got %v; want it kept exactly", got["n"])
	}
}

func TestConfig(t *testing.T) {
	if err := (Config{}).Validate(); err != nil {
		t.Errorf("zero Config: got %v; want valid", err)
	}
	for _, c := range []Config{{QueryTimeout: -1}, {RetryAfter: -1}, {HealthCacheTTL: -1}, {StaleAfter: -1}} {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v: got valid; want an error", c)
		}
		if _, err := New(c, &chstore.Store{}, nil, zerolog.Nop()); err == nil {
			t.Errorf("New(%+v): got an API; want an error", c)
		}
	}
	if _, err := New(Config{}, nil, nil, zerolog.Nop()); err == nil {
		t.Error("New without a store: got an API; want an error")
	}
	c := Config{}
	c.defaults()
	if c.QueryTimeout != 10*time.Second || c.RetryAfter != 5*time.Second || c.HealthCacheTTL != 30*time.Second || c.StaleAfter != 5*time.Minute || c.Now == nil {
		t.Errorf("defaults: got %+v", c)
	}
}

// TestTargetStatus covers what a stored result can hold beyond what the
// probes write today.
func TestTargetStatus(t *testing.T) {
	a, err := New(Config{}, &chstore.Store{}, nil, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	got := a.target(probeResult{status: "bogus", ts: now, details: "{not json"}, now, true)
	if got.Status != event.StatusUnknown || got.Reason != "unrecognised probe status" || !got.Configured || got.Details != nil {
		t.Errorf("unrecognised status: got %+v; want unknown, configured, no details", got)
	}
	// configured:false only means "not configured" with status unknown.
	got = a.target(probeResult{status: event.StatusCritical, ts: now, details: `{"configured": false}`}, now, false)
	if got.Status != event.StatusCritical || !got.Configured {
		t.Errorf("critical with configured:false: got %+v; want critical and configured", got)
	}
	// A component of several targets, none configured.
	ch := a.component("external", []probeResult{
		{target: "a", status: event.StatusUnknown, ts: now, details: `{"configured": false}`},
		{target: "b", status: event.StatusUnknown, ts: now, details: `{"configured": false}`},
	}, now, false)
	if ch.Configured || ch.Status != event.StatusUnknown || ch.Reason != "no target is configured" || len(ch.Targets) != 2 {
		t.Errorf("no configured target: got %+v", ch)
	}
}
