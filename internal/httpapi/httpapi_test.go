package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/rs/zerolog"

	"github.com/wedsync/pulse/internal/auth"
	"github.com/wedsync/pulse/internal/event"
	"github.com/wedsync/pulse/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

const (
	adminToken  = "admin-token-0123456789"
	ingestToken = "ingest-token-0123456789"
	// secret stands for a DSN, password or token that an internal error or
	// a probe may carry; it must never reach a response body.
	secret = "postgres://pulse:hunter2@10.0.0.7:5432/app"
)

func tokens() *auth.StaticTokens {
	var s auth.StaticTokens
	s.Add(adminToken, auth.Principal{Name: "ops", Scopes: []auth.Scope{auth.ScopeAdmin}})
	s.Add(ingestToken, auth.Principal{Name: "web", Scopes: []auth.Scope{auth.ScopeIngest}})
	return &s
}

// server is an echo server from New, its Router, and its log.
type server struct {
	e   *echo.Echo
	r   *Router
	log *bytes.Buffer
}

func newServer(t *testing.T) *server {
	t.Helper()
	var buf bytes.Buffer
	e := New(zerolog.New(&buf))
	return &server{e: e, r: NewRouter(e, tokens()), log: &buf}
}

func (s *server) do(method, path, authorization string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, nil)
	if authorization != "" {
		req.Header.Set(echo.HeaderAuthorization, authorization)
	}
	rec := httptest.NewRecorder()
	s.e.ServeHTTP(rec, req)
	return rec
}

