// Package event defines the events that flow through Pulse: what a request
// metric is, how it is validated and normalised, and how batches of them are
// encoded on the stream.
package event

import (
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
)

// Limits of a request metric. They are part of the API contract and are
// documented in the OpenAPI document.
const (
	MaxEndpointLen     = 512
	MaxErrorMessageLen = 2048
	MaxRequestIDLen    = 128
	MaxServiceLen      = 64
	MaxResponseTimeMS  = 24 * 60 * 60 * 1000 // one day
	MaxFutureSkew      = 5 * time.Minute
	DefaultService     = "default"
)

// Request is one served request of the app fleet, validated and normalised.
// Timestamp is UTC; UserID is the zero UUID when the request had no user.
type Request struct {
	Timestamp      time.Time
	Service        string
	Endpoint       string // a route template: numeric and UUID segments are ":id"
	Method         string // upper case, or empty when the sender did not say
	StatusCode     uint16
	ResponseTimeMS float64
	UserID         uuid.UUID
	ErrorMessage   string
	RequestID      string
}

// FieldError says what is wrong with one field of one event. Index is the
// event's position in its batch (0 for a single event).
type FieldError struct {
	Index   int    `json:"index"`
	Field   string `json:"field"`
	Message string `json:"message"`
}

func (e FieldError) Error() string {
	return fmt.Sprintf("event %d: %s: %s", e.Index, e.Field, e.Message)
}

// Rules are the time-dependent parts of validation.
type Rules struct {
	Now       time.Time     // receive time; the default timestamp
	Retention time.Duration // events older than this are rejected
}

// isMethod reports whether m is an HTTP method in upper case.
func isMethod(m string) bool {
	switch m {
	case "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE":
		return true
	}
	return false
}

// Wire is a request metric as senders write it in JSON. Pointers mark the
// fields whose absence differs from their zero value.
type Wire struct {
	Endpoint       string   `json:"endpoint"`
	ResponseTimeMS *float64 `json:"response_time_ms"`
	StatusCode     *int     `json:"status_code"`
	UserID         string   `json:"user_id,omitempty"`
	ErrorMessage   string   `json:"error_message,omitempty"`
	Timestamp      string   `json:"timestamp,omitempty"`
	Service        string   `json:"service,omitempty"`
	Method         string   `json:"method,omitempty"`
	RequestID      string   `json:"request_id,omitempty"`
}

// Validate checks w and returns the normalised request, or the errors of
// every invalid field, each carrying index. A missing request_id is
// generated; a missing timestamp is r.Now; a missing service is
// defaultService.
func (w *Wire) Validate(index int, r Rules, defaultService string) (Request, []FieldError) {
	return w.validate(w.ResponseTimeMS, w.StatusCode, index, r, defaultService)
}

