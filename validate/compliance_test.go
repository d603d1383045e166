package validate

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/wedsync/pulse/internal/auth"
	"github.com/wedsync/pulse/internal/event"
	"github.com/wedsync/pulse/internal/httpapi"
	"github.com/wedsync/pulse/internal/probe"
	"github.com/wedsync/pulse/internal/testenv"
	"github.com/wedsync/pulse/schema"
)

var guardedRoutes = []Route{
	{"GET", "/healthz", httpapi.Public}, {"POST", "/api/admin/system/metrics", auth.ScopeIngest},
	{"POST", PathValidate, auth.ScopeAdmin}, {"DELETE", PathErase, auth.ScopeAdmin},
}

// compliantWorld is a platform that meets every control.
func compliantWorld(t *testing.T) (Config, Deps) {
	e := newPG(t, adminURL())
	e.load(t, "clean")
	st := testenv.ClickHouse(t)
	createTables(t, st)
	insertRequests(t, st, traffic("/api/clients", 300, 1, 500, 120))
	insertResources(t, st, map[string]float64{"cpu web-1": 0.2, "memory web-1": 0.3, "connections postgres": 0.1})
	cfg := e.config() // user ids: user_profiles.id, a uuid key (WedSync's default)
	return cfg, Deps{
		Store: st, Metrics: probe.StoreMetrics{Store: st},
		Health: results{health("realtime", event.StatusHealthy, 80, time.Second, `{"scheme":"wss"}`)},
		Routes: func() []Route { return guardedRoutes }, Auth: AuthSettings{AdminTokens: 1},
		Deployment: Deployment{Retention: schema.DefaultRetention, Streams: []Stream{{Name: "PULSE_INGEST", Replicas: 3, MaxAge: 7 * 24 * time.Hour}},
			URLs: map[string]string{"public": "https://pulse.wedsync.com"}},
	}
}

// brokenWorld is a platform that fails every control.
func brokenWorld(t *testing.T) (Config, Deps) {
	e := newPG(t, adminURL())
	e.load(t, "clean", "sensitive_columns")
	st := testenv.ClickHouse(t)
	// The broken world has never been migrated for validation: no audit tables.
	for _, table := range []string{"audit_log", "validation_runs"} {
		if err := st.Exec(context.Background(), "DROP TABLE IF EXISTS "+st.T(table)); err != nil {
			t.Fatal(err)
		}
	}
	insertRequests(t, st, append(traffic("/api/forms", 100, 5, 503, 900), traffic("/api/clients", 100, 0, 200, 100)...))
	insertResources(t, st, map[string]float64{"cpu web-1": 0.5, "memory web-1": 0.9})
	cfg := e.config()
	cfg.UserIDColumns = []string{"user_profiles.email"} // the fleet sends emails as user ids
	return cfg, Deps{
		Store: st, Metrics: probe.StoreMetrics{Store: st},
		Health: results{health("realtime", event.StatusHealthy, 80, time.Second, `{"scheme":"ws"}`)},
		Routes: func() []Route {
			return append(guardedRoutes, Route{"GET", "/api/admin/architecture/history", httpapi.Public})
		},
		Deployment: Deployment{Retention: schema.Retention{Raw: 90 * 24 * time.Hour, Rollup: 400 * 24 * time.Hour},
			URLs: map[string]string{"public": "http://pulse.wedsync.com"}},
	}
}

func controlStatus(rep ComplianceReport) map[string]string {
	out := map[string]string{}
	for _, fr := range rep.Frameworks {
		for _, c := range fr.Controls {
			out[c.ID] = c.Status
		}
	}
	return out
}

var allControls = []string{
	"gdpr.personal_data_protected", "gdpr.pseudonymised_user_ids", "gdpr.retention", "gdpr.erasure",
	"sox.audit_trail", "sox.access_control", "pci.no_card_data_exposed", "pci.tls",
	"wedding_standards.p95", "wedding_standards.error_rate", "wedding_standards.capacity",
}

