package validate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/wedsync/pulse/internal/auth"
	"github.com/wedsync/pulse/internal/event"
	"github.com/wedsync/pulse/internal/httpapi"
)

// Routes of the validator.
const (
	PathValidate   = "/api/admin/architecture/validate"
	PathCompliance = "/api/admin/architecture/compliance"
	PathHistory    = "/api/admin/architecture/history"
	PathErase      = "/api/admin/users/:user_id/metrics"
)

const (
	maxBody    = 64 << 10
	maxHistory = 100
	retryAfter = 5 * time.Second
)

// Register adds the validator's routes to r, all admin-only.
func (v *Validator) Register(r *httpapi.Router) {
	r.Handle(http.MethodPost, PathValidate, auth.ScopeAdmin, v.serveValidate)
	r.Handle(http.MethodGet, PathCompliance, auth.ScopeAdmin, v.serveCompliance)
	r.Handle(http.MethodGet, PathHistory, auth.ScopeAdmin, v.serveHistory)
	r.Handle(http.MethodDelete, PathErase, auth.ScopeAdmin, v.serveErase)
	r.Handle(http.MethodGet, PathLints, auth.ScopeAdmin, v.serveLints)
	r.Handle(http.MethodGet, PathAccepted, auth.ScopeAdmin, v.serveAccepted)
	r.Handle(http.MethodPost, PathAccepted, auth.ScopeAdmin, v.serveAccept)
	r.Handle(http.MethodDelete, PathAcceptedKey, auth.ScopeAdmin, v.serveWithdraw)
}

// request is the body of POST /architecture/validate (the spec's
// validationSchema).
type request struct {
	Component      *string `json:"component"`
	ValidationType *string `json:"validation_type"`
	StrictMode     *bool   `json:"strict_mode"`
}

var requestFields = []string{"component", "validation_type", "strict_mode"}

func badRequest(message string, details ...event.FieldError) error {
	return httpapi.Errorf(http.StatusBadRequest, "invalid_request", message, details...)
}

func fieldError(field, message string) event.FieldError {
	return event.FieldError{Field: field, Message: message}
}

// decodeRequest reads the body strictly: one JSON object of the known
// fields, each of its type.
func decodeRequest(c echo.Context) (request, error) {
	var req request
	if ct := c.Request().Header.Get(echo.HeaderContentType); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != echo.MIMEApplicationJSON {
			return req, httpapi.Errorf(http.StatusUnsupportedMediaType, "unsupported_media_type", "the body must be application/json")
		}
	}
	body, err := io.ReadAll(io.LimitReader(c.Request().Body, maxBody+1))
	if err != nil {
		return req, badRequest("the body could not be read", fieldError("body", "could not be read"))
	}
	if len(body) > maxBody {
		return req, httpapi.Errorf(http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("the body must be at most %d bytes", maxBody))
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return req, badRequest("a JSON body is required", fieldError("body", "is required: {\"component\": ..., \"validation_type\": ..., \"strict_mode\": false}"))
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
	case errors.As(err, &typeErr) && typeErr.Field == "":
		return req, badRequest("invalid body", fieldError("body", "must be a JSON object"))
	case errors.As(err, &typeErr):
		want := "a string"
		if typeErr.Field == "strict_mode" {
			want = "true or false"
		}
		return req, badRequest("invalid body", fieldError(typeErr.Field, "must be "+want))
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name, _ := strconv.Unquote(strings.TrimPrefix(err.Error(), "json: unknown field "))
		return req, badRequest("invalid body", fieldError(httpapi.SafeName(name), "is not a field of this request (allowed: "+strings.Join(requestFields, ", ")+")"))
	default:
		return req, badRequest("invalid body", fieldError("body", "is not valid JSON"))
	}
	var errs []event.FieldError
	enum := func(field string, v *string, values []string) {
		switch {
		case v == nil:
			errs = append(errs, fieldError(field, "is required: one of "+strings.Join(values, ", ")))
		case !slices.Contains(values, *v):
			errs = append(errs, fieldError(field, "must be one of "+strings.Join(values, ", ")))
		}
	}
	enum("component", req.Component, Components)
	enum("validation_type", req.ValidationType, ValidationTypes)
	if len(errs) > 0 {
		return req, badRequest("invalid body", errs...)
	}
	if !Supported(*req.Component, *req.ValidationType) {
		return req, badRequest(fmt.Sprintf("%s does not support %s validation", *req.Component, *req.ValidationType),
			fieldError("validation_type", fmt.Sprintf("%s supports %s; valid pairs: %s", *req.Component,
				strings.Join(pairs[*req.Component], ", "), validPairs())))
	}
	return req, nil
}

