package validate

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/wedsync/pulse/internal/chstore"
	"github.com/wedsync/pulse/internal/httpapi"
)

// uuidText is a UUID in its canonical 8-4-4-4-12 form.
var uuidText = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

const nilUUID = "00000000-0000-0000-0000-000000000000"

// Erasure is the answer of DELETE /api/admin/users/:user_id/metrics.
type Erasure struct {
	UserID      string    `json:"user_id"`
	Status      string    `json:"status"`       // completed, or pending when ClickHouse is still deleting
	RowsDeleted uint64    `json:"rows_deleted"` // the user's rows found when the deletion started
	AuditID     string    `json:"audit_id"`     // the audit_log record of the request
	RequestedAt time.Time `json:"requested_at"`
	Note        string    `json:"note"`
}

const erasureNote = "Rows of this user still in the ingest stream (not yet stored) are stored later and need another erasure; " +
	"the 1-minute rollups hold no user ids."

// serveErase deletes one user's request rows. The user id is checked
// strictly and goes into SQL only as a quoted literal; the request is in
// the audit log before anything is deleted (without a record, nothing is
// deleted), and its outcome after. 200 when ClickHouse finished within
// ErasureWait, else 202 (the mutation carries on).
func (v *Validator) serveErase(c echo.Context) error {
	id := strings.ToLower(c.Param("user_id"))
	if err := httpapi.NewParams(c.QueryString()).Err(); err != nil {
		return err
	}
	switch {
	case !uuidText.MatchString(id):
		return badRequest("invalid user id", fieldError("user_id", "must be a UUID (8-4-4-4-12 hex digits)"))
	case id == nilUUID:
		return badRequest("invalid user id", fieldError("user_id", "must not be the nil UUID, which marks requests without a user"))
	}
	st := v.deps.Store
	if st == nil {
		return httpapi.Errorf(http.StatusServiceUnavailable, "unavailable", "erasure needs the ClickHouse store, which is not configured")
	}
	if !mutations(st) {
		return httpapi.Errorf(http.StatusServiceUnavailable, "unavailable", "this ClickHouse version cannot delete rows (mutations need 1.1.54388 or later)")
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), v.cfg.ErasureWait+v.cfg.Timeout)
	defer cancel()
	who := principal(c)
	sum := sha256.Sum256([]byte(id))
	subject := hex.EncodeToString(sum[:])
	target := "user sha256:" + subject
	res := Erasure{UserID: id, RequestedAt: v.cfg.Now().UTC().Truncate(time.Second), Note: erasureNote}
	auditID, err := v.audit(ctx, who, "user_metrics_erasure", target, "requested", map[string]any{"subject_sha256": subject})
	if err != nil {
		v.log.Error().Err(err).Msg("erasure not recorded; nothing deleted")
		return httpapi.Unavailable("the erasure cannot be recorded in the audit log, so it was not started", retryAfter)
	}
	res.AuditID = auditID
	cond := "user_id = toUUID(" + chstore.Quote(id) + ")"
	if err = st.QueryRow(ctx, "SELECT count() FROM "+st.T("requests")+" WHERE "+cond, &res.RowsDeleted); err == nil {
		// chDB runs mutations synchronously and reports the failure of an
		// earlier one that blocks this one: queued is started all the same.
		if err = st.Exec(ctx, "ALTER TABLE "+st.T("requests")+" DELETE WHERE "+cond); err != nil && queued(ctx, st, cond) {
			err = nil
		}
	}
	if err != nil {
		v.log.Error().Err(err).Str("audit_id", auditID).Msg("erase user metrics")
		_, _ = v.audit(context.WithoutCancel(ctx), who, "user_metrics_erasure", target, "failed", map[string]any{"request_id": auditID})
		return httpapi.Unavailable("the erasure could not be started; retry", retryAfter)
	}
	res.Status = "pending"
	if v.waitMutation(ctx, st, id) {
		res.Status = "completed"
	}
	if _, err := v.audit(context.WithoutCancel(ctx), who, "user_metrics_erasure", target, res.Status,
		map[string]any{"request_id": auditID, "rows": res.RowsDeleted}); err != nil {
		v.log.Error().Err(err).Str("audit_id", auditID).Msg("erasure outcome not recorded")
	}
	if res.Status == "completed" {
		return c.JSON(http.StatusOK, res)
	}
	return c.JSON(http.StatusAccepted, res)
}

// mutations reports whether the store can run ALTER TABLE ... DELETE:
// ClickHouse 1.1.54388 and later (every 18.x), chDB always.
func mutations(st *chstore.Store) bool {
	v := st.Version()
	return st.Kind() == "chdb" || v.Major >= 18
}

// queued reports whether a mutation deleting the rows of cond exists.
func queued(ctx context.Context, st *chstore.Store, cond string) bool {
	var n uint64
	err := st.QueryRow(ctx, "SELECT count() FROM system.mutations WHERE database = "+chstore.Quote(st.Database())+
		" AND table = 'requests' AND position(command, "+chstore.Quote("DELETE WHERE "+cond)+") > 0", &n)
	return err == nil && n > 0
}

// waitMutation waits until no unfinished mutation of requests mentions id,
// for at most ErasureWait. It reports whether they finished.
func (v *Validator) waitMutation(ctx context.Context, st *chstore.Store, id string) bool {
	deadline := time.Now().Add(v.cfg.ErasureWait)
	q := "SELECT count() FROM system.mutations WHERE database = " + chstore.Quote(st.Database()) +
		" AND table = 'requests' AND is_done = 0 AND position(command, " + chstore.Quote(id) + ") > 0"
	for {
		var n uint64
		if err := st.QueryRow(ctx, q, &n); err == nil && n == 0 {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		t := time.NewTimer(50 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
	}
}
