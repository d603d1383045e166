package validate

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/wedsync/pulse/internal/auth"
	"github.com/wedsync/pulse/internal/chstore"
	"github.com/wedsync/pulse/internal/event"
	"github.com/wedsync/pulse/internal/httpapi"
)

// check runs the checks of component x typ, adding findings to f, and
// returns the optimisation plans of slow statements (database performance).
func (v *Validator) check(ctx context.Context, component, typ string, f *findings) []QueryPlan {
	switch component {
	case "database":
		return v.checkDatabase(ctx, typ, f)
	case "auth":
		switch typ {
		case "schema":
			v.runDatabase(ctx, authSchemaChecks, f)
		case "permissions":
			v.authPermissions(f)
		case "performance":
			v.authPerformance(ctx, f)
		default:
			v.authSecurity(f)
		}
	case "realtime":
		if typ == "performance" {
			v.realtimePerformance(f)
		} else {
			v.realtimeSecurity(f)
		}
	case "api":
		if typ == "performance" {
			v.apiPerformance(ctx, f)
		} else {
			v.apiSecurity(f)
		}
	default:
		switch typ {
		case "schema":
			v.deploymentTopology(ctx, f)
		case "performance":
			v.deploymentCapacity(ctx, f)
		default:
			v.deploymentSecurity(f)
		}
	}
	return nil
}

// ---- auth ----

// knownSecrets are published example secrets: a deployment using one can be
// impersonated by anyone who read the docs.
var knownSecrets = []string{
	"super-secret-jwt-token-with-at-least-32-characters-long",      // Supabase CLI's local default
	"your-super-secret-jwt-token-with-at-least-32-characters-long", // Supabase self-hosting's .env example
}

// secretFacts is what the validator keeps of the JWT secret: never the
// secret itself.
type secretFacts struct {
	configured bool
	length     int
	entropy    float64 // Shannon entropy, bits per byte
	distinct   int
	known      bool
}

func judgeSecret(b []byte) secretFacts {
	if b == nil {
		return secretFacts{}
	}
	f := secretFacts{configured: true, length: len(b), known: slices.Contains(knownSecrets, string(b))}
	var counts [256]int
	for _, c := range b {
		counts[c]++
	}
	for _, n := range counts {
		if n == 0 {
			continue
		}
		f.distinct++
		p := float64(n) / float64(len(b))
		f.entropy -= p * math.Log2(p)
	}
	return f
}

func (v *Validator) authPermissions(f *findings) {
	if v.deps.Auth.AdminTokens == 0 && !v.secret.configured {
		f.add("admin_principal_missing", SeverityCritical, "admin principals",
			"No admin principal can exist: there is no static admin token and admin JWTs are not accepted, so nobody can read the admin API.",
			"Set --admin-tokens (PULSE_ADMIN_TOKENS) or --jwt-secret (PULSE_JWT_SECRET) for admins whose JWT role is admin.")
	}
}