// validPairs lists every supported component x type pair.
func validPairs() string {
	var out []string
	for _, c := range Components {
		for _, t := range pairs[c] {
			out = append(out, c+"/"+t)
		}
	}
	return strings.Join(out, ", ")
}

func principal(c echo.Context) string {
	p, _ := httpapi.PrincipalOf(c)
	return p.Name
}

func (v *Validator) serveValidate(c echo.Context) error {
	req, err := decodeRequest(c)
	if err != nil {
		return err
	}
	res := v.Validate(c.Request().Context(), principal(c), *req.Component, *req.ValidationType, req.StrictMode != nil && *req.StrictMode)
	return c.JSON(http.StatusOK, res)
}

// Validate runs the checks of component x typ, records the run and
// publishes an alert when it is not valid. It never fails: a check that
// cannot run, or an unsupported pair, is a critical finding. It is safe for
// concurrent use.
func (v *Validator) Validate(ctx context.Context, who, component, typ string, strict bool) Result {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, v.cfg.Timeout)
	defer cancel()
	f := &findings{category: typ}
	var plans []QueryPlan
	if Supported(component, typ) {
		plans = v.check(ctx, component, typ, f)
	} else {
		f.add("unsupported_validation", SeverityCritical, component+"/"+typ, "There is no "+typ+" validation of "+component+".",
			"Ask for one of the supported pairs: "+validPairs()+".")
	}
	issues, recs := finish(f.issues)
	v.markAccepted(ctx, issues)
	if len(issues) == 0 {
		recs = []string{fmt.Sprintf("%s %s is compliant: no findings.", component, typ)}
	}
	res := Result{
		RunID: newID(), Valid: valid(issues, strict), Component: component, ValidationType: typ, StrictMode: strict,
		Issues: issues, Recommendations: recs, OptimizationPlans: plans, NotApplicable: f.notApplicable,
		CheckedAt: v.cfg.Now().UTC().Truncate(time.Second), DurationMS: round3(msOf(time.Since(start))),
	}
	if component == "database" && typ == "performance" && v.pool != nil {
		pool := v.poolFacts
		res.ConnectionPool = &pool
	}
	// Recording and alerting get their own time: a run that used up its
	// budget is still recorded.
	rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer rcancel()
	if err := v.recordRun(rctx, who, res); err != nil {
		v.log.Error().Err(err).Str("run_id", res.RunID).Msg("validation run not recorded")
	} else {
		res.Recorded = v.deps.Store != nil
	}
	if !res.Valid {
		v.alert(rctx, res)
	}
	return res
}

// alertMessage is the JSON published on
// pulse.alerts.<severity>.architecture_validation, in the shape of the
// alerts package's Alert (so that alert subscribers, the alert stream's
// history and `pulse alerts tail` read it like any other alert). A failing
// run fires once: there is no resolved transition, as a later passing run
// is a new run.
type alertMessage struct {
	ID         string            `json:"id"`
	Kind       string            `json:"kind"`
	Rule       string            `json:"rule"`
	State      string            `json:"state"`
	Severity   string            `json:"severity"`
	Labels     map[string]string `json:"labels"`
	Value      *float64          `json:"value"`     // the number of issues
	Threshold  float64           `json:"threshold"` // 0: any error (or warning, in strict mode) fails
	StartedAt  time.Time         `json:"started_at"`
	ResolvedAt *time.Time        `json:"resolved_at"`
	Count      uint64            `json:"count"` // the number of issues
	Message    string            `json:"message"`
}

// AlertRule names the alerts of failing validation runs.
const AlertRule = "architecture_validation"

// alert publishes the alert of a failing run: critical when it has an
// error, else warning (a strict run failed on warnings).
func (v *Validator) alert(ctx context.Context, res Result) {
	if v.deps.Publisher == nil {
		return
	}
	sev, errs, warns := "warning", 0, 0
	for _, is := range res.Issues {
		switch is.Severity {
		case SeverityCritical:
			errs++
			sev = "critical"
		case SeverityWarning:
			warns++
		}
	}
	n := float64(len(res.Issues))
	msg := alertMessage{
		ID: res.RunID, Kind: "alert", Rule: AlertRule, State: "firing", Severity: sev,
		Labels:  map[string]string{"component": res.Component, "validation_type": res.ValidationType},
		Value:   &n,
		Message: fmt.Sprintf("architecture validation %s/%s failed: %d issues (%d errors, %d warnings)", res.Component, res.ValidationType, len(res.Issues), errs, warns),
		Count:   uint64(len(res.Issues)), StartedAt: res.CheckedAt,
	}
	data, _ := json.Marshal(msg)
	if err := v.deps.Publisher.Publish(ctx, "pulse.alerts."+sev+"."+AlertRule, data); err != nil {
		v.log.Error().Err(err).Str("run_id", res.RunID).Msg("validation alert not published")
	}
}
