package event

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// The parser below reads the JSON of request metrics in a single pass. It
// accepts exactly the syntax encoding/json accepts (RFC 8259, nesting at
// most maxDepth deep) and decodes a value into a Wire the way json.Decoder
// does (with DisallowUnknownFields when the Decoder is strict), with three
// rules of its own: a string holding invalid UTF-8 or an unpaired surrogate
// escape is an error of the field it is in (encoding/json would store
// U+FFFD); an event of more than MaxEventFields fields is an error; and
// unknown fields are counted and named. The differential fuzz test
// FuzzDecodeMatchesReference holds it to its reference model.

// maxDepth is how deeply encoding/json lets arrays and objects nest.
const maxDepth = 10000

// wireField names a field of Wire: the string fields first, so that they
// index wireValue.str.
type wireField int8

const (
	fieldEndpoint wireField = iota
	fieldUserID
	fieldErrorMessage
	fieldTimestamp
	fieldService
	fieldMethod
	fieldRequestID
	fieldResponseTimeMS // the first field that is not a string
	fieldStatusCode
	numFields

	fieldUnknown    wireField = -1
	numStringFields           = int(fieldResponseTimeMS)
)

// fieldNames are the JSON names of the fields of Wire.
var fieldNames = [numFields]string{
	"endpoint", "user_id", "error_message", "timestamp", "service", "method", "request_id",
	"response_time_ms", "status_code",
}

// foldedNames are fieldNames as foldName folds them.
var foldedNames = func() (folded [numFields]string) {
	for f, name := range fieldNames {
		folded[f] = string(foldName(nil, []byte(name)))
	}
	return folded
}()

// maxFoldableKeyLen bounds the keys that can name a field when folded: a
// folded key has at least as many bytes as the key has runes, and a rune
// takes at most 4 bytes.
const maxFoldableKeyLen = 4 * len("response_time_ms")

// lookupField returns the field a key names: the field of that exact name,
// else the one whose name equals the key ignoring case (encoding/json's
// rule), else fieldUnknown.
func lookupField(key []byte) wireField {
	switch string(key) {
	case "endpoint":
		return fieldEndpoint
	case "response_time_ms":
		return fieldResponseTimeMS
	case "status_code":
		return fieldStatusCode
	case "user_id":
		return fieldUserID
	case "error_message":
		return fieldErrorMessage
	case "timestamp":
		return fieldTimestamp
	case "service":
		return fieldService
	case "method":
		return fieldMethod
	case "request_id":
		return fieldRequestID
	}
	if len(key) > maxFoldableKeyLen {
		return fieldUnknown
	}
	var buf [maxFoldableKeyLen]byte
	folded := foldName(buf[:0], key)
	for f, name := range foldedNames {
		if string(folded) == name {
			return wireField(f)
		}
	}
	return fieldUnknown
}

// foldName appends name to dst folded the way encoding/json folds keys to
// match them without regard to case: ASCII letters become upper case, and
// other runes the smallest rune of their unicode.SimpleFold orbit (so "ſ",
// U+017F, matches "s").
func foldName(dst, name []byte) []byte {
	for i := 0; i < len(name); {
		if c := name[i]; c < utf8.RuneSelf {
			if 'a' <= c && c <= 'z' {
				c -= 'a' - 'A'
			}
			dst = append(dst, c)
			i++
			continue
		}
		r, n := utf8.DecodeRune(name[i:])
		for {
			r2 := unicode.SimpleFold(r)
			if r2 <= r {
				r = r2
				break
			}
			r = r2
		}
		dst = utf8.AppendRune(dst, r)
		i += n
	}
	return dst
}

// strRef locates the value of a string field in the input: the bytes
// between its quotes. plain means they are the value as they are: no
// escapes, valid UTF-8.
type strRef struct {
	start, end int
	set, plain bool
}

