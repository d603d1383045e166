package validate

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

// The database lints added for parity with Supabase's splinter, and the
// rewritten ones that splinter judges differently from Pulse's first
// version. Lints that need a Supabase schema or extension the database
// lacks say so in the run's not_applicable list instead of failing.

// exists reports whether the catalogue object named by sql (a to_reg*
// call) exists.
func exists(ctx context.Context, tx pgx.Tx, sql string, args ...any) (bool, error) {
	var ok bool
	err := tx.QueryRow(ctx, marker+"SELECT "+sql+" IS NOT NULL", args...).Scan(&ok)
	return ok, err
}

// requireSchema reports whether schema exists; when not, lint is noted as
// not applicable.
func (s *dbSession) requireSchema(ctx context.Context, tx pgx.Tx, lint, schema, what string) (bool, error) {
	ok, err := exists(ctx, tx, "to_regnamespace($1)", schema)
	if err == nil && !ok {
		s.f.skip(lint, fmt.Sprintf("the database has no %s schema (%s), so the lint does not apply", schema, what))
	}
	return ok, err
}

// ---- rls_policy_always_true (0024) ----

// constNodes are the expression nodes a constant expression may hold: no
// column, parameter, sub-select, aggregate or session value.
var constNodes = []string{"CONST", "OPEXPR", "BOOLEXPR", "FUNCEXPR", "RELABELTYPE", "COERCEVIAIO", "NULLTEST",
	"BOOLEANTEST", "SCALARARRAYOPEXPR", "ARRAYEXPR", "CASEEXPR", "CASEWHEN", "COALESCEEXPR", "NULLIFEXPR", "DISTINCTEXPR", "MINMAXEXPR"}

var (
	nodeName = regexp.MustCompile(`\{([A-Z_]+)`)
	nodeOID  = regexp.MustCompile(`:(funcid|opfuncid|opno|consttype|resulttype|opresulttype|funcresulttype|minmaxtype|casetype|coalescetype|array_typeid|element_typeid) (\d+)`)
)

// firstNormalOID is Postgres's FirstNormalObjectId: every object below it
// is built in.
const firstNormalOID = 16384

// alwaysTrue reports whether a policy expression is true whatever the row
// and the caller: a constant expression (true, 1 = 1, 'a' = 'a', NOT
// false...) whose value is true. tree is the stored node tree, expr its
// SQL text (pg_get_expr). Only an expression made of constants and
// built-in immutable functions and operators of built-in types is ever
// evaluated, in the check's read-only transaction.
func alwaysTrue(ctx context.Context, tx pgx.Tx, tree, expr string) (bool, error) {
	if tree == "" || expr == "" {
		return false, nil
	}
	for _, m := range nodeName.FindAllStringSubmatch(tree, -1) {
		if !slices.Contains(constNodes, m[1]) {
			return false, nil
		}
	}
	var funcs, ops []int64
	for _, m := range nodeOID.FindAllStringSubmatch(tree, -1) {
		oid, _ := strconv.ParseInt(m[2], 10, 64)
		if oid >= firstNormalOID {
			return false, nil
		}
		switch m[1] {
		case "funcid", "opfuncid":
			funcs = append(funcs, oid)
		case "opno":
			ops = append(ops, oid)
		}
	}
	var unsafe bool
	err := tx.QueryRow(ctx, marker+`SELECT EXISTS (SELECT 1 FROM unnest($1::oid[]) f(oid) LEFT JOIN pg_proc p ON p.oid = f.oid WHERE f.oid <> 0 AND (p.oid IS NULL OR p.provolatile <> 'i'))
		OR EXISTS (SELECT 1 FROM unnest($2::oid[]) o(oid) LEFT JOIN pg_operator op ON op.oid = o.oid LEFT JOIN pg_proc p ON p.oid = op.oprcode
			WHERE p.oid IS NULL OR p.provolatile <> 'i')`, funcs, ops).Scan(&unsafe)
	if err != nil || unsafe {
		return false, err
	}
	var v bool
	if _, err := tx.Exec(ctx, marker+"SAVEPOINT pulse_const"); err != nil {
		return false, err
	}
	if err := tx.QueryRow(ctx, marker+"SELECT coalesce(("+expr+")::boolean, false)").Scan(&v); err != nil {
		// An expression that fails (1/0 = 1) is not always true.
		_, rerr := tx.Exec(ctx, marker+"ROLLBACK TO SAVEPOINT pulse_const")
		return false, rerr
	}
	return v, nil
}

