package validate

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/wedsync/pulse/internal/chstore"
	"github.com/wedsync/pulse/internal/testenv"
)

func TestEraseUserMetrics(t *testing.T) {
	for name, st := range testenv.Backends(t) {
		t.Run(name, func(t *testing.T) {
			createTables(t, st)
			alice, bob := uuid.New(), uuid.New()
			var rows []req
			for i := range 30 {
				rows = append(rows, req{endpoint: "/api/forms", status: 200, ms: 50, user: alice, ago: time.Duration(i) * time.Hour})
			}
			for range 20 {
				rows = append(rows, req{endpoint: "/api/forms", status: 200, ms: 50, user: bob, ago: time.Minute})
			}
			rows = append(rows, req{endpoint: "/healthz", status: 200, ms: 1, ago: time.Minute}) // no user
			insertRequests(t, st, rows)
			e := server(t, validator(t, Config{}, Deps{Store: st}))

			// Upper-case hex is the same UUID.
			rec := do(e, http.MethodDelete, "/api/admin/users/"+strings.ToUpper(alice.String())+"/metrics", adminToken, "", "")
			wantStatus(t, rec, http.StatusOK)
			var got Erasure
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
				t.Fatal(err)
			}
			if got.UserID != alice.String() || got.Status != "completed" || got.RowsDeleted != 30 || got.AuditID == "" || got.Note == "" {
				t.Errorf("answer %+v", got)
			}
			count := func(u uuid.UUID) uint64 {
				return testenv.Count(t, st, "SELECT count() FROM "+st.T("requests")+" WHERE user_id = toUUID("+chstore.Quote(u.String())+")")
			}
			if n := count(alice); n != 0 {
				t.Errorf("%d of alice's rows left; want 0", n)
			}
			if n := count(bob); n != 20 {
				t.Errorf("%d of bob's rows; want 20 (untouched)", n)
			}
			if n := count(uuid.Nil); n != 1 {
				t.Errorf("%d rows without a user; want 1", n)
			}
			// The request and its outcome are in the audit log, under a hash of the id.
			sum := fmt.Sprintf("user sha256:%x", sha(alice.String()))
			if n := testenv.Count(t, st, "SELECT count() FROM "+st.T("audit_log")+" WHERE action = 'user_metrics_erasure' AND principal = 'ops' AND target = "+
				chstore.Quote(sum)+" AND outcome IN ('requested', 'completed')"); n != 2 {
				t.Errorf("%d audit records; want requested and completed", n)
			}
			if n := testenv.Count(t, st, "SELECT count() FROM "+st.T("audit_log")+" WHERE position(target, "+chstore.Quote(alice.String())+") > 0 OR position(details, "+chstore.Quote(alice.String())+") > 0"); n != 0 {
				t.Errorf("the audit log holds the user id in clear")
			}

			// A user without rows: nothing to delete, still recorded.
			rec = do(e, http.MethodDelete, "/api/admin/users/"+uuid.NewString()+"/metrics", adminToken, "", "")
			wantStatus(t, rec, http.StatusOK)
			if !strings.Contains(rec.Body.String(), `"rows_deleted":0`) {
				t.Errorf("answer %s", rec.Body)
			}
		})
	}
}