// wireValue is what decoding one JSON value into a Wire found. The string
// fields stay references into the input until the value turns out to be
// well-formed.
type wireValue struct {
	str    [numStringFields]strRef
	rt     float64
	sc     int
	rtSet  bool // ResponseTimeMS is non-nil, pointing at rt
	scSet  bool // StatusCode is non-nil, pointing at sc
	failed bool // the value had a problem: see problem
	// The first problem, in the order of the input (for the problems
	// encoding/json sees, like the error of json.Decoder.Decode): the
	// field and message, or, for a field named by an unknown key, where
	// the key is (its name is made only if the value turns out
	// well-formed).
	errField, errMsg string
	key              strRef
	fields           int // how many fields (keys) the object has
}

// fail records a problem unless an earlier one was recorded.
func (v *wireValue) fail(field, msg string) {
	if !v.failed {
		v.failed, v.errField, v.errMsg = true, field, msg
	}
}

// failKey records a problem with the field of the unknown key at r unless
// an earlier one was recorded.
func (v *wireValue) failKey(r strRef, msg string) {
	if !v.failed {
		v.failed, v.key, v.errMsg = true, r, msg
	}
}

// problem returns the field and message of the error v.failed reports.
func (p *parser) problem(v *wireValue) (field, msg string) {
	if !v.key.set {
		return v.errField, v.errMsg
	}
	key := p.data[v.key.start:v.key.end]
	if !v.key.plain {
		key = unquote(nil, key)
	}
	// What encoding/json's error says: the key quoted by %q.
	return strings.Trim(strconv.Quote(string(key)), `"`), v.errMsg
}

// Messages of the problems the parser finds.
const (
	msgUnknownField = "is not a known field"
	msgInvalidUTF8  = "must be valid UTF-8"
)

// tooManyFields is the message of an event with more than MaxEventFields
// fields.
var tooManyFields = fmt.Sprintf("has more than %d fields", MaxEventFields)

// mistyped records that field f was given a JSON value of the wrong type.
// encoding/json allocates a nil pointer field before it looks at the value,
// so a number field of the wrong type ends up zero, not missing.
func (v *wireValue) mistyped(f wireField) {
	switch f {
	case fieldResponseTimeMS:
		if !v.rtSet {
			v.rt, v.rtSet = 0, true
		}
		v.fail(fieldNames[f], "must be a number")
	case fieldStatusCode:
		if !v.scSet {
			v.sc, v.scSet = 0, true
		}
		v.fail(fieldNames[f], "must be an integer")
	default:
		v.fail(fieldNames[f], "must be a string")
	}
}

// syntaxError is input that is not JSON. Its text says what and where.
type syntaxError struct{ detail string }

func (e *syntaxError) Error() string { return e.detail }

// parser is the state of decoding one body. It reads JSON from data, which
// it neither modifies nor retains.
type parser struct {
	data    []byte
	pos     int       // next byte to read
	base    int       // offset of data in the body, for error messages
	text    string    // a copy of data, made when the first string is needed
	scratch []byte    // for unquoting strings
	ids     randomIDs // for events without a request ID
	// badUTF8 is set by str when a string holds invalid UTF-8 or an
	// unpaired surrogate escape; object clears it before each field.
	badUTF8 bool
	strict  bool           // unknown keys are errors
	ignored *IgnoredFields // where unknown keys are counted, if not strict; may be nil
}

// guessEvents guesses how many events data holds, at most limit, from the
// size of the first: the capacity for the decoded events.
func (p *parser) guessEvents(limit int) int {
	return min(limit, len(p.data)/max(p.pos, 1)+1)
}

func (p *parser) eof() error { return &syntaxError{"unexpected end of input"} }

// unexpected reports the byte at i, which is not what context expects.
func (p *parser) unexpected(i int, context string) error {
	c := p.data[i]
	var char string
	if c < utf8.RuneSelf {
		char = strconv.QuoteRune(rune(c))
	} else {
		char = fmt.Sprintf(`'\x%02x'`, c)
	}
	return &syntaxError{fmt.Sprintf("unexpected character %s at byte %d, %s", char, p.base+i, context)}
}

