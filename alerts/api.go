package alerts

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/wedsync/pulse/alerts/rules"
	"github.com/wedsync/pulse/internal/auth"
	"github.com/wedsync/pulse/internal/event"
	"github.com/wedsync/pulse/internal/httpapi"
)

// APIConfig tunes the alert API. Zero fields take defaults.
type APIConfig struct {
	Stream       StreamConfig
	QueryTimeout time.Duration    // bound of the KV and ClickHouse work of one answer (default 10s)
	RetryAfter   time.Duration    // Retry-After of a 503 (default 5s)
	DefaultSince time.Duration    // how far back resolved alerts go without since (default 24h)
	Now          func() time.Time // the clock (default time.Now)
}

func (c *APIConfig) defaults() {
	if c.QueryTimeout == 0 {
		c.QueryTimeout = 10 * time.Second
	}
	if c.RetryAfter == 0 {
		c.RetryAfter = 5 * time.Second
	}
	if c.DefaultSince == 0 {
		c.DefaultSince = 24 * time.Hour
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate checks c; zero fields are valid (they take defaults).
func (c APIConfig) Validate() error {
	if c.QueryTimeout < 0 || c.RetryAfter < 0 || c.DefaultSince < 0 {
		return errors.New("alert API durations must not be negative")
	}
	return c.Stream.Validate()
}

// API serves the alert routes, admin-only:
//
//	GET /api/admin/alerts?state=firing|resolved&severity=&kind=alert|scaling&since=RFC3339&limit=
//	GET /api/admin/alerts/rules
//
// Firing alerts come from the state bucket, with the live counts of
// instant alerts; resolved ones from the ClickHouse history, newest first,
// since `since` (default 24 hours ago). Without state, both. Unknown or
// invalid parameters are a 400 naming each; when the part asked for cannot
// be read the answer is 503, and when only one of the two parts of a
// state-less answer can, it is given with partial: true and unavailable
// naming the other ("state" or "history"). It is safe for concurrent use.
type API struct {
	cfg   APIConfig
	set   *rules.Set
	js    jetstream.JetStream
	store Querier // nil: no history, only firing alerts
	log   zerolog.Logger

	mu sync.Mutex
	kv jetstream.KeyValue
}

// NewAPI returns the alert API for the rules in force, reading state
// through js and history from store (nil: history is unavailable). It
// fills cfg's defaults and checks it.
func NewAPI(cfg APIConfig, set *rules.Set, js jetstream.JetStream, store Querier, log zerolog.Logger) (*API, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("alert API: %w", err)
	}
	cfg.defaults()
	cfg.Stream.defaults()
	return &API{cfg: cfg, set: set, js: js, store: store, log: log.With().Str("component", "alerts.api").Logger()}, nil
}

// Register adds the routes to r, each for admins only.
func (a *API) Register(r *httpapi.Router) {
	r.Handle(http.MethodGet, "/api/admin/alerts", auth.ScopeAdmin, a.alerts)
	r.Handle(http.MethodGet, "/api/admin/alerts/rules", auth.ScopeAdmin, a.rules)
}

// AlertsBody is the answer of GET /api/admin/alerts.
type AlertsBody struct {
	Alerts      []Alert   `json:"alerts"` // firing first, then resolved; newest first within each
	Firing      int       `json:"firing"` // how many of Alerts are firing
	Since       time.Time `json:"since"`  // resolved alerts are those since this time
	Partial     bool      `json:"partial,omitempty"`
	Unavailable []string  `json:"unavailable,omitempty"` // "state" (NATS) or "history" (ClickHouse)
}

// RulesBody is the answer of GET /api/admin/alerts/rules.
type RulesBody struct {
	Source  string          `json:"source"` // "built-in" or "file"
	Instant []rules.Instant `json:"instant"`
	Window  []rules.Window  `json:"window"`
	Scaling []rules.Window  `json:"scaling"`
}

// alertsQuery is a validated GET /api/admin/alerts.
type alertsQuery struct {
	state, severity, kind string
	since                 time.Time
	limit                 int
}

const maxLimit = 1000

// parseAlertsQuery reads and checks the parameters, naming every problem.
func parseAlertsQuery(rawQuery string, now time.Time, defaultSince time.Duration) (alertsQuery, []event.FieldError) {
	q := alertsQuery{since: now.Add(-defaultSince).Truncate(time.Second), limit: 100}
	p := httpapi.NewParams(rawQuery, "state", "severity", "kind", "since", "limit")
	q.state = p.Enum("state", "", StateFiring, StateResolved)
	q.severity = p.Enum("severity", "", rules.Severities...)
	q.kind = p.Enum("kind", "", KindAlert, KindScaling)
	if v, ok := p.Get("since"); ok {
		t, err := time.Parse(time.RFC3339, v)
		switch {
		case err != nil:
			p.Bad("since", "must be an RFC 3339 date-time with a time zone, e.g. 2026-06-20T14:03:00Z")
		case t.Before(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)):
			p.Bad("since", "must be after 2000-01-01")
		case t.After(now.Add(5 * time.Minute)):
			p.Bad("since", "must not be in the future")
		default:
			q.since = t.UTC()
		}
	}
	q.limit = p.Int("limit", q.limit, 1, maxLimit)
	return q, p.Errors()
}

