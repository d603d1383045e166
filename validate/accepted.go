package validate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"github.com/wedsync/pulse/internal/event"
	"github.com/wedsync/pulse/internal/httpapi"
)

// Routes of accepted findings.
const (
	PathAccepted    = "/api/admin/architecture/accepted"
	PathAcceptedKey = "/api/admin/architecture/accepted/:cache_key"
)

// Audit actions of accepted findings. The audit log is their only store:
// the findings accepted now are folded from these records.
const (
	actionAccept   = "finding_accepted"
	actionWithdraw = "finding_acceptance_withdrawn"
)

const (
	maxAcceptance = 366 * 24 * time.Hour // until is at most a year ahead
	maxReason     = 1000
	maxWho        = 200
)

var hexKey = regexp.MustCompile(`^[0-9a-f]{64}$`)

// Acceptance is an admin's decision that a finding is known and tolerated
// until a time: while it holds, the finding is shown with it and fails
// neither a run nor a compliance control.
type Acceptance struct {
	CacheKey   string    `json:"cache_key"`
	AcceptedBy string    `json:"accepted_by"` // who decided (the body's accepted_by, else the principal)
	Principal  string    `json:"principal"`   // the credential's principal that recorded it
	Reason     string    `json:"reason"`
	Until      time.Time `json:"until"`
	AcceptedAt time.Time `json:"accepted_at"`
	AuditID    string    `json:"audit_id"` // the audit_log record
}

// AcceptedList is the answer of GET /architecture/accepted.
type AcceptedList struct {
	Accepted []Acceptance `json:"accepted"`
}

// Withdrawal is the answer of DELETE /architecture/accepted/{cache_key}.
type Withdrawal struct {
	CacheKey  string `json:"cache_key"`
	Withdrawn bool   `json:"withdrawn"` // false: the finding was not accepted (or had expired)
}

type acceptRequest struct {
	CacheKey   *string `json:"cache_key"`
	Reason     *string `json:"reason"`
	Until      *string `json:"until"`
	AcceptedBy *string `json:"accepted_by"`
}

var acceptFields = []string{"cache_key", "reason", "until", "accepted_by"}

type acceptDetails struct {
	Reason     string `json:"reason"`
	Until      string `json:"until"`
	AcceptedBy string `json:"accepted_by"`
	AtMS       int64  `json:"at_ms"`
}

func (v *Validator) serveAccept(c echo.Context) error {
	if v.deps.Store == nil {
		return httpapi.Errorf(http.StatusServiceUnavailable, "unavailable", "accepted findings are not configured (no audit log)")
	}
	req, err := decodeStrict[acceptRequest](c, acceptFields)
	if err != nil {
		return err
	}
	now := v.cfg.Now().UTC()
	var errs []event.FieldError
	var until time.Time
	switch {
	case req.CacheKey == nil:
		errs = append(errs, fieldError("cache_key", "is required: the cache_key of the finding"))
	case !hexKey.MatchString(*req.CacheKey):
		errs = append(errs, fieldError("cache_key", "must be 64 lowercase hex digits (a finding's cache_key)"))
	}
	switch {
	case req.Reason == nil || strings.TrimSpace(*req.Reason) == "":
		errs = append(errs, fieldError("reason", "is required: why the finding is accepted"))
	case utf8.RuneCountInString(*req.Reason) > maxReason || !utf8.ValidString(*req.Reason):
		errs = append(errs, fieldError("reason", "must be valid text of at most 1000 characters"))
	}
	if req.Until == nil {
		errs = append(errs, fieldError("until", "is required: an RFC 3339 time within a year"))
	} else if until, err = time.Parse(time.RFC3339, *req.Until); err != nil {
		errs = append(errs, fieldError("until", "must be an RFC 3339 time, e.g. 2030-01-31T00:00:00Z"))
	} else if !until.After(now) || until.Sub(now) > maxAcceptance {
		errs = append(errs, fieldError("until", "must be in the future and at most 366 days ahead"))
	}
	who := principal(c)
	if req.AcceptedBy != nil {
		if s := strings.TrimSpace(*req.AcceptedBy); s == "" || utf8.RuneCountInString(s) > maxWho || !utf8.ValidString(s) {
			errs = append(errs, fieldError("accepted_by", "must be a name of 1-200 characters"))
		} else {
			who = s
		}
	}
	if len(errs) > 0 {
		return badRequest("invalid body", errs...)
	}
	d := acceptDetails{Reason: *req.Reason, Until: until.UTC().Format(time.RFC3339), AcceptedBy: who, AtMS: now.UnixMilli()}
	id, err := v.audit(c.Request().Context(), principal(c), actionAccept, *req.CacheKey, "accepted", detailsMap(d))
	if err != nil {
		v.log.Error().Err(err).Msg("record an accepted finding")
		return httpapi.Unavailable("the audit log cannot be written now", retryAfter)
	}
	return c.JSON(http.StatusOK, Acceptance{CacheKey: *req.CacheKey, AcceptedBy: who, Principal: principal(c), Reason: d.Reason,
		Until: until.UTC(), AcceptedAt: now.Truncate(time.Second), AuditID: id})
}