func (p *parser) tooDeep() error {
	return &syntaxError{fmt.Sprintf("arrays and objects nested more than %d deep at byte %d", maxDepth, p.base+p.pos)}
}

func (p *parser) skipSpace() {
	for p.pos < len(p.data) {
		switch p.data[p.pos] {
		case ' ', '\t', '\r', '\n':
			p.pos++
		default:
			return
		}
	}
}

// more skips white space and reports whether another value may follow. Like
// json.Decoder.More, it says no at the end of the input and at ']' or '}'.
func (p *parser) more() bool {
	p.skipSpace()
	return p.pos < len(p.data) && p.data[p.pos] != ']' && p.data[p.pos] != '}'
}

// wire decodes the JSON value at p.pos, after white space, into v. Like
// json.Decoder.Decode it reads one value, whatever follows it: "1x" is the
// number 1. It returns a *syntaxError if the value is not well-formed JSON;
// otherwise v.failed says whether it fit a Wire. null fits: it sets nothing.
func (p *parser) wire(v *wireValue) error {
	p.skipSpace()
	if p.pos >= len(p.data) {
		return p.eof()
	}
	switch p.data[p.pos] {
	case '{':
		return p.object(v)
	case 'n':
		return p.literal("null")
	}
	if err := p.skip(0); err != nil {
		return err
	}
	v.fail("event", "must be a JSON object")
	return nil
}

// object decodes the object at p.pos into v.
func (p *parser) object(v *wireValue) error {
	p.pos++ // '{'
	p.skipSpace()
	if p.pos >= len(p.data) {
		return p.eof()
	}
	if p.data[p.pos] == '}' {
		p.pos++
		return nil
	}
	for {
		if p.data[p.pos] != '"' {
			return p.unexpected(p.pos, "expecting an object key")
		}
		p.badUTF8 = false
		ks, ke, plain, err := p.str()
		if err != nil {
			return err
		}
		p.skipSpace()
		if p.pos >= len(p.data) {
			return p.eof()
		}
		if p.data[p.pos] != ':' {
			return p.unexpected(p.pos, "expecting ':'")
		}
		p.pos++
		p.skipSpace()
		if p.pos >= len(p.data) {
			return p.eof()
		}
		key := p.data[ks:ke]
		if !plain {
			p.scratch = unquote(p.scratch[:0], key)
			key = p.scratch
		}
		if v.fields++; v.fields > MaxEventFields {
			v.fail("event", tooManyFields)
		}
		if err := p.member(v, lookupField(key), strRef{start: ks, end: ke, set: true, plain: plain}); err != nil {
			return err
		}
		p.skipSpace()
		if p.pos >= len(p.data) {
			return p.eof()
		}
		switch p.data[p.pos] {
		case ',':
			p.pos++
			p.skipSpace()
			if p.pos >= len(p.data) {
				return p.eof()
			}
		case '}':
			p.pos++
			return nil
		default:
			return p.unexpected(p.pos, "expecting ',' or '}'")
		}
	}
}

// member decodes the value at p.pos, that of the key at k, which names
// field f (or fieldUnknown), into v. Within one member a value of the wrong
// type is reported before invalid UTF-8.
func (p *parser) member(v *wireValue, f wireField, k strRef) error {
	if f != fieldUnknown {
		if err := p.field(v, f); err != nil {
			return err
		}
		if p.badUTF8 {
			v.fail(fieldNames[f], msgInvalidUTF8)
		}
		return nil
	}
	if p.strict {
		v.failKey(k, msgUnknownField)
		return p.skip(1)
	}
	if err := p.skip(1); err != nil {
		return err
	}
	switch {
	case p.badUTF8: // in the key or the value
		v.failKey(k, msgInvalidUTF8)
	case p.ignored != nil && !v.failed:
		key := p.data[k.start:k.end]
		if !k.plain {
			p.scratch = unquote(p.scratch[:0], key)
			key = p.scratch
		}
		p.ignored.add(key)
	}
	return nil
}