// errorBody decodes rec's body as an ErrorBody, failing the test if it is
// not JSON with an error code.
func errorBody(t *testing.T, rec *httptest.ResponseRecorder) ErrorBody {
	t.Helper()
	if ct := rec.Header().Get(echo.HeaderContentType); !strings.HasPrefix(ct, echo.MIMEApplicationJSON) {
		t.Fatalf("Content-Type %q; want JSON (body %q)", ct, rec.Body)
	}
	var b ErrorBody
	dec := json.NewDecoder(bytes.NewReader(rec.Body.Bytes()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		t.Fatalf("body %q is not an ErrorBody: %v", rec.Body, err)
	}
	if b.Error == "" || b.Message == "" {
		t.Fatalf("body %q lacks the error code or message", rec.Body)
	}
	return b
}

func TestGuard(t *testing.T) {
	s := newServer(t)
	var calls atomic.Int64
	whoami := func(c echo.Context) error {
		calls.Add(1)
		p, ok := PrincipalOf(c)
		return c.JSON(http.StatusOK, map[string]any{"name": p.Name, "ok": ok})
	}
	s.r.Handle(http.MethodGet, "/admin", auth.ScopeAdmin, whoami)
	s.r.Handle(http.MethodGet, "/ingest", auth.ScopeIngest, whoami)
	s.r.Handle(http.MethodGet, "/public", Public, whoami)

	f := func(path, authorization string, wantStatus int, wantName string, wantChallenge string) {
		t.Helper()
		before := calls.Load()
		rec := s.do(http.MethodGet, path, authorization)
		if rec.Code != wantStatus {
			t.Fatalf("GET %s with %q: got status %d; want %d (body %s)", path, authorization, rec.Code, wantStatus, rec.Body)
		}
		if got := rec.Header().Get("WWW-Authenticate"); got != wantChallenge {
			t.Errorf("GET %s with %q: got WWW-Authenticate %q; want %q", path, authorization, got, wantChallenge)
		}
		if wantStatus != http.StatusOK {
			b := errorBody(t, rec)
			wantCode := map[int]string{401: "unauthorized", 403: "forbidden"}[wantStatus]
			if b.Error != wantCode {
				t.Errorf("GET %s with %q: got error %q; want %q", path, authorization, b.Error, wantCode)
			}
			if calls.Load() != before {
				t.Errorf("GET %s with %q: the handler ran for a %d", path, authorization, wantStatus)
			}
			for _, tok := range []string{adminToken, ingestToken, "wrong-token-0123456789"} {
				if strings.Contains(rec.Body.String(), tok) {
					t.Errorf("GET %s with %q: the body %s shows a token", path, authorization, rec.Body)
				}
			}
			return
		}
		var got struct {
			Name string
			OK   bool
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
			t.Fatalf("GET %s: body %q: %v", path, rec.Body, err)
		}
		if got.Name != wantName || got.OK != (wantName != "") {
			t.Errorf("GET %s with %q: PrincipalOf = %q, %v; want %q, %v", path, authorization, got.Name, got.OK, wantName, wantName != "")
		}
	}
	const challenge = `Bearer realm="pulse"`
	const invalid = `Bearer realm="pulse", error="invalid_token"`

	// No credentials.
	f("/admin", "", 401, "", challenge)
	f("/ingest", "", 401, "", challenge)
	f("/admin", "Bearer", 401, "", challenge)
	f("/admin", "Bearer ", 401, "", challenge)
	f("/admin", "Basic "+adminToken, 401, "", challenge)
	f("/admin", adminToken, 401, "", challenge)
	// Bad credentials.
	f("/admin", "Bearer wrong-token-0123456789", 401, "", invalid)
	f("/ingest", "Bearer wrong-token-0123456789", 401, "", invalid)
	f("/admin", "Bearer    ", 401, "", invalid)
	f("/admin", "Bearer "+adminToken+"x", 401, "", invalid)
	// The wrong scope.
	f("/admin", "Bearer "+ingestToken, 403, "", "")
	// The right scope; admin implies ingest.
	f("/admin", "Bearer "+adminToken, 200, "ops", "")
	f("/ingest", "Bearer "+ingestToken, 200, "web", "")
	f("/ingest", "Bearer "+adminToken, 200, "ops", "")
	f("/ingest", "Bearer  "+ingestToken+" ", 200, "web", "")
	// The scheme is case-insensitive (RFC 9110, section 11.1).
	f("/ingest", "bearer "+ingestToken, 200, "web", "")
	f("/admin", "BEARER "+adminToken, 200, "ops", "")
	// Public routes need nothing and ignore what they get.
	f("/public", "", 200, "", "")
	f("/public", "Bearer wrong-token-0123456789", 200, "", "")
	f("/public", "Bearer "+adminToken, 200, "", "")
}

func TestRouterUse(t *testing.T) {
	s := newServer(t)
	var seen []string // principals the admin middleware saw
	s.r.Handle(http.MethodGet, "/before", auth.ScopeAdmin, func(c echo.Context) error { return c.NoContent(http.StatusNoContent) })
	s.r.Use(auth.ScopeAdmin, func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			p, ok := PrincipalOf(c)
			if !ok {
				return errors.New("middleware ran before authentication")
			}
			seen = append(seen, p.Name+" "+c.Path())
			if c.QueryParam("limit") != "" {
				return Errorf(http.StatusTooManyRequests, "rate_limited", "slow down")
			}
			return next(c)
		}
	})
	s.r.Handle(http.MethodGet, "/after", auth.ScopeAdmin, func(c echo.Context) error { return c.NoContent(http.StatusNoContent) })
	s.r.Handle(http.MethodGet, "/ingest", auth.ScopeIngest, func(c echo.Context) error { return c.NoContent(http.StatusNoContent) })

	f := func(path, authorization string, wantStatus int) {
		t.Helper()
		if rec := s.do(http.MethodGet, path, authorization); rec.Code != wantStatus {
			t.Errorf("GET %s: got status %d; want %d (body %s)", path, rec.Code, wantStatus, rec.Body)
		}
	}
	f("/before", "Bearer "+adminToken, 204)
	f("/after", "Bearer "+adminToken, 204)
	f("/after?limit=1", "Bearer "+adminToken, 429)
	f("/before?limit=1", "Bearer "+adminToken, 429)
	f("/after", "", 401)                             // never reaches the middleware
	f("/ingest?limit=1", "Bearer "+adminToken, 204)  // not an admin-scoped route
	f("/ingest?limit=1", "Bearer "+ingestToken, 204) // not an admin-scoped route
	f("/after?limit=1", "Bearer "+ingestToken, 403)  // nor does the wrong scope
	want := "ops /before,ops /after,ops /after,ops /before"
	if got := strings.Join(seen, ","); got != want {
		t.Errorf("the admin middleware saw %q; want %q", got, want)
	}
}

