package validate

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

// SQL fragments. {exposed}, {excluded} and {roles} become query parameters
// holding the configured exposed schemas, excluded schemas and existing API
// roles (see bind); n is the pg_namespace and c the pg_class of the row.
const (
	// appSchema: a schema of the application, neither Postgres's nor a
	// managed one.
	appSchema = `(n.nspname::text <> ALL({excluded}::text[]) AND n.nspname NOT LIKE 'pg\_%' AND n.nspname <> 'information_schema')`
	// exposedSchema: a schema the API serves.
	exposedSchema = `(n.nspname::text = ANY({exposed}::text[]))`
	// notExtensionRel: not a member of an extension.
	notExtensionRel = `NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')`
	// apiAccess: PUBLIC or an API role may read or write the relation.
	apiAccess = `(EXISTS (SELECT 1 FROM aclexplode(c.relacl) a WHERE a.grantee = 0 AND a.privilege_type IN ('SELECT', 'INSERT', 'UPDATE', 'DELETE'))
		OR EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname::text = ANY({roles}::text[]) AND has_table_privilege(r.oid, c.oid, 'SELECT,INSERT,UPDATE,DELETE')))`
	// apiSelect: PUBLIC or an API role may read the relation.
	apiSelect = `(EXISTS (SELECT 1 FROM aclexplode(c.relacl) a WHERE a.grantee = 0 AND a.privilege_type = 'SELECT')
		OR EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname::text = ANY({roles}::text[]) AND has_table_privilege(r.oid, c.oid, 'SELECT')))`
	// fkCovered: index i's leading columns are exactly the columns of
	// foreign key con, in any order.
	fkCovered = `((i.indkey::smallint[])[0:cardinality(con.conkey) - 1] @> con.conkey AND (i.indkey::smallint[])[0:cardinality(con.conkey) - 1] <@ con.conkey)`
)

// bind replaces the placeholders of sql with $1, $2, ... in order of first
// appearance and returns the arguments that go with them.
func (s *dbSession) bind(sql string) (string, []any) {
	values := map[string]any{"{exposed}": s.v.cfg.ExposedSchemas, "{excluded}": s.v.cfg.ExcludedSchemas, "{roles}": s.roles}
	var args []any
	for {
		first, at := "", -1
		for name := range values {
			if i := strings.Index(sql, name); i >= 0 && (at < 0 || i < at) {
				first, at = name, i
			}
		}
		if at < 0 {
			return sql, args
		}
		args = append(args, values[first])
		sql = strings.ReplaceAll(sql, first, "$"+strconv.Itoa(len(args)))
		delete(values, first)
	}
}

// query runs a check's query with its placeholders bound and, for each
// row, scans it into dest and calls each.
func (s *dbSession) query(ctx context.Context, tx pgx.Tx, sql string, each func() error, dest ...any) error {
	sql, args := s.bind(sql)
	return rows(ctx, tx, sql, args, each, dest...)
}

func qualified(schema, name string) string { return schema + "." + name }

// ---- schema ----

func checkRequiredTables(ctx context.Context, tx pgx.Tx, s *dbSession) error {
	schemas := slices.Clone(s.v.cfg.ExposedSchemas)
	for _, t := range s.v.cfg.RequiredTables {
		if sch, _, ok := strings.Cut(t, "."); ok && !slices.Contains(schemas, sch) {
			schemas = append(schemas, sch)
		}
	}
	have := map[string]bool{}
	byName := map[string]bool{}
	var sch, name string
	err := rows(ctx, tx, `SELECT n.nspname::text, c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind IN ('r', 'p') AND n.nspname::text = ANY($1::text[])`, []any{schemas}, func() error {
		have[qualified(sch, name)] = true
		if slices.Contains(s.v.cfg.ExposedSchemas, sch) {
			byName[name] = true
		}
		return nil
	}, &sch, &name)
	if err != nil {
		return err
	}
	for _, t := range s.v.cfg.RequiredTables {
		sch, name, ok := strings.Cut(t, ".")
		if !ok {
			name, sch = t, s.v.cfg.ExposedSchemas[0]
			if byName[name] {
				continue
			}
		} else if have[t] {
			continue
		}
		s.f.add("required_table_missing", SeverityCritical, qualified(sch, name),
			fmt.Sprintf("Required table %s is missing (looked for in %s).", name, strings.Join(lookedIn(t, s.v.cfg.ExposedSchemas), ", ")),
			fmt.Sprintf("Create %s with a primary key, enable row level security on it and add its policies (the app's migrations define it).", pgIdent(sch, name)))
	}
	return nil
}

