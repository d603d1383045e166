package validate

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/wedsync/pulse/internal/chstore"
	"github.com/wedsync/pulse/internal/httpapi"
)

// Frameworks of GET /architecture/compliance.
var Frameworks = []string{"gdpr", "sox", "pci", "wedding_standards"}

// Control is one compliance control and its result.
type Control struct {
	ID              string   `json:"id"`
	Title           string   `json:"title"`
	Status          string   `json:"status"` // pass or fail
	Evidence        []string `json:"evidence"`
	Checks          []string `json:"checks"` // the validations (component/type) whose findings it uses
	Recommendations []string `json:"recommendations,omitempty"`
}

// FrameworkReport is the result of one framework's controls.
type FrameworkReport struct {
	Framework string    `json:"framework"`
	Compliant bool      `json:"compliant"` // every control passes
	Passed    int       `json:"passed"`
	Failed    int       `json:"failed"`
	Controls  []Control `json:"controls"`
}

// ComplianceReport is the answer of GET /architecture/compliance.
type ComplianceReport struct {
	Compliant  bool              `json:"compliant"`
	Frameworks []FrameworkReport `json:"frameworks"`
	CheckedAt  time.Time         `json:"checked_at"`
}

// evaluation memoises the checks of one compliance report: each validation
// runs at most once however many controls use it.
type evaluation struct {
	v    *Validator
	ctx  context.Context
	runs map[string][]Issue
	api  *apiFigures
}

// markAccepted marks the findings an admin accepted (see Acceptance).
func (e *evaluation) markAccepted(issues []Issue) { e.v.markAccepted(e.ctx, issues) }

type apiFigures struct {
	p95, errRate float64
	n            uint64
	err          error
}

func (e *evaluation) issues(component, typ string) []Issue {
	key := component + "/" + typ
	if is, ok := e.runs[key]; ok {
		return is
	}
	f := &findings{category: typ}
	e.v.check(e.ctx, component, typ, f)
	e.markAccepted(f.issues)
	e.runs[key] = f.issues
	return f.issues
}

// failureLints are findings that mean a check could not look, which fails
// any control relying on it.
var failureLints = []string{"database_not_configured", "database_unreachable", "insufficient_privilege", "database_check_failed"}

// fromChecks builds a control from the findings of the given lints in the
// given validations: it fails on any such finding (a check that could not
// run included), with the findings as evidence.
func (e *evaluation) fromChecks(id, title, passEvidence string, checks []string, lints ...string) Control {
	c := Control{ID: id, Title: title, Checks: checks, Status: "pass"}
	for _, key := range checks {
		comp, typ, _ := strings.Cut(key, "/")
		for _, is := range e.issues(comp, typ) {
			if is.Accepted != nil && slices.Contains(lints, is.Lint) {
				c.Evidence = append(c.Evidence, "accepted until "+is.Accepted.Until.Format(time.RFC3339)+" by "+is.Accepted.AcceptedBy+" ("+is.Accepted.Reason+"): "+is.Object+": "+is.Message)
				continue
			}
			if slices.Contains(lints, is.Lint) || slices.Contains(failureLints, is.Lint) {
				c.fail(is.Object+": "+is.Message, is.Recommendation)
			}
		}
	}
	if c.Status == "pass" {
		c.Evidence = append([]string{passEvidence}, c.Evidence...)
	}
	return c
}

func (c *Control) fail(evidence, recommendation string) {
	c.Status = "fail"
	c.Evidence = append(c.Evidence, evidence)
	if recommendation != "" && !slices.Contains(c.Recommendations, recommendation) {
		c.Recommendations = append(c.Recommendations, recommendation)
	}
}

func (c *Control) pass(evidence string) {
	c.Status = "pass"
	c.Evidence = append(c.Evidence, evidence)
}

const pseudoTitle = "User ids in stored metrics are pseudonymised"

