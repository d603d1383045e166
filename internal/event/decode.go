package event

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"unicode"
	"unicode/utf8"
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

// Limits of the fields of one event the decoder does not know.
const (
	// MaxEventFields bounds the fields (keys, known or not, duplicates
	// included) of one event: an event with more is an error.
	MaxEventFields = 100
	// MaxIgnoredNames bounds the names IgnoredFields keeps.
	MaxIgnoredNames = 20
	// MaxIgnoredNameLen bounds the bytes of each name IgnoredFields
	// keeps; longer names are cut at a character boundary.
	MaxIgnoredNameLen = 64
)

// IgnoredFields is what a lenient Decoder ignored: how many fields with an
// unknown key it met (in all events, duplicates included) and their keys,
// deduplicated, at most MaxIgnoredNames, each at most MaxIgnoredNameLen
// bytes, in the order first met. Only keys that read as names (letters,
// digits, '_', '-' and '.') are kept: a key such as a URL or a credential
// is counted but never repeated back. It is meaningful only when decoding
// succeeds. It is not safe for concurrent use.
type IgnoredFields struct {
	Count int
	Names []string
}

// add counts an ignored field with key name, which is valid UTF-8, and
// keeps its name if there is room.
func (g *IgnoredFields) add(name []byte) {
	g.Count++
	if len(g.Names) >= MaxIgnoredNames || !plainName(name) {
		return
	}
	if len(name) > MaxIgnoredNameLen {
		n := MaxIgnoredNameLen
		for n > 0 && !utf8.RuneStart(name[n]) {
			n--
		}
		name = name[:n]
	}
	for _, s := range g.Names {
		if s == string(name) {
			return
		}
	}
	g.Names = append(g.Names, string(name))
}

// plainName reports whether name is made of letters, digits, '_', '-'
// and '.' only, and is not empty.
func plainName(name []byte) bool {
	for _, r := range string(name) {
		if !unicode.IsLetter(r) && !unicode.IsNumber(r) && r != '_' && r != '-' && r != '.' {
			return false
		}
	}
	return len(name) > 0
}

// Decoder turns JSON bodies into validated requests. Its zero value is not
// usable; set Rules, DefaultService and MaxEvents.
//
// A string field holding invalid UTF-8 (or a \u escape of an unpaired
// surrogate), anywhere in an event, is an error of that field; so is an
// event with more than MaxEventFields fields. A field whose key names no
// field of Wire is ignored, and counted in Ignored, unless StrictFields
// makes it an error.
type Decoder struct {
	Rules          Rules
	DefaultService string
	MaxEvents      int
	// RequestID, when set, makes the request ID of the event at index i
	// for events that lack one, instead of a random UUID. Decoding the same
	// message twice then gives the same events.
	RequestID func(i int) string
	// StrictFields rejects events with unknown fields ("is not a known
	// field") instead of ignoring those fields.
	StrictFields bool
	// Ignored, when set, counts and names the unknown fields ignored.
	Ignored *IgnoredFields
}

// parser returns a parser of data for d.
func (d Decoder) parser(data []byte) parser {
	return parser{data: data, strict: d.StrictFields, ignored: d.Ignored}
}