func lookedIn(table string, exposed []string) []string {
	if sch, _, ok := strings.Cut(table, "."); ok {
		return []string{sch}
	}
	return exposed
}

func checkNoPrimaryKey(ctx context.Context, tx pgx.Tx, s *dbSession) error {
	var sch, name string
	return s.query(ctx, tx, `SELECT n.nspname::text, c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND `+appSchema+` AND `+notExtensionRel+`
		  AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conrelid = c.oid AND k.contype = 'p')
		ORDER BY 1, 2`, func() error {
		s.f.add("no_primary_key", SeverityInfo, qualified(sch, name),
			fmt.Sprintf("Table %s has no primary key: rows cannot be addressed reliably, logical replication (Supabase Realtime) cannot send its updates and deletes, and duplicates go unnoticed.", qualified(sch, name)),
			fmt.Sprintf("Add one: ALTER TABLE %s ADD PRIMARY KEY (<unique, non-null columns>); or add an identity column: ALTER TABLE %s ADD COLUMN id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY;",
				pgIdent(sch, name), pgIdent(sch, name)))
		return nil
	}, &sch, &name)
}

// ---- permissions ----

func checkAPIRoles(_ context.Context, _ pgx.Tx, s *dbSession) error {
	var missing []string
	for _, r := range s.v.cfg.APIRoles {
		if !slices.Contains(s.roles, r) {
			missing = append(missing, r)
		}
	}
	if len(missing) > 0 {
		s.f.add("api_roles_missing", SeverityInfo, "roles "+strings.Join(missing, ", "),
			fmt.Sprintf("The API roles %s do not exist in this database (a plain Postgres rather than Supabase?): exposure is judged from grants to PUBLIC and the roles that exist.", strings.Join(missing, ", ")),
			"Configure the roles the API really uses (APIRoles), or ignore this on a database without an API.")
	}
	return nil
}

func checkRLSDisabled(ctx context.Context, tx pgx.Tx, s *dbSession) error {
	var sch, name string
	var readable bool
	return s.query(ctx, tx, `SELECT n.nspname::text, c.relname::text, `+apiSelect+` FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind IN ('r', 'p') AND `+exposedSchema+` AND NOT c.relrowsecurity AND `+apiAccess+`
		ORDER BY 1, 2`, func() error {
		if !readable {
			// Splinter looks at reads only; a table the API may write
			// but not read is Pulse's own finding.
			s.f.add("rls_disabled_write_only", SeverityCritical, qualified(sch, name),
				fmt.Sprintf("Table %s is in an exposed schema and the API roles may write it (insert, update or delete) but not read it, and row level security is disabled: every API caller can write any row.", qualified(sch, name)),
				fmt.Sprintf("ALTER TABLE %s ENABLE ROW LEVEL SECURITY; then create policies for the writes the app needs (e.g. FOR INSERT WITH CHECK (owner_id = (select auth.uid()))).", pgIdent(sch, name)))
			return nil
		}
		s.f.add("rls_disabled_in_public", SeverityCritical, qualified(sch, name),
			fmt.Sprintf("Table %s is in an exposed schema and granted to the API roles, but row level security is disabled: every API caller can read and change every row.", qualified(sch, name)),
			fmt.Sprintf("ALTER TABLE %s ENABLE ROW LEVEL SECURITY; then create policies for the access the app needs.", pgIdent(sch, name)))
		return nil
	}, &sch, &name, &readable)
}

