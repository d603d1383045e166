package auth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"hash"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const testSecret = "super-secret-jwt-token-with-at-least-32-characters-long"

// now is the fixed clock of the JWT tests.
var now = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

func newTestJWT(t *testing.T, cfg JWTConfig) *JWT {
	t.Helper()
	if cfg.Secret == nil {
		cfg.Secret = []byte(testSecret)
	}
	cfg.Now = func() time.Time { return now }
	j, err := NewJWT(cfg)
	if err != nil {
		t.Fatalf("NewJWT: %v", err)
	}
	return j
}

// supabase returns the claims of a Supabase access token for sub, issued
// a minute ago and valid for an hour, with overrides applied (a nil value
// deletes the claim).
func supabase(sub string, overrides map[string]any) jwt.MapClaims {
	c := jwt.MapClaims{
		"sub":           sub,
		"aud":           "authenticated",
		"iss":           "https://abc.supabase.co/auth/v1",
		"role":          "authenticated",
		"iat":           now.Add(-time.Minute).Unix(),
		"exp":           now.Add(time.Hour).Unix(),
		"email":         "someone@example.com",
		"app_metadata":  map[string]any{"provider": "email", "providers": []string{"email"}},
		"user_metadata": map[string]any{},
		"session_id":    "6b6a2f5e-1f2d-4c0b-9a5e-1c2d3e4f5a6b",
	}
	for k, v := range overrides {
		if v == nil {
			delete(c, k)
			continue
		}
		c[k] = v
	}
	return c
}

func sign(t *testing.T, m jwt.SigningMethod, key any, c jwt.Claims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(m, c).SignedString(key)
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return s
}

func hs256(t *testing.T, c jwt.Claims) string {
	t.Helper()
	return sign(t, jwt.SigningMethodHS256, []byte(testSecret), c)
}

func TestJWTAuthenticate(t *testing.T) {
	j := newTestJWT(t, JWTConfig{})
	const sub = "8f14e45f-ceea-467f-a2d6-6c5d6e5a8b1e"
	f := func(name string, token string, wantScopes []Scope) {
		t.Helper()
		p, err := j.Authenticate(token)
		if err != nil {
			t.Fatalf("%s: Authenticate: %v", name, err)
		}
		if p.Name != "jwt:"+sub {
			t.Errorf("%s: Name = %q; want %q", name, p.Name, "jwt:"+sub)
		}
		if !slices.Equal(p.Scopes, wantScopes) {
			t.Errorf("%s: Scopes = %v; want %v", name, p.Scopes, wantScopes)
		}
	}
	admin := []Scope{ScopeAdmin}
	f("role admin", hs256(t, supabase(sub, map[string]any{"role": "admin"})), admin)
	f("app_metadata.role admin", hs256(t, supabase(sub, map[string]any{
		"app_metadata": map[string]any{"provider": "email", "role": "admin"},
	})), admin)
	// A signed-in app user is authenticated but holds no scope: the guard
	// answers 403 on every route, admin and ingest alike.
	f("authenticated user", hs256(t, supabase(sub, nil)), nil)
	f("no role at all", hs256(t, supabase(sub, map[string]any{"role": nil, "app_metadata": nil})), nil)
	f("role of another type", hs256(t, supabase(sub, map[string]any{"role": 1, "app_metadata": map[string]any{"role": []string{"admin"}}})), nil)
	f("user_metadata cannot make an admin", hs256(t, supabase(sub, map[string]any{"user_metadata": map[string]any{"role": "admin"}})), nil)
	f("role case matters", hs256(t, supabase(sub, map[string]any{"role": "Admin"})), nil)
	// Clock skew within the leeway (30 s by default).
	f("expired 29s ago", hs256(t, supabase(sub, map[string]any{"exp": now.Add(-29 * time.Second).Unix()})), nil)
	f("nbf 29s ahead", hs256(t, supabase(sub, map[string]any{"nbf": now.Add(29 * time.Second).Unix()})), nil)
	f("iat 29s ahead", hs256(t, supabase(sub, map[string]any{"iat": now.Add(29 * time.Second).Unix()})), nil)
	f("no iat", hs256(t, supabase(sub, map[string]any{"iat": nil})), nil)
	f("fractional exp", hs256(t, supabase(sub, map[string]any{"exp": float64(now.Add(time.Hour).Unix()) + 0.5})), nil)
}