// field decodes the value at p.pos into field f of v, with the rules of
// encoding/json: null sets a pointer field to nil and leaves a string field
// as it is; a value of the wrong type is recorded and changes nothing.
func (p *parser) field(v *wireValue, f wireField) error {
	switch c := p.data[p.pos]; {
	case c == 'n':
		if err := p.literal("null"); err != nil {
			return err
		}
		switch f {
		case fieldResponseTimeMS:
			v.rtSet = false
		case fieldStatusCode:
			v.scSet = false
		}
		return nil
	case c == '"' && int(f) < numStringFields:
		start, end, plain, err := p.str()
		if err != nil {
			return err
		}
		v.str[f] = strRef{start: start, end: end, set: true, plain: plain}
		return nil
	case (c == '-' || '0' <= c && c <= '9') && int(f) >= numStringFields:
		num, err := p.number()
		if err != nil {
			return err
		}
		if f == fieldResponseTimeMS {
			x, err := strconv.ParseFloat(string(num), 64)
			if err != nil { // out of range
				v.mistyped(f)
				return nil
			}
			v.rt, v.rtSet = x, true
			return nil
		}
		n, err := strconv.ParseInt(string(num), 10, strconv.IntSize)
		if err != nil { // a fraction or exponent, or out of range
			v.mistyped(f)
			return nil
		}
		v.sc, v.scSet = int(n), true
		return nil
	}
	if err := p.skip(1); err != nil {
		return err
	}
	v.mistyped(f)
	return nil
}

// fill sets the string fields of w found in v. The plain ones are slices
// of one copy of the input: a string for each would cost more, and the
// strings of the events of one body live and die together.
func (p *parser) fill(w *Wire, v *wireValue) {
	for f, r := range v.str {
		if !r.set {
			continue
		}
		var s string
		if r.plain {
			if p.text == "" {
				p.text = string(p.data)
			}
			s = p.text[r.start:r.end]
		} else {
			p.scratch = unquote(p.scratch[:0], p.data[r.start:r.end])
			s = string(p.scratch)
		}
		switch wireField(f) {
		case fieldEndpoint:
			w.Endpoint = s
		case fieldUserID:
			w.UserID = s
		case fieldErrorMessage:
			w.ErrorMessage = s
		case fieldTimestamp:
			w.Timestamp = s
		case fieldService:
			w.Service = s
		case fieldMethod:
			w.Method = s
		case fieldRequestID:
			w.RequestID = s
		}
	}
}

// skip reads over the value at p.pos, after white space, checking that it
// is well-formed. depth is the number of arrays and objects around it.
func (p *parser) skip(depth int) error {
	var stackBuf [16]byte
	open := stackBuf[:0] // '[' or '{' of each array and object being read
	for {
		// A value must follow.
		p.skipSpace()
		if p.pos >= len(p.data) {
			return p.eof()
		}
		switch c := p.data[p.pos]; c {
		case '[', '{':
			if depth+len(open)+1 > maxDepth {
				return p.tooDeep()
			}
			p.pos++
			p.skipSpace()
			if p.pos >= len(p.data) {
				return p.eof()
			}
			if p.data[p.pos] == c+2 { // "[]" or "{}"
				p.pos++
				break
			}
			open = append(open, c)
			if c == '{' {
				if err := p.key(); err != nil {
					return err
				}
			}
			continue
		case '"':
			if _, _, _, err := p.str(); err != nil {
				return err
			}
		case 't':
			if err := p.literal("true"); err != nil {
				return err
			}
		case 'f':
			if err := p.literal("false"); err != nil {
				return err
			}
		case 'n':
			if err := p.literal("null"); err != nil {
				return err
			}
		default:
			if c != '-' && (c < '0' || c > '9') {
				return p.unexpected(p.pos, "expecting a value")
			}
			if _, err := p.number(); err != nil {
				return err
			}
		}
		// A value is complete: close what it completes, up to the next
		// value or the end of the outermost one.
		for {
			if len(open) == 0 {
				return nil
			}
			p.skipSpace()
			if p.pos >= len(p.data) {
				return p.eof()
			}
			c, top := p.data[p.pos], open[len(open)-1]
			if c == top+2 {
				p.pos++
				open = open[:len(open)-1]
				continue
			}
			if c != ',' {
				if top == '{' {
					return p.unexpected(p.pos, "expecting ',' or '}'")
				}
				return p.unexpected(p.pos, "expecting ',' or ']'")
			}
			p.pos++
			if top == '{' {
				p.skipSpace()
				if err := p.key(); err != nil {
					return err
				}
			}
			break
		}
	}
}