func detailsMap(d acceptDetails) map[string]any {
	return map[string]any{"reason": d.Reason, "until": d.Until, "accepted_by": d.AcceptedBy, "at_ms": d.AtMS}
}

func (v *Validator) serveAccepted(c echo.Context) error {
	if err := httpapi.NewParams(c.QueryString()).Err(); err != nil {
		return err
	}
	if v.deps.Store == nil {
		return httpapi.Errorf(http.StatusServiceUnavailable, "unavailable", "accepted findings are not configured (no audit log)")
	}
	acc, err := v.acceptances(c.Request().Context())
	if err != nil {
		v.log.Error().Err(err).Msg("read accepted findings")
		return httpapi.Unavailable("the audit log cannot be read now", retryAfter)
	}
	out := AcceptedList{Accepted: []Acceptance{}}
	for _, a := range acc {
		out.Accepted = append(out.Accepted, a)
	}
	slices.SortFunc(out.Accepted, func(a, b Acceptance) int { return strings.Compare(a.CacheKey, b.CacheKey) })
	return c.JSON(http.StatusOK, out)
}

func (v *Validator) serveWithdraw(c echo.Context) error {
	key := c.Param("cache_key")
	if !hexKey.MatchString(key) {
		return badRequest("invalid cache_key", fieldError("cache_key", "must be 64 lowercase hex digits (a finding's cache_key)"))
	}
	if v.deps.Store == nil {
		return httpapi.Errorf(http.StatusServiceUnavailable, "unavailable", "accepted findings are not configured (no audit log)")
	}
	ctx := c.Request().Context()
	acc, err := v.acceptances(ctx)
	if err != nil {
		v.log.Error().Err(err).Msg("read accepted findings")
		return httpapi.Unavailable("the audit log cannot be read now", retryAfter)
	}
	_, active := acc[key]
	outcome := "not_accepted"
	if active {
		outcome = "withdrawn"
	}
	if _, err := v.audit(ctx, principal(c), actionWithdraw, key, outcome, map[string]any{"at_ms": v.cfg.Now().UnixMilli()}); err != nil {
		v.log.Error().Err(err).Msg("record a withdrawn acceptance")
		return httpapi.Unavailable("the audit log cannot be written now", retryAfter)
	}
	return c.JSON(http.StatusOK, Withdrawal{CacheKey: key, Withdrawn: active})
}

