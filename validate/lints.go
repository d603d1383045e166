package validate

import (
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/wedsync/pulse/internal/httpapi"
)

// PathLints is the lint catalogue route.
const PathLints = "/api/admin/architecture/lints"

// Lint describes one database lint: Pulse's name, and for the lints of
// Supabase's database linter (splinter) its number and name, its level
// and category, and how they map to Pulse's severity and validation type.
type Lint struct {
	ID             string `json:"id"`                 // Pulse's lint name, as in Issue.Lint; splinter's name where there is one
	Splinter       string `json:"splinter,omitempty"` // splinter's lint, e.g. 0001_unindexed_foreign_keys; "" = Pulse's own
	Level          string `json:"level"`              // ERROR, WARN or INFO (splinter's scale)
	Severity       string `json:"severity"`           // the level in Pulse's (the spec's) terms: critical, warning or info
	Category       string `json:"category"`           // SECURITY or PERFORMANCE (splinter's categories)
	ValidationType string `json:"validation_type"`    // the database validation that runs it
	Description    string `json:"description"`
	Remediation    string `json:"remediation"`        // where the fix is explained
	Requires       string `json:"requires,omitempty"` // what the database must have for the lint to apply
	NotChecked     string `json:"not_checked,omitempty"`
}

// NotApplicable is a lint a run did not apply, and why.
type NotApplicable struct {
	Lint     string `json:"lint"`
	Splinter string `json:"splinter,omitempty"`
	Reason   string `json:"reason"`
}

// levelSeverity maps splinter's levels to Pulse's severities.
var levelSeverity = map[string]string{"ERROR": SeverityCritical, "WARN": SeverityWarning, "INFO": SeverityInfo}

const linterDocs = "https://supabase.com/docs/guides/database/database-linter?lint="

// splinterLint is one entry of splinter's list (0001-0029).
type splinterLint struct {
	number, name, level, category, validationType string
	notChecked                                    string // why Pulse does not check it ("" = it does)
	requires                                      string
	description                                   string
}