func checkAlwaysTrue(ctx context.Context, tx pgx.Tx, s *dbSession) error {
	type pol struct{ sch, name, pol, cmd, using, usingTree, check, checkTree string }
	var all []pol
	var p pol
	err := s.query(ctx, tx, `SELECT n.nspname::text, c.relname::text, p.polname::text, p.polcmd::text,
			coalesce(pg_get_expr(p.polqual, p.polrelid), ''), coalesce(p.polqual::text, ''),
			coalesce(pg_get_expr(p.polwithcheck, p.polrelid), ''), coalesce(p.polwithcheck::text, '')
		FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE p.polpermissive AND p.polcmd IN ('a', 'w', 'd', '*') AND c.relrowsecurity AND `+appSchema+`
		  AND (0 = ANY(p.polroles) OR EXISTS (SELECT 1 FROM pg_roles r WHERE r.oid = ANY(p.polroles) AND r.rolname::text = ANY({roles}::text[])))
		ORDER BY 1, 2, 3`, func() error { all = append(all, p); return nil },
		&p.sch, &p.name, &p.pol, &p.cmd, &p.using, &p.usingTree, &p.check, &p.checkTree)
	if err != nil {
		return err
	}
	for _, p := range all {
		var clauses []string
		if p.cmd != "a" {
			ok, err := alwaysTrue(ctx, tx, p.usingTree, p.using)
			if err != nil {
				return err
			}
			if ok {
				clauses = append(clauses, "USING "+p.using)
			}
		}
		if p.cmd != "d" {
			ok, err := alwaysTrue(ctx, tx, p.checkTree, p.check)
			if err != nil {
				return err
			}
			if ok {
				clauses = append(clauses, "WITH CHECK "+p.check)
			}
		}
		if len(clauses) == 0 {
			continue
		}
		s.f.add("rls_policy_always_true", SeverityWarning, fmt.Sprintf("policy %s on %s", p.pol, qualified(p.sch, p.name)),
			fmt.Sprintf("Policy %s on %s lets the API roles %s any row: %s is always true, so row level security does not restrict that action at all.",
				p.pol, qualified(p.sch, p.name), commandVerb(p.cmd), strings.Join(clauses, " and ")),
			fmt.Sprintf("Restrict it to the caller's rows, e.g. ALTER POLICY %s ON %s USING ((select auth.uid()) = user_id) WITH CHECK ((select auth.uid()) = user_id); or drop it.",
				pgIdent(p.pol), pgIdent(p.sch, p.name)))
	}
	return nil
}

// ---- rls_references_user_metadata (0015) ----

func checkUserMetadata(ctx context.Context, tx pgx.Tx, s *dbSession) error {
	if ok, err := s.requireSchema(ctx, tx, "rls_references_user_metadata", "auth", "Supabase Auth"); !ok || err != nil {
		return err
	}
	var sch, name, pol string
	return s.query(ctx, tx, `SELECT n.nspname::text, c.relname::text, p.polname::text
		FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace,
			LATERAL (SELECT coalesce(pg_get_expr(p.polqual, p.polrelid), '') || ' ' || coalesce(pg_get_expr(p.polwithcheck, p.polrelid), '') AS expr) e
		WHERE `+appSchema+` AND (e.expr LIKE '%auth.jwt()%user_metadata%' OR e.expr ~ 'current_setting\(.*request\.jwt\.claims.*user_metadata')
		ORDER BY 1, 2, 3`, func() error {
		s.f.add("rls_references_user_metadata", SeverityCritical, fmt.Sprintf("policy %s on %s", pol, qualified(sch, name)),
			fmt.Sprintf("Policy %s on %s reads user_metadata of the JWT: every user can set it (supabase.auth.updateUser({data: ...})), so it must never decide access.", pol, qualified(sch, name)),
			fmt.Sprintf("Decide on app_metadata (only the service role can set it) or a table of your own: ALTER POLICY %s ON %s USING (...auth.jwt() -> 'app_metadata' ...);", pgIdent(pol), pgIdent(sch, name)))
		return nil
	}, &sch, &name, &pol)
}

