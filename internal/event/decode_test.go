package event

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

// fuzzDecoder is the Decoder the differential tests give both
// implementations: fixed time, request IDs that depend on the index only,
// some of them invalid.
func fuzzDecoder(maxEvents int) Decoder {
	return Decoder{
		Rules:          Rules{Now: now, Retention: 30 * 24 * time.Hour},
		DefaultService: "app",
		MaxEvents:      maxEvents,
		RequestID: func(i int) string {
			if i%4 == 3 {
				return "not printable\x01"
			}
			return "rid-" + strconv.Itoa(i)
		},
	}
}

const sampleEvent = `{"endpoint":"/api/clients/42","response_time_ms":12.5,"status_code":200,"service":"web","method":"GET","user_id":"9b2f1c3e-1234-4abc-8def-0123456789ab","timestamp":"2026-06-20T13:59:00Z","error_message":"","request_id":"r-1"}`

// decodeSeeds are inputs where encoding/json has rules worth checking.
var decodeSeeds = []string{
	sampleEvent,
	"[" + sampleEvent + "," + sampleEvent + "]",
	sampleEvent + "\n" + sampleEvent + "\n",
	`{"endpoint":"/a","response_time_ms":1,"status_code":200}`,
	`{"endpoint":"/a","response_time_ms":1,"status_code":200,"colour":"red"}`,
	`{"endpoint":"/a","response_time_ms":"1","status_code":200}`,
	`{"endpoint":"/a","response_time_ms":1,"status_code":200.5}`,
	`[{"endpoint":"/a","response_time_ms":1,"status_code":200},{"endpoint":"","response_time_ms":"x","status_code":700}]`,

	// White space, in and around values; Unicode space only JSON trims.
	" \t\r\n{ \"endpoint\" : \"/a\" , \"response_time_ms\" : 1 , \"status_code\" : 200 } \t\r\n",
	"\v{\"endpoint\":\"/a\",\"response_time_ms\":1,\"status_code\":200}\f",
	"\u00a0[{\"endpoint\":\"/a\",\"response_time_ms\":1,\"status_code\":200}]\u2028\u0085",
	"\u00a0{}\u00a0x",
	"{\"endpoint\":\"/a\",\"response_time_ms\":1,\"status_code\":200}\v",
	"{\"endpoint\":\"/a\"\v,\"response_time_ms\":1,\"status_code\":200}",
	"\xef\xbb\xbf{}",

	// Escapes, Unicode and broken UTF-8.
	`{"endpoint":"\/a\\b\"c\b\f\n\r\t","response_time_ms":1,"status_code":200}`,
	`{"endpoint":"/\u00e9\u20AC\ud83d\ude00","response_time_ms":1,"status_code":200,"error_message":"\u0000"}`,
	`{"endpoint":"/\ud83d","response_time_ms":1,"status_code":200}`,
	`{"endpoint":"/\ude00\ud83d","response_time_ms":1,"status_code":200}`,
	`{"endpoint":"/\ud83d\u0041","response_time_ms":1,"status_code":200}`,
	`{"endpoint":"/\ud83d\\ude00","response_time_ms":1,"status_code":200}`,
	`{"endpoint":"/\ud83d\ud83d\ude00","response_time_ms":1,"status_code":200}`,
	`{"endpoint":"/a","response_time_ms":1,"status_code":200,"error_message":"\ud800"}`,
	"{\"endpoint\":\"/\xff\xfe\",\"response_time_ms\":1,\"status_code\":200}",
	"{\"endpoint\":\"/a\",\"response_time_ms\":1,\"status_code\":200,\"error_message\":\"\xed\xa0\x80\xc3\"}",
	"{\"endpoint\":\"/a\",\"response_time_ms\":1,\"status_code\":200,\"error_message\":\"é€😀\"}",
	"{\"endpoint\":\"/a\tb\",\"response_time_ms\":1,\"status_code\":200}",
	"{\"endpoint\":\"/a\x7f\",\"response_time_ms\":1,\"status_code\":200}",
	`{"endpoint":"/a\'","response_time_ms":1,"status_code":200}`,
	`{"endpoint":"/a\x41","response_time_ms":1,"status_code":200}`,
	`{"endpoint":"/a\u00G0","response_time_ms":1,"status_code":200}`,
	`{"endpoint":"/a\u00","response_time_ms":1,"status_code":200}`,
	`{"endpoint":"/a\`,
	`{"\u0065ndpoint":"/a","response_time_ms":1,"status_code":200}`,
	"{\"endpoint\xff\":\"/a\",\"response_time_ms\":1,\"status_code\":200}",
	`{"endpoint":"/a","response_time_ms":1,"status_code":200,"x":"\ud83d\ude00","y":["\ud800"]}`,
	`{"endpoint":"/a","response_time_ms":1,"status_code":200,"x\ud800":1}`,
	"{\"endpoint\":\"/a\",\"response_time_ms\":1,\"status_code\":200,\"x\":{\"\xff\":1}}",
	"{\"endpoint\":[\"\xff\"],\"response_time_ms\":1,\"status_code\":200}",
	`{"endpoint":"/a\ud83d\n\ude00","response_time_ms":1,"status_code":200}`,
	`{"endpoint":"/a","response_time_ms":1,"status_code":200,"a":1,"b":2,"a":3,"A":4}`,
	`{"x\"":1}`, `{"\"x":1}`, `{"\n":1}`, `{"é":1}`, `{"\ud800":1}`, `{"":1}`, `{"event":1}`, `{"Event":1}`,

	// Keys: case, folding, duplicates, null.
	`{"Endpoint":"/a","RESPONSE_TIME_MS":1,"Status_Code":200,"SERVICE":"Web","mEtHoD":"post"}`,
	`{"endpoint":"/a","Endpoint":"/b","response_time_ms":1,"status_code":200}`,
	`{"ſervice":"x","endpoint":"/a","response_time_ms":1,"status_code":200}`,
	`{"endpoint":"/a","response_time_ms":1,"status_code":200,"K":1}`,
	`{"endpoint":"/a","response_time_ms":1,"status_code":200,"endpoint":null}`,
	`{"endpoint":"/a","response_time_ms":1,"response_time_ms":null,"status_code":200}`,
	`{"endpoint":"/a","response_time_ms":null,"status_code":null}`,
	`{"x":1,"response_time_ms":5,"response_time_ms":null,"response_time_ms":"x","endpoint":"/a","status_code":200}`,
	`{"x":1,"response_time_ms":5,"response_time_ms":1e400,"endpoint":"/a","status_code":200}`,
	`{"x":1,"endpoint":"/a","response_time_ms":1,"status_code":[200]}`,
	`{"x":1,"y":2,"endpoint":7}`,
	`{"response_time_ms":"x","response_time_ms":5,"endpoint":"/a","status_code":200}`,

	// Types and numbers.
	`{"endpoint":1,"response_time_ms":true,"status_code":"200"}`,
	`{"endpoint":{"a":[1,{"b":null}]},"response_time_ms":[],"status_code":{}}`,
	`{"endpoint":"/a","response_time_ms":false,"status_code":200}`,
	`{"endpoint":"/a","response_time_ms":-0,"status_code":200}`,
	`{"endpoint":"/a","response_time_ms":-0.0e-0,"status_code":-0}`,
	`{"endpoint":"/a","response_time_ms":1e400,"status_code":200}`,
	`{"endpoint":"/a","response_time_ms":1e-400,"status_code":200}`,
	`{"endpoint":"/a","response_time_ms":1E+2,"status_code":1e2}`,
	`{"endpoint":"/a","response_time_ms":0.1e-2,"status_code":2E2}`,
	`{"endpoint":"/a","response_time_ms":1,"status_code":9223372036854775807}`,
	`{"endpoint":"/a","response_time_ms":1,"status_code":9223372036854775808}`,
	`{"endpoint":"/a","response_time_ms":1,"status_code":-9223372036854775809}`,
	`{"endpoint":"/a","response_time_ms":123456789012345678901234567890123456789,"status_code":200}`,
	`{"endpoint":"/a","response_time_ms":86400000.0000000001,"status_code":200}`,
	`{"endpoint":"/a","response_time_ms":01,"status_code":200}`,
	`{"endpoint":"/a","response_time_ms":+1,"status_code":200}`,
	`{"endpoint":"/a","response_time_ms":1.,"status_code":200}`,
	`{"endpoint":"/a","response_time_ms":.5,"status_code":200}`,
	`{"endpoint":"/a","response_time_ms":1e,"status_code":200}`,
	`{"endpoint":"/a","response_time_ms":1e+,"status_code":200}`,
	`{"endpoint":"/a","response_time_ms":-,"status_code":200}`,
	`{"endpoint":"/a","response_time_ms":NaN,"status_code":200}`,
	`{"endpoint":"/a","response_time_ms":Infinity,"status_code":200}`,
	`{"endpoint":"/a","response_time_ms":0x10,"status_code":200}`,
	`{"endpoint":"/a","response_time_ms":1,"status_code":200,"x":[1,2,{"y":[true,false,null,"s",-1.5e3]}]}`,
	`{"endpoint":"/a","response_time_ms":1,"status_code":200,"x":{"y":}}`,
	`{"endpoint":"/a","response_time_ms":1,"status_code":200,"x":[1,]}`,
	`{"endpoint":"/a","response_time_ms":1,"status_code":200,"x":{"y":1,}}`,
	`{"endpoint":"/a","response_time_ms":1,"status_code":200,"x":[1 2]}`,
	`{"endpoint":"/a","response_time_ms":1,"status_code":200,"x":{"y" 1}}`,
	`{"endpoint":"/a","response_time_ms":1,"status_code":200,"x":{1:1}}`,
	`{"endpoint":"/a","response_time_ms":1,"status_code":200,"x":tru}`,
	`{"endpoint":"/a","response_time_ms":1,"status_code":200,"x":nul}`,
	`{"endpoint":"/a","response_time_ms":1,"status_code":200,"x":[}`,
	`{"endpoint":"/a","response_time_ms":1,"status_code":200,"x":{]}`,
	`{"endpoint":"/a","response_time_ms":1,"status_code":200,}`,
	`{"endpoint":"/a" "response_time_ms":1}`,
	`{"endpoint"}`, `{,}`, `{"a":1 "b":2}`, `{:}`, `{"a"::1}`,

	// Fields the validation rejects.
	`{"endpoint":"/a","response_time_ms":-1,"status_code":99,"service":"-x","method":"FETCH","user_id":"00000000-0000-0000-0000-000000000000","timestamp":"2026-06-20 14:00:00","request_id":"a b"}`,
	`{"endpoint":"/a","response_time_ms":1,"status_code":200,"user_id":"{9b2f1c3e-1234-4abc-8def-0123456789ab}"}`,
	`{"endpoint":"/a","response_time_ms":1,"status_code":200,"user_id":"9b2f1c3e12344abc8def0123456789ab"}`,
	`{"endpoint":"/a","response_time_ms":1,"status_code":200,"timestamp":"2026-06-20T15:59:00.123456789+02:00"}`,
	`{"endpoint":"/a","response_time_ms":1,"status_code":200,"timestamp":"2026-06-20T14:06:00Z"}`,
	`{"endpoint":"/a","response_time_ms":1,"status_code":200,"timestamp":"2020-06-20T14:00:00Z"}`,
	`{"endpoint":"/a/42/9B2F1C3E-1234-4abc-8def-0123456789ab/x?y=1#z","response_time_ms":1,"status_code":200}`,
	`{"endpoint":"//42//","response_time_ms":1,"status_code":200}`,
	`{"endpoint":"?q","response_time_ms":1,"status_code":200}`,
	`{"endpoint":"/a","response_time_ms":1,"status_code":200,"service":"Web-1","method":"get"}`,
	`{"endpoint":"/a","response_time_ms":1,"status_code":200,"service":"","method":""}`,
	`{"endpoint":"/a","response_time_ms":1,"status_code":200,"request_id":""}`,

	// Values that are not objects, and what follows a value.
	`[1]`, `["x"]`, `[null]`, `[true]`, `[[]]`, `[{}]`, `[01]`, `[1x]`, `[-]`, `[1`, `[tr`, `[truex]`, `[nullnull]`,
	`1`, `1x`, `"a"x`, `null`, `nullx`, `true`, `-`, `01`, `1.5.3`, `1-2`, `1e5e5`, `truefalse`, `"a""b"`,
	`{}`, `{}{}`, `{} {}`, `{}}`, `{}]`, `{}x`, `{} x`, `{}]x`, `}`, `]`, `[`, `[]`, `[]x`, `[] ]`, `[}`, `[{}}`,
	`[{},]`, `[,{}]`, `[{} {}]`, `[{}]]`, `[{},{},{},{}]`, `[{},{},{},x`, `[1,1,1,1]`, `[{},{},{}]`,
	`[{"endpoint":"/a","response_time_ms":1,"status_code":200}`,
	`[{"endpoint":"/a","response_time_ms":1,"status_code":200},`,
	`[{"endpoint":"/a","response_time_ms":1,"status_code":200}}`,
	`[{"endpoint":"/a","response_time_ms":1,"status_code":200},{"endpoint":"/a","response_time_ms":1,"status_code":700}}`,
	"{}\n{\"endpoint\":\"/b\",\"response_time_ms\":1,\"status_code\":201}\nnot json\n",
	"{\"endpoint\":\"/a\",\"response_time_ms\":1,\"status_code\":200}\n]\ngarbage",
	"", " ", "\n\n", "x", "\x00", "{\x00}", `{"a":"b`,
}

// largeInputs are compared with the reference by a test of their own: as
// fuzzing seeds they would slow the fuzzer down.
var largeInputs = []string{
	`[` + sampleEvent + `]` + strings.Repeat(" ", 700) + "x",
	strings.Repeat(`[`, maxDepth) + strings.Repeat(`]`, maxDepth),
	strings.Repeat(`[`, maxDepth+1) + strings.Repeat(`]`, maxDepth+1),
	strings.Repeat(`[`, maxDepth+1),
	`{"x":` + strings.Repeat(`[`, maxDepth-1) + strings.Repeat(`]`, maxDepth-1) + `}`,
	`{"x":` + strings.Repeat(`[`, maxDepth) + strings.Repeat(`]`, maxDepth) + `}`,
	`{"x":` + strings.Repeat(`[`, maxDepth) + `}`,
	`[{"x":` + strings.Repeat(`{"a":`, maxDepth-1) + `1` + strings.Repeat(`}`, maxDepth-1) + `}]`,
	`[{"x":` + strings.Repeat(`{"a":`, maxDepth) + `1` + strings.Repeat(`}`, maxDepth) + `}]`,
	`[{"x":` + strings.Repeat(`{"a":{}, "b":`, maxDepth) + `1` + strings.Repeat(`}`, maxDepth) + `}]`,
	strings.Repeat(`{"x":1}`, 120),
	strings.Repeat(`{"x":1} `, 120),
	"[" + strings.Repeat(sampleEvent+",", 999) + sampleEvent + "]",
	strings.Repeat(sampleEvent+"\n", 1000),
	`{"endpoint":"/` + strings.Repeat(`\u00e9`, 300) + `","response_time_ms":1,"status_code":200,"error_message":"` + strings.Repeat("\xff", 3000) + `"}`,
	// At most MaxEventFields fields an event, and names of ignored fields
	// bounded in number and length.
	manyFields(MaxEventFields, ""),
	manyFields(MaxEventFields+1, ""),
	manyFields(MaxEventFields, `"status_code":"x",`),
	"[" + manyFields(MaxEventFields, "") + "," + manyFields(MaxEventFields+1, "") + "]",
	`{"endpoint":"/a","response_time_ms":1,"status_code":200,"` + strings.Repeat("é", 40) + `":1,"` + strings.Repeat("x", 63) + `é":1,"` +
		strings.Repeat("x", 64) + `é":1,"` + strings.Repeat("x", 64) + `":1}`,
}

// manyFields is an event of n fields, 3 of them known, after the members
// in prefix.
func manyFields(n int, prefix string) string {
	var b strings.Builder
	b.WriteString(`{` + prefix + `"endpoint":"/a","response_time_ms":1,"status_code":200`)
	for i := range n - 3 {
		fmt.Fprintf(&b, `,"x%d":%d`, i, i)
	}
	return b.String() + "}"
}

func TestDecodeMatchesReferenceOnLargeInputs(t *testing.T) {
	for _, s := range largeInputs {
		for _, maxEvents := range []int{3, 1000} {
			matchReference(t, []byte(s), maxEvents)
		}
	}
}

func FuzzDecodeMatchesReference(f *testing.F) {
	for _, s := range decodeSeeds {
		f.Add([]byte(s))
	}
	// Every prefix of a few events, so that each place the input can end
	// is tried.
	for _, s := range []string{sampleEvent, "[" + sampleEvent + "," + sampleEvent + "]", `{"x":[1,{"y":"\u00e9"}],"endpoint":"/\ud83d\ude00"}`} {
		for n := range len(s) {
			f.Add([]byte(s[:n]))
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		// The fuzzer spends minutes minimising each new long input; what
		// takes length is in largeInputs.
		if len(data) > 1<<10 {
			return
		}
		orig := bytes.Clone(data)
		// A high limit matters only where a low one was hit.
		for _, maxEvents := range []int{3, 1000} {
			if !matchReference(t, data, maxEvents) {
				break
			}
		}
		if !bytes.Equal(data, orig) {
			t.Fatalf("decoding changed its input")
		}
	})
}

// matchReference decodes data with the parser and with the reference, as
// JSON and as NDJSON, with StrictFields and without, and fails t unless
// they agree, on the ignored fields too. It reports whether the reference
// found more than maxEvents events.
func matchReference(t *testing.T, data []byte, maxEvents int) (tooMany bool) {
	t.Helper()
	for _, ndjson := range []bool{false, true} {
		decode, ref, what := Decoder.JSON, refJSON, "JSON"
		if ndjson {
			decode, ref, what = Decoder.NDJSON, refNDJSON, "NDJSON"
		}
		for _, strict := range []bool{false, true} {
			d, rd := fuzzDecoder(maxEvents), fuzzDecoder(maxEvents)
			d.StrictFields, rd.StrictFields = strict, strict
			d.Ignored, rd.Ignored = &IgnoredFields{}, &IgnoredFields{}
			what := fmt.Sprintf("%s with MaxEvents %d, StrictFields %v", what, maxEvents, strict)
			got, err := decode(d, data)
			want, wantErr := ref(rd, data)
			sameDecode(t, what, data, got, err, want, wantErr)
			if err == nil && (d.Ignored.Count != rd.Ignored.Count || !slices.Equal(d.Ignored.Names, rd.Ignored.Names)) {
				t.Fatalf("%s of %q: ignored %d fields %q; want %d fields %q", what, data,
					d.Ignored.Count, d.Ignored.Names, rd.Ignored.Count, rd.Ignored.Names)
			}
			tooMany = tooMany || errors.Is(wantErr, ErrTooManyEvents)
		}
	}
	return tooMany
}

// sameDecode fails t unless got and err are what the reference decoder
// gave: the same requests, or the same errors. Syntax errors may be worded
// differently.
func sameDecode(t *testing.T, what string, data []byte, got []Request, err error, want []Request, wantErr error) {
	t.Helper()
	if (err == nil) != (wantErr == nil) || errors.Is(err, ErrTooManyEvents) != errors.Is(wantErr, ErrTooManyEvents) {
		t.Fatalf("%s of %q: got %d events, error %v; want %d events, error %v", what, data, len(got), err, len(want), wantErr)
	}
	var gotBE, wantBE *BatchError
	if errors.As(err, &gotBE) != errors.As(wantErr, &wantBE) {
		t.Fatalf("%s of %q: got error %v; want %v", what, data, err, wantErr)
	}
	if wantBE != nil {
		ok := gotBE.Invalid == wantBE.Invalid && len(gotBE.Errors) == len(wantBE.Errors)
		for i := 0; ok && i < len(wantBE.Errors); i++ {
			g, w := gotBE.Errors[i], wantBE.Errors[i]
			const syntax = "is not valid JSON ("
			ok = g.Index == w.Index && g.Field == w.Field &&
				(g.Message == w.Message || strings.HasPrefix(g.Message, syntax) && strings.HasPrefix(w.Message, syntax))
		}
		if !ok {
			t.Fatalf("%s of %q:\ngot  %d invalid: %q\nwant %d invalid: %q", what, data, gotBE.Invalid, gotBE.Errors, wantBE.Invalid, wantBE.Errors)
		}
		return
	}
	if len(got) != len(want) {
		t.Fatalf("%s of %q: got %d events; want %d", what, data, len(got), len(want))
	}
	for i := range want {
		if !sameRequest(got[i], want[i]) {
			t.Fatalf("%s of %q: event %d is\n%+v; want\n%+v", what, data, i, got[i], want[i])
		}
	}
}

func sameRequest(a, b Request) bool {
	return a.Timestamp.Equal(b.Timestamp) && a.Timestamp.Location() == b.Timestamp.Location() &&
		a.Service == b.Service && a.Endpoint == b.Endpoint && a.Method == b.Method && a.StatusCode == b.StatusCode &&
		math.Float64bits(a.ResponseTimeMS) == math.Float64bits(b.ResponseTimeMS) &&
		a.UserID == b.UserID && a.ErrorMessage == b.ErrorMessage && a.RequestID == b.RequestID
}

// FuzzValidationHelpersMatchReference holds the rewritten helpers of
// validation to what they were.
func FuzzValidationHelpersMatchReference(f *testing.F) {
	for _, s := range []string{"", "/", "?", "/a/42", "42", "//", "/a/42/", "/9b2f1c3e-1234-4abc-8def-0123456789ab#x",
		"/" + strings.Repeat("1/", 100), "/" + strings.Repeat("x", 200) + "/7", "/a\x7f", "/é\x01", "\xff/1", "/\u2028"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		if got, want := NormalizeEndpoint(p), refNormalizeEndpoint(p); got != want {
			t.Fatalf("NormalizeEndpoint(%q) = %q; want %q", p, got, want)
		}
		if got, want := Printable(p), refPrintable(p); got != want {
			t.Fatalf("Printable(%q) = %v; want %v", p, got, want)
		}
	})
}

// decodeOutcome is what decoding body gives, in one line per field error,
// "n events", or the error.
func decodeOutcome(d Decoder, ndjson bool, body string) []string {
	decode := d.JSON
	if ndjson {
		decode = d.NDJSON
	}
	reqs, err := decode([]byte(body))
	var got []string
	var be *BatchError
	switch {
	case errors.As(err, &be):
		for _, e := range be.Errors {
			msg := e.Message
			if strings.HasPrefix(msg, "is not valid JSON") {
				msg = "is not valid JSON"
			}
			got = append(got, fmt.Sprintf("%d %s: %s", e.Index, e.Field, msg))
		}
	case err != nil:
		got = []string{err.Error()}
	default:
		got = []string{fmt.Sprintf("%d events", len(reqs))}
	}
	return got
}

// TestDecodeLikeEncodingJSON pins down the rules of encoding/json that the
// parser follows (with StrictFields, as json.Decoder with
// DisallowUnknownFields), some of them surprising, so that they stay
// documented when the reference implementation is gone.
func TestDecodeLikeEncodingJSON(t *testing.T) {
	const ok = `"endpoint":"/a","response_time_ms":1,"status_code":200`
	f := func(ndjson bool, body string, want ...string) {
		t.Helper()
		d := fuzzDecoder(3)
		d.StrictFields = true
		got := decodeOutcome(d, ndjson, body)
		if strings.Join(got, "; ") != strings.Join(want, "; ") {
			t.Errorf("decoding %q: got\n%q; want\n%q", body, got, want)
		}
	}
	json, ndjson := false, true
	// Keys match without regard to case, with Unicode folding; the last
	// duplicate wins.
	f(json, `{"ENDPOINT":"/a","Response_Time_MS":1,"ſtatus_code":200}`, "1 events")
	f(json, `{"endpoint":7,"endpoint":"/a","response_time_ms":1,"status_code":200}`, "0 endpoint: must be a string")
	// Only the first type error or unknown key of an event is reported;
	// a number field of the wrong type is left zero, not missing.
	f(json, `{"colour":1,"response_time_ms":"x","endpoint":"/a","status_code":200}`, "0 colour: is not a known field")
	f(json, `{"colour":1,"response_time_ms":null}`, "0 colour: is not a known field", "0 endpoint: is required",
		"0 response_time_ms: is required", "0 status_code: is required")
	f(json, `{"endpoint":"/a","status_code":1e2,"response_time_ms":1e400}`, "0 status_code: must be an integer")
	f(json, `{"x\"":1,`+ok+`}`, `0 x\: is not a known field`)
	f(json, `{"event":1}`, "0 event: is not a known field")
	// A syntax error anywhere in an event hides its other errors.
	f(json, `{"colour":1,"endpoint":"/a","x":[1,]}`, "0 body: is not valid JSON")
	// null is an event with no fields; other values are no event.
	f(json, `[null,1]`, "0 endpoint: is required", "0 response_time_ms: is required", "0 status_code: is required",
		"1 event: must be a JSON object")
	// Each value ends where its grammar does, whatever follows.
	f(json, `[01]`, "0 event: must be a JSON object", "1 body: is not valid JSON")
	f(ndjson, `01`, "0 event: must be a JSON object", "1 event: must be a JSON object")
	f(json, `[1`, "0 event: must be a JSON object", "0 body: is not valid JSON")
	// ']' and '}' end an NDJSON stream and what follows a single object
	// silently, but not an array.
	f(json, `{`+ok+`}]garbage`, "1 events")
	f(ndjson, `{`+ok+`}}garbage`, "1 events")
	f(json, `[{`+ok+`}}`, "1 body: is not valid JSON", "1 body: unexpected data after the JSON array")
	f(json, `[{`+ok+`}]`+strings.Repeat(" ", 1000)+"x", "1 body: unexpected data after the JSON array")
	// JSON, unlike NDJSON, trims Unicode space around the body.
	f(json, "\u00a0\v{"+ok+"}\u3000", "1 events")
	f(ndjson, "\v{"+ok+"}", "0 body: is not valid JSON")
	// Arrays and objects nest at most 10000 deep.
	f(json, `{`+ok+`,"x":`+strings.Repeat("[", maxDepth-1)+strings.Repeat("]", maxDepth-1)+`}`, "0 x: is not a known field")
	f(json, `{`+ok+`,"x":`+strings.Repeat("[", maxDepth)+strings.Repeat("]", maxDepth)+`}`, "0 body: is not valid JSON")
	// The event limit is checked before the event is read.
	f(json, `[{},{},{},x`, ErrTooManyEvents.Error())
}

func TestDecodeSyntaxErrorMessages(t *testing.T) {
	f := func(body, want string) {
		t.Helper()
		_, err := decoder().JSON([]byte(body))
		var be *BatchError
		if !errors.As(err, &be) || len(be.Errors) == 0 || be.Errors[len(be.Errors)-1].Message != want {
			t.Errorf("JSON(%q): got %v; want last message %q", body, err, want)
		}
	}
	f(`{"endpoint":`, "is not valid JSON (unexpected end of input)")
	f(`  {"endpoint":x}`, "is not valid JSON (unexpected character 'x' at byte 14, expecting a value)")
	f("[{}\n,{\"a\"\x00", `is not valid JSON (unexpected character '\x00' at byte 9, expecting ':')`)
	f("{\"a\":\"\xff\n\"}", `is not valid JSON (unexpected character '\n' at byte 7, in a string (control characters must be escaped))`)
	f(`[{},{}x]`, "is not valid JSON (unexpected character 'x' at byte 6, expecting ',' or ']')")
	f(`{"a":`+strings.Repeat("[", maxDepth), "is not valid JSON (arrays and objects nested more than 10000 deep at byte 10004)")
}

// TestDecodeCopiesStrings checks that the requests do not refer to the
// body, which the ingest edge reuses for the next request.
func TestDecodeCopiesStrings(t *testing.T) {
	body := []byte(`[{"endpoint":"/a/b","response_time_ms":1,"status_code":200,"service":"web","method":"GET","error_message":"oops","request_id":"r-1"},` +
		`{"endpoint":"/\u00e9","response_time_ms":1,"status_code":200,"error_message":"\n","request_id":"r\u002d2"}]`)
	d := decoder()
	reqs, err := d.JSON(body)
	if err != nil {
		t.Fatal(err)
	}
	want := bytes.Clone(body)
	wantReqs, _ := d.JSON(want)
	for i := range body {
		body[i] = 'X'
	}
	for i := range reqs {
		if !sameRequest(reqs[i], wantReqs[i]) {
			t.Errorf("event %d changed with the body: got %+v; want %+v", i, reqs[i], wantReqs[i])
		}
	}
}

func TestDecodeGeneratesRequestIDs(t *testing.T) {
	var body bytes.Buffer
	for range 40 {
		body.WriteString(`{"endpoint":"/a","response_time_ms":1,"status_code":200}` + "\n")
	}
	d := decoder()
	d.MaxEvents = 100
	seen := map[string]bool{}
	for range 2 {
		reqs, err := d.NDJSON(body.Bytes())
		if err != nil || len(reqs) != 40 {
			t.Fatalf("NDJSON: %d events, %v", len(reqs), err)
		}
		for _, q := range reqs {
			id, err := uuid.Parse(q.RequestID)
			if err != nil || id.Version() != 4 || id.Variant() != uuid.RFC4122 || id.String() != q.RequestID {
				t.Fatalf("request ID %q is not a random UUID in canonical form", q.RequestID)
			}
			if seen[q.RequestID] {
				t.Fatalf("request ID %q given twice", q.RequestID)
			}
			seen[q.RequestID] = true
		}
	}
}

// benchmarkBody is n events as NDJSON lines, or a JSON array.
func benchmarkBody(n int, array bool) []byte {
	var buf bytes.Buffer
	if array {
		buf.WriteByte('[')
	}
	for i := range n {
		if array && i > 0 {
			buf.WriteByte(',')
		}
		fmt.Fprintf(&buf, `{"endpoint":"/api/clients/%d","response_time_ms":%d.5,"status_code":200,"service":"web","method":"GET","user_id":"9b2f1c3e-1234-4abc-8def-0123456789ab","timestamp":"2026-06-20T13:59:00Z","request_id":"req-%08d"}`, i, i%1000, i)
		buf.WriteByte('\n')
	}
	if array {
		buf.WriteByte(']')
	}
	return buf.Bytes()
}

func BenchmarkDecodeJSONArray(b *testing.B) {
	body := benchmarkBody(1000, true)
	d := decoder()
	d.MaxEvents = 1000
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := d.JSON(body); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeReferenceJSONArray(b *testing.B) {
	body := benchmarkBody(1000, true)
	d := decoder()
	d.MaxEvents = 1000
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := refJSON(d, body); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeSingleEvent(b *testing.B) {
	body := []byte(sampleEvent)
	d := decoder()
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := d.JSON(body); err != nil {
			b.Fatal(err)
		}
	}
}

// TestDecodeMatchesReferenceOnGeneratedEvents compares the decoders on
// random bodies of mostly well-formed events, which byte-level fuzzing
// reaches less often: keys in any case, repeated or unknown, values of
// every type, escapes, odd numbers, white space anywhere, and now and then
// a cut or a stray byte.
func TestDecodeMatchesReferenceOnGeneratedEvents(t *testing.T) {
	n := 5000
	if testing.Short() {
		n = 1000
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	pick := func(list ...string) string { return list[rnd.IntN(len(list))] }
	space := func() string {
		if rnd.IntN(3) > 0 {
			return ""
		}
		return pick(" ", "\n", "\t", "\r\n", "  ")
	}
	key := func() string {
		k := pick(fieldNames[:]...)
		switch rnd.IntN(8) {
		case 0:
			k = strings.ToUpper(k)
		case 1:
			k = strings.Replace(k, "s", "ſ", 1)
		case 2:
			k = strings.Replace(k, "e", `\u0065`, 1)
		case 3:
			k = pick("colour", "event", "", "endpoint ", `x\"`, "\xff", "ENDPOINTS", "responsetime_ms", `\ud800`, `\ud83d\ude00x`,
				"é"+strings.Repeat("x", MaxIgnoredNameLen-2)+"é", "colour"+strconv.Itoa(rnd.IntN(30)))
		}
		return `"` + k + `"`
	}
	var value func(depth int) string
	value = func(depth int) string {
		switch rnd.IntN(10) {
		case 0, 1, 2:
			return `"` + pick("/a/42", "/api/9b2f1c3e-1234-4abc-8def-0123456789ab?x", "", "GET", "get", "FETCH", "web", "Web", "a b",
				"9b2f1c3e-1234-4abc-8def-0123456789ab", "2026-06-20T13:59:00Z", "2026-06-20T13:59:00+02:00", "2020-01-01T00:00:00Z",
				`\/a\n\u00e9\ud83d\ude00`, `\ud800x`, "\xff\xfe", "é", `\u0000`, `\"`) + `"`
		case 3, 4, 5:
			return pick("0", "-0", "1", "12.5", "200", "200.0", "2e2", "1E+2", "0.1e-2", "599", "600", "-1", "86400001",
				"1e400", "-1e400", "1e-400", "9223372036854775807", "9223372036854775808", "123456789012345678901234567890")
		case 6:
			return pick("true", "false", "null", "null")
		case 7:
			if depth > 2 {
				return "[]"
			}
			return "[" + space() + value(depth+1) + space() + "," + space() + value(depth+1) + "]"
		default:
			if depth > 2 {
				return "{}"
			}
			return "{" + key() + ":" + value(depth+1) + "}"
		}
	}
	// good are members that make a valid event, a few of them escaped
	// or in odd case.
	good := [][]string{
		{`"endpoint":"/api/clients/42"`, `"Endpoint":"/a/b?c"`, `"endpoint":"\/x\u00e9"`},
		{`"response_time_ms":12.5`, `"response_time_ms":0`, `"RESPONSE_TIME_MS":1e3`, `"response_time_ms":-0`},
		{`"status_code":200`, `"status_code":599`, `"ſtatus_code":100`},
		{`"service":"web"`, `"service":"Web-2"`, `"service":null`},
		{`"method":"get"`, `"Method":"DELETE"`},
		{`"user_id":"9b2f1c3e-1234-4abc-8def-0123456789ab"`, `"user_id":"9B2F1C3E-1234-4ABC-8DEF-0123456789AB"`},
		{`"timestamp":"2026-06-20T13:59:00.5Z"`, `"timestamp":"2026-06-20T15:59:00+02:00"`},
		{`"error_message":"upstream \"timeout\"\n"`, `"error_message":""`},
		{`"request_id":"r-1"`, `"request_id":"\u0072-2"`},
	}
	object := func() string {
		var members []string
		if rnd.IntN(2) == 0 {
			for f, alts := range good {
				if f < 3 || rnd.IntN(2) == 0 {
					members = append(members, alts[rnd.IntN(len(alts))])
				}
			}
			rnd.Shuffle(len(members), func(i, j int) { members[i], members[j] = members[j], members[i] })
		}
		// Random members; few in a good event, so that it stays good now
		// and then.
		extra := rnd.IntN(7)
		if len(members) > 0 {
			extra = rnd.IntN(3) / 2
		}
		for range extra {
			members = append(members, key()+space()+":"+space()+value(0))
		}
		return "{" + space() + strings.Join(members, space()+","+space()) + space() + "}"
	}
	for range n {
		var body string
		switch events := rnd.IntN(5); rnd.IntN(3) {
		case 0:
			body = space() + object() + space()
		case 1:
			parts := make([]string, events)
			for i := range parts {
				parts[i] = object()
			}
			body = "[" + strings.Join(parts, ","+space()) + "]"
		default:
			for range events {
				body += object() + pick("\n", " ", "")
			}
		}
		if rnd.IntN(10) == 0 && len(body) > 0 {
			i := rnd.IntN(len(body))
			if rnd.IntN(2) == 0 {
				body = body[:i]
			} else {
				body = body[:i] + pick("x", ",", "}", "]", "\x00", `"`, "1") + body[i:]
			}
		}
		for _, maxEvents := range []int{3, 1000} {
			matchReference(t, []byte(body), maxEvents)
		}
	}
}
