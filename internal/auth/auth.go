// Package auth decides who a caller is and what they may do. Principals
// carry scopes; routes demand one (see httpapi.Router).
package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"strings"
)

// Scope is a permission a route demands.
type Scope string

const (
	// ScopeAdmin reads and manages everything under /api/admin.
	ScopeAdmin Scope = "admin"
	// ScopeIngest may only submit events.
	ScopeIngest Scope = "ingest"
)

// Principal is an authenticated caller.
type Principal struct {
	Name   string // stable and safe to log: never the credential itself
	Scopes []Scope
}

// Has reports whether p holds scope s. Admins hold every scope.
func (p Principal) Has(s Scope) bool {
	for _, have := range p.Scopes {
		if have == s || have == ScopeAdmin {
			return true
		}
	}
	return false
}

// ErrUnauthenticated means the credential is missing, malformed, unknown or
// expired. Its text is safe to show to the caller.
var ErrUnauthenticated = errors.New("missing or invalid credentials")

// Authenticator turns a bearer credential into a principal, or returns an
// error wrapping ErrUnauthenticated.
type Authenticator interface {
	Authenticate(token string) (Principal, error)
}

// StaticTokens authenticates fixed bearer tokens. Lookups compare SHA-256
// digests in constant time, so neither a token nor its length leaks through
// timing.
type StaticTokens struct {
	entries []staticToken
}

type staticToken struct {
	digest    [32]byte
	principal Principal
}

// ParseTokens reads a token list as written in PULSE_ADMIN_TOKENS or
// PULSE_INGEST_TOKENS: comma-separated "name:token" pairs or bare tokens
// (named <scope>-<n>). Spaces around names and tokens are dropped; names
// must not be empty and tokens must be at least 16 characters. Errors name
// the offending entry, never its token.
func ParseTokens(list string, scope Scope) ([]Principal, []string, error) {
	var ps []Principal
	var toks []string
	for i, item := range strings.Split(list, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, tok, ok := strings.Cut(item, ":")
		if !ok {
			name, tok = fmt.Sprintf("%s-%d", scope, i+1), item
		}
		// The guard trims the bearer token it is given, so a token kept with
		// a leading space could never match.
		name, tok = strings.TrimSpace(name), strings.TrimSpace(tok)
		if name == "" {
			return nil, nil, fmt.Errorf("%s token %d: the name before ':' is empty", scope, i+1)
		}
		if len(tok) < 16 {
			return nil, nil, fmt.Errorf("%s token %q: must be at least 16 characters", scope, name)
		}
		ps = append(ps, Principal{Name: name, Scopes: []Scope{scope}})
		toks = append(toks, tok)
	}
	return ps, toks, nil
}

// Add registers token for principal p.
func (s *StaticTokens) Add(token string, p Principal) {
	s.entries = append(s.entries, staticToken{digest: sha256.Sum256([]byte(token)), principal: p})
}

// Len is the number of registered tokens.
func (s *StaticTokens) Len() int { return len(s.entries) }

// Authenticate implements Authenticator. Every entry is compared, match or
// not, so the time taken does not depend on which token matched.
func (s *StaticTokens) Authenticate(token string) (Principal, error) {
	d := sha256.Sum256([]byte(token))
	found := -1
	for i := range s.entries {
		if subtle.ConstantTimeCompare(d[:], s.entries[i].digest[:]) == 1 {
			found = i
		}
	}
	if found < 0 {
		return Principal{}, ErrUnauthenticated
	}
	return s.entries[found].principal, nil
}