// ---- materialized_view_in_api (0016), foreign_table_in_api (0017) ----

func checkMatviewInAPI(ctx context.Context, tx pgx.Tx, s *dbSession) error {
	var sch, name string
	return s.query(ctx, tx, `SELECT n.nspname::text, c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind = 'm' AND `+appSchema+` AND `+notExtensionRel+` AND `+apiSelect+`
		ORDER BY 1, 2`, func() error {
		s.f.add("materialized_view_in_api", SeverityWarning, qualified(sch, name),
			fmt.Sprintf("Materialized view %s can be read by the API roles: materialized views have no row level security, so every caller reads every row.", qualified(sch, name)),
			fmt.Sprintf("REVOKE SELECT ON %s FROM anon, authenticated; or move it to a schema the API does not expose and serve it through a security_invoker view or function.", pgIdent(sch, name)))
		return nil
	}, &sch, &name)
}

func checkForeignTableInAPI(ctx context.Context, tx pgx.Tx, s *dbSession) error {
	var sch, name string
	return s.query(ctx, tx, `SELECT n.nspname::text, c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind = 'f' AND `+exposedSchema+` AND `+notExtensionRel+` AND `+apiSelect+`
		ORDER BY 1, 2`, func() error {
		s.f.add("foreign_table_in_api", SeverityWarning, qualified(sch, name),
			fmt.Sprintf("Foreign table %s is in an exposed schema and the API roles can read it: foreign tables have no row level security.", qualified(sch, name)),
			fmt.Sprintf("Move it to a schema the API does not expose (ALTER FOREIGN TABLE %s SET SCHEMA private;) or REVOKE SELECT ON %s FROM anon, authenticated;", pgIdent(sch, name), pgIdent(sch, name)))
		return nil
	}, &sch, &name)
}

// ---- unsupported_reg_types (0018) ----

func checkRegTypes(ctx context.Context, tx pgx.Tx, s *dbSession) error {
	var sch, name, col, typ string
	return s.query(ctx, tx, `SELECT n.nspname::text, c.relname::text, a.attname::text, t.typname::text
		FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		JOIN pg_type t ON t.oid = a.atttypid
		WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'm') AND `+appSchema+`
		  AND t.typnamespace = 'pg_catalog'::regnamespace
		  AND t.typname IN ('regcollation', 'regconfig', 'regdictionary', 'regnamespace', 'regoper', 'regoperator', 'regproc', 'regprocedure')
		ORDER BY 1, 2, 3`, func() error {
		s.f.add("unsupported_reg_types", SeverityWarning, fmt.Sprintf("%s.%s", qualified(sch, name), col),
			fmt.Sprintf("Column %s of %s has type %s, which stores an object id pg_upgrade cannot carry over: the database cannot be upgraded in place.", col, qualified(sch, name), typ),
			fmt.Sprintf("Store the name instead: ALTER TABLE %s ALTER COLUMN %s TYPE text USING %s::text;", pgIdent(sch, name), pgIdent(col), pgIdent(col)))
		return nil
	}, &sch, &name, &col, &typ)
}

// ---- insecure_queue_exposed_in_api (0019) ----