// JSON decodes one event object or an array of them. It returns every
// field error of every event as a *BatchError, ErrTooManyEvents, or the
// requests, all valid. The requests do not refer to data.
func (d Decoder) JSON(data []byte) ([]Request, error) {
	p := d.parser(bytes.TrimSpace(data))
	if len(p.data) == 0 {
		return nil, &BatchError{Errors: []FieldError{{Field: "body", Message: "is empty"}}, Invalid: 1}
	}
	p.base = len(data) - len(bytes.TrimLeftFunc(data, unicode.IsSpace))
	if p.data[0] != '[' {
		q, err := d.one(&p)
		if err != nil {
			return nil, err
		}
		return []Request{q}, nil
	}
	p.pos++ // '['
	var out []Request
	be := &BatchError{}
	for i := 0; p.more(); i++ {
		if i >= d.MaxEvents {
			return nil, ErrTooManyEvents
		}
		if i > 0 {
			if p.data[p.pos] != ',' {
				be.add(malformed(i, p.unexpected(p.pos, "expecting ',' or ']'")))
				return nil, be
			}
			p.pos++
		}
		q, errs, fatal := d.next(&p, i)
		be.add(errs...)
		if fatal {
			return nil, be
		}
		if be.Invalid == 0 {
			if out == nil {
				out = make([]Request, 0, p.guessEvents(d.MaxEvents))
			}
			out = append(out, q)
		}
	}
	switch {
	case p.pos == len(p.data):
		be.add(malformed(len(out), p.eof()))
	case p.data[p.pos] == ']':
		// p.data ends in a byte that is not white space: anything after
		// the ']' is data.
		if p.pos+1 < len(p.data) {
			be.add(FieldError{Index: len(out), Field: "body", Message: "unexpected data after the JSON array"})
		}
	default: // '}'
		be.add(malformed(len(out), p.unexpected(p.pos, "expecting ',' or ']'")))
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
// event where it occurs. The requests do not refer to data.
func (d Decoder) NDJSON(data []byte) ([]Request, error) {
	p := d.parser(data)
	var out []Request
	be := &BatchError{}
	for i := 0; p.more(); i++ {
		if i >= d.MaxEvents {
			return nil, ErrTooManyEvents
		}
		q, errs, fatal := d.next(&p, i)
		be.add(errs...)
		if fatal {
			break
		}
		if be.Invalid == 0 {
			if out == nil {
				out = make([]Request, 0, p.guessEvents(d.MaxEvents))
			}
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

// next decodes and validates the event at p.pos, which has index i. The
// first field of the wrong type, with invalid UTF-8 or (when strict)
// unknown is reported together with the errors of the event's other fields. fatal means the JSON is broken and
// decoding cannot go on.
func (d Decoder) next(p *parser, i int) (q Request, errs []FieldError, fatal bool) {
	var v wireValue
	if err := p.wire(&v); err != nil {
		return q, []FieldError{malformed(i, err)}, true
	}
	var fe FieldError
	if v.failed {
		fe.Index = i
		fe.Field, fe.Message = p.problem(&v)
		if fe.Field == "event" {
			return q, []FieldError{fe}, false
		}
	}
	var w Wire
	p.fill(&w, &v)
	var rt *float64
	if v.rtSet {
		rt = &v.rt
	}
	var code *int
	if v.scSet {
		code = &v.sc
	}
	if !v.failed {
		q, errs = d.validateWire(p, &w, rt, code, i)
		return q, errs, false
	}
	errs = append(errs, fe)
	// Validate the rest; skip the complaint about the field just reported.
	_, more := d.validateWire(p, &w, rt, code, i)
	for _, e := range more {
		if e.Field != fe.Field {
			errs = append(errs, e)
		}
	}
	return q, errs, false
}

// validateWire validates w, whose numeric fields are rt and code, as the
// event with index i, giving it a request ID if it has none.
func (d Decoder) validateWire(p *parser, w *Wire, rt *float64, code *int, i int) (Request, []FieldError) {
	if w.RequestID == "" {
		if d.RequestID != nil {
			w.RequestID = d.RequestID(i)
		} else {
			w.RequestID = p.ids.next()
		}
	}
	return w.validate(rt, code, i, d.Rules, d.DefaultService)
}

// randomIDs makes random (version 4) UUIDs like uuid.NewString, but 16 at
// a time: one read of crypto/rand and one string for all of them.
type randomIDs struct {
	ids string // canonical UUIDs, 36 bytes each, not handed out yet
}

func (r *randomIDs) next() string {
	if r.ids == "" {
		const n = 16
		var raw [n * 16]byte
		rand.Read(raw[:]) // never fails
		var buf [n * 36]byte
		text := buf[:0]
		for k := range n {
			u := raw[16*k : 16*k+16]
			u[6] = u[6]&0x0f | 0x40 // version 4
			u[8] = u[8]&0x3f | 0x80 // variant 10 (RFC 4122)
			text = hex.AppendEncode(text, u[:4])
			text = append(text, '-')
			text = hex.AppendEncode(text, u[4:6])
			text = append(text, '-')
			text = hex.AppendEncode(text, u[6:8])
			text = append(text, '-')
			text = hex.AppendEncode(text, u[8:10])
			text = append(text, '-')
			text = hex.AppendEncode(text, u[10:])
		}
		r.ids = string(text)
	}
	id := r.ids[:36]
	r.ids = r.ids[36:]
	return id
}

// one decodes the single JSON object at p.pos, which has index 0.
func (d Decoder) one(p *parser) (Request, error) {
	q, errs, fatal := d.next(p, 0)
	if !fatal && p.more() {
		errs = append(errs, FieldError{Index: 0, Field: "body", Message: "unexpected data after the JSON object"})
	}
	if len(errs) > 0 {
		be := &BatchError{}
		be.add(errs...)
		return Request{}, be
	}
	return q, nil
}

// malformed is the field error of broken JSON at the event with index i.
func malformed(i int, err error) FieldError {
	return FieldError{Index: i, Field: "body", Message: "is not valid JSON (" + err.Error() + ")"}
}