func TestErrorHandler(t *testing.T) {
	s := newServer(t)
	routes := map[string]echo.HandlerFunc{
		"/api-error": func(echo.Context) error {
			e := Errorf(http.StatusUnprocessableEntity, "invalid_request", "the request is invalid",
				event.FieldError{Index: 2, Field: "status_code", Message: "is required"})
			return e
		},
		"/wrapped": func(echo.Context) error {
			return fmt.Errorf("query failed: %w", Unavailable("the store is unavailable", 1500*time.Millisecond))
		},
		"/unavailable": func(echo.Context) error { return Unavailable("busy", 3*time.Second) },
		"/internal":    func(echo.Context) error { return fmt.Errorf("dial %s: connection refused", secret) },
		"/panic":       func(echo.Context) error { panic("lost connection to " + secret) },
		"/panic-error": func(echo.Context) error { panic(errors.New(secret)) },
		"/echo-error":  func(echo.Context) error { return echo.NewHTTPError(http.StatusTooManyRequests, secret) },
		"/no-status":   func(echo.Context) error { return &Error{Body: ErrorBody{Error: "oops", Message: secret}} },
		"/ok":          func(c echo.Context) error { return c.String(http.StatusOK, "ok") },
	}
	for path, h := range routes {
		s.r.Handle(http.MethodGet, path, Public, h)
		s.r.Handle(http.MethodHead, path, Public, h)
	}

	f := func(method, path string, wantStatus int, want ErrorBody, wantRetryAfter string, wantLog string) {
		t.Helper()
		s.log.Reset()
		rec := s.do(method, path, "")
		if rec.Code != wantStatus {
			t.Fatalf("%s %s: got status %d; want %d (body %s)", method, path, rec.Code, wantStatus, rec.Body)
		}
		if got := rec.Header().Get("Retry-After"); got != wantRetryAfter {
			t.Errorf("%s %s: got Retry-After %q; want %q", method, path, got, wantRetryAfter)
		}
		if strings.Contains(rec.Body.String(), "hunter2") {
			t.Errorf("%s %s: the body %s leaks the secret", method, path, rec.Body)
		}
		if wantStatus < 400 {
			if rec.Body.String() != "ok" {
				t.Errorf("%s %s: got body %q; want \"ok\"", method, path, rec.Body)
			}
		} else if method == http.MethodHead {
			if rec.Body.Len() != 0 {
				t.Errorf("HEAD %s: got body %q; want none", path, rec.Body)
			}
		} else {
			got := errorBody(t, rec)
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("%s %s: got body %+v; want %+v", method, path, got, want)
			}
		}
		if wantLog == "" {
			if s.log.Len() != 0 {
				t.Errorf("%s %s: logged %q; want nothing", method, path, s.log)
			}
			return
		}
		var line map[string]any
		if err := json.Unmarshal(s.log.Bytes(), &line); err != nil {
			t.Fatalf("%s %s: log %q is not one JSON line: %v", method, path, s.log, err)
		}
		if line["level"] != "error" || line["message"] != wantLog || line["path"] != path {
			t.Errorf("%s %s: logged %v; want an error %q with the path", method, path, line, wantLog)
		}
	}
	internal := ErrorBody{Error: "internal_error", Message: "internal error"}
	f("GET", "/api-error", 422, ErrorBody{Error: "invalid_request", Message: "the request is invalid",
		Details: []event.FieldError{{Index: 2, Field: "status_code", Message: "is required"}}}, "", "")
	f("GET", "/wrapped", 503, ErrorBody{Error: "unavailable", Message: "the store is unavailable"}, "2", "")
	f("GET", "/unavailable", 503, ErrorBody{Error: "unavailable", Message: "busy"}, "3", "")
	f("HEAD", "/unavailable", 503, ErrorBody{}, "3", "")
	// An unexpected error is logged (its text included, for operators) and
	// answered with a bare 500.
	f("GET", "/internal", 500, internal, "", "request failed")
	f("HEAD", "/internal", 500, ErrorBody{}, "", "request failed")
	f("GET", "/panic", 500, internal, "", "handler panicked")
	f("GET", "/panic-error", 500, internal, "", "handler panicked")
	f("GET", "/ok", 200, ErrorBody{}, "", "") // the process survived
	f("GET", "/echo-error", 429, ErrorBody{Error: "too_many_requests", Message: "Too Many Requests"}, "", "")
	f("GET", "/no-status", 500, internal, "", "request failed")
	f("GET", "/nowhere", 404, ErrorBody{Error: "not_found", Message: "Not Found"}, "", "")
	f("POST", "/ok", 405, ErrorBody{Error: "method_not_allowed", Message: "Method Not Allowed"}, "", "")
	f("HEAD", "/nowhere", 404, ErrorBody{}, "", "")
}

func TestErrorHandlerKeepsCommittedResponse(t *testing.T) {
	s := newServer(t)
	s.r.Handle(http.MethodGet, "/committed", Public, func(c echo.Context) error {
		_ = c.String(http.StatusOK, "partial")
		return errors.New(secret)
	})
	rec := s.do(http.MethodGet, "/committed", "")
	if rec.Code != http.StatusOK || rec.Body.String() != "partial" {
		t.Fatalf("got %d %q; want the handler's 200 \"partial\" untouched", rec.Code, rec.Body)
	}
}