func (e *evaluation) gdpr() []Control {
	cfg, d := e.v.cfg, e.v.deps.Deployment
	personal := e.fromChecks("gdpr.personal_data_protected", "Personal data in the app's database is protected by row level security",
		"No table in the exposed schemas holds personal-looking columns without row level security, and no exposed view reads auth.users.",
		[]string{"database/security"}, "sensitive_columns_exposed", "personal_columns_exposed", "card_columns_exposed", "auth_users_exposed")

	var pseudo Control
	if cfg.UserIDsPseudonymised {
		pseudo = Control{ID: "gdpr.pseudonymised_user_ids", Title: pseudoTitle, Checks: []string{}}
		pseudo.pass("The fleet sends keyed hashes of the user ids (configured: UserIDsPseudonymised), so requests.user_id does not hold the app's own ids.")
	} else {
		pseudo = e.fromChecks("gdpr.pseudonymised_user_ids", pseudoTitle,
			fmt.Sprintf("The user ids the fleet sends come from %s: random UUID keys that say nothing about the person; tying one to a person needs the app's database, which Pulse's store does not hold.",
				strings.Join(cfg.UserIDColumns, ", ")),
			[]string{"auth/schema"}, "user_id_column_missing", "user_id_not_pseudonymous")
	}

	retention := e.fromChecks("gdpr.retention", "Rows holding user ids are kept no longer than the retention limit",
		fmt.Sprintf("Raw request rows (with user ids) are kept %s, within the %s limit; the stream keeps unconsumed events no longer.", d.Retention.Raw, cfg.MaxRawRetention),
		[]string{"deployment/schema"}, "retention_not_configured", "retention_exceeds_limit", "stream_age_exceeds_retention")

	erasure := Control{ID: "gdpr.erasure", Title: "One user's metrics can be erased on request, and the request is recorded", Checks: []string{}}
	st := e.v.deps.Store
	switch {
	case st == nil:
		erasure.fail("No ClickHouse store is given, so stored metrics cannot be erased.", "Give the validator Pulse's store (Deps.Store).")
	case !mutations(st):
		erasure.fail("ClickHouse "+st.Version().String()+" cannot delete rows.", "Upgrade ClickHouse to a version with mutations (1.1.54388 or later).")
	default:
		var n uint64
		err := st.QueryRow(e.ctx, "SELECT count() FROM "+st.T("audit_log")+" WHERE action = 'user_metrics_erasure' AND outcome = 'completed'", &n)
		if err != nil {
			erasure.fail("The audit log cannot be read ("+cause(err)+"), so erasures could not be recorded.", "Apply the schema migrations (pulse migrate) and check ClickHouse's health.")
			break
		}
		erasure.pass(fmt.Sprintf("DELETE %s erases a user's rows from requests (ALTER TABLE ... DELETE on ClickHouse %s) and records request and outcome in audit_log; %d erasures completed so far.",
			PathErase, storeVersion(st), n))
	}
	return []Control{personal, pseudo, retention, erasure}
}

func storeVersion(st *chstore.Store) string {
	if st.Kind() == "chdb" {
		return "chDB " + st.Version().String()
	}
	return st.Version().String()
}

// accessLints fail an access control.
var accessLints = []string{"admin_route_unguarded", "admin_route_scope", "public_route", "route_list_unavailable",
	"admin_principal_missing", "jwt_secret_default", "jwt_secret_short", "jwt_secret_low_entropy"}

func (e *evaluation) sox() []Control {
	trail := Control{ID: "sox.audit_trail", Title: "Admin actions leave an audit trail (who, when, what)", Checks: []string{}}
	st := e.v.deps.Store
	if st == nil {
		trail.fail("No ClickHouse store is given: validation runs and erasures are not recorded.", "Give the validator Pulse's store (Deps.Store).")
	} else {
		var tables, n uint64
		err := st.QueryRow(e.ctx, "SELECT count() FROM system.tables WHERE database = "+chstore.Quote(st.Database())+" AND name IN ('audit_log', 'validation_runs')", &tables)
		if err == nil && tables == 2 {
			err = st.QueryRow(e.ctx, "SELECT count() FROM "+st.T("audit_log")+" WHERE ts > "+chstore.DateTime(e.v.cfg.Now().Add(-90*24*time.Hour)), &n)
		}
		switch {
		case err != nil:
			trail.fail("The audit tables cannot be read ("+cause(err)+").", "Check ClickHouse's health (GET /readyz).")
		case tables < 2:
			trail.fail("The audit_log and validation_runs tables do not exist, so admin actions are not recorded.", "Apply the schema migrations (pulse migrate).")
		default:
			trail.pass(fmt.Sprintf("Every validation run, compliance report and erasure is recorded in audit_log with principal, time, action, target and outcome, without expiry; %d records in the last 90 days.", n))
		}
	}
	access := e.fromChecks("sox.access_control", "Only authenticated admins reach admin functions",
		"Every admin route demands the admin scope, and admin credentials are configured with a strong JWT secret where JWTs are accepted.",
		[]string{"api/security", "auth/permissions", "auth/security"}, accessLints...)
	return []Control{trail, access}
}

func (e *evaluation) pci() []Control {
	cards := e.fromChecks("pci.no_card_data_exposed", "No payment card data is exposed",
		"No table in the exposed schemas holds card-like columns (card, cvv, pan, ...) without row level security.",
		[]string{"database/security"}, "card_columns_exposed")
	tls := e.fromChecks("pci.tls", "Data crosses networks only over TLS",
		"Every configured URL and the database connection use TLS (or stay on the local host), and realtime uses wss://.",
		[]string{"deployment/security", "realtime/security"}, "url_not_tls", "url_invalid", "database_connection_not_tls", "realtime_not_tls")
	return []Control{cards, tls}
}

func (e *evaluation) apiFigures() *apiFigures {
	if e.api == nil {
		e.api = &apiFigures{}
		if m := e.v.deps.Metrics; m != nil {
			e.api.p95, _, e.api.errRate, _, e.api.n, e.api.err = m.APIStats(e.ctx, e.v.cfg.MetricsWindow)
		}
	}
	return e.api
}

