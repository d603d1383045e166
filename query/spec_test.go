package query_test

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wedsync/pulse/internal/event"
	"github.com/wedsync/pulse/internal/testenv"
	"github.com/wedsync/pulse/query"
)

// The spec's interfaces (WS-293, SystemHealthMonitor.getSystemHealth and
// its ComponentHealthStatus results), as a client written against them
// reads the answers: each field with its JSON type; optional fields (a
// TypeScript "?") may be absent or null, required ones must be there.
type specField struct {
	name     string
	kind     string // string, number, object, array, datetime, enum:a|b|c, any
	optional bool
}

var (
	// SystemHealthResponse: overall_status, components, performance_metrics,
	// last_updated, uptime.
	specHealth = []specField{
		{"overall_status", "enum:healthy|degraded|critical", false},
		{"components", "array", false},
		{"performance_metrics", "object", false},
		{"last_updated", "datetime", false},
		{"uptime", "object", false},
	}
	// performance_metrics.avg_response_time (the spec's unit test reads it).
	specPerformanceMetrics = []specField{{"avg_response_time", "number", false}}
	// ComponentHealth: name, status, response_time_ms?, details?, error?,
	// last_error?.
	specComponent = []specField{
		{"name", "string", false},
		{"status", "enum:healthy|degraded|critical|unknown", false}, // unknown: Pulse's, for a component it cannot see
		{"response_time_ms", "number", true},
		{"details", "object", true},
		{"error", "string", true},
		{"last_error", "string", true},
	}
	// The spec's load-test figures, which /performance gives under the
	// same names, and its performance query schema (timeframe, metric).
	specPerformance = []specField{
		{"timeframe", "enum:1h|24h|7d|30d", false},
		{"avg_response_time", "number", false},
		{"p95_response_time", "number", false},
	}
	// The spec's component names (getSystemHealth's checkAllComponents).
	specComponents = []string{"database", "auth", "realtime", "api", "external_services"}
)

// checkSpec decodes raw as a JSON object and checks fields against it,
// returning the object.
func checkSpec(t *testing.T, what string, raw json.RawMessage, fields []specField) map[string]json.RawMessage {
	t.Helper()
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil || obj == nil {
		t.Fatalf("%s: not a JSON object: %s", what, raw)
	}
	for _, f := range fields {
		v, ok := obj[f.name]
		if !ok || string(v) == "null" {
			if !f.optional {
				t.Errorf("%s: spec field %q is missing (got %s)", what, f.name, v)
			}
			continue
		}
		if err := specKind(v, f.kind); err != "" {
			t.Errorf("%s.%s: %s; got %s", what, f.name, err, v)
		}
	}
	return obj
}

// specKind reports why v is not of kind, or "".
func specKind(v json.RawMessage, kind string) string {
	var x any
	if err := json.Unmarshal(v, &x); err != nil {
		return "not JSON"
	}
	switch {
	case kind == "any":
		return ""
	case kind == "number":
		if _, ok := x.(float64); !ok {
			return "want a number"
		}
	case kind == "object":
		if _, ok := x.(map[string]any); !ok {
			return "want an object"
		}
	case kind == "array":
		if _, ok := x.([]any); !ok {
			return "want an array"
		}
	case kind == "string", kind == "datetime", strings.HasPrefix(kind, "enum:"):
		s, ok := x.(string)
		if !ok {
			return "want a string"
		}
		if kind == "datetime" {
			if _, err := time.Parse(time.RFC3339Nano, s); err != nil {
				return "want an ISO 8601 date-time"
			}
		}
		if values, ok := strings.CutPrefix(kind, "enum:"); ok && !slices.Contains(strings.Split(values, "|"), s) {
			return "want one of " + values
		}
	}
	return ""
}

