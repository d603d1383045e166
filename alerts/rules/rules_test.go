package rules_test

import (
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/wedsync/pulse/alerts/rules"
)

// TestDefault: the built-in rules hold the spec's thresholds.
func TestDefault(t *testing.T) {
	s := rules.Default()
	if s.Source != rules.SourceBuiltIn || len(s.Instant) != 2 || len(s.Window) != 6 || len(s.Scaling) != 4 {
		t.Fatalf("got %s with %d/%d/%d rules; want built-in with 2/6/4", s.Source, len(s.Instant), len(s.Window), len(s.Scaling))
	}
	slow, errs := s.Instant[0], s.Instant[1]
	if slow.Name != "slow_response" || slow.Field != "response_time_ms" || slow.Op != ">" || slow.Value != 5000 {
		t.Errorf("slow rule %+v; want response_time_ms > 5000", slow)
	}
	if !slow.Matches(5000.1) || slow.Matches(5000) {
		t.Errorf("slow_response must match above 5000 ms only")
	}
	if errs.Name != "server_error" || errs.Field != "status_code" || errs.Op != ">=" || errs.Value != 500 {
		t.Errorf("error rule %+v; want status_code >= 500", errs)
	}
	if !errs.Matches(500) || errs.Matches(499) {
		t.Errorf("server_error must match 500 and above")
	}
	metrics := map[string]bool{}
	for _, w := range s.Evaluated() {
		metrics[w.Metric] = true
		if w.ResolveThreshold == w.Threshold && w.Metric != rules.MetricHealth {
			t.Errorf("rule %s has no hysteresis", w.Name)
		}
	}
	for _, m := range []string{rules.MetricP95, rules.MetricErrorRate, rules.MetricThroughputDrop, rules.MetricResource, rules.MetricHealth, rules.MetricThroughput} {
		if !metrics[m] {
			t.Errorf("no built-in rule on %s", m)
		}
	}
	var up, down bool
	for _, sc := range s.Scaling {
		up = up || sc.Direction == rules.ScaleUp && sc.Factor > 1
		down = down || sc.Direction == rules.ScaleDown && sc.Op == rules.Below && sc.Factor < 1
	}
	if !up || !down {
		t.Errorf("built-in scaling rules lack a scale_up or a sustained-low-load scale_down")
	}
	if string(rules.DefaultYAML()) == "" {
		t.Error("DefaultYAML is empty")
	}
}

// TestThresholds: fire and resolve on each side, with hysteresis between.
func TestThresholds(t *testing.T) {
	above := rules.Window{Op: rules.Above, Threshold: 1000, ResolveThreshold: 800}
	below := rules.Window{Op: rules.Below, Threshold: 0.25, ResolveThreshold: 0.4}
	f := func(w rules.Window, v float64, fires, resolves bool) {
		t.Helper()
		if w.Fires(v) != fires || w.Resolves(v) != resolves {
			t.Errorf("%s %v/%v at %v: fires %v resolves %v; want %v %v", w.Op, w.Threshold, w.ResolveThreshold, v, w.Fires(v), w.Resolves(v), fires, resolves)
		}
	}
	f(above, 1001, true, false)
	f(above, 1000, false, false)
	f(above, 900, false, false)
	f(above, 800, false, true)
	f(above, math.NaN(), false, false)
	f(below, 0.2, true, false)
	f(below, 0.3, false, false)
	f(below, 0.4, false, true)
	f(below, math.NaN(), false, false)
	in := rules.Instant{Op: "!=", Value: 200}
	if !in.Matches(201) || in.Matches(200) || in.Matches(math.NaN()) || in.Matches(math.Inf(1)) {
		t.Errorf("!= 200 misbehaves")
	}
}

// TestParseDefaults: omitted optional fields take documented defaults.
func TestParseDefaults(t *testing.T) {
	s, err := rules.Parse([]byte(`
instant:
  - {name: e, field: status_code, op: ">=", value: 500}
window:
  - {name: w, metric: p95_ms, threshold: 1000}
scaling:
  - {name: d, direction: down, factor: 0.5, metric: throughput_rps, threshold: 10}
`))
	if err != nil {
		t.Fatal(err)
	}
	i, w, d := s.Instant[0], s.Window[0], s.Scaling[0]
	if i.Cooldown.D() != time.Minute || i.Severity != "warning" || strings.Join(i.GroupBy, ",") != "service,endpoint" {
		t.Errorf("instant defaults %+v", i)
	}
	if w.Window.D() != 5*time.Minute || w.For != 0 || w.NoData != "keep" || w.Op != "above" || w.ResolveThreshold != 1000 || w.Severity != "warning" || len(w.GroupBy) != 0 {
		t.Errorf("window defaults %+v", w)
	}
	if d.Op != "below" || d.Severity != "info" || !d.Scaling() {
		t.Errorf("scale-down defaults %+v; want op below, severity info", d)
	}
	b, _ := json.Marshal(w)
	if !strings.Contains(string(b), `"window":"5m"`) || !strings.Contains(string(b), `"for":"0s"`) {
		t.Errorf("durations as JSON: %s", b)
	}
}

