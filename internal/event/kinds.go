package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
)

// Resource types a sample can describe.
var ResourceTypes = []string{"cpu", "memory", "disk", "network", "connections"}

// ResourceSample is one utilisation reading of one resource of one host.
// Utilisation is Used / Capacity when Capacity is known, else as reported;
// it is always within [0, 1].
type ResourceSample struct {
	Timestamp   time.Time `json:"timestamp"`
	Host        string    `json:"host"`
	Resource    string    `json:"resource"`
	Name        string    `json:"name,omitempty"` // a mount, an interface; "" for the whole host
	Used        float64   `json:"used"`
	Capacity    float64   `json:"capacity"`
	Utilisation float64   `json:"utilisation"`
}

// WireResource is a resource sample as senders write it.
type WireResource struct {
	Timestamp   string   `json:"timestamp,omitempty"`
	Host        string   `json:"host"`
	Resource    string   `json:"resource"`
	Name        string   `json:"name,omitempty"`
	Used        *float64 `json:"used"`
	Capacity    *float64 `json:"capacity,omitempty"`
	Utilisation *float64 `json:"utilisation,omitempty"`
}

// Validate checks w and returns the sample, or the errors of every invalid
// field.
func (w *WireResource) Validate(index int, r Rules) (ResourceSample, []FieldError) {
	var errs []FieldError
	bad := func(field, format string, args ...any) {
		errs = append(errs, FieldError{Index: index, Field: field, Message: fmt.Sprintf(format, args...)})
	}
	s := ResourceSample{Timestamp: r.Now.UTC(), Name: w.Name}
	s.Timestamp = validTimestamp(w.Timestamp, r, func(m string) { bad("timestamp", "%s", m) }, s.Timestamp)
	if h := strings.ToLower(w.Host); !validHost(h) {
		bad("host", "must be a host name: 1-253 characters of a-z, 0-9, '.', '_' or '-'")
	} else {
		s.Host = h
	}
	if !contains(ResourceTypes, w.Resource) {
		bad("resource", "must be one of %s", strings.Join(ResourceTypes, ", "))
	} else {
		s.Resource = w.Resource
	}
	if len(w.Name) > 128 || !Printable(w.Name) {
		bad("name", "must be at most 128 printable characters")
	}
	finite := func(v *float64) bool { return v != nil && !math.IsNaN(*v) && !math.IsInf(*v, 0) }
	switch {
	case w.Used == nil:
		bad("used", "is required")
	case !finite(w.Used) || *w.Used < 0:
		bad("used", "must be a number of at least 0")
	default:
		s.Used = *w.Used
	}
	if w.Capacity != nil {
		if !finite(w.Capacity) || *w.Capacity < 0 {
			bad("capacity", "must be a number of at least 0")
		} else {
			s.Capacity = *w.Capacity
		}
	}
	switch {
	case w.Utilisation != nil && (!finite(w.Utilisation) || *w.Utilisation < 0 || *w.Utilisation > 1):
		bad("utilisation", "must be a number between 0 and 1")
	case w.Utilisation != nil:
		s.Utilisation = *w.Utilisation
	case s.Capacity > 0:
		s.Utilisation = s.Used / s.Capacity
		if s.Utilisation > 1 {
			bad("used", "must not exceed capacity")
		}
	case len(errs) == 0:
		bad("utilisation", "is required when capacity is not given")
	}
	return s, errs
}

// Health statuses, from best to worst.
const (
	StatusHealthy  = "healthy"
	StatusDegraded = "degraded"
	StatusCritical = "critical"
	StatusUnknown  = "unknown"
)

// Components a health result can describe.
var Components = []string{"database", "auth", "realtime", "api", "external", "pipeline"}

// MaxDetailsLen bounds the JSON details of a health result.
const MaxDetailsLen = 8192

// HealthResult is the outcome of one run of one health probe.
type HealthResult struct {
	Timestamp      time.Time       `json:"timestamp"`
	Component      string          `json:"component"`
	Target         string          `json:"target,omitempty"` // within the component, e.g. an external dependency
	Status         string          `json:"status"`
	ResponseTimeMS float64         `json:"response_time_ms"`
	Details        json.RawMessage `json:"details,omitempty"` // a JSON object of safe facts
}

// Validate checks h as read from the stream.
func (h *HealthResult) Validate(index int) []FieldError {
	var errs []FieldError
	bad := func(field, msg string) { errs = append(errs, FieldError{Index: index, Field: field, Message: msg}) }
	if h.Timestamp.IsZero() || h.Timestamp.Year() < 2000 || h.Timestamp.Year() > 2100 {
		bad("timestamp", "must be a date-time between 2000 and 2100")
	}
	if !contains(Components, h.Component) {
		bad("component", "must be one of "+strings.Join(Components, ", "))
	}
	if len(h.Target) > 128 || !Printable(h.Target) {
		bad("target", "must be at most 128 printable characters")
	}
	if !contains([]string{StatusHealthy, StatusDegraded, StatusCritical, StatusUnknown}, h.Status) {
		bad("status", "must be healthy, degraded, critical or unknown")
	}
	if math.IsNaN(h.ResponseTimeMS) || math.IsInf(h.ResponseTimeMS, 0) || h.ResponseTimeMS < 0 || h.ResponseTimeMS > MaxResponseTimeMS {
		bad("response_time_ms", "must be a number between 0 and 86400000")
	}
	if len(h.Details) > MaxDetailsLen {
		bad("details", "must be at most 8 KiB")
	} else if d := bytes.TrimSpace(h.Details); len(d) > 0 && (d[0] != '{' || !json.Valid(d)) {
		bad("details", "must be a JSON object")
	}
	return errs
}

