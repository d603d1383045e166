// Package validate checks the WedSync platform against its architecture
// rules and answers the admin API's architecture routes:
//
//	POST   /api/admin/architecture/validate    one component x validation type, findings with fixes
//	GET    /api/admin/architecture/compliance  gdpr, sox, pci and wedding_standards controls built from the same checks
//	GET    /api/admin/architecture/history     recorded validation runs, newest first
//	DELETE /api/admin/users/:user_id/metrics   erase one user's stored request metrics (GDPR)
//	GET    /api/admin/architecture/lints       the database lint catalogue (splinter's 0001-0029 and Pulse's own)
//	GET    /api/admin/architecture/accepted    the findings accepted now
//	POST   /api/admin/architecture/accepted    accept a finding by its cache_key: who, why, until when
//	DELETE /api/admin/architecture/accepted/:cache_key  withdraw an acceptance
//
// All are admin-only, registered through httpapi.Router.
//
// # Findings
//
// A check returns Issues. Each names its lint (e.g. rls_disabled_in_public),
// a severity (the spec's critical, warning or info), the object it concerns (a table,
// index, policy, function, route, stream...), what is wrong, the exact fix,
// and a cache_key: the hex SHA-256 of lint and object, stable across runs,
// so that a finding can be accepted. A run is valid when it has no
// critical finding; in strict mode, no warning either. Accepted findings (see
// Acceptance) are shown with their acceptance and count for neither a run
// nor a compliance control; acceptances live in the audit log only. A check that cannot run says so
// as a critical finding (database_unreachable, insufficient_privilege,
// database_check_failed, ...): a run is never valid because nothing could
// be looked at, and never answers 500.
//
// # The database checks
//
// They are the checks of the database component and of auth/schema (the
// app's user ids and their foreign keys to auth.users, see authschema.go).
// They run against the app's Postgres (Config.DatabaseURL) through a pool
// of at most two connections, each check in its own READ ONLY transaction
// with a statement timeout and a lock timeout. They read the catalogues and
// the statistics views only; the one statement built from catalogue content
// is the EXPLAIN of a slow query, which is only ever a plain EXPLAIN (never
// ANALYZE: nothing is executed) of a statement that is a single plain
// SELECT; and the value of a policy condition made only of constants and
// built-in immutable functions (rls_policy_always_true), evaluated in the
// check's read-only transaction. Catalogue identifiers put into follow-up SQL are quoted with
// pgx.Identifier.Sanitize; configuration values travel as query
// parameters, and nothing from a request reaches SQL text. Every lint of
// Supabase's database linter (splinter, 0001-0029) that applies to the
// database is checked under splinter's name, with splinter's level mapped
// to the severity (ERROR error, WARN warning, INFO info) and its
// remediation link; Pulse's own lints keep their names (see Catalogue).
// They run on a plain Postgres too: API roles that do not exist are
// reported once and left out, and a lint that needs a Supabase schema or
// extension the database lacks (auth, storage, pgmq, pg_graphql) is listed
// in the run's not_applicable with the reason. The first of
// Config.APIRoles is the anonymous role (splinter's anon), the others the
// signed-in ones (authenticated).
//
// # Records and alerts
//
// Every validation run is stored in ClickHouse (validation_runs, with its
// findings) and every admin action of this package (validation, compliance
// report, erasure) in audit_log, with the principal and the time; schema/migrations/0007_validation.sql
// holds their DDL. A run that is not valid publishes an alert on
// pulse.alerts.<severity>.architecture_validation.
package validate

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"

	"github.com/wedsync/pulse/internal/auth"
	"github.com/wedsync/pulse/internal/chstore"
	"github.com/wedsync/pulse/internal/event"
	"github.com/wedsync/pulse/schema"
)

// Components and validation types of POST /architecture/validate.
var (
	Components      = []string{"database", "auth", "realtime", "api", "deployment"}
	ValidationTypes = []string{"schema", "permissions", "performance", "security"}
)

// pairs are the validation types each component supports.
var pairs = map[string][]string{
	"database":   {"schema", "permissions", "performance", "security"},
	"auth":       {"schema", "permissions", "performance", "security"},
	"realtime":   {"performance", "security"},
	"api":        {"performance", "security"},
	"deployment": {"schema", "performance", "security"},
}

// Supported reports whether component supports validation type typ.
func Supported(component, typ string) bool { return slices.Contains(pairs[component], typ) }

