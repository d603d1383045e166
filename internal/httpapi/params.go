package httpapi

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/wedsync/pulse/internal/event"
)

// Params reads the query parameters of one request strictly: each may be
// given once, unknown ones are errors, and every problem is collected so
// that one 400 names them all. Use it from one goroutine.
type Params struct {
	vals url.Values
	errs []event.FieldError
}

// NewParams parses rawQuery and checks that it names only the allowed
// parameters, each once.
func NewParams(rawQuery string, allowed ...string) *Params {
	vals, err := url.ParseQuery(rawQuery)
	p := &Params{vals: vals}
	if err != nil {
		// ParseQuery keeps the pairs it could read; the rest is refused.
		p.Bad("query", "is not a valid URL query string")
	}
	names := make([]string, 0, len(vals))
	for name := range vals {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		switch {
		case !slices.Contains(allowed, name):
			p.Bad(SafeName(name), "is not a parameter of this route (allowed: "+strings.Join(allowed, ", ")+")")
		case len(vals[name]) > 1:
			p.Bad(name, "must be given at most once")
		}
	}
	return p
}

// SafeName is a caller-given name (an unknown parameter or field) as it
// may be echoed back: printable and short.
func SafeName(name string) string {
	if len(name) > 64 {
		name = name[:64]
	}
	name = strings.ToValidUTF8(name, "?")
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == 0xfffd {
			return '?'
		}
		return r
	}, name)
}

// Bad records a problem with field.
func (p *Params) Bad(field, message string) {
	p.errs = append(p.errs, event.FieldError{Field: field, Message: message})
}

// Get returns the value of name and whether it was given (once).
func (p *Params) Get(name string) (string, bool) {
	v, ok := p.vals[name]
	if !ok || len(v) != 1 {
		return "", false
	}
	return v[0], true
}

// Enum returns the value of name, which must be one of values, or def
// when it is absent or invalid.
func (p *Params) Enum(name, def string, values ...string) string {
	v, ok := p.Get(name)
	if !ok {
		return def
	}
	if !slices.Contains(values, v) {
		p.Bad(name, "must be one of "+strings.Join(values, ", "))
		return def
	}
	return v
}

// Bool returns the value of name, "true" or "false", or def.
func (p *Params) Bool(name string, def bool) bool {
	v, ok := p.Get(name)
	switch {
	case !ok:
		return def
	case v == "true":
		return true
	case v == "false":
		return false
	}
	p.Bad(name, "must be true or false")
	return def
}

// Int returns the value of name, an integer in [lo, hi], or def.
func (p *Params) Int(name string, def, lo, hi int) int {
	v, ok := p.Get(name)
	if !ok {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi || len(v) > 20 || strings.TrimLeft(v, "0123456789") != "" {
		p.Bad(name, fmt.Sprintf("must be an integer between %d and %d", lo, hi))
		return def
	}
	return n
}

// Errors returns the problems found so far.
func (p *Params) Errors() []event.FieldError { return p.errs }

// Err is the 400 naming every problem found, or nil.
func (p *Params) Err() error {
	if len(p.errs) == 0 {
		return nil
	}
	return Errorf(http.StatusBadRequest, "invalid_request", "invalid query parameters", p.errs...)
}
