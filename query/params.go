package query

import (
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/wedsync/pulse/internal/event"
	"github.com/wedsync/pulse/internal/httpapi"
)

// params reads the query parameters of one request strictly: each may be
// given once, unknown ones are errors, and every problem is collected so
// that one 400 names them all.
type params struct {
	vals url.Values
	errs []event.FieldError
}

// newParams parses rawQuery and checks that it names only the allowed
// parameters, each once.
func newParams(rawQuery string, allowed ...string) *params {
	vals, err := url.ParseQuery(rawQuery)
	p := &params{vals: vals}
	if err != nil {
		// ParseQuery keeps the pairs it could read; the rest is refused.
		p.bad("query", "is not a valid URL query string")
	}
	names := make([]string, 0, len(vals))
	for name := range vals {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		switch {
		case !slices.Contains(allowed, name):
			p.bad(safeName(name), "is not a parameter of this route (allowed: "+strings.Join(allowed, ", ")+")")
		case len(vals[name]) > 1:
			p.bad(name, "must be given at most once")
		}
	}
	return p
}

// safeName is an unknown parameter's name as echoed back: printable and short.
func safeName(name string) string {
	if len(name) > 64 {
		name = name[:64]
	}
	name = strings.ToValidUTF8(name, "?")
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, name)
}

func (p *params) bad(field, message string) {
	p.errs = append(p.errs, event.FieldError{Field: field, Message: message})
}

// get returns the value of name and whether it was given.
func (p *params) get(name string) (string, bool) {
	v, ok := p.vals[name]
	if !ok || len(v) != 1 {
		return "", false
	}
	return v[0], true
}

// enum returns the value of name, which must be one of values, or def
// when it is absent.
func (p *params) enum(name, def string, values ...string) string {
	v, ok := p.get(name)
	if !ok {
		return def
	}
	if !slices.Contains(values, v) {
		p.bad(name, "must be one of "+strings.Join(values, ", "))
		return def
	}
	return v
}

// boolean returns the value of name, "true" or "false", or def.
func (p *params) boolean(name string, def bool) bool {
	v, ok := p.get(name)
	if !ok {
		return def
	}
	switch v {
	case "true":
		return true
	case "false":
		return false
	}
	p.bad(name, "must be true or false")
	return def
}

// plainNumber is a decimal number without sign, hex, underscores or
// special values.
var plainNumber = regexp.MustCompile(`^([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+)?$`)

// fraction returns the value of name, a number in [0, 1], or def.
func (p *params) fraction(name string, def float64) float64 {
	v, ok := p.get(name)
	if !ok {
		return def
	}
	f, err := strconv.ParseFloat(v, 64)
	if len(v) > 32 || !plainNumber.MatchString(v) || err != nil || f < 0 || f > 1 {
		p.bad(name, "must be a number between 0 and 1")
		return def
	}
	return f
}

// service returns the service filter; empty means all services.
func (p *params) service(name string) string {
	v, _ := p.get(name)
	if v != "" && !event.ValidService(v) {
		p.bad(name, "must be 1-64 characters of a-z, 0-9, '_' or '-', starting with a letter or digit")
		return ""
	}
	return v
}

// endpoint returns the endpoint filter normalised to its route template,
// as stored; empty means all endpoints.
func (p *params) endpoint(name string) string {
	v, _ := p.get(name)
	switch {
	case v == "":
		return ""
	case len(v) > event.MaxEndpointLen:
		p.bad(name, "must be at most "+strconv.Itoa(event.MaxEndpointLen)+" bytes")
		return ""
	case !printable(v):
		p.bad(name, "must be printable UTF-8 without control characters")
		return ""
	}
	return event.NormalizeEndpoint(v)
}

func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

// err is the 400 for the problems found, or nil.
func (p *params) err() error {
	if len(p.errs) == 0 {
		return nil
	}
	return httpapi.Errorf(http.StatusBadRequest, "invalid_request", "invalid query parameters", p.errs...)
}
