package auth_test

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/labstack/echo/v4"
	"github.com/rs/zerolog"

	"github.com/wedsync/pulse/internal/auth"
	"github.com/wedsync/pulse/internal/httpapi"
)

// TestJWTBehindGuard walks the status codes the httpapi guard gives JWTs
// and static tokens through Chain: 401 for bad credentials, 403 for a
// valid JWT without the admin role, on admin and ingest routes alike.
func TestJWTBehindGuard(t *testing.T) {
	secret := []byte("super-secret-jwt-token-with-at-least-32-characters-long")
	j, err := auth.NewJWT(auth.JWTConfig{Secret: secret, Audience: "authenticated"})
	if err != nil {
		t.Fatal(err)
	}
	var s auth.StaticTokens
	s.Add("ingest-token-0123456789", auth.Principal{Name: "web", Scopes: []auth.Scope{auth.ScopeIngest}})
	e := httpapi.New(zerolog.Nop())
	r := httpapi.NewRouter(e, auth.Chain(j, &s))
	ok := func(c echo.Context) error {
		p, _ := httpapi.PrincipalOf(c)
		return c.String(http.StatusOK, p.Name)
	}
	r.Handle(http.MethodGet, "/api/admin/system/health", auth.ScopeAdmin, ok)
	r.Handle(http.MethodPost, "/api/admin/system/metrics", auth.ScopeIngest, ok)

	token := func(c jwt.MapClaims) string {
		s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(secret)
		if err != nil {
			t.Fatal(err)
		}
		return "Bearer " + s
	}
	claims := func(role string, appRole string, exp time.Time) jwt.MapClaims {
		c := jwt.MapClaims{"sub": "u1", "aud": "authenticated", "role": role, "exp": exp.Unix()}
		if appRole != "" {
			c["app_metadata"] = map[string]any{"role": appRole}
		}
		return c
	}
	hour := time.Now().Add(time.Hour)
	admin := token(claims("admin", "", hour))
	appAdmin := token(claims("authenticated", "admin", hour))
	user := token(claims("authenticated", "", hour))
	expired := token(claims("admin", "", time.Now().Add(-time.Hour)))
	wrongAud := token(jwt.MapClaims{"sub": "u1", "aud": "anon", "role": "admin", "exp": hour.Unix()})

	f := func(method, path, authorization string, want int) {
		t.Helper()
		req := httptest.NewRequest(method, path, nil)
		if authorization != "" {
			req.Header.Set(echo.HeaderAuthorization, authorization)
		}
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, req)
		if rec.Code != want {
			t.Errorf("%s %s: got %d; want %d (body %q)", method, path, rec.Code, want, rec.Body)
		}
	}
	const health, metrics = "/api/admin/system/health", "/api/admin/system/metrics"
	f(http.MethodGet, health, admin, http.StatusOK)
	f(http.MethodGet, health, appAdmin, http.StatusOK)
	f(http.MethodGet, health, user, http.StatusForbidden)
	f(http.MethodGet, health, expired, http.StatusUnauthorized)
	f(http.MethodGet, health, wrongAud, http.StatusUnauthorized)
	f(http.MethodGet, health, "Bearer ingest-token-0123456789", http.StatusForbidden)
	f(http.MethodGet, health, "", http.StatusUnauthorized)
	f(http.MethodPost, metrics, admin, http.StatusOK) // admins hold every scope
	f(http.MethodPost, metrics, user, http.StatusForbidden)
	f(http.MethodPost, metrics, expired, http.StatusUnauthorized)
	f(http.MethodPost, metrics, "Bearer ingest-token-0123456789", http.StatusOK)
}