func checkPolicyRLSDisabled(ctx context.Context, tx pgx.Tx, s *dbSession) error {
	var sch, name string
	var pols []string
	return s.query(ctx, tx, `SELECT n.nspname::text, c.relname::text, array_agg(p.polname::text ORDER BY p.polname)
		FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE NOT c.relrowsecurity AND `+appSchema+`
		GROUP BY 1, 2 ORDER BY 1, 2`, func() error {
		s.f.add("policy_exists_rls_disabled", SeverityCritical, qualified(sch, name),
			fmt.Sprintf("Table %s has policies (%s) but row level security is disabled, so the policies are ignored.", qualified(sch, name), strings.Join(pols, ", ")),
			fmt.Sprintf("ALTER TABLE %s ENABLE ROW LEVEL SECURITY;", pgIdent(sch, name)))
		return nil
	}, &sch, &name, &pols)
}

func checkRLSNoPolicy(ctx context.Context, tx pgx.Tx, s *dbSession) error {
	var sch, name string
	return s.query(ctx, tx, `SELECT n.nspname::text, c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind IN ('r', 'p') AND c.relrowsecurity AND `+appSchema+`
		  AND NOT EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid)
		ORDER BY 1, 2`, func() error {
		s.f.add("rls_enabled_no_policy", SeverityInfo, qualified(sch, name),
			fmt.Sprintf("Table %s has row level security enabled but no policy: the API roles can neither read nor write it.", qualified(sch, name)),
			fmt.Sprintf("Create the policies the app needs, e.g. CREATE POLICY owner_select ON %s FOR SELECT TO authenticated USING ((select auth.uid()) = user_id);", pgIdent(sch, name)))
		return nil
	}, &sch, &name)
}

func checkMultiplePermissive(ctx context.Context, tx pgx.Tx, s *dbSession) error {
	var sch, name, role, act string
	var pols []string
	// A policy without TO applies to PUBLIC, that is to every role: it
	// counts for each API role (for "public" when none exists).
	return s.query(ctx, tx, `SELECT n.nspname::text, c.relname::text, pr.rolname, act, array_agg(p.polname::text ORDER BY p.polname)
		FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		CROSS JOIN LATERAL (
			SELECT r.rolname::text FROM pg_roles r WHERE r.oid = ANY(p.polroles)
			UNION SELECT x FROM unnest({roles}::text[]) AS x WHERE 0 = ANY(p.polroles)
			UNION SELECT 'public' WHERE 0 = ANY(p.polroles) AND cardinality({roles}::text[]) = 0) AS pr(rolname)
		CROSS JOIN LATERAL unnest(CASE p.polcmd WHEN 'r' THEN ARRAY['SELECT'] WHEN 'a' THEN ARRAY['INSERT'] WHEN 'w' THEN ARRAY['UPDATE']
			WHEN 'd' THEN ARRAY['DELETE'] ELSE ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE'] END) AS act
		WHERE p.polpermissive AND `+appSchema+`
		GROUP BY 1, 2, 3, 4 HAVING count(*) > 1 ORDER BY 1, 2, 3, 4`, func() error {
		s.f.add("multiple_permissive_policies", SeverityWarning, fmt.Sprintf("%s (role %s, %s)", qualified(sch, name), role, act),
			fmt.Sprintf("Table %s has %d permissive policies for role %s and %s (%s): each one is evaluated for every row of every such query.",
				qualified(sch, name), len(pols), role, act, strings.Join(pols, ", ")),
			fmt.Sprintf("Merge them into one policy on %s whose condition ORs theirs, or make those meant to narrow access RESTRICTIVE.", pgIdent(sch, name)))
		return nil
	}, &sch, &name, &role, &act, &pols)
}

func commandVerb(cmd string) string {
	switch cmd {
	case "a":
		return "insert"
	case "w":
		return "update"
	case "d":
		return "delete"
	}
	return "read, insert, update and delete"
}

// ---- performance ----

func checkStatsPrivilege(_ context.Context, _ pgx.Tx, s *dbSession) error {
	if !s.superuser && !s.stats {
		s.f.add("insufficient_privilege", SeverityCritical, "check slow_queries",
			"The validator's role is not a member of pg_read_all_stats: pg_stat_statements and pg_stat_activity hide other roles' statements and sessions, so slow queries cannot be judged.",
			"GRANT pg_monitor TO the validator's role (it includes pg_read_all_stats).")
	}
	return nil
}

