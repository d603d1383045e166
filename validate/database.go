package validate

import (
	"context"
	"errors"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/wedsync/pulse/internal/safeerr"
)

// marker starts every statement the validator sends, so that the slow
// query check can leave the validator's own statements out of
// pg_stat_statements, which keeps comments.
const marker = "/* pulse-validate */ "

// dbSession is one validation run against the app's database: one
// connection, each check in its own read-only transaction.
type dbSession struct {
	v         *Validator
	conn      *pgxpool.Conn
	f         *findings
	version   int      // server_version_num, e.g. 150020
	superuser bool     // the validator's role
	stats     bool     // it may read other roles' statistics (pg_read_all_stats)
	roles     []string // the configured API roles that exist
	plans     []QueryPlan
}

// dbCheck is one check of the database.
type dbCheck struct {
	name string
	run  func(ctx context.Context, tx pgx.Tx, s *dbSession) error
}

// dbChecks are the checks of each validation type, in order.
var dbChecks = map[string][]dbCheck{
	"schema": {
		{"required_tables", checkRequiredTables},
		{"no_primary_key", checkNoPrimaryKey},
		{"unsupported_reg_types", checkRegTypes},
	},
	"permissions": {
		{"api_roles", checkAPIRoles},
		{"rls_disabled_in_public", checkRLSDisabled},
		{"policy_exists_rls_disabled", checkPolicyRLSDisabled},
		{"rls_enabled_no_policy", checkRLSNoPolicy},
		{"multiple_permissive_policies", checkMultiplePermissive},
		{"rls_policy_always_true", checkAlwaysTrue},
		{"rls_references_user_metadata", checkUserMetadata},
		{"insecure_queue_exposed_in_api", checkQueueExposed},
		{"public_bucket_allows_listing", checkPublicBucketListing},
	},
	"performance": {
		{"stats_privilege", checkStatsPrivilege},
		{"unindexed_foreign_keys", checkUnindexedFK},
		{"unused_index", checkUnusedIndex},
		{"duplicate_index", checkDuplicateIndex},
		{"redundant_index", checkRedundantIndex},
		{"invalid_index", checkInvalidIndex},
		{"auth_rls_initplan", checkRLSInitPlan},
		{"table_bloat", checkTableBloat},
		{"slow_queries", checkSlowQueries},
		{"connection_usage", checkConnections},
		{"cache_hit_rate", checkCacheHitRate},
		{"autovacuum_disabled", checkAutovacuum},
	},
	"security": {
		{"api_roles", checkAPIRoles},
		{"security_definer_view", checkDefinerViews},
		{"function_search_path_mutable", checkSearchPath},
		{"extension_in_public", checkExtensionsExposed},
		{"extension_versions_outdated", checkExtensionVersions},
		{"sensitive_columns_exposed", checkSensitiveColumns},
		{"auth_users_exposed", checkAuthUsersExposed},
		{"materialized_view_in_api", checkMatviewInAPI},
		{"foreign_table_in_api", checkForeignTableInAPI},
		{"fkey_to_auth_unique", checkFKeyToAuthUnique},
		{"security_definer_functions", checkDefinerFunctions},
		{"not_checked", checkNotChecked},
	},
}

// authSchemaChecks are the database checks of auth/schema: how the app's
// database holds its users (see authschema.go).
var authSchemaChecks = []dbCheck{
	{"user_id_columns", checkUserIDColumns},
	{"auth_user_delete_blocked", checkAuthUserDeletes},
}

// checkDatabase runs the checks of typ and adds their findings to f. It
// returns the optimisation plans of slow statements (performance only).
func (v *Validator) checkDatabase(ctx context.Context, typ string, f *findings) []QueryPlan {
	return v.runDatabase(ctx, dbChecks[typ], f)
}

