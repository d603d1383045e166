package query

import (
	"regexp"
	"strconv"

	"github.com/wedsync/pulse/internal/event"
	"github.com/wedsync/pulse/internal/httpapi"
)

// params are a request's query parameters, read strictly
// (httpapi.Params), with the checks of this package's filters.
type params struct{ *httpapi.Params }

func newParams(rawQuery string, allowed ...string) params {
	return params{httpapi.NewParams(rawQuery, allowed...)}
}

// plainNumber is a decimal number without sign, hex, underscores or
// special values.
var plainNumber = regexp.MustCompile(`^([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+)?$`)

// fraction returns the value of name, a number in [0, 1], or def.
func (p params) fraction(name string, def float64) float64 {
	v, ok := p.Get(name)
	if !ok {
		return def
	}
	f, err := strconv.ParseFloat(v, 64)
	if len(v) > 32 || !plainNumber.MatchString(v) || err != nil || f < 0 || f > 1 {
		p.Bad(name, "must be a number between 0 and 1")
		return def
	}
	return f
}

// service returns the service filter; empty means all services.
func (p params) service(name string) string {
	v, _ := p.Get(name)
	if v != "" && !event.ValidService(v) {
		p.Bad(name, "must be 1-64 characters of a-z, 0-9, '_' or '-', starting with a letter or digit")
		return ""
	}
	return v
}

// endpoint returns the endpoint filter normalised to its route template,
// as stored; empty means all endpoints.
func (p params) endpoint(name string) string {
	v, _ := p.Get(name)
	switch {
	case v == "":
		return ""
	case len(v) > event.MaxEndpointLen:
		p.Bad(name, "must be at most "+strconv.Itoa(event.MaxEndpointLen)+" bytes")
		return ""
	case !event.Printable(v):
		p.Bad(name, "must be printable UTF-8 without control characters")
		return ""
	}
	return event.NormalizeEndpoint(v)
}
