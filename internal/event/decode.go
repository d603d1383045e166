package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// MaxReportedErrors bounds the field errors one rejected batch reports.
const MaxReportedErrors = 100

// ErrTooManyEvents is returned when a batch holds more events than allowed.
var ErrTooManyEvents = errors.New("too many events in one batch")

// BatchError rejects a whole batch: it lists the field errors of its
// invalid events (at most MaxReportedErrors) and how many there were.
type BatchError struct {
	Errors  []FieldError
	Invalid int // number of field errors found, reported or not
}

func (e *BatchError) Error() string {
	if len(e.Errors) == 0 {
		return "invalid batch"
	}
	return fmt.Sprintf("%d invalid field(s), first: %v", e.Invalid, e.Errors[0])
}

func (e *BatchError) add(fe ...FieldError) {
	for _, f := range fe {
		e.Invalid++
		if len(e.Errors) < MaxReportedErrors {
			e.Errors = append(e.Errors, f)
		}
	}
}

// Decoder turns JSON bodies into validated requests. Its zero value is not
// usable; set every field.
type Decoder struct {
	Rules          Rules
	DefaultService string
	MaxEvents      int
	// RequestID, when set, makes the request ID of the event at index i
	// for events that lack one, instead of a random UUID. Decoding the same
	// message twice then gives the same events.
	RequestID func(i int) string
}

// JSON decodes one event object or an array of them. It returns every
// field error of every event as a *BatchError, ErrTooManyEvents, or the
// requests, all valid.
func (d Decoder) JSON(data []byte) ([]Request, error) {
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return nil, &BatchError{Errors: []FieldError{{Field: "body", Message: "is empty"}}, Invalid: 1}
	}
	if data[0] != '[' {
		q, err := d.one(data, 0)
		if err != nil {
			return nil, err
		}
		return []Request{q}, nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if _, err := dec.Token(); err != nil { // '['
		return nil, malformed(0, err)
	}
	var out []Request
	be := &BatchError{}
	for i := 0; dec.More(); i++ {
		if i >= d.MaxEvents {
			return nil, ErrTooManyEvents
		}
		q, errs, fatal := d.next(dec, i)
		be.add(errs...)
		if fatal {
			return nil, be
		}
		if be.Invalid == 0 {
			out = append(out, q)
		}
	}
	if _, err := dec.Token(); err != nil { // ']'
		be.add(malformedField(len(out), err))
	}
	if rest, _ := io.ReadAll(dec.Buffered()); len(bytes.TrimSpace(rest)) > 0 {
		be.add(FieldError{Index: len(out), Field: "body", Message: "unexpected data after the JSON array"})
	}
	if be.Invalid > 0 {
		return nil, be
	}
	if len(out) == 0 {
		return nil, &BatchError{Errors: []FieldError{{Field: "body", Message: "holds no events"}}, Invalid: 1}
	}
	return out, nil
}

// NDJSON decodes newline-delimited JSON: one event object a line (any
// whitespace between objects is accepted). Broken JSON stops decoding at the
// event where it occurs.
func (d Decoder) NDJSON(data []byte) ([]Request, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var out []Request
	be := &BatchError{}
	for i := 0; ; i++ {
		if !dec.More() {
			break
		}
		if i >= d.MaxEvents {
			return nil, ErrTooManyEvents
		}
		q, errs, fatal := d.next(dec, i)
		be.add(errs...)
		if fatal {
			break
		}
		if be.Invalid == 0 {
			out = append(out, q)
		}
	}
	if be.Invalid > 0 {
		return nil, be
	}
	if len(out) == 0 {
		return nil, &BatchError{Errors: []FieldError{{Field: "body", Message: "holds no events"}}, Invalid: 1}
	}
	return out, nil
}

// next decodes and validates the event at index i. A field of the wrong
// type or an unknown field is reported together with the errors of the
// event's other fields. fatal means the JSON is broken and decoding
// cannot go on.
func (d Decoder) next(dec *json.Decoder, i int) (q Request, errs []FieldError, fatal bool) {
	var w Wire
	if err := dec.Decode(&w); err != nil {
		fe, fatal := decodeError(i, err)
		if fatal || fe.Field == "event" {
			return q, []FieldError{fe}, fatal
		}
		errs = append(errs, fe)
		// Validate the rest; skip the complaint about the field just reported.
		_, more := d.validateWire(&w, i)
		for _, e := range more {
			if e.Field != fe.Field {
				errs = append(errs, e)
			}
		}
		return q, errs, false
	}
	q, errs = d.validateWire(&w, i)
	return q, errs, false
}

func (d Decoder) validateWire(w *Wire, i int) (Request, []FieldError) {
	if w.RequestID == "" && d.RequestID != nil {
		w.RequestID = d.RequestID(i)
	}
	return w.Validate(i, d.Rules, d.DefaultService)
}

// one decodes a single JSON object with index i.
func (d Decoder) one(data []byte, i int) (Request, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	q, errs, fatal := d.next(dec, i)
	if !fatal && dec.More() {
		errs = append(errs, FieldError{Index: i, Field: "body", Message: "unexpected data after the JSON object"})
	}
	if len(errs) > 0 {
		be := &BatchError{}
		be.add(errs...)
		return Request{}, be
	}
	return q, nil
}

// decodeError maps an encoding/json error to a field error. fatal is true
// when the decoder cannot go on (broken syntax).
func decodeError(i int, err error) (fe FieldError, fatal bool) {
	var typeErr *json.UnmarshalTypeError
	switch {
	case errors.As(err, &typeErr):
		field := typeErr.Field
		if field == "" {
			return FieldError{Index: i, Field: "event", Message: "must be a JSON object"}, false
		}
		return FieldError{Index: i, Field: field, Message: "must be " + jsonKind(typeErr)}, false
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return FieldError{Index: i, Field: name, Message: "is not a known field"}, false
	default:
		return malformedField(i, err), true
	}
}

func malformed(i int, err error) *BatchError {
	return &BatchError{Errors: []FieldError{malformedField(i, err)}, Invalid: 1}
}

func malformedField(i int, err error) FieldError {
	msg := "is not valid JSON"
	var syn *json.SyntaxError
	if errors.As(err, &syn) {
		msg = fmt.Sprintf("is not valid JSON (%s)", syn.Error())
	} else if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		msg = "is not valid JSON (unexpected end of input)"
	}
	return FieldError{Index: i, Field: "body", Message: msg}
}

func jsonKind(e *json.UnmarshalTypeError) string {
	switch e.Type.Kind().String() {
	case "string":
		return "a string"
	case "float64":
		return "a number"
	case "int":
		return "an integer"
	default:
		return "of type " + e.Type.String()
	}
}