// validate is Validate with w's numeric fields passed apart, as rt and code;
// w.ResponseTimeMS and w.StatusCode are not read. The strings of w escape
// (time.Parse keeps its input in its error) and would take anything else w
// points to with them: this way a decoder can keep rt and code on its stack.
func (w *Wire) validate(rt *float64, code *int, index int, r Rules, defaultService string) (Request, []FieldError) {
	var errs []FieldError
	bad := func(field, format string, args ...any) {
		errs = append(errs, FieldError{Index: index, Field: field, Message: fmt.Sprintf(format, args...)})
	}
	var q Request

	switch {
	case w.Endpoint == "":
		bad("endpoint", "is required")
	case len(w.Endpoint) > MaxEndpointLen:
		bad("endpoint", "must be at most %d bytes", MaxEndpointLen)
	case !Printable(w.Endpoint):
		bad("endpoint", "must be printable UTF-8 without control characters")
	default:
		q.Endpoint = NormalizeEndpoint(w.Endpoint)
	}

	switch v := rt; {
	case v == nil:
		bad("response_time_ms", "is required")
	case math.IsNaN(*v) || math.IsInf(*v, 0) || *v < 0 || *v > MaxResponseTimeMS:
		bad("response_time_ms", "must be a number between 0 and %d", MaxResponseTimeMS)
	default:
		q.ResponseTimeMS = *v
	}

	switch v := code; {
	case v == nil:
		bad("status_code", "is required")
	case *v < 100 || *v > 599:
		bad("status_code", "must be an integer between 100 and 599")
	default:
		q.StatusCode = uint16(*v)
	}

	if w.UserID != "" {
		id, err := uuid.Parse(w.UserID)
		if err != nil || len(w.UserID) != 36 || id == uuid.Nil {
			bad("user_id", "must be a UUID (8-4-4-4-12 hex digits)")
		} else {
			q.UserID = id
		}
	}

	switch {
	case len(w.ErrorMessage) > MaxErrorMessageLen:
		bad("error_message", "must be at most %d bytes", MaxErrorMessageLen)
	case !utf8.ValidString(w.ErrorMessage):
		bad("error_message", "must be valid UTF-8")
	default:
		q.ErrorMessage = w.ErrorMessage
	}

	q.Timestamp = r.Now.UTC()
	if w.Timestamp != "" {
		ts, err := time.Parse(time.RFC3339Nano, w.Timestamp)
		switch {
		case err != nil:
			bad("timestamp", "must be an RFC 3339 date-time with a time zone, e.g. 2026-06-20T14:03:00Z")
		case ts.After(r.Now.Add(MaxFutureSkew)):
			bad("timestamp", "is more than %s in the future", MaxFutureSkew)
		case r.Retention > 0 && ts.Before(r.Now.Add(-r.Retention)):
			bad("timestamp", "is older than the retention of %s", r.Retention)
		default:
			q.Timestamp = ts.UTC()
		}
	}

	service := w.Service
	if service == "" {
		service = defaultService
	}
	if service = strings.ToLower(service); !validService(service) {
		bad("service", "must be 1-%d characters of a-z, 0-9, '_' or '-', starting with a letter or digit", MaxServiceLen)
	} else {
		q.Service = service
	}

	if w.Method != "" {
		m := strings.ToUpper(w.Method)
		if !isMethod(m) {
			bad("method", "must be an HTTP method such as GET or POST")
		} else {
			q.Method = m
		}
	}

	switch id := w.RequestID; {
	case id == "":
		q.RequestID = uuid.NewString()
	case len(id) > MaxRequestIDLen || !printableASCII(id):
		bad("request_id", "must be 1-%d printable ASCII characters", MaxRequestIDLen)
	default:
		q.RequestID = id
	}
	return q, errs
}

// validService reports whether s can name a service; it must also be usable
// as one NATS subject token.
func validService(s string) bool {
	if s == "" || len(s) > MaxServiceLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case (c == '_' || c == '-') && i > 0:
		default:
			return false
		}
	}
	return true
}

// ValidService reports whether s is a valid service name as written on the
// wire (already lower case).
func ValidService(s string) bool { return validService(s) }

// Printable reports whether s is valid UTF-8 without control characters
// (C0 and DEL), as the endpoint, name and target fields must be: the one
// check for them, also for query parameters that name an endpoint.
func Printable(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= utf8.RuneSelf {
			return printableUTF8(s[i:])
		}
		if c < 0x20 || c == 0x7f {
			return false
		}
	}
	return true
}

// printableUTF8 is Printable's slow path, from the first non-ASCII byte.
func printableUTF8(s string) bool {
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

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// NormalizeEndpoint turns a request path into a route template so that the
// number of distinct endpoints stays bounded: the query string and fragment
// are dropped, and path segments that are decimal numbers or UUIDs become
// ":id". "/api/clients/42/forms/9b2f…" becomes "/api/clients/:id/forms/:id".
func NormalizeEndpoint(p string) string {
	for i := 0; i < len(p); i++ {
		if p[i] == '?' || p[i] == '#' {
			p = p[:i]
			break
		}
	}
	if p == "" {
		return "/"
	}
	// The template is built in a buffer on the stack: a path that is
	// already a template, the common case, allocates nothing, and a short
	// one that is not allocates once.
	var buf [128]byte
	t, ids := buf[:0], false
	for rest := p; ; {
		seg, tail, more := strings.Cut(rest, "/")
		if isIDSegment(seg) {
			t, ids = append(t, ":id"...), true
		} else {
			t = append(t, seg...)
		}
		if !more {
			break
		}
		t = append(t, '/')
		rest = tail
	}
	if !ids {
		return p
	}
	return string(t)
}

func isIDSegment(s string) bool {
	if s == "" {
		return false
	}
	if len(s) == 36 {
		return isUUID(s)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func isUUID(s string) bool {
	for i := 0; i < 36; i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
				return false
			}
		}
	}
	return true
}
