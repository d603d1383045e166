package rules_test

import (
	"bytes"
	"errors"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/wedsync/pulse/alerts/rules"
)

// FuzzParse holds the rules file parser to its contract on any input: a
// set or an error, never both, never a panic; every problem has a message
// and a line within the file, in the order of the file; the same input
// gives the same answer; and an accepted set keeps the rules' invariants
// (unique, well-formed names, known operators, bounded windows and labels).
func FuzzParse(f *testing.F) {
	f.Add(rules.DefaultYAML())
	for _, s := range []string{
		"",
		"version: 1\n",
		"version: 2\ninstant: []\n",
		"instant:\n  - name: slow\n    field: response_time_ms\n    op: \">\"\n    value: 5000\n",
		"instant:\n  - name: slow\n    field: response_time_ms\n    op: \">\"\n    value: 5000\n  - name: slow\n    field: status_code\n    op: \">=\"\n    value: 500\n",
		"window:\n  - name: p95\n    metric: p95_ms\n    threshold: 1000\n    resolve_threshold: 800\n    window: 5m\n    for: 1m\n",
		"window:\n  - name: p95\n    metric: p95_ms\n    threshold: 1000\n    window: 1s\n",
		"scaling:\n  - name: up\n    metric: p95_ms\n    threshold: 1000\n    direction: up\n    factor: 1.5\n",
		"instant: &a\n  - *a\n",
		"a: [\n",
		"instant:\n\t- name: x\n",
		"---\nversion: 1\n---\nversion: 1\n",
		"instant:\n  - name: Slow-Rule\n    field: x\n    op: \"~\"\n    value: .nan\n    labels: {a: b}\n",
	} {
		f.Add([]byte(s))
	}
	names := regexp.MustCompile(`^[a-z][a-z0-9_]{0,62}$`)
	f.Fuzz(func(t *testing.T, data []byte) {
		// problemLine re-parses each prefix of a broken file: keep the
		// inputs small enough for thousands of runs a second.
		if len(data) > 4<<10 {
			return
		}
		s, err := rules.Parse(data)
		if (s == nil) == (err == nil) {
			t.Fatalf("Parse(%q) = %v, %v; want a set or an error", data, s, err)
		}
		_, again := rules.Parse(data)
		if (err == nil) != (again == nil) || err != nil && err.Error() != again.Error() {
			t.Fatalf("Parse(%q) twice: %v, then %v", data, err, again)
		}
		if err != nil {
			var es *rules.Errors
			if !errors.As(err, &es) || len(es.List) == 0 {
				t.Fatalf("Parse(%q): error %v is not a non-empty *rules.Errors", data, err)
			}
			// YAML breaks lines at \r\n, \n and a lone \r (found by this test).
			lines := bytes.Count(bytes.ReplaceAll(bytes.ReplaceAll(data, []byte("\r\n"), []byte("\n")), []byte("\r"), []byte("\n")), []byte("\n")) + 1
			for i, e := range es.List {
				if e.Message == "" || e.Line < 0 || e.Line > lines+1 || e.Column < 0 {
					t.Fatalf("Parse(%q): problem %+v has no message or a line outside the file (%d lines)", data, e, lines)
				}
				if i > 0 {
					p := es.List[i-1]
					if p.Line > e.Line || p.Line == e.Line && p.Column > e.Column {
						t.Fatalf("Parse(%q): problems out of order: %+v before %+v", data, p, e)
					}
				}
			}
			return
		}
		if s.Len() == 0 {
			t.Fatalf("Parse(%q): a set without rules", data)
		}
		seen := map[string]bool{}
		name := func(n string) {
			if !names.MatchString(n) || seen[n] {
				t.Fatalf("Parse(%q): rule name %q is malformed or repeated", data, n)
			}
			seen[n] = true
		}
		for _, r := range s.Instant {
			name(r.Name)
			if !slices.Contains(rules.InstantOps, r.Op) || len(r.Labels) > 32 || r.Cooldown.D() < time.Second {
				t.Fatalf("Parse(%q): instant rule %+v breaks an invariant", data, r)
			}
		}
		for _, r := range append(slices.Clone(s.Window), s.Scaling...) {
			name(r.Name)
			if r.Op != rules.Above && r.Op != rules.Below || len(r.Labels) > 32 ||
				r.Window.D() < 10*time.Second || r.Window.D() > 6*time.Hour || r.For.D() < 0 || r.For.D() > 24*time.Hour {
				t.Fatalf("Parse(%q): window rule %+v breaks an invariant", data, r)
			}
			if r.Op == rules.Above && r.ResolveThreshold > r.Threshold || r.Op == rules.Below && r.ResolveThreshold < r.Threshold {
				t.Fatalf("Parse(%q): window rule %+v resolves on the wrong side of its threshold", data, r)
			}
		}
	})
}
