package validate

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/wedsync/pulse/internal/chstore"
	"github.com/wedsync/pulse/internal/httpapi"
)

func newID() string { return uuid.NewString() }

// recordRun stores a validation run and its audit record. Without a store
// it does nothing.
func (v *Validator) recordRun(ctx context.Context, who string, res Result) error {
	st := v.deps.Store
	if st == nil {
		return nil
	}
	var errs, warns, infos uint32
	for _, is := range res.Issues {
		switch is.Severity {
		case SeverityCritical:
			errs++
		case SeverityWarning:
			warns++
		default:
			infos++
		}
	}
	issues, _ := json.Marshal(res.Issues)
	now := v.cfg.Now()
	err := st.Insert(ctx, "", "validation_runs", []chstore.Column{
		{Name: "ts", Values: []time.Time{res.CheckedAt}},
		{Name: "ts_ms", Values: []uint64{uint64(now.UnixMilli())}},
		{Name: "run_id", Values: []string{res.RunID}},
		{Name: "principal", Values: []string{who}},
		{Name: "component", Values: []string{res.Component}},
		{Name: "validation_type", Values: []string{res.ValidationType}},
		{Name: "strict_mode", Values: []uint8{b2u(res.StrictMode)}},
		{Name: "valid", Values: []uint8{b2u(res.Valid)}},
		{Name: "errors", Values: []uint32{errs}},
		{Name: "warnings", Values: []uint32{warns}},
		{Name: "infos", Values: []uint32{infos}},
		{Name: "issues", Values: []string{string(issues)}},
		{Name: "duration_ms", Values: []float64{res.DurationMS}},
	})
	if err != nil {
		return fmt.Errorf("record validation run: %w", err)
	}
	outcome := "valid"
	if !res.Valid {
		outcome = "invalid"
	}
	_, err = v.audit(ctx, who, "architecture_validation", res.Component+"/"+res.ValidationType, outcome,
		map[string]any{"run_id": res.RunID, "strict_mode": res.StrictMode, "errors": errs, "warnings": warns, "infos": infos})
	return err
}

func b2u(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

// audit appends an admin action to audit_log and returns its id.
func (v *Validator) audit(ctx context.Context, who, action, target, outcome string, details map[string]any) (string, error) {
	id := newID()
	d, _ := json.Marshal(details)
	err := v.deps.Store.Insert(ctx, "", "audit_log", []chstore.Column{
		{Name: "ts", Values: []time.Time{v.cfg.Now().UTC()}},
		{Name: "id", Values: []string{id}},
		{Name: "principal", Values: []string{who}},
		{Name: "action", Values: []string{action}},
		{Name: "target", Values: []string{target}},
		{Name: "outcome", Values: []string{outcome}},
		{Name: "details", Values: []string{string(d)}},
	})
	if err != nil {
		return "", fmt.Errorf("record %s in the audit log: %w", action, err)
	}
	return id, nil
}

// Run is a recorded validation run.
type Run struct {
	RunID          string    `json:"run_id"`
	CheckedAt      time.Time `json:"checked_at"`
	Principal      string    `json:"principal"`
	Component      string    `json:"component"`
	ValidationType string    `json:"validation_type"`
	StrictMode     bool      `json:"strict_mode"`
	Valid          bool      `json:"valid"`
	Errors         uint32    `json:"errors"` // critical findings
	Warnings       uint32    `json:"warnings"`
	Infos          uint32    `json:"infos"`
	Issues         []Issue   `json:"issues"`
	DurationMS     float64   `json:"duration_ms"`
}

// History is the answer of GET /architecture/history.
type History struct {
	Runs []Run `json:"runs"`
}

func (v *Validator) serveHistory(c echo.Context) error {
	p := httpapi.NewParams(c.QueryString(), "limit", "component", "validation_type")
	limit := p.Int("limit", v.cfg.HistoryLimit, 1, maxHistory)
	comp := p.Enum("component", "", Components...)
	typ := p.Enum("validation_type", "", ValidationTypes...)
	if err := p.Err(); err != nil {
		return err
	}
	st := v.deps.Store
	if st == nil {
		return httpapi.Errorf(http.StatusServiceUnavailable, "unavailable", "the validation history is not configured")
	}
	where := []string{"1 = 1"}
	if comp != "" {
		where = append(where, "component = "+chstore.Quote(comp))
	}
	if typ != "" {
		where = append(where, "validation_type = "+chstore.Quote(typ))
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), v.cfg.Timeout)
	defer cancel()
	rows, err := st.Query(ctx, "SELECT run_id, ts, principal, component, validation_type, strict_mode, valid, errors, warnings, infos, issues, duration_ms FROM "+
		st.T("validation_runs")+" WHERE "+strings.Join(where, " AND ")+fmt.Sprintf(" ORDER BY ts_ms DESC, run_id DESC LIMIT %d", limit))
	if err != nil {
		v.log.Error().Err(err).Msg("read validation history")
		return httpapi.Unavailable("the validation history cannot be read now", retryAfter)
	}
	defer rows.Close()
	h := History{Runs: []Run{}}
	for rows.Next() {
		var r Run
		var strict, ok uint8
		var issues string
		if err := rows.Scan(&r.RunID, &r.CheckedAt, &r.Principal, &r.Component, &r.ValidationType, &strict, &ok,
			&r.Errors, &r.Warnings, &r.Infos, &issues, &r.DurationMS); err != nil {
			v.log.Error().Err(err).Msg("read validation history")
			return httpapi.Unavailable("the validation history cannot be read now", retryAfter)
		}
		r.StrictMode, r.Valid = strict == 1, ok == 1
		r.Issues = []Issue{}
		_ = json.Unmarshal([]byte(issues), &r.Issues)
		for i := range r.Issues {
			if r.Issues[i].Severity == legacySeverity {
				r.Issues[i].Severity = SeverityCritical
			}
		}
		h.Runs = append(h.Runs, r)
	}
	if err := rows.Err(); err != nil {
		v.log.Error().Err(err).Msg("read validation history")
		return httpapi.Unavailable("the validation history cannot be read now", retryAfter)
	}
	return c.JSON(http.StatusOK, h)
}
