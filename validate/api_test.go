package validate

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/wedsync/pulse/internal/auth"
	"github.com/wedsync/pulse/internal/httpapi"
	"github.com/wedsync/pulse/internal/testenv"
)

func TestRoutesAreAdminOnly(t *testing.T) {
	e := server(t, validator(t, Config{}, Deps{}))
	for _, r := range []struct{ method, path string }{
		{http.MethodPost, PathValidate}, {http.MethodGet, PathCompliance}, {http.MethodGet, PathHistory},
		{http.MethodDelete, "/api/admin/users/0b6f4bd4-1c53-4c69-9f43-0a5f7a1f2d11/metrics"},
	} {
		wantStatus(t, do(e, r.method, r.path, "", "", ""), http.StatusUnauthorized)
		wantStatus(t, do(e, r.method, r.path, ingestToken, "", ""), http.StatusForbidden)
	}
}

func errorBody(t *testing.T, body []byte) httpapi.ErrorBody {
	t.Helper()
	var b httpapi.ErrorBody
	if err := json.Unmarshal(body, &b); err != nil {
		t.Fatalf("error body %s: %v", body, err)
	}
	return b
}

func TestValidateRequest(t *testing.T) {
	e := server(t, validator(t, Config{}, Deps{}))
	for _, c := range []struct {
		name, body, ct string
		status         int
		field, message string // of the first detail
	}{
		{"unknown component", `{"component":"cache","validation_type":"schema"}`, "", 400, "component", "must be one of database, auth, realtime, api, deployment"},
		{"unknown type", `{"component":"database","validation_type":"speed"}`, "", 400, "validation_type", "must be one of schema, permissions, performance, security"},
		{"missing fields", `{}`, "", 400, "component", "is required"},
		{"null component", `{"component":null,"validation_type":"schema"}`, "", 400, "component", "is required"},
		{"unsupported pair", `{"component":"realtime","validation_type":"schema"}`, "", 400, "validation_type", "realtime supports performance, security; valid pairs: database/schema, database/permissions"},
		{"unknown field", `{"component":"database","validation_type":"schema","strict":true}`, "", 400, "strict", "is not a field of this request (allowed: component, validation_type, strict_mode)"},
		{"strict_mode not a boolean", `{"component":"database","validation_type":"schema","strict_mode":"yes"}`, "", 400, "strict_mode", "must be true or false"},
		{"component not a string", `{"component":1,"validation_type":"schema"}`, "", 400, "component", "must be a string"},
		{"bad JSON", `{"component":`, "", 400, "body", "is not valid JSON"},
		{"not an object", `["database","schema"]`, "", 400, "body", "must be a JSON object"},
		{"two objects", `{"component":"api","validation_type":"security"} {}`, "", 400, "body", "must hold exactly one JSON object"},
		{"empty body", ``, "", 400, "body", "is required"},
		{"wrong content type", `component=database`, "application/x-www-form-urlencoded", 415, "", ""},
		{"too large", `{"component":"api","validation_type":"security","x":"` + strings.Repeat("a", maxBody) + `"}`, "", 413, "", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			rec := do(e, http.MethodPost, PathValidate, adminToken, c.ct, c.body)
			wantStatus(t, rec, c.status)
			b := errorBody(t, rec.Body.Bytes())
			if c.field == "" {
				return
			}
			if len(b.Details) == 0 || b.Details[0].Field != c.field || !strings.Contains(b.Details[0].Message, c.message) {
				t.Errorf("details %+v; want field %q saying %q", b.Details, c.field, c.message)
			}
		})
	}
	// Both enums wrong: both named.
	rec := do(e, http.MethodPost, PathValidate, adminToken, "", `{"component":"x","validation_type":"y"}`)
	if b := errorBody(t, rec.Body.Bytes()); len(b.Details) != 2 {
		t.Errorf("details %+v; want both fields", b.Details)
	}
}

func TestValidateAnswer(t *testing.T) {
	routes := []Route{{http.MethodGet, "/api/admin/system/health", httpapi.Public}}
	v := validator(t, Config{}, Deps{Routes: func() []Route { return routes }})
	e := server(t, v)
	rec := do(e, http.MethodPost, PathValidate, adminToken, "application/json; charset=utf-8", `{"component":"api","validation_type":"security"}`)
	wantStatus(t, rec, http.StatusOK)
	var res map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &res); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"run_id", "valid", "component", "validation_type", "strict_mode", "issues", "recommendations", "checked_at", "duration_ms", "recorded"} {
		if _, ok := res[k]; !ok {
			t.Errorf("answer lacks %s: %s", k, rec.Body)
		}
	}
	if res["valid"] != false || res["strict_mode"] != false || res["recorded"] != false || res["component"] != "api" {
		t.Errorf("answer %s", rec.Body)
	}
	issues := res["issues"].([]any)
	is := issues[0].(map[string]any)
	for _, k := range []string{"lint", "severity", "category", "object", "message", "recommendation", "cache_key"} {
		if s, _ := is[k].(string); s == "" {
			t.Errorf("issue lacks %s: %v", k, is)
		}
	}
	if _, err := time.Parse(time.RFC3339, res["checked_at"].(string)); err != nil {
		t.Errorf("checked_at: %v", err)
	}
}