// splinterLints is splinter's list, 0001 to 0029, in order.
var splinterLints = []splinterLint{
	{"0001", "unindexed_foreign_keys", "INFO", "PERFORMANCE", "performance", "", "",
		"A foreign key without a valid index whose leading columns are its columns (a partial index counts, as in splinter; an invalid one does not)."},
	{"0002", "auth_users_exposed", "ERROR", "SECURITY", "security", "", "schema auth",
		"A view or materialized view in an exposed schema reads auth.users (error when the API roles can read it, warning when one GRANT would expose it)."},
	{"0003", "auth_rls_initplan", "WARN", "PERFORMANCE", "performance", "", "",
		"A policy calls auth.uid(), auth.jwt(), auth.role(), auth.email() or current_setting() once per row instead of once per statement (also when it mixes wrapped and unwrapped calls)."},
	{"0004", "no_primary_key", "INFO", "PERFORMANCE", "schema", "", "", "A table without a primary key."},
	{"0005", "unused_index", "INFO", "PERFORMANCE", "performance", "", "",
		"A plain index never scanned since the statistics were reset. Indexes that cover a foreign key are deliberately left out: they serve deletes and key updates of the referenced table, which idx_scan does not always show."},
	{"0006", "multiple_permissive_policies", "WARN", "PERFORMANCE", "permissions", "", "",
		"Several permissive policies for one role and action. A policy without a TO clause applies to every role (PUBLIC) and counts for each API role."},
	{"0007", "policy_exists_rls_disabled", "ERROR", "SECURITY", "permissions", "", "", "A table has policies but row level security is disabled."},
	{"0008", "rls_enabled_no_policy", "INFO", "SECURITY", "permissions", "", "", "A table has row level security enabled but no policy."},
	{"0009", "duplicate_index", "WARN", "PERFORMANCE", "performance", "", "",
		"Identical indexes: same columns, expressions, predicate, method and uniqueness."},
	{"0010", "security_definer_view", "ERROR", "SECURITY", "security", "", "",
		"A view without security_invoker that the API roles can read: it bypasses the row level security of the tables it reads. A view no API role can read is not reported."},
	{"0011", "function_search_path_mutable", "WARN", "SECURITY", "security", "", "",
		"A function in any application schema (not only the exposed ones) that does not set search_path."},
	{"0012", "auth_allow_anonymous_sign_ins", "WARN", "SECURITY", "security",
		"a setting of the Supabase Auth server, not of the database: Pulse cannot see it", "", "Anonymous sign-ins are enabled in Supabase Auth."},
	{"0013", "rls_disabled_in_public", "ERROR", "SECURITY", "permissions", "", "",
		"A table in an exposed schema that the API roles can read, without row level security."},
	{"0014", "extension_in_public", "WARN", "SECURITY", "security", "", "", "An extension installed in an exposed schema."},
	{"0015", "rls_references_user_metadata", "ERROR", "SECURITY", "permissions", "", "schema auth",
		"A policy reads user_metadata of the JWT (auth.jwt() or request.jwt.claims), which every user can edit."},
	{"0016", "materialized_view_in_api", "WARN", "SECURITY", "security", "", "",
		"A materialized view the API roles can read: materialized views have no row level security."},
	{"0017", "foreign_table_in_api", "WARN", "SECURITY", "security", "", "",
		"A foreign table in an exposed schema the API roles can read: foreign tables have no row level security."},
	{"0018", "unsupported_reg_types", "WARN", "SECURITY", "schema", "", "",
		"A column of a reg* type that pg_upgrade cannot carry over (regcollation, regconfig, regdictionary, regnamespace, regoper, regoperator, regproc, regprocedure)."},
	{"0019", "insecure_queue_exposed_in_api", "ERROR", "SECURITY", "permissions", "", "schema pgmq (the pgmq extension) and an exposed pgmq_public",
		"A pgmq queue table the API roles can read without row level security, while the queues are exposed through pgmq_public."},
	{"0020", "table_bloat", "INFO", "PERFORMANCE", "performance", "", "",
		"A table whose estimated size is over 70 times what its rows need, wasting more than 20 MiB."},
	{"0021", "fkey_to_auth_unique", "ERROR", "SECURITY", "security", "", "schema auth",
		"A foreign key to a unique (not primary key) constraint of a table in the auth schema, which Supabase Auth may change."},
	{"0022", "extension_versions_outdated", "WARN", "SECURITY", "security", "", "",
		"An installed extension is not at the version the server recommends (its default version)."},
	{"0023", "sensitive_columns_exposed", "ERROR", "SECURITY", "security", "", "",
		"A table the API roles can read, in an exposed schema, without row level security, with a column named like a credential, identity, financial, health or device identifier (splinter's list of names)."},
	{"0024", "rls_policy_always_true", "WARN", "SECURITY", "permissions", "", "",
		"A permissive policy for the API roles (or PUBLIC) that lets them insert, update or delete any row: USING or WITH CHECK always true, in any spelling Postgres stores (true, 1 = 1, any constant expression)."},
	{"0025", "public_bucket_allows_listing", "WARN", "SECURITY", "permissions", "", "table storage.buckets (Supabase Storage)",
		"A public storage bucket with a broad SELECT policy on storage.objects, which lets clients list every file."},
	{"0026", "pg_graphql_anon_table_exposed", "INFO", "SECURITY", "security",
		"needs pg_graphql; Pulse does not check what pg_graphql exposes", "extension pg_graphql", "Tables visible to anon through pg_graphql."},
	{"0027", "pg_graphql_authenticated_table_exposed", "INFO", "SECURITY", "security",
		"needs pg_graphql; Pulse does not check what pg_graphql exposes", "extension pg_graphql", "Tables visible to authenticated through pg_graphql."},
	{"0028", "anon_security_definer_function_executable", "WARN", "SECURITY", "security", "", "",
		"A SECURITY DEFINER function the anonymous API role (the first of APIRoles) may execute: any holder of the anon key can call it."},
	{"0029", "authenticated_security_definer_function_executable", "WARN", "SECURITY", "security", "", "",
		"A SECURITY DEFINER function a signed-in API role (the others of APIRoles) may execute."},
}

