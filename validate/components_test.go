package validate

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/rs/zerolog"

	"github.com/wedsync/pulse/internal/auth"
	"github.com/wedsync/pulse/internal/chstore"
	"github.com/wedsync/pulse/internal/event"
	"github.com/wedsync/pulse/internal/httpapi"
	"github.com/wedsync/pulse/internal/probe"
	"github.com/wedsync/pulse/internal/testenv"
	"github.com/wedsync/pulse/schema"
)

// results is a HealthSource holding fixed probe results.
type results []event.HealthResult

func (r results) Latest() []event.HealthResult { return r }

func health(component, status string, ms float64, ago time.Duration, details string) event.HealthResult {
	return event.HealthResult{Timestamp: time.Now().Add(-ago).UTC(), Component: component, Status: status, ResponseTimeMS: ms, Details: json.RawMessage(details)}
}

// req is a stored request row.
type req struct {
	endpoint string
	status   uint16
	ms       float64
	user     uuid.UUID
	ago      time.Duration
}

// insertRequests stores rows in requests as the aggregator does.
func insertRequests(t testing.TB, st *chstore.Store, rows []req) {
	t.Helper()
	n := len(rows)
	ts, svc, ep, method, errMsg, reqID := make([]time.Time, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	code, ms, users, seq, idx := make([]uint16, n), make([]float64, n), make([]uuid.UUID, n), make([]uint64, n), make([]uint32, n)
	for i, r := range rows {
		ts[i], svc[i], ep[i], method[i], reqID[i] = time.Now().Add(-r.ago).UTC(), "web", r.endpoint, "GET", uuid.NewString()
		code[i], ms[i], users[i], seq[i], idx[i] = r.status, r.ms, r.user, uint64(i+1), 0
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := st.Insert(ctx, "", "requests", []chstore.Column{
		{Name: "ts", Values: ts}, {Name: "service", Values: svc}, {Name: "endpoint", Values: ep}, {Name: "method", Values: method},
		{Name: "status_code", Values: code}, {Name: "response_time_ms", Values: ms}, {Name: "user_id", Values: users},
		{Name: "error_message", Values: errMsg}, {Name: "request_id", Values: reqID}, {Name: "stream_seq", Values: seq}, {Name: "seq_idx", Values: idx},
	})
	if err != nil {
		t.Fatalf("insert requests: %v", err)
	}
}

// traffic returns n requests to endpoint, failed of them with status.
func traffic(endpoint string, n, failed int, status uint16, ms float64) []req {
	out := make([]req, n)
	for i := range out {
		out[i] = req{endpoint: endpoint, status: 200, ms: ms, ago: time.Minute}
		if i < failed {
			out[i].status = status
		}
	}
	return out
}

func componentLints(t *testing.T, v *Validator, component, typ string) []Issue {
	t.Helper()
	if !Supported(component, typ) {
		t.Fatalf("%s/%s is not supported", component, typ)
	}
	return run(t, v, component, typ, false).Issues
}

func wantLints(t *testing.T, issues []Issue, want ...string) {
	t.Helper()
	slices.Sort(want)
	if got := lints(issues); !slices.Equal(got, want) {
		t.Errorf("lints %v; want %v\n%+v", got, want, issues)
	}
}

func TestAuthPermissions(t *testing.T) {
	wantLints(t, componentLints(t, validator(t, Config{}, Deps{}), "auth", "permissions"), "admin_principal_missing")
	wantLints(t, componentLints(t, validator(t, Config{}, Deps{Auth: AuthSettings{AdminTokens: 1}}), "auth", "permissions"))
	wantLints(t, componentLints(t, validator(t, Config{}, Deps{Auth: AuthSettings{JWTSecret: []byte(strongSecret)}}), "auth", "permissions"))
}

const strongSecret = "q7Vt2mX9pL4sK8wR1zB6nJ3cF0hY5gD-aE_uT"

func TestAuthSecurity(t *testing.T) {
	good := AuthSettings{JWTSecret: []byte(strongSecret), JWTIssuer: "https://x.supabase.co/auth/v1", JWTAudience: "authenticated", TokenLifetime: time.Hour}
	with := func(f func(*AuthSettings)) AuthSettings {
		a := good
		a.JWTSecret = []byte(strongSecret)
		f(&a)
		return a
	}
	for _, c := range []struct {
		name string
		auth AuthSettings
		want []string
	}{
		{"strong", good, nil},
		{"no jwt", AuthSettings{AdminTokens: 2}, []string{"jwt_not_configured"}},
		{"published secret", with(func(a *AuthSettings) { a.JWTSecret = []byte("super-secret-jwt-token-with-at-least-32-characters-long") }), []string{"jwt_secret_default"}},
		{"short secret", with(func(a *AuthSettings) { a.JWTSecret = []byte("s3cr3t-Pa55") }), []string{"jwt_secret_short"}},
		{"guessable secret", with(func(a *AuthSettings) { a.JWTSecret = []byte(strings.Repeat("ab", 20)) }), []string{"jwt_secret_low_entropy"}},
		{"any issuer and audience", with(func(a *AuthSettings) { a.JWTIssuer, a.JWTAudience = "", "" }), []string{"jwt_audience_not_pinned", "jwt_issuer_not_pinned"}},
		{"long leeway", with(func(a *AuthSettings) { a.JWTLeeway = 5 * time.Minute }), []string{"jwt_leeway_long"}},
		{"unknown lifetime", with(func(a *AuthSettings) { a.TokenLifetime = 0 }), []string{"jwt_lifetime_unknown"}},
		{"long lifetime", with(func(a *AuthSettings) { a.TokenLifetime = 7 * 24 * time.Hour }), []string{"jwt_lifetime_long"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			v := validator(t, Config{}, Deps{Auth: c.auth})
			if v.deps.Auth.JWTSecret != nil {
				t.Error("the validator kept the JWT secret")
			}
			issues := componentLints(t, v, "auth", "security")
			wantLints(t, issues, c.want...)
			for _, is := range issues {
				if strings.Contains(is.Message+is.Recommendation, string(c.auth.JWTSecret)) && c.auth.JWTSecret != nil {
					t.Errorf("finding quotes the secret: %+v", is)
				}
			}
		})
	}
}

func TestAuthPerformance(t *testing.T) {
	st := testenv.ClickHouse(t)
	metrics := probe.StoreMetrics{Store: st}
	// 10% of the auth requests fail: 2 with 503, 8 failed logins (401 on
	// an auth route, the spec's login_failed); 401s elsewhere are no logins.
	insertRequests(t, st, slices.Concat(traffic("/auth/v1/token", 92, 2, 503, 40), traffic("/api/auth/login", 8, 8, 401, 40),
		traffic("/api/clients", 50, 20, 401, 40)))
	healthy := health("auth", event.StatusHealthy, 50, time.Second, `{"latency_ms":50}`)
	for _, c := range []struct {
		name   string
		health HealthSource
		cfg    Config
		m      Metrics
		want   []string
	}{
		{"failure rate warning", results{healthy}, Config{}, metrics, []string{"auth_failure_rate_high"}},
		{"failure rate fine", results{healthy}, Config{AuthFailureRate: 0.2}, metrics, nil},
		{"failure rate error", results{healthy}, Config{AuthFailureRate: 0.02}, metrics, []string{"auth_failure_rate_high"}},
		{"too few auth requests", results{healthy}, Config{MinAuthRequests: 1000}, metrics, nil},
		{"no metrics", results{healthy}, Config{}, nil, []string{"auth_failure_rate_unknown"}},
		{"no health source", nil, Config{AuthFailureRate: 0.2}, metrics, []string{"auth_probe_missing"}},
		{"no auth result", results{health("realtime", event.StatusHealthy, 10, time.Second, `{}`)}, Config{AuthFailureRate: 0.2}, metrics, []string{"auth_probe_missing"}},
		{"not configured", results{health("auth", event.StatusUnknown, 0, time.Second, `{"configured":false,"reason":"not configured"}`)}, Config{AuthFailureRate: 0.2}, metrics, []string{"auth_not_configured"}},
		{"stale", results{health("auth", event.StatusHealthy, 50, time.Hour, `{}`)}, Config{AuthFailureRate: 0.2}, metrics, []string{"auth_probe_stale"}},
		{"slow", results{health("auth", event.StatusDegraded, 350, time.Second, `{}`)}, Config{AuthFailureRate: 0.2}, metrics, []string{"auth_latency_high"}},
		{"down", results{health("auth", event.StatusCritical, 3, time.Second, `{"error":"unreachable","cause":"connection refused"}`)}, Config{AuthFailureRate: 0.2}, metrics, []string{"auth_unreachable"}},
		{"bad status", results{health("auth", event.StatusCritical, 30, time.Second, `{"http_status":503}`)}, Config{AuthFailureRate: 0.2}, metrics, []string{"auth_unreachable"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			issues := componentLints(t, validator(t, c.cfg, Deps{Health: c.health, Metrics: c.m}), "auth", "performance")
			wantLints(t, issues, c.want...)
			if c.name == "failure rate error" && issues[0].Severity != SeverityCritical || c.name == "failure rate warning" && issues[0].Severity != SeverityWarning {
				t.Errorf("severity %s", issues[0].Severity)
			}
			if c.name == "down" && !strings.Contains(issues[0].Message, "unreachable: connection refused") ||
				c.name == "bad status" && !strings.Contains(issues[0].Message, "HTTP 503") {
				t.Errorf("message %q", issues[0].Message)
			}
		})
	}
	// A store that cannot answer.
	if err := st.Exec(context.Background(), "DROP TABLE "+st.T("requests")); err != nil {
		t.Fatal(err)
	}
	issues := componentLints(t, validator(t, Config{}, Deps{Health: results{healthy}, Metrics: metrics}), "auth", "performance")
	wantLints(t, issues, "auth_failure_rate_unknown")
	if issues[0].Severity != SeverityWarning {
		t.Errorf("unreadable metrics: %+v", issues[0])
	}
}

func TestRealtime(t *testing.T) {
	for _, c := range []struct {
		name string
		h    event.HealthResult
		perf []string
		sec  []string
	}{
		{"healthy", health("realtime", event.StatusHealthy, 80, time.Second, `{"scheme":"wss","latency_ms":80}`), nil, nil},
		{"slow", health("realtime", event.StatusDegraded, 450, time.Second, `{"scheme":"wss"}`), []string{"realtime_handshake_slow"}, nil},
		{"very slow", health("realtime", event.StatusCritical, 1500, time.Second, `{"scheme":"wss"}`), []string{"realtime_handshake_slow"}, nil},
		{"refused", health("realtime", event.StatusCritical, 2, time.Second, `{"scheme":"wss","error":"handshake refused","http_status":403}`), []string{"realtime_unreachable"}, nil},
		{"clear text", health("realtime", event.StatusHealthy, 20, time.Second, `{"scheme":"ws"}`), nil, []string{"realtime_not_tls"}},
		{"not configured", health("realtime", event.StatusUnknown, 0, time.Second, `{"configured":false}`), []string{"realtime_not_configured"}, []string{"realtime_not_configured"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			v := validator(t, Config{}, Deps{Health: results{c.h}})
			perf := componentLints(t, v, "realtime", "performance")
			wantLints(t, perf, c.perf...)
			wantLints(t, componentLints(t, v, "realtime", "security"), c.sec...)
			if c.name == "very slow" && perf[0].Severity != SeverityCritical || c.name == "slow" && perf[0].Severity != SeverityWarning {
				t.Errorf("severity %s", perf[0].Severity)
			}
		})
	}
}

func TestAPIPerformance(t *testing.T) {
	fast, slow, failing, quiet := testenv.ClickHouse(t), testenv.ClickHouse(t), testenv.ClickHouse(t), testenv.ClickHouse(t)
	insertRequests(t, fast, traffic("/api/clients", 200, 1, 500, 80))
	insertRequests(t, slow, append(traffic("/api/forms", 100, 0, 200, 1500), traffic("/api/clients", 50, 0, 200, 100)...))
	insertRequests(t, failing, traffic("/api/clients", 100, 5, 502, 80))
	for _, c := range []struct {
		name string
		m    Metrics
		want []string
	}{
		{"within the SLOs", probe.StoreMetrics{Store: fast}, nil},
		{"slow", probe.StoreMetrics{Store: slow}, []string{"api_latency_slo", "api_p95_slo"}},
		{"failing", probe.StoreMetrics{Store: failing}, []string{"api_error_rate_slo"}},
		{"no traffic", probe.StoreMetrics{Store: quiet}, []string{"api_no_traffic"}},
		{"no metrics", nil, []string{"api_metrics_unavailable"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			wantLints(t, componentLints(t, validator(t, Config{}, Deps{Metrics: c.m}), "api", "performance"), c.want...)
		})
	}
	for _, table := range []string{"requests", "requests_1m_svc", "requests_5m_svc", "requests_1h_svc"} { // API figures read the rollups
		if err := quiet.Exec(context.Background(), "DROP TABLE "+quiet.T(table)); err != nil {
			t.Fatal(err)
		}
	}
	wantLints(t, componentLints(t, validator(t, Config{}, Deps{Metrics: probe.StoreMetrics{Store: quiet}}), "api", "performance"), "api_metrics_unavailable")
}

func TestAPISecurity(t *testing.T) {
	v := validator(t, Config{}, Deps{})
	wantLints(t, componentLints(t, v, "api", "security"), "route_list_unavailable")

	// The real routes, walked from a router: everything guarded.
	e := httpapi.New(zerolog.Nop())
	r := httpapi.NewRouter(e, &auth.StaticTokens{})
	v.Register(r)
	guarded := []Route{
		{"GET", "/healthz", httpapi.Public}, {"GET", "/readyz", httpapi.Public},
		{"POST", "/api/admin/system/metrics", auth.ScopeIngest}, {"GET", "/api/admin/system/health", auth.ScopeAdmin},
		{"GET", "/metrics", auth.ScopeAdmin}, {"POST", PathValidate, auth.ScopeAdmin},
	}
	wantLints(t, componentLints(t, validator(t, Config{}, Deps{Routes: func() []Route { return guarded }}), "api", "security"))

	broken := append(slices.Clone(guarded),
		Route{"GET", "/api/admin/system/performance", httpapi.Public},
		Route{"DELETE", "/api/admin/users/:user_id/metrics", auth.ScopeIngest},
		Route{"GET", "/debug/pprof", httpapi.Public})
	issues := componentLints(t, validator(t, Config{}, Deps{Routes: func() []Route { return broken }}), "api", "security")
	wantLints(t, issues, "admin_route_scope", "admin_route_unguarded", "public_route")
	if got := objects(issues); !slices.Equal(got, []string{"route DELETE /api/admin/users/:user_id/metrics", "route GET /api/admin/system/performance", "route GET /debug/pprof"}) {
		t.Errorf("objects %q", got)
	}
}

func TestDeploymentTopology(t *testing.T) {
	good := Deployment{
		Streams:   []Stream{{Name: "PULSE_INGEST", Replicas: 3, MaxAge: 7 * 24 * time.Hour}},
		Retention: schema.DefaultRetention,
		Instances: func(context.Context) (map[string]int, error) {
			return map[string]int{"ingest": 2, "aggregator": 3, "query": 2}, nil
		},
	}
	backends := testenv.Backends(t)
	for _, c := range []struct {
		name  string
		store *chstore.Store
		d     Deployment
		cfg   Config
		want  []string
	}{
		{"server", backends["clickhouse"], good, Config{}, []string{"clickhouse_not_replicated", "retention_without_ttl"}},
		{"embedded", backends["chdb"], good, Config{}, []string{"clickhouse_embedded"}},
		{"no store", nil, good, Config{}, []string{"clickhouse_not_configured"}},
		{"fragile", backends["chdb"], Deployment{NATSEmbedded: true,
			Streams:   []Stream{{Name: "PULSE_INGEST", Replicas: 1, MaxAge: 120 * 24 * time.Hour}},
			Retention: schema.Retention{Raw: 90 * 24 * time.Hour, Rollup: 400 * 24 * time.Hour},
			Instances: func(context.Context) (map[string]int, error) { return map[string]int{"ingest": 1, "query": 1}, nil },
		}, Config{}, []string{"clickhouse_embedded", "nats_embedded", "retention_exceeds_limit", "role_not_running", "single_instance", "stream_age_exceeds_retention", "stream_replication_low"}},
		{"unknown", backends["chdb"], Deployment{}, Config{}, []string{"clickhouse_embedded", "instances_unknown", "retention_not_configured", "streams_unknown"}},
		{"instances unreadable", backends["chdb"], Deployment{Streams: good.Streams, Retention: good.Retention,
			Instances: func(context.Context) (map[string]int, error) { return nil, context.DeadlineExceeded }}, Config{}, []string{"clickhouse_embedded", "instances_unknown"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			issues := componentLints(t, validator(t, c.cfg, Deps{Store: c.store, Deployment: c.d}), "deployment", "schema")
			wantLints(t, issues, c.want...)
			if c.name == "fragile" {
				if got := objects(find(issues, "single_instance")); !slices.Equal(got, []string{"role ingest", "role query"}) {
					t.Errorf("single instances %q", got)
				}
				if got := objects(find(issues, "role_not_running")); !slices.Equal(got, []string{"role aggregator"}) {
					t.Errorf("roles not running %q", got)
				}
			}
		})
	}
	// A store that no longer answers.
	closed, err := chstore.Open(context.Background(), testenv.ClickHouseDSN()+"/"+backends["clickhouse"].Database(), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	closed.Close()
	issues := componentLints(t, validator(t, Config{}, Deps{Store: closed, Deployment: good}), "deployment", "schema")
	wantLints(t, issues, "clickhouse_unreachable", "retention_without_ttl")
}

func TestDeploymentCapacity(t *testing.T) {
	st := testenv.ClickHouse(t)
	insertResources(t, st, map[string]float64{"cpu web-1": 0.2, "memory web-1": 0.5, "connections postgres": 0.9, "network web-1 eth0": 0})
	issues := componentLints(t, validator(t, Config{}, Deps{Store: st}), "deployment", "performance")
	wantLints(t, issues, "capacity_headroom_low", "resource_utilisation_high")
	if got := objects(issues); !slices.Equal(got, []string{"connections postgres", "memory web-1"}) {
		t.Errorf("objects %q", got)
	}
	wantLints(t, componentLints(t, validator(t, Config{}, Deps{Store: testenv.ClickHouse(t)}), "deployment", "performance"), "resource_samples_missing")
	wantLints(t, componentLints(t, validator(t, Config{}, Deps{}), "deployment", "performance"), "resource_samples_missing")
	if err := st.Exec(context.Background(), "DROP TABLE "+st.T("resources")); err != nil {
		t.Fatal(err)
	}
	wantLints(t, componentLints(t, validator(t, Config{}, Deps{Store: st}), "deployment", "performance"), "resource_samples_missing")
}

// insertResources stores one current sample per "resource host [name]".
func insertResources(t testing.TB, st *chstore.Store, util map[string]float64) {
	t.Helper()
	var ts []time.Time
	var host, res, name []string
	var used, capacity, u []float64
	var seq []uint64
	var idx []uint32
	for k, v := range util {
		parts := append(strings.Fields(k), "")
		ts, res, host, name = append(ts, time.Now().Add(-time.Minute).UTC()), append(res, parts[0]), append(host, parts[1]), append(name, parts[2])
		used, capacity, u, seq, idx = append(used, v*100), append(capacity, 100), append(u, v), append(seq, uint64(len(seq)+1)), append(idx, 0)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := st.Insert(ctx, "", "resources", []chstore.Column{{Name: "ts", Values: ts}, {Name: "host", Values: host}, {Name: "resource", Values: res},
		{Name: "name", Values: name}, {Name: "used", Values: used}, {Name: "capacity", Values: capacity}, {Name: "utilisation", Values: u},
		{Name: "stream_seq", Values: seq}, {Name: "seq_idx", Values: idx}})
	if err != nil {
		t.Fatalf("insert resources: %v", err)
	}
}

func TestDeploymentSecurity(t *testing.T) {
	urls := map[string]string{
		"public api":        "https://pulse.wedsync.com",
		"realtime":          "wss://x.supabase.co/realtime/v1/websocket?apikey=secret-key",
		"local http":        "http://127.0.0.1:7480",
		"clickhouse tls":    "clickhouse://ch.internal:9440/pulse?secure=true",
		"postgres verified": "postgres://app:pw@db.internal:5432/app?sslmode=verify-full",
		"nats tls":          "tls://nats.internal:4222",
	}
	v := validator(t, Config{DatabaseURL: "postgres://app:pw@db.internal:5432/app?sslmode=require"}, Deps{Deployment: Deployment{URLs: urls}})
	wantLints(t, componentLints(t, v, "deployment", "security"))

	bad := map[string]string{
		"auth health":    "http://auth.internal/health?apikey=secret-key",
		"clickhouse":     "clickhouse://pulse:pw@ch.internal:9000/pulse",
		"postgres":       "postgres://app:pw@db.internal/app?sslmode=prefer",
		"nats":           "nats://nats.internal:4222",
		"broken":         "http://[::1",
		"broken pg":      "postgres://app:pw@db.internal/app?sslmode=bogus",
		"realtime plain": "ws://10.0.0.7:4000/socket",
	}
	v = validator(t, Config{DatabaseURL: "postgres://app:pw@db.internal:5432/app?sslmode=disable"}, Deps{Deployment: Deployment{URLs: bad}})
	issues := componentLints(t, v, "deployment", "security")
	wantLints(t, issues, "database_connection_not_tls", "url_invalid", "url_not_tls")
	if got := objects(find(issues, "url_not_tls")); !slices.Equal(got, []string{"url auth health", "url clickhouse", "url nats", "url postgres", "url realtime plain"}) {
		t.Errorf("not TLS: %q", got)
	}
	for _, is := range issues {
		for _, s := range []string{"secret-key", "pw@", "internal", "10.0.0.7"} {
			if strings.Contains(is.Message+is.Recommendation+is.Object, s) {
				t.Errorf("finding quotes %q: %+v", s, is)
			}
		}
	}
	// A local database needs no TLS.
	v = validator(t, Config{DatabaseURL: "postgres://app@localhost/app?sslmode=disable"}, Deps{})
	wantLints(t, componentLints(t, v, "deployment", "security"))
}

func TestLocalHost(t *testing.T) {
	for host, want := range map[string]bool{"": true, "/var/run/postgresql": true, "localhost": true, "127.0.0.2": true, "::1": true,
		"10.0.0.1": false, "db.internal": false} {
		if got := localHost(host); got != want {
			t.Errorf("localHost(%q) = %v", host, got)
		}
	}
	if dbHostLocal("postgres://%zz") {
		t.Error("an unparsable URL is not local")
	}
}
