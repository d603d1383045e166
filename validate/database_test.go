package validate

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func run(t testing.TB, v *Validator, component, typ string, strict bool) Result {
	t.Helper()
	return v.Validate(context.Background(), "test", component, typ, strict)
}

// noise are info findings that depend on the server rather than the schema.
var noise = []string{"pg_stat_statements_missing", "api_roles_missing"}

// TestCleanSchemaPassesEveryDatabaseCheck runs every database check on the
// clean schema, on a server configured as production should be (autovacuum
// on, pg_stat_statements loaded): no finding at all, valid in strict mode.
func TestCleanSchemaPassesEveryDatabaseCheck(t *testing.T) {
	e := newPG(t, statsAdmin(t))
	e.load(t, "clean", "pg_stat_statements")
	v := validator(t, e.config(), Deps{})
	for _, typ := range pairs["database"] {
		res := run(t, v, "database", typ, true)
		if len(res.Issues) != 0 || !res.Valid {
			t.Errorf("%s: valid %v, issues %+v; want valid in strict mode without issues", typ, res.Valid, res.Issues)
		}
		if want := "database " + typ + " is compliant: no findings."; !slices.Equal(res.Recommendations, []string{want}) {
			t.Errorf("%s: recommendations %q; want %q", typ, res.Recommendations, want)
		}
	}
}

// TestCleanSchemaOnTheTestServer runs the checks on the shared test server,
// which does not load pg_stat_statements and may run without autovacuum:
// the clean schema adds nothing to what the server's configuration earns.
func TestCleanSchemaOnTheTestServer(t *testing.T) {
	e := newPG(t, adminURL())
	e.load(t, "clean")
	v := validator(t, e.config(), Deps{})
	for _, typ := range pairs["database"] {
		res := run(t, v, "database", typ, true)
		var want []string
		if typ == "performance" {
			want = []string{"pg_stat_statements_missing"}
			if autovacuumOff(t, e.url) {
				want = append([]string{"autovacuum_disabled"}, want...)
				if is := find(res.Issues, "autovacuum_disabled"); len(is) != 1 || is[0].Object != "server" || is[0].Severity != SeverityCritical {
					t.Errorf("autovacuum off on the server: %+v; want one error on object server", is)
				}
			}
		}
		if got := lints(res.Issues); !slices.Equal(got, want) {
			t.Errorf("%s: lints %v; want %v\n%+v", typ, got, want, res.Issues)
		}
	}
}

func autovacuumOff(t testing.TB, url string) bool {
	t.Helper()
	c, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	var s string
	if err := c.QueryRow(context.Background(), "SHOW autovacuum").Scan(&s); err != nil {
		t.Fatal(err)
	}
	return s == "off"
}

// withoutServerFindings drops the findings about the server's own
// configuration (autovacuum off on the shared test server).
func withoutServerFindings(issues []Issue) []Issue {
	return slices.DeleteFunc(slices.Clone(issues), func(is Issue) bool { return is.Lint == "autovacuum_disabled" && is.Object == "server" })
}