func TestComplianceEveryFramework(t *testing.T) {
	for _, world := range []struct {
		name  string
		setup func(*testing.T) (Config, Deps)
		want  string
	}{{"compliant", compliantWorld, "pass"}, {"broken", brokenWorld, "fail"}} {
		t.Run(world.name, func(t *testing.T) {
			cfg, deps := world.setup(t)
			v := validator(t, cfg, deps)
			e := server(t, v)
			for _, fw := range Frameworks {
				rec := do(e, http.MethodGet, PathCompliance+"?framework="+fw, adminToken, "", "")
				wantStatus(t, rec, http.StatusOK)
				var rep ComplianceReport
				if err := json.Unmarshal(rec.Body.Bytes(), &rep); err != nil {
					t.Fatal(err)
				}
				if len(rep.Frameworks) != 1 || rep.Frameworks[0].Framework != fw || rep.Compliant != (world.want == "pass") {
					t.Fatalf("%s: %s", fw, rec.Body)
				}
				fr := rep.Frameworks[0]
				for _, c := range fr.Controls {
					if !strings.HasPrefix(c.ID, fw+".") || c.Title == "" || len(c.Evidence) == 0 {
						t.Errorf("%s: incomplete control %+v", fw, c)
					}
					if c.Status != world.want {
						t.Errorf("%s: %s is %s; want %s\nevidence: %q", fw, c.ID, c.Status, world.want, c.Evidence)
					}
					if c.Status == "fail" && len(c.Recommendations) == 0 {
						t.Errorf("%s: failing %s has no recommendation", fw, c.ID)
					}
				}
				if fr.Passed+fr.Failed != len(fr.Controls) || (fr.Failed == 0) != fr.Compliant {
					t.Errorf("%s: counts %+v", fw, fr)
				}
			}
			// All frameworks at once.
			rep := v.Compliance(context.Background(), "", true)
			st := controlStatus(rep)
			for _, id := range allControls {
				if st[id] != world.want {
					t.Errorf("all: %s is %q; want %s", id, st[id], world.want)
				}
			}
			if len(st) != len(allControls) {
				t.Errorf("controls %v; want %v", st, allControls)
			}
		})
	}
}

func TestComplianceEvidence(t *testing.T) {
	cfg, deps := brokenWorld(t)
	rep := validator(t, cfg, deps).Compliance(context.Background(), "", true)
	evidence := map[string]string{}
	for _, fr := range rep.Frameworks {
		for _, c := range fr.Controls {
			evidence[c.ID] = strings.Join(c.Evidence, "\n")
		}
	}
	for id, want := range map[string]string{
		"gdpr.personal_data_protected": "public.guests: Table public.guests holds personal-looking columns (email_address, phone_number)",
		"gdpr.pseudonymised_user_ids":  "public.user_profiles.email is of type text, not uuid",
		"gdpr.retention":               "kept 2160h0m0s (limit 720h0m0s)",
		"gdpr.erasure":                 "The audit log cannot be read",
		"sox.audit_trail":              "The audit_log and validation_runs tables do not exist",
		"sox.access_control":           "route GET /api/admin/architecture/history",
		"pci.no_card_data_exposed":     "public.payments: Table public.payments holds payment card columns (card_number, cvv)",
		"pci.tls":                      "url public: The public URL does not use TLS",
		"wedding_standards.p95":        "P95 895 ms over 200 requests", // 900 ms read from the rollups' latency histogram (within 0.75%)
		"wedding_standards.error_rate": "2.50% of 200 requests",
		"wedding_standards.capacity":   "memory on web-1 is at 90%",
	} {
		if !strings.Contains(evidence[id], want) {
			t.Errorf("%s evidence %q; want it to say %q", id, evidence[id], want)
		}
	}
	if !strings.Contains(evidence["pci.tls"], "realtime service is reached over ws://") {
		t.Errorf("pci.tls evidence %q; want the realtime finding", evidence["pci.tls"])
	}

	// Without recommendations.
	rep = validator(t, cfg, deps).Compliance(context.Background(), "gdpr", false)
	for _, c := range rep.Frameworks[0].Controls {
		if c.Recommendations != nil {
			t.Errorf("%s has recommendations", c.ID)
		}
	}
}

