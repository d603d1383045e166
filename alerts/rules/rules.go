// Package rules reads Pulse's alert rules: a YAML file of instant rules
// (checked against every request the aggregator decodes), window rules
// (checked against ClickHouse every evaluation interval) and scaling rules
// (window rules whose output is a scale recommendation).
//
// Parse and Load validate strictly and report every problem at once, each
// with the line, column and field it concerns: unknown keys, wrong types,
// values outside their enum or range, missing fields, bad durations, a
// resolve threshold on the wrong side of the fire threshold, repeated rule
// names. A Set they return is complete and valid; there is no half-valid
// configuration. Default returns the built-in set, which follows the spec
// (WS-293): slow responses over 5000 ms and status codes of 500 and above.
//
// Thresholds: a rule with op "above" (the default of alert rules) fires
// when its value is greater than threshold and resolves when the value is
// at or below resolve_threshold, which must not be greater than threshold;
// op "below" mirrors it (fires under threshold, resolves at or above
// resolve_threshold). Between the two thresholds a rule keeps its state:
// that gap is the hysteresis that stops a noisy series from flapping.
package rules

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"strings"
	"time"
)

// Severities, from least to most urgent.
const (
	SeverityInfo     = "info"
	SeverityWarning  = "warning"
	SeverityCritical = "critical"
	SeverityPage     = "page"
)

// Severities lists the valid severities in order of urgency.
var Severities = []string{SeverityInfo, SeverityWarning, SeverityCritical, SeverityPage}

// Metrics of window and scaling rules.
const (
	// MetricP50, MetricP95 and MetricP99 are quantiles of
	// response_time_ms over the window's requests, in milliseconds: exact
	// for windows under 5 minutes (raw requests), within 0.75% from the
	// rollups' latency histograms for longer ones (see alerts.windowQuery
	// for how such a window aligns to whole minutes).
	MetricP50 = "p50_ms"
	MetricP95 = "p95_ms"
	MetricP99 = "p99_ms"
	// MetricErrorRate is the share of requests with status 500 or above
	// (server failures), in [0, 1], as the query API defines error_rate.
	MetricErrorRate = "error_rate"
	// MetricThroughput is requests per second over the window: the ingest
	// throughput the fleet reports.
	MetricThroughput = "throughput_rps"
	// MetricThroughputDrop is 1 - requests / requests in the same window a
	// week earlier: 0.5 means half the traffic of last week. Negative
	// when traffic grew. No data when the week-earlier window holds fewer
	// than max(1, min_requests) requests.
	MetricThroughputDrop = "throughput_drop"
	// MetricResource is the average utilisation, in [0, 1], of the
	// resource samples in the window.
	MetricResource = "resource_utilisation"
	// MetricHealth is the share, in [0, 1], of health probe runs in the
	// window whose status was critical, among the runs with a known status.
	MetricHealth = "health_critical"
)

// Metrics lists the valid metrics.
var Metrics = []string{MetricP50, MetricP95, MetricP99, MetricErrorRate, MetricThroughput,
	MetricThroughputDrop, MetricResource, MetricHealth}

// RequestMetric reports whether m is computed from the requests table.
func RequestMetric(m string) bool {
	switch m {
	case MetricP50, MetricP95, MetricP99, MetricErrorRate, MetricThroughput, MetricThroughputDrop:
		return true
	}
	return false
}

// No-data behaviours of window rules: what a series does in an evaluation
// that found no data for it (no rows, or fewer than min_requests).
const (
	NoDataKeep    = "keep"    // stay as it is: firing stays firing, pending does not advance
	NoDataResolve = "resolve" // a firing alert resolves, a pending one is dropped
	NoDataAlert   = "alert"   // no data counts as the condition holding
)

// Directions of comparison of window rules.
const (
	Above = "above"
	Below = "below"
)

// Directions of scaling rules.
const (
	ScaleUp   = "up"
	ScaleDown = "down"
)

// Fields and operators of instant rules.
const (
	FieldResponseTime = "response_time_ms"
	FieldStatusCode   = "status_code"
)

// InstantOps lists the operators of instant rules.
var InstantOps = []string{">", ">=", "<", "<=", "==", "!="}