func checkQueueExposed(ctx context.Context, tx pgx.Tx, s *dbSession) error {
	if ok, err := s.requireSchema(ctx, tx, "insecure_queue_exposed_in_api", "pgmq", "the pgmq extension of Supabase Queues"); !ok || err != nil {
		return err
	}
	exposed := slices.Contains(s.v.cfg.ExposedSchemas, "pgmq_public")
	if !exposed {
		ok, err := exists(ctx, tx, "to_regnamespace('pgmq_public')")
		if err != nil {
			return err
		}
		exposed = ok
	}
	if !exposed {
		s.f.skip("insecure_queue_exposed_in_api", "the queues are not exposed to the API (no pgmq_public schema), so the lint does not apply")
		return nil
	}
	var name string
	return s.query(ctx, tx, `SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = 'pgmq' AND c.relname LIKE 'q\_%' AND c.relkind IN ('r', 'p') AND NOT c.relrowsecurity AND `+apiSelect+`
		ORDER BY 1`, func() error {
		s.f.add("insecure_queue_exposed_in_api", SeverityCritical, qualified("pgmq", name),
			fmt.Sprintf("Queue table %s can be read by the API roles without row level security while the queues are exposed through pgmq_public: every caller can read and consume every message.", qualified("pgmq", name)),
			fmt.Sprintf("ALTER TABLE %s ENABLE ROW LEVEL SECURITY; with policies for the roles that may use the queue, or REVOKE ALL ON %s FROM anon, authenticated;", pgIdent("pgmq", name), pgIdent("pgmq", name)))
		return nil
	}, &name)
}

// ---- table_bloat (0020) ----

// Splinter's thresholds of table_bloat.
const (
	bloatRatio = 70.0
	bloatBytes = 20 << 20
)

func checkTableBloat(ctx context.Context, tx pgx.Tx, s *dbSession) error {
	var sch, name string
	var ratio float64
	var waste int64
	// The estimate of pghero and splinter: the pages the rows would need
	// (from pg_stats widths and null fractions) against the pages the
	// table has.
	return s.query(ctx, tx, `WITH widths AS (
			SELECT st.schemaname, st.tablename, sum((1 - st.null_frac) * st.avg_width)::numeric AS datawidth, max(st.null_frac)::numeric AS maxnull,
				23 + (SELECT 1 + count(*) / 8 FROM pg_stats s2 WHERE s2.null_frac <> 0 AND s2.schemaname = st.schemaname AND s2.tablename = st.tablename) AS nullhdr
			FROM pg_stats st GROUP BY 1, 2),
		est AS (
			SELECT n.nspname::text AS sch, c.relname::text AS name, c.relpages, current_setting('block_size')::numeric AS bs,
				ceil(c.reltuples::numeric * ((w.datawidth + 24 - (CASE WHEN 23 % 8 = 0 THEN 8 ELSE 23 % 8 END))
					+ w.maxnull * (w.nullhdr + 8 - (CASE WHEN w.nullhdr % 8 = 0 THEN 8 ELSE w.nullhdr % 8 END)) + 4)
					/ (current_setting('block_size')::numeric - 20)) AS otta
			FROM widths w JOIN pg_namespace n ON n.nspname = w.schemaname JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = w.tablename
			WHERE c.relkind = 'r' AND `+appSchema+`)
		SELECT sch, name, round(CASE WHEN otta = 0 THEN 0 ELSE relpages::numeric / otta END, 1)::float8,
			(CASE WHEN relpages < otta THEN 0 ELSE bs * (relpages - otta) END)::bigint
		FROM est ORDER BY 1, 2`, func() error {
		if ratio <= bloatRatio || waste <= bloatBytes {
			return nil
		}
		s.f.add("table_bloat", SeverityInfo, qualified(sch, name),
			fmt.Sprintf("Table %s is about %.0f times the size its rows need, wasting about %d MiB: scans read the empty space and the cache holds it.", qualified(sch, name), ratio, waste>>20),
			fmt.Sprintf("VACUUM FULL %s; (it locks the table: run it in a quiet hour, or use pg_repack) and tune autovacuum for it so that it does not bloat again.", pgIdent(sch, name)))
		return nil
	}, &sch, &name, &ratio, &waste)
}

