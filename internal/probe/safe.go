package probe

import (
	"encoding/json"
	"math"
	"regexp"
	"strings"
	"time"

	"github.com/wedsync/pulse/internal/event"
	"github.com/wedsync/pulse/internal/safeerr"
)

// cause maps errors to safe words (see internal/safeerr): the error texts
// of drivers quote hosts, users and URLs, none of which may leave the probe.
var cause = safeerr.Cause

// notConfigured is the result of a component or target that has no
// configuration. configured=false tells the query API to leave it out of
// the overall status.
func notConfigured(ts time.Time, component, target string) event.HealthResult {
	return result(ts, component, target, event.StatusUnknown, 0, reasonDetails{Configured: false, Reason: "not configured"})
}

type reasonDetails struct {
	Configured bool   `json:"configured"`
	Reason     string `json:"reason"`
}

// result assembles a health result; details is marshalled to a JSON object.
func result(ts time.Time, component, target, status string, ms float64, details any) event.HealthResult {
	d, err := json.Marshal(details)
	if err != nil || len(d) == 0 || d[0] != '{' || len(d) > event.MaxDetailsLen {
		d = []byte(`{"details":"unavailable"}`)
	}
	return event.HealthResult{Timestamp: ts.UTC(), Component: component, Target: target, Status: status,
		ResponseTimeMS: roundMS(ms), Details: d}
}

// ms is d in milliseconds.
func ms(d time.Duration) float64 { return roundMS(float64(d) / float64(time.Millisecond)) }

// roundMS rounds to microseconds and keeps the value within what a health
// result may carry.
func roundMS(v float64) float64 {
	if math.IsNaN(v) || v < 0 {
		return 0
	}
	return math.Min(math.Round(v*1000)/1000, event.MaxResponseTimeMS)
}

// round4 rounds a ratio for details.
func round4(v float64) float64 { return math.Round(v*1e4) / 1e4 }

// never is a latency bound no check reaches: byLatency(d, x, never) is
// healthy or degraded.
const never = time.Duration(math.MaxInt64)

// byLatency rates a latency: below healthy is healthy, below degraded is
// degraded, else critical.
func byLatency(d, healthy, degraded time.Duration) string {
	switch {
	case d < healthy:
		return event.StatusHealthy
	case d < degraded:
		return event.StatusDegraded
	}
	return event.StatusCritical
}

// worse returns the worse of two statuses among healthy, degraded and
// critical.
func worse(a, b string) string {
	rank := map[string]int{event.StatusHealthy: 0, event.StatusDegraded: 1, event.StatusCritical: 2}
	if rank[b] > rank[a] {
		return b
	}
	return a
}

var sqlLiteral = regexp.MustCompile(`'(?:[^']|'')*'`)

// scrubSQL replaces string literals in a statement's text with '?', in
// case pg_stat_statements kept one it could not normalise.
func scrubSQL(q string) string { return sqlLiteral.ReplaceAllString(q, "'?'") }

// Hostname returns name as a host label: lower case, characters outside
// a-z, 0-9, '.', '_' and '-' replaced by '-', at most 253 bytes, never
// empty.
func Hostname(name string) string {
	name = strings.ToLower(strings.TrimSpace(name))
	b := []byte(name)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			b[i] = '-'
		}
	}
	if len(b) > 253 {
		b = b[:253]
	}
	if len(b) == 0 {
		return "unknown-host"
	}
	return string(b)
}