func sha(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

func TestErasePending(t *testing.T) {
	for name, st := range testenv.Backends(t) {
		t.Run(name, func(t *testing.T) {
			createTables(t, st)
			u := uuid.New()
			insertRequests(t, st, []req{{endpoint: "/x", status: 200, ms: 1, user: u, ago: time.Minute}, {endpoint: "/stuck", status: 200, ms: 1, ago: time.Minute}})
			// A mutation for this user that cannot finish (it fails on every
			// try): the erasure answers 202 pending when its wait runs out.
			// (chDB runs it at once and reports its failure; the server runs it
			// in the background.)
			_ = st.Exec(t.Context(), "ALTER TABLE "+st.T("requests")+" DELETE WHERE (user_id = toUUID("+chstore.Quote(u.String())+") OR endpoint = '/stuck') AND throwIf(endpoint = '/stuck') = 0")
			if n := testenv.Count(t, st, "SELECT count() FROM system.mutations WHERE database = "+chstore.Quote(st.Database())+" AND is_done = 0"); n != 1 {
				t.Fatalf("%d unfinished mutations; want the stuck one", n)
			}
			e := server(t, validator(t, Config{ErasureWait: 300 * time.Millisecond}, Deps{Store: st}))
			rec := do(e, http.MethodDelete, "/api/admin/users/"+u.String()+"/metrics", adminToken, "", "")
			wantStatus(t, rec, http.StatusAccepted)
			if !strings.Contains(rec.Body.String(), `"status":"pending"`) {
				t.Errorf("answer %s", rec.Body)
			}
			if n := testenv.Count(t, st, "SELECT count() FROM "+st.T("audit_log")+" WHERE outcome = 'pending'"); n != 1 {
				t.Errorf("%d pending erasures recorded; want 1", n)
			}
		})
	}
}

func TestEraseBadInput(t *testing.T) {
	st := testenv.ClickHouse(t)
	createTables(t, st)
	e := server(t, validator(t, Config{}, Deps{Store: st}))
	for _, id := range []string{
		"not-a-uuid", "0b6f4bd41c534c699f430a5f7a1f2d11", "{0b6f4bd4-1c53-4c69-9f43-0a5f7a1f2d11}",
		"urn:uuid:0b6f4bd4-1c53-4c69-9f43-0a5f7a1f2d11", "0b6f4bd4-1c53-4c69-9f43-0a5f7a1f2d1g",
		"0b6f4bd4-1c53-4c69-9f43-0a5f7a1f2d11')%20OR%20('1'='1", "00000000-0000-0000-0000-000000000000",
	} {
		rec := do(e, http.MethodDelete, "/api/admin/users/"+id+"/metrics", adminToken, "", "")
		wantStatus(t, rec, http.StatusBadRequest)
		if b := errorBody(t, rec.Body.Bytes()); len(b.Details) != 1 || b.Details[0].Field != "user_id" {
			t.Errorf("%s: details %+v", id, b.Details)
		}
	}
	wantStatus(t, do(e, http.MethodDelete, "/api/admin/users/"+uuid.NewString()+"/metrics?force=true", adminToken, "", ""), http.StatusBadRequest)
	if n := testenv.Count(t, st, "SELECT count() FROM "+st.T("audit_log")); n != 0 {
		t.Errorf("%d audit records of refused requests; want 0", n)
	}

	// Without a store, or without the audit table, nothing is deleted.
	wantStatus(t, do(server(t, validator(t, Config{}, Deps{})), http.MethodDelete, "/api/admin/users/"+uuid.NewString()+"/metrics", adminToken, "", ""),
		http.StatusServiceUnavailable)
	u := uuid.New()
	insertRequests(t, st, []req{{endpoint: "/x", status: 200, ms: 1, user: u, ago: time.Minute}})
	if err := st.Exec(t.Context(), "DROP TABLE "+st.T("audit_log")); err != nil {
		t.Fatal(err)
	}
	rec := do(e, http.MethodDelete, "/api/admin/users/"+u.String()+"/metrics", adminToken, "", "")
	wantStatus(t, rec, http.StatusServiceUnavailable)
	if rec.Header().Get("Retry-After") == "" {
		t.Error("no Retry-After")
	}
	if n := testenv.Count(t, st, "SELECT count() FROM "+st.T("requests")+" WHERE user_id = toUUID("+chstore.Quote(u.String())+")"); n != 1 {
		t.Errorf("deleted without an audit record")
	}
	// The deletion itself failing is recorded as failed.
	createTables(t, st)
	if err := st.Exec(t.Context(), "DROP TABLE "+st.T("requests")); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, do(e, http.MethodDelete, "/api/admin/users/"+u.String()+"/metrics", adminToken, "", ""), http.StatusServiceUnavailable)
	if n := testenv.Count(t, st, "SELECT count() FROM "+st.T("audit_log")+" WHERE outcome = 'failed'"); n != 1 {
		t.Errorf("%d failed erasures recorded; want 1", n)
	}
}

func TestMutationsSupported(t *testing.T) {
	for name, st := range testenv.Backends(t) {
		if !mutations(st) {
			t.Errorf("%s %s: mutations not supported", name, st.Version())
		}
	}
}