// checkUnindexedFK reports foreign keys without a valid covering index
// (unindexed_foreign_keys; an invalid index covers nothing) and, as
// Pulse's own finding, those covered only by partial indexes, which
// splinter counts as covered.
func checkUnindexedFK(ctx context.Context, tx pgx.Tx, s *dbSession) error {
	var sch, name, fk string
	var cols []string
	var partial bool
	return s.query(ctx, tx, `SELECT n.nspname::text, c.relname::text, con.conname::text, array_agg(a.attname::text ORDER BY k.ord),
			EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = con.conrelid AND i.indisvalid AND `+fkCovered+`)
		FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		CROSS JOIN LATERAL unnest(con.conkey) WITH ORDINALITY AS k(attnum, ord)
		JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum
		WHERE con.contype = 'f' AND `+appSchema+`
		  AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = con.conrelid AND i.indisvalid AND i.indpred IS NULL AND `+fkCovered+`)
		GROUP BY 1, 2, 3, con.oid, con.conrelid, con.conkey ORDER BY 1, 2, 3`, func() error {
		if partial {
			s.f.add("foreign_key_partial_index", SeverityInfo, fmt.Sprintf("%s (foreign key %s)", qualified(sch, name), fk),
				fmt.Sprintf("Foreign key %s on %s (%s) is covered only by a partial index: rows outside its predicate are found by scanning %s on every delete or key update of the referenced table.",
					fk, qualified(sch, name), strings.Join(cols, ", "), qualified(sch, name)),
				fmt.Sprintf("CREATE INDEX CONCURRENTLY ON %s (%s); (without a WHERE clause)", pgIdent(sch, name), identList(cols)))
			return nil
		}
		s.f.add("unindexed_foreign_keys", SeverityInfo, fmt.Sprintf("%s (foreign key %s)", qualified(sch, name), fk),
			fmt.Sprintf("Foreign key %s on %s (%s) has no covering index: joins on it and every delete or key update of the referenced table scan %s.",
				fk, qualified(sch, name), strings.Join(cols, ", "), qualified(sch, name)),
			fmt.Sprintf("CREATE INDEX CONCURRENTLY ON %s (%s);", pgIdent(sch, name), identList(cols)))
		return nil
	}, &sch, &name, &fk, &cols, &partial)
}

func identList(cols []string) string {
	q := make([]string, len(cols))
	for i, c := range cols {
		q[i] = pgIdent(c)
	}
	return strings.Join(q, ", ")
}

func checkUnusedIndex(ctx context.Context, tx pgx.Tx, s *dbSession) error {
	var sch, table, idx string
	var size int64
	return s.query(ctx, tx, `SELECT n.nspname::text, st.relname::text, st.indexrelname::text, pg_relation_size(st.indexrelid)
		FROM pg_stat_user_indexes st JOIN pg_index i ON i.indexrelid = st.indexrelid
		JOIN pg_class c ON c.oid = st.relid JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE st.idx_scan = 0 AND NOT i.indisunique AND NOT i.indisprimary AND i.indisvalid AND `+appSchema+`
		  AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)
		  AND NOT EXISTS (SELECT 1 FROM pg_constraint con WHERE con.contype = 'f' AND con.conrelid = i.indrelid AND `+fkCovered+`)
		ORDER BY 1, 3`, func() error {
		s.f.add("unused_index", SeverityInfo, qualified(sch, idx),
			fmt.Sprintf("Index %s on %s has never been scanned since the statistics were last reset; it costs %d bytes and slows every write.", qualified(sch, idx), qualified(sch, table), size),
			fmt.Sprintf("If no replica or rare report uses it: DROP INDEX CONCURRENTLY %s;", pgIdent(sch, idx)))
		return nil
	}, &sch, &table, &idx, &size)
}