func (v *Validator) authSecurity(f *findings) {
	a, s := v.deps.Auth, v.secret
	if !s.configured {
		f.add("jwt_not_configured", SeverityInfo, "jwt",
			"Admin JWTs are not accepted; only static admin tokens authenticate admins.",
			"Nothing to do, unless admins should sign in with their Supabase accounts: then set --jwt-secret, --jwt-issuer and --jwt-audience.")
		return
	}
	switch {
	case s.known:
		f.add("jwt_secret_default", SeverityCritical, "jwt secret",
			"The JWT secret is a published example secret: anyone can sign admin tokens.",
			"Generate a new secret (openssl rand -base64 48), set it on the Supabase project and in PULSE_JWT_SECRET.")
	case s.length < auth.MinSecretLen:
		f.add("jwt_secret_short", SeverityCritical, "jwt secret",
			fmt.Sprintf("The JWT secret is %d bytes, shorter than the %d an HS256 key needs (RFC 7518): it can be brute-forced.", s.length, auth.MinSecretLen),
			"Use a random secret of at least 32 bytes (openssl rand -base64 48).")
	case s.distinct < 10 || s.entropy < 3:
		f.add("jwt_secret_low_entropy", SeverityWarning, "jwt secret",
			fmt.Sprintf("The JWT secret looks guessable (%d distinct bytes, %.1f bits of entropy per byte).", s.distinct, s.entropy),
			"Use a random secret of at least 32 bytes (openssl rand -base64 48).")
	}
	if a.JWTIssuer == "" {
		f.add("jwt_issuer_not_pinned", SeverityWarning, "jwt issuer",
			"Admin JWTs are accepted from any issuer: a token signed with the same secret by another service counts.",
			"Set --jwt-issuer to https://<project>.supabase.co/auth/v1.")
	}
	if a.JWTAudience == "" {
		f.add("jwt_audience_not_pinned", SeverityWarning, "jwt audience",
			"Admin JWTs are accepted for any audience.",
			"Set --jwt-audience to authenticated.")
	}
	if leeway := cmpOr(a.JWTLeeway, auth.DefaultLeeway); leeway > v.cfg.MaxLeeway {
		f.add("jwt_leeway_long", SeverityWarning, "jwt leeway",
			fmt.Sprintf("Expired JWTs are accepted for %s after their expiry (clock-skew leeway above %s).", leeway, v.cfg.MaxLeeway),
			"Keep the leeway at 30 s (the default) and the clocks in sync with NTP.")
	}
	switch {
	case a.TokenLifetime == 0:
		f.add("jwt_lifetime_unknown", SeverityInfo, "jwt expiry",
			"The lifetime of the JWTs the issuer signs is not configured here, so it cannot be judged (exp is required on every token).",
			"Tell Pulse the project's JWT expiry (Supabase: Authentication settings, default 3600 s).")
	case a.TokenLifetime > v.cfg.MaxJWTLifetime:
		f.add("jwt_lifetime_long", SeverityWarning, "jwt expiry",
			fmt.Sprintf("Issued JWTs live %s (more than %s): a leaked admin token stays usable that long.", a.TokenLifetime, v.cfg.MaxJWTLifetime),
			"Lower the project's JWT expiry to 3600 s or less; sessions renew with refresh tokens.")
	}
}

