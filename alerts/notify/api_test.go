package notify_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/wedsync/pulse/alerts"
	"github.com/wedsync/pulse/alerts/notify"
	"github.com/wedsync/pulse/internal/auth"
	"github.com/wedsync/pulse/internal/httpapi"
	"github.com/wedsync/pulse/internal/testenv"
)

const adminToken = "admin-token-for-notify-tests"

// newAPIServer registers the delivery API the way pulse serve does:
// through the guarded router, with a static admin token named admin.
func newAPIServer(t testing.TB, cfg notify.Config, js jetstream.JetStream, store notify.Store) *echo.Echo {
	t.Helper()
	e := httpapi.New(nop)
	toks := &auth.StaticTokens{}
	toks.Add(adminToken, auth.Principal{Name: "admin", Scopes: []auth.Scope{auth.ScopeAdmin}})
	cfg.Registerer = nil
	api, err := notify.NewAPI(cfg, js, store, nop)
	if err != nil {
		t.Fatal(err)
	}
	api.Register(httpapi.NewRouter(e, toks))
	return e
}

// do sends method target with a JSON body to h in process.
func do(t testing.TB, h http.Handler, method, target, token, body string) testenv.Response {
	t.Helper()
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	b, _ := io.ReadAll(rec.Result().Body)
	return testenv.Response{Status: rec.Code, Header: rec.Header(), Body: b}
}

// TestSilenceBadInput: bad matchers, an end before the start, unknown
// fields and a non-JSON body are 400s naming each field.
func TestSilenceBadInput(t *testing.T) {
	n := newNATS(t)
	e := newAPIServer(t, notify.Config{}, n.js, nil)
	now := time.Now().UTC()
	at := func(d time.Duration) string { return `"` + now.Add(d).Format(time.RFC3339) + `"` }
	f := func(body string, fields ...string) {
		t.Helper()
		testenv.WantFieldErrors(t, do(t, e, http.MethodPost, "/api/admin/silences", adminToken, body), fields...)
	}
	f(`{"matchers":[],"endsAt":`+at(time.Hour)+`,"comment":"x"}`, "matchers")
	f(`{"matchers":[{"name":"1bad","value":"x"}],"endsAt":`+at(time.Hour)+`,"comment":"x"}`, "matchers[0].name")
	f(`{"matchers":[{"name":"rule","value":"(","isRegex":true}],"endsAt":`+at(time.Hour)+`,"comment":"x"}`, "matchers[0].value")
	f(`{"matchers":[{"name":"rule","value":".*","isRegex":true}],"endsAt":`+at(time.Hour)+`,"comment":"x"}`, "matchers")
	f(`{"matchers":[{"name":"rule","value":"a"}],"startsAt":`+at(2*time.Hour)+`,"endsAt":`+at(time.Hour)+`,"comment":"x"}`, "endsAt")
	f(`{"matchers":[{"name":"rule","value":"a"}],"endsAt":`+at(-time.Hour)+`,"startsAt":`+at(-2*time.Hour)+`,"comment":"x"}`, "endsAt")
	f(`{"matchers":[{"name":"rule","value":"a"}],"comment":"x"}`, "endsAt")
	f(`{"matchers":[{"name":"rule","value":"a"}],"endsAt":`+at(time.Hour)+`}`, "comment")
	f(`{"matchers":[{"name":"rule","value":"a"}],"endsAt":`+at(time.Hour)+`,"comment":"x","owner":"me"}`, "body")
	f(`{"matchers":[{"name":"rule","value":"a"}],"endsAt":"tomorrow","comment":"x"}`, "body")
	f(`not json`, "body")
}

// TestAck: an unknown alert is a 404; a firing one is acknowledged by the
// caller, recorded in the audit log.
func TestAck(t *testing.T) {
	n := newNATS(t)
	store := testenv.ClickHouse(t)
	e := newAPIServer(t, notify.Config{}, n.js, store)
	if r := do(t, e, http.MethodPost, "/api/admin/alerts/no-such-alert/ack", adminToken, ""); r.Status != http.StatusNotFound {
		t.Errorf("ack an unknown alert: %d %s; want 404", r.Status, r.Body)
	}
	// A firing alert as the instant evaluator records it.
	rec := `{"id":"a1b2c3","kind":"alert","rule":"server_error","state":"firing","severity":"critical","labels":{},"value":503,` +
		`"threshold":500,"started_at":"` + time.Now().UTC().Format(time.RFC3339) + `","resolved_at":null,"count":1,"message":"m","phase":"firing","notified":true}`
	if _, err := n.kv.Put(testCtx(t), "instant.server_error.abc", []byte(rec)); err != nil {
		t.Fatal(err)
	}
	r := do(t, e, http.MethodPost, "/api/admin/alerts/a1b2c3/ack", adminToken, `{"comment":"on it"}`)
	if r.Status != http.StatusOK || !strings.Contains(string(r.Body), `"acknowledged_by":"admin"`) {
		t.Fatalf("ack: %d %s; want 200 acknowledged by admin", r.Status, r.Body)
	}
	if n := testenv.Count(t, store, "SELECT count() FROM "+store.T("audit_log")+" WHERE action = 'alert_ack' AND target = 'a1b2c3' AND principal = 'admin'"); n != 1 {
		t.Errorf("%d audit records of the ack; want 1", n)
	}
	_ = alerts.StateFiring
}
