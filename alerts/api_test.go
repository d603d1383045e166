package alerts_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/wedsync/pulse/alerts"
	"github.com/wedsync/pulse/alerts/rules"
	"github.com/wedsync/pulse/internal/auth"
	"github.com/wedsync/pulse/internal/chstore"
	"github.com/wedsync/pulse/internal/event"
	"github.com/wedsync/pulse/internal/httpapi"
	"github.com/wedsync/pulse/internal/testenv"
)

const (
	adminToken  = "admin-token-for-alert-tests"
	ingestToken = "ingest-token-for-alert-tests"
)

// newServer registers the API the way pulse serve does: through the
// guarded router, with static tokens.
func newServer(t testing.TB, set *rules.Set, js jetstream.JetStream, store alerts.Querier) *echo.Echo {
	t.Helper()
	e := httpapi.New(nop)
	toks := &auth.StaticTokens{}
	toks.Add(adminToken, auth.Principal{Name: "admin", Scopes: []auth.Scope{auth.ScopeAdmin}})
	toks.Add(ingestToken, auth.Principal{Name: "ingest", Scopes: []auth.Scope{auth.ScopeIngest}})
	api, err := alerts.NewAPI(alerts.APIConfig{QueryTimeout: 5 * time.Second}, set, js, store, nop)
	if err != nil {
		t.Fatal(err)
	}
	api.Register(httpapi.NewRouter(e, toks))
	return e
}

func getAlerts(t testing.TB, e *echo.Echo, query string) alerts.AlertsBody {
	t.Helper()
	r := testenv.Get(t, e, "/api/admin/alerts"+query, adminToken)
	if r.Status != http.StatusOK {
		t.Fatalf("GET /api/admin/alerts%s: status %d, body %s; want 200", query, r.Status, r.Body)
	}
	var body alerts.AlertsBody
	if err := json.Unmarshal(r.Body, &body); err != nil {
		t.Fatalf("decode %s: %v", r.Body, err)
	}
	return body
}

// TestAPIBadInput: every bad parameter is a 400 naming it, before any
// state or history is read (the API has neither here).
func TestAPIBadInput(t *testing.T) {
	e := newServer(t, rules.Default(), nil, nil)
	future := url.QueryEscape(time.Now().Add(time.Hour).UTC().Format(time.RFC3339))
	tests := []struct {
		target string
		fields []string
	}{
		{"/api/admin/alerts?state=pending", []string{"state"}},
		{"/api/admin/alerts?state=", []string{"state"}},
		{"/api/admin/alerts?state=FIRING", []string{"state"}},
		{"/api/admin/alerts?state=firing&state=resolved", []string{"state"}},
		{"/api/admin/alerts?severity=urgent", []string{"severity"}},
		{"/api/admin/alerts?severity=", []string{"severity"}},
		{"/api/admin/alerts?kind=page", []string{"kind"}},
		{"/api/admin/alerts?since=yesterday", []string{"since"}},
		{"/api/admin/alerts?since=2026-06-20", []string{"since"}},
		{"/api/admin/alerts?since=2026-06-20T14:03:00", []string{"since"}},
		{"/api/admin/alerts?since=1999-12-31T23:59:59Z", []string{"since"}},
		{"/api/admin/alerts?since=" + future, []string{"since"}},
		{"/api/admin/alerts?since=", []string{"since"}},
		{"/api/admin/alerts?limit=0", []string{"limit"}},
		{"/api/admin/alerts?limit=1001", []string{"limit"}},
		{"/api/admin/alerts?limit=-1", []string{"limit"}},
		{"/api/admin/alerts?limit=+5", []string{"limit"}},
		{"/api/admin/alerts?limit=ten", []string{"limit"}},
		{"/api/admin/alerts?rule=x", []string{"rule"}},
		{"/api/admin/alerts?%zz", []string{"query"}},
		{"/api/admin/alerts?%01x=1", []string{"?x"}},
		{"/api/admin/alerts?state=open&severity=high&since=now&limit=0&foo=1", []string{"foo", "state", "severity", "since", "limit"}},
		{"/api/admin/alerts/rules?state=firing", []string{"state"}},
	}
	for _, tt := range tests {
		t.Run(tt.target, func(t *testing.T) {
			// The order of the details is the order of the checks; the
			// table lists the fields as the checks meet them.
			testenv.WantFieldErrors(t, testenv.Get(t, e, tt.target, adminToken), tt.fields...)
		})
	}
}

