package auth

import (
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// DefaultLeeway is the clock skew JWT tolerates when JWTConfig.Leeway is zero.
const DefaultLeeway = 30 * time.Second

// MaxLeeway bounds JWTConfig.Leeway: a larger skew would let expired tokens
// live on noticeably.
const MaxLeeway = 5 * time.Minute

// MinSecretLen is the shortest HS256 secret JWTConfig accepts (RFC 7518,
// section 3.2: the key must be at least as long as the hash output).
const MinSecretLen = 32

// maxJWTLen bounds the size of a token JWT will parse at all.
const maxJWTLen = 8 << 10

// JWTConfig configures a JWT authenticator. The zero value is invalid: a
// secret is required.
type JWTConfig struct {
	// Secret is the shared HS256 secret (PULSE_JWT_SECRET; for Supabase the
	// project's JWT secret, used as raw bytes, not base64-decoded). At least
	// MinSecretLen bytes.
	Secret []byte
	// Leeway is the clock skew tolerated on exp, nbf and iat; 0 means
	// DefaultLeeway. At most MaxLeeway.
	Leeway time.Duration
	// Issuer, when set, must equal the iss claim (Supabase:
	// "https://<project>.supabase.co/auth/v1").
	Issuer string
	// Audience, when set, must be one of the aud claim's values (Supabase:
	// "authenticated").
	Audience string
	// Now is the clock; nil means time.Now. For tests.
	Now func() time.Time
}

// Validate reports a configuration error. Its text never holds the secret.
func (c JWTConfig) Validate() error {
	if len(c.Secret) < MinSecretLen {
		return fmt.Errorf("jwt secret: must be at least %d bytes, got %d", MinSecretLen, len(c.Secret))
	}
	if c.Leeway < 0 || c.Leeway > MaxLeeway {
		return fmt.Errorf("jwt leeway %s: must be between 0 and %s", c.Leeway, MaxLeeway)
	}
	return nil
}

// JWT authenticates Supabase-compatible bearer JWTs signed with HS256 and a
// shared secret. Only HS256 is accepted ("none", RS*, ES*, HS384 and HS512
// are refused); exp is required, nbf and iat are honoured, each within the
// configured leeway; sub is required and names the principal "jwt:<sub>".
//
// A token whose role claim or app_metadata.role claim is "admin" gets
// ScopeAdmin. Any other valid token authenticates but gets no scope at all,
// so every guarded route answers it 403: Supabase issues JWTs to every
// signed-in user of the app (role "authenticated"), and none of them may
// read the admin API or submit metrics. Ingest uses static tokens.
//
// A JWT is safe for concurrent use.
type JWT struct {
	secret []byte
	parser *jwt.Parser
}

// NewJWT returns a JWT authenticator for cfg, or cfg's validation error.
func NewJWT(cfg JWTConfig) (*JWT, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Leeway == 0 {
		cfg.Leeway = DefaultLeeway
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(cfg.Leeway),
	}
	if cfg.Now != nil {
		opts = append(opts, jwt.WithTimeFunc(cfg.Now))
	}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	return &JWT{secret: append([]byte(nil), cfg.Secret...), parser: jwt.NewParser(opts...)}, nil
}

// claims are the parts of a Supabase access token JWT reads. Role and
// app_metadata.role are decoded loosely: a claim of an unexpected type is
// simply not "admin", rather than making the token unreadable.
type claims struct {
	jwt.RegisteredClaims
	Role        any            `json:"role"`
	AppMetadata map[string]any `json:"app_metadata"`
}

// reasons are the jwt errors JWT reports by name; their texts are fixed and
// hold nothing of the token. Anything else is reported as errInvalidToken.
var reasons = []error{
	jwt.ErrTokenExpired,
	jwt.ErrTokenNotValidYet,
	jwt.ErrTokenUsedBeforeIssued,
	jwt.ErrTokenRequiredClaimMissing,
	jwt.ErrTokenInvalidIssuer,
	jwt.ErrTokenInvalidAudience,
	jwt.ErrTokenSignatureInvalid,
	jwt.ErrTokenMalformed,
}

var (
	errInvalidToken = errors.New("token is invalid")
	errMissingSub   = errors.New("token has no sub claim")
	errTooLong      = errors.New("token is too long")
)

// Authenticate implements Authenticator. Errors wrap ErrUnauthenticated and
// one of jwt's fixed reasons (jwt.ErrTokenExpired, ...); they never hold
// the token, its claims or the secret.
func (j *JWT) Authenticate(token string) (Principal, error) {
	if len(token) > maxJWTLen {
		return Principal{}, fmt.Errorf("jwt: %w: %w", errTooLong, ErrUnauthenticated)
	}
	var c claims
	_, err := j.parser.ParseWithClaims(token, &c, func(t *jwt.Token) (any, error) {
		// WithValidMethods already refused every other alg; checking the
		// method's type as well keeps a key of the wrong kind from ever
		// reaching a verifier.
		if _, ok := t.Method.(*jwt.SigningMethodHMAC); !ok {
			return nil, jwt.ErrTokenSignatureInvalid
		}
		return j.secret, nil
	})
	if err != nil {
		reason := errInvalidToken
		for _, r := range reasons {
			if errors.Is(err, r) {
				reason = r
				break
			}
		}
		return Principal{}, fmt.Errorf("jwt: %w: %w", reason, ErrUnauthenticated)
	}
	if c.Subject == "" {
		return Principal{}, fmt.Errorf("jwt: %w: %w", errMissingSub, ErrUnauthenticated)
	}
	p := Principal{Name: "jwt:" + c.Subject}
	if c.Role == "admin" || c.AppMetadata["role"] == "admin" {
		p.Scopes = []Scope{ScopeAdmin}
	}
	return p, nil
}

// Accepts reports whether token has the shape of a JWT, which is all Chain
// needs to route it here.
func (j *JWT) Accepts(token string) bool { return LooksLikeJWT(token) }

// LooksLikeJWT reports whether token has the compact JWS shape: three parts
// separated by dots, each of base64url characters without padding, the
// first two not empty (an unsigned token's third part is). It reads only
// the token's shape, never its content.
func LooksLikeJWT(token string) bool {
	part, dots := 0, 0
	for i := 0; i < len(token); i++ {
		switch b := token[i]; {
		case b == '.':
			if part == 0 || dots == 2 {
				return false
			}
			dots++
			part = 0
		case b >= 'A' && b <= 'Z', b >= 'a' && b <= 'z', b >= '0' && b <= '9', b == '-', b == '_':
			part++
		default:
			return false
		}
	}
	return dots == 2
}

// Chain returns an Authenticator that tries auths in order. An
// authenticator with an Accepts(token string) bool method (JWT has one) is
// tried only on the tokens it accepts; one without (StaticTokens) is tried
// on every token. So a JWT-shaped token goes to JWT first and, if JWT
// refuses it, on to static tokens (a static token may contain dots), and
// any other token goes to static tokens only.
//
// The time taken reveals only the token's shape and whether it verified,
// which the answer reveals anyway: StaticTokens compares in constant time,
// and JWT's signature check is constant-time HMAC.
//
// When every authenticator refuses, the error is the first one's (for a
// JWT-shaped token, JWT's reason); it wraps ErrUnauthenticated.
func Chain(auths ...Authenticator) Authenticator {
	return chain(auths)
}

type chain []Authenticator

type acceptor interface {
	Accepts(token string) bool
}

func (ch chain) Authenticate(token string) (Principal, error) {
	var first error
	for _, a := range ch {
		if ac, ok := a.(acceptor); ok && !ac.Accepts(token) {
			continue
		}
		p, err := a.Authenticate(token)
		if err == nil {
			return p, nil
		}
		if first == nil {
			first = err
		}
	}
	if first == nil {
		return Principal{}, ErrUnauthenticated
	}
	return Principal{}, first
}