// TestSpecContract reads health and performance answers, from stored
// probe results and requests, the way a client built from the spec's
// interfaces does: every spec field is there with its type.
func TestSpecContract(t *testing.T) {
	now := testNow()
	s := testenv.ClickHouse(t)
	insertHealth(t, s, []healthRow{
		{ts: now.Add(-10 * time.Second), component: "database", status: event.StatusCritical,
			details: `{"error": "unreachable", "cause": "connection refused"}`},
		{ts: now.Add(-10 * time.Second), component: "auth", status: event.StatusHealthy, responseTimeMS: 80, details: `{"auth_service_status": 200}`},
		{ts: now.Add(-10 * time.Second), component: "realtime", status: event.StatusUnknown, details: `{"configured": false, "reason": "not configured"}`},
		{ts: now.Add(-10 * time.Second), component: "api", status: event.StatusHealthy, responseTimeMS: 120},
		{ts: now.Add(-10 * time.Second), component: "external", target: "payments", status: event.StatusHealthy, responseTimeMS: 90},
		{ts: now.Add(-10 * time.Second), component: "external", target: "email", status: event.StatusCritical,
			details: `{"error": "unreachable", "cause": "timeout", "circuit": "open"}`},
		{ts: now.Add(-10 * time.Second), component: "pipeline", target: "nats", status: event.StatusHealthy, responseTimeMS: 1},
	})
	insertRequests(t, s, currentRequests(now))
	e, _ := newServer(t, query.Config{Now: func() time.Time { return now }}, s, nil)

	for _, target := range []string{
		"/api/admin/system/health",
		"/api/admin/system/health?detailed=true&timeframe=24h",
		"/api/admin/system/health?component=database",
		"/api/admin/system/health?component=external",
	} {
		t.Run(target, func(t *testing.T) {
			r := testenv.Get(t, e, target, adminToken)
			if r.Status != 200 {
				t.Fatalf("got %d %s; want 200", r.Status, r.Body)
			}
			h := checkSpec(t, "health", r.Body, specHealth)
			pm := checkSpec(t, "performance_metrics", h["performance_metrics"], specPerformanceMetrics)
			var avg float64
			if json.Unmarshal(pm["avg_response_time"], &avg) != nil || avg <= 0 {
				t.Errorf("performance_metrics.avg_response_time %s; want above 0 (the spec's test)", pm["avg_response_time"])
			}
			var comps []json.RawMessage
			if err := json.Unmarshal(h["components"], &comps); err != nil {
				t.Fatal(err)
			}
			byName := map[string]map[string]json.RawMessage{}
			for i, c := range comps {
				obj := checkSpec(t, "components["+strconv.Itoa(i)+"]", c, specComponent)
				var name string
				_ = json.Unmarshal(obj["name"], &name)
				byName[name] = obj
			}
			want := specComponents
			switch {
			case strings.Contains(target, "component=database"):
				want = []string{"database"}
			case strings.Contains(target, "component=external"):
				want = []string{"external_services"}
			}
			for _, n := range want {
				if byName[n] == nil {
					t.Errorf("no component %q in %s", n, h["components"])
				}
			}
			// A failed component says so in the spec's error (which its
			// test wants to contain "failed") and last_error.
			if db := byName["database"]; db != nil {
				var status, errText, last string
				_ = json.Unmarshal(db["status"], &status)
				_ = json.Unmarshal(db["error"], &errText)
				_ = json.Unmarshal(db["last_error"], &last)
				if status != "critical" || !strings.Contains(errText, "failed") || last != "unreachable: connection refused" {
					t.Errorf("database: status %q, error %q, last_error %q; want critical, an error with \"failed\", the cause", status, errText, last)
				}
			}
			if ext := byName["external_services"]; ext != nil {
				var errText, last string
				_ = json.Unmarshal(ext["error"], &errText)
				_ = json.Unmarshal(ext["last_error"], &last)
				if errText != "1 of 2 targets critical: email" || last != "email: unreachable: timeout" {
					t.Errorf("external_services: error %q, last_error %q", errText, last)
				}
			}
			if byName["auth"] != nil {
				if _, ok := byName["auth"]["error"]; ok {
					t.Errorf("auth is healthy but has an error: %s", byName["auth"]["error"])
				}
			}
		})
	}

	for _, target := range []string{
		"/api/admin/system/performance",
		"/api/admin/system/performance?timeframe=1h&metric=response_time",
		"/api/admin/system/performance?timeframe=30d&metric=error_rate",
	} {
		t.Run(target, func(t *testing.T) {
			r := testenv.Get(t, e, target, adminToken)
			if r.Status != 200 {
				t.Fatalf("got %d %s; want 200", r.Status, r.Body)
			}
			p := checkSpec(t, "performance", r.Body, specPerformance)
			var got query.PerformanceResponse
			if err := json.Unmarshal(r.Body, &got); err != nil {
				t.Fatal(err)
			}
			if got.Summary == nil || got.Summary.AvgMS == nil || *got.AvgResponseTime != *got.Summary.AvgMS || *got.P95ResponseTime != *got.Summary.P95MS {
				t.Errorf("avg_response_time %s, p95_response_time %s; want the summary's avg_ms and p95_ms", p["avg_response_time"], p["p95_response_time"])
			}
		})
	}
}
