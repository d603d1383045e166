package validate

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"
)

// onlyError checks that a run is not valid and has exactly one issue of
// lint with severity error on object, whose message holds want.
func onlyError(t *testing.T, res Result, lint, object, want string) {
	t.Helper()
	is := find(res.Issues, lint)
	if res.Valid || len(is) != 1 || is[0].Severity != SeverityCritical || is[0].Object != object || !strings.Contains(is[0].Message, want) {
		t.Fatalf("valid %v, %s findings %+v; want one error on %q saying %q\nall: %+v", res.Valid, lint, is, object, want, res.Issues)
	}
}

// noSecrets fails when a finding quotes a connection detail.
func noSecrets(t *testing.T, res Result, secrets ...string) {
	t.Helper()
	for _, is := range res.Issues {
		for _, s := range secrets {
			if strings.Contains(is.Message+is.Recommendation, s) {
				t.Errorf("finding quotes %q: %+v", s, is)
			}
		}
	}
}

func TestDatabaseNotConfigured(t *testing.T) {
	v := validator(t, Config{}, Deps{})
	for _, typ := range pairs["database"] {
		res := run(t, v, "database", typ, false)
		onlyError(t, res, "database_not_configured", "database", "No database URL is configured")
		if len(res.Issues) != 1 {
			t.Errorf("%s: %+v; want only the not-configured finding", typ, res.Issues)
		}
	}
	// auth/schema reads the app's database too.
	onlyError(t, run(t, v, "auth", "schema", false), "database_not_configured", "database", "No database URL is configured")
}

func TestDatabaseUnreachable(t *testing.T) {
	url := "postgres://pulse:hunter2@127.0.0.1:1/app?sslmode=disable&connect_timeout=3"
	v := validator(t, Config{DatabaseURL: url}, Deps{})
	for _, typ := range pairs["database"] {
		res := run(t, v, "database", typ, false)
		onlyError(t, res, "database_unreachable", "database", "connection refused")
		noSecrets(t, res, "hunter2", "127.0.0.1", "pulse:", ":1/")
	}

	// A database that does not exist, and a URL that cannot be parsed.
	e := newPG(t, adminURL())
	v = validator(t, Config{DatabaseURL: withDatabase(t, e.admin, e.db+"_gone", "")}, Deps{})
	onlyError(t, run(t, v, "database", "schema", false), "database_unreachable", "database", "database does not exist")
	bad := New(Config{DatabaseURL: "postgres://pulse:hunter2@%zz/app"}, Deps{}, zerolog.Nop())
	defer bad.Close()
	if err := (Config{DatabaseURL: "postgres://pulse:hunter2@%zz/app"}).Validate(); err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("Validate of a bad URL: %v", err)
	}
	res := run(t, bad, "database", "schema", false)
	onlyError(t, res, "database_unreachable", "database", "cannot be parsed")
	noSecrets(t, res, "hunter2")
}

func TestRoleWithoutGrants(t *testing.T) {
	e := newPG(t, adminURL())
	e.load(t, "clean", "pg_stat_statements")
	cfg := e.config()
	cfg.DatabaseURL = e.loginRole(t)
	v := validator(t, cfg, Deps{})

	// Performance needs the statistics of every role: it says the role
	// lacks pg_read_all_stats, instead of judging what it cannot see.
	res := run(t, v, "database", "performance", false)
	onlyError(t, res, "insufficient_privilege", "check slow_queries", "pg_read_all_stats")
	if is := find(res.Issues, "insufficient_privilege"); !strings.Contains(is[0].Recommendation, "pg_monitor") {
		t.Errorf("recommendation %q; want it to name pg_monitor", is[0].Recommendation)
	}
	if slices.Contains(lints(res.Issues), "pg_stat_statements_not_loaded") {
		t.Error("statistics the role cannot read were judged anyway")
	}

	// The catalogues are readable by PUBLIC: the other checks still see
	// everything, and the clean schema passes them.
	for _, typ := range []string{"schema", "permissions", "security"} {
		if res := run(t, v, "database", typ, true); !res.Valid || len(res.Issues) != 0 {
			t.Errorf("%s as a role without grants: %+v", typ, res.Issues)
		}
	}

	// A catalogue revoked from PUBLIC (a hardened server): each check that
	// reads it says so, the others still run.
	exec1(t, e.url, "REVOKE SELECT ON pg_catalog.pg_policy FROM PUBLIC")
	res = run(t, v, "database", "permissions", false)
	priv := find(res.Issues, "insufficient_privilege")
	want := []string{"check multiple_permissive_policies", "check policy_exists_rls_disabled", "check rls_enabled_no_policy", "check rls_policy_always_true", "check rls_references_user_metadata"}
	if got := objects(priv); res.Valid || !slices.Equal(got, want) {
		t.Fatalf("valid %v, insufficient_privilege on %q; want %q", res.Valid, got, want)
	}
	if !strings.Contains(priv[0].Message, "permission denied for table pg_policy") {
		t.Errorf("message %q; want the missing privilege named", priv[0].Message)
	}

	// No CONNECT on the database.
	exec1(t, e.admin, "REVOKE CONNECT ON DATABASE "+e.db+" FROM PUBLIC")
	v2 := validator(t, cfg, Deps{})
	onlyError(t, run(t, v2, "database", "schema", false), "insufficient_privilege", "database", "may not connect")
}

func TestCheckFailureIsAFinding(t *testing.T) {
	e := newPG(t, adminURL())
	e.load(t, "clean")
	ctx := context.Background()
	locker, err := pgx.Connect(ctx, e.url)
	if err != nil {
		t.Fatal(err)
	}
	defer locker.Close(ctx)
	tx, err := locker.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck
	// A migration holding pg_policy: the checks that read it time out on
	// the lock instead of waiting behind it.
	if _, err := tx.Exec(ctx, "LOCK TABLE pg_catalog.pg_policy IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	cfg := e.config()
	cfg.LockTimeout = 100 * time.Millisecond
	v := validator(t, cfg, Deps{})
	start := time.Now()
	res := run(t, v, "database", "permissions", false)
	failed := find(res.Issues, "database_check_failed")
	if res.Valid || len(failed) != 5 || !strings.Contains(failed[0].Message, "lock timeout") {
		t.Fatalf("valid %v, failures %+v; want 5 lock timeouts", res.Valid, failed)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("the run took %s; the lock timeout should bound it", d)
	}
	if !slices.Contains(lints(res.Issues), "database_check_failed") || find(res.Issues, "rls_disabled_in_public") != nil {
		t.Errorf("the checks that do not read pg_policy should still run cleanly: %+v", res.Issues)
	}
}

func TestCause(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{context.DeadlineExceeded, "timeout"},
		{context.Canceled, "canceled"},
		{errString("boom"), "error"},
	} {
		if got := cause(c.err); got != c.want {
			t.Errorf("cause(%v) = %q; want %q", c.err, got, c.want)
		}
	}
	for code, want := range map[string]string{"28P01": "authentication failed", "53300": "too many connections", "57014": "statement timeout",
		"55P03": "lock timeout", "57P01": "database shutting down", "08006": "connection failure", "42501": "permission or syntax error", "XX000": "database error XX000"} {
		if got := pgCause(code); got != want {
			t.Errorf("pgCause(%s) = %q; want %q", code, got, want)
		}
	}
}

type errString string

func (e errString) Error() string { return string(e) }