func checkDuplicateIndex(ctx context.Context, tx pgx.Tx, s *dbSession) error {
	var sch, table string
	var names []string
	var constraint, unique []bool
	return s.query(ctx, tx, `SELECT n.nspname::text, c.relname::text, array_agg(ic.relname::text ORDER BY ic.relname),
			array_agg(EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid) ORDER BY ic.relname),
			array_agg(i.indisunique ORDER BY ic.relname)
		FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE `+appSchema+`
		GROUP BY n.nspname, c.relname, i.indrelid, ic.relam, i.indisunique, i.indkey::text, i.indclass::text, i.indcollation::text,
			coalesce(pg_get_expr(i.indexprs, i.indrelid), ''), coalesce(pg_get_expr(i.indpred, i.indrelid), '')
		HAVING count(*) > 1 ORDER BY 1, 2, 3`, func() error {
		keep := keepIndex(constraint, unique)
		var drops []string
		for i, n := range names {
			if i != keep {
				drops = append(drops, "DROP INDEX CONCURRENTLY "+pgIdent(sch, n)+";")
			}
		}
		s.f.add("duplicate_index", SeverityWarning, fmt.Sprintf("%s (%s)", qualified(sch, table), strings.Join(names, ", ")),
			fmt.Sprintf("Indexes %s on %s are identical (same columns, expressions, predicate, method and uniqueness): each write maintains them all, reads use one.",
				strings.Join(names, ", "), qualified(sch, table)),
			fmt.Sprintf("Keep %s and drop the others: %s (an index that backs a constraint goes with ALTER TABLE ... DROP CONSTRAINT instead).",
				names[keep], strings.Join(drops, " ")))
		return nil
	}, &sch, &table, &names, &constraint, &unique)
}

// keepIndex picks the index of a duplicate set to keep: one backing a
// constraint, else a unique one, else the first.
func keepIndex(constraint, unique []bool) int {
	if i := slices.Index(constraint, true); i >= 0 {
		return i
	}
	return max(slices.Index(unique, true), 0)
}

func checkInvalidIndex(ctx context.Context, tx pgx.Tx, s *dbSession) error {
	var sch, idx, table string
	return s.query(ctx, tx, `SELECT n.nspname::text, ic.relname::text, c.relname::text
		FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = ic.relnamespace
		WHERE NOT i.indisvalid AND `+appSchema+`
		ORDER BY 1, 2`, func() error {
		s.f.add("invalid_index", SeverityWarning, qualified(sch, idx),
			fmt.Sprintf("Index %s on %s is invalid (a CREATE INDEX CONCURRENTLY or REINDEX that failed): queries cannot use it, yet every write still maintains it.", qualified(sch, idx), qualified(sch, table)),
			fmt.Sprintf("REINDEX INDEX CONCURRENTLY %s; or DROP INDEX CONCURRENTLY %s; and create it again.", pgIdent(sch, idx), pgIdent(sch, idx)))
		return nil
	}, &sch, &idx, &table)
}

func checkRLSInitPlan(ctx context.Context, tx pgx.Tx, s *dbSession) error {
	var sch, name, pol, using, check string
	return s.query(ctx, tx, `SELECT n.nspname::text, c.relname::text, p.polname::text,
			coalesce(pg_get_expr(p.polqual, p.polrelid), ''), coalesce(pg_get_expr(p.polwithcheck, p.polrelid), '')
		FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE `+appSchema+` ORDER BY 1, 2, 3`, func() error {
		calls := perRowCalls(using)
		for _, fn := range perRowCalls(check) {
			if !slices.Contains(calls, fn) {
				calls = append(calls, fn)
			}
		}
		if len(calls) == 0 {
			return nil
		}
		s.f.add("auth_rls_initplan", SeverityWarning, fmt.Sprintf("policy %s on %s", pol, qualified(sch, name)),
			fmt.Sprintf("Policy %s on %s calls %s for every row it checks; wrapped in a sub-select the call is made once per statement.", pol, qualified(sch, name), strings.Join(calls, ", ")),
			fmt.Sprintf("In policy %s on %s write (select %s) instead of %s, e.g. USING (user_id = (select auth.uid())).", pgIdent(pol), pgIdent(sch, name), calls[0], calls[0]))
		return nil
	}, &sch, &name, &pol, &using, &check)
}