func (e *evaluation) wedding() []Control {
	cfg := e.v.cfg
	p95 := Control{ID: "wedding_standards.p95", Title: fmt.Sprintf("P95 response time below %s", cfg.WeddingP95), Checks: []string{"api/performance"}}
	errRate := Control{ID: "wedding_standards.error_rate", Title: fmt.Sprintf("Error rate below %.0f%%", cfg.WeddingErrorRate*100), Checks: []string{"api/performance"}}
	a := e.apiFigures()
	const look = "Look at the slowest and failing endpoints (GET /api/admin/system/performance) and the database's slow queries."
	switch {
	case e.v.deps.Metrics == nil:
		for _, c := range []*Control{&p95, &errRate} {
			c.fail("Request metrics are not configured, so this cannot be evidenced.", "Give the validator the request metrics (probe.StoreMetrics).")
		}
	case a.err != nil:
		for _, c := range []*Control{&p95, &errRate} {
			c.fail("The stored requests cannot be read ("+cause(a.err)+").", "Check ClickHouse's health (GET /readyz).")
		}
	case a.n == 0:
		for _, c := range []*Control{&p95, &errRate} {
			c.fail(fmt.Sprintf("No requests were recorded over the last %s, so this cannot be evidenced.", cfg.MetricsWindow), "Check that the fleet reports its requests.")
		}
	default:
		ev := fmt.Sprintf("P95 %.0f ms over %d requests in the last %s.", a.p95, a.n, cfg.MetricsWindow)
		if a.p95 < msOf(cfg.WeddingP95) {
			p95.pass(ev)
		} else {
			p95.fail(ev, look)
		}
		ev = fmt.Sprintf("%.2f%% of %d requests in the last %s failed with 5xx.", a.errRate*100, a.n, cfg.MetricsWindow)
		if a.errRate < cfg.WeddingErrorRate {
			errRate.pass(ev)
		} else {
			errRate.fail(ev, look)
		}
	}
	capacity := e.fromChecks("wedding_standards.capacity", fmt.Sprintf("Capacity headroom for %.0fx load (utilisation at most %.0f%%)", cfg.LoadFactor, 100/cfg.LoadFactor),
		"", []string{"deployment/performance"}, "resource_utilisation_high", "capacity_headroom_low", "resource_samples_missing")
	if capacity.Status == "pass" {
		capacity.Evidence = []string{fmt.Sprintf("Every current resource sample (cpu, memory, connections, network over the last %s) is at or below %.0f%%.", cfg.ResourceWindow, 100/cfg.LoadFactor)}
	}
	return []Control{p95, errRate, capacity}
}

// Compliance evaluates the controls of framework ("" for all) from the
// checks they map to. It never fails: a check that cannot run fails the
// controls that rely on it, with the reason as evidence.
func (v *Validator) Compliance(ctx context.Context, framework string, recommendations bool) ComplianceReport {
	ctx, cancel := context.WithTimeout(ctx, v.cfg.Timeout)
	defer cancel()
	e := &evaluation{v: v, ctx: ctx, runs: map[string][]Issue{}}
	rep := ComplianceReport{Compliant: true, CheckedAt: v.cfg.Now().UTC().Truncate(time.Second), Frameworks: []FrameworkReport{}}
	for _, fw := range Frameworks {
		if framework != "" && fw != framework {
			continue
		}
		var controls []Control
		switch fw {
		case "gdpr":
			controls = e.gdpr()
		case "sox":
			controls = e.sox()
		case "pci":
			controls = e.pci()
		default:
			controls = e.wedding()
		}
		fr := FrameworkReport{Framework: fw, Compliant: true, Controls: controls}
		for i := range controls {
			if !recommendations {
				controls[i].Recommendations = nil
			}
			if controls[i].Status == "pass" {
				fr.Passed++
			} else {
				fr.Failed++
				fr.Compliant, rep.Compliant = false, false
			}
		}
		rep.Frameworks = append(rep.Frameworks, fr)
	}
	return rep
}

func (v *Validator) serveCompliance(c echo.Context) error {
	p := httpapi.NewParams(c.QueryString(), "framework", "include_recommendations")
	fw := p.Enum("framework", "", Frameworks...)
	recs := p.Bool("include_recommendations", true)
	if err := p.Err(); err != nil {
		return err
	}
	rep := v.Compliance(c.Request().Context(), fw, recs)
	if st := v.deps.Store; st != nil {
		target, outcome := fw, "compliant"
		if target == "" {
			target = "all"
		}
		if !rep.Compliant {
			outcome = "non_compliant"
		}
		ctx, cancel := context.WithTimeout(context.WithoutCancel(c.Request().Context()), 10*time.Second)
		defer cancel()
		if _, err := v.audit(ctx, principal(c), "compliance_report", target, outcome, map[string]any{"frameworks": len(rep.Frameworks)}); err != nil {
			v.log.Error().Err(err).Msg("compliance report not recorded")
		}
	}
	return c.JSON(http.StatusOK, rep)
}