// natsPublisher publishes alerts on core NATS, as an alert publisher of the
// alerts package would.
type natsPublisher struct{ nc *nats.Conn }

func (p natsPublisher) Publish(ctx context.Context, subject string, data []byte) error {
	if err := p.nc.Publish(subject, data); err != nil {
		return err
	}
	return p.nc.FlushWithContext(ctx)
}

func TestRunsAreRecordedAndFailingRunsAlert(t *testing.T) {
	ns := testenv.NATS(t)
	nc, _ := testenv.Connect(t, ns.ClientURL())
	sub, err := nc.SubscribeSync("pulse.alerts.>")
	if err != nil {
		t.Fatal(err)
	}
	st := testenv.ClickHouse(t)
	createTables(t, st)
	routes := []Route{{http.MethodGet, "/api/admin/system/health", httpapi.Public}}
	v := validator(t, Config{}, Deps{Store: st, Publisher: natsPublisher{nc}, Routes: func() []Route { return routes },
		Auth: AuthSettings{AdminTokens: 1}})
	e := server(t, v)

	post := func(body string) Result {
		t.Helper()
		rec := do(e, http.MethodPost, PathValidate, adminToken, "", body)
		wantStatus(t, rec, http.StatusOK)
		var r Result
		if err := json.Unmarshal(rec.Body.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		if !r.Recorded {
			t.Fatalf("run not recorded: %s", rec.Body)
		}
		return r
	}
	failing := post(`{"component":"api","validation_type":"security"}`)
	passing := post(`{"component":"auth","validation_type":"permissions","strict_mode":true}`)
	if failing.Valid || !passing.Valid {
		t.Fatalf("valid %v and %v; want false and true", failing.Valid, passing.Valid)
	}

	// One alert, for the failing run only.
	msg, err := sub.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatalf("no alert: %v", err)
	}
	if msg.Subject != "pulse.alerts.critical.architecture_validation" {
		t.Errorf("subject %s", msg.Subject)
	}
	var a alertMessage
	if err := json.Unmarshal(msg.Data, &a); err != nil {
		t.Fatal(err)
	}
	if a.ID != failing.RunID || a.Kind != "alert" || a.Rule != "architecture_validation" || a.State != "firing" || a.Severity != "critical" || a.Count != 1 ||
		a.Value == nil || *a.Value != 1 || a.ResolvedAt != nil || !a.StartedAt.Equal(failing.CheckedAt) ||
		a.Labels["component"] != "api" || a.Labels["validation_type"] != "security" || !strings.Contains(a.Message, "api/security failed: 1 issues") {
		t.Errorf("alert %+v", a)
	}
	if m, err := sub.NextMsg(200 * time.Millisecond); err == nil {
		t.Errorf("a passing run alerted: %s", m.Data)
	}

	// History: newest first, with findings; filters and limits.
	history := func(query string) History {
		t.Helper()
		rec := do(e, http.MethodGet, PathHistory+query, adminToken, "", "")
		wantStatus(t, rec, http.StatusOK)
		var h History
		if err := json.Unmarshal(rec.Body.Bytes(), &h); err != nil {
			t.Fatal(err)
		}
		return h
	}
	h := history("")
	if len(h.Runs) != 2 || h.Runs[0].RunID != passing.RunID || h.Runs[1].RunID != failing.RunID {
		t.Fatalf("history %+v; want the passing then the failing run", h.Runs)
	}
	f := h.Runs[1]
	if f.Principal != "ops" || f.Valid || f.Errors != 1 || len(f.Issues) != 1 || f.Issues[0].Lint != "admin_route_unguarded" || f.Component != "api" {
		t.Errorf("recorded run %+v", f)
	}
	if !h.Runs[0].StrictMode || !h.Runs[0].Valid {
		t.Errorf("recorded run %+v", h.Runs[0])
	}
	if h := history("?limit=1"); len(h.Runs) != 1 || h.Runs[0].RunID != passing.RunID {
		t.Errorf("limit=1: %+v", h.Runs)
	}
	if h := history("?component=api&validation_type=security"); len(h.Runs) != 1 || h.Runs[0].RunID != failing.RunID {
		t.Errorf("filtered: %+v", h.Runs)
	}
	if f.Issues[0].Severity != "critical" {
		t.Errorf("recorded severity %q; want the spec's critical", f.Issues[0].Severity)
	}
	// A run recorded before Pulse adopted the spec's word reads back as critical.
	legacy := Result{RunID: newID(), Component: "database", ValidationType: "schema", CheckedAt: time.Now().UTC().Truncate(time.Second),
		Issues: []Issue{{Lint: "required_table_missing", Severity: legacySeverity, Object: "public.couples"}}}
	if err := v.recordRun(context.Background(), "ops", legacy); err != nil {
		t.Fatal(err)
	}
	if h := history("?component=database"); len(h.Runs) != 1 || len(h.Runs[0].Issues) != 1 || h.Runs[0].Issues[0].Severity != SeverityCritical {
		t.Errorf("legacy run: %+v", h.Runs)
	}
	for _, q := range []string{"?limit=0", "?limit=101", "?limit=x", "?component=cache", "?validation_type=x", "?since=1h", "?limit=1&limit=2", "?%zz"} {
		wantStatus(t, do(e, http.MethodGet, PathHistory+q, adminToken, "", ""), http.StatusBadRequest)
	}

	// The audit trail holds both runs with principal and outcome.
	if n := testenv.Count(t, st, "SELECT count() FROM "+st.T("audit_log")+" WHERE action = 'architecture_validation' AND principal = 'ops' AND "+
		"((target = 'api/security' AND outcome = 'invalid') OR (target = 'auth/permissions' AND outcome = 'valid'))"); n != 2 {
		t.Errorf("%d audit records; want 2", n)
	}

	// Without the tables the run is still answered, marked not recorded.
	if err := st.Exec(context.Background(), "DROP TABLE "+st.T("validation_runs")); err != nil {
		t.Fatal(err)
	}
	rec := do(e, http.MethodPost, PathValidate, adminToken, "", `{"component":"auth","validation_type":"permissions"}`)
	wantStatus(t, rec, http.StatusOK)
	if strings.Contains(rec.Body.String(), `"recorded":true`) {
		t.Errorf("recorded without a table: %s", rec.Body)
	}
	wantStatus(t, do(e, http.MethodGet, PathHistory, adminToken, "", ""), http.StatusServiceUnavailable)
	if err := st.Exec(context.Background(), "DROP TABLE "+st.T("audit_log")); err != nil {
		t.Fatal(err)
	}
	createTables(t, st)
	if err := st.Exec(context.Background(), "DROP TABLE "+st.T("audit_log")); err != nil {
		t.Fatal(err)
	}
	rec = do(e, http.MethodPost, PathValidate, adminToken, "", `{"component":"auth","validation_type":"permissions"}`)
	if strings.Contains(rec.Body.String(), `"recorded":true`) {
		t.Errorf("recorded without an audit table: %s", rec.Body)
	}
}