// TestLints loads the clean schema plus one broken fixture per lint and
// checks that exactly that lint fires, on exactly the broken objects. The
// clean schema (TestCleanSchemaPassesEveryDatabaseCheck) is every lint's
// negative case.
func TestLints(t *testing.T) {
	cases := []struct {
		lints   []string // the lints the run must report, and no other (besides noise)
		fixture string
		typ     string
		cfg     func(*Config, *pgEnv)
		objects func(*pgEnv) []string // the objects of the reported issues
		sev     map[string]string     // object -> severity, where it matters
	}{
		{lints: []string{"required_table_missing"}, fixture: "missing_table", typ: "schema",
			objects: fixed("public.core_fields"), sev: map[string]string{"public.core_fields": SeverityCritical}},
		{lints: []string{"no_primary_key"}, fixture: "no_primary_key", typ: "schema",
			objects: fixed("public.vendor_notes"), sev: map[string]string{"public.vendor_notes": SeverityInfo}},
		{lints: []string{"required_table_missing"}, typ: "schema",
			cfg: func(c *Config, _ *pgEnv) {
				c.RequiredTables = []string{"user_profiles", "public.couples", "crm.leads", "wedding_plans"}
			},
			objects: fixed("crm.leads", "public.wedding_plans")},
		{lints: []string{"rls_disabled_in_public"}, fixture: "rls_disabled", typ: "permissions",
			objects: fixed("public.venues"), sev: map[string]string{"public.venues": SeverityCritical}},
		{lints: []string{"policy_exists_rls_disabled"}, fixture: "policy_rls_disabled", typ: "permissions",
			objects: fixed("public.drafts"), sev: map[string]string{"public.drafts": SeverityCritical}},
		{lints: []string{"rls_enabled_no_policy"}, fixture: "rls_no_policy", typ: "permissions",
			objects: fixed("public.invoices"), sev: map[string]string{"public.invoices": SeverityInfo}},
		{lints: []string{"multiple_permissive_policies"}, fixture: "multiple_permissive", typ: "permissions",
			objects: func(e *pgEnv) []string { return []string{"public.couples (role " + e.authd + ", SELECT)"} }},
		{lints: []string{"rls_policy_always_true"}, fixture: "always_true", typ: "permissions",
			objects: fixed("policy guest_lists_insert on public.guest_lists", "policy guest_lists_update on public.guest_lists")},
		{lints: []string{"api_roles_missing"}, typ: "permissions",
			cfg:     func(c *Config, e *pgEnv) { c.APIRoles = []string{e.anon, "pulse_v_no_such_role"} },
			objects: fixed("roles pulse_v_no_such_role"), sev: map[string]string{"roles pulse_v_no_such_role": SeverityInfo}},
		{lints: []string{"unindexed_foreign_keys"}, fixture: "unindexed_fk", typ: "performance",
			objects: fixed("public.bookings (foreign key bookings_couple_id_fkey)")},
		{lints: []string{"unused_index"}, fixture: "unused_index", typ: "performance",
			objects: fixed("public.suppliers_category_idx")},
		{lints: []string{"duplicate_index"}, fixture: "duplicate_index", typ: "performance",
			objects: fixed("public.user_profiles (user_profiles_email_key, user_profiles_email_key2)")},
		{lints: []string{"invalid_index"}, fixture: "invalid_index", typ: "performance",
			objects: fixed("public.seating_seat_key")},
		{lints: []string{"auth_rls_initplan"}, fixture: "rls_initplan", typ: "performance",
			objects: fixed("policy couples_own on public.couples", "policy metrics_admin on public.system_metrics")},
		{lints: []string{"autovacuum_disabled"}, fixture: "autovacuum", typ: "performance",
			objects: fixed("public.core_fields", "public.performance_logs")},
		{lints: []string{"pg_stat_statements_not_loaded"}, fixture: "pg_stat_statements", typ: "performance",
			objects: fixed("extension pg_stat_statements")},
		{lints: []string{"connection_usage_high"}, typ: "performance",
			cfg:     func(c *Config, _ *pgEnv) { c.MaxConnectionUsage = 0.0001 },
			objects: fixed("connections"), sev: map[string]string{"connections": SeverityCritical}},
		{lints: []string{"cache_hit_rate_low"}, typ: "performance",
			cfg:     func(c *Config, _ *pgEnv) { c.MinCacheHitRate, c.MinCacheBlocks = 1, 1 },
			objects: fixed("indexes", "table data")},
		{lints: []string{"security_definer_view"}, fixture: "definer_view", typ: "security",
			objects: fixed("public.couple_dates"), sev: map[string]string{"public.couple_dates": SeverityCritical}},
		{lints: []string{"function_search_path_mutable"}, fixture: "search_path", typ: "security",
			objects: fixed("public.add_days(d date, n integer)", "public.profile_count()"),
			sev:     map[string]string{"public.add_days(d date, n integer)": SeverityWarning, "public.profile_count()": SeverityWarning}},
		{lints: []string{"extension_in_public"}, fixture: "extension_public", typ: "security",
			objects: fixed("extension citext", "extension xml2")},
		{lints: []string{"card_columns_exposed", "personal_columns_exposed"}, fixture: "sensitive_columns", typ: "security",
			objects: fixed("public.guests", "public.payments"),
			sev:     map[string]string{"public.guests": SeverityCritical, "public.payments": SeverityWarning}},
		{lints: []string{"auth_users_exposed"}, fixture: "auth_users_view", typ: "security",
			objects: fixed("public.user_directory"), sev: map[string]string{"public.user_directory": SeverityCritical}},
	}
	for _, c := range cases {
		name := strings.Join(c.lints, "+")
		if c.fixture == "" {
			name += "_config"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := newPG(t, adminURL())
			fixtures := []string{"clean"}
			if c.fixture != "" {
				fixtures = append(fixtures, c.fixture)
			}
			e.load(t, fixtures...)
			cfg := e.config()
			if c.cfg != nil {
				c.cfg(&cfg, e)
			}
			v := validator(t, cfg, Deps{})
			res := run(t, v, "database", c.typ, false)
			wantValid := !slices.ContainsFunc(res.Issues, func(is Issue) bool { return is.Severity == SeverityCritical })
			res.Issues = withoutServerFindings(res.Issues)
			ignore := slices.DeleteFunc(slices.Clone(noise), func(l string) bool { return slices.Contains(c.lints, l) })
			if got := lints(res.Issues, ignore...); !slices.Equal(got, c.lints) {
				t.Fatalf("lints %v; want %v\n%+v", got, c.lints, res.Issues)
			}
			var got []Issue
			for _, l := range c.lints {
				got = append(got, find(res.Issues, l)...)
			}
			want := c.objects(e)
			slices.Sort(want)
			if o := objects(got); !slices.Equal(o, want) {
				t.Errorf("objects %q; want %q", o, want)
			}
			for _, is := range got {
				if s, ok := c.sev[is.Object]; ok && is.Severity != s {
					t.Errorf("%s %s: severity %s; want %s", is.Lint, is.Object, is.Severity, s)
				}
				if is.Message == "" || is.Recommendation == "" || is.Category != c.typ || is.CacheKey != cacheKey(is.Lint, is.Object) {
					t.Errorf("incomplete issue %+v", is)
				}
			}
			if res.Valid != wantValid {
				t.Errorf("valid %v; want %v", res.Valid, wantValid)
			}
		})
	}
}