// acceptances folds the audit log's accept and withdraw records, in the
// order they were made, into the findings accepted now.
func (v *Validator) acceptances(ctx context.Context) (map[string]Acceptance, error) {
	st := v.deps.Store
	rows, err := st.Query(ctx, "SELECT id, ts, principal, action, target, details FROM "+st.T("audit_log")+
		" WHERE action IN ('"+actionAccept+"', '"+actionWithdraw+"')")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	type record struct {
		a      Acceptance
		action string
		at     int64
	}
	var recs []record
	for rows.Next() {
		var r record
		var details string
		if err := rows.Scan(&r.a.AuditID, &r.a.AcceptedAt, &r.a.Principal, &r.action, &r.a.CacheKey, &details); err != nil {
			return nil, err
		}
		var d acceptDetails
		_ = json.Unmarshal([]byte(details), &d)
		r.at = d.AtMS
		r.a.Reason, r.a.AcceptedBy = d.Reason, d.AcceptedBy
		r.a.Until, _ = time.Parse(time.RFC3339, d.Until)
		r.a.AcceptedAt = r.a.AcceptedAt.UTC()
		recs = append(recs, r)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	slices.SortStableFunc(recs, func(a, b record) int {
		switch {
		case a.at < b.at:
			return -1
		case a.at > b.at:
			return 1
		}
		return 0
	})
	now := v.cfg.Now()
	out := map[string]Acceptance{}
	for _, r := range recs {
		if r.action == actionWithdraw {
			delete(out, r.a.CacheKey)
			continue
		}
		out[r.a.CacheKey] = r.a
	}
	for k, a := range out {
		if !a.Until.After(now) {
			delete(out, k)
		}
	}
	return out, nil
}

// markAccepted sets Accepted on the issues an admin accepted. Without a
// store, or when the audit log cannot be read, nothing is accepted: a
// finding fails as it would without acceptances.
func (v *Validator) markAccepted(ctx context.Context, issues []Issue) {
	if v.deps.Store == nil || len(issues) == 0 {
		return
	}
	acc, err := v.acceptances(ctx)
	if err != nil {
		v.log.Error().Err(err).Msg("read accepted findings; none applied")
		return
	}
	for i := range issues {
		if a, ok := acc[issues[i].CacheKey]; ok {
			issues[i].Accepted = &a
		}
	}
}

// decodeStrict reads a JSON body strictly: application/json (or no
// Content-Type), at most maxBody bytes, one object of the known fields,
// each of its type.
func decodeStrict[T any](c echo.Context, fields []string) (T, error) {
	var req T
	if ct := c.Request().Header.Get(echo.HeaderContentType); ct != "" {
		if mt, _, _ := strings.Cut(ct, ";"); strings.TrimSpace(strings.ToLower(mt)) != echo.MIMEApplicationJSON {
			return req, httpapi.Errorf(http.StatusUnsupportedMediaType, "unsupported_media_type", "the body must be application/json")
		}
	}
	body, err := io.ReadAll(io.LimitReader(c.Request().Body, maxBody+1))
	if err != nil {
		return req, badRequest("the body could not be read", fieldError("body", "could not be read"))
	}
	if len(body) > maxBody {
		return req, httpapi.Errorf(http.StatusRequestEntityTooLarge, "body_too_large", "the body is too large")
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return req, badRequest("a JSON body is required", fieldError("body", "is required: a JSON object of "+strings.Join(fields, ", ")))
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	err = dec.Decode(&req)
	var typeErr *json.UnmarshalTypeError
	switch {
	case err == nil:
		if len(bytes.TrimSpace(body[dec.InputOffset():])) > 0 {
			return req, badRequest("invalid body", fieldError("body", "must hold exactly one JSON object"))
		}
		return req, nil
	case errors.As(err, &typeErr) && typeErr.Field == "":
		return req, badRequest("invalid body", fieldError("body", "must be a JSON object"))
	case errors.As(err, &typeErr):
		return req, badRequest("invalid body", fieldError(httpapi.SafeName(typeErr.Field), "must be a string"))
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return req, badRequest("invalid body", fieldError(httpapi.SafeName(name), "is not a field of this request (allowed: "+strings.Join(fields, ", ")+")"))
	}
	return req, badRequest("invalid body", fieldError("body", "is not valid JSON"))
}