// key reads an object key and the colon after it.
func (p *parser) key() error {
	if p.pos >= len(p.data) {
		return p.eof()
	}
	if p.data[p.pos] != '"' {
		return p.unexpected(p.pos, "expecting an object key")
	}
	if _, _, _, err := p.str(); err != nil {
		return err
	}
	p.skipSpace()
	if p.pos >= len(p.data) {
		return p.eof()
	}
	if p.data[p.pos] != ':' {
		return p.unexpected(p.pos, "expecting ':'")
	}
	p.pos++
	return nil
}

// literal reads lit (true, false or null), whose first byte is at p.pos.
func (p *parser) literal(lit string) error {
	for k := 1; k < len(lit); k++ {
		i := p.pos + k
		if i >= len(p.data) {
			return p.eof()
		}
		if p.data[i] != lit[k] {
			return p.unexpected(i, "in the literal "+lit)
		}
	}
	p.pos += len(lit)
	return nil
}

// number reads the number at p.pos and returns its text.
func (p *parser) number() ([]byte, error) {
	data, i := p.data, p.pos
	if data[i] == '-' {
		i++
	}
	switch {
	case i >= len(data):
		return nil, p.eof()
	case data[i] == '0':
		i++
	case '1' <= data[i] && data[i] <= '9':
		i++
		for i < len(data) && '0' <= data[i] && data[i] <= '9' {
			i++
		}
	default:
		return nil, p.unexpected(i, "expecting a digit")
	}
	if i < len(data) && data[i] == '.' {
		i++
		if i >= len(data) {
			return nil, p.eof()
		}
		if data[i] < '0' || data[i] > '9' {
			return nil, p.unexpected(i, "expecting a digit after the decimal point")
		}
		for i < len(data) && '0' <= data[i] && data[i] <= '9' {
			i++
		}
	}
	if i < len(data) && (data[i] == 'e' || data[i] == 'E') {
		i++
		if i < len(data) && (data[i] == '+' || data[i] == '-') {
			i++
		}
		if i >= len(data) {
			return nil, p.eof()
		}
		if data[i] < '0' || data[i] > '9' {
			return nil, p.unexpected(i, "expecting a digit in the exponent")
		}
		for i < len(data) && '0' <= data[i] && data[i] <= '9' {
			i++
		}
	}
	num := data[p.pos:i]
	p.pos = i
	return num, nil
}