// TestAPIAuth: both routes are admin-only.
func TestAPIAuth(t *testing.T) {
	e := newServer(t, rules.Default(), nil, nil)
	for _, path := range []string{"/api/admin/alerts", "/api/admin/alerts/rules"} {
		if r := testenv.Get(t, e, path, ""); r.Status != http.StatusUnauthorized {
			t.Errorf("GET %s without a token: %d; want 401", path, r.Status)
		}
		if r := testenv.Get(t, e, path, ingestToken); r.Status != http.StatusForbidden {
			t.Errorf("GET %s with an ingest token: %d; want 403", path, r.Status)
		}
	}
}

// TestAPIRules: the rules in force, without the file's path.
func TestAPIRules(t *testing.T) {
	e := newServer(t, rules.Default(), nil, nil)
	r := testenv.Get(t, e, "/api/admin/alerts/rules", adminToken)
	if r.Status != http.StatusOK {
		t.Fatalf("status %d: %s", r.Status, r.Body)
	}
	var body struct {
		Source  string           `json:"source"`
		Instant []map[string]any `json:"instant"`
		Window  []map[string]any `json:"window"`
		Scaling []map[string]any `json:"scaling"`
	}
	if err := json.Unmarshal(r.Body, &body); err != nil {
		t.Fatal(err)
	}
	if body.Source != "built-in" || len(body.Instant) != 2 || len(body.Window) != 6 || len(body.Scaling) != 4 {
		t.Fatalf("got source %q and %d/%d/%d rules; want built-in and 2/6/4", body.Source, len(body.Instant), len(body.Window), len(body.Scaling))
	}
	if body.Instant[0]["name"] != "slow_response" || body.Instant[0]["value"] != 5000.0 || body.Instant[0]["cooldown"] != "1m" {
		t.Errorf("first instant rule %v; want slow_response > 5000 with cooldown 1m", body.Instant[0])
	}
	set, err := rules.Load("testdata/rules/good_minimal.yaml")
	if err != nil {
		t.Fatal(err)
	}
	e = newServer(t, set, nil, nil)
	r = testenv.Get(t, e, "/api/admin/alerts/rules", adminToken)
	if strings.Contains(string(r.Body), "testdata") || !strings.Contains(string(r.Body), `"source":"file"`) {
		t.Errorf("rules from a file: %s; want source file and no path", r.Body)
	}
}