// runDatabase runs checks in one session against the app's database and
// adds their findings to f; a database that cannot be looked at is a
// critical finding.
func (v *Validator) runDatabase(ctx context.Context, checks []dbCheck, f *findings) []QueryPlan {
	const grant = "Connect Pulse with a role that may log in and read the catalogues; for performance checks grant it pg_monitor."
	if v.cfg.DatabaseURL == "" {
		f.add("database_not_configured", SeverityCritical, "database",
			"No database URL is configured, so the app's Postgres cannot be checked.",
			"Set --database-url (PULSE_DATABASE_URL) to the app's Postgres. "+grant)
		return nil
	}
	if v.pool == nil {
		f.add("database_unreachable", SeverityCritical, "database", "The database cannot be reached: "+v.poolErr+".",
			"Fix --database-url (PULSE_DATABASE_URL).")
		return nil
	}
	conn, err := v.pool.Acquire(ctx)
	if err != nil {
		if isPrivilegeError(err) {
			f.add("insufficient_privilege", SeverityCritical, "database",
				"The validator's role may not connect to the database (permission denied), so nothing could be checked.",
				"GRANT CONNECT ON DATABASE to the validator's role. "+grant)
			return nil
		}
		f.add("database_unreachable", SeverityCritical, "database",
			"The database cannot be reached ("+cause(err)+"), so nothing could be checked.",
			"Check that the app's Postgres is up and that --database-url names it; the health endpoint shows its status.")
		return nil
	}
	defer conn.Release()
	s := &dbSession{v: v, conn: conn, f: f}
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, marker+`SELECT current_setting('server_version_num')::int,
			coalesce((SELECT rolsuper FROM pg_roles WHERE rolname = current_user), false),
			pg_has_role(current_user, 'pg_read_all_stats', 'USAGE'),
			coalesce((SELECT array_agg(rolname::text ORDER BY rolname) FROM pg_roles WHERE rolname::text = ANY($1::text[])), '{}')`,
			v.cfg.APIRoles).Scan(&s.version, &s.superuser, &s.stats, &s.roles)
	})
	if err != nil {
		s.failed("session", err)
		return nil
	}
	for _, c := range checks {
		if err := s.inTx(ctx, func(tx pgx.Tx) error { return c.run(ctx, tx, s) }); err != nil {
			s.failed(c.name, err)
		}
	}
	return s.plans
}

// inTx runs fn in a read-only transaction with the statement and lock
// timeouts, and rolls it back: nothing is ever committed.
func (s *dbSession) inTx(ctx context.Context, fn func(pgx.Tx) error) error {
	tx, err := s.conn.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // read-only; a failed rollback closes the connection
	_, err = tx.Exec(ctx, marker+"SET LOCAL statement_timeout = "+strconv.FormatInt(s.v.cfg.StatementTimeout.Milliseconds(), 10)+
		"; SET LOCAL lock_timeout = "+strconv.FormatInt(s.v.cfg.LockTimeout.Milliseconds(), 10))
	if err != nil {
		return err
	}
	return fn(tx)
}

// failed turns the error of a check into a finding: a missing privilege
// says which, anything else names its cause from a fixed vocabulary.
func (s *dbSession) failed(check string, err error) {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42501" {
		s.f.add("insufficient_privilege", SeverityCritical, "check "+check,
			"The "+check+" check could not run: the validator's role lacks a privilege ("+pgErr.Message+"), so its result is unknown.",
			"Grant the validator's role read access to the system catalogues (they are readable by PUBLIC by default; "+
				"something revoked it) and pg_monitor for the statistics views.")
		return
	}
	s.f.add("database_check_failed", SeverityCritical, "check "+check,
		"The "+check+" check could not run ("+cause(err)+"), so its result is unknown.",
		"Run the validation again; if it keeps failing, check the database's health and raise the statement timeout.")
}

// isPrivilegeError reports whether err is Postgres's insufficient_privilege.
func isPrivilegeError(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "42501"
}

// pgIdent quotes a catalogue identifier for SQL text.
func pgIdent(parts ...string) string { return pgx.Identifier(parts).Sanitize() }

// cause and pgCause map errors to safe words (see internal/safeerr):
// driver errors quote hosts, users and DSNs, none of which may leave the
// validator.
var (
	cause   = safeerr.Cause
	pgCause = safeerr.PGCause
)

// rows runs a query with args and, for each row, scans it into dest and
// calls each.
func rows(ctx context.Context, tx pgx.Tx, sql string, args []any, each func() error, dest ...any) error {
	r, err := tx.Query(ctx, marker+sql, args...)
	if err != nil {
		return err
	}
	defer r.Close()
	for r.Next() {
		if err := r.Scan(dest...); err != nil {
			return err
		}
		if err := each(); err != nil {
			return err
		}
	}
	return r.Err()
}