func TestJWTRejects(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	j := newTestJWT(t, JWTConfig{})
	valid := hs256(t, supabase("u1", nil))
	f := func(name, token string, reason error) {
		t.Helper()
		p, err := j.Authenticate(token)
		if !errors.Is(err, ErrUnauthenticated) {
			t.Fatalf("%s: got %+v, %v; want ErrUnauthenticated", name, p, err)
		}
		if reason != nil && !errors.Is(err, reason) {
			t.Errorf("%s: error %q; want reason %q", name, err, reason)
		}
		if p.Name != "" || p.Scopes != nil {
			t.Errorf("%s: got principal %+v with the error; want none", name, p)
		}
		msg := err.Error()
		if strings.Contains(msg, testSecret) {
			t.Errorf("%s: error %q shows the secret", name, msg)
		}
		// No part of the token (beyond a few characters by chance) may
		// appear in the error: it is logged.
		for _, part := range strings.Split(token, ".") {
			if len(part) >= 8 && strings.Contains(msg, part) {
				t.Errorf("%s: error %q shows part of the token", name, msg)
			}
		}
	}
	adminClaims := supabase("u1", map[string]any{"role": "admin"})

	f("expired", hs256(t, supabase("u1", map[string]any{"exp": now.Add(-time.Hour).Unix()})), jwt.ErrTokenExpired)
	f("expired beyond leeway", hs256(t, supabase("u1", map[string]any{"exp": now.Add(-31 * time.Second).Unix()})), jwt.ErrTokenExpired)
	f("not yet valid", hs256(t, supabase("u1", map[string]any{"nbf": now.Add(time.Minute).Unix()})), jwt.ErrTokenNotValidYet)
	f("issued in the future", hs256(t, supabase("u1", map[string]any{"iat": now.Add(time.Minute).Unix()})), jwt.ErrTokenUsedBeforeIssued)
	f("missing exp", hs256(t, supabase("u1", map[string]any{"exp": nil})), jwt.ErrTokenRequiredClaimMissing)
	f("missing sub", hs256(t, supabase("", map[string]any{"sub": nil, "role": "admin"})), errMissingSub)
	f("empty sub", hs256(t, supabase("", map[string]any{"role": "admin"})), errMissingSub)
	f("wrong secret", sign(t, jwt.SigningMethodHS256, []byte(strings.Repeat("x", 40)), adminClaims), jwt.ErrTokenSignatureInvalid)
	f("HS512", sign(t, jwt.SigningMethodHS512, []byte(testSecret), adminClaims), jwt.ErrTokenSignatureInvalid)
	f("HS384", sign(t, jwt.SigningMethodHS384, []byte(testSecret), adminClaims), jwt.ErrTokenSignatureInvalid)
	f("RS256", sign(t, jwt.SigningMethodRS256, rsaKey, adminClaims), jwt.ErrTokenSignatureInvalid)
	f("alg none", sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, adminClaims), jwt.ErrTokenSignatureInvalid)
	// alg confusion: an RS256 header over an HMAC made with the secret.
	f("RS256 header, HMAC signature", rawToken(t, map[string]any{"alg": "RS256", "typ": "JWT"}, adminClaims, sha256.New), jwt.ErrTokenSignatureInvalid)
	f("HS512 header, HMAC-SHA512 signature", rawToken(t, map[string]any{"alg": "HS512", "typ": "JWT"}, adminClaims, sha512.New), jwt.ErrTokenSignatureInvalid)
	f("none header, HMAC signature", rawToken(t, map[string]any{"alg": "none"}, adminClaims, sha256.New), jwt.ErrTokenSignatureInvalid)
	f("no alg", rawToken(t, map[string]any{"typ": "JWT"}, adminClaims, sha256.New), nil)
	// The same construction with an HS256 header is accepted, so the cases
	// above fail for their alg and nothing else.
	if p, err := j.Authenticate(rawToken(t, map[string]any{"alg": "HS256", "typ": "JWT"}, adminClaims, sha256.New)); err != nil || !p.Has(ScopeAdmin) {
		t.Fatalf("hand-made HS256 token: got %+v, %v; want an admin", p, err)
	}

	// Tampering: the payload of an admin token under a user token's signature.
	parts := strings.Split(valid, ".")
	adminParts := strings.Split(hs256(t, adminClaims), ".")
	f("tampered payload", parts[0]+"."+adminParts[1]+"."+parts[2], jwt.ErrTokenSignatureInvalid)
	f("signature removed", parts[0]+"."+parts[1]+".", jwt.ErrTokenSignatureInvalid)
	f("signature truncated", parts[0]+"."+parts[1]+"."+parts[2][:10], jwt.ErrTokenSignatureInvalid)

	f("garbage", "not-a-jwt-at-all-0123456789", jwt.ErrTokenMalformed)
	f("empty", "", jwt.ErrTokenMalformed)
	f("two parts", parts[0]+"."+parts[1], jwt.ErrTokenMalformed)
	f("four parts", valid+".abc", jwt.ErrTokenMalformed)
	f("base64 junk", "aaaa.bbbb.cccc", jwt.ErrTokenMalformed)
	f("padded", valid+"==", nil)
	f("too long", parts[0]+"."+strings.Repeat("A", maxJWTLen)+"."+parts[2], errTooLong)
	f("claims not an object", rawToken(t, map[string]any{"alg": "HS256"}, nil, sha256.New), nil)
}

