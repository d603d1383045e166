package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/rs/zerolog"

	"github.com/wedsync/pulse/internal/chstore"
	"github.com/wedsync/pulse/internal/testenv"
)

// The sanitisation check of the admin API: a pulse process configured with
// a recognisable secret in every secret-bearing setting is driven through
// success and error paths, and no response (body or header) and no line it
// writes may hold any secret; no response may name an internal address.

// secretSet is every secret value of one run, by the setting it is in.
type secretSet map[string]string

// newSecret returns label followed by 24 random hex digits: unmistakable
// in any output.
func newSecret(label string, hexLen int) string {
	b := make([]byte, hexLen/2)
	_, _ = rand.Read(b)
	return label + hex.EncodeToString(b)
}

// leaks returns the secrets of which s holds the value, its first or its
// last 16 characters (a truncated print is a leak too; two thirds of a
// shorter secret).
func (ss secretSet) leaks(s string) []string {
	var out []string
	for name, v := range ss {
		n := min(16, len(v)*2/3)
		if strings.Contains(s, v) || strings.Contains(s, v[:n]) || strings.Contains(s, v[len(v)-n:]) {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// natsWithToken starts a NATS server with JetStream that demands token.
func natsWithToken(t *testing.T, token string) *server.Server {
	t.Helper()
	ns, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true, StoreDir: t.TempDir(),
		NoSigs: true, NoLog: true, MaxPayload: 8 << 20, Authorization: token,
	})
	if err != nil {
		t.Fatalf("start NATS: %v", err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS not ready within 10s")
	}
	t.Cleanup(func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	return ns
}

// withUser returns rawURL with its user info replaced.
func withUser(t *testing.T, rawURL string, user *url.Userinfo) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = user
	return u.String()
}

func hostOf(t *testing.T, rawURL, defaultHost string) string {
	t.Helper()
	if rawURL == "" {
		return defaultHost
	}
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" {
		t.Fatalf("cannot read the host of %q", rawURL)
	}
	return u.Host
}

// exchange is one request the test made and what came back.
type exchange struct {
	what   string
	status int
	header http.Header
	body   []byte
}

func TestSecretsNeverLeak(t *testing.T) {
	bin := pulseBinary(t, "")
	pgURL := os.Getenv("PULSE_TEST_DATABASE_URL")
	if pgURL == "" {
		pgURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	}
	redisURL := os.Getenv("PULSE_TEST_REDIS_URL")
	if redisURL == "" {
		redisURL = "redis://127.0.0.1:6379/0"
	}
	chURL := testenv.ClickHouseDSN()

	phases := []struct {
		name string
		// database and redis build the settings from the phase's secrets.
		database func(pw string) string
		redis    func(pw string) string
		dbUp     bool
		// redisRefusesLater runs a private Redis that refuses the
		// credential once pulse serves (redis is then unused).
		redisRefusesLater bool
	}{
		{
			// Postgres trusts local connections, so the password is sent
			// nowhere but the probe connects; Redis (a private one) accepts
			// the ACL user "pulse" at start, then its password changes, so
			// every Redis call fails (the error path). A credential refused
			// at start would stop pulse serve.
			name:              "postgres_up_redis_refuses",
			database:          func(pw string) string { return withUser(t, pgURL, url.UserPassword("postgres", pw)) },
			dbUp:              true,
			redisRefusesLater: true,
		},
		{
			// The default Redis user has no password, and Redis 7 accepts
			// HELLO AUTH with any password for it: Redis works. Postgres
			// refuses a database that does not exist (the error path).
			name: "postgres_refuses_redis_up",
			database: func(pw string) string {
				u := withUser(t, pgURL, url.UserPassword("postgres", pw))
				p, _ := url.Parse(u)
				p.Path = "/no_such_database_for_pulse"
				return p.String()
			},
			redis: func(pw string) string { return withUser(t, redisURL, url.UserPassword("", pw)) },
		},
	}
	for _, ph := range phases {
		t.Run(ph.name, func(t *testing.T) {
			ss := secretSet{
				"admin token":        newSecret("admtok", 24),
				"second admin token": newSecret("admtwo", 24),
				"ingest token":       newSecret("ingtok", 24),
				"burst ingest token": newSecret("brstok", 24),
				"JWT secret":         newSecret("jwtsecret", 48),
				"Postgres password":  newSecret("pgpw", 24),
				"Redis password":     newSecret("redispw", 24),
				"auth API key":       newSecret("apikey", 24),
				"realtime apikey":    newSecret("rtkey", 24),
				"external token":     newSecret("exttok", 24),
				"external password":  newSecret("extpw", 24),
				"NATS token":         newSecret("natstok", 24),
			}
			cfg := secretsConfig{
				databaseURL: ph.database(ss["Postgres password"]),
				dbUp:        ph.dbUp,
				internal: []string{hostOf(t, pgURL, "127.0.0.1:5432"), hostOf(t, redisURL, "127.0.0.1:6379"),
					hostOf(t, chURL, "127.0.0.1:9000")},
			}
			if ph.redisRefusesLater {
				cfg.redisURL, cfg.started = redisRefusingLater(t, ss["Redis password"])
				cfg.internal = append(cfg.internal, hostOf(t, cfg.redisURL, ""))
			} else {
				cfg.redisURL = ph.redis(ss["Redis password"])
			}
			runSecretsPhase(t, bin, ss, cfg)
		})
	}
	t.Run("startup_errors", func(t *testing.T) { secretsStartupErrors(t, bin, chURL, redisURL) })
}

type secretsConfig struct {
	databaseURL, redisURL string
	dbUp                  bool     // the database probe can connect
	internal              []string // host:port of the services, never to be shown
	started               func()   // if set, called once pulse serves
}

// redisRefusingLater starts a private Redis whose ACL user "pulse" has
// password, and returns its URL and a function that changes the password
// and drops the user's connections: from then on Redis refuses Pulse.
func redisRefusingLater(t *testing.T, password string) (string, func()) {
	rs := testenv.StartRedisServer(t)
	rc := rs.Client()
	ctx := context.Background()
	if err := rc.Do(ctx, "ACL", "SETUSER", "pulse", "on", ">"+password, "~*", "+@all").Err(); err != nil {
		t.Fatal(err)
	}
	return "redis://pulse:" + password + "@" + rs.Addr() + "/0", func() {
		if err := rc.Do(ctx, "ACL", "SETUSER", "pulse", "resetpass", ">"+newSecret("rotated", 24)).Err(); err != nil {
			t.Fatal(err)
		}
		if err := rc.Do(ctx, "CLIENT", "KILL", "USER", "pulse").Err(); err != nil {
			t.Fatal(err)
		}
	}
}

func runSecretsPhase(t *testing.T, bin string, ss secretSet, cfg secretsConfig) {
	start := time.Now()
	ns := natsWithToken(t, ss["NATS token"])
	natsAddr := strings.TrimPrefix(ns.ClientURL(), "nats://")
	store := testenv.ClickHouse(t)
	chHost := hostOf(t, testenv.ClickHouseDSN(), "127.0.0.1:9000")
	chDSN := "clickhouse://default:@" + chHost + "/" + store.Database()

	// The auth health endpoint answers 200 only with the right apikey; the
	// payments dependency only with its token. Their hits show the secrets
	// were really in use.
	var authHits, authGood, extHits, extGood atomic.Int64
	authSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		authHits.Add(1)
		if r.Header.Get("apikey") != ss["auth API key"] {
			http.Error(w, "bad apikey", http.StatusUnauthorized)
			return
		}
		authGood.Add(1)
		fmt.Fprint(w, `{"name":"GoTrue","description":"fake"}`)
	}))
	t.Cleanup(authSrv.Close)
	extSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		extHits.Add(1)
		if r.URL.Query().Get("token") != ss["external token"] {
			http.Error(w, "bad token", http.StatusForbidden)
			return
		}
		extGood.Add(1)
		fmt.Fprint(w, "ok")
	}))
	t.Cleanup(extSrv.Close)
	closed := testenv.FreeAddr(t) // nothing listens here
	authAddr := strings.TrimPrefix(authSrv.URL, "http://")
	extAddr := strings.TrimPrefix(extSrv.URL, "http://")

	env := []string{
		"PULSE_LOG_FORMAT=json",
		"PULSE_LOG_LEVEL=debug",
		"PULSE_HTTP_ADDR=" + testenv.FreeAddr(t),
		"PULSE_DATA_DIR=" + t.TempDir(),
		"PULSE_NATS_URL=nats://" + ss["NATS token"] + "@" + natsAddr,
		"PULSE_CLICKHOUSE_DSN=" + chDSN,
		// Principal names of this run alone: rate limits in the shared Redis
		// are kept by name.
		"PULSE_ADMIN_TOKENS=" + newSecret("ops-", 8) + ":" + ss["admin token"] + "," + newSecret("backup-", 8) + ":" + ss["second admin token"],
		"PULSE_INGEST_TOKENS=" + newSecret("fleet-", 8) + ":" + ss["ingest token"] + "," + newSecret("burst-", 8) + ":" + ss["burst ingest token"],
		"PULSE_JWT_SECRET=" + ss["JWT secret"],
		"PULSE_DATABASE_URL=" + cfg.databaseURL,
		"PULSE_REDIS_URL=" + cfg.redisURL,
		"PULSE_AUTH_HEALTH_URL=" + authSrv.URL + "/auth/v1/health",
		"PULSE_AUTH_API_KEY=" + ss["auth API key"],
		"PULSE_REALTIME_URL=ws://" + closed + "/realtime/v1/websocket?apikey=" + ss["realtime apikey"] + "&vsn=1.0.0",
		"PULSE_EXTERNAL=payments=" + extSrv.URL + "/health?token=" + ss["external token"] +
			",email=http://mailer:" + ss["external password"] + "@" + closed + "/status",
		"PULSE_ADMIN_RATE_LIMIT=1000/min",
		"PULSE_INGEST_RATE_LIMIT=60/min",
		"PULSE_BATCH_DELAY=100ms",
		"PULSE_PROBE_INTERVAL=5s",
	}
	// Every secret is in a setting (and the detector finds it there).
	for name, v := range ss {
		if l := ss.leaks(strings.Join(env, "\n")); !strings.Contains(strings.Join(env, "\n"), v) || !slices.Contains(l, name) {
			t.Fatalf("the %s is in no setting", name)
		}
	}
	p := startPulse(t, bin, env, "serve")
	if cfg.started != nil {
		cfg.started()
	}
	base := "http://" + p.httpAddr()
	t.Logf("serving %s after start", time.Since(start).Round(time.Millisecond))

	// The first probe runs are stored (every component, api included) before
	// health is asked, so that its first, uncached answer holds them.
	testenv.Eventually(t, 60*time.Second, "a stored result of every probe", func() bool {
		return testenv.Count(t, store, "SELECT uniqExact(component) FROM "+store.T("health_checks")) >= 6
	})

	client := &http.Client{Timeout: 30 * time.Second}
	var got []exchange
	send := func(what, method, path, authz, contentType string, header map[string]string, body io.Reader) exchange {
		t.Helper()
		req, err := http.NewRequest(method, base+path, body)
		if err != nil {
			t.Fatal(err)
		}
		if authz != "" {
			req.Header.Set("Authorization", authz)
		}
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		for k, v := range header {
			req.Header.Set(k, v)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Errorf("%s: %v", what, err)
			return exchange{what: what}
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		x := exchange{what: what, status: resp.StatusCode, header: resp.Header, body: b}
		got = append(got, x)
		return x
	}
	expect := func(x exchange, want ...int) {
		t.Helper()
		for _, w := range want {
			if x.status == w {
				return
			}
		}
		t.Errorf("%s: %d %.300s; want %v", x.what, x.status, x.body, want)
	}
	bearer := func(tok string) string { return "Bearer " + tok }
	admin, admin2, ingest := bearer(ss["admin token"]), bearer(ss["second admin token"]), bearer(ss["ingest token"])

	// Admin reads, plain and with every parameter.
	adminGets := []string{
		"/api/admin/system/health", "/api/admin/system/health?detailed=true", "/api/admin/system/health?detailed=false",
		"/api/admin/system/performance", "/api/admin/system/resources", "/api/admin/system/resources?resource_type=connections&alert_threshold=0.01",
		"/api/admin/system/stats", "/metrics", "/api/admin/openapi.json",
	}
	for _, c := range []string{"database", "auth", "realtime", "api", "external", "pipeline"} {
		adminGets = append(adminGets, "/api/admin/system/health?component="+c+"&detailed=true")
	}
	for _, tf := range []string{"1h", "24h", "7d", "30d"} {
		adminGets = append(adminGets, "/api/admin/system/performance?timeframe="+tf,
			"/api/admin/system/performance?timeframe="+tf+"&metric=resource_usage",
			"/api/admin/system/performance?timeframe="+tf+"&metric=response_time&service=web&endpoint=/api/clients/1")
	}
	for _, path := range adminGets {
		expect(send("admin GET "+path, http.MethodGet, path, admin, "", nil, nil), http.StatusOK)
	}
	jwtSecret := []byte(ss["JWT secret"])
	now := time.Now()
	sign := func(secret []byte, claims jwt.MapClaims) string {
		s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(secret)
		if err != nil {
			t.Fatal(err)
		}
		return "Bearer " + s
	}
	adminJWT := sign(jwtSecret, jwt.MapClaims{"sub": "u-1", "role": "admin", "exp": now.Add(time.Hour).Unix()})
	expect(send("admin JWT", http.MethodGet, "/api/admin/system/health?detailed=true", adminJWT, "", nil, nil), http.StatusOK)
	expect(send("second admin token", http.MethodGet, "/api/admin/system/stats", admin2, "", nil, nil), http.StatusOK)

	// The health answer shows the probes used their settings: the fake auth
	// endpoint took the apikey, and the database probe connected or not.
	componentHealth := func(name string) (status string, configured bool) {
		t.Helper()
		x := send("health of "+name, http.MethodGet, "/api/admin/system/health?component="+name, admin, "", nil, nil)
		var h struct {
			Components []struct {
				Status     string `json:"status"`
				Configured bool   `json:"configured"`
			} `json:"components"`
		}
		if err := json.Unmarshal(x.body, &h); err != nil || len(h.Components) != 1 {
			t.Errorf("health of %s: %d %s", name, x.status, x.body)
			return "", false
		}
		return h.Components[0].Status, h.Components[0].Configured
	}
	if st, ok := componentHealth("auth"); !ok || st == "critical" || st == "unknown" {
		t.Errorf("auth: %s (configured %v); want answering: the fake takes the apikey", st, ok)
	}
	if st, ok := componentHealth("database"); !ok || (st == "critical") == cfg.dbUp {
		t.Errorf("database: %s (configured %v); want critical exactly when Postgres refuses (refuses: %v)", st, ok, !cfg.dbUp)
	}
	if authGood.Load() == 0 || extGood.Load() == 0 {
		t.Errorf("the auth check sent the right apikey %d of %d times, the payments check its token %d of %d times; want both used",
			authGood.Load(), authHits.Load(), extGood.Load(), extHits.Load())
	}

	// Public routes, with and without credentials.
	for _, path := range []string{"/healthz", "/readyz"} {
		expect(send("public "+path, http.MethodGet, path, "", "", nil, nil), http.StatusOK, http.StatusServiceUnavailable)
		expect(send("public "+path+" with a secret as token", http.MethodGet, path, bearer(ss["JWT secret"]), "", nil, nil),
			http.StatusOK, http.StatusServiceUnavailable)
	}

	// Wrong credentials on every admin route: no token, each secret of
	// another setting as the token, expired and foreign JWTs, a secret as
	// Basic credentials; the ingest tokens and a user's JWT lack the scope.
	adminRoutes := []string{"/api/admin/system/health", "/api/admin/system/performance", "/api/admin/system/resources",
		"/api/admin/system/stats", "/metrics", "/api/admin/openapi.json"}
	names := make([]string, 0, len(ss))
	for name := range ss {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, path := range adminRoutes {
		expect(send("no token on "+path, http.MethodGet, path, "", "", nil, nil), http.StatusUnauthorized)
		for _, name := range names {
			switch name {
			case "admin token", "second admin token":
				continue
			case "ingest token", "burst ingest token":
				expect(send(name+" on "+path, http.MethodGet, path, bearer(ss[name]), "", nil, nil), http.StatusForbidden)
			default:
				expect(send(name+" as a token on "+path, http.MethodGet, path, bearer(ss[name]), "", nil, nil), http.StatusUnauthorized)
			}
		}
		expect(send("admin token as Basic on "+path, http.MethodGet, path, "Basic "+ss["admin token"], "", nil, nil), http.StatusUnauthorized)
		expect(send("admin token with a typo on "+path, http.MethodGet, path, admin+"0", "", nil, nil), http.StatusUnauthorized)
		expect(send("expired JWT on "+path, http.MethodGet, path,
			sign(jwtSecret, jwt.MapClaims{"sub": "u-1", "role": "admin", "exp": now.Add(-time.Hour).Unix()}), "", nil, nil), http.StatusUnauthorized)
		expect(send("JWT signed with the Postgres password on "+path, http.MethodGet, path,
			sign([]byte(ss["Postgres password"]+ss["Redis password"]), jwt.MapClaims{"sub": "u-1", "role": "admin", "exp": now.Add(time.Hour).Unix()}),
			"", nil, nil), http.StatusUnauthorized)
		expect(send("user JWT on "+path, http.MethodGet, path,
			sign(jwtSecret, jwt.MapClaims{"sub": "u-2", "role": "authenticated", "exp": now.Add(time.Hour).Unix()}), "", nil, nil), http.StatusForbidden)
	}

	// Bad query parameters.
	for _, path := range []string{
		"/api/admin/system/health?component=secrets", "/api/admin/system/health?detailed=yes", "/api/admin/system/health?dsn=x&password=y",
		"/api/admin/system/performance?timeframe=1y", "/api/admin/system/performance?metric=resource_usage&service=web",
		"/api/admin/system/performance?service=Bad%20Service&endpoint=%00", "/api/admin/system/performance?timeframe=1h&timeframe=24h",
		"/api/admin/system/resources?alert_threshold=2", "/api/admin/system/resources?alert_threshold=0x1p-2", "/api/admin/system/resources?resource_type=gpu&x=1",
		"/api/admin/system/performance?%zz",
	} {
		expect(send("bad query "+path, http.MethodGet, path, admin, "", nil, nil), http.StatusBadRequest)
	}
	expect(send("unknown route", http.MethodGet, "/api/admin/system/secrets", admin, "", nil, nil), http.StatusNotFound)
	expect(send("wrong method", http.MethodDelete, "/api/admin/system/metrics", admin, "", nil, nil), http.StatusMethodNotAllowed, http.StatusNotFound)

	// Ingest: valid, malformed, too large, wrong types.
	const event = `{"endpoint":"/api/clients/1","response_time_ms":42,"status_code":200,"service":"web"}`
	const sample = `{"host":"web-1","resource":"cpu","used":1.5,"capacity":2}`
	metrics, resources := "/api/admin/system/metrics", "/api/admin/system/resources"
	expect(send("ingest event", http.MethodPost, metrics, ingest, "application/json", nil, strings.NewReader(event)), http.StatusAccepted)
	expect(send("ingest NDJSON by an admin", http.MethodPost, metrics, admin, "application/x-ndjson", map[string]string{"Idempotency-Key": "k-1"},
		strings.NewReader(event+"\n"+event+"\n")), http.StatusAccepted)
	expect(send("ingest sample", http.MethodPost, resources, ingest, "application/json", nil, strings.NewReader(sample)), http.StatusAccepted)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write([]byte("[" + event + "," + event + "]"))
	_ = zw.Close()
	expect(send("ingest gzip", http.MethodPost, metrics, ingest, "application/json", map[string]string{"Content-Encoding": "gzip"},
		bytes.NewReader(gz.Bytes())), http.StatusAccepted)

	bad := []struct {
		what, path, ct string
		header         map[string]string
		body           string
		want           int
	}{
		{"broken JSON", metrics, "application/json", nil, `{"endpoint":`, http.StatusBadRequest},
		{"wrong types", metrics, "application/json", nil, `{"endpoint":1,"response_time_ms":"fast","status_code":2.5}`, http.StatusBadRequest},
		{"out of range", metrics, "application/json", nil, `[{"endpoint":"/a","response_time_ms":-1,"status_code":700,"user_id":"nope","timestamp":"yesterday","service":"Bad Service","method":"FETCH"}]`, http.StatusBadRequest},
		// Ignored and named in the 202 (issue #12): its value must not come back.
		{"unknown field holding a secret", metrics, "application/json", nil,
			`{"endpoint":"/a","response_time_ms":1,"status_code":200,"dsn":"` + cfg.databaseURL + `"}`, http.StatusAccepted},
		{"unknown field named by a secret", metrics, "application/json", nil,
			`{"endpoint":"/a","response_time_ms":1,"status_code":200,"` + cfg.databaseURL + `":1}`, http.StatusAccepted},
		{"broken NDJSON", metrics, "application/x-ndjson", nil, event + "\n{oops\n", http.StatusBadRequest},
		{"empty body", metrics, "application/json", nil, "", http.StatusBadRequest},
		{"not gzip", metrics, "application/json", map[string]string{"Content-Encoding": "gzip"}, event, http.StatusBadRequest},
		{"brotli", metrics, "application/json", map[string]string{"Content-Encoding": "br"}, event, http.StatusUnsupportedMediaType},
		{"text", metrics, "text/plain", nil, event, http.StatusUnsupportedMediaType},
		{"no content type", metrics, "", nil, event, http.StatusUnsupportedMediaType},
		{"long idempotency key", metrics, "application/json", map[string]string{"Idempotency-Key": strings.Repeat("k", 129)}, event, http.StatusBadRequest},
		{"bad sample", resources, "application/json", nil, `{"host":"web 1","resource":"gpu","used":-1}`, http.StatusBadRequest},
		{"sample as NDJSON", resources, "application/x-ndjson", nil, sample, http.StatusUnsupportedMediaType},
	}
	for _, b := range bad {
		expect(send("ingest "+b.what, http.MethodPost, b.path, ingest, b.ct, b.header, strings.NewReader(b.body)), b.want)
	}
	// Too large: on the wire (with and without a Content-Length), after
	// gunzip, and by count.
	huge := bytes.Repeat([]byte(" "), 8<<20+1)
	expect(send("ingest huge body", http.MethodPost, metrics, ingest, "application/json", nil, bytes.NewReader(huge)), http.StatusRequestEntityTooLarge)
	expect(send("ingest huge chunked body", http.MethodPost, metrics, ingest, "application/json", nil, io.MultiReader(bytes.NewReader(huge))),
		http.StatusRequestEntityTooLarge)
	gz.Reset()
	zw = gzip.NewWriter(&gz)
	_, _ = zw.Write(bytes.Repeat([]byte(" "), 40<<20))
	_ = zw.Close()
	expect(send("ingest gzip bomb", http.MethodPost, metrics, ingest, "application/json", map[string]string{"Content-Encoding": "gzip"},
		bytes.NewReader(gz.Bytes())), http.StatusRequestEntityTooLarge)
	expect(send("ingest too many events", http.MethodPost, metrics, admin2, "application/x-ndjson", nil,
		strings.NewReader(strings.Repeat(event+"\n", 10001))), http.StatusRequestEntityTooLarge)
	var many bytes.Buffer
	many.WriteString("[")
	for i := 0; i < 1001; i++ {
		if i > 0 {
			many.WriteString(",")
		}
		many.WriteString(sample)
	}
	many.WriteString("]")
	expect(send("ingest too many samples", http.MethodPost, resources, admin2, "application/json", nil, &many), http.StatusRequestEntityTooLarge)

	// Over the ingest rate limit (60/min): 429 with Retry-After.
	limited := false
	for i := 0; i < 70 && !limited; i++ {
		x := send("ingest burst", http.MethodPost, metrics, bearer(ss["burst ingest token"]), "application/json", nil, strings.NewReader(`{}`))
		limited = x.status == http.StatusTooManyRequests
		if limited && x.header.Get("Retry-After") == "" {
			t.Error("429 without Retry-After")
		}
	}
	if !limited {
		t.Error("70 ingest calls with a limit of 60/min: never 429")
	}

	expect(send("stats at the end", http.MethodGet, "/api/admin/system/stats", admin, "", nil, nil), http.StatusOK)

	// NATS (whose URL holds its token) goes away: the process reconnects
	// in the background, readiness fails, ingest and stats answer 503.
	ns.Shutdown()
	ns.WaitForShutdown()
	testenv.Eventually(t, 10*time.Second, "/readyz failing without NATS", func() bool {
		return send("readyz during the NATS outage", http.MethodGet, "/readyz", "", "", nil, nil).status == http.StatusServiceUnavailable
	})
	for _, x := range []exchange{
		send("ingest during the NATS outage", http.MethodPost, metrics, ingest, "application/json", nil, strings.NewReader(event)),
		send("ingest sample during the NATS outage", http.MethodPost, resources, ingest, "application/json", nil, strings.NewReader(sample)),
		send("stats during the NATS outage", http.MethodGet, "/api/admin/system/stats", admin, "", nil, nil),
	} {
		expect(x, http.StatusServiceUnavailable)
		if x.status == http.StatusServiceUnavailable && x.header.Get("Retry-After") == "" {
			t.Errorf("%s: 503 without Retry-After", x.what)
		}
	}
	expect(send("health during the NATS outage", http.MethodGet, "/api/admin/system/health?detailed=true&component=pipeline", admin, "", nil, nil), http.StatusOK)
	expect(send("metrics during the NATS outage", http.MethodGet, "/metrics", admin, "", nil, nil), http.StatusOK)

	// Shut down: the shutdown's lines are checked too.
	if err := p.terminate(30 * time.Second); err != nil {
		t.Errorf("exit after SIGTERM: %v", err)
	}

	// Nothing holds a secret; no response names an internal address or a DSN.
	addrs := append([]string{natsAddr, authAddr, extAddr, closed}, cfg.internal...)
	internal := append([]string{"postgres://", "postgresql://", "redis://", "clickhouse://", "nats://", "ws://", "mailer:"}, addrs...)
	for _, x := range got {
		var hdr strings.Builder
		for k, vs := range x.header {
			fmt.Fprintf(&hdr, "%s: %s\n", k, strings.Join(vs, ", "))
		}
		for part, s := range map[string]string{"body": string(x.body), "headers": hdr.String()} {
			if l := ss.leaks(s); len(l) > 0 {
				t.Errorf("%s: the response %s holds %v:\n%.2000s", x.what, part, l, s)
			}
			for _, a := range internal {
				if strings.Contains(s, a) {
					t.Errorf("%s: the response %s names the internal %q:\n%.2000s", x.what, part, a, s)
				}
			}
		}
	}
	stderr, stdout := p.stderr.String(), p.stdout.String()
	for _, line := range strings.Split(stderr, "\n") {
		if l := ss.leaks(line); len(l) > 0 {
			t.Errorf("a log line holds %v:\n%s", l, line)
		}
	}
	if l := ss.leaks(stdout); len(l) > 0 {
		t.Errorf("stdout holds %v:\n%s", l, stdout)
	}
	var addrLines []string
	for _, line := range strings.Split(stderr, "\n") {
		for _, a := range addrs {
			if strings.Contains(line, a) {
				addrLines = append(addrLines, line)
				break
			}
		}
	}
	t.Logf("%d exchanges, %d log bytes (%d lines), %d stdout bytes checked in %s; log lines naming an address of a service: %d",
		len(got), len(stderr), strings.Count(stderr, "\n"), len(stdout), time.Since(start).Round(time.Millisecond), len(addrLines))
	for _, l := range addrLines {
		t.Logf("  %s", l)
	}
}

// secretsStartupErrors runs pulse with configurations it must refuse,
// each holding a secret: it must exit non-zero and print no secret.
func secretsStartupErrors(t *testing.T, bin, chURL, redisURL string) {
	ss := secretSet{
		"ClickHouse password": newSecret("chwrongpw", 24),
		"NATS token":          newSecret("natstok", 24),
		"wrong NATS token":    newSecret("natsbad", 24),
		"Postgres password":   newSecret("pgpw", 24),
		"Redis password":      newSecret("redispw", 24),
		"short token":         newSecret("short", 10), // 15 characters: too short
		"short JWT secret":    newSecret("jwtshort", 16),
		"external password":   newSecret("extpw", 24),
		"realtime apikey":     newSecret("rtkey", 24),
		"admin token":         newSecret("admtok", 24),
		"ingest token":        newSecret("ingtok", 24),
	}
	ns := natsWithToken(t, ss["NATS token"])
	natsURL := "nats://" + ss["NATS token"] + "@" + strings.TrimPrefix(ns.ClientURL(), "nats://")
	db := testenv.DatabaseName(t)
	chHost := hostOf(t, chURL, "127.0.0.1:9000")
	wrongCH := "clickhouse://default:" + ss["ClickHouse password"] + "@" + chHost + "/" + db
	base := []string{
		"PULSE_LOG_FORMAT=json", "PULSE_LOG_LEVEL=debug", "PULSE_HTTP_ADDR=" + testenv.FreeAddr(t), "PULSE_DATA_DIR=" + t.TempDir(),
		"PULSE_NATS_URL=" + natsURL, "PULSE_CLICKHOUSE_DSN=clickhouse://default:@" + chHost + "/" + db,
		"PULSE_ADMIN_TOKENS=ops:" + ss["admin token"], "PULSE_INGEST_TOKENS=fleet:" + ss["ingest token"],
	}
	cases := []struct {
		name string
		env  []string
		args []string
		code int // wanted exit code
	}{
		{"migrate with a wrong ClickHouse password", nil, []string{"migrate", "--clickhouse-dsn", wrongCH}, 2},
		{"serve with a wrong ClickHouse password", []string{"PULSE_CLICKHOUSE_DSN=" + wrongCH}, []string{"serve"}, 2},
		{"serve with a ClickHouse DSN that is not a URL", []string{"PULSE_CLICKHOUSE_DSN=clickhouse://default:" + ss["ClickHouse password"] + "@" + chHost + "/%zz"}, []string{"serve"}, 1},
		{"serve with a wrong NATS token", []string{"PULSE_NATS_URL=nats://" + ss["wrong NATS token"] + "@" + strings.TrimPrefix(ns.ClientURL(), "nats://")}, []string{"serve"}, 2},
		{"serve with an unparsable database URL", []string{"PULSE_DATABASE_URL=postgres://postgres:" + ss["Postgres password"] + "@127.0.0.1:notaport/x"}, []string{"serve"}, 2},
		{"serve with an unparsable Redis URL", []string{"PULSE_REDIS_URL=redis://:" + ss["Redis password"] + "@" + hostOf(t, redisURL, "127.0.0.1:6379") + "/notadb"}, []string{"serve"}, 2},
		{"serve with a short token", []string{"PULSE_ADMIN_TOKENS=ops:" + ss["short token"]}, []string{"serve"}, 2},
		{"serve with a short bare token", []string{"PULSE_INGEST_TOKENS=" + ss["short token"]}, []string{"serve"}, 2},
		{"serve with a short JWT secret", []string{"PULSE_JWT_SECRET=" + ss["short JWT secret"]}, []string{"serve"}, 2},
		{"serve with an external URL of the wrong scheme", []string{"PULSE_EXTERNAL=email=ftp://mailer:" + ss["external password"] + "@mail.internal/x"}, []string{"serve"}, 2},
		{"serve with an external entry without a name", []string{"PULSE_EXTERNAL=https://mailer:" + ss["external password"] + "@mail.internal/x"}, []string{"serve"}, 2},
		{"serve with an external entry whose URL holds the only '='", []string{"PULSE_EXTERNAL=https://status.internal/health?token=" + ss["external password"]}, []string{"serve"}, 2},
		{"serve with a realtime URL of the wrong scheme", []string{"PULSE_REALTIME_URL=https://rt.internal/ws?apikey=" + ss["realtime apikey"]}, []string{"serve"}, 2},
	}
	for _, c := range cases {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		cmd := exec.CommandContext(ctx, bin, c.args...)
		cmd.Env = append(append(os.Environ(), base...), c.env...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		cancel()
		var ee *exec.ExitError
		code := 0
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if code != c.code {
			t.Errorf("%s: exit %d; want %d\n%s", c.name, code, c.code, out.String())
		}
		if l := ss.leaks(out.String()); len(l) > 0 {
			t.Errorf("%s: the output holds %v:\n%s", c.name, l, out.String())
		}
		if testing.Verbose() {
			t.Logf("%s: exit %d: %s", c.name, code, lastLine(out.String()))
		}
	}
	// The database the failed runs may have created.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if st, err := chstore.Open(ctx, chURL+"/default", zerolog.Nop()); err == nil {
		_ = st.Exec(ctx, "DROP DATABASE IF EXISTS `"+db+"`")
		st.Close()
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
