package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/wedsync/pulse/alerts"
	"github.com/wedsync/pulse/internal/auth"
	"github.com/wedsync/pulse/internal/chstore"
	"github.com/wedsync/pulse/internal/event"
	"github.com/wedsync/pulse/internal/httpapi"
)

// Store is what the API needs of ClickHouse: whether an alert is in the
// history table, and the audit log. *chstore.Store is one.
type Store interface {
	T(table string) string
	QueryRow(ctx context.Context, query string, dest ...any) error
	Insert(ctx context.Context, queryID, table string, cols []chstore.Column) error
}

// API serves the delivery routes, admin-only:
//
//	GET    /api/admin/alerts/receivers      receivers and their last status
//	POST   /api/admin/alerts/{id}/ack       acknowledge an alert (audit log)
//	POST   /api/admin/silences              create a silence
//	GET    /api/admin/silences              list silences
//	DELETE /api/admin/silences/{id}         expire a silence
//
// Silences live in Alertmanager when one is configured, else in the KV
// bucket PULSE_ALERTS_NOTIFY. It is safe for concurrent use.
type API struct {
	cfg      Config
	js       jetstream.JetStream
	store    Store
	silences silenceStore
	log      zerolog.Logger
}

// NewAPI returns the delivery API for cfg's receivers, reading state
// through js and writing the audit log to store (nil: acks and silence
// changes, which must be audited, answer 503). It fills cfg's defaults
// and checks it; cfg.Registerer is not used.
func NewAPI(cfg Config, js jetstream.JetStream, store Store, log zerolog.Logger) (*API, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("alert delivery API: %w", err)
	}
	cfg.defaults()
	client := &http.Client{Timeout: cfg.Timeout}
	return &API{cfg: cfg, js: js, store: store, silences: newSilenceStore(cfg, js, client),
		log: log.With().Str("component", "alerts.notify.api").Logger()}, nil
}

// Register adds the routes to r, each for admins only.
func (a *API) Register(r *httpapi.Router) {
	r.Handle(http.MethodGet, "/api/admin/alerts/receivers", auth.ScopeAdmin, a.receivers)
	r.Handle(http.MethodPost, "/api/admin/alerts/:id/ack", auth.ScopeAdmin, a.ack)
	r.Handle(http.MethodPost, "/api/admin/silences", auth.ScopeAdmin, a.createSilence)
	r.Handle(http.MethodGet, "/api/admin/silences", auth.ScopeAdmin, a.listSilences)
	r.Handle(http.MethodDelete, "/api/admin/silences/:id", auth.ScopeAdmin, a.expireSilence)
}

const requestTimeout = 10 * time.Second

func unavailable(what string) error {
	return httpapi.Unavailable(what+" is unavailable", 5*time.Second)
}

// ReceiversBody is the answer of GET /api/admin/alerts/receivers.
type ReceiversBody struct {
	Receivers []ReceiverStatus `json:"receivers"`
}

func (a *API) receivers(c echo.Context) error {
	if err := noParams(c); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), requestTimeout)
	defer cancel()
	kv, err := ensureNotifyBucket(ctx, a.js, NotifyBucket)
	if err != nil {
		a.log.Warn().Err(err).Msg("receiver status unavailable")
		return unavailable("the receiver status")
	}
	body := ReceiversBody{Receivers: []ReceiverStatus{}}
	for _, r := range a.cfg.Receivers {
		st := ReceiverStatus{State: "unknown"}
		if e, err := kv.Get(ctx, prefixReceiver+r.Name); err == nil {
			_ = json.Unmarshal(e.Value(), &st)
		}
		st.Name, st.Kind, st.Format, st.Severities = r.Name, r.Kind, r.Format, r.Severities
		if cons, err := a.js.Consumer(ctx, a.cfg.Stream.Stream, ConsumerName(r.Name)); err == nil {
			info := cons.CachedInfo()
			st.Pending = info.NumPending + uint64(info.NumAckPending)
		}
		body.Receivers = append(body.Receivers, st)
	}
	return c.JSON(http.StatusOK, body)
}

func noParams(c echo.Context) error {
	if len(c.QueryParams()) == 0 {
		return nil
	}
	var errs []event.FieldError
	for name := range c.QueryParams() {
		errs = append(errs, event.FieldError{Field: httpapi.SafeName(name), Message: "is not a parameter of this route (it takes none)"})
	}
	return httpapi.Errorf(http.StatusBadRequest, "invalid_request", "invalid query parameters", errs...)
}