// perRowCalls returns the calls of auth.uid(), auth.jwt(), auth.role(),
// auth.email() and current_setting() in a policy expression (as
// pg_get_expr prints it) that are not inside a sub-select, in order of
// appearance, each once.
func perRowCalls(expr string) []string {
	var out []string
	var stack []bool // for each open parenthesis: does it start a sub-select?
	inSub := func() bool { return slices.Contains(stack, true) }
	lower := strings.ToLower(expr)
	for i := 0; i < len(expr); i++ {
		switch c := expr[i]; {
		case c == '\'':
			for i++; i < len(expr); i++ {
				if expr[i] == '\'' {
					if i+1 < len(expr) && expr[i+1] == '\'' {
						i++
						continue
					}
					break
				}
			}
		case c == '(':
			stack = append(stack, strings.HasPrefix(strings.TrimLeft(lower[i+1:], " \n\t"), "select "))
		case c == ')':
			if len(stack) > 0 {
				stack = stack[:len(stack)-1]
			}
		default:
			for _, fn := range []string{"auth.uid", "auth.jwt", "auth.role", "auth.email", "current_setting"} {
				if !strings.HasPrefix(lower[i:], fn+"(") || i > 0 && identByte(lower[i-1]) {
					continue
				}
				name := fn + "()"
				if fn == "current_setting" {
					name = "current_setting(...)"
				}
				if !inSub() && !slices.Contains(out, name) {
					out = append(out, name)
				}
				i += len(fn) - 1
				break
			}
		}
	}
	return out
}

func identByte(b byte) bool {
	return b == '_' || b == '.' || b >= 'a' && b <= 'z' || b >= '0' && b <= '9' || b == '"'
}

func checkConnections(ctx context.Context, tx pgx.Tx, s *dbSession) error {
	var total, maxConns int64
	err := tx.QueryRow(ctx, marker+`SELECT count(*) FILTER (WHERE backend_type = 'client backend'), current_setting('max_connections')::bigint
		FROM pg_stat_activity`).Scan(&total, &maxConns)
	if err != nil {
		return err
	}
	usage := float64(total) / float64(max(maxConns, 1))
	if usage > s.v.cfg.MaxConnectionUsage {
		s.f.add("connection_usage_high", SeverityCritical, "connections",
			fmt.Sprintf("%d of %d connections are in use (%.1f%%, above %.0f%%): new connections will soon be refused, and every request that needs one fails.",
				total, maxConns, usage*100, s.v.cfg.MaxConnectionUsage*100),
			"Put the app behind a pooler in transaction mode (Supavisor or PgBouncer, port 6543 on Supabase) with a bounded pool per instance, close idle clients, or raise max_connections with the memory to match.")
	}
	return nil
}

func checkCacheHitRate(ctx context.Context, tx pgx.Tx, s *dbSession) error {
	var heapHit, heapRead, idxHit, idxRead int64
	err := tx.QueryRow(ctx, marker+`SELECT coalesce(sum(heap_blks_hit), 0)::bigint, coalesce(sum(heap_blks_read), 0)::bigint,
			(SELECT coalesce(sum(idx_blks_hit), 0)::bigint FROM pg_statio_user_indexes), (SELECT coalesce(sum(idx_blks_read), 0)::bigint FROM pg_statio_user_indexes)
		FROM pg_statio_user_tables`).Scan(&heapHit, &heapRead, &idxHit, &idxRead)
	if err != nil {
		return err
	}
	for _, k := range []struct {
		what      string
		hit, read int64
	}{{"table data", heapHit, heapRead}, {"indexes", idxHit, idxRead}} {
		n := k.hit + k.read
		if n < s.v.cfg.MinCacheBlocks || n == 0 {
			continue
		}
		if rate := float64(k.hit) / float64(n); rate < s.v.cfg.MinCacheHitRate {
			s.f.add("cache_hit_rate_low", SeverityWarning, k.what,
				fmt.Sprintf("The buffer cache hit rate of %s is %.2f%% (below %.0f%%, over %d blocks): queries wait on disk reads.", k.what, rate*100, s.v.cfg.MinCacheHitRate*100, n),
				"Give the database more memory (shared_buffers about 25% of RAM, a larger compute size on Supabase), or shrink the working set: index the hot queries, archive cold rows.")
		}
	}
	return nil
}