// plainByte marks the bytes that stand for themselves in a JSON string and
// need no closer look: printable ASCII other than '"' and '\'.
var plainByte = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// str reads the string at p.pos and returns where its contents are, and
// whether they are plain: free of escapes and valid UTF-8, so that they need
// no unquoting. It sets p.badUTF8 if the contents are not valid UTF-8 or
// hold a \u escape of a surrogate that is not half of a pair.
func (p *parser) str() (start, end int, plain bool, err error) {
	data := p.data
	start = p.pos + 1
	escaped, nonASCII, badEscape := false, false, false
	high := -1 // where the escape that pairs the last high surrogate escape must start
	for i := start; ; {
		for i < len(data) && plainByte[data[i]] {
			i++
		}
		if i >= len(data) {
			return 0, 0, false, p.eof()
		}
		switch c := data[i]; {
		case c == '"':
			p.pos = i + 1
			valid := !badEscape && high < 0 && (!nonASCII || utf8.Valid(data[start:i]))
			if !valid {
				p.badUTF8 = true
			}
			return start, i, valid && !escaped, nil
		case c == '\\':
			escaped = true
			esc := i
			i++
			if i >= len(data) {
				return 0, 0, false, p.eof()
			}
			switch data[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i++
			case 'u':
				for range 4 {
					i++
					if i >= len(data) {
						return 0, 0, false, p.eof()
					}
					if hexDigit(data[i]) < 0 {
						return 0, 0, false, p.unexpected(i, `expecting a hex digit in a \u escape`)
					}
				}
				i++
				// A low surrogate must follow a high one at once, and a
				// high one must be followed by a low one.
				r := hex4(data[i-4 : i])
				low := 0xdc00 <= r && r < 0xe000
				if (high >= 0 || low) && !(low && high == esc) {
					badEscape = true
				}
				high = -1
				if 0xd800 <= r && r < 0xdc00 {
					high = i
				}
			default:
				return 0, 0, false, p.unexpected(i, "in a string escape")
			}
		case c < 0x20:
			return 0, 0, false, p.unexpected(i, "in a string (control characters must be escaped)")
		default:
			nonASCII = true
			i++
		}
	}
}

func hexDigit(c byte) rune {
	switch {
	case '0' <= c && c <= '9':
		return rune(c - '0')
	case 'a' <= c && c <= 'f':
		return rune(c - 'a' + 10)
	case 'A' <= c && c <= 'F':
		return rune(c - 'A' + 10)
	}
	return -1
}

// hex4 returns the value of the four hex digits s starts with, or -1 if it
// does not start with four.
func hex4(s []byte) rune {
	if len(s) < 4 {
		return -1
	}
	var r rune
	for _, c := range s[:4] {
		d := hexDigit(c)
		if d < 0 {
			return -1
		}
		r = r<<4 | d
	}
	return r
}

// unquote appends the contents of a JSON string that str accepted to dst,
// decoded as encoding/json decodes them: escapes resolved, surrogate pairs
// joined, and each unpaired surrogate and each byte that is not part of
// valid UTF-8 replaced by U+FFFD.
func unquote(dst, s []byte) []byte {
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '\\':
			switch e := s[i+1]; e {
			case 'b':
				dst = append(dst, '\b')
			case 'f':
				dst = append(dst, '\f')
			case 'n':
				dst = append(dst, '\n')
			case 'r':
				dst = append(dst, '\r')
			case 't':
				dst = append(dst, '\t')
			case 'u':
				r := hex4(s[i+2:])
				i += 6
				if utf16.IsSurrogate(r) {
					r2 := rune(-1)
					if i+1 < len(s) && s[i] == '\\' && s[i+1] == 'u' {
						r2 = hex4(s[i+2:])
					}
					if pair := utf16.DecodeRune(r, r2); pair != unicode.ReplacementChar {
						dst = utf8.AppendRune(dst, pair)
						i += 6
						continue
					}
					r = unicode.ReplacementChar
				}
				dst = utf8.AppendRune(dst, r)
				continue
			default: // '"', '\\', '/'
				dst = append(dst, e)
			}
			i += 2
		case c < utf8.RuneSelf:
			dst = append(dst, c)
			i++
		default:
			r, n := utf8.DecodeRune(s[i:])
			dst = utf8.AppendRune(dst, r)
			i += n
		}
	}
	return dst
}