// rawToken builds a token by hand: header and claims as given, signed with
// an HMAC of h over the test secret.
func rawToken(t *testing.T, header map[string]any, c jwt.MapClaims, h func() hash.Hash) string {
	t.Helper()
	enc := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	signing := enc(header) + "." + enc(c)
	m := hmac.New(h, []byte(testSecret))
	m.Write([]byte(signing))
	return signing + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func TestJWTIssuerAudience(t *testing.T) {
	j := newTestJWT(t, JWTConfig{Issuer: "https://abc.supabase.co/auth/v1", Audience: "authenticated"})
	f := func(name string, overrides map[string]any, reason error) {
		t.Helper()
		overrides["role"] = "admin"
		p, err := j.Authenticate(hs256(t, supabase("u1", overrides)))
		if reason == nil {
			if err != nil || !p.Has(ScopeAdmin) {
				t.Errorf("%s: got %+v, %v; want an admin", name, p, err)
			}
			return
		}
		if !errors.Is(err, ErrUnauthenticated) || !errors.Is(err, reason) {
			t.Errorf("%s: got %+v, %v; want ErrUnauthenticated and %q", name, p, err, reason)
		}
	}
	f("both match", map[string]any{}, nil)
	f("aud as a list", map[string]any{"aud": []string{"other", "authenticated"}}, nil)
	f("wrong issuer", map[string]any{"iss": "https://evil.supabase.co/auth/v1"}, jwt.ErrTokenInvalidIssuer)
	f("no issuer", map[string]any{"iss": nil}, jwt.ErrTokenRequiredClaimMissing)
	f("wrong audience", map[string]any{"aud": "anon"}, jwt.ErrTokenInvalidAudience)
	f("no audience", map[string]any{"aud": nil}, jwt.ErrTokenRequiredClaimMissing)

	// Without Issuer and Audience configured, neither is checked.
	open := newTestJWT(t, JWTConfig{})
	if _, err := open.Authenticate(hs256(t, supabase("u1", map[string]any{"iss": "anyone", "aud": "anything"}))); err != nil {
		t.Errorf("unconfigured issuer and audience: %v; want no check", err)
	}
}

func TestJWTLeeway(t *testing.T) {
	f := func(leeway, expiredAgo time.Duration, wantOK bool) {
		t.Helper()
		j := newTestJWT(t, JWTConfig{Leeway: leeway})
		_, err := j.Authenticate(hs256(t, supabase("u1", map[string]any{"exp": now.Add(-expiredAgo).Unix()})))
		if (err == nil) != wantOK {
			t.Errorf("leeway %s, expired %s ago: got %v; want ok=%v", leeway, expiredAgo, err, wantOK)
		}
	}
	f(0, 29*time.Second, true) // 0 means DefaultLeeway
	f(0, 31*time.Second, false)
	f(time.Second, 2*time.Second, false)
	f(2*time.Minute, 90*time.Second, true)
	f(MaxLeeway, MaxLeeway+time.Second, false)
}

func TestJWTConfigValidate(t *testing.T) {
	f := func(cfg JWTConfig, wantErr bool) {
		t.Helper()
		err := cfg.Validate()
		if (err != nil) != wantErr {
			t.Fatalf("Validate(secret %d bytes, leeway %s) = %v; want error %v", len(cfg.Secret), cfg.Leeway, err, wantErr)
		}
		if err != nil && len(cfg.Secret) > 0 && strings.Contains(err.Error(), string(cfg.Secret)) {
			t.Errorf("Validate error %q shows the secret", err)
		}
		if _, nerr := NewJWT(cfg); (nerr != nil) != wantErr {
			t.Errorf("NewJWT: got %v; want error %v", nerr, wantErr)
		}
	}
	f(JWTConfig{Secret: []byte(testSecret)}, false)
	f(JWTConfig{Secret: []byte(strings.Repeat("k", 32))}, false)
	f(JWTConfig{Secret: []byte(strings.Repeat("k", 31))}, true)
	f(JWTConfig{Secret: []byte("short-secret")}, true)
	f(JWTConfig{}, true)
	f(JWTConfig{Secret: []byte(testSecret), Leeway: -time.Second}, true)
	f(JWTConfig{Secret: []byte(testSecret), Leeway: MaxLeeway}, false)
	f(JWTConfig{Secret: []byte(testSecret), Leeway: MaxLeeway + time.Second}, true)
}

// TestJWTSecretCopied checks that NewJWT keeps its own copy of the secret:
// the caller may wipe or reuse its buffer.
func TestJWTSecretCopied(t *testing.T) {
	secret := []byte(testSecret)
	j := newTestJWT(t, JWTConfig{Secret: secret})
	token := hs256(t, supabase("u1", nil))
	for i := range secret {
		secret[i] = 0
	}
	if _, err := j.Authenticate(token); err != nil {
		t.Fatalf("after the caller wiped its secret: %v", err)
	}
}

func TestLooksLikeJWT(t *testing.T) {
	f := func(token string, want bool) {
		t.Helper()
		if got := LooksLikeJWT(token); got != want {
			t.Errorf("LooksLikeJWT(%q) = %v; want %v", token, got, want)
		}
	}
	f("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1MSJ9.c2ln", true)
	f("a.b.c", true)
	f("a-_.b_-.C09", true)
	f("a.b.", true) // unsigned: JWT refuses it with a reason
	f("", false)
	f("abc", false)
	f("a.b", false)
	f("a.b.c.d", false)
	f(".b.c", false)
	f("a..c", false)
	f("a.b.c=", false) // padding is not base64url in a JWS
	f("a.b.c/", false)
	f("a+b.c.d", false)
	f("admin-token-0123456789", false)
	f("a b.c.d", false)
}

func TestChain(t *testing.T) {
	j := newTestJWT(t, JWTConfig{})
	var s StaticTokens
	s.Add("admin-token-0123456789", Principal{Name: "ops", Scopes: []Scope{ScopeAdmin}})
	s.Add("ingest-token-0123456789", Principal{Name: "web", Scopes: []Scope{ScopeIngest}})
	// A static token may have a JWT's shape; JWT refuses it, static
	// tokens accept it.
	s.Add("dotted.static.token-0123456789", Principal{Name: "dotted", Scopes: []Scope{ScopeIngest}})
	c := Chain(j, &s)

	f := func(token, wantName string, reason error) {
		t.Helper()
		p, err := c.Authenticate(token)
		if wantName == "" {
			if !errors.Is(err, ErrUnauthenticated) {
				t.Fatalf("Chain.Authenticate(%.20q): got %+v, %v; want ErrUnauthenticated", token, p, err)
			}
			if reason != nil && !errors.Is(err, reason) {
				t.Errorf("Chain.Authenticate(%.20q): error %q; want reason %q", token, err, reason)
			}
			return
		}
		if err != nil || p.Name != wantName {
			t.Errorf("Chain.Authenticate(%.20q) = %+v, %v; want %s", token, p, err, wantName)
		}
	}
	f("admin-token-0123456789", "ops", nil)
	f("ingest-token-0123456789", "web", nil)
	f("dotted.static.token-0123456789", "dotted", nil)
	f(hs256(t, supabase("u1", map[string]any{"role": "admin"})), "jwt:u1", nil)
	f(hs256(t, supabase("u2", nil)), "jwt:u2", nil)
	// A JWT-shaped token that fails reports JWT's reason.
	f(hs256(t, supabase("u1", map[string]any{"exp": now.Add(-time.Hour).Unix()})), "", jwt.ErrTokenExpired)
	f("unknown-token-0123456789", "", nil)
	f("", "", nil)

	// A token of a shape no authenticator accepts is refused.
	if _, err := Chain(j).Authenticate("admin-token-0123456789"); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("Chain(jwt) on a static token: got %v; want ErrUnauthenticated", err)
	}
	if _, err := Chain().Authenticate("admin-token-0123456789"); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("empty Chain: got %v; want ErrUnauthenticated", err)
	}
	// Static tokens never see a JWT-shaped token JWT accepted: the order
	// decides, and JWT comes first.
	var dup StaticTokens
	tok := hs256(t, supabase("u3", nil))
	dup.Add(tok, Principal{Name: "static-dup", Scopes: []Scope{ScopeAdmin}})
	if p, err := Chain(j, &dup).Authenticate(tok); err != nil || p.Name != "jwt:u3" {
		t.Errorf("Chain(jwt, static) on a token both accept: got %+v, %v; want jwt:u3", p, err)
	}
}