// DefaultRequiredTables are the tables of WedSync's Postgres that the
// spec's ArchitectureValidator requires. The spec's list also names
// system_metrics and performance_logs, which Pulse keeps in ClickHouse
// (requests and its rollups), so the app's database rightly lacks them.
var DefaultRequiredTables = []string{"user_profiles", "suppliers", "couples", "core_fields"}

// DefaultUserIDColumns are the columns of WedSync's Postgres whose values
// the fleet sends to Pulse as user_id: the profile's key, which is the
// Supabase Auth user's UUID.
var DefaultUserIDColumns = []string{"user_profiles.id"}

// DefaultExcludedSchemas are schemas the database checks leave alone:
// Postgres's own and those Supabase manages.
var DefaultExcludedSchemas = []string{
	"auth", "storage", "realtime", "_realtime", "extensions", "graphql", "graphql_public", "pgbouncer",
	"pgsodium", "pgsodium_masks", "vault", "supabase_functions", "supabase_migrations", "net", "cron",
	"_analytics", "pgtle", "tiger", "topology", "information_schema", "pg_catalog",
}

// DefaultIngestRoutes are the admin-path routes that rightly accept
// ingest-scoped credentials.
var DefaultIngestRoutes = []string{"POST /api/admin/system/metrics", "POST /api/admin/system/resources"}

// Config tunes the validator. Zero fields get the defaults noted (New
// fills them); Validate checks the rest.
type Config struct {
	DatabaseURL     string   // the app's Postgres (URL or key=value DSN); "" = the database checks say "not configured"
	RequiredTables  []string // "table" (looked for in the exposed schemas) or "schema.table"; default DefaultRequiredTables
	APIRoles        []string // roles the API serves requests as, the anonymous one first; default anon, authenticated
	ExposedSchemas  []string // schemas the API exposes; default public
	ExcludedSchemas []string // schemas left out of the checks; default DefaultExcludedSchemas

	StatementTimeout   time.Duration // of each database statement; default 5s
	LockTimeout        time.Duration // of each database statement's locks; default 1s
	Timeout            time.Duration // of one validation run or compliance report; default 60s
	SlowQueryThreshold time.Duration // a statement is slow above this mean time; default 1s (the spec's)
	MaxSlowQueries     int           // slow statements reported, each with a plan; default 10
	LargeTableRows     int64         // a sequential scan matters on tables estimated this large; default 10,000
	MaxConnectionUsage float64       // connections / max_connections (and any resource's utilisation) above this is critical; default 0.8
	MinCacheHitRate    float64       // buffer cache hit rate below this is a warning; default 0.99
	MinCacheBlocks     int64         // blocks read before the hit rate is judged; default 10,000

	MetricsWindow   time.Duration // window of the API and auth figures; default 1h
	SLOAverage      time.Duration // API average response time SLO; default 500ms (the spec's)
	SLOP95          time.Duration // API P95 SLO; default 1s (the spec's)
	SLOErrorRate    float64       // API 5xx share SLO; default 0.01
	AuthLatency     time.Duration // auth health check latency above this is a warning; default 200ms
	AuthFailureRate float64       // auth failure rate at or above this is a warning (5x it critical); default 0.05
	MinAuthRequests uint64        // auth requests before the failure rate is judged; default 20
	RealtimeLatency time.Duration // handshake latency above this is a warning; default 300ms
	StaleAfter      time.Duration // a probe result older than this is stale; default 5m
	MaxJWTLifetime  time.Duration // longest acceptable lifetime of issued JWTs; default 1h
	MaxLeeway       time.Duration // longest acceptable JWT clock-skew leeway; default 1m
	IngestRoutes    []string      // "METHOD /path" admin routes allowed the ingest scope; default DefaultIngestRoutes

	WeddingP95       time.Duration // wedding-day P95; default 500ms
	WeddingErrorRate float64       // wedding-day 5xx share; default 0.01
	LoadFactor       float64       // peak load to absorb, as a multiple of today's; default 3 (utilisation ≤ 1/3)
	ResourceWindow   time.Duration // resource samples considered current; default 15m

	MaxRawRetention time.Duration // longest acceptable retention of rows holding user ids (GDPR); default 30 days
	// UserIDColumns are the app's columns whose values the fleet sends as
	// user_id ("table.column", looked for in the exposed schemas, or
	// "schema.table.column"); default DefaultUserIDColumns. auth/schema
	// judges whether they are pseudonymous (see checkUserIDColumns).
	UserIDColumns []string
	// UserIDsPseudonymised declares that the fleet sends keyed hashes of
	// the user ids (e.g. HMAC-SHA256 with a key Pulse does not hold), not
	// the app's own: then UserIDColumns are not looked at.
	UserIDsPseudonymised bool
	ErasureWait          time.Duration    // how long an erasure waits for ClickHouse to finish; default 30s
	HistoryLimit         int              // default page of GET /history; default 20 (at most 100)
	Now                  func() time.Time // the clock; default time.Now
}

func (c *Config) defaults() {
	setDur := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	setF := func(f *float64, v float64) {
		if *f == 0 {
			*f = v
		}
	}
	if c.RequiredTables == nil {
		c.RequiredTables = DefaultRequiredTables
	}
	if c.APIRoles == nil {
		c.APIRoles = []string{"anon", "authenticated"}
	}
	if c.ExposedSchemas == nil {
		c.ExposedSchemas = []string{"public"}
	}
	if c.ExcludedSchemas == nil {
		c.ExcludedSchemas = DefaultExcludedSchemas
	}
	if c.UserIDColumns == nil {
		c.UserIDColumns = DefaultUserIDColumns
	}
	if c.IngestRoutes == nil {
		c.IngestRoutes = DefaultIngestRoutes
	}
	setDur(&c.StatementTimeout, 5*time.Second)
	setDur(&c.LockTimeout, time.Second)
	setDur(&c.Timeout, time.Minute)
	setDur(&c.SlowQueryThreshold, time.Second)
	setDur(&c.MetricsWindow, time.Hour)
	setDur(&c.SLOAverage, 500*time.Millisecond)
	setDur(&c.SLOP95, time.Second)
	setDur(&c.AuthLatency, 200*time.Millisecond)
	setDur(&c.RealtimeLatency, 300*time.Millisecond)
	setDur(&c.StaleAfter, 5*time.Minute)
	setDur(&c.MaxJWTLifetime, time.Hour)
	setDur(&c.MaxLeeway, time.Minute)
	setDur(&c.WeddingP95, 500*time.Millisecond)
	setDur(&c.ResourceWindow, 15*time.Minute)
	setDur(&c.MaxRawRetention, 30*24*time.Hour)
	setDur(&c.ErasureWait, 30*time.Second)
	setF(&c.MaxConnectionUsage, 0.8)
	setF(&c.MinCacheHitRate, 0.99)
	setF(&c.SLOErrorRate, 0.01)
	setF(&c.AuthFailureRate, 0.05)
	setF(&c.WeddingErrorRate, 0.01)
	setF(&c.LoadFactor, 3)
	if c.MaxSlowQueries == 0 {
		c.MaxSlowQueries = 10
	}
	if c.LargeTableRows == 0 {
		c.LargeTableRows = 10_000
	}
	if c.MinCacheBlocks == 0 {
		c.MinCacheBlocks = 10_000
	}
	if c.MinAuthRequests == 0 {
		c.MinAuthRequests = 20
	}
	if c.HistoryLimit == 0 {
		c.HistoryLimit = 20
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate checks c; zero fields are valid (they take defaults). Its
// errors never quote the database URL.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.DatabaseURL != "" {
		if _, err := pgxpool.ParseConfig(c.DatabaseURL); err != nil {
			bad("validate: database url cannot be parsed")
		}
	}
	for _, d := range []time.Duration{c.StatementTimeout, c.LockTimeout, c.Timeout, c.SlowQueryThreshold, c.MetricsWindow,
		c.SLOAverage, c.SLOP95, c.AuthLatency, c.RealtimeLatency, c.StaleAfter, c.MaxJWTLifetime, c.MaxLeeway,
		c.WeddingP95, c.ResourceWindow, c.MaxRawRetention, c.ErasureWait} {
		if d < 0 {
			bad("validate: durations must not be negative")
			break
		}
	}
	for _, f := range []float64{c.MaxConnectionUsage, c.MinCacheHitRate, c.SLOErrorRate, c.AuthFailureRate, c.WeddingErrorRate} {
		if f < 0 || f > 1 {
			bad("validate: ratios and rates must be between 0 and 1")
			break
		}
	}
	if c.LoadFactor != 0 && c.LoadFactor < 1 {
		bad("validate: load factor must be at least 1")
	}
	if c.MaxSlowQueries < 0 || c.MaxSlowQueries > 100 || c.LargeTableRows < 0 || c.MinCacheBlocks < 0 {
		bad("validate: slow query count (0-100), large table rows and cache blocks must not be negative")
	}
	if c.HistoryLimit < 0 || c.HistoryLimit > maxHistory {
		bad("validate: history limit must be between 1 and %d", maxHistory)
	}
	for _, s := range [][]string{c.APIRoles, c.ExposedSchemas, c.ExcludedSchemas} {
		for _, name := range s {
			if name == "" || len(name) > 63 {
				bad("validate: role and schema names must be 1-63 bytes")
			}
		}
	}
	for _, t := range c.RequiredTables {
		if t == "" || len(t) > 127 {
			bad("validate: required table names must be 1-127 bytes")
		}
	}
	if c.ExposedSchemas != nil && len(c.ExposedSchemas) == 0 {
		bad("validate: name at least one exposed schema")
	}
	if c.UserIDColumns != nil && len(c.UserIDColumns) == 0 && !c.UserIDsPseudonymised {
		bad("validate: name the user id columns, or declare the user ids pseudonymised")
	}
	for _, col := range c.UserIDColumns {
		if n := strings.Count(col, "."); n < 1 || n > 2 || len(col) > 191 || slices.Contains(strings.Split(col, "."), "") {
			bad("validate: user id columns must be table.column or schema.table.column")
		}
	}
	return errors.Join(errs...)
}

