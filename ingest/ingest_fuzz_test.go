package ingest

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/wedsync/pulse/internal/event"
	"github.com/wedsync/pulse/internal/httpapi"
	"github.com/wedsync/pulse/internal/stream"
)

// FuzzPostBody posts each input to the edge as JSON or NDJSON, plain and
// gzipped, and as a body claiming to be gzip: the answer is always 202,
// 400 with details or 413, never a 5xx or a panic; gzip changes nothing;
// and the edge accepts exactly what the decoder accepts.
func FuzzPostBody(f *testing.F) {
	for _, s := range []string{
		line("seed", 1),
		"[" + line("seed", 1) + "," + line("seed", 2) + "]",
		line("seed", 1) + "\n" + line("seed", 2) + "\n",
		withFields("seed", 3, `"app_version":"1.2","tags":["a"]`),
		`{"endpoint":"/a\ud800","response_time_ms":1,"status_code":200}`,
		"{\"endpoint\":\"/a\xff\",\"response_time_ms\":1,\"status_code\":200}",
		`[[[[[[[[[[`, `{"endpoint":`, ``, `null`, `[]`,
	} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	v := newEnv(f, nil, Config{}, stream.Config{})
	d := event.Decoder{Rules: event.Rules{Now: now, Retention: 30 * 24 * time.Hour}, DefaultService: event.DefaultService, MaxEvents: 10000}
	f.Fuzz(func(t *testing.T, data []byte, ndjson bool) {
		ct, decode := "application/json", d.JSON
		if ndjson {
			ct, decode = "application/x-ndjson", d.NDJSON
		}
		_, decErr := decode(data)
		wantStatus := http.StatusAccepted
		switch {
		case errors.Is(decErr, event.ErrTooManyEvents):
			wantStatus = http.StatusRequestEntityTooLarge
		case decErr != nil:
			wantStatus = http.StatusBadRequest
		}
		check := func(what string, p post, want int) {
			t.Helper()
			rec := v.do(p)
			if want != 0 && rec.Code != want {
				t.Fatalf("%s of %q: got %d %s; want %d", what, data, rec.Code, rec.Body, want)
			}
			switch rec.Code {
			case http.StatusAccepted, http.StatusRequestEntityTooLarge:
			case http.StatusBadRequest:
				var b httpapi.ErrorBody
				if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil || len(b.Details) == 0 {
					t.Fatalf("%s of %q: a 400 without details: %s", what, data, rec.Body)
				}
			default:
				t.Fatalf("%s of %q: got %d %s; want 202, 400 or 413", what, data, rec.Code, rec.Body)
			}
		}
		check("plain", post{body: bytes.NewReader(data), ct: ct}, wantStatus)
		check("gzipped", post{body: bytes.NewReader(gz(t, data)), ct: ct, encoding: "gzip"}, wantStatus)
		check("as gzip", post{body: bytes.NewReader(data), ct: ct, encoding: "gzip"}, 0)
	})
}
