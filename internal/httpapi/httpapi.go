// Package httpapi is the HTTP surface every Pulse role shares: the echo
// server with safe JSON errors, the guarded Router through which packages
// register routes, and the liveness and readiness endpoints.
package httpapi

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/rs/zerolog"

	"github.com/wedsync/pulse/internal/auth"
	"github.com/wedsync/pulse/internal/event"
)

// ErrorBody is every error response.
type ErrorBody struct {
	Error   string             `json:"error"`             // a stable code, e.g. "invalid_request"
	Message string             `json:"message"`           // for people
	Details []event.FieldError `json:"details,omitempty"` // field-level problems
}

// Error is an error a handler returns to answer with a given status and
// body. Its message is shown to the caller, so it must hold no internals.
type Error struct {
	Status     int
	Body       ErrorBody
	RetryAfter time.Duration // sets Retry-After when positive
}

func (e *Error) Error() string { return e.Body.Message }

// Errorf builds an *Error.
func Errorf(status int, code, message string, details ...event.FieldError) *Error {
	return &Error{Status: status, Body: ErrorBody{Error: code, Message: message, Details: details}}
}

// Unavailable is a 503 asking the caller to retry after d.
func Unavailable(message string, d time.Duration) *Error {
	e := Errorf(http.StatusServiceUnavailable, "unavailable", message)
	e.RetryAfter = d
	return e
}

// New returns an echo server whose errors are JSON without internals: an
// unexpected error (or an *Error without a 4xx or 5xx status, a programming
// mistake) is logged with the request's method and path and answered with a
// bare 500.
func New(log zerolog.Logger) *echo.Echo {
	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	e.HTTPErrorHandler = func(err error, c echo.Context) {
		if c.Response().Committed {
			return
		}
		var pe *Error
		var he *echo.HTTPError
		switch {
		case errors.As(err, &pe) && pe.Status >= 400 && pe.Status <= 599:
		case errors.As(err, &he):
			pe = Errorf(he.Code, strings.ReplaceAll(strings.ToLower(http.StatusText(he.Code)), " ", "_"), http.StatusText(he.Code))
		default:
			log.Error().Err(err).Str("method", c.Request().Method).Str("path", c.Path()).Msg("request failed")
			pe = Errorf(http.StatusInternalServerError, "internal_error", "internal error")
		}
		if pe.RetryAfter > 0 {
			c.Response().Header().Set("Retry-After", strconv.Itoa(int((pe.RetryAfter+time.Second-1)/time.Second)))
		}
		if c.Request().Method == http.MethodHead {
			_ = c.NoContent(pe.Status)
			return
		}
		_ = c.JSON(pe.Status, pe.Body)
	}
	e.Use(recoverer(log), securityHeaders)
	return e
}

// ContentSecurityPolicy is set on every HTML answer whose handler did not
// set its own: resources from Pulse's origin only, no plugins, no framing.
const ContentSecurityPolicy = "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// securityHeaders keeps browsers from guessing content types (every answer
// is what its Content-Type says) and confines HTML answers with
// ContentSecurityPolicy.
func securityHeaders(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Response().Header()
		h.Set("X-Content-Type-Options", "nosniff")
		c.Response().Before(func() {
			if strings.HasPrefix(h.Get(echo.HeaderContentType), "text/html") && h.Get("Content-Security-Policy") == "" {
				h.Set("Content-Security-Policy", ContentSecurityPolicy)
			}
		})
		return next(c)
	}
}

// recoverer turns a panic in a handler into a logged 500; the process stays up.
func recoverer(log zerolog.Logger) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) (err error) {
			defer func() {
				if r := recover(); r != nil {
					if r == http.ErrAbortHandler {
						panic(r)
					}
					log.Error().Interface("panic", r).Str("path", c.Path()).Msg("handler panicked")
					err = Errorf(http.StatusInternalServerError, "internal_error", "internal error")
				}
			}()
			return next(c)
		}
	}
}

// Public marks a route that needs no credentials. It is the only way to
// register one, so that an unguarded route is always a visible decision.
const Public auth.Scope = ""

// Router registers routes, each with the scope it demands. It is the only
// handle packages get on the server: a route cannot be added without its
// guard.
type Router struct {
	e      *echo.Echo
	authn  auth.Authenticator
	mw     map[auth.Scope][]echo.MiddlewareFunc
	routes []*route
}

// route is a registered handler and the chain built around it, rebuilt
// when middleware is added to its scope.
type route struct {
	method, path string
	scope        auth.Scope
	h            echo.HandlerFunc
	chain        echo.HandlerFunc
}

// RouteInfo is a registered route and the scope its guard demands.
type RouteInfo struct {
	Method, Path string
	Scope        auth.Scope
}

// Routes lists the registered routes in registration order.
func (r *Router) Routes() []RouteInfo {
	out := make([]RouteInfo, len(r.routes))
	for i, rt := range r.routes {
		out[i] = RouteInfo{Method: rt.method, Path: rt.path, Scope: rt.scope}
	}
	return out
}