// ---- fkey_to_auth_unique (0021) ----

func checkFKeyToAuthUnique(ctx context.Context, tx pgx.Tx, s *dbSession) error {
	if ok, err := s.requireSchema(ctx, tx, "fkey_to_auth_unique", "auth", "Supabase Auth"); !ok || err != nil {
		return err
	}
	var sch, name, fk, ref string
	return s.query(ctx, tx, `SELECT n.nspname::text, c.relname::text, con.conname::text, r.relname::text
		FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		JOIN pg_class r ON r.oid = con.confrelid JOIN pg_index i ON i.indexrelid = con.conindid
		WHERE con.contype = 'f' AND r.relnamespace = 'auth'::regnamespace AND i.indisunique AND NOT i.indisprimary AND `+appSchema+`
		ORDER BY 1, 2, 3`, func() error {
		s.f.add("fkey_to_auth_unique", SeverityCritical, fmt.Sprintf("%s (foreign key %s)", qualified(sch, name), fk),
			fmt.Sprintf("Foreign key %s on %s references a unique constraint of auth.%s that is not its primary key: Supabase Auth may change or drop that constraint, which breaks or blocks its upgrades.", fk, qualified(sch, name), ref),
			fmt.Sprintf("ALTER TABLE %s DROP CONSTRAINT %s; and reference auth.%s's primary key (id) instead.", pgIdent(sch, name), pgIdent(fk), ref))
		return nil
	}, &sch, &name, &fk, &ref)
}

// ---- extension_versions_outdated (0022) ----

func checkExtensionVersions(ctx context.Context, tx pgx.Tx, s *dbSession) error {
	var name, installed, def string
	return s.query(ctx, tx, `SELECT name::text, installed_version, default_version FROM pg_available_extensions
		WHERE installed_version IS NOT NULL AND default_version IS NOT NULL AND installed_version <> default_version
		ORDER BY 1`, func() error {
		s.f.add("extension_versions_outdated", SeverityWarning, "extension "+name,
			fmt.Sprintf("Extension %s is at version %s, but the server recommends %s: older versions may carry known vulnerabilities.", name, installed, def),
			fmt.Sprintf("ALTER EXTENSION %s UPDATE TO '%s';", pgIdent(name), strings.ReplaceAll(def, "'", "''")))
		return nil
	}, &name, &installed, &def)
}

// ---- public_bucket_allows_listing (0025) ----

var bucketOnly = regexp.MustCompile(`(?is)^\s*\(*\s*bucket_id\s*=\s*'((?:[^']|'')*)'(\s*::\s*[[:alnum:]_.]+)?\s*\)*\s*$`)