// DecodeResources decodes one resource sample object or an array of them,
// strictly (unknown fields are errors), and validates every sample.
func DecodeResources(data []byte, r Rules, max int) ([]ResourceSample, error) {
	var out []ResourceSample
	err := decodeEach(data, max, func(dec *json.Decoder, i int) []FieldError {
		var w WireResource
		if err := dec.Decode(&w); err != nil {
			return []FieldError{stdJSONError(i, err)}
		}
		s, errs := w.Validate(i, r)
		if len(errs) == 0 {
			out = append(out, s)
		}
		return errs
	})
	return out, err
}

// DecodeHealth decodes one health result object or an array of them,
// strictly, and validates every result.
func DecodeHealth(data []byte, max int) ([]HealthResult, error) {
	var out []HealthResult
	err := decodeEach(data, max, func(dec *json.Decoder, i int) []FieldError {
		var h HealthResult
		if err := dec.Decode(&h); err != nil {
			return []FieldError{stdJSONError(i, err)}
		}
		h.Timestamp = h.Timestamp.UTC()
		errs := h.Validate(i)
		if len(errs) == 0 {
			out = append(out, h)
		}
		return errs
	})
	return out, err
}

// decodeEach runs one for each object of data, a JSON object or an array
// of objects, and collects the field errors into a *BatchError. Broken JSON
// stops it.
func decodeEach(data []byte, max int, one func(dec *json.Decoder, i int) []FieldError) error {
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return &BatchError{Errors: []FieldError{{Field: "body", Message: "is empty"}}, Invalid: 1}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	be := &BatchError{}
	n := 0
	if data[0] != '[' {
		be.add(one(dec, 0)...)
		n = 1
	} else {
		if _, err := dec.Token(); err != nil {
			return &BatchError{Errors: []FieldError{stdJSONError(0, err)}, Invalid: 1}
		}
		for ; dec.More(); n++ {
			if n >= max {
				return ErrTooManyEvents
			}
			errs := one(dec, n)
			be.add(errs...)
			for _, e := range errs {
				if e.Field == "body" {
					return be
				}
			}
		}
		if _, err := dec.Token(); err != nil {
			be.add(stdJSONError(n, err))
		}
	}
	if dec.More() {
		be.add(FieldError{Index: n, Field: "body", Message: "unexpected data after the JSON value"})
	}
	if be.Invalid > 0 {
		return be
	}
	if n == 0 {
		return &BatchError{Errors: []FieldError{{Field: "body", Message: "holds no events"}}, Invalid: 1}
	}
	return nil
}

// stdJSONError maps an encoding/json error for the object at index i to a
// field error: a wrong type or an unknown field names the field; anything
// else is broken JSON, reported on "body".
func stdJSONError(i int, err error) FieldError {
	var typeErr *json.UnmarshalTypeError
	switch {
	case errors.As(err, &typeErr) && typeErr.Field != "":
		return FieldError{Index: i, Field: typeErr.Field, Message: "must be of JSON type " + jsonType(typeErr.Type.Kind().String())}
	case errors.As(err, &typeErr):
		return FieldError{Index: i, Field: "event", Message: "must be a JSON object"}
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return FieldError{Index: i, Field: strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`), Message: "is not a known field"}
	default:
		return FieldError{Index: i, Field: "body", Message: "is not valid JSON"}
	}
}

func jsonType(kind string) string {
	switch kind {
	case "string":
		return "string"
	case "float64", "int":
		return "number"
	default:
		return "object"
	}
}

// validTimestamp parses an optional RFC 3339 timestamp within r's window;
// it calls bad and returns def when the value is invalid or absent.
func validTimestamp(s string, r Rules, bad func(string), def time.Time) time.Time {
	if s == "" {
		return def
	}
	ts, err := time.Parse(time.RFC3339Nano, s)
	switch {
	case err != nil:
		bad("must be an RFC 3339 date-time with a time zone, e.g. 2026-06-20T14:03:00Z")
	case ts.After(r.Now.Add(MaxFutureSkew)):
		bad(fmt.Sprintf("is more than %s in the future", MaxFutureSkew))
	case r.Retention > 0 && ts.Before(r.Now.Add(-r.Retention)):
		bad(fmt.Sprintf("is older than the retention of %s", r.Retention))
	default:
		return ts.UTC()
	}
	return def
}

func validHost(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