func cmpOr(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// probeDetails are the fields of a health result's details the checks read.
type probeDetails struct {
	Configured *bool    `json:"configured"`
	Error      string   `json:"error"`
	Cause      string   `json:"cause"`
	HTTPStatus int      `json:"http_status"`
	Scheme     string   `json:"scheme"`
	LatencyMS  *float64 `json:"latency_ms"`
}

// latest returns the latest health result of component and its details.
// ok is false, after adding the finding that says why, when there is no
// usable result.
func (v *Validator) latest(component string, f *findings) (event.HealthResult, probeDetails, bool) {
	var h event.HealthResult
	found := false
	if v.deps.Health != nil {
		for _, r := range v.deps.Health.Latest() {
			if r.Component == component && r.Target == "" {
				h, found = r, true
			}
		}
	}
	var d probeDetails
	_ = json.Unmarshal(h.Details, &d)
	switch {
	case !found:
		f.add(component+"_probe_missing", SeverityWarning, component,
			"There is no health probe result for "+component+": the probes do not run in this process, or have not run yet.",
			"Run the query role (it runs the probes) and give it time for one probe interval.")
		return h, d, false
	case d.Configured != nil && !*d.Configured:
		f.add(component+"_not_configured", SeverityWarning, component,
			"The "+component+" health check is not configured, so "+component+" is not watched.",
			map[string]string{"auth": "Set --auth-health-url (PULSE_AUTH_HEALTH_URL).", "realtime": "Set --realtime-url (PULSE_REALTIME_URL)."}[component])
		return h, d, false
	case v.cfg.Now().Sub(h.Timestamp) > v.cfg.StaleAfter:
		f.add(component+"_probe_stale", SeverityWarning, component,
			fmt.Sprintf("The latest %s health result is %s old: the probe stopped.", component, v.cfg.Now().Sub(h.Timestamp).Round(time.Second)),
			"Check the query role's logs: the probe runner should report every probe interval.")
		return h, d, false
	}
	return h, d, true
}

// failure describes a failed probe from its details.
func (d probeDetails) failure() string {
	s := d.Error
	if s == "" {
		s = "failing"
	}
	if d.Cause != "" {
		s += ": " + d.Cause
	}
	if d.HTTPStatus != 0 {
		s += fmt.Sprintf(" (HTTP %d)", d.HTTPStatus)
	}
	return s
}

func (v *Validator) authPerformance(ctx context.Context, f *findings) {
	if h, d, ok := v.latest("auth", f); ok {
		switch {
		case d.Error != "" || h.Status == event.StatusCritical && h.ResponseTimeMS < msOf(v.cfg.AuthLatency):
			f.add("auth_unreachable", SeverityCritical, "auth",
				"The auth service's health check fails ("+d.failure()+"): nobody can sign in.",
				"Check the auth service (Supabase status page, the project's auth logs) and --auth-health-url.")
		case h.ResponseTimeMS >= msOf(v.cfg.AuthLatency):
			f.add("auth_latency_high", SeverityWarning, "auth",
				fmt.Sprintf("The auth health check takes %.0f ms (at least %.0f ms): sign-ins and token refreshes are slow.", h.ResponseTimeMS, msOf(v.cfg.AuthLatency)),
				"Check the auth service's load and region; keep it in the app's region.")
		}
	}
	if v.deps.Metrics == nil {
		f.add("auth_failure_rate_unknown", SeverityInfo, "auth requests",
			"The auth failure rate cannot be computed: request metrics are not configured.",
			"Give the validator the request metrics (probe.StoreMetrics).")
		return
	}
	rate, n, err := v.deps.Metrics.AuthFailureRate(ctx, v.cfg.MetricsWindow)
	switch {
	case err != nil:
		f.add("auth_failure_rate_unknown", SeverityWarning, "auth requests",
			"The auth failure rate cannot be computed: the stored requests cannot be read ("+cause(err)+").",
			"Check ClickHouse's health (GET /readyz).")
	case n < v.cfg.MinAuthRequests:
	case rate >= 5*v.cfg.AuthFailureRate:
		f.add("auth_failure_rate_high", SeverityCritical, "auth requests",
			fmt.Sprintf("%.1f%% of %d auth requests over the last %s failed (failed logins 401/403, 5xx or 429).", rate*100, n, v.cfg.MetricsWindow),
			"Check the auth service's logs and rate limits now, and whether the failed logins come from a few addresses (credential stuffing): sign-ins are failing.")
	case rate >= v.cfg.AuthFailureRate:
		f.add("auth_failure_rate_high", SeverityWarning, "auth requests",
			fmt.Sprintf("%.1f%% of %d auth requests over the last %s failed (failed logins 401/403, 5xx or 429).", rate*100, n, v.cfg.MetricsWindow),
			"Check the auth service's logs and rate limits.")
	}
}

// ---- realtime ----

func (v *Validator) realtimePerformance(f *findings) {
	h, d, ok := v.latest("realtime", f)
	if !ok {
		return
	}
	switch {
	case d.Error != "" || h.Status == event.StatusCritical && h.ResponseTimeMS < msOf(v.cfg.RealtimeLatency):
		f.add("realtime_unreachable", SeverityCritical, "realtime",
			"The realtime WebSocket handshake fails ("+d.failure()+"): live updates (guest lists, seating, timelines) stop.",
			"Check the realtime service and --realtime-url; the handshake must answer 101 Switching Protocols.")
	case h.ResponseTimeMS >= msOf(v.cfg.RealtimeLatency):
		sev := SeverityWarning
		if h.ResponseTimeMS >= 1000 {
			sev = SeverityCritical
		}
		f.add("realtime_handshake_slow", sev, "realtime",
			fmt.Sprintf("The realtime handshake takes %.0f ms (at least %.0f ms): clients reconnect slowly after every network change.", h.ResponseTimeMS, msOf(v.cfg.RealtimeLatency)),
			"Check the realtime service's load and region and the TLS path to it.")
	}
}

func (v *Validator) realtimeSecurity(f *findings) {
	_, d, ok := v.latest("realtime", f)
	if ok && d.Scheme == "ws" {
		f.add("realtime_not_tls", SeverityCritical, "realtime",
			"The realtime service is reached over ws:// without TLS: tokens and payloads cross the network in clear text.",
			"Use wss:// for --realtime-url and in the app.")
	}
}

// ---- api ----

func (v *Validator) apiPerformance(ctx context.Context, f *findings) {
	if v.deps.Metrics == nil {
		f.add("api_metrics_unavailable", SeverityWarning, "api",
			"Request metrics are not configured, so the API's SLOs cannot be checked.",
			"Give the validator the request metrics (probe.StoreMetrics).")
		return
	}
	p95, avg, errRate, _, n, err := v.deps.Metrics.APIStats(ctx, v.cfg.MetricsWindow)
	switch {
	case err != nil:
		f.add("api_metrics_unavailable", SeverityWarning, "api",
			"The stored requests cannot be read ("+cause(err)+"), so the API's SLOs cannot be checked.",
			"Check ClickHouse's health (GET /readyz).")
		return
	case n == 0:
		f.add("api_no_traffic", SeverityInfo, "api",
			fmt.Sprintf("No requests were recorded over the last %s, so the SLOs cannot be judged.", v.cfg.MetricsWindow),
			"Check that the fleet reports its requests (POST /api/admin/system/metrics).")
		return
	}
	if avg >= msOf(v.cfg.SLOAverage) {
		f.add("api_latency_slo", SeverityCritical, "api average",
			fmt.Sprintf("The average response time is %.0f ms over %d requests in the last %s (SLO: below %.0f ms).", avg, n, v.cfg.MetricsWindow, msOf(v.cfg.SLOAverage)),
			"Look at the slowest endpoints (GET /api/admin/system/performance) and the database's slow queries (validate database performance).")
	}
	if p95 >= msOf(v.cfg.SLOP95) {
		f.add("api_p95_slo", SeverityCritical, "api p95",
			fmt.Sprintf("The P95 response time is %.0f ms over %d requests in the last %s (SLO: below %.0f ms).", p95, n, v.cfg.MetricsWindow, msOf(v.cfg.SLOP95)),
			"Look at the slowest endpoints (GET /api/admin/system/performance) and the database's slow queries (validate database performance).")
	}
	if errRate >= v.cfg.SLOErrorRate {
		f.add("api_error_rate_slo", SeverityCritical, "api errors",
			fmt.Sprintf("%.2f%% of %d requests in the last %s failed with 5xx (SLO: below %.0f%%).", errRate*100, n, v.cfg.MetricsWindow, v.cfg.SLOErrorRate*100),
			"Look at the failing endpoints and their error messages (GET /api/admin/system/performance?metric=error_rate).")
	}
}

// publicRoutes may be served without credentials.
var publicRoutes = []string{"GET /healthz", "GET /readyz"}

func (v *Validator) apiSecurity(f *findings) {
	if v.deps.Routes == nil {
		f.add("route_list_unavailable", SeverityWarning, "routes",
			"The list of registered routes is not available, so their guards cannot be checked.",
			"Give the validator the router's route list (Deps.Routes).")
		return
	}
	for _, r := range v.deps.Routes() {
		key := r.Method + " " + r.Path
		switch {
		case r.Scope == httpapi.Public && slices.Contains(publicRoutes, key):
		case r.Scope == httpapi.Public && strings.HasPrefix(r.Path, "/api/admin"):
			f.add("admin_route_unguarded", SeverityCritical, "route "+key,
				"Admin route "+key+" is registered without a guard: anyone can call it.",
				"Register it with auth.ScopeAdmin: r.Handle(method, path, auth.ScopeAdmin, h).")
		case r.Scope == httpapi.Public:
			f.add("public_route", SeverityWarning, "route "+key,
				"Route "+key+" is served without credentials.",
				"Make it admin-only unless it must be public like /healthz and /readyz.")
		case strings.HasPrefix(r.Path, "/api/admin") && r.Scope != auth.ScopeAdmin && !slices.Contains(v.cfg.IngestRoutes, key):
			f.add("admin_route_scope", SeverityCritical, "route "+key,
				fmt.Sprintf("Admin route %s accepts the %q scope instead of admin.", key, r.Scope),
				"Register it with auth.ScopeAdmin.")
		}
	}
}

// ---- deployment ----

// roles whose instances matter for availability.
var roles = []string{"ingest", "aggregator", "query"}

func (v *Validator) deploymentTopology(ctx context.Context, f *findings) {
	d := v.deps.Deployment
	if d.NATSEmbedded {
		f.add("nats_embedded", SeverityWarning, "nats",
			"NATS runs embedded in the Pulse process: when that process stops, ingest stops and the stream's backlog is on one disk.",
			"Run an external NATS cluster of three servers (--nats-url) with streams at three replicas (--stream-replicas 3); see deploy/.")
	}
	if len(d.Streams) == 0 {
		f.add("streams_unknown", SeverityInfo, "streams", "The streams Pulse relies on are not described here, so their replication cannot be judged.",
			"Give the validator the stream configuration (Deps.Deployment.Streams).")
	}
	for _, s := range d.Streams {
		if s.Replicas < 3 {
			f.add("stream_replication_low", SeverityWarning, "stream "+s.Name,
				fmt.Sprintf("Stream %s has %d replica(s): losing one server loses or stops it (3 tolerate one failure).", s.Name, s.Replicas),
				"Run NATS as a cluster of three and set --stream-replicas 3.")
		}
		if s.MaxAge > 0 && d.Retention.Raw > 0 && s.MaxAge > d.Retention.Raw {
			f.add("stream_age_exceeds_retention", SeverityWarning, "stream "+s.Name,
				fmt.Sprintf("Stream %s keeps unconsumed events for %s, longer than the %s raw retention: user ids can outlive it there.", s.Name, s.MaxAge, d.Retention.Raw),
				"Set --stream-max-age at most the raw retention.")
		}
	}
	v.clickhouseTopology(ctx, f)
	switch r := d.Retention; {
	case r.Raw == 0 || r.Rollup == 0:
		f.add("retention_not_configured", SeverityWarning, "retention",
			"The retention of stored rows is not known here, so it cannot be checked.",
			"Give the validator the retention settings (Deps.Deployment.Retention).")
	case r.Raw > v.cfg.MaxRawRetention:
		f.add("retention_exceeds_limit", SeverityWarning, "retention raw",
			fmt.Sprintf("Raw request rows, which hold user ids, are kept %s (limit %s).", r.Raw, v.cfg.MaxRawRetention),
			fmt.Sprintf("Set --retention-raw to %s or less; the 1-minute rollups hold no user ids and keep the trends.", v.cfg.MaxRawRetention))
	}
	if v.deps.Deployment.Instances == nil {
		f.add("instances_unknown", SeverityInfo, "roles", "The number of running instances of each role is not known here, so single points of failure cannot be found.",
			"Give the validator the running instances (Deps.Deployment.Instances).")
		return
	}
	n, err := v.deps.Deployment.Instances(ctx)
	if err != nil {
		f.add("instances_unknown", SeverityWarning, "roles", "The running instances of each role cannot be read ("+cause(err)+").",
			"Check NATS, where instances announce themselves.")
		return
	}
	for _, role := range roles {
		switch n[role] {
		case 0:
			f.add("role_not_running", SeverityCritical, "role "+role, "No instance of the "+role+" role is running.",
				"Start one: pulse serve --roles "+role+".")
		case 1:
			f.add("single_instance", SeverityWarning, "role "+role,
				"The "+role+" role runs on a single instance: a crash or a deploy interrupts it.",
				"Run at least two instances of it (pulse serve --roles "+role+") behind the load balancer; see deploy/.")
		}
	}
}

func (v *Validator) clickhouseTopology(ctx context.Context, f *findings) {
	st := v.deps.Store
	switch {
	case st == nil:
		f.add("clickhouse_not_configured", SeverityWarning, "clickhouse", "No ClickHouse store is given, so its topology cannot be judged.",
			"Give the validator Pulse's store (Deps.Store).")
		return
	case st.Kind() == "chdb":
		f.add("clickhouse_embedded", SeverityWarning, "clickhouse",
			"ClickHouse runs embedded (chDB) in one process: every stored row is on one disk and the store stops with the process.",
			"Use a replicated ClickHouse cluster (--clickhouse-dsn clickhouse://...) with ReplicatedMergeTree tables; see deploy/.")
	default:
		var replicated, total uint64
		err := st.QueryRow(ctx, "SELECT countIf(engine LIKE 'Replicated%'), count() FROM system.tables WHERE database = "+
			chstore.Quote(st.Database())+" AND engine LIKE '%MergeTree'", &replicated, &total)
		switch {
		case err != nil:
			f.add("clickhouse_unreachable", SeverityCritical, "clickhouse", "ClickHouse's tables cannot be read ("+cause(err)+").",
				"Check ClickHouse's health (GET /readyz).")
		case replicated < total:
			f.add("clickhouse_not_replicated", SeverityWarning, "clickhouse",
				fmt.Sprintf("%d of %d tables of database %s are not replicated: losing the server loses their rows.", total-replicated, total, st.Database()),
				"Run ClickHouse as a cluster with ReplicatedMergeTree tables (two replicas at least); see deploy/.")
		}
	}
	if !st.Version().HasTTL() {
		f.add("retention_without_ttl", SeverityInfo, "clickhouse",
			fmt.Sprintf("ClickHouse %s has no table TTL: expired rows are removed only by Pulse's hourly partition drop, which must keep running.", st.Version()),
			"Upgrade ClickHouse to 19.6 or later so that the tables expire rows themselves.")
	}
}

func (v *Validator) deploymentCapacity(ctx context.Context, f *findings) {
	st := v.deps.Store
	if st == nil {
		f.add("resource_samples_missing", SeverityWarning, "resources", "No ClickHouse store is given, so resource utilisation cannot be read.",
			"Give the validator Pulse's store (Deps.Store).")
		return
	}
	since := v.cfg.Now().Add(-v.cfg.ResourceWindow)
	r, err := st.Query(ctx, "SELECT resource, host, name, argMax(utilisation, ts) FROM "+st.T("resources")+
		" WHERE ts > "+chstore.DateTime(since)+" AND resource IN ('cpu', 'memory', 'connections', 'network')"+
		" GROUP BY resource, host, name ORDER BY resource, host, name")
	if err != nil {
		f.add("resource_samples_missing", SeverityWarning, "resources", "Resource samples cannot be read ("+cause(err)+").",
			"Check ClickHouse's health (GET /readyz).")
		return
	}
	defer r.Close()
	headroom := 1 / v.cfg.LoadFactor
	n := 0
	for r.Next() {
		var res, host, name string
		var u float64
		if err := r.Scan(&res, &host, &name, &u); err != nil {
			break
		}
		n++
		obj := res + " " + host
		if name != "" {
			obj += " " + name
		}
		switch {
		case u > v.cfg.MaxConnectionUsage:
			f.add("resource_utilisation_high", SeverityCritical, obj,
				fmt.Sprintf("%s on %s is at %.0f%%: it is close to exhaustion now.", res, host, u*100),
				"Add capacity to "+host+" or spread the load before the next peak.")
		case u > headroom:
			f.add("capacity_headroom_low", SeverityWarning, obj,
				fmt.Sprintf("%s on %s is at %.0f%%: %.0fx the load (a wedding-season peak) would need %.0f%%.", res, host, u*100, v.cfg.LoadFactor, u*v.cfg.LoadFactor*100),
				fmt.Sprintf("Keep utilisation at or below %.0f%% before the season: scale %s out or up.", headroom*100, host))
		}
	}
	if n == 0 {
		f.add("resource_samples_missing", SeverityInfo, "resources",
			fmt.Sprintf("No resource samples were stored over the last %s, so capacity headroom cannot be judged.", v.cfg.ResourceWindow),
			"Check that Pulse's host sampler and the fleet's hosts report resources.")
	}
}

func (v *Validator) deploymentSecurity(f *findings) {
	names := make([]string, 0, len(v.deps.Deployment.URLs))
	for name := range v.deps.Deployment.URLs {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		secure, local, ok := transportSecurity(v.deps.Deployment.URLs[name])
		switch {
		case !ok:
			f.add("url_invalid", SeverityWarning, "url "+name, "The "+name+" URL cannot be parsed, so its transport cannot be judged.",
				"Check the "+name+" setting.")
		case !secure && !local:
			f.add("url_not_tls", SeverityCritical, "url "+name,
				"The "+name+" URL does not use TLS: credentials and data cross the network in clear text.",
				"Use the TLS form of the "+name+" URL (https, wss, tls://, clickhouse ?secure=true, postgres sslmode=verify-full).")
		}
	}
	if v.cfg.DatabaseURL != "" && !dbHostLocal(v.cfg.DatabaseURL) && !v.dbTLS {
		f.add("database_connection_not_tls", SeverityCritical, "database connection",
			"Pulse reaches the app's Postgres without requiring TLS (sslmode disable, allow or prefer).",
			"Add sslmode=verify-full (or require) to --database-url.")
	}
}

// transportSecurity says whether a URL's transport is encrypted and whether
// its host is local (loopback or a Unix socket), where that does not matter.
func transportSecurity(raw string) (secure, local, ok bool) {
	scheme, host, q, ok := urlHost(raw)
	if !ok {
		return false, false, false
	}
	local = localHost(host)
	switch strings.ToLower(scheme) {
	case "https", "wss", "tls", "rediss", "grpcs":
		return true, local, true
	case "clickhouse":
		return q.Get("secure") == "true", local, true
	case "postgres", "postgresql":
		pc, err := pgxpool.ParseConfig(raw)
		if err != nil {
			return false, local, false
		}
		return pgTLS(pc), local, true
	}
	return false, local, true
}

// pgTLS reports whether a pool config always uses TLS: prefer and allow
// fall back to clear text.
func pgTLS(pc *pgxpool.Config) bool {
	if pc.ConnConfig.TLSConfig == nil {
		return false
	}
	for _, fb := range pc.ConnConfig.Fallbacks {
		if fb.TLSConfig == nil {
			return false
		}
	}
	return true
}

// localHost reports whether host is a loopback host or a Unix socket.
func localHost(host string) bool {
	if host == "" || strings.HasPrefix(host, "/") || strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