func checkAutovacuum(ctx context.Context, tx pgx.Tx, s *dbSession) error {
	var global string
	if err := tx.QueryRow(ctx, marker+`SELECT current_setting('autovacuum')`).Scan(&global); err != nil {
		return err
	}
	if !pgBool(global, true) {
		s.f.add("autovacuum_disabled", SeverityCritical, "server",
			"Autovacuum is off for the whole server: dead rows pile up, tables and indexes bloat, statistics go stale and transaction ID wraparound will eventually stop writes.",
			"ALTER SYSTEM SET autovacuum = on; SELECT pg_reload_conf();")
	}
	var sch, name string
	var opts, toast []string
	return s.query(ctx, tx, `SELECT n.nspname::text, c.relname::text, coalesce(c.reloptions, '{}')::text[],
			coalesce((SELECT t.reloptions FROM pg_class t WHERE t.oid = c.reltoastrelid), '{}')::text[]
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind IN ('r', 'm', 'p') AND `+appSchema+`
		ORDER BY 1, 2`, func() error {
		var which []string
		if !optionBool(opts, "autovacuum_enabled", true) {
			which = append(which, "autovacuum_enabled")
		}
		if !optionBool(toast, "autovacuum_enabled", true) {
			which = append(which, "toast.autovacuum_enabled")
		}
		if len(which) == 0 {
			return nil
		}
		s.f.add("autovacuum_disabled", SeverityWarning, qualified(sch, name),
			fmt.Sprintf("Autovacuum is disabled on %s (%s = false): its dead rows are never reclaimed and its statistics go stale.", qualified(sch, name), strings.Join(which, ", ")),
			fmt.Sprintf("ALTER TABLE %s RESET (%s);", pgIdent(sch, name), strings.Join(which, ", ")))
		return nil
	}, &sch, &name, &opts, &toast)
}

// optionBool reads a boolean reloption from name=value pairs.
func optionBool(opts []string, name string, def bool) bool {
	for _, o := range opts {
		if k, v, ok := strings.Cut(o, "="); ok && strings.EqualFold(k, name) {
			return pgBool(v, def)
		}
	}
	return def
}

// pgBool parses a Postgres boolean setting (on/off, true/false, yes/no,
// 1/0, or a unique prefix of those words).
func pgBool(v string, def bool) bool {
	v = strings.ToLower(strings.TrimSpace(v))
	switch {
	case v == "on" || v == "1" || v != "" && (strings.HasPrefix("true", v) || strings.HasPrefix("yes", v)):
		return true
	case v == "off" || v == "of" || v == "0" || v != "" && (strings.HasPrefix("false", v) || strings.HasPrefix("no", v)):
		return false
	}
	return def
}

// ---- security ----

func checkDefinerViews(ctx context.Context, tx pgx.Tx, s *dbSession) error {
	var sch, name string
	var opts []string
	return s.query(ctx, tx, `SELECT n.nspname::text, c.relname::text, coalesce(c.reloptions, '{}')::text[]
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind = 'v' AND `+appSchema+` AND `+notExtensionRel+` AND `+apiSelect+`
		ORDER BY 1, 2`, func() error {
		if s.version >= 150000 && optionBool(opts, "security_invoker", false) {
			return nil
		}
		rec := fmt.Sprintf("ALTER VIEW %s SET (security_invoker = true);", pgIdent(sch, name))
		if s.version < 150000 {
			rec = fmt.Sprintf("Upgrade to PostgreSQL 15 or later and run ALTER VIEW %s SET (security_invoker = true); until then revoke it from the API roles.", pgIdent(sch, name))
		}
		s.f.add("security_definer_view", SeverityCritical, qualified(sch, name),
			fmt.Sprintf("View %s runs with its owner's privileges (no security_invoker) and the API roles can read it: it bypasses the row level security of the tables it reads for every API caller.", qualified(sch, name)),
			rec)
		return nil
	}, &sch, &name, &opts)
}