// Ack is an acknowledgement of an alert.
type Ack struct {
	ID             string    `json:"id"`
	AcknowledgedBy string    `json:"acknowledged_by"`
	AcknowledgedAt time.Time `json:"acknowledged_at"`
	Comment        string    `json:"comment,omitempty"`
}

const prefixAck = "ack."

var alertIDRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

func principalName(c echo.Context) string {
	if p, ok := httpapi.PrincipalOf(c); ok {
		return p.Name
	}
	return "unknown"
}

// decodeBody reads a JSON object body into v, refusing unknown fields; an
// empty body leaves v as it is when optional.
func decodeBody(c echo.Context, v any, optional bool) error {
	data, err := io.ReadAll(io.LimitReader(c.Request().Body, 64<<10))
	if err != nil {
		return httpapi.Errorf(http.StatusBadRequest, "invalid_request", "the body could not be read")
	}
	if optional && strings.TrimSpace(string(data)) == "" {
		return nil
	}
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		msg := "must be a JSON object"
		if strings.HasPrefix(err.Error(), "json: unknown field") {
			msg = "has an unknown field: " + httpapi.SafeName(strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`))
		} else if strings.Contains(err.Error(), "cannot unmarshal") || strings.Contains(err.Error(), "parsing time") {
			msg = "has a field of the wrong type (times are RFC 3339)"
		}
		return httpapi.Errorf(http.StatusBadRequest, "invalid_request", "invalid body", event.FieldError{Field: "body", Message: msg})
	}
	return nil
}

// ack records who acknowledged an alert and when, in KV (the latest) and
// in the audit log (every one). An unknown alert is a 404.
func (a *API) ack(c echo.Context) error {
	id := c.Param("id")
	var in struct {
		Comment string `json:"comment"`
	}
	if err := decodeBody(c, &in, true); err != nil {
		return err
	}
	if len(in.Comment) > 1024 {
		return httpapi.Errorf(http.StatusBadRequest, "invalid_request", "invalid body", event.FieldError{Field: "comment", Message: "at most 1024 characters"})
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), requestTimeout)
	defer cancel()
	if !alertIDRE.MatchString(id) {
		return httpapi.Errorf(http.StatusNotFound, "not_found", "no alert has this id")
	}
	known, err := a.known(ctx, id)
	if err != nil {
		a.log.Warn().Err(err).Msg("alert lookup failed")
		return unavailable("the alert state")
	}
	if !known {
		return httpapi.Errorf(http.StatusNotFound, "not_found", "no alert has this id")
	}
	ack := Ack{ID: id, AcknowledgedBy: principalName(c), AcknowledgedAt: a.cfg.Now().UTC().Truncate(time.Millisecond), Comment: in.Comment}
	if err := a.audit(ctx, ack.AcknowledgedBy, "alert_ack", id, "acknowledged", map[string]any{"comment": in.Comment}); err != nil {
		return err
	}
	kv, err := ensureNotifyBucket(ctx, a.js, NotifyBucket)
	if err == nil {
		b, _ := json.Marshal(ack)
		_, err = kv.Put(ctx, prefixAck+id, b)
	}
	if err != nil {
		a.log.Warn().Err(err).Msg("could not store an acknowledgement")
		return unavailable("the alert state")
	}
	a.log.Info().Str("alert", id).Str("by", ack.AcknowledgedBy).Msg("alert acknowledged")
	return c.JSON(http.StatusOK, ack)
}

// known reports whether id is a firing alert or one in the history.
func (a *API) known(ctx context.Context, id string) (bool, error) {
	kv, err := a.js.KeyValue(ctx, a.cfg.Stream.Bucket)
	if err == nil {
		firing, err := alerts.Firing(ctx, kv)
		if err != nil {
			return false, err
		}
		for _, f := range firing {
			if f.ID == id {
				return true, nil
			}
		}
	} else if !errors.Is(err, jetstream.ErrBucketNotFound) {
		return false, fmt.Errorf("open alert state: %w", err)
	}
	if a.store == nil {
		return false, nil
	}
	var n uint64
	if err := a.store.QueryRow(ctx, "SELECT count() FROM "+a.store.T(alerts.HistoryTable)+" WHERE id = "+chstore.Quote(id), &n); err != nil {
		return false, fmt.Errorf("look up alert history: %w", err)
	}
	return n > 0, nil
}

// audit records an admin action in the audit log; without a store, or
// when the insert fails, the action is refused with a 503.
func (a *API) audit(ctx context.Context, who, action, target, outcome string, details map[string]any) error {
	if a.store == nil {
		return unavailable("the audit log")
	}
	d, _ := json.Marshal(details)
	err := a.store.Insert(ctx, "", "audit_log", []chstore.Column{
		{Name: "ts", Values: []time.Time{a.cfg.Now().UTC()}},
		{Name: "id", Values: []string{newID()}},
		{Name: "principal", Values: []string{who}},
		{Name: "action", Values: []string{action}},
		{Name: "target", Values: []string{target}},
		{Name: "outcome", Values: []string{outcome}},
		{Name: "details", Values: []string{string(d)}},
	})
	if err != nil {
		a.log.Warn().Err(err).Str("action", action).Msg("audit log unavailable")
		return unavailable("the audit log")
	}
	return nil
}

// SilenceRequest is the body of POST /api/admin/silences.
type SilenceRequest struct {
	Matchers []Matcher `json:"matchers"`
	StartsAt time.Time `json:"startsAt"` // default now
	EndsAt   time.Time `json:"endsAt"`
	Comment  string    `json:"comment"`
}

func (a *API) createSilence(c echo.Context) error {
	var in SilenceRequest
	if err := decodeBody(c, &in, false); err != nil {
		return err
	}
	now := a.cfg.Now().UTC()
	s := Silence{Matchers: in.Matchers, StartsAt: in.StartsAt, EndsAt: in.EndsAt, Comment: in.Comment, CreatedBy: principalName(c)}
	if s.StartsAt.IsZero() {
		s.StartsAt = now
	}
	if s.Matchers == nil {
		s.Matchers = []Matcher{}
	}
	if errs := checkSilence(&s, now); len(errs) > 0 {
		return httpapi.Errorf(http.StatusBadRequest, "invalid_request", "invalid silence", errs...)
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), requestTimeout)
	defer cancel()
	id, err := a.silences.create(ctx, s)
	if err != nil {
		var se *sendError
		if errors.As(err, &se) && se.status == http.StatusBadRequest {
			return httpapi.Errorf(http.StatusBadRequest, "invalid_request", "Alertmanager refused the silence")
		}
		a.log.Warn().Str("error", safeErr(err)).Msg("could not create a silence")
		return unavailable("the silence store")
	}
	s.ID, s.State = id, s.stateAt(now)
	_ = a.audit(ctx, s.CreatedBy, "silence_create", id, "created", map[string]any{"matchers": s.Matchers, "ends_at": s.EndsAt, "comment": s.Comment})
	return c.JSON(http.StatusOK, s)
}

// SilencesBody is the answer of GET /api/admin/silences.
type SilencesBody struct {
	Silences []Silence `json:"silences"` // newest start first
	Store    string    `json:"store"`    // "alertmanager" or "pulse"
}

func (a *API) listSilences(c echo.Context) error {
	if err := noParams(c); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), requestTimeout)
	defer cancel()
	ss, err := a.silences.list(ctx)
	if err != nil {
		a.log.Warn().Str("error", safeErr(err)).Msg("could not list silences")
		return unavailable("the silence store")
	}
	now := a.cfg.Now()
	for i := range ss {
		ss[i].State = ss[i].stateAt(now)
	}
	sortSilences(ss)
	body := SilencesBody{Silences: append([]Silence{}, ss...), Store: "pulse"}
	if len(Alertmanagers(a.cfg.Receivers)) > 0 {
		body.Store = "alertmanager"
	}
	return c.JSON(http.StatusOK, body)
}

var silenceIDRE = regexp.MustCompile(`^[A-Za-z0-9-]{1,64}$`)

func (a *API) expireSilence(c echo.Context) error {
	id := c.Param("id")
	if !silenceIDRE.MatchString(id) {
		return httpapi.Errorf(http.StatusNotFound, "not_found", "no silence has this id")
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), requestTimeout)
	defer cancel()
	err := a.silences.expire(ctx, id)
	if errors.Is(err, errSilenceNotFound) {
		return httpapi.Errorf(http.StatusNotFound, "not_found", "no silence has this id")
	}
	if err != nil {
		a.log.Warn().Str("error", safeErr(err)).Msg("could not expire a silence")
		return unavailable("the silence store")
	}
	_ = a.audit(ctx, principalName(c), "silence_expire", id, "expired", nil)
	return c.JSON(http.StatusOK, map[string]string{"id": id, "state": "expired"})
}

// safeErr is err's text when it cannot hold a URL (a *sendError's), else
// a generic one.
func safeErr(err error) string {
	var se *sendError
	if errors.As(err, &se) {
		return se.desc
	}
	return "request failed"
}
