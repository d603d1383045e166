package validate

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

// TestUserIDColumns runs auth/schema against a fixture schema of its own
// database: the columns the fleet's user ids come from pass when they are
// random UUID keys and fail otherwise, naming why.
func TestUserIDColumns(t *testing.T) {
	e := newPG(t, adminURL())
	e.load(t, "clean", "user_ids")
	const blocked = "auth_user_delete_blocked" // user_profiles.id references auth.users without ON DELETE
	for _, c := range []struct {
		name    string
		columns []string
		want    []string // lints besides blocked
		why     string   // in the message
	}{
		{"default: user_profiles.id, Supabase Auth's ids", nil, nil, ""},
		{"auth.users.id", []string{"auth.users.id"}, nil, ""},
		{"random default", []string{"guests.id", "public.guests.id"}, nil, ""},
		{"foreign key to a random key", []string{"guest_links.guest_id"}, nil, ""},
		{"an email", []string{"user_profiles.email"}, []string{"user_id_not_pseudonymous"}, "of type text, not uuid"},
		{"a bigint key", []string{"suppliers.id"}, []string{"user_id_not_pseudonymous"}, "of type bigint"},
		{"generated from the email", []string{"guests.email_key"}, []string{"user_id_not_pseudonymous"}, "generated column"},
		{"sequential default", []string{"legacy_accounts.seq_key"}, []string{"user_id_not_pseudonymous"}, "not a random UUID"},
		{"foreign key to a sequential key", []string{"legacy_orders.account_key"}, []string{"user_id_not_pseudonymous"},
			"come from public.legacy_accounts.seq_key through foreign keys"},
		{"no such column", []string{"user_profiles.user_id"}, []string{"user_id_column_missing"}, "does not exist (looked for in public)"},
		{"no such schema", []string{"crm.user_profiles.id"}, []string{"user_id_column_missing"}, "looked for in crm"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := e.config()
			cfg.UserIDColumns = c.columns
			res := run(t, validator(t, cfg, Deps{}), "auth", "schema", false)
			wantLints(t, res.Issues, append([]string{blocked}, c.want...)...)
			if got := objects(find(res.Issues, blocked)); !slices.Equal(got, []string{"public.user_profiles.user_profiles_id_fkey"}) {
				t.Errorf("%s on %v; want only user_profiles' key to auth.users", blocked, got)
			}
			if res.Valid != (len(c.want) == 0) {
				t.Errorf("valid %v with findings %v", res.Valid, lints(res.Issues))
			}
			for _, is := range res.Issues {
				if is.Lint == blocked {
					continue
				}
				if is.Severity != SeverityCritical || !strings.Contains(is.Message, c.why) {
					t.Errorf("%s %s: %q; want critical, saying %q", is.Lint, is.Severity, is.Message, c.why)
				}
			}
		})
	}

	// Declaring the ids hashed by the fleet leaves the columns alone.
	cfg := e.config()
	cfg.UserIDColumns, cfg.UserIDsPseudonymised = []string{"user_profiles.email"}, true
	res := run(t, validator(t, cfg, Deps{}), "auth", "schema", false)
	wantLints(t, res.Issues, blocked)
	if !slices.ContainsFunc(res.NotApplicable, func(n NotApplicable) bool { return n.Lint == "user_id_not_pseudonymous" }) {
		t.Errorf("not applicable %+v; want user_id_not_pseudonymous", res.NotApplicable)
	}
}