func checkSearchPath(ctx context.Context, tx pgx.Tx, s *dbSession) error {
	var sch, name, args string
	var definer bool
	return s.query(ctx, tx, `SELECT n.nspname::text, p.proname::text, pg_get_function_identity_arguments(p.oid), p.prosecdef
		FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
		WHERE `+appSchema+` AND p.prokind IN ('f', 'p')
		  AND NOT EXISTS (SELECT 1 FROM unnest(coalesce(p.proconfig, '{}')) AS cfg(setting) WHERE cfg.setting LIKE 'search\_path=%')
		  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')
		ORDER BY 1, 2, 3`, func() error {
		sev, kind := SeverityWarning, "Function"
		if definer {
			kind = "SECURITY DEFINER function"
		}
		object := fmt.Sprintf("%s(%s)", qualified(sch, name), args)
		s.f.add("function_search_path_mutable", sev, object,
			fmt.Sprintf("%s %s does not set search_path: it resolves names through the caller's search_path, so a caller who can create objects earlier on the path can make it run their code.", kind, object),
			fmt.Sprintf("ALTER FUNCTION %s(%s) SET search_path = ''; and schema-qualify the names it uses.", pgIdent(sch, name), args))
		return nil
	}, &sch, &name, &args, &definer)
}

func checkExtensionsExposed(ctx context.Context, tx pgx.Tx, s *dbSession) error {
	var ext, sch string
	var relocatable bool
	return s.query(ctx, tx, `SELECT e.extname::text, n.nspname::text, e.extrelocatable
		FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
		WHERE `+exposedSchema+` ORDER BY 1`, func() error {
		rec := fmt.Sprintf("CREATE SCHEMA IF NOT EXISTS extensions; ALTER EXTENSION %s SET SCHEMA extensions;", pgIdent(ext))
		if !relocatable {
			rec = fmt.Sprintf("CREATE SCHEMA IF NOT EXISTS extensions; DROP EXTENSION %s; CREATE EXTENSION %s SCHEMA extensions; (it cannot be moved in place).", pgIdent(ext), pgIdent(ext))
		}
		s.f.add("extension_in_public", SeverityWarning, "extension "+ext,
			fmt.Sprintf("Extension %s is installed in the exposed schema %s: its functions and tables are served by the API and sit on every role's search_path.", ext, sch),
			rec)
		return nil
	}, &ext, &sch, &relocatable)
}

func checkAuthUsersExposed(ctx context.Context, tx pgx.Tx, s *dbSession) error {
	if ok, err := s.requireSchema(ctx, tx, "auth_users_exposed", "auth", "Supabase Auth"); !ok || err != nil {
		return err
	}
	var sch, name, kind string
	var exposed bool
	return s.query(ctx, tx, `SELECT DISTINCT n.nspname::text, c.relname::text, c.relkind::text, `+apiAccess+`
		FROM pg_depend d JOIN pg_rewrite rw ON rw.oid = d.objid JOIN pg_class c ON c.oid = rw.ev_class JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass
		  AND d.refobjid = (SELECT u.oid FROM pg_class u JOIN pg_namespace un ON un.oid = u.relnamespace WHERE un.nspname = 'auth' AND u.relname = 'users')
		  AND c.oid <> d.refobjid AND c.relkind IN ('v', 'm') AND `+exposedSchema+`
		ORDER BY 1, 2`, func() error {
		sev, how := SeverityWarning, "It is not granted to the API roles today, but one GRANT exposes it."
		if exposed {
			sev, how = SeverityCritical, "The API roles can read it, so every caller can list the platform's users."
		}
		what := "View"
		if kind == "m" {
			what = "Materialized view"
		}
		s.f.add("auth_users_exposed", sev, qualified(sch, name),
			fmt.Sprintf("%s %s in an exposed schema reads auth.users (emails, phone numbers, sign-in data). %s", what, qualified(sch, name), how),
			fmt.Sprintf("Move %s out of the exposed schemas or REVOKE ALL ON %s FROM anon, authenticated; expose only the columns needed, through a security_invoker view on a table of your own.",
				pgIdent(sch, name), pgIdent(sch, name)))
		return nil
	}, &sch, &name, &kind, &exposed)
}
