package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/labstack/echo/v4"
	"github.com/rs/zerolog"

	"github.com/wedsync/pulse/alerts/rules"
	"github.com/wedsync/pulse/internal/auth"
	"github.com/wedsync/pulse/internal/event"
	"github.com/wedsync/pulse/internal/httpapi"
	"github.com/wedsync/pulse/internal/metrics"
	"github.com/wedsync/pulse/internal/stream"
	"github.com/wedsync/pulse/internal/testenv"
)

// The contract of the admin API: the router a `pulse serve` process of
// every role builds, the OpenAPI document it serves, and the guard on each
// route.

// Routes by scope. publicRoutes answer without credentials; ingestRoutes
// take ingest (or admin) credentials; every other route is admin-only. A
// new public or ingest route must be added here on purpose.
var (
	publicRoutes = map[string]bool{"GET /healthz": true, "GET /readyz": true,
		"GET /admin": true, "GET /admin/dashboard.js": true, "GET /admin/dashboard.css": true}
	ingestRoutes = map[string]bool{"POST /api/admin/system/metrics": true, "POST /api/admin/system/resources": true}
)

// sampleRequests are minimal valid requests for the routes that need more
// than a bare GET: a body, or a target whose path parameters are valid
// (without one, each path parameter is "x"). The auth matrix fails for a
// non-GET route that has none.
var sampleRequests = map[string]struct{ target, contentType, body string }{
	"POST /api/admin/system/metrics": {"", "application/x-ndjson",
		`{"endpoint":"/api/clients/1","response_time_ms":42,"status_code":200,"service":"web"}` + "\n" +
			`{"endpoint":"/api/forms","response_time_ms":130.5,"status_code":201,"service":"web","method":"POST"}` + "\n"},
	"POST /api/admin/system/resources": {"", "application/json", `{"host":"web-1","resource":"cpu","used":1.5,"capacity":2}`},
	// deployment/security needs no app database (database/* would only
	// report it as not configured).
	"POST /api/admin/architecture/validate":    {"", "application/json", `{"component":"deployment","validation_type":"security"}`},
	"DELETE /api/admin/users/:user_id/metrics": {"/api/admin/users/6f1c2b3a-4d5e-4f60-8a7b-9c0d1e2f3a4b/metrics", "", ""},
	"POST /api/admin/silences": {"", "application/json", `{"matchers":[{"name":"rule","value":"server_error"}],"endsAt":"` +
		time.Now().Add(24*time.Hour).UTC().Format(time.RFC3339) + `","comment":"route test"}`},
	"POST /api/admin/alerts/:id/ack": {"", "", ""},
	"DELETE /api/admin/silences/:id": {"", "", ""},
	"POST /api/admin/architecture/accepted": {"", "application/json", `{"cache_key":"` + strings.Repeat("5a", 32) +
		`","reason":"route test","until":"` + time.Now().Add(24*time.Hour).UTC().Format(time.RFC3339) + `"}`},
	"DELETE /api/admin/architecture/accepted/:cache_key": {"/api/admin/architecture/accepted/" + strings.Repeat("5a", 32), "", ""},
}

// notFoundRoutes are the admin routes whose sample names nothing that
// exists: past the guard, their handler answers 404.
var notFoundRoutes = map[string]bool{"POST /api/admin/alerts/:id/ack": true, "DELETE /api/admin/silences/:id": true}

// acceptedRoutes are the admin routes whose success may be 202 as well as
// 200: an erasure ClickHouse has not finished within its wait.
var acceptedRoutes = map[string]bool{"DELETE /api/admin/users/:user_id/metrics": true}

// routerEnv is the real router of a process running every role, on real
// NATS and a migrated database on the ClickHouse server.
type routerEnv struct {
	e          *echo.Echo
	admin      string // static admin token
	ingest     string // static ingest token
	jwtSecret  []byte
	adminJWT   string
	userJWT    string // valid, signed, not admin: no scope
	expiredJWT string // admin, expired an hour ago
	foreignJWT string // admin, signed with another secret
	routes     []string
}