// Duration is a time.Duration written as in the rules file ("5m").
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string {
	s := time.Duration(d).String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// MarshalJSON writes d as a duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// Filters restrict the rows a rule reads. An empty field does not filter.
// Which fields apply depends on the metric: service and endpoint for
// request metrics and instant rules, resource and host for
// resource_utilisation, component and target for health_critical.
type Filters struct {
	Service   string `json:"service,omitempty"`
	Endpoint  string `json:"endpoint,omitempty"`
	Resource  string `json:"resource,omitempty"`
	Host      string `json:"host,omitempty"`
	Component string `json:"component,omitempty"`
	Target    string `json:"target,omitempty"`
}

// Each calls f with the name and value of every filter that is set, in a
// fixed order.
func (f Filters) Each(fn func(name, value string)) {
	for _, kv := range [...][2]string{{"service", f.Service}, {"endpoint", f.Endpoint}, {"resource", f.Resource},
		{"host", f.Host}, {"component", f.Component}, {"target", f.Target}} {
		if kv[1] != "" {
			fn(kv[0], kv[1])
		}
	}
}

// Instant is a rule checked against every request: it matches when the
// request's Field compares to Value with Op. Matches are grouped by the
// GroupBy labels; the first match of a group fires one alert, later ones
// only add to its count, and the alert resolves once Cooldown passed
// without a match.
type Instant struct {
	Name     string            `json:"name"`
	Field    string            `json:"field"` // response_time_ms or status_code
	Op       string            `json:"op"`    // >, >=, <, <=, ==, !=
	Value    float64           `json:"value"`
	GroupBy  []string          `json:"group_by"` // a subset of service, endpoint
	Filters  Filters           `json:"filters"`
	Cooldown Duration          `json:"cooldown"`
	Severity string            `json:"severity"`
	Labels   map[string]string `json:"labels,omitempty"`
	Line     int               `json:"-"` // where the rule starts in its file
}

// Matches reports whether v matches the rule's comparison. NaN and the
// infinities, which no valid request carries, never match.
func (r *Instant) Matches(v float64) bool {
	if !finite(v) {
		return false
	}
	switch r.Op {
	case ">":
		return v > r.Value
	case ">=":
		return v >= r.Value
	case "<":
		return v < r.Value
	case "<=":
		return v <= r.Value
	case "==":
		return v == r.Value
	case "!=":
		return v != r.Value
	}
	return false
}

// Window is a rule evaluated against ClickHouse every interval over the
// last Window: its Metric, per GroupBy group, compared to Threshold. It
// fires once the condition held for For, and resolves only past
// ResolveThreshold (see the package doc). A scaling rule is a Window rule
// with Direction and Factor set; its alerts are scale recommendations.
type Window struct {
	Name             string            `json:"name"`
	Metric           string            `json:"metric"`
	Filters          Filters           `json:"filters"`
	GroupBy          []string          `json:"group_by"`
	Op               string            `json:"op"` // above or below
	Threshold        float64           `json:"threshold"`
	ResolveThreshold float64           `json:"resolve_threshold"`
	For              Duration          `json:"for"`
	Window           Duration          `json:"window"`
	NoData           string            `json:"no_data"`
	MinRequests      uint64            `json:"min_requests,omitempty"`
	Severity         string            `json:"severity"`
	Labels           map[string]string `json:"labels,omitempty"`
	Direction        string            `json:"direction,omitempty"` // scaling rules: up or down
	Factor           float64           `json:"factor,omitempty"`    // scaling rules: suggested capacity multiplier
	Line             int               `json:"-"`
}

// Scaling reports whether r is a scaling rule.
func (r *Window) Scaling() bool { return r.Direction != "" }

// Fires reports whether v is past the fire threshold.
func (r *Window) Fires(v float64) bool {
	if v != v {
		return false
	}
	if r.Op == Below {
		return v < r.Threshold
	}
	return v > r.Threshold
}

// Resolves reports whether v is past the resolve threshold, back on the
// good side.
func (r *Window) Resolves(v float64) bool {
	if v != v {
		return false
	}
	if r.Op == Below {
		return v >= r.ResolveThreshold
	}
	return v <= r.ResolveThreshold
}

// Set is a complete, valid set of rules.
type Set struct {
	Source  string    `json:"source"` // "built-in" or the path of the file
	Instant []Instant `json:"instant"`
	Window  []Window  `json:"window"`
	Scaling []Window  `json:"scaling"`
}

// Len is the number of rules in s.
func (s *Set) Len() int { return len(s.Instant) + len(s.Window) + len(s.Scaling) }

// Evaluated returns the window and scaling rules, the ones the window
// evaluator runs.
func (s *Set) Evaluated() []Window {
	out := make([]Window, 0, len(s.Window)+len(s.Scaling))
	out = append(out, s.Window...)
	return append(out, s.Scaling...)
}

// SourceBuiltIn is the Source of Default.
const SourceBuiltIn = "built-in"

//go:embed default.yaml
var defaultYAML []byte

// DefaultYAML returns the text of the built-in rules.
func DefaultYAML() []byte { return append([]byte(nil), defaultYAML...) }

// Default returns the built-in rules, which follow the spec. A rules file
// replaces them as a whole.
func Default() *Set {
	s, err := parse("default.yaml", defaultYAML)
	if err != nil {
		panic("built-in alert rules are invalid: " + err.Error())
	}
	s.Source = SourceBuiltIn
	return s
}

// Load reads and validates the rules file at path. A file that cannot be
// read is a plain error; an invalid one is an *Errors listing every
// problem with its line.
func Load(path string) (*Set, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read rules file: %w", err)
	}
	s, err := parse(path, data)
	if err != nil {
		return nil, err
	}
	s.Source = path
	return s, nil
}

// Parse validates rules given as YAML. An invalid document is an *Errors.
func Parse(data []byte) (*Set, error) { return parse("", data) }

// Error is one problem of a rules file.
type Error struct {
	Line    int    `json:"line"`   // 1-based; 0 when unknown
	Column  int    `json:"column"` // 1-based; 0 when unknown
	Field   string `json:"field"`  // e.g. window[1].for; "" for a YAML syntax error
	Message string `json:"message"`
}

func (e Error) String() string {
	var b strings.Builder
	if e.Line > 0 {
		fmt.Fprintf(&b, "%d:", e.Line)
		if e.Column > 0 {
			fmt.Fprintf(&b, "%d:", e.Column)
		}
		b.WriteByte(' ')
	}
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Message)
	return b.String()
}

// Errors is every problem of one rules file, in the order of the file.
type Errors struct {
	File string
	List []Error
}

// Error renders one problem a line: "file:line:column: field: message".
func (e *Errors) Error() string {
	lines := make([]string, len(e.List))
	for i, x := range e.List {
		if e.File != "" {
			lines[i] = e.File + ":" + x.String()
		} else {
			lines[i] = x.String()
		}
	}
	return strings.Join(lines, "\n")
}

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }
