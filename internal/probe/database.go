package probe

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/wedsync/pulse/internal/event"
)

// Database thresholds of the ping round trip (the spec's).
const (
	DatabaseHealthy  = 100 * time.Millisecond
	DatabaseDegraded = 500 * time.Millisecond
)

// Pool settings of the database probe: it needs one connection at a time,
// so it takes at most two of the app database's slots.
const (
	dbMaxConns          = 2
	dbMaxConnLifetime   = 30 * time.Minute
	dbMaxConnIdleTime   = 5 * time.Minute
	dbHealthCheckPeriod = time.Minute
	maxSlowQueries      = 5
	maxQueryText        = 200
)

// databaseProbe checks the app's Postgres.
type databaseProbe struct {
	pool      *pgxpool.Pool // nil: not configured
	failed    func(error)   // Config.DatabaseFailed
	host      string
	slow      time.Duration
	poolFacts poolDetails
}

// poolDetails are the settings of the probe's own pool.
type poolDetails struct {
	MaxConns           int32   `json:"max_conns"`
	MinConns           int32   `json:"min_conns"`
	MaxConnLifetimeS   float64 `json:"max_conn_lifetime_s"`
	MaxConnIdleTimeS   float64 `json:"max_conn_idle_time_s"`
	HealthCheckPeriodS float64 `json:"health_check_period_s"`
	ConnectTimeoutMS   float64 `json:"connect_timeout_ms"`
	StatementTimeoutMS float64 `json:"statement_timeout_ms"`
	QueryExecMode      string  `json:"query_exec_mode"`
	ApplicationName    string  `json:"application_name"`
}

type slowQuery struct {
	Query  string  `json:"query"` // normalised by pg_stat_statements, literals scrubbed, at most 200 characters
	Calls  int64   `json:"calls"`
	MeanMS float64 `json:"mean_ms"`
}

type databaseDetails struct {
	Error             string       `json:"error,omitempty"`
	Cause             string       `json:"cause,omitempty"`
	LatencyMS         *float64     `json:"latency_ms,omitempty"`
	ActiveConnections *int64       `json:"active_connections,omitempty"`
	TotalConnections  *int64       `json:"total_connections,omitempty"`
	MaxConnections    *int64       `json:"max_connections,omitempty"`
	ConnectionUsage   *float64     `json:"connection_usage,omitempty"` // total / max
	Connections       string       `json:"connections,omitempty"`      // "unavailable" when they could not be read
	PgStatStatements  string       `json:"pg_stat_statements,omitempty"`
	SlowThresholdMS   float64      `json:"slow_query_threshold_ms,omitempty"`
	SlowQueriesCount  *int64       `json:"slow_queries_count,omitempty"`
	SlowQueries       []slowQuery  `json:"slow_queries,omitempty"`
	Pool              *poolDetails `json:"pool,omitempty"`
}

// newDatabaseProbe builds the probe's pool; it connects only when the
// probe first runs.
func newDatabaseProbe(cfg Config) (*databaseProbe, error) {
	p := &databaseProbe{host: cfg.DatabaseHost, slow: cfg.SlowQueryThreshold, failed: cfg.DatabaseFailed}
	if cfg.DatabaseURL == "" {
		return p, nil
	}
	pc, err := pgxpool.ParseConfig(cfg.DatabaseURL)
	if err != nil {
		return nil, errors.New("database url cannot be parsed")
	}
	pc.MaxConns, pc.MinConns = dbMaxConns, 0
	pc.MaxConnLifetime, pc.MaxConnIdleTime, pc.HealthCheckPeriod = dbMaxConnLifetime, dbMaxConnIdleTime, dbHealthCheckPeriod
	if pc.ConnConfig.ConnectTimeout == 0 || pc.ConnConfig.ConnectTimeout > cfg.Timeout {
		pc.ConnConfig.ConnectTimeout = cfg.Timeout
	}
	// Simple protocol: no prepared statements, so a transaction-mode
	// pooler in front of the database works too.
	pc.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	pc.ConnConfig.RuntimeParams["statement_timeout"] = strconv.FormatInt(cfg.DatabaseStatementTimeout.Milliseconds(), 10)
	pc.ConnConfig.RuntimeParams["application_name"] = "pulse-probe"
	p.pool, err = pgxpool.NewWithConfig(context.Background(), pc)
	if err != nil {
		return nil, errors.New("database pool cannot be created")
	}
	p.poolFacts = poolDetails{
		MaxConns: pc.MaxConns, MinConns: pc.MinConns,
		MaxConnLifetimeS: pc.MaxConnLifetime.Seconds(), MaxConnIdleTimeS: pc.MaxConnIdleTime.Seconds(),
		HealthCheckPeriodS: pc.HealthCheckPeriod.Seconds(), ConnectTimeoutMS: ms(pc.ConnConfig.ConnectTimeout),
		StatementTimeoutMS: ms(cfg.DatabaseStatementTimeout), QueryExecMode: "simple_protocol", ApplicationName: "pulse-probe",
	}
	return p, nil
}

func (p *databaseProbe) component() string { return "database" }

func (p *databaseProbe) close() {
	if p.pool != nil {
		p.pool.Close()
	}
}

// Probe runs the check once.
func (p *databaseProbe) Probe(ctx context.Context) []event.HealthResult {
	h, _ := p.run(ctx)
	return h
}

func (p *databaseProbe) run(ctx context.Context) ([]event.HealthResult, []event.ResourceSample) {
	ts := time.Now().UTC()
	if p.pool == nil {
		return []event.HealthResult{notConfigured(ts, "database", "")}, nil
	}
	pool := p.poolFacts
	d := databaseDetails{Pool: &pool}
	start := time.Now()
	fail := func(err error) ([]event.HealthResult, []event.ResourceSample) {
		if p.failed != nil {
			p.failed(err)
		}
		d.Error, d.Cause = "unreachable", cause(err)
		return []event.HealthResult{result(ts, "database", "", event.StatusCritical, ms(time.Since(start)), d)}, nil
	}
	conn, err := p.pool.Acquire(ctx) // connects, or pings a connection idle for more than a second
	if err != nil {
		return fail(err)
	}
	defer conn.Release()
	start = time.Now()
	if err := conn.Ping(ctx); err != nil {
		return fail(err)
	}
	latency := time.Since(start)
	d.LatencyMS = ptr(ms(latency))
	status := byLatency(latency, DatabaseHealthy, DatabaseDegraded)

	var samples []event.ResourceSample
	var total, active, maxConns int64
	// Client backends hold connection slots whether idle or not; state is
	// visible for other roles' sessions only with pg_read_all_stats, so
	// active may count only the probe's own role without it.
	err = conn.QueryRow(ctx, `SELECT count(*) FILTER (WHERE backend_type = 'client backend'),
		count(*) FILTER (WHERE backend_type = 'client backend' AND state <> 'idle'),
		current_setting('max_connections')::bigint FROM pg_stat_activity`).Scan(&total, &active, &maxConns)
	if err != nil || maxConns <= 0 {
		d.Connections = "unavailable"
	} else {
		usage := min(float64(total)/float64(maxConns), 1)
		d.ActiveConnections, d.TotalConnections, d.MaxConnections, d.ConnectionUsage = &active, &total, &maxConns, ptr(round4(usage))
		samples = append(samples, event.ResourceSample{Timestamp: ts, Host: p.host, Resource: "connections",
			Used: float64(total), Capacity: float64(maxConns), Utilisation: usage})
	}
	p.slowQueries(ctx, conn.Conn(), &d)
	return []event.HealthResult{result(ts, "database", "", status, ms(latency), d)}, samples
}

// slowQueries fills d with the slowest statements of pg_stat_statements
// in the current database, or says why there are none. Only planned
// statements are listed (SELECT, INSERT, UPDATE, DELETE, MERGE, WITH,
// VALUES, TABLE): pg_stat_statements replaces their constants with $n,
// while utility statements such as ALTER ROLE ... PASSWORD keep theirs.
func (p *databaseProbe) slowQueries(ctx context.Context, conn *pgx.Conn, d *databaseDetails) {
	var installed bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements')`).Scan(&installed); err != nil {
		d.PgStatStatements = "unavailable"
		return
	}
	if !installed {
		d.PgStatStatements = "not installed"
		return
	}
	d.SlowThresholdMS = ms(p.slow)
	rows, err := conn.Query(ctx, `SELECT left(regexp_replace(query, '\s+', ' ', 'g'), $1), calls, mean_exec_time, count(*) OVER ()
		FROM pg_stat_statements
		WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
		  AND mean_exec_time > $2
		  AND query ~* '^\s*(select|insert|update|delete|merge|with|values|table)\M'
		ORDER BY mean_exec_time DESC LIMIT $3`, maxQueryText, float64(p.slow)/float64(time.Millisecond), maxSlowQueries)
	if err == nil {
		var n int64
		d.SlowQueries = []slowQuery{}
		for rows.Next() {
			var q slowQuery
			if err = rows.Scan(&q.Query, &q.Calls, &q.MeanMS, &n); err != nil {
				break
			}
			q.Query, q.MeanMS = scrubSQL(q.Query), roundMS(q.MeanMS)
			d.SlowQueries = append(d.SlowQueries, q)
		}
		rows.Close()
		if err == nil {
			err = rows.Err()
		}
		d.SlowQueriesCount = &n
	}
	var pgErr *pgconn.PgError
	switch {
	case err == nil:
		d.PgStatStatements = "installed"
	case errors.As(err, &pgErr) && pgErr.Code == "55000":
		d.PgStatStatements, d.SlowQueries, d.SlowQueriesCount = "not loaded", nil, nil // not in shared_preload_libraries
	default:
		d.PgStatStatements, d.SlowQueries, d.SlowQueriesCount = "unavailable", nil, nil
	}
}

func ptr[T any](v T) *T { return &v }