// failingPublisher refuses every alert.
type failingPublisher struct{}

func (failingPublisher) Publish(context.Context, string, []byte) error {
	return context.DeadlineExceeded
}

func TestAlertSeverityAndFailures(t *testing.T) {
	ns := testenv.NATS(t)
	nc, _ := testenv.Connect(t, ns.ClientURL())
	sub, err := nc.SubscribeSync("pulse.alerts.>")
	if err != nil {
		t.Fatal(err)
	}
	// A strict run failing on warnings only alerts as a warning.
	v := validator(t, Config{}, Deps{Publisher: natsPublisher{nc}, Auth: AuthSettings{JWTSecret: []byte(strongSecret), TokenLifetime: time.Hour}})
	res := run(t, v, "auth", "security", true)
	if res.Valid {
		t.Fatal("strict run with warnings is valid")
	}
	msg, err := sub.NextMsg(5 * time.Second)
	if err != nil || msg.Subject != "pulse.alerts.warning.architecture_validation" {
		t.Fatalf("alert %v, %v; want a warning", msg, err)
	}
	// A publisher that fails does not fail the run.
	v = validator(t, Config{}, Deps{Publisher: failingPublisher{}})
	if res := run(t, v, "auth", "permissions", false); res.Valid || len(res.Issues) != 1 {
		t.Errorf("run with a failing publisher: %+v", res)
	}
	// History needs the store.
	wantStatus(t, do(server(t, v), http.MethodGet, PathHistory, adminToken, "", ""), http.StatusServiceUnavailable)
}

func TestConfigValidate(t *testing.T) {
	if err := (Config{}).Validate(); err != nil {
		t.Errorf("zero config: %v", err)
	}
	for _, c := range []Config{
		{StatementTimeout: -1}, {MaxConnectionUsage: 1.5}, {LoadFactor: 0.5}, {MaxSlowQueries: 101}, {HistoryLimit: 500},
		{APIRoles: []string{""}}, {RequiredTables: []string{strings.Repeat("x", 200)}},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v: valid; want an error", c)
		}
	}
	if !Supported("database", "performance") || Supported("realtime", "schema") || Supported("cache", "schema") {
		t.Error("Supported")
	}
	res := run(t, validator(t, Config{}, Deps{}), "realtime", "schema", false)
	if res.Valid || len(res.Issues) != 1 || res.Issues[0].Lint != "unsupported_validation" {
		t.Errorf("unsupported pair called directly: %+v", res)
	}
}

func TestValidPairsCoverEveryComponent(t *testing.T) {
	for _, c := range Components {
		if len(pairs[c]) == 0 {
			t.Errorf("%s supports nothing", c)
		}
		for _, typ := range pairs[c] {
			if !slices.Contains(ValidationTypes, typ) {
				t.Errorf("%s/%s is not a validation type", c, typ)
			}
		}
	}
	_ = auth.ScopeAdmin
}
