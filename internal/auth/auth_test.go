package auth

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestParseTokens(t *testing.T) {
	f := func(list string, scope Scope, wantNames, wantTokens []string) {
		t.Helper()
		ps, toks, err := ParseTokens(list, scope)
		if err != nil {
			t.Fatalf("ParseTokens(%q): %v", list, err)
		}
		var names []string
		for _, p := range ps {
			names = append(names, p.Name)
			if !slices.Equal(p.Scopes, []Scope{scope}) {
				t.Errorf("ParseTokens(%q): principal %q has scopes %v; want [%s]", list, p.Name, p.Scopes, scope)
			}
		}
		if !slices.Equal(names, wantNames) {
			t.Errorf("ParseTokens(%q): got names %q; want %q", list, names, wantNames)
		}
		if !slices.Equal(toks, wantTokens) {
			t.Errorf("ParseTokens(%q): got tokens %q; want %q", list, toks, wantTokens)
		}
	}
	f("", ScopeAdmin, nil, nil)
	f(" , ,", ScopeAdmin, nil, nil)
	f("ops:0123456789abcdef", ScopeAdmin, []string{"ops"}, []string{"0123456789abcdef"})
	// Bare tokens are named after the scope and their position in the list.
	f("0123456789abcdef,fedcba9876543210", ScopeIngest,
		[]string{"ingest-1", "ingest-2"}, []string{"0123456789abcdef", "fedcba9876543210"})
	f("web:0123456789abcdef, fedcba9876543210 ", ScopeIngest,
		[]string{"web", "ingest-2"}, []string{"0123456789abcdef", "fedcba9876543210"})
	// Only the first colon separates the name: tokens may hold colons.
	f("ops:0123456789:abcdef", ScopeAdmin, []string{"ops"}, []string{"0123456789:abcdef"})
	// Spaces around the colon are not part of the name or the token: the
	// guard trims the bearer token, so a token with a leading space could
	// never be presented.
	f("ops : 0123456789abcdef", ScopeAdmin, []string{"ops"}, []string{"0123456789abcdef"})
}

func TestParseTokensRejects(t *testing.T) {
	f := func(list, secret string) {
		t.Helper()
		ps, toks, err := ParseTokens(list, ScopeAdmin)
		if err == nil {
			t.Fatalf("ParseTokens(%q) = %v, %q; want an error", list, ps, toks)
		}
		if ps != nil || toks != nil {
			t.Errorf("ParseTokens(%q): got %v, %q with the error; want nothing", list, ps, toks)
		}
		// The error is logged at startup; it names the entry, never the token.
		if secret != "" && strings.Contains(err.Error(), secret) {
			t.Errorf("ParseTokens(%q): error %q shows the token", list, err)
		}
	}
	f("short", "short")
	f("ops:0123456789abcde", "0123456789abcde") // 15 characters
	f("ops:0123456789abcdef,dev:tiny-token", "tiny-token")
	f("ops:", "")
	f("ops:"+strings.Repeat(" ", 20), "")      // only spaces
	f(":0123456789abcdef", "0123456789abcdef") // no name
	f(" :0123456789abcdef", "0123456789abcdef")
}

func TestStaticTokensAuthenticate(t *testing.T) {
	var s StaticTokens
	if _, err := s.Authenticate("anything-at-all-0123"); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("empty StaticTokens: got %v; want ErrUnauthenticated", err)
	}
	admin := Principal{Name: "ops", Scopes: []Scope{ScopeAdmin}}
	ingest := Principal{Name: "web", Scopes: []Scope{ScopeIngest}}
	s.Add("admin-token-0123456789", admin)
	s.Add("ingest-token-0123456789", ingest)
	if got := s.Len(); got != 2 {
		t.Fatalf("Len() = %d; want 2", got)
	}
	f := func(token string, want Principal, wantErr bool) {
		t.Helper()
		p, err := s.Authenticate(token)
		if wantErr {
			if !errors.Is(err, ErrUnauthenticated) {
				t.Errorf("Authenticate(%q): got %v, %v; want ErrUnauthenticated", token, p, err)
			}
			if p.Name != "" || p.Scopes != nil {
				t.Errorf("Authenticate(%q): got principal %+v with the error; want none", token, p)
			}
			return
		}
		if err != nil {
			t.Fatalf("Authenticate(%q): %v", token, err)
		}
		if p.Name != want.Name || !slices.Equal(p.Scopes, want.Scopes) {
			t.Errorf("Authenticate(%q) = %+v; want %+v", token, p, want)
		}
	}
	f("admin-token-0123456789", admin, false)
	f("ingest-token-0123456789", ingest, false)
	f("", Principal{}, true)
	f("admin-token-012345678", Principal{}, true)   // a prefix
	f("admin-token-01234567890", Principal{}, true) // longer
	f("ADMIN-TOKEN-0123456789", Principal{}, true)  // case matters
	f(" admin-token-0123456789", Principal{}, true) // Authenticate does not trim; the guard does
}

func TestParsedTokensAuthenticate(t *testing.T) {
	var s StaticTokens
	for _, l := range []struct {
		list  string
		scope Scope
	}{{"ops:admin-token-0123456789", ScopeAdmin}, {"ingest-token-0123456789", ScopeIngest}} {
		ps, toks, err := ParseTokens(l.list, l.scope)
		if err != nil {
			t.Fatal(err)
		}
		for i := range ps {
			s.Add(toks[i], ps[i])
		}
	}
	p, err := s.Authenticate("ingest-token-0123456789")
	if err != nil || p.Name != "ingest-1" || !p.Has(ScopeIngest) || p.Has(ScopeAdmin) {
		t.Fatalf("Authenticate(ingest token) = %+v, %v; want ingest-1 with the ingest scope only", p, err)
	}
	p, err = s.Authenticate("admin-token-0123456789")
	if err != nil || p.Name != "ops" || !p.Has(ScopeAdmin) {
		t.Fatalf("Authenticate(admin token) = %+v, %v; want ops with the admin scope", p, err)
	}
}

func TestPrincipalHas(t *testing.T) {
	f := func(scopes []Scope, s Scope, want bool) {
		t.Helper()
		if got := (Principal{Name: "p", Scopes: scopes}).Has(s); got != want {
			t.Errorf("Principal%v.Has(%q) = %v; want %v", scopes, s, got, want)
		}
	}
	f(nil, ScopeIngest, false)
	f(nil, ScopeAdmin, false)
	f([]Scope{ScopeIngest}, ScopeIngest, true)
	f([]Scope{ScopeIngest}, ScopeAdmin, false)
	f([]Scope{ScopeAdmin}, ScopeAdmin, true)
	f([]Scope{ScopeAdmin}, ScopeIngest, true) // admin implies every scope
	f([]Scope{ScopeAdmin}, "reports", true)
	f([]Scope{ScopeIngest}, "reports", false)
	f([]Scope{"reports", ScopeIngest}, ScopeIngest, true)
}