// Publisher sends an alert. It must be safe for concurrent use.
type Publisher interface {
	Publish(ctx context.Context, subject string, data []byte) error
}

// HealthSource gives the latest result of every health probe
// (*probe.Runner).
type HealthSource interface {
	Latest() []event.HealthResult
}

// Metrics gives figures of the fleet's recent requests
// (probe.StoreMetrics): the auth failure rate and the API's P95, average,
// 5xx share, rate and count over the window ending now.
type Metrics interface {
	AuthFailureRate(ctx context.Context, window time.Duration) (rate float64, count uint64, err error)
	APIStats(ctx context.Context, window time.Duration) (p95, avgMS, errorRate, rps float64, count uint64, err error)
}

// Route is a registered route and the scope its guard demands
// (httpapi.Public for none).
type Route struct {
	Method string
	Path   string
	Scope  auth.Scope
}

// AuthSettings describe how Pulse authenticates admins.
type AuthSettings struct {
	AdminTokens   int           // static admin tokens configured
	JWTSecret     []byte        // HS256 secret of admin JWTs; nil when JWTs are not accepted. Only its strength is judged: New keeps no copy
	JWTLeeway     time.Duration // clock skew tolerated; 0 = auth.DefaultLeeway
	JWTIssuer     string        // required iss; "" = any
	JWTAudience   string        // required aud; "" = any
	TokenLifetime time.Duration // lifetime of the JWTs the issuer signs (Supabase's JWT expiry); 0 = unknown
}

// Stream is a JetStream stream Pulse relies on.
type Stream struct {
	Name     string
	Replicas int
	MaxAge   time.Duration // 0 = unlimited
}

// Deployment describes how Pulse is deployed.
type Deployment struct {
	NATSEmbedded bool              // NATS runs inside the Pulse process
	Streams      []Stream          // the streams Pulse relies on
	Retention    schema.Retention  // retention of ClickHouse rows; zero = not configured
	URLs         map[string]string // name -> URL Pulse serves on or connects to; only the name is ever shown
	// Instances returns the running instances of each role (ingest,
	// aggregator, query, alerts); nil = unknown.
	Instances func(ctx context.Context) (map[string]int, error)
}

// Deps are the validator's clients and the facts it judges. Nil fields
// leave the checks that need them reporting "not configured".
type Deps struct {
	Store      *chstore.Store // Pulse's ClickHouse: validation_runs, audit_log, requests (erasure), resources
	Publisher  Publisher      // alerts of failing runs; nil = none
	Health     HealthSource   // latest probe results (auth, realtime)
	Metrics    Metrics        // request figures (API SLOs, auth failure rate)
	Routes     func() []Route // every registered route with its scope
	Auth       AuthSettings
	Deployment Deployment
}