func fixed(objs ...string) func(*pgEnv) []string { return func(*pgEnv) []string { return objs } }

func TestRecommendationsAreRunnableSQL(t *testing.T) {
	// The fixes the lints recommend, applied to the broken fixtures, clear them.
	e := newPG(t, adminURL())
	e.load(t, "clean", "rls_disabled", "unindexed_fk", "definer_view", "search_path")
	v := validator(t, e.config(), Deps{})
	var fixes []string
	for _, typ := range []string{"permissions", "performance", "security"} {
		for _, is := range run(t, v, "database", typ, false).Issues {
			switch is.Lint {
			case "unindexed_foreign_keys", "security_definer_view":
				fixes = append(fixes, strings.Replace(is.Recommendation, " CONCURRENTLY", "", 1))
			case "rls_disabled_in_public", "function_search_path_mutable":
				fix, _, _ := strings.Cut(is.Recommendation, ";")
				fixes = append(fixes, fix+";")
			}
		}
	}
	if len(fixes) != 5 {
		t.Fatalf("%d fixes; want 5: %q", len(fixes), fixes)
	}
	exec1(t, e.url, strings.Join(fixes, "\n"))
	for _, typ := range []string{"permissions", "performance", "security"} {
		res := run(t, v, "database", typ, true)
		if got := lints(withoutServerFindings(res.Issues), noise...); len(got) > 0 && !slices.Equal(got, []string{"rls_enabled_no_policy"}) {
			t.Errorf("%s after the fixes: %v", typ, got)
		}
	}
}

func TestStrictMode(t *testing.T) {
	e := newPG(t, adminURL())
	e.load(t, "clean", "lints/unsupported_reg_types.pos")
	v := validator(t, e.config(), Deps{})
	if res := run(t, v, "database", "schema", false); !res.Valid {
		t.Errorf("a warning made a non-strict run invalid: %+v", res.Issues)
	}
	if res := run(t, v, "database", "schema", true); res.Valid || !res.StrictMode {
		t.Errorf("strict run with a warning: valid %v, strict_mode %v; want false, true", res.Valid, res.StrictMode)
	}
}

func TestCacheKeyIsStable(t *testing.T) {
	e := newPG(t, adminURL())
	e.load(t, "clean", "unused_index")
	v := validator(t, e.config(), Deps{})
	a := find(run(t, v, "database", "performance", false).Issues, "unused_index")
	b := find(run(t, v, "database", "performance", false).Issues, "unused_index")
	if len(a) != 1 || len(b) != 1 || a[0].CacheKey != b[0].CacheKey || len(a[0].CacheKey) != 64 {
		t.Fatalf("cache keys %+v and %+v; want one stable 64-digit key", a, b)
	}
	if cacheKey("unused_index", "public.a") == cacheKey("unused_index", "public.b") || cacheKey("a", "bc") == cacheKey("ab", "c") {
		t.Error("cache keys collide")
	}
}