func checkPublicBucketListing(ctx context.Context, tx pgx.Tx, s *dbSession) error {
	const lint = "public_bucket_allows_listing"
	ok, err := exists(ctx, tx, "to_regclass('storage.buckets')")
	if err != nil {
		return err
	}
	if objects, err := exists(ctx, tx, "to_regclass('storage.objects')"); err != nil || !ok || !objects {
		if err == nil {
			s.f.skip(lint, "the database has no storage.buckets and storage.objects tables (Supabase Storage), so the lint does not apply")
		}
		return err
	}
	var buckets [][2]string
	var id, name string
	if err := rows(ctx, tx, `SELECT id::text, name::text FROM storage.buckets WHERE public ORDER BY 1`, nil,
		func() error { buckets = append(buckets, [2]string{id, name}); return nil }, &id, &name); err != nil {
		return err
	}
	type policy struct{ name, tree, qual string }
	var pols []policy
	var p policy
	err = s.query(ctx, tx, `SELECT p.polname::text, coalesce(p.polqual::text, ''), coalesce(pg_get_expr(p.polqual, p.polrelid), '')
		FROM pg_policy p WHERE p.polrelid = 'storage.objects'::regclass AND p.polpermissive AND p.polcmd IN ('r', '*')
		  AND (0 = ANY(p.polroles) OR EXISTS (SELECT 1 FROM pg_roles r WHERE r.oid = ANY(p.polroles) AND r.rolname::text = ANY({roles}::text[])))
		ORDER BY 1`, func() error { pols = append(pols, p); return nil }, &p.name, &p.tree, &p.qual)
	if err != nil {
		return err
	}
	for _, b := range buckets {
		var broad []string
		for _, p := range pols {
			match := p.qual == ""
			if !match {
				if m := bucketOnly.FindStringSubmatch(p.qual); m != nil {
					match = strings.ReplaceAll(m[1], "''", "'") == b[0]
				} else if match, err = alwaysTrue(ctx, tx, p.tree, p.qual); err != nil {
					return err
				}
			}
			if match {
				broad = append(broad, p.name)
			}
		}
		if len(broad) == 0 {
			continue
		}
		s.f.add(lint, SeverityWarning, "bucket "+b[0],
			fmt.Sprintf("Public bucket %s has broad SELECT policies on storage.objects (%s): any client can list every file in it. A public bucket serves its files by URL without them.", b[1], strings.Join(broad, ", ")),
			fmt.Sprintf("Drop the policies (DROP POLICY %s ON storage.objects;) or narrow them to the caller's own folder, e.g. (storage.foldername(name))[1] = (select auth.uid())::text.", pgIdent(broad[0])))
	}
	return nil
}

// ---- anon_ and authenticated_security_definer_function_executable (0028, 0029) ----

func checkDefinerFunctions(ctx context.Context, tx pgx.Tx, s *dbSession) error {
	if len(s.roles) == 0 {
		s.f.skip("anon_security_definer_function_executable", "none of the API roles exists, so no API caller can execute a function")
		s.f.skip("authenticated_security_definer_function_executable", "none of the API roles exists, so no API caller can execute a function")
		return nil
	}
	anon := s.v.cfg.APIRoles[0]
	var sch, name, args, role string
	return s.query(ctx, tx, `SELECT n.nspname::text, p.proname::text, pg_get_function_identity_arguments(p.oid), r.rolname::text
		FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
		JOIN pg_roles r ON r.rolname::text = ANY({roles}::text[]) AND has_function_privilege(r.oid, p.oid, 'EXECUTE')
		WHERE p.prosecdef AND `+appSchema+`
		  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')
		ORDER BY 1, 2, 3, 4`, func() error {
		lint, who := "authenticated_security_definer_function_executable", "every signed-in caller"
		if role == anon {
			lint, who = "anon_security_definer_function_executable", "anyone holding the public anon key"
		}
		object := fmt.Sprintf("%s(%s) (role %s)", qualified(sch, name), args, role)
		s.f.add(lint, SeverityWarning, object,
			fmt.Sprintf("SECURITY DEFINER function %s(%s) may be executed by %s: it runs with its owner's privileges and bypasses row level security, and %s can call it through /rest/v1/rpc/%s.",
				qualified(sch, name), args, role, who, name),
			fmt.Sprintf("REVOKE EXECUTE ON FUNCTION %s(%s) FROM PUBLIC, %s; or make it SECURITY INVOKER, or move it to a schema the API does not expose.", pgIdent(sch, name), args, pgIdent(role)))
		return nil
	}, &sch, &name, &args, &role)
}

// ---- redundant_index (Pulse) ----