func TestRecovererRepanicsAbortHandler(t *testing.T) {
	s := newServer(t)
	s.r.Handle(http.MethodGet, "/abort", Public, func(echo.Context) error { panic(http.ErrAbortHandler) })
	defer func() {
		if r := recover(); r != http.ErrAbortHandler {
			t.Fatalf("recovered %v; want http.ErrAbortHandler to reach net/http", r)
		}
		if s.log.Len() != 0 {
			t.Errorf("logged %q for an aborted handler; want nothing", s.log)
		}
	}()
	s.do(http.MethodGet, "/abort", "")
	t.Fatal("the abort panic was swallowed")
}

// TestPanicOverHTTP checks, over a real connection, that a panicking handler
// gets a JSON 500 and the server keeps serving on the same connection.
func TestPanicOverHTTP(t *testing.T) {
	s := newServer(t)
	s.r.Handle(http.MethodGet, "/panic", Public, func(echo.Context) error { panic(secret) })
	NewHealth(nil).Register(s.r)
	srv := httptest.NewServer(s.e)
	defer srv.Close()
	client := srv.Client()
	defer client.CloseIdleConnections()
	for i, path := range []string{"/panic", "/healthz", "/panic", "/healthz"} {
		resp, err := client.Get(srv.URL + path)
		if err != nil {
			t.Fatalf("request %d, GET %s: %v", i, path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		want, wantBody := 200, `{"status":"ok"}`
		if path == "/panic" {
			want, wantBody = 500, `{"error":"internal_error","message":"internal error"}`
		}
		if resp.StatusCode != want || strings.TrimSpace(string(body)) != wantBody {
			t.Errorf("request %d, GET %s: got %d %s; want %d %s", i, path, resp.StatusCode, body, want, wantBody)
		}
	}
}

func TestHealth(t *testing.T) {
	var draining atomic.Bool
	var natsErr, chErr atomic.Pointer[error]
	probe := func(p *atomic.Pointer[error]) func(context.Context) error {
		return func(ctx context.Context) error {
			if dl, ok := ctx.Deadline(); !ok || time.Until(dl) > 2*time.Second {
				return errors.New("probe without a deadline of at most 2s")
			}
			if err := p.Load(); err != nil {
				return *err
			}
			return nil
		}
	}
	s := newServer(t)
	NewHealth(draining.Load, Check{Name: "nats", Probe: probe(&natsErr)}, Check{Name: "clickhouse", Probe: probe(&chErr)}).Register(s.r)

	f := func(path string, wantStatus int, wantBody string) {
		t.Helper()
		rec := s.do(http.MethodGet, path, "")
		if rec.Code != wantStatus {
			t.Errorf("GET %s: got status %d; want %d (body %s)", path, rec.Code, wantStatus, rec.Body)
		}
		if got := strings.TrimSpace(rec.Body.String()); got != wantBody {
			t.Errorf("GET %s: got body %s; want %s", path, got, wantBody)
		}
		wantRetry := ""
		if wantStatus == http.StatusServiceUnavailable {
			wantRetry = "5"
		}
		if got := rec.Header().Get("Retry-After"); got != wantRetry {
			t.Errorf("GET %s: got Retry-After %q; want %q", path, got, wantRetry)
		}
	}
	f("/healthz", 200, `{"status":"ok"}`)
	f("/readyz", 200, `{"status":"ready","checks":{"clickhouse":"ok","nats":"ok"}}`)

	leak := fmt.Errorf("dial tcp %s: connection refused", secret)
	chErr.Store(&leak)
	f("/readyz", 503, `{"status":"not_ready","checks":{"clickhouse":"failing","nats":"ok"}}`)
	natsErr.Store(&leak)
	f("/readyz", 503, `{"status":"not_ready","checks":{"clickhouse":"failing","nats":"failing"}}`)
	f("/healthz", 200, `{"status":"ok"}`) // liveness does not depend on the checks

	natsErr.Store(nil)
	chErr.Store(nil)
	draining.Store(true)
	f("/readyz", 503, `{"status":"not_ready","checks":{"clickhouse":"ok","nats":"ok","shutdown":"draining"}}`)
	f("/healthz", 200, `{"status":"ok"}`)
	draining.Store(false)
	f("/readyz", 200, `{"status":"ready","checks":{"clickhouse":"ok","nats":"ok"}}`)

	// Without checks or a draining function, the process is ready.
	s2 := newServer(t)
	NewHealth(nil).Register(s2.r)
	if rec := s2.do(http.MethodGet, "/readyz", ""); rec.Code != 200 || strings.TrimSpace(rec.Body.String()) != `{"status":"ready","checks":{}}` {
		t.Errorf("GET /readyz without checks: got %d %s; want 200 ready", rec.Code, rec.Body)
	}
	if s.log.Len() != 0 {
		t.Errorf("health endpoints logged %q; want nothing", s.log)
	}
}
