package validate

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// Each database lint has two fixtures in testdata/lints, loaded over the
// clean schema: <lint>.pos.sql plants the problem and names, in lines
// "-- @expect <lint> <object>", every finding it must cause (its own lint
// and any other it causes on purpose); <lint>.neg.sql holds controls
// (objects named control_*) that must cause no finding at all.

// pulseFixtureLints are Pulse's own lints with fixtures.
var pulseFixtureLints = []string{"rls_disabled_write_only", "foreign_key_partial_index", "redundant_index", "invalid_index",
	"autovacuum_disabled", "personal_columns_exposed", "card_columns_exposed"}

// fixtureLints are the lints with pos/neg fixtures: every splinter lint
// Pulse checks, then Pulse's own.
func fixtureLints() []string {
	var out []string
	for _, s := range splinterLints {
		if s.notChecked == "" {
			out = append(out, s.name)
		}
	}
	return append(out, pulseFixtureLints...)
}

// expectations reads the "-- @expect" lines of a positive fixture: lint ->
// objects, the API role placeholders replaced.
func expectations(t testing.TB, e *pgEnv, lint string) map[string][]string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", "lints", lint+".pos.sql"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, line := range strings.Split(string(raw), "\n") {
		rest, ok := strings.CutPrefix(line, "-- @expect ")
		if !ok {
			continue
		}
		l, obj, _ := strings.Cut(strings.TrimSpace(rest), " ")
		obj = strings.NewReplacer("{{anon}}", e.anon, "{{authenticated}}", e.authd).Replace(obj)
		out[l] = append(out[l], obj)
	}
	if len(out[lint]) == 0 {
		t.Fatalf("%s.pos.sql expects no %s finding", lint, lint)
	}
	return out
}

// allDatabaseIssues runs every database validation and returns the
// findings (without noise and the server's own configuration) and the
// lints reported as not applicable.
func allDatabaseIssues(t testing.TB, v *Validator) ([]Issue, []NotApplicable) {
	t.Helper()
	var issues []Issue
	var na []NotApplicable
	for _, typ := range pairs["database"] {
		res := run(t, v, "database", typ, false)
		for _, is := range withoutServerFindings(res.Issues) {
			if !slices.Contains(noise, is.Lint) {
				issues = append(issues, is)
			}
		}
		na = append(na, res.NotApplicable...)
	}
	return issues, na
}

// fixtureConfig is the environment's config without the server-wide cache
// hit rate, which the bulk writes of some fixtures lower.
func fixtureConfig(e *pgEnv) Config {
	cfg := e.config()
	cfg.MinCacheBlocks = 1 << 60
	return cfg
}

// byLint groups the objects of issues by lint, sorted.
func byLint(issues []Issue) map[string][]string {
	out := map[string][]string{}
	for _, is := range issues {
		out[is.Lint] = append(out[is.Lint], is.Object)
	}
	for _, o := range out {
		slices.Sort(o)
	}
	return out
}

// checkMapping fails for an issue whose splinter name, severity or
// remediation is not the catalogue's.
func checkMapping(t testing.TB, issues []Issue) {
	t.Helper()
	for _, is := range issues {
		l, ok := catalogue[is.Lint]
		if !ok {
			t.Errorf("%s: not in the lint catalogue", is.Lint)
			continue
		}
		if is.Splinter != l.Splinter || is.Remediation != l.Remediation {
			t.Errorf("%s %s: splinter %q remediation %q; want %q %q", is.Lint, is.Object, is.Splinter, is.Remediation, l.Splinter, l.Remediation)
		}
		if l.Splinter != "" && is.Severity != l.Severity {
			t.Errorf("%s %s: severity %s; splinter's level %s is %s", is.Lint, is.Object, is.Severity, l.Level, l.Severity)
		}
		if l.Splinter != "" && is.Category != l.ValidationType {
			t.Errorf("%s %s: validation type %s; want %s", is.Lint, is.Object, is.Category, l.ValidationType)
		}
	}
}

// TestSplinterListHasFixtures walks splinter's 29 lints: each one Pulse
// checks is in the catalogue under splinter's name and has both fixtures;
// each one it does not check says why.
func TestSplinterListHasFixtures(t *testing.T) {
	if len(splinterLints) != 29 {
		t.Fatalf("splinter's list has %d lints; want 29 (0001-0029)", len(splinterLints))
	}
	applicable := 0
	for i, s := range splinterLints {
		if want := fmt.Sprintf("%04d", i+1); s.number != want {
			t.Errorf("lint %s numbered %s", want, s.number)
		}
		l := catalogue[s.name]
		if l.Splinter != s.number+"_"+s.name || l.Severity == "" || l.Remediation != linterDocs+s.number+"_"+s.name {
			t.Errorf("%s: catalogue entry %+v", s.name, l)
		}
		if s.notChecked != "" {
			continue
		}
		applicable++
		for _, kind := range []string{"pos", "neg"} {
			if _, err := os.Stat(filepath.Join("testdata", "lints", s.name+"."+kind+".sql")); err != nil {
				t.Errorf("splinter lint %s_%s has no %s fixture: %v", s.number, s.name, kind, err)
			}
		}
	}
	if applicable != 26 {
		// 29 less 0012 (an Auth setting) and 0026/0027 (pg_graphql).
		t.Errorf("%d splinter lints checked; want 26", applicable)
	}
	for _, l := range pulseFixtureLints {
		if c, ok := catalogue[l]; !ok || c.Splinter != "" {
			t.Errorf("%s: not a Pulse lint of the catalogue", l)
		}
	}
}