// NewRouter returns a Router on e that authenticates with a.
func NewRouter(e *echo.Echo, a auth.Authenticator) *Router {
	return &Router{e: e, authn: a, mw: map[auth.Scope][]echo.MiddlewareFunc{}}
}

// Use adds middleware that runs, after authentication, on every route of
// the given scope (rate limiting, for example), those registered before
// the call included. Use and Handle configure the server: call them before
// it serves, not concurrently with requests.
func (r *Router) Use(scope auth.Scope, mw ...echo.MiddlewareFunc) {
	r.mw[scope] = append(r.mw[scope], mw...)
	for _, rt := range r.routes {
		if rt.scope == scope {
			r.build(rt)
		}
	}
}

// Handle registers h for method and path. A caller without a principal
// holding scope gets 401 (no or bad credentials) or 403 (wrong scope);
// scope Public lets everyone in.
func (r *Router) Handle(method, path string, scope auth.Scope, h echo.HandlerFunc) {
	rt := &route{method: method, path: path, scope: scope, h: h}
	r.build(rt)
	r.routes = append(r.routes, rt)
	r.e.Add(method, path, func(c echo.Context) error { return rt.chain(c) })
}

// build wraps rt's handler in its scope's middleware and guard.
func (r *Router) build(rt *route) {
	chain := rt.h
	mws := r.mw[rt.scope]
	for i := len(mws) - 1; i >= 0; i-- {
		chain = mws[i](chain)
	}
	if rt.scope != Public {
		chain = r.guard(rt.scope, chain)
	}
	rt.chain = chain
}

const principalKey = "pulse.principal"

// PrincipalOf returns the authenticated caller of a guarded route.
func PrincipalOf(c echo.Context) (auth.Principal, bool) {
	p, ok := c.Get(principalKey).(auth.Principal)
	return p, ok
}

// guard authenticates the caller of a route of scope. Its answers, and
// those of the route, are never stored by caches (Cache-Control: no-store):
// they are for the caller alone.
func (r *Router) guard(scope auth.Scope, next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		c.Response().Header().Set("Cache-Control", "no-store")
		tok, ok := bearer(c.Request().Header.Get(echo.HeaderAuthorization))
		if !ok {
			c.Response().Header().Set("WWW-Authenticate", `Bearer realm="pulse"`)
			return Errorf(http.StatusUnauthorized, "unauthorized", "a bearer token is required")
		}
		p, err := r.authn.Authenticate(strings.TrimSpace(tok))
		if err != nil {
			c.Response().Header().Set("WWW-Authenticate", `Bearer realm="pulse", error="invalid_token"`)
			return Errorf(http.StatusUnauthorized, "unauthorized", auth.ErrUnauthenticated.Error())
		}
		if !p.Has(scope) {
			return Errorf(http.StatusForbidden, "forbidden", "this credential may not use this route")
		}
		c.Set(principalKey, p)
		return next(c)
	}
}

// bearer returns the credential of an Authorization header of the Bearer
// scheme, whose name is case-insensitive (RFC 9110, section 11.1).
func bearer(h string) (string, bool) {
	const scheme = "Bearer "
	if len(h) <= len(scheme) || !strings.EqualFold(h[:len(scheme)], scheme) {
		return "", false
	}
	return h[len(scheme):], true
}

// Check is one readiness condition; it returns nil when ready.
type Check struct {
	Name  string // e.g. "nats", "clickhouse", "schema"; shown to callers
	Probe func(ctx context.Context) error
}

// Health serves GET /healthz and GET /readyz. The answers name checks and
// their state, never the error text behind them.
type Health struct {
	checks   []Check
	draining func() bool
}

// NewHealth returns the health endpoints for checks. draining, when it
// returns true, makes /readyz answer 503 so that load balancers move away
// before shutdown.
func NewHealth(draining func() bool, checks ...Check) *Health {
	return &Health{checks: checks, draining: draining}
}

// Register adds /healthz and /readyz to r, unauthenticated.
func (h *Health) Register(r *Router) {
	r.Handle(http.MethodGet, "/healthz", Public, func(c echo.Context) error {
		return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
	})
	r.Handle(http.MethodGet, "/readyz", Public, h.ready)
}

// ReadyBody is the /readyz answer.
type ReadyBody struct {
	Status string            `json:"status"` // "ready" or "not_ready"
	Checks map[string]string `json:"checks"` // name -> "ok" or "failing"
}

func (h *Health) ready(c echo.Context) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), 2*time.Second)
	defer cancel()
	body := ReadyBody{Status: "ready", Checks: map[string]string{}}
	if h.draining != nil && h.draining() {
		body.Status = "not_ready"
		body.Checks["shutdown"] = "draining"
	}
	for _, ch := range h.checks {
		if err := ch.Probe(ctx); err != nil {
			body.Status = "not_ready"
			body.Checks[ch.Name] = "failing"
			continue
		}
		body.Checks[ch.Name] = "ok"
	}
	if body.Status != "ready" {
		c.Response().Header().Set("Retry-After", "5")
		return c.JSON(http.StatusServiceUnavailable, body)
	}
	return c.JSON(http.StatusOK, body)
}
