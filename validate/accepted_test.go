package validate

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wedsync/pulse/internal/testenv"
)

// tickingClock is a clock an admin test moves: every reading is a
// millisecond later than the one before, so that records keep their order.
type tickingClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *tickingClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(time.Millisecond)
	return c.now
}

func (c *tickingClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// TestAcceptedFindings: an accepted finding is shown as accepted and fails
// neither the run nor a compliance control, until it is withdrawn or its
// time is up; each decision is in the audit log.
func TestAcceptedFindings(t *testing.T) {
	pg := newPG(t, adminURL())
	pg.load(t, "clean", "rls_disabled", "lints/card_columns_exposed.pos")
	st := testenv.ClickHouse(t)
	createTables(t, st)
	clock := &tickingClock{now: time.Now().UTC()}
	cfg := pg.config()
	cfg.Now = clock.Now
	v := validator(t, cfg, Deps{Store: st})
	e := server(t, v)

	res := run(t, v, "database", "permissions", false)
	venues := find(res.Issues, "rls_disabled_in_public")
	if res.Valid || len(venues) != 1 || venues[0].Accepted != nil {
		t.Fatalf("before acceptance: valid %v, %+v; want invalid with one unaccepted rls_disabled_in_public", res.Valid, venues)
	}
	key := venues[0].CacheKey

	until := clock.Now().Add(time.Hour).Truncate(time.Second)
	body := fmt.Sprintf(`{"cache_key":%q,"reason":"venues are public on purpose","until":%q,"accepted_by":"Ana (DPO)"}`, key, until.Format(time.RFC3339))
	rec := do(e, http.MethodPost, PathAccepted, adminToken, "application/json", body)
	wantStatus(t, rec, http.StatusOK)
	var a Acceptance
	if err := json.Unmarshal(rec.Body.Bytes(), &a); err != nil || a.CacheKey != key || a.AcceptedBy != "Ana (DPO)" || a.Principal != "ops" || !a.Until.Equal(until) || a.AuditID == "" {
		t.Fatalf("POST accepted: %s (%v)", rec.Body, err)
	}

	res = run(t, v, "database", "permissions", false)
	venues = find(res.Issues, "rls_disabled_in_public")
	if !res.Valid || len(venues) != 1 || venues[0].Accepted == nil || venues[0].Accepted.Reason != "venues are public on purpose" {
		t.Fatalf("after acceptance: valid %v, %+v; want valid, the finding shown as accepted", res.Valid, venues)
	}

	rec = do(e, http.MethodGet, PathAccepted, adminToken, "", "")
	wantStatus(t, rec, http.StatusOK)
	var list AcceptedList
	if err := json.Unmarshal(rec.Body.Bytes(), &list); err != nil || len(list.Accepted) != 1 || list.Accepted[0].CacheKey != key {
		t.Fatalf("GET accepted: %s (%v)", rec.Body, err)
	}
	if n := testenv.Count(t, st, "SELECT count() FROM "+st.T("audit_log")+" WHERE action = 'finding_accepted' AND principal = 'ops' AND target = '"+key+"'"); n != 1 {
		t.Errorf("audit records of the acceptance: %d; want 1", n)
	}

	// An accepted card finding passes the PCI control, with the
	// acceptance as evidence.
	sec := run(t, v, "database", "security", false)
	cards := find(sec.Issues, "card_columns_exposed")
	if len(cards) != 1 {
		t.Fatalf("card findings %+v", cards)
	}
	rec = do(e, http.MethodPost, PathAccepted, adminToken, "application/json",
		fmt.Sprintf(`{"cache_key":%q,"reason":"test data only","until":%q}`, cards[0].CacheKey, until.Format(time.RFC3339)))
	wantStatus(t, rec, http.StatusOK)
	rep := v.Compliance(context.Background(), "ops", true)
	for _, fr := range rep.Frameworks {
		for _, c := range fr.Controls {
			if c.ID == "pci.no_card_data_exposed" && (c.Status != "pass" || !strings.Contains(strings.Join(c.Evidence, "\n"), "accepted until")) {
				t.Errorf("pci control with the card finding accepted: %+v", c)
			}
		}
	}

	// Withdrawn: the finding fails again; withdrawing twice changes nothing.
	rec = do(e, http.MethodDelete, PathAccepted+"/"+key, adminToken, "", "")
	wantStatus(t, rec, http.StatusOK)
	if !strings.Contains(rec.Body.String(), `"withdrawn":true`) {
		t.Errorf("DELETE: %s; want withdrawn", rec.Body)
	}
	if res = run(t, v, "database", "permissions", false); res.Valid {
		t.Error("after withdrawal the run is still valid")
	}
	rec = do(e, http.MethodDelete, PathAccepted+"/"+key, adminToken, "", "")
	wantStatus(t, rec, http.StatusOK)
	if !strings.Contains(rec.Body.String(), `"withdrawn":false`) {
		t.Errorf("second DELETE: %s; want not withdrawn", rec.Body)
	}

	// Expired: accepted again, then the time is up.
	rec = do(e, http.MethodPost, PathAccepted, adminToken, "application/json", body)
	wantStatus(t, rec, http.StatusOK)
	if res = run(t, v, "database", "permissions", false); !res.Valid {
		t.Error("accepted again: the run is not valid")
	}
	clock.advance(2 * time.Hour)
	if res = run(t, v, "database", "permissions", false); res.Valid || find(res.Issues, "rls_disabled_in_public")[0].Accepted != nil {
		t.Error("after the acceptance expired the finding is still accepted")
	}
}

func TestAcceptedRequests(t *testing.T) {
	st := testenv.ClickHouse(t)
	createTables(t, st)
	e := server(t, validator(t, Config{}, Deps{Store: st}))
	key := strings.Repeat("ab", 32)
	soon := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	for _, c := range []struct {
		body   string
		status int
		field  string
	}{
		{"", http.StatusBadRequest, "body"},
		{`[]`, http.StatusBadRequest, "body"},
		{`{"cache_key":"` + key + `","reason":"x","until":"` + soon + `","extra":1}`, http.StatusBadRequest, "extra"},
		{`{"reason":"x","until":"` + soon + `"}`, http.StatusBadRequest, "cache_key"},
		{`{"cache_key":"ABC","reason":"x","until":"` + soon + `"}`, http.StatusBadRequest, "cache_key"},
		{`{"cache_key":"` + key + `","until":"` + soon + `"}`, http.StatusBadRequest, "reason"},
		{`{"cache_key":"` + key + `","reason":"x"}`, http.StatusBadRequest, "until"},
		{`{"cache_key":"` + key + `","reason":"x","until":"tomorrow"}`, http.StatusBadRequest, "until"},
		{`{"cache_key":"` + key + `","reason":"x","until":"2001-01-01T00:00:00Z"}`, http.StatusBadRequest, "until"},
		{`{"cache_key":"` + key + `","reason":"x","until":"2999-01-01T00:00:00Z"}`, http.StatusBadRequest, "until"},
		{`{"cache_key":"` + key + `","reason":7,"until":"` + soon + `"}`, http.StatusBadRequest, "reason"},
		{`{"cache_key":"` + key + `","reason":"x","until":"` + soon + `","accepted_by":" "}`, http.StatusBadRequest, "accepted_by"},
	} {
		rec := do(e, http.MethodPost, PathAccepted, adminToken, "application/json", c.body)
		if rec.Code != c.status {
			t.Errorf("%s: %d %s; want %d", c.body, rec.Code, rec.Body, c.status)
			continue
		}
		if b := errorBody(t, rec.Body.Bytes()); len(b.Details) == 0 || b.Details[0].Field != c.field {
			t.Errorf("%s: details %+v; want a field error on %s", c.body, b.Details, c.field)
		}
	}
	wantStatus(t, do(e, http.MethodPost, PathAccepted, adminToken, "text/plain", `{}`), http.StatusUnsupportedMediaType)
	rec := do(e, http.MethodDelete, PathAccepted+"/not-a-key", adminToken, "", "")
	wantStatus(t, rec, http.StatusBadRequest)
	if b := errorBody(t, rec.Body.Bytes()); len(b.Details) != 1 || b.Details[0].Field != "cache_key" {
		t.Errorf("DELETE with a bad key: %s", rec.Body)
	}
	wantStatus(t, do(e, http.MethodGet, PathAccepted+"?all=1", adminToken, "", ""), http.StatusBadRequest)

	// Without an audit log there is nowhere to record a decision.
	e = server(t, validator(t, Config{}, Deps{}))
	body := `{"cache_key":"` + key + `","reason":"x","until":"` + soon + `"}`
	wantStatus(t, do(e, http.MethodPost, PathAccepted, adminToken, "application/json", body), http.StatusServiceUnavailable)
	wantStatus(t, do(e, http.MethodGet, PathAccepted, adminToken, "", ""), http.StatusServiceUnavailable)
	wantStatus(t, do(e, http.MethodDelete, PathAccepted+"/"+key, adminToken, "", ""), http.StatusServiceUnavailable)
}

func TestLintCatalogueRoute(t *testing.T) {
	e := server(t, validator(t, Config{}, Deps{}))
	for _, path := range []string{PathLints, PathAccepted} {
		wantStatus(t, do(e, http.MethodGet, path, "", "", ""), http.StatusUnauthorized)
		wantStatus(t, do(e, http.MethodGet, path, ingestToken, "", ""), http.StatusForbidden)
	}
	wantStatus(t, do(e, http.MethodGet, PathLints+"?x=1", adminToken, "", ""), http.StatusBadRequest)
	rec := do(e, http.MethodGet, PathLints, adminToken, "", "")
	wantStatus(t, rec, http.StatusOK)
	var c LintCatalogue
	if err := json.Unmarshal(rec.Body.Bytes(), &c); err != nil {
		t.Fatal(err)
	}
	splinter := 0
	for _, l := range c.Lints {
		if l.Splinter != "" {
			splinter++
		}
		if l.ID == "" || l.Severity == "" || l.Description == "" || l.Remediation == "" || l.ValidationType == "" {
			t.Errorf("incomplete catalogue entry %+v", l)
		}
	}
	if splinter != 29 || len(c.Lints) != 29+len(pulseLints) {
		t.Errorf("%d lints, %d of splinter; want %d, 29", len(c.Lints), splinter, 29+len(pulseLints))
	}
	if l := catalogue["unindexed_foreign_keys"]; l.Level != "INFO" || l.Severity != SeverityInfo || l.Category != "PERFORMANCE" ||
		l.Remediation != "https://supabase.com/docs/guides/database/database-linter?lint=0001_unindexed_foreign_keys" {
		t.Errorf("0001: %+v", l)
	}
}
