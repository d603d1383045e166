package event

// This file keeps the encoding/json implementation of Decoder.JSON and
// Decoder.NDJSON, and the validation it ran, as they were before the
// hand-written parser replaced them. FuzzDecodeMatchesReference holds the
// new code to them. What differs from the original: refJSON reads the whole
// input after the closing ']' (the original looked only at what
// json.Decoder happened to have buffered, so garbage more than a few hundred
// bytes after the array went unnoticed); and the rules encoding/json does
// not have are added by refProblem, which walks the fields of each event
// with json.Decoder's tokens: unknown fields are ignored and counted unless
// Decoder.StrictFields is set, invalid UTF-8 (and unpaired surrogate
// escapes) is an error of the field it is in, and so is an event of more
// than MaxEventFields fields.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/google/uuid"
)

func refJSON(d Decoder, data []byte) ([]Request, error) {
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return nil, &BatchError{Errors: []FieldError{{Field: "body", Message: "is empty"}}, Invalid: 1}
	}
	if data[0] != '[' {
		q, err := refOne(d, data, 0)
		if err != nil {
			return nil, err
		}
		return []Request{q}, nil
	}
	r := bytes.NewReader(data)
	dec := json.NewDecoder(r)
	if _, err := dec.Token(); err != nil { // '['
		return nil, refMalformed(0, err)
	}
	var out []Request
	be := &BatchError{}
	for i := 0; dec.More(); i++ {
		if i >= d.MaxEvents {
			return nil, ErrTooManyEvents
		}
		q, errs, fatal := refNext(d, dec, i)
		be.add(errs...)
		if fatal {
			return nil, be
		}
		if be.Invalid == 0 {
			out = append(out, q)
		}
	}
	if _, err := dec.Token(); err != nil { // ']'
		be.add(refMalformedField(len(out), err))
	}
	if rest, _ := io.ReadAll(io.MultiReader(dec.Buffered(), r)); len(bytes.TrimSpace(rest)) > 0 {
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

func refNDJSON(d Decoder, data []byte) ([]Request, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	var out []Request
	be := &BatchError{}
	for i := 0; ; i++ {
		if !dec.More() {
			break
		}
		if i >= d.MaxEvents {
			return nil, ErrTooManyEvents
		}
		q, errs, fatal := refNext(d, dec, i)
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

func refNext(d Decoder, dec *json.Decoder, i int) (q Request, errs []FieldError, fatal bool) {
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return q, []FieldError{refMalformedField(i, err)}, true
	}
	var w Wire
	var typeErr *json.UnmarshalTypeError
	if err := json.Unmarshal(raw, &w); errors.As(err, &typeErr) && typeErr.Field == "" {
		return q, []FieldError{{Index: i, Field: "event", Message: "must be a JSON object"}}, false
	}
	fe := refProblem(d, raw, i)
	if fe == nil {
		q, errs = refValidateWire(d, &w, i)
		return q, errs, false
	}
	if fe.Field == "event" {
		return q, []FieldError{*fe}, false
	}
	errs = append(errs, *fe)
	_, more := refValidateWire(d, &w, i)
	for _, e := range more {
		if e.Field != fe.Field {
			errs = append(errs, e)
		}
	}
	return q, errs, false
}

// refProblem returns the first problem of the fields of the event raw, in
// the order of the input, and counts its ignored fields in d.Ignored.
func refProblem(d Decoder, raw json.RawMessage, i int) *FieldError {
	if string(raw) == "null" {
		return nil
	}
	var problem *FieldError
	set := func(field, msg string) {
		if problem == nil {
			problem = &FieldError{Index: i, Field: field, Message: msg}
		}
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if _, err := dec.Token(); err != nil { // '{'
		panic(err)
	}
	for n := 1; dec.More(); n++ {
		start := dec.InputOffset()
		tok, err := dec.Token()
		if err != nil {
			panic(err)
		}
		name := tok.(string)
		rawKey := bytes.TrimLeft(raw[start:dec.InputOffset()], " \t\r\n,")
		var val json.RawMessage
		if err := dec.Decode(&val); err != nil {
			panic(err)
		}
		if n > MaxEventFields {
			set("event", fmt.Sprintf("has more than %d fields", MaxEventFields))
		}
		// The field alone, decoded strictly, says whether the key is
		// known and the value of the right type.
		member := []byte(string(rawKey) + ":" + string(val))
		err = refDecodeStrict([]byte("{" + string(member) + "}"))
		var typeErr *json.UnmarshalTypeError
		quoted := strings.Trim(strconv.Quote(name), `"`)
		switch {
		case errors.As(err, &typeErr):
			set(typeErr.Field, "must be "+refJSONKind(typeErr))
		case err != nil && strings.HasPrefix(err.Error(), "json: unknown field "):
			switch {
			case d.StrictFields:
				set(quoted, "is not a known field")
			case !refValidStrings(member):
				set(quoted, "must be valid UTF-8")
			case problem == nil && d.Ignored != nil:
				refIgnore(d.Ignored, name)
			}
		case err != nil:
			panic(err)
		case !refValidStrings(val):
			set(refCanonical(rawKey), "must be valid UTF-8")
		}
	}
	return problem
}

// refDecodeStrict decodes data into a Wire, refusing unknown fields.
func refDecodeStrict(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var w Wire
	return dec.Decode(&w)
}

// refCanonical returns the name of the field of Wire the key rawKey (in
// JSON, quotes and escapes included) names: encoding/json's type errors
// say it.
func refCanonical(rawKey []byte) string {
	for _, v := range []string{"0", `""`} {
		var typeErr *json.UnmarshalTypeError
		if errors.As(refDecodeStrict([]byte("{"+string(rawKey)+":"+v+"}")), &typeErr) {
			return typeErr.Field
		}
	}
	panic("no field of Wire is named " + string(rawKey))
}

var refPlainName = regexp.MustCompile(`^[\pL\pN_.-]+$`)

// refIgnore is IgnoredFields.add.
func refIgnore(g *IgnoredFields, name string) {
	g.Count++
	if !refPlainName.MatchString(name) {
		return
	}
	for len(name) > MaxIgnoredNameLen {
		_, n := utf8.DecodeLastRuneInString(name)
		name = name[:len(name)-n]
	}
	if len(g.Names) < MaxIgnoredNames && !slices.Contains(g.Names, name) {
		g.Names = append(g.Names, name)
	}
}

// refValidStrings reports whether every string in the well-formed JSON
// text data is valid: valid UTF-8 whose \u escapes make well-formed UTF-16.
func refValidStrings(data []byte) bool {
	for i := 0; i < len(data); i++ {
		if data[i] != '"' {
			continue
		}
		j := i + 1
		for data[j] != '"' {
			if data[j] == '\\' {
				j++
			}
			j++
		}
		if !refValidString(data[i+1 : j]) {
			return false
		}
		i = j
	}
	return true
}

func refValidString(s []byte) bool {
	if !utf8.Valid(s) {
		return false
	}
	// The string as UTF-16 code units.
	var units []uint16
	for i := 0; i < len(s); {
		switch {
		case s[i] == '\\' && s[i+1] == 'u':
			u, err := strconv.ParseUint(string(s[i+2:i+6]), 16, 16)
			if err != nil {
				panic(err)
			}
			units = append(units, uint16(u))
			i += 6
		case s[i] == '\\':
			units = append(units, uint16(s[i+1])) // stands for a character of the BMP
			i += 2
		default:
			r, n := utf8.DecodeRune(s[i:])
			units = utf16.AppendRune(units, r)
			i += n
		}
	}
	for k := 0; k < len(units); k++ {
		switch u := units[k]; {
		case utf16.IsSurrogate(rune(u)) && u < 0xdc00:
			if k+1 == len(units) || !utf16.IsSurrogate(rune(units[k+1])) || units[k+1] < 0xdc00 {
				return false
			}
			k++
		case utf16.IsSurrogate(rune(u)):
			return false
		}
	}
	return true
}

func refValidateWire(d Decoder, w *Wire, i int) (Request, []FieldError) {
	if w.RequestID == "" && d.RequestID != nil {
		w.RequestID = d.RequestID(i)
	}
	return refValidate(w, i, d.Rules, d.DefaultService)
}

func refOne(d Decoder, data []byte, i int) (Request, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	q, errs, fatal := refNext(d, dec, i)
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

func refMalformed(i int, err error) *BatchError {
	return &BatchError{Errors: []FieldError{refMalformedField(i, err)}, Invalid: 1}
}

func refMalformedField(i int, err error) FieldError {
	msg := "is not valid JSON"
	var syn *json.SyntaxError
	if errors.As(err, &syn) {
		msg = fmt.Sprintf("is not valid JSON (%s)", syn.Error())
	} else if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		msg = "is not valid JSON (unexpected end of input)"
	}
	return FieldError{Index: i, Field: "body", Message: msg}
}

func refJSONKind(e *json.UnmarshalTypeError) string {
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

var refMethods = map[string]bool{
	"GET": true, "HEAD": true, "POST": true, "PUT": true, "PATCH": true,
	"DELETE": true, "OPTIONS": true, "CONNECT": true, "TRACE": true,
}

// refValidate is Wire.Validate as it was.
func refValidate(w *Wire, index int, r Rules, defaultService string) (Request, []FieldError) {
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
	case !refPrintable(w.Endpoint):
		bad("endpoint", "must be printable UTF-8 without control characters")
	default:
		q.Endpoint = refNormalizeEndpoint(w.Endpoint)
	}

	switch v := w.ResponseTimeMS; {
	case v == nil:
		bad("response_time_ms", "is required")
	case math.IsNaN(*v) || math.IsInf(*v, 0) || *v < 0 || *v > MaxResponseTimeMS:
		bad("response_time_ms", "must be a number between 0 and %d", MaxResponseTimeMS)
	default:
		q.ResponseTimeMS = *v
	}

	switch v := w.StatusCode; {
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
	if service = strings.ToLower(service); !refValidService(service) {
		bad("service", "must be 1-%d characters of a-z, 0-9, '_' or '-', starting with a letter or digit", MaxServiceLen)
	} else {
		q.Service = service
	}

	if w.Method != "" {
		m := strings.ToUpper(w.Method)
		if !refMethods[m] {
			bad("method", "must be an HTTP method such as GET or POST")
		} else {
			q.Method = m
		}
	}

	switch id := w.RequestID; {
	case id == "":
		q.RequestID = uuid.NewString()
	case len(id) > MaxRequestIDLen || !refPrintableASCII(id):
		bad("request_id", "must be 1-%d printable ASCII characters", MaxRequestIDLen)
	default:
		q.RequestID = id
	}
	return q, errs
}

func refValidService(s string) bool {
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

func refPrintable(s string) bool {
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

func refPrintableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// refNormalizeEndpoint is NormalizeEndpoint as it was.
func refNormalizeEndpoint(p string) string {
	if i := strings.IndexAny(p, "?#"); i >= 0 {
		p = p[:i]
	}
	if p == "" {
		return "/"
	}
	segs := strings.Split(p, "/")
	for i, s := range segs {
		if refIsIDSegment(s) {
			segs[i] = ":id"
		}
	}
	return strings.Join(segs, "/")
}

func refIsIDSegment(s string) bool {
	if s == "" {
		return false
	}
	if len(s) == 36 {
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
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