// TestParseErrors: all problems at once, each with its line and field.
func TestParseErrors(t *testing.T) {
	f := func(yaml string, want ...string) {
		t.Helper()
		_, err := rules.Parse([]byte(yaml))
		var errs *rules.Errors
		if !errors.As(err, &errs) {
			t.Fatalf("got %v; want *rules.Errors for\n%s", err, yaml)
		}
		if len(errs.List) != len(want) {
			t.Errorf("got %d problems; want %d:\n%s", len(errs.List), len(want), err)
		}
		for _, w := range want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("got:\n%s\nwant a line containing %q", err, w)
			}
		}
	}
	f("", "1: the file holds no rules")
	f("# nothing\n", "1: the file holds no rules")
	f("instant: []\nwindow: []\n", "the file holds no rules")
	f("- a\n- b\n", "1:1: (top level): must be a mapping")
	f("instant: {name: x}\n", "1:10: instant: must be a list of rules")
	f("instant:\n  - name: x\n    field: status_code\n    op: '>'\n    value: 500\n---\ninstant: []\n", "6: the file must hold one YAML document")
	f("instant:\n  - {name: x, field: status_code, op: '>', value: 500, group_by: [service, service]}\n",
		`instant[0].group_by[1]: "service" is listed twice`)
	f("instant:\n  - {name: x, field: status_code, op: '>', value: 500, group_by: service}\n", "instant[0].group_by: must be a list")
	f("instant:\n  - {name: x, field: status_code, op: '>', value: 500, labels: {Team: a, ok: [1]}}\n",
		"instant[0].labels.Team: label names", "instant[0].labels.ok: must be a string")
	f("instant:\n  - {name: x, field: response_time_ms, op: '>', value: .nan}\n", "instant[0].value: must be a finite number")
	f("instant:\n  - {name: x, field: response_time_ms, op: '>', value: -1}\n", "a response_time_ms is between 0")
	f("window:\n  - {name: x, metric: p95_ms, threshold: 1, for: -1m}\n", "window[0].for: must be between 0s and 24h")
	f("window:\n  - {name: x, metric: p95_ms, threshold: 1, window: 90500ms}\n", "window[0].window: must be whole seconds")
	f("window:\n  - {name: x, metric: throughput_drop, threshold: 2}\n", "throughput_drop is 1 - requests")
	f("window:\n  - {name: x, metric: health_critical, threshold: 0.5, filters: {component: cache, target: ''}}\n",
		`filters.component: "cache" is not one of`, "filters.target: must be 1-128 characters")
	f("window:\n  - {name: x, metric: resource_utilisation, threshold: 0.5, filters: {resource: gpu, host: Big}}\n",
		`filters.resource: "gpu" is not one of`, `filters.host: "Big" is not a host name`)
	f("window:\n  - {name: x, metric: p95_ms, threshold: 1, min_requests: -5}\n", "min_requests: must be an integer between 0")
	f("window:\n  - {name: x, metric: p95_ms, threshold: 1, filters: [service]}\n", "window[0].filters: must be a mapping")
	f("version: one\ninstant: []\n", `version: must be an integer, not the string "one"`)
	f("window:\n  - {name: x, metric: p95_ms, threshold: 1, severity: 3}\n", "window[0].severity: must be a string, not the number 3")
	f("window:\n  - {name: x, metric: p95_ms, threshold: 1, no_data: true}\n", `window[0].no_data: must be a string, not true/false "true"`)
}

// TestParseAliases: YAML anchors and aliases are followed.
func TestParseAliases(t *testing.T) {
	s, err := rules.Parse([]byte(`
window:
  - &base {name: a, metric: error_rate, threshold: 0.1, labels: {team: core}}
instant:
  - name: b
    field: status_code
    op: ">="
    value: 500
    labels: {team: core}
`))
	if err != nil {
		t.Fatal(err)
	}
	if s.Window[0].Labels["team"] != "core" || s.Instant[0].Labels["team"] != "core" {
		t.Errorf("labels %v %v", s.Window[0].Labels, s.Instant[0].Labels)
	}
}

// TestLoad: a missing file is a read error; a file's errors carry its name.
func TestLoad(t *testing.T) {
	if _, err := rules.Load("no-such-file.yaml"); err == nil || !strings.Contains(err.Error(), "read rules file") {
		t.Errorf("got %v; want a read error", err)
	}
	_, err := rules.Load("../testdata/rules/bad_version.yaml")
	if err == nil || !strings.HasPrefix(err.Error(), "../testdata/rules/bad_version.yaml:2:10: version:") {
		t.Errorf("got %v; want errors prefixed with the file name", err)
	}
	s, err := rules.Load("../testdata/rules/good_full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if s.Source != "../testdata/rules/good_full.yaml" || s.Len() != 8 || s.Instant[0].Labels["team"] != "payments" || s.Window[0].Labels["runbook"] == "" {
		t.Errorf("good_full: %+v", s)
	}
}