// TestPseudonymisationControl: the GDPR control passes against a real
// schema keyed by UUIDs with the right columns configured, and fails with
// a wrong column, a non-pseudonymous one, or no database.
func TestPseudonymisationControl(t *testing.T) {
	e := newPG(t, adminURL())
	e.load(t, "clean", "user_ids")
	control := func(cfg Config) Control {
		t.Helper()
		rep := validator(t, cfg, Deps{}).Compliance(context.Background(), "gdpr", true)
		for _, c := range rep.Frameworks[0].Controls {
			if c.ID == "gdpr.pseudonymised_user_ids" {
				return c
			}
		}
		t.Fatal("no gdpr.pseudonymised_user_ids control")
		return Control{}
	}
	f := func(name string, columns []string, status, evidence string) {
		t.Helper()
		cfg := e.config()
		cfg.UserIDColumns = columns
		if name == "no database" {
			cfg.DatabaseURL = ""
		}
		c := control(cfg)
		if c.Status != status || !strings.Contains(strings.Join(c.Evidence, "\n"), evidence) || !slices.Equal(c.Checks, []string{"auth/schema"}) {
			t.Errorf("%s: %s %v (checks %v); want %s with %q", name, c.Status, c.Evidence, c.Checks, status, evidence)
		}
		if status == "fail" && len(c.Recommendations) == 0 {
			t.Errorf("%s: no recommendation", name)
		}
	}
	f("WedSync's default", nil, "pass", "come from user_profiles.id: random UUID keys")
	f("two right columns", []string{"auth.users.id", "guest_links.guest_id"}, "pass", "auth.users.id, guest_links.guest_id")
	f("a wrong column", []string{"profiles.id"}, "fail", "column profiles.id: User id column profiles.id (UserIDColumns) does not exist")
	f("a counter", []string{"legacy_orders.account_key"}, "fail", "public.legacy_accounts.seq_key defaults to")
	f("no database", nil, "fail", "No database URL is configured")

	// A fleet that hashes the ids: no column is looked at.
	cfg := e.config()
	cfg.DatabaseURL, cfg.UserIDColumns, cfg.UserIDsPseudonymised = "", []string{"user_profiles.email"}, true
	if c := control(cfg); c.Status != "pass" || !strings.Contains(strings.Join(c.Evidence, ""), "keyed hashes") {
		t.Errorf("declared pseudonymised: %s %v", c.Status, c.Evidence)
	}
}

// TestSpecShapeOfResults: a validation answer carries the spec's
// ValidationResult fields (valid, issues, recommendations, component,
// validation_type) and issue fields (severity on the spec's scale,
// message, recommendation) beside Pulse's own.
func TestSpecShapeOfResults(t *testing.T) {
	e := newPG(t, adminURL())
	e.load(t, "clean")
	cfg := e.config()
	cfg.RequiredTables = []string{"user_profiles", "wedding_plans"}
	res := run(t, validator(t, cfg, Deps{}), "database", "schema", false)
	raw, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Valid           *bool            `json:"valid"`
		Issues          []map[string]any `json:"issues"`
		Recommendations []string         `json:"recommendations"`
		Component       string           `json:"component"`
		ValidationType  string           `json:"validation_type"`
	}
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	if got.Valid == nil || *got.Valid || got.Component != "database" || got.ValidationType != "schema" || len(got.Recommendations) == 0 || len(got.Issues) != 1 {
		t.Fatalf("answer %s", raw)
	}
	is := got.Issues[0]
	if is["severity"] != "critical" || is["lint"] != "required_table_missing" || !strings.Contains(is["message"].(string), "wedding_plans") ||
		is["recommendation"] == "" || is["cache_key"] == "" {
		t.Errorf("issue %v; want the spec's critical missing table with Pulse's lint and cache_key", is)
	}
	// WedSync's database has no system_metrics or performance_logs (Pulse
	// keeps them in ClickHouse): the default required tables pass it.
	exec1(t, e.url, "DROP TABLE public.system_metrics, public.performance_logs")
	cfg.RequiredTables = nil
	if res := run(t, validator(t, cfg, Deps{}), "database", "schema", true); !res.Valid || len(find(res.Issues, "required_table_missing")) != 0 {
		t.Errorf("the app's database without Pulse's tables: %+v", res.Issues)
	}
	for _, s := range []string{"user_profiles", "suppliers", "couples", "core_fields"} {
		if !slices.Contains(DefaultRequiredTables, s) {
			t.Errorf("DefaultRequiredTables %v lacks %s", DefaultRequiredTables, s)
		}
	}
	for _, s := range []string{"system_metrics", "performance_logs"} {
		if slices.Contains(DefaultRequiredTables, s) {
			t.Errorf("DefaultRequiredTables requires %s, which Pulse keeps in ClickHouse", s)
		}
	}
}