func TestComplianceWithoutDependencies(t *testing.T) {
	// Nothing configured: every control that needs a dependency fails and
	// says why; none passes by default.
	v := validator(t, Config{DatabaseURL: "postgres://app@127.0.0.1:1/app?sslmode=disable&connect_timeout=3"}, Deps{})
	rep := v.Compliance(context.Background(), "", true)
	st := controlStatus(rep)
	for _, id := range []string{"gdpr.personal_data_protected", "gdpr.pseudonymised_user_ids", "gdpr.retention", "gdpr.erasure", "sox.audit_trail",
		"sox.access_control", "pci.no_card_data_exposed", "wedding_standards.p95", "wedding_standards.error_rate", "wedding_standards.capacity"} {
		if st[id] != "fail" {
			t.Errorf("%s is %q; want fail", id, st[id])
		}
	}
	if rep.Compliant {
		t.Error("compliant without any evidence")
	}
	for _, fr := range rep.Frameworks {
		for _, c := range fr.Controls {
			if c.ID == "gdpr.personal_data_protected" && !strings.Contains(strings.Join(c.Evidence, ""), "cannot be reached") {
				t.Errorf("evidence %q; want the unreachable database", c.Evidence)
			}
		}
	}

	// Metrics that fail, and no traffic at all.
	quiet := testenv.ClickHouse(t)
	rep = validator(t, Config{}, Deps{Metrics: probe.StoreMetrics{Store: quiet}}).Compliance(context.Background(), "wedding_standards", true)
	if c := rep.Frameworks[0].Controls[0]; c.Status != "fail" || !strings.Contains(c.Evidence[0], "No requests were recorded") {
		t.Errorf("no traffic: %+v", c)
	}
	for _, table := range []string{"requests", "requests_1m_svc", "requests_5m_svc", "requests_1h_svc"} { // API figures read the rollups
		if err := quiet.Exec(context.Background(), "DROP TABLE "+quiet.T(table)); err != nil {
			t.Fatal(err)
		}
	}
	rep = validator(t, Config{}, Deps{Metrics: probe.StoreMetrics{Store: quiet}}).Compliance(context.Background(), "wedding_standards", true)
	if c := rep.Frameworks[0].Controls[1]; c.Status != "fail" || !strings.Contains(c.Evidence[0], "cannot be read") {
		t.Errorf("unreadable metrics: %+v", c)
	}
}

func TestComplianceRequest(t *testing.T) {
	st := testenv.ClickHouse(t)
	createTables(t, st)
	e := server(t, validator(t, Config{}, Deps{Store: st}))
	for _, q := range []string{"?framework=hipaa", "?include_recommendations=yes", "?framework=gdpr&framework=sox", "?format=csv"} {
		rec := do(e, http.MethodGet, PathCompliance+q, adminToken, "", "")
		wantStatus(t, rec, http.StatusBadRequest)
		if b := errorBody(t, rec.Body.Bytes()); len(b.Details) == 0 {
			t.Errorf("%s: no details", q)
		}
	}
	rec := do(e, http.MethodGet, PathCompliance+"?include_recommendations=false", adminToken, "", "")
	wantStatus(t, rec, http.StatusOK)
	var rep ComplianceReport
	if err := json.Unmarshal(rec.Body.Bytes(), &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Frameworks) != 4 || strings.Contains(rec.Body.String(), `"recommendations"`) {
		t.Errorf("report %s", rec.Body)
	}
	if n := testenv.Count(t, st, "SELECT count() FROM "+st.T("audit_log")+" WHERE action = 'compliance_report' AND target = 'all' AND outcome = 'non_compliant' AND principal = 'ops'"); n != 1 {
		t.Errorf("%d audit records of the report; want 1", n)
	}
	// A report whose audit record fails is still answered.
	if err := st.Exec(context.Background(), "DROP TABLE "+st.T("audit_log")); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, do(e, http.MethodGet, PathCompliance+"?framework=pci", adminToken, "", ""), http.StatusOK)
}