const (
	testAdminToken  = "admin-token-for-the-route-tests"
	testIngestToken = "ingest-token-for-the-route-tests"
)

func newRouterEnv(t *testing.T) *routerEnv {
	t.Helper()
	ns := testenv.NATS(t)
	nc, js := testenv.Connect(t, ns.ClientURL())
	store := testenv.ClickHouse(t)

	// The flags as serve reads and completes them.
	var f serveFlags
	fs, ret := serveFlagSet(&f, io.Discard)
	if err := fs.Parse([]string{"--roles", "all"}); err != nil {
		t.Fatal(err)
	}
	retention, err := ret()
	if err != nil {
		t.Fatal(err)
	}
	roles, err := parseRoles(f.roles)
	if err != nil {
		t.Fatal(err)
	}
	f.stream = testenv.Streams(t, js, stream.Config{})
	f.ingest.Retention, f.agg.Retention = retention.Raw, retention.Raw

	tokens, err := parseTokens("ops:"+testAdminToken, "fleet:"+testIngestToken)
	if err != nil {
		t.Fatal(err)
	}
	secret := []byte("a-jwt-secret-of-at-least-32-bytes-for-route-tests")
	jwtAuth, err := auth.NewJWT(auth.JWTConfig{Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	p := &process{
		flags: f, roles: roles, retention: retention, tokens: tokens,
		authn: auth.Chain(jwtAuth, tokens.StaticTokens), rules: rules.Default(), log: zerolog.Nop(), stdout: io.Discard,
		nc: nc, js: js, store: store, metrics: metrics.New("test"),
	}
	e, err := p.router(nil)
	if err != nil {
		t.Fatalf("router: %v", err)
	}
	env := &routerEnv{e: e, admin: testAdminToken, ingest: testIngestToken, jwtSecret: secret}
	now := time.Now()
	env.adminJWT = signJWT(t, secret, jwt.MapClaims{"sub": "admin-1", "role": "authenticated",
		"app_metadata": map[string]any{"role": "admin"}, "exp": now.Add(time.Hour).Unix()})
	env.userJWT = signJWT(t, secret, jwt.MapClaims{"sub": "user-1", "role": "authenticated", "exp": now.Add(time.Hour).Unix()})
	env.expiredJWT = signJWT(t, secret, jwt.MapClaims{"sub": "admin-1", "role": "admin",
		"iat": now.Add(-2 * time.Hour).Unix(), "exp": now.Add(-time.Hour).Unix()})
	env.foreignJWT = signJWT(t, []byte("another-secret-of-at-least-32-bytes-long!"), jwt.MapClaims{"sub": "admin-1", "role": "admin",
		"exp": now.Add(time.Hour).Unix()})
	env.routes = routerRoutes(t, e)
	return env
}

func signJWT(t *testing.T, secret []byte, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(secret)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// routerRoutes lists the routes of e as "METHOD /path", sorted, leaving out
// echo's special not-found routes. Host-specific routers would escape the
// walk, so there must be none.
func routerRoutes(t *testing.T, e *echo.Echo) []string {
	t.Helper()
	if n := len(e.Routers()); n != 0 {
		t.Fatalf("the echo server has %d host-specific routers; the route walk covers only the default one", n)
	}
	var out []string
	for _, r := range e.Routes() {
		if r.Method == echo.RouteNotFound {
			continue
		}
		out = append(out, r.Method+" "+r.Path)
	}
	sort.Strings(out)
	if len(out) == 0 {
		t.Fatal("the router has no routes")
	}
	return out
}

// do sends one request through the router. token "" sends no Authorization
// header.
func (env *routerEnv) do(method, target, authz, contentType, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	rec := httptest.NewRecorder()
	env.e.ServeHTTP(rec, req)
	return rec
}

// openAPIDoc is the embedded document, decoded generically.
func openAPIDoc(t *testing.T) map[string]any {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(httpapi.OpenAPI(), &doc); err != nil {
		t.Fatalf("openapi.json is not valid JSON: %v", err)
	}
	return doc
}

var operationMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

// docOperations returns the document's operations as "METHOD /path" (echo's
// path syntax: {name} becomes :name), each with its operation object.
func docOperations(t *testing.T, doc map[string]any) map[string]map[string]any {
	t.Helper()
	paths, ok := doc["paths"].(map[string]any)
	if !ok {
		t.Fatal("openapi.json: paths is not an object")
	}
	out := map[string]map[string]any{}
	param := regexp.MustCompile(`\{([^}]+)\}`)
	for path, item := range paths {
		pi, ok := item.(map[string]any)
		if !ok {
			t.Fatalf("openapi.json: path item %s is not an object", path)
		}
		for _, m := range operationMethods {
			if op, ok := pi[m].(map[string]any); ok {
				out[strings.ToUpper(m)+" "+param.ReplaceAllString(path, ":$1")] = op
			}
		}
	}
	return out
}

// TestOpenAPIDocument checks the document's structure: OpenAPI 3.0.x, every
// path item has operations, every operation has responses and an explicit
// security requirement agreeing with its x-pulse-scope, and every $ref
// resolves.
func TestOpenAPIDocument(t *testing.T) {
	doc := openAPIDoc(t)
	if v, _ := doc["openapi"].(string); !strings.HasPrefix(v, "3.0.") {
		t.Errorf("openapi = %q; want 3.0.x", v)
	}
	info, _ := doc["info"].(map[string]any)
	if info["title"] == nil || info["version"] == nil {
		t.Errorf("info lacks title or version: %v", info)
	}
	if lic, _ := info["license"].(map[string]any); lic["name"] == nil {
		t.Errorf("info lacks a license name: %v", info)
	}
	for path, item := range doc["paths"].(map[string]any) {
		pi := item.(map[string]any)
		n := 0
		for _, m := range operationMethods {
			op, ok := pi[m].(map[string]any)
			if !ok {
				continue
			}
			n++
			name := strings.ToUpper(m) + " " + path
			r, ok := op["responses"].(map[string]any)
			if !ok || len(r) == 0 {
				t.Errorf("%s: no responses", name)
			}
			if !slices.ContainsFunc(slices.Collect(maps.Keys(r)), func(code string) bool { return strings.HasPrefix(code, "4") }) {
				t.Errorf("%s: no 4xx response (validators warn)", name)
			}
			sec, ok := op["security"].([]any)
			if !ok {
				t.Errorf("%s: no explicit security requirement", name)
			}
			scope, _ := op["x-pulse-scope"].(string)
			switch scope {
			case "public":
				if len(sec) != 0 {
					t.Errorf("%s: public, but security %v", name, sec)
				}
			case "admin", "ingest":
				if len(sec) != 1 || !strings.Contains(fmt.Sprint(sec[0]), "bearer") {
					t.Errorf("%s: scope %s, but security %v; want bearer", name, scope, sec)
				}
				if r, _ := op["responses"].(map[string]any); r["401"] == nil || r["403"] == nil || r["429"] == nil {
					t.Errorf("%s: guarded, but 401, 403 or 429 is not documented", name)
				}
			default:
				t.Errorf("%s: x-pulse-scope %q; want public, admin or ingest", name, scope)
			}
		}
		if n == 0 {
			t.Errorf("path %s has no operations", path)
		}
	}
	schemes, _ := doc["components"].(map[string]any)["securitySchemes"].(map[string]any)
	if b, _ := schemes["bearer"].(map[string]any); b["type"] != "http" || b["scheme"] != "bearer" {
		t.Errorf("securitySchemes.bearer = %v; want http bearer", schemes["bearer"])
	}

	refs := 0
	var walk func(where string, v any)
	walk = func(where string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if k == "$ref" {
					refs++
					s, _ := x.(string)
					if _, err := resolvePointer(doc, s); err != nil {
						t.Errorf("%s: $ref %q: %v", where, s, err)
					}
					continue
				}
				walk(where+"/"+k, x)
			}
		case []any:
			for i, x := range v {
				walk(where+"/"+strconv.Itoa(i), x)
			}
		}
	}
	walk("#", doc)
	if refs == 0 {
		t.Error("no $ref at all: the components are unused")
	}

	// The event limits of the contract, as internal/event defines them.
	schemas := doc["components"].(map[string]any)["schemas"].(map[string]any)
	props := schemas["RequestEvent"].(map[string]any)["properties"].(map[string]any)
	f := func(field, key string, want any) {
		t.Helper()
		p, _ := props[field].(map[string]any)
		got, _ := json.Marshal(p[key])
		if w, _ := json.Marshal(want); string(got) != string(w) {
			t.Errorf("RequestEvent.%s.%s = %s; want %v", field, key, got, want)
		}
	}
	f("endpoint", "maxLength", event.MaxEndpointLen)
	f("response_time_ms", "minimum", 0)
	f("response_time_ms", "maximum", event.MaxResponseTimeMS)
	f("status_code", "type", "integer")
	f("status_code", "minimum", 100)
	f("status_code", "maximum", 599)
	f("user_id", "format", "uuid")
	f("error_message", "maxLength", event.MaxErrorMessageLen)
	f("timestamp", "format", "date-time")
	f("service", "maxLength", event.MaxServiceLen)
	f("request_id", "maxLength", event.MaxRequestIDLen)
}

// resolvePointer resolves a local JSON pointer reference ("#/a/b").
func resolvePointer(doc any, ref string) (any, error) {
	rest, ok := strings.CutPrefix(ref, "#/")
	if !ok {
		return nil, fmt.Errorf("not a local reference")
	}
	v := doc
	for _, tok := range strings.Split(rest, "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		m, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%q is not inside an object", tok)
		}
		if v, ok = m[tok]; !ok {
			return nil, fmt.Errorf("%q not found", tok)
		}
	}
	return v, nil
}