func (a *API) alerts(c echo.Context) error {
	now := a.cfg.Now().UTC()
	q, errs := parseAlertsQuery(c.Request().URL.RawQuery, now, a.cfg.DefaultSince)
	if len(errs) > 0 {
		return httpapi.Errorf(http.StatusBadRequest, "invalid_request", "invalid query parameters", errs...)
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), a.cfg.QueryTimeout)
	defer cancel()
	body := AlertsBody{Alerts: []Alert{}, Since: q.since}
	if q.state != StateResolved {
		firing, err := a.firing(ctx)
		if err != nil {
			a.log.Warn().Err(err).Msg("firing alerts unavailable")
			if q.state == StateFiring {
				return httpapi.Unavailable("the alert state is unavailable", a.cfg.RetryAfter)
			}
			body.Partial, body.Unavailable = true, append(body.Unavailable, "state")
		}
		for _, al := range firing {
			if (q.severity == "" || al.Severity == q.severity) && (q.kind == "" || al.Kind == q.kind) && len(body.Alerts) < q.limit {
				body.Alerts = append(body.Alerts, al)
			}
		}
		body.Firing = len(body.Alerts)
	}
	if q.state != StateFiring && len(body.Alerts) < q.limit {
		hist, err := a.history(ctx, HistoryQuery{State: StateResolved, Severity: q.severity, Kind: q.kind, Since: q.since, Limit: q.limit - len(body.Alerts)})
		if err != nil {
			a.log.Warn().Err(err).Msg("alert history unavailable")
			if q.state == StateResolved || body.Partial {
				return httpapi.Unavailable("the alert history is unavailable", a.cfg.RetryAfter)
			}
			body.Partial, body.Unavailable = true, append(body.Unavailable, "history")
		}
		body.Alerts = append(body.Alerts, hist...)
	}
	return c.JSON(http.StatusOK, body)
}

func (a *API) firing(ctx context.Context) ([]Alert, error) {
	a.mu.Lock()
	kv := a.kv
	a.mu.Unlock()
	if kv == nil {
		var err error
		if kv, err = a.js.KeyValue(ctx, a.cfg.Stream.Bucket); err != nil {
			return nil, err
		}
		a.mu.Lock()
		a.kv = kv
		a.mu.Unlock()
	}
	return Firing(ctx, kv)
}

func (a *API) history(ctx context.Context, q HistoryQuery) ([]Alert, error) {
	if a.store == nil {
		return nil, errNoStore
	}
	return QueryHistory(ctx, a.store, q)
}

var errNoStore = errors.New("no ClickHouse store configured")

func (a *API) rules(c echo.Context) error {
	if len(c.QueryParams()) > 0 {
		var errs []event.FieldError
		for name := range c.QueryParams() {
			errs = append(errs, event.FieldError{Field: httpapi.SafeName(name), Message: "is not a parameter of this route (it takes none)"})
		}
		sort.Slice(errs, func(i, j int) bool { return errs[i].Field < errs[j].Field })
		return httpapi.Errorf(http.StatusBadRequest, "invalid_request", "invalid query parameters", errs...)
	}
	body := RulesBody{Source: "file", Instant: a.set.Instant, Window: a.set.Window, Scaling: a.set.Scaling}
	if a.set.Source == rules.SourceBuiltIn {
		body.Source = rules.SourceBuiltIn
	}
	return c.JSON(http.StatusOK, body)
}
