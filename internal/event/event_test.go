package event

import (
	"bytes"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

var now = time.Date(2026, 6, 20, 14, 0, 0, 0, time.UTC)

func decoder() Decoder {
	return Decoder{Rules: Rules{Now: now, Retention: 30 * 24 * time.Hour}, DefaultService: "app", MaxEvents: 3}
}

func TestNormalizeEndpoint(t *testing.T) {
	f := func(in, want string) {
		t.Helper()
		if got := NormalizeEndpoint(in); got != want {
			t.Errorf("NormalizeEndpoint(%q) = %q; want %q", in, got, want)
		}
	}
	f("/api/clients", "/api/clients")
	f("/api/clients/42", "/api/clients/:id")
	f("/api/clients/42/forms/9B2F1C3E-1234-4abc-8def-0123456789ab", "/api/clients/:id/forms/:id")
	f("/api/clients/42?page=2#top", "/api/clients/:id")
	f("/v2/items/a42", "/v2/items/a42")
	f("/9b2f1c3e-1234-4abc-8def-0123456789ag", "/9b2f1c3e-1234-4abc-8def-0123456789ag")
	f("?x=1", "/")
	f("rpc:get_user", "rpc:get_user")
}

func TestValidateAcceptsAndNormalises(t *testing.T) {
	rt, code := 12.5, 201
	w := Wire{Endpoint: "/api/forms/7", ResponseTimeMS: &rt, StatusCode: &code, Service: "Web",
		Method: "post", UserID: "9b2f1c3e-1234-4abc-8def-0123456789ab", Timestamp: "2026-06-20T15:59:00+02:00", RequestID: "r-1"}
	q, errs := w.Validate(0, Rules{Now: now, Retention: time.Hour}, "app")
	if len(errs) != 0 {
		t.Fatalf("Validate: unexpected errors %v", errs)
	}
	want := Request{Timestamp: time.Date(2026, 6, 20, 13, 59, 0, 0, time.UTC), Service: "web", Endpoint: "/api/forms/:id",
		Method: "POST", StatusCode: 201, ResponseTimeMS: 12.5, UserID: uuid.MustParse("9b2f1c3e-1234-4abc-8def-0123456789ab"), RequestID: "r-1"}
	if q != want {
		t.Fatalf("got %+v; want %+v", q, want)
	}
}

func TestValidateDefaults(t *testing.T) {
	rt, code := 0.0, 100
	q, errs := (&Wire{Endpoint: "/", ResponseTimeMS: &rt, StatusCode: &code}).Validate(0, Rules{Now: now}, "app")
	if len(errs) != 0 {
		t.Fatalf("unexpected errors %v", errs)
	}
	if !q.Timestamp.Equal(now) || q.Service != "app" || q.Method != "" || q.UserID != uuid.Nil {
		t.Fatalf("defaults wrong: %+v", q)
	}
	if _, err := uuid.Parse(q.RequestID); err != nil {
		t.Fatalf("generated request_id %q is not a UUID", q.RequestID)
	}
}

func TestValidateRejects(t *testing.T) {
	f := func(field string, mutate func(w *Wire)) {
		t.Helper()
		rt, code := 10.0, 200
		w := Wire{Endpoint: "/x", ResponseTimeMS: &rt, StatusCode: &code}
		mutate(&w)
		_, errs := w.Validate(7, Rules{Now: now, Retention: 24 * time.Hour}, "app")
		if len(errs) != 1 || errs[0].Field != field || errs[0].Index != 7 {
			t.Errorf("field %s: got errors %v; want exactly one for %s at index 7", field, errs, field)
		}
	}
	num := func(v float64) *float64 { return &v }
	integer := func(v int) *int { return &v }
	f("endpoint", func(w *Wire) { w.Endpoint = "" })
	f("endpoint", func(w *Wire) { w.Endpoint = "/" + strings.Repeat("a", MaxEndpointLen) })
	f("endpoint", func(w *Wire) { w.Endpoint = "/a\nb" })
	f("response_time_ms", func(w *Wire) { w.ResponseTimeMS = nil })
	f("response_time_ms", func(w *Wire) { w.ResponseTimeMS = num(-1) })
	f("response_time_ms", func(w *Wire) { w.ResponseTimeMS = num(math.Inf(1)) })
	f("response_time_ms", func(w *Wire) { w.ResponseTimeMS = num(MaxResponseTimeMS + 1) })
	f("status_code", func(w *Wire) { w.StatusCode = nil })
	f("status_code", func(w *Wire) { w.StatusCode = integer(99) })
	f("status_code", func(w *Wire) { w.StatusCode = integer(600) })
	f("user_id", func(w *Wire) { w.UserID = "not-a-uuid" })
	f("user_id", func(w *Wire) { w.UserID = "9b2f1c3e12344abc8def0123456789ab" })
	f("error_message", func(w *Wire) { w.ErrorMessage = strings.Repeat("e", MaxErrorMessageLen+1) })
	f("error_message", func(w *Wire) { w.ErrorMessage = "\xff" })
	f("timestamp", func(w *Wire) { w.Timestamp = "2026-06-20 14:00:00" })
	f("timestamp", func(w *Wire) { w.Timestamp = now.Add(6 * time.Minute).Format(time.RFC3339) })
	f("timestamp", func(w *Wire) { w.Timestamp = now.Add(-25 * time.Hour).Format(time.RFC3339) })
	f("service", func(w *Wire) { w.Service = "a.b" })
	f("service", func(w *Wire) { w.Service = "-x" })
	f("method", func(w *Wire) { w.Method = "FETCH" })
	f("request_id", func(w *Wire) { w.RequestID = "has space" })
	f("request_id", func(w *Wire) { w.RequestID = strings.Repeat("r", MaxRequestIDLen+1) })
}

func TestDecodeJSON(t *testing.T) {
	ok := func(body string, want int) {
		t.Helper()
		got, err := decoder().JSON([]byte(body))
		if err != nil || len(got) != want {
			t.Errorf("JSON(%s): got %d events, err %v; want %d events", body, len(got), err, want)
		}
	}
	ok(`{"endpoint":"/a","response_time_ms":1,"status_code":200}`, 1)
	ok(` [{"endpoint":"/a","response_time_ms":1,"status_code":200},{"endpoint":"/b","response_time_ms":2.5,"status_code":503}] `, 2)

	bad := func(body string, want ...FieldError) {
		t.Helper()
		_, err := decoder().JSON([]byte(body))
		var be *BatchError
		if !errors.As(err, &be) {
			t.Errorf("JSON(%s): err %v; want *BatchError", body, err)
			return
		}
		if len(be.Errors) != len(want) {
			t.Errorf("JSON(%s): got %v; want %v", body, be.Errors, want)
			return
		}
		for i := range want {
			if be.Errors[i].Index != want[i].Index || be.Errors[i].Field != want[i].Field {
				t.Errorf("JSON(%s): error %d is %v; want index %d field %s", body, i, be.Errors[i], want[i].Index, want[i].Field)
			}
		}
	}
	bad(``, FieldError{Field: "body"})
	bad(`[]`, FieldError{Field: "body"})
	bad(`{"endpoint":`, FieldError{Field: "body"})
	bad(`{"endpoint":"/a\ud800","response_time_ms":1,"status_code":200,"colour":"red"}`, FieldError{Field: "endpoint"})
	bad(`{"endpoint":"/a","response_time_ms":"1","status_code":200}`, FieldError{Field: "response_time_ms"})
	bad(`{"endpoint":"/a","response_time_ms":1,"status_code":200.5}`, FieldError{Field: "status_code"})
	bad(`[{"endpoint":"/a","response_time_ms":1,"status_code":200},{"endpoint":"","response_time_ms":1,"status_code":700}]`,
		FieldError{Index: 1, Field: "endpoint"}, FieldError{Index: 1, Field: "status_code"})
	bad(`[1]`, FieldError{Index: 0, Field: "event"})
	bad(`[{"endpoint":"/a","response_time_ms":1,"status_code":200},{"endpoint":"","response_time_ms":"x","status_code":700}]`,
		FieldError{Index: 1, Field: "response_time_ms"}, FieldError{Index: 1, Field: "endpoint"}, FieldError{Index: 1, Field: "status_code"})
	bad(`[{"endpoint":"/a","response_time_ms":1,"status_code":200}`, FieldError{Index: 1, Field: "body"})
	bad(`{"endpoint":"/a","response_time_ms":1,"status_code":200} {}`, FieldError{Field: "body"})

	_, err := decoder().JSON([]byte(`[{},{},{},{}]`))
	if !errors.Is(err, ErrTooManyEvents) {
		t.Errorf("4 events with MaxEvents 3: err %v; want ErrTooManyEvents", err)
	}
}

func TestDecodeNDJSON(t *testing.T) {
	body := "{\"endpoint\":\"/a\",\"response_time_ms\":1,\"status_code\":200}\n\n{\"endpoint\":\"/b\",\"response_time_ms\":1,\"status_code\":201}\n"
	got, err := decoder().NDJSON([]byte(body))
	if err != nil || len(got) != 2 || got[1].Endpoint != "/b" {
		t.Fatalf("NDJSON: got %+v, %v; want 2 events", got, err)
	}
	_, err = decoder().NDJSON([]byte("{\"endpoint\":\"/a\",\"response_time_ms\":-1,\"status_code\":200}\n{\"endpoint\":\"/a\",\"response_time_ms\":1,\"status_code\":200}\nnot json\n"))
	var be *BatchError
	if !errors.As(err, &be) || len(be.Errors) != 2 || be.Errors[0].Index != 0 || be.Errors[0].Field != "response_time_ms" || be.Errors[1].Index != 2 || be.Errors[1].Field != "body" {
		t.Fatalf("NDJSON with bad lines 0 and 2: got %v", err)
	}
	_, err = decoder().NDJSON([]byte(strings.Repeat("{}\n", 4)))
	if !errors.Is(err, ErrTooManyEvents) {
		t.Fatalf("4 lines with MaxEvents 3: err %v; want ErrTooManyEvents", err)
	}
}

func TestBatchRoundTrip(t *testing.T) {
	reqs := []Request{
		{Timestamp: now.Add(123456 * time.Microsecond), Service: "web", Endpoint: "/api/:id", Method: "GET", StatusCode: 200,
			ResponseTimeMS: 12.25, UserID: uuid.New(), ErrorMessage: "", RequestID: "a"},
		{Timestamp: now, Service: "api", Endpoint: "/x", StatusCode: 503, ResponseTimeMS: 5001, ErrorMessage: "upstream timeout", RequestID: uuid.NewString()},
	}
	b := AppendBatch(nil, reqs)
	got, err := DecodeBatch(nil, b)
	if err != nil || len(got) != len(reqs) {
		t.Fatalf("DecodeBatch: %v, %d events", err, len(got))
	}
	for i := range reqs {
		if got[i] != reqs[i] {
			t.Errorf("event %d: got %+v; want %+v", i, got[i], reqs[i])
		}
	}
	for n := 0; n < len(b); n++ {
		if _, err := DecodeBatch(nil, b[:n]); err == nil {
			t.Fatalf("DecodeBatch of %d of %d bytes: no error", n, len(b))
		}
	}
}

func FuzzDecodeBatch(f *testing.F) {
	f.Add(AppendBatch(nil, []Request{{Service: "s", Endpoint: "/", StatusCode: 200, RequestID: "r"}}))
	f.Add([]byte{1, 200, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		reqs, err := DecodeBatch(nil, b)
		if err == nil {
			if again := AppendBatch(nil, reqs); !bytes.Equal(again, b) && len(reqs) > 0 {
				// Varints have one canonical form only when written by
				// AppendBatch; re-decoding must still give the same events.
				back, err := DecodeBatch(nil, again)
				if err != nil || len(back) != len(reqs) {
					t.Fatalf("re-encoded batch does not decode: %v", err)
				}
			}
		}
	})
}

func BenchmarkDecodeNDJSON(b *testing.B) {
	var buf bytes.Buffer
	for i := 0; i < 1000; i++ {
		buf.WriteString(`{"endpoint":"/api/clients/42","response_time_ms":12.5,"status_code":200,"service":"web","method":"GET","user_id":"9b2f1c3e-1234-4abc-8def-0123456789ab","timestamp":"2026-06-20T13:59:00Z"}` + "\n")
	}
	d := decoder()
	d.MaxEvents = 1000
	b.SetBytes(int64(buf.Len()))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := d.NDJSON(buf.Bytes()); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkBatchCodec(b *testing.B) {
	reqs := make([]Request, 1000)
	for i := range reqs {
		reqs[i] = Request{Timestamp: now, Service: "web", Endpoint: "/api/clients/:id", Method: "GET", StatusCode: 200, ResponseTimeMS: 12.5, RequestID: uuid.NewString()}
	}
	buf := AppendBatch(nil, reqs)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	var dst []Request
	for b.Loop() {
		buf = AppendBatch(buf[:0], reqs)
		var err error
		if dst, err = DecodeBatch(dst[:0], buf); err != nil {
			b.Fatal(err)
		}
	}
}