func checkRedundantIndex(ctx context.Context, tx pgx.Tx, s *dbSession) error {
	var sch, table, plain, unique string
	return s.query(ctx, tx, `SELECT n.nspname::text, c.relname::text, pc.relname::text, min(uc.relname::text)
		FROM pg_index p JOIN pg_index u ON u.indrelid = p.indrelid AND u.indisunique AND u.indisvalid
			AND u.indkey::text = p.indkey::text AND u.indclass::text = p.indclass::text AND u.indcollation::text = p.indcollation::text
			AND u.indexprs IS NULL AND u.indpred IS NULL
		JOIN pg_class pc ON pc.oid = p.indexrelid JOIN pg_class uc ON uc.oid = u.indexrelid AND uc.relam = pc.relam
		JOIN pg_class c ON c.oid = p.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE NOT p.indisunique AND p.indexprs IS NULL AND p.indpred IS NULL AND `+appSchema+`
		GROUP BY 1, 2, 3 ORDER BY 1, 2, 3`, func() error {
		s.f.add("redundant_index", SeverityWarning, qualified(sch, plain),
			fmt.Sprintf("Index %s on %s has the same columns as the unique index %s, which serves every read it does: each write maintains both.", qualified(sch, plain), qualified(sch, table), unique),
			fmt.Sprintf("DROP INDEX CONCURRENTLY %s;", pgIdent(sch, plain)))
		return nil
	}, &sch, &table, &plain, &unique)
}

// ---- sensitive_columns_exposed (0023) and Pulse's personal and card data ----

// splinterSensitive are the column names of splinter's
// sensitive_columns_exposed, matched whole (a '-' read as '_').
var splinterSensitive = []string{
	"password", "passwd", "pwd", "passphrase", "secret", "secret_key", "private_key", "api_key", "apikey",
	"auth_key", "token", "jwt", "access_token", "refresh_token", "oauth_token", "session_token", "bearer_token", "auth_code",
	"session_id", "session_key", "session_secret", "recovery_code", "backup_code", "verification_code",
	"otp", "two_factor", "2fa_secret", "2fa_code", "ssn", "social_security", "social_security_number",
	"driver_license", "drivers_license", "license_number", "passport_number", "passport_id", "national_id", "tax_id",
	"credit_card", "card_number", "cvv", "cvc", "cvn", "bank_account", "account_number", "routing_number",
	"iban", "swift_code", "bic", "health_record", "medical_record", "patient_id", "insurance_number", "health_insurance",
	"medical_insurance", "treatment", "mac_address", "macaddr", "imei", "device_uuid", "pgp_key", "gpg_key", "ssh_key",
	"certificate", "license_key", "activation_key", "facial_recognition",
}

func splinterSensitiveName(col string) bool {
	return slices.Contains(splinterSensitive, strings.ReplaceAll(strings.ToLower(col), "-", "_"))
}

// sensitive returns the kind of data a column name suggests: "card" for
// payment card data, "personal" for personal or secret data, or "".
func sensitive(col string) string {
	words := strings.FieldsFunc(strings.ToLower(col), func(r rune) bool { return r == '_' || r == '-' || r == ' ' })
	joined := strings.Join(words, "_")
	for _, w := range words {
		switch w {
		case "card", "cardnumber", "cardno", "ccnumber", "ccn", "cvv", "cvv2", "cvc", "pan":
			return "card"
		}
	}
	if strings.Contains(joined, "cc_number") || strings.Contains(joined, "cc_num") {
		return "card"
	}
	for _, p := range []string{"date_of_birth", "api_key", "national_id", "tax_id", "account_number", "sort_code", "ip_address"} {
		if strings.Contains(joined, p) {
			return "personal"
		}
	}
	for _, w := range words {
		switch w {
		case "email", "mail", "phone", "mobile", "password", "passwd", "pwd", "token", "secret", "ssn", "iban",
			"dob", "birthdate", "birthday", "passport", "address", "salary", "apikey", "postcode", "zipcode":
			return "personal"
		}
	}
	return ""
}