// TestOpenAPIMatchesRouter holds the document to the router: the same
// routes both ways, the same scopes as the guard enforces (see
// TestAuthMatrix), and the document is what /api/admin/openapi.json serves.
func TestOpenAPIMatchesRouter(t *testing.T) {
	env := newRouterEnv(t)
	ops := docOperations(t, openAPIDoc(t))

	var missing, extra []string
	for _, r := range env.routes {
		if ops[r] == nil {
			missing = append(missing, r)
		}
	}
	for r := range ops {
		if !slices.Contains(env.routes, r) {
			extra = append(extra, r)
		}
	}
	sort.Strings(extra)
	if len(missing) > 0 || len(extra) > 0 {
		t.Errorf("the router and internal/httpapi/openapi.json differ:\n  routes the document lacks: %v\n  documented routes the router lacks: %v",
			missing, extra)
	}
	for _, r := range env.routes {
		op := ops[r]
		if op == nil {
			continue
		}
		want := "admin"
		switch {
		case publicRoutes[r]:
			want = "public"
		case ingestRoutes[r]:
			want = "ingest"
		}
		if got := op["x-pulse-scope"]; got != want {
			t.Errorf("%s: documented scope %v; the router guards it as %s", r, got, want)
		}
	}

	rec := env.do(http.MethodGet, "/api/admin/openapi.json", "Bearer "+env.admin, "", "")
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /api/admin/openapi.json = %d %s; want 200", rec.Code, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type %q; want application/json", ct)
	}
	if !slices.Equal(rec.Body.Bytes(), httpapi.OpenAPI()) {
		t.Error("GET /api/admin/openapi.json does not serve the embedded document")
	}
	onDisk, err := os.ReadFile(filepath.Join("..", "..", "internal", "httpapi", "openapi.json"))
	if err != nil || !slices.Equal(onDisk, rec.Body.Bytes()) {
		t.Errorf("the served document differs from internal/httpapi/openapi.json (read error: %v)", err)
	}
}