// TestLintFixtures loads each positive fixture on its own: exactly the
// findings it expects, under the catalogue's names and levels; and each
// negative one: no finding at all.
func TestLintFixtures(t *testing.T) {
	for _, lint := range fixtureLints() {
		t.Run(lint, func(t *testing.T) {
			t.Parallel()
			for _, kind := range []string{"pos", "neg"} {
				e := newPG(t, adminURL())
				e.load(t, "clean", "lints/"+lint+"."+kind)
				v := validator(t, fixtureConfig(e), Deps{})
				issues, _ := allDatabaseIssues(t, v)
				want := map[string][]string{}
				if kind == "pos" {
					want = expectations(t, e, lint)
					for _, o := range want {
						slices.Sort(o)
					}
				}
				if got := byLint(issues); !maps.EqualFunc(got, want, slices.Equal) {
					t.Errorf("%s.%s.sql: findings %v; want %v\n%+v", lint, kind, got, want, issues)
				}
				checkMapping(t, issues)
			}
		})
	}
}

// TestPlantedDatabase builds one database holding one instance of each
// problem and every control: each problem is reported under its lint
// (splinter's name for splinter's lints), with splinter's level, and
// nothing concerns a control.
func TestPlantedDatabase(t *testing.T) {
	e := newPG(t, adminURL())
	fixtures := []string{"clean"}
	want := map[string][]string{}
	for _, lint := range fixtureLints() {
		fixtures = append(fixtures, "lints/"+lint+".pos", "lints/"+lint+".neg")
		for l, objs := range expectations(t, e, lint) {
			want[l] = append(want[l], objs...)
		}
	}
	for _, o := range want {
		slices.Sort(o)
	}
	e.load(t, fixtures...)
	v := validator(t, fixtureConfig(e), Deps{})
	issues, na := allDatabaseIssues(t, v)
	got := byLint(issues)
	for _, lint := range slices.Sorted(maps.Keys(want)) {
		if !slices.Equal(got[lint], want[lint]) {
			t.Errorf("%s: objects %q; want %q", lint, got[lint], want[lint])
		}
	}
	for lint, objs := range got {
		if want[lint] == nil {
			t.Errorf("unexpected lint %s on %q", lint, objs)
		}
	}
	for _, is := range issues {
		if strings.Contains(is.Object, "control") {
			t.Errorf("finding on a control: %s %s: %s", is.Lint, is.Object, is.Message)
		}
	}
	checkMapping(t, issues)
	for _, s := range splinterLints {
		if s.notChecked == "" && len(got[s.name]) == 0 {
			t.Errorf("splinter lint %s_%s not reported", s.number, s.name)
		}
	}
	var skipped []string
	for _, n := range na {
		skipped = append(skipped, n.Lint)
	}
	slices.Sort(skipped)
	if w := []string{"auth_allow_anonymous_sign_ins", "pg_graphql_anon_table_exposed", "pg_graphql_authenticated_table_exposed"}; !slices.Equal(skipped, w) {
		t.Errorf("not applicable %v; want %v", skipped, w)
	}
}

// TestLintsNotApplicableOnPlainPostgres: without Supabase's auth, storage
// and pgmq schemas the lints that need them say so, and the run is valid.
func TestLintsNotApplicableOnPlainPostgres(t *testing.T) {
	e := newPG(t, adminURL())
	cfg := fixtureConfig(e)
	cfg.RequiredTables = []string{}
	v := validator(t, cfg, Deps{})
	issues, na := allDatabaseIssues(t, v)
	if len(issues) != 0 {
		t.Errorf("an empty database: %+v", issues)
	}
	reasons := map[string]string{}
	for _, n := range na {
		reasons[n.Lint] = n.Reason
		if n.Splinter != splinterOf(n.Lint) || n.Splinter == "" {
			t.Errorf("%s: splinter %q", n.Lint, n.Splinter)
		}
	}
	for lint, word := range map[string]string{
		"auth_users_exposed": "auth schema", "rls_references_user_metadata": "auth schema", "fkey_to_auth_unique": "auth schema",
		"insecure_queue_exposed_in_api": "pgmq schema", "public_bucket_allows_listing": "storage.buckets",
		"pg_graphql_anon_table_exposed": "pg_graphql extension is not installed", "auth_allow_anonymous_sign_ins": "Auth server",
	} {
		if !strings.Contains(reasons[lint], word) {
			t.Errorf("%s: reason %q; want it to mention %q", lint, reasons[lint], word)
		}
	}
}

func TestCardColumn(t *testing.T) {
	for _, c := range []struct {
		col, typ string
		want     bool
	}{
		{"card_number", "text", true}, {"cc_number", "character varying(19)", true}, {"cvv", "smallint", true},
		{"credit_card_pan", "text", true}, {"pan", "text", false}, {"place_card", "text", false},
		{"table_card_no", "integer", false}, {"card_number", "boolean", false}, {"pan_size", "integer", false},
	} {
		if got := cardColumn(c.col, c.typ); got != c.want {
			t.Errorf("cardColumn(%q, %q) = %v; want %v", c.col, c.typ, got, c.want)
		}
	}
}