// cardColumn reports whether a column of type typ (format_type) can hold
// card data by its name and type: a card number needs a name that says so
// (card_number, credit_card, cc_number, ...) and a type that can hold 16
// digits (text or numeric, not integer, boolean, date, uuid...); a
// security code a name cvv, cvc or cvn. A bare "card" or "pan" word is not
// enough: place_card or pan_size are not card data.
func cardColumn(col, typ string) bool {
	words := strings.FieldsFunc(strings.ToLower(col), func(r rune) bool { return r == '_' || r == '-' || r == ' ' })
	joined := strings.Join(words, "_")
	text := strings.HasPrefix(typ, "text") || strings.HasPrefix(typ, "character") || strings.HasPrefix(typ, "numeric") || typ == "bigint"
	for _, w := range words {
		switch w {
		case "cvv", "cvv2", "cvc", "cvc2", "cvn":
			return text || typ == "integer" || typ == "smallint"
		case "cardnumber", "ccnumber", "creditcard", "pan":
			if w != "pan" || len(words) > 1 {
				return text
			}
		}
	}
	for _, p := range []string{"card_number", "card_no", "credit_card", "cc_number", "cc_num", "primary_account_number"} {
		if strings.Contains(joined, p) {
			return text
		}
	}
	return false
}

func checkSensitiveColumns(ctx context.Context, tx pgx.Tx, s *dbSession) error {
	var sch, name string
	var cols, types []string
	var readable bool
	return s.query(ctx, tx, `SELECT n.nspname::text, c.relname::text, array_agg(a.attname::text ORDER BY a.attnum),
			array_agg(format_type(a.atttypid, a.atttypmod) ORDER BY a.attnum), `+apiSelect+`
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
		WHERE c.relkind IN ('r', 'p') AND `+exposedSchema+` AND NOT c.relrowsecurity
		GROUP BY c.oid, 1, 2 ORDER BY 1, 2`, func() error {
		var named, personal, cards []string
		strong := false
		for i, col := range cols {
			if splinterSensitiveName(col) {
				named = append(named, col)
			}
			switch sensitive(col) {
			case "card":
				cards = append(cards, col)
				strong = strong || cardColumn(col, types[i])
			case "personal":
				if !splinterSensitiveName(col) {
					personal = append(personal, col)
				}
			}
		}
		if !strong {
			cards = nil
		}
		rec := fmt.Sprintf("ALTER TABLE %s ENABLE ROW LEVEL SECURITY; with policies limiting rows to their owner, and revoke the columns from the API roles if no client needs them.", pgIdent(sch, name))
		sev, how := SeverityWarning, "is not readable by the API roles today, but one GRANT exposes them"
		if readable {
			sev, how = SeverityCritical, "is readable by the API roles, so every caller can read them for every row"
		}
		if readable && len(named) > 0 {
			s.f.add("sensitive_columns_exposed", SeverityCritical, qualified(sch, name),
				fmt.Sprintf("Table %s is readable by the API roles without row level security and holds sensitive columns (%s).", qualified(sch, name), strings.Join(named, ", ")), rec)
		}
		if len(personal) > 0 {
			s.f.add("personal_columns_exposed", sev, qualified(sch, name),
				fmt.Sprintf("Table %s holds personal-looking columns (%s) without row level security; it %s.", qualified(sch, name), strings.Join(personal, ", "), how), rec)
		}
		if len(cards) > 0 {
			s.f.add("card_columns_exposed", sev, qualified(sch, name),
				fmt.Sprintf("Table %s holds payment card columns (%s) without row level security; it %s. Card data brings the database into PCI DSS scope.", qualified(sch, name), strings.Join(cards, ", "), how),
				"Do not store card numbers or security codes: keep the payment provider's token instead. Until then: "+rec)
		}
		return nil
	}, &sch, &name, &cols, &types, &readable)
}

// checkNotChecked lists splinter's lints Pulse does not check, and why.
func checkNotChecked(ctx context.Context, tx pgx.Tx, s *dbSession) error {
	graphql, err := exists(ctx, tx, "(SELECT oid FROM pg_extension WHERE extname = 'pg_graphql')")
	if err != nil {
		return err
	}
	s.f.notApplicable = append(s.f.notApplicable, notCheckedLints(graphql)...)
	return nil
}