func TestSlowQueriesWithPlans(t *testing.T) {
	e := newPG(t, statsAdmin(t))
	e.load(t, "clean", "pg_stat_statements", "stats_slow")
	ctx := context.Background()
	app, err := pgx.Connect(ctx, e.url)
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close(ctx)
	// The app's statements, sent as the app sends them: with parameters.
	appQueries := func() {
		for i := range 3 {
			if _, err := app.Exec(ctx, "SELECT id FROM public.rsvps WHERE status = $1 AND guest_id = $2", "maybe", i); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := app.Exec(ctx, "SELECT count(*) FROM public.rsvps"); err != nil {
			t.Fatal(err)
		}
	}
	appQueries()
	cfg := e.config()
	cfg.SlowQueryThreshold, cfg.MaxSlowQueries = time.Millisecond, 50
	v := validator(t, cfg, Deps{})
	res := run(t, v, "database", "performance", false)
	if got := lints(res.Issues, "pg_stat_statements_missing"); !slices.Contains(got, "slow_query") || slices.Contains(got, "pg_stat_statements_not_loaded") {
		t.Fatalf("lints %v; want slow_query", got)
	}
	if res.ConnectionPool == nil || res.ConnectionPool.MaxConns != 2 || !res.ConnectionPool.ReadOnly {
		t.Errorf("connection pool %+v; want the validator's read-only pool of 2", res.ConnectionPool)
	}
	plan := func(substr string) QueryPlan {
		t.Helper()
		for _, p := range res.OptimizationPlans {
			if strings.Contains(p.Query, substr) {
				return p
			}
		}
		t.Fatalf("no plan for %q in %+v", substr, res.OptimizationPlans)
		return QueryPlan{}
	}
	p := plan("status = $1")
	if p.Method != "prepared_generic" || p.Plan == nil || p.Calls != 3 || p.MeanMS <= 1 || p.PlanError != "" {
		t.Errorf("plan %+v; want a prepared generic plan of 3 calls", p)
	}
	if len(p.SeqScans) != 1 || p.SeqScans[0].Table != "public.rsvps" || p.SeqScans[0].EstimatedRows < 150_000 {
		t.Errorf("seq scans %+v; want public.rsvps with about 200,000 rows", p.SeqScans)
	}
	wantIdx := `CREATE INDEX CONCURRENTLY ON "public"."rsvps" ("status", "guest_id");`
	if !slices.Equal(p.Suggestion, []string{wantIdx}) {
		t.Errorf("suggestions %q; want %q", p.Suggestion, wantIdx)
	}
	slow := find(res.Issues, "slow_query")
	if !slices.ContainsFunc(slow, func(is Issue) bool { return is.Object == "queryid:"+p.QueryID && is.Recommendation == wantIdx }) {
		t.Errorf("no slow_query finding recommending the index for %s: %+v", p.QueryID, slow)
	}
	if c := plan("count(*)"); c.Method != "plain" || c.Plan == nil || len(c.Suggestion) != 0 {
		t.Errorf("count(*) plan %+v; want a plain plan without suggestion", c)
	}
	if ins := plan("INSERT INTO public.rsvps"); ins.Plan != nil || ins.PlanError != "only plain SELECT statements are explained" {
		t.Errorf("INSERT plan %+v; want none", ins)
	}
	for _, p := range res.OptimizationPlans {
		if strings.Contains(p.Query, "pulse-validate") {
			t.Errorf("the validator's own statement is listed: %s", p.Query)
		}
	}

	// With the index the plan no longer scans the table; with the default
	// threshold (1 s) nothing is slow.
	exec1(t, e.url, "CREATE INDEX rsvps_status_guest_id_idx ON public.rsvps (status, guest_id); SELECT extensions.pg_stat_statements_reset()")
	appQueries()
	cfg.SlowQueryThreshold = time.Microsecond // everything is slow: the indexed statement is listed too
	res = run(t, validator(t, cfg, Deps{}), "database", "performance", false)
	if p := plan("status = $1"); p.Plan == nil || len(p.SeqScans) != 0 || len(p.Suggestion) != 0 {
		t.Errorf("with the index: %+v; want no sequential scan", p)
	}
	app.Close(ctx) // flushes its statistics: the new index has been scanned
	v2 := validator(t, e.config(), Deps{})
	res = run(t, v2, "database", "performance", true)
	if got := lints(res.Issues); len(got) != 0 || !res.Valid {
		t.Errorf("default threshold: lints %v, valid %v; want none and valid", got, res.Valid)
	}
}

func TestExplain(t *testing.T) {
	e := newPG(t, adminURL())
	e.load(t, "clean")
	v := validator(t, e.config(), Deps{})
	ctx := context.Background()
	conn, err := v.pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	s := &dbSession{v: v, conn: conn, f: &findings{}, version: 150000}
	cases := []struct {
		query, planError, method string
	}{
		{"SELECT id FROM public.suppliers WHERE name = $1", "", "prepared_generic"},
		{"/* app */ -- a comment\nSELECT 1", "", "plain"},
		{"select $1 + $2", "the plan could not be computed (permission or syntax error)", "prepared_generic"},
		{"SELECT * FROM public.no_such_table WHERE id = $1", "the plan could not be computed (permission or syntax error)", "prepared_generic"},
		{"UPDATE public.suppliers SET name = $1", "only plain SELECT statements are explained", ""},
		{"WITH x AS (DELETE FROM public.suppliers RETURNING *) SELECT * FROM x", "only plain SELECT statements are explained", ""},
		{"SELECT 1; DROP TABLE public.suppliers", "only single statements are explained", ""},
		{"SELECT * INTO public.copy FROM public.suppliers", "SELECT INTO is not explained", ""},
		{"selective", "only plain SELECT statements are explained", ""},
		{"<insufficient privilege>", "its text is hidden from the validator's role", ""},
		{"SELECT " + strings.Repeat("$1 + ", 100) + "$101", "too many parameters to explain", ""},
	}
	for _, c := range cases {
		err := s.inTx(ctx, func(tx pgx.Tx) error {
			var p QueryPlan
			s.explain(ctx, tx, c.query, &p)
			if p.PlanError != c.planError || p.Method != c.method || (c.planError == "") != (p.Plan != nil) {
				t.Errorf("%q: plan %+v, error %q, method %q; want error %q, method %q", c.query, p.Plan, p.PlanError, p.Method, c.planError, c.method)
			}
			// The transaction stays usable and nothing stays prepared.
			var n int
			if err := tx.QueryRow(ctx, "SELECT count(*) FROM pg_prepared_statements").Scan(&n); err != nil || n != 0 {
				t.Errorf("%q: after explain: %d prepared statements, %v", c.query, n, err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if n, _ := tableCount(ctx, e.url, "public.suppliers"); n != 200 {
		t.Errorf("suppliers has %d rows after the explains; want 200 (nothing executed)", n)
	}

	// A role that may not read the table gets a plan error saying so.
	nogrant := e.loginRole(t)
	cfg := e.config()
	cfg.DatabaseURL = nogrant
	v2 := validator(t, cfg, Deps{})
	conn2, err := v2.pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Release()
	s2 := &dbSession{v: v2, conn: conn2, f: &findings{}, version: 150000}
	_ = s2.inTx(ctx, func(tx pgx.Tx) error {
		var p QueryPlan
		s2.explain(ctx, tx, "SELECT id FROM public.suppliers WHERE name = 'x'", &p)
		if p.PlanError != "the validator's role may not read a table of this statement (permission denied)" {
			t.Errorf("without SELECT: %q", p.PlanError)
		}
		p = QueryPlan{}
		s2.summarise(ctx, tx, []byte("not json"), &p)
		if p.PlanError != "the plan could not be read" {
			t.Errorf("bad plan JSON: %q", p.PlanError)
		}
		return nil
	})
}

func tableCount(ctx context.Context, url, table string) (int, error) {
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		return 0, err
	}
	defer c.Close(ctx)
	var n int
	err = c.QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&n)
	return n, err
}

func TestExplainStatements(t *testing.T) {
	prep, expl, dealloc, m := explainStatements("SELECT * FROM t WHERE a = $1 AND b = $2", 2, 160004, "p1")
	if prep != "" || dealloc != "" || m != "generic_plan" || expl != marker+"EXPLAIN (GENERIC_PLAN, VERBOSE, FORMAT JSON) SELECT * FROM t WHERE a = $1 AND b = $2" {
		t.Errorf("PG16: %q %q %q %q", prep, expl, dealloc, m)
	}
	prep, expl, dealloc, m = explainStatements("SELECT * FROM t WHERE a = $1 AND b = $2", 2, 150020, "p1")
	if m != "prepared_generic" || !strings.Contains(prep, `SET LOCAL plan_cache_mode = force_generic_plan; PREPARE "p1" AS SELECT`) ||
		expl != marker+`EXPLAIN (VERBOSE, FORMAT JSON) EXECUTE "p1"(NULL, NULL)` || dealloc != `DEALLOCATE "p1"` {
		t.Errorf("PG15: %q %q %q %q", prep, expl, dealloc, m)
	}
	for _, s := range []string{prep, expl} {
		if strings.Contains(strings.ToUpper(s), "ANALYZE") {
			t.Errorf("EXPLAIN ANALYZE in %q", s)
		}
	}
	if _, expl, _, m := explainStatements("SELECT 1", 0, 170000, "p"); m != "plain" || expl != marker+"EXPLAIN (VERBOSE, FORMAT JSON) SELECT 1" {
		t.Errorf("no parameters: %q %q", expl, m)
	}
}

func TestFilterColumns(t *testing.T) {
	cols := []string{"id", "status", "guest_id", "Mixed Case", "note", "text"}
	f := func(filter string, want ...string) {
		t.Helper()
		if got := filterColumns(filter, cols); !slices.Equal(got, want) {
			t.Errorf("filterColumns(%q) = %q; want %q", filter, got, want)
		}
	}
	f("((rsvps.status = $1) AND (rsvps.guest_id = $2))", "status", "guest_id")
	f("((rsvps.note ~~ $1) AND ((rsvps.status)::text = $2))", "status", "note")
	f(`(r."Mixed Case" = 'x'::text)`, "Mixed Case")
	f("((id > $1) AND (note IS NOT NULL) AND (guest_id < 3) AND (status <> 'x'))", "id", "note", "guest_id")
	f("(length(rsvps.unknown) > 3)")
	f("")
}

func TestPerRowCalls(t *testing.T) {
	f := func(expr string, want ...string) {
		t.Helper()
		if got := perRowCalls(expr); !slices.Equal(got, want) {
			t.Errorf("perRowCalls(%q) = %q; want %q", expr, got, want)
		}
	}
	f("(owner_id = auth.uid())", "auth.uid()")
	f("(owner_id = ( SELECT auth.uid() AS uid))")
	f("((( SELECT current_setting('request.jwt.claims'::text, true) AS current_setting))::jsonb ->> 'role'::text) = 'admin'::text)")
	f("((current_setting('a'::text) = 'auth.uid()'::text) AND (auth.jwt() ->> 'x' = auth.role()) AND (x = auth.uid()))",
		"current_setting(...)", "auth.jwt()", "auth.role()", "auth.uid()")
	f("(couple_id IN ( SELECT c.id FROM couples c WHERE (c.owner_id = ( SELECT auth.uid() AS uid))))")
	f("(x = myauth.uid()) OR (y = 'it''s auth.email()')")
	f("(auth.email() = email)", "auth.email()")
	f("true")
}

func TestSensitive(t *testing.T) {
	for col, want := range map[string]string{
		"email": "personal", "email_address": "personal", "phone_number": "personal", "password_hash": "personal",
		"api_key": "personal", "date_of_birth": "personal", "IBAN": "personal", "access-token": "personal",
		"card_number": "card", "cvv": "card", "cc_number": "card", "credit_card_pan": "card",
		"discard": "", "cardinality": "", "name": "", "emailed_at_count": "", "created_at": "",
	} {
		if got := sensitive(col); got != want {
			t.Errorf("sensitive(%q) = %q; want %q", col, got, want)
		}
	}
}

func TestPgBool(t *testing.T) {
	for v, want := range map[string]bool{"on": true, "true": true, "t": true, "yes": true, "1": true,
		"off": false, "false": false, "f": false, "no": false, "0": false, "of": false} {
		if got := pgBool(v, !want); got != want {
			t.Errorf("pgBool(%q) = %v", v, got)
		}
	}
	if !pgBool("maybe", true) || pgBool("", false) {
		t.Error("pgBool of an unknown value must return the default")
	}
	if optionBool([]string{"fillfactor=70", "autovacuum_enabled=off"}, "autovacuum_enabled", true) ||
		!optionBool([]string{"fillfactor=70"}, "autovacuum_enabled", true) {
		t.Error("optionBool")
	}
}