// TestAPIAlerts: firing alerts come from KV with their live count,
// resolved ones from the ClickHouse history the History writer filled;
// filters apply; when one side is unavailable the other is still served.
func TestAPIAlerts(t *testing.T) {
	store := testenv.ClickHouse(t)
	createAlertsTable(t, store)
	n := newNATS(t)
	c := collect(t, n.nc)
	set := mustParse(t, `
instant:
  - {name: server_error, field: status_code, op: ">=", value: 500, cooldown: 1s, severity: critical}
  - {name: slow_response, field: response_time_ms, op: ">", value: 5000, cooldown: 1h, severity: warning}
`)
	in := newInstant(t, alerts.InstantConfig{FlushEvery: 100 * time.Millisecond}, set, n.js, nop)
	testenv.Run(t, in.Run)
	h := newHistory(t, alerts.HistoryConfig{MaxWait: 100 * time.Millisecond}, n.js, store, nop)
	testenv.Run(t, h.Run)
	before := time.Now().UTC().Truncate(time.Second)
	in.Observe([]event.Request{req(time.Now(), "api", "/pay", 502, 10), req(time.Now(), "web", "/slow", 200, 9000)})
	c.wait("server_error", alerts.StateResolved, 1, 10*time.Second)
	in.Observe([]event.Request{req(time.Now(), "web", "/slow", 200, 8000), req(time.Now(), "web", "/slow", 200, 7000)})
	testenv.Eventually(t, 10*time.Second, "history rows", func() bool { return h.Stats().Rows.Load() >= 3 })

	e := newServer(t, set, n.js, store)
	var body alerts.AlertsBody
	testenv.Eventually(t, 10*time.Second, "the firing alert's count updated in KV", func() bool {
		body = getAlerts(t, e, "")
		return len(body.Alerts) == 2 && body.Alerts[0].Count == 3
	})
	if body.Firing != 1 || body.Partial {
		t.Fatalf("got %+v; want 1 firing and 1 resolved, complete", body)
	}
	f, r := body.Alerts[0], body.Alerts[1]
	if f.Rule != "slow_response" || f.State != "firing" || f.Labels["endpoint"] != "/slow" || *f.Value != 9000 {
		t.Errorf("firing alert %+v; want slow_response on /slow, worst value 9000", f)
	}
	if r.Rule != "server_error" || r.State != "resolved" || r.Count != 1 || r.ResolvedAt == nil || r.Labels["service"] != "api" {
		t.Errorf("resolved alert %+v; want server_error on api, count 1, resolved_at set", r)
	}
	check := func(query string, wantRules ...string) {
		t.Helper()
		b := getAlerts(t, e, query)
		var got []string
		for _, a := range b.Alerts {
			got = append(got, a.Rule+"/"+a.State)
		}
		if !slices.Equal(got, wantRules) {
			t.Errorf("GET ?%s: got %v; want %v", query, got, wantRules)
		}
	}
	check("?state=firing", "slow_response/firing")
	check("?state=resolved", "server_error/resolved")
	check("?severity=critical", "server_error/resolved")
	check("?severity=page")
	check("?kind=scaling")
	check("?limit=1", "slow_response/firing")
	check("?state=resolved&since="+url.QueryEscape(before.Add(-time.Hour).Format(time.RFC3339)), "server_error/resolved")
	check("?state=resolved&since=" + url.QueryEscape(time.Now().UTC().Add(time.Minute).Format(time.RFC3339)))

	// History unreachable: firing alone, flagged partial; resolved alone is 503.
	closed, err := chstore.Open(testCtx(t), testenv.ClickHouseDSN()+"/"+store.Database(), nop)
	if err != nil {
		t.Fatal(err)
	}
	closed.Close()
	e = newServer(t, set, n.js, closed)
	if b := getAlerts(t, e, ""); !b.Partial || !slices.Equal(b.Unavailable, []string{"history"}) || b.Firing != 1 {
		t.Errorf("with ClickHouse gone: %+v; want the firing alert, partial, history unavailable", b)
	}
	if r := testenv.Get(t, e, "/api/admin/alerts?state=resolved", adminToken); r.Status != http.StatusServiceUnavailable || r.Header.Get("Retry-After") == "" {
		t.Errorf("resolved with ClickHouse gone: %d %v; want 503 with Retry-After", r.Status, r.Header)
	}
	// State unreachable: history alone.
	nc2, js2 := n.conn(t)
	nc2.Close()
	e = newServer(t, set, js2, store)
	if b := getAlerts(t, e, ""); !b.Partial || !slices.Equal(b.Unavailable, []string{"state"}) || len(b.Alerts) != 1 {
		t.Errorf("with NATS gone: %+v; want the resolved alert, partial, state unavailable", b)
	}
	if r := testenv.Get(t, e, "/api/admin/alerts?state=firing", adminToken); r.Status != http.StatusServiceUnavailable {
		t.Errorf("firing with NATS gone: %d; want 503", r.Status)
	}
	if strings.Contains(string(testenv.Get(t, e, "/api/admin/alerts?state=firing", adminToken).Body), "nats") {
		t.Errorf("a 503 names internals")
	}
}