// pulseLints are Pulse's own database lints, beyond splinter.
var pulseLints = []Lint{
	{ID: "required_table_missing", Level: "ERROR", Category: "SECURITY", ValidationType: "schema",
		Description: "A table the platform requires (Config.RequiredTables) is missing."},
	{ID: "api_roles_missing", Level: "INFO", Category: "SECURITY", ValidationType: "permissions",
		Description: "A configured API role does not exist (a plain Postgres rather than Supabase): exposure is judged from PUBLIC and the roles that exist."},
	{ID: "rls_disabled_write_only", Level: "ERROR", Category: "SECURITY", ValidationType: "permissions",
		Description: "A table in an exposed schema without row level security that the API roles may insert, update or delete but not read (splinter looks only at reads)."},
	{ID: "foreign_key_partial_index", Level: "INFO", Category: "PERFORMANCE", ValidationType: "performance",
		Description: "A foreign key covered only by a partial index: rows outside the predicate are found by scanning."},
	{ID: "redundant_index", Level: "WARN", Category: "PERFORMANCE", ValidationType: "performance",
		Description: "A plain index on exactly the columns of a unique index: the unique index serves every read the plain one does."},
	{ID: "invalid_index", Level: "WARN", Category: "PERFORMANCE", ValidationType: "performance",
		Description: "An invalid index (a failed CREATE INDEX CONCURRENTLY or REINDEX): never used, always maintained."},
	{ID: "autovacuum_disabled", Level: "WARN", Category: "PERFORMANCE", ValidationType: "performance",
		Description: "Autovacuum is off for a table, its TOAST table (warning) or the whole server (critical)."},
	{ID: "pg_stat_statements_missing", Level: "INFO", Category: "PERFORMANCE", ValidationType: "performance",
		Description: "pg_stat_statements is not installed, so slow queries cannot be judged."},
	{ID: "pg_stat_statements_not_loaded", Level: "WARN", Category: "PERFORMANCE", ValidationType: "performance",
		Description: "pg_stat_statements is installed but not in shared_preload_libraries."},
	{ID: "slow_query", Level: "WARN", Category: "PERFORMANCE", ValidationType: "performance",
		Description: "A statement whose mean time is above Config.SlowQueryThreshold, with its plan and index suggestions."},
	{ID: "connection_usage_high", Level: "ERROR", Category: "PERFORMANCE", ValidationType: "performance",
		Description: "Connections in use above Config.MaxConnectionUsage of max_connections."},
	{ID: "cache_hit_rate_low", Level: "WARN", Category: "PERFORMANCE", ValidationType: "performance",
		Description: "Buffer cache hit rate of table data or indexes below Config.MinCacheHitRate."},
	{ID: "personal_columns_exposed", Level: "ERROR", Category: "SECURITY", ValidationType: "security",
		Description: "A table in an exposed schema without row level security holds personal data by its column names (email, phone, address, date of birth...): error when the API roles can read it, warning when one GRANT would expose it. Mark a reviewed finding as accepted."},
	{ID: "card_columns_exposed", Level: "ERROR", Category: "SECURITY", ValidationType: "security",
		Description: "A table in an exposed schema without row level security holds payment card data: a column named like a card number or security code (card_number, credit_card, cc_number, cvv, cvc...) of a text or numeric type; a bare \"card\" or \"pan\" counts only beside such a column. Error when the API roles can read it, warning when one GRANT would expose it."},
}

// Catalogue returns every database lint: splinter's 0001-0029 (those
// Pulse does not check say why) and Pulse's own.
func Catalogue() []Lint {
	out := make([]Lint, 0, len(splinterLints)+len(pulseLints))
	for _, s := range splinterLints {
		out = append(out, Lint{ID: s.name, Splinter: s.number + "_" + s.name, Level: s.level, Severity: levelSeverity[s.level],
			Category: s.category, ValidationType: s.validationType, Description: s.description,
			Remediation: linterDocs + s.number + "_" + s.name, Requires: s.requires, NotChecked: s.notChecked})
	}
	for _, l := range pulseLints {
		l.Severity = levelSeverity[l.Level]
		l.Remediation = "The finding's recommendation; README.md, section \"Database lints\"."
		out = append(out, l)
	}
	return out
}

// catalogue indexes Catalogue by lint name.
var catalogue = func() map[string]Lint {
	m := map[string]Lint{}
	for _, l := range Catalogue() {
		m[l.ID] = l
	}
	return m
}()

// splinterOf returns splinter's number_name of lint, or "".
func splinterOf(lint string) string { return catalogue[lint].Splinter }

// LintCatalogue is the answer of GET /architecture/lints.
type LintCatalogue struct {
	Lints []Lint `json:"lints"`
}

func (v *Validator) serveLints(c echo.Context) error {
	if err := httpapi.NewParams(c.QueryString()).Err(); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, LintCatalogue{Lints: Catalogue()})
}

// notCheckedLints are splinter's lints Pulse does not check, as
// NotApplicable entries of a database security run.
func notCheckedLints(graphql bool) []NotApplicable {
	var out []NotApplicable
	for _, s := range splinterLints {
		if s.notChecked == "" {
			continue
		}
		reason := s.notChecked
		if strings.Contains(s.requires, "pg_graphql") && !graphql {
			reason = "the pg_graphql extension is not installed, so nothing is exposed through GraphQL"
		}
		out = append(out, NotApplicable{Lint: s.name, Splinter: s.number + "_" + s.name, Reason: reason})
	}
	return out
}