// TestAuthMatrix walks every route of the real router, so that a route
// added later is covered without editing this test: no credentials, a
// malformed header, unknown tokens and expired or foreign JWTs are 401; a
// valid credential without the route's scope is 403; admin credentials
// get 2xx on every route and ingest credentials on the ingest routes.
// Public routes answer without credentials and are listed in
// publicRoutes; any other route answering without credentials fails.
// Every status met must be one the document lists for the operation.
func TestAuthMatrix(t *testing.T) {
	env := newRouterEnv(t)
	ops := docOperations(t, openAPIDoc(t))
	for _, route := range env.routes {
		t.Run(strings.ReplaceAll(route, "/", "_"), func(t *testing.T) {
			method, path, _ := strings.Cut(route, " ")
			// Path parameters, should a route get any, take a placeholder.
			target := regexp.MustCompile(`:[^/]+|\*`).ReplaceAllString(path, "x")
			sample, hasSample := sampleRequests[route]
			if sample.target != "" {
				target = sample.target
			}
			documented := func(code int) {
				t.Helper()
				if op := ops[route]; op != nil {
					if r, _ := op["responses"].(map[string]any); r[strconv.Itoa(code)] == nil {
						t.Errorf("answered %d, which the document does not list for %s", code, route)
					}
				}
			}
			check := func(who, authz string, want ...int) {
				t.Helper()
				rec := env.do(method, target, authz, sample.contentType, sample.body)
				documented(rec.Code)
				if !slices.Contains(want, rec.Code) {
					t.Errorf("%s: %d %s; want %v", who, rec.Code, strings.TrimSpace(rec.Body.String()), want)
					return
				}
				if rec.Code == http.StatusUnauthorized {
					var body httpapi.ErrorBody
					if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body.Error != "unauthorized" {
						t.Errorf("%s: 401 body %s; want an ErrorBody with error unauthorized", who, rec.Body)
					}
					if !strings.HasPrefix(rec.Header().Get("WWW-Authenticate"), "Bearer") {
						t.Errorf("%s: 401 without a Bearer WWW-Authenticate header", who)
					}
				}
				if rec.Code == http.StatusForbidden {
					var body httpapi.ErrorBody
					if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body.Error != "forbidden" {
						t.Errorf("%s: 403 body %s; want an ErrorBody with error forbidden", who, rec.Body)
					}
				}
			}

			if publicRoutes[route] {
				if method != http.MethodGet {
					t.Fatalf("public route %s is not a GET", route)
				}
				check("no credentials", "", http.StatusOK, http.StatusServiceUnavailable)
				check("an unknown token", "Bearer not-a-known-token-at-all", http.StatusOK, http.StatusServiceUnavailable)
				return
			}
			if !hasSample && method != http.MethodGet {
				t.Fatalf("%s needs a sample request: add one to sampleRequests", route)
			}

			// Without a valid credential: 401, whatever the route.
			check("no credentials", "", http.StatusUnauthorized)
			check("a Basic credential", "Basic "+env.admin, http.StatusUnauthorized)
			check("an empty bearer token", "Bearer ", http.StatusUnauthorized)
			check("an unknown token", "Bearer not-a-known-token-at-all", http.StatusUnauthorized)
			check("the admin token with a suffix", "Bearer "+env.admin+"x", http.StatusUnauthorized)
			check("an expired admin JWT", "Bearer "+env.expiredJWT, http.StatusUnauthorized)
			check("an admin JWT of another secret", "Bearer "+env.foreignJWT, http.StatusUnauthorized)

			// Valid, but without the route's scope: 403.
			check("a signed-in user's JWT (no scope)", "Bearer "+env.userJWT, http.StatusForbidden)
			if !ingestRoutes[route] {
				check("the ingest token on an admin route", "Bearer "+env.ingest, http.StatusForbidden)
			}

			// With the scope: 2xx (202 for ingest, the events persisted in
			// JetStream; 200 or 202 for the acceptedRoutes).
			want := []int{http.StatusOK}
			switch {
			case ingestRoutes[route]:
				want = []int{http.StatusAccepted}
				check("the ingest token", "Bearer "+env.ingest, want...)
			case acceptedRoutes[route]:
				want = append(want, http.StatusAccepted)
			case notFoundRoutes[route]:
				want = []int{http.StatusNotFound}
			}
			check("the admin token", "Bearer "+env.admin, want...)
			check("the scheme in lower case with the admin token", "bearer "+env.admin, want...)
			check("an admin JWT", "Bearer "+env.adminJWT, want...)
		})
	}
}