// Validator serves the architecture routes. It is safe for concurrent use.
// Close releases its database pool; it is idempotent and safe without any
// request having been served.
type Validator struct {
	cfg  Config
	deps Deps
	log  zerolog.Logger

	secret    secretFacts
	pool      *pgxpool.Pool // nil: not configured or unparsable
	poolErr   string        // why pool is nil when a URL was given
	poolFacts PoolSettings
	dbTLS     bool // the database connection uses TLS

	closeOnce sync.Once
}

// PoolSettings are the settings of the pool the validator uses against the
// app's database.
type PoolSettings struct {
	MaxConns           int32   `json:"max_conns"`
	MinConns           int32   `json:"min_conns"`
	MaxConnLifetimeS   float64 `json:"max_conn_lifetime_s"`
	MaxConnIdleTimeS   float64 `json:"max_conn_idle_time_s"`
	ConnectTimeoutMS   float64 `json:"connect_timeout_ms"`
	StatementTimeoutMS float64 `json:"statement_timeout_ms"`
	LockTimeoutMS      float64 `json:"lock_timeout_ms"`
	QueryExecMode      string  `json:"query_exec_mode"`
	ApplicationName    string  `json:"application_name"`
	ReadOnly           bool    `json:"read_only"`
}

const (
	poolMaxConns    = 2
	applicationName = "pulse-validate"
)

// New returns a Validator. It fills cfg's defaults and opens no connection:
// the database pool connects when a check first needs it.
func New(cfg Config, deps Deps, log zerolog.Logger) *Validator {
	cfg.defaults()
	v := &Validator{cfg: cfg, deps: deps, log: log.With().Str("component", "validate").Logger()}
	v.secret = judgeSecret(deps.Auth.JWTSecret)
	v.deps.Auth.JWTSecret = nil
	if cfg.DatabaseURL != "" {
		v.openPool()
	}
	return v
}

func (v *Validator) openPool() {
	pc, err := pgxpool.ParseConfig(v.cfg.DatabaseURL)
	if err != nil {
		v.poolErr = "the database url cannot be parsed"
		return
	}
	pc.MaxConns, pc.MinConns = poolMaxConns, 0
	pc.MaxConnLifetime, pc.MaxConnIdleTime = 30*time.Minute, time.Minute
	if pc.ConnConfig.ConnectTimeout == 0 || pc.ConnConfig.ConnectTimeout > 5*time.Second {
		pc.ConnConfig.ConnectTimeout = 5 * time.Second
	}
	// Simple protocol: no server-side prepared statements, so that a
	// transaction-mode pooler in front of the database works too.
	pc.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	pc.ConnConfig.RuntimeParams["application_name"] = applicationName
	pc.ConnConfig.RuntimeParams["statement_timeout"] = fmt.Sprint(v.cfg.StatementTimeout.Milliseconds())
	pc.ConnConfig.RuntimeParams["default_transaction_read_only"] = "on"
	v.dbTLS = pgTLS(pc)
	v.poolFacts = PoolSettings{
		MaxConns: pc.MaxConns, MinConns: pc.MinConns,
		MaxConnLifetimeS: pc.MaxConnLifetime.Seconds(), MaxConnIdleTimeS: pc.MaxConnIdleTime.Seconds(),
		ConnectTimeoutMS: msOf(pc.ConnConfig.ConnectTimeout), StatementTimeoutMS: msOf(v.cfg.StatementTimeout),
		LockTimeoutMS: msOf(v.cfg.LockTimeout), QueryExecMode: "simple_protocol", ApplicationName: applicationName, ReadOnly: true,
	}
	v.pool, err = pgxpool.NewWithConfig(context.Background(), pc)
	if err != nil {
		v.poolErr = "the database pool cannot be created"
	}
}

// Close releases the database pool.
func (v *Validator) Close() {
	v.closeOnce.Do(func() {
		if v.pool != nil {
			v.pool.Close()
		}
	})
}

// dbHostLocal reports whether the database URL names a loopback host or a
// Unix socket, where TLS does not matter.
func dbHostLocal(dsn string) bool {
	pc, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return false
	}
	return localHost(pc.ConnConfig.Host)
}

// urlHost returns the scheme, host and query of a URL; ok is false when it
// cannot be parsed or has no scheme.
func urlHost(raw string) (scheme, host string, q url.Values, ok bool) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" {
		return "", "", nil, false
	}
	return u.Scheme, u.Hostname(), u.Query(), true
}

func msOf(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
