package ingest

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/wedsync/pulse/internal/event"
	"github.com/wedsync/pulse/internal/stream"
)

// withFields is line(prefix, i) with the JSON members extra added.
func withFields(prefix string, i int, extra string) string {
	l := line(prefix, i)
	return l[:len(l)-1] + "," + extra + "}"
}

// rawStream returns the data of every message of the stream name.
func (v *env) rawStream(t *testing.T, name string) [][]byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := v.js.Stream(ctx, name)
	if err != nil {
		t.Fatalf("stream %s: %v", name, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatalf("stream %s info: %v", name, err)
	}
	var out [][]byte
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("stream %s: get message %d: %v", name, seq, err)
		}
		out = append(out, m.Data)
	}
	return out
}

// TestPostUnknownFields checks that fields with unknown keys are ignored:
// the events are accepted, the 202 answer names the keys, the counter
// counts them, and nothing of them reaches the streams, coalesced or not.
// With StrictFields they are rejected.
func TestPostUnknownFields(t *testing.T) {
	v := newEnv(t, nil, Config{CoalesceDelay: time.Millisecond}, stream.Config{})
	nd := "application/x-ndjson"
	f := func(name string, p post, wantBody string) {
		t.Helper()
		rec := v.do(p)
		if rec.Code != http.StatusAccepted || rec.Body.String() != wantBody+"\n" {
			t.Errorf("%s: got %d %s; want 202 %s", name, rec.Code, rec.Body, wantBody)
		}
	}
	f("array", post{body: strings.NewReader("[" +
		withFields("arr", 0, `"app_version":"1.2.3-marker","tags":{"a":["marker"]}`) + "," +
		withFields("arr", 1, `"App_Version":2`) + "]")},
		`{"accepted":2,"ignored_fields":["app_version","tags","App_Version"]}`)
	var nl bytes.Buffer
	for i := range 3 {
		nl.WriteString(withFields("nd", i, `"build":"marker"`) + "\n")
	}
	f("gzip NDJSON", post{body: bytes.NewReader(gz(t, nl.Bytes())), ct: nd, encoding: "gzip"}, `{"accepted":3,"ignored_fields":["build"]}`)
	f("single event, coalesced", post{body: strings.NewReader(withFields("one", 0, `"build":"x-marker","\u00e9t\u00e9":null`))},
		`{"accepted":1,"ignored_fields":["build","été"]}`)
	f("no unknown field", post{body: strings.NewReader(line("plain", 0))}, `{"accepted":1}`)

	var m dto.Metric
	if err := v.edge.metrics.unknown.Write(&m); err != nil {
		t.Fatal(err)
	}
	if got := m.GetCounter().GetValue(); got != 8 {
		t.Errorf("pulse_ingest_unknown_fields_total = %v; want 8", got)
	}
	// The events are stored as they would be without the unknown fields,
	// and no byte of those reaches a stream.
	wantStored := []event.Request{want("arr", 0), want("arr", 1), want("nd", 0), want("nd", 1), want("nd", 2), want("one", 0), want("plain", 0)}
	got := v.stored(t)
	if len(got) != len(wantStored) {
		t.Fatalf("stored %d events; want %d", len(got), len(wantStored))
	}
	for i := range got {
		if !same(got[i], wantStored[i]) {
			t.Errorf("stored event %d is %+v; want %+v", i, got[i], wantStored[i])
		}
	}
	for _, name := range []string{v.sc.IngestStream, v.sc.EdgeLogStream} {
		for i, data := range v.rawStream(t, name) {
			for _, s := range []string{"marker", "app_version", "App_Version", "tags", "build", "été"} {
				if bytes.Contains(data, []byte(s)) {
					t.Errorf("stream %s, message %d holds %q", name, i, s)
				}
			}
		}
	}

	strict := newEnv(t, v.ns, Config{StrictFields: true}, stream.Config{IngestStream: "-"})
	rec := strict.do(post{body: strings.NewReader(`[` + line("s", 0) + `,` + withFields("s", 1, `"build":1`) + `]`)})
	if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), `{"index":1,"field":"build","message":"is not a known field"}`) {
		t.Errorf("strict: got %d %s; want 400 naming build of event 1", rec.Code, rec.Body)
	}
}

// generated is an endless body of valid events, made as it is read: a
// body of any size without the memory.
type generated struct {
	off int
}

var generatedUnit = []byte(`{"endpoint":"/api/x","response_time_ms":1,"status_code":200},`)

func (g *generated) Read(p []byte) (int, error) {
	n := 0
	if g.off == 0 && len(p) > 0 {
		p[0] = '['
		n, g.off = 1, 1
	}
	for n < len(p) {
		k := copy(p[n:], generatedUnit[(g.off-1)%len(generatedUnit):])
		n += k
		g.off += k
	}
	return n, nil
}

// heapPeak samples the bytes of heap objects (live or not yet swept)
// until stop is called, which returns the highest value seen. It reads
// runtime/metrics, which does not stop the world as ReadMemStats does.
func heapPeak() (stop func() uint64) {
	var peak atomic.Uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			if h := heapBytes(); h > peak.Load() {
				peak.Store(h)
			}
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	return func() uint64 {
		close(done)
		wg.Wait()
		return peak.Load()
	}
}

func heapBytes() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// rawPost sends req over a connection of its own to addr and returns the
// answer's status and body. The body is written while the answer is read,
// so that an answer given before the whole body is sent (a 413 to a 1 GB
// body) is read, not lost to a write error.
func rawPost(t *testing.T, addr string, req *http.Request) (int, string) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	written := make(chan error, 1)
	go func() { written <- req.Write(conn) }()
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		t.Fatalf("read the answer: %v", err)
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	conn.Close() // stops a body still being written
	<-written
	return resp.StatusCode, string(body)
}

// TestPostBadInput sends the edge, over real HTTP and with the default
// limits but those of size (smaller, to keep the test quick: 1 MiB on the
// wire, 2 MiB inflated), what a broken or hostile client could: every case is answered
// 4xx (400 naming the field where there is one), the heap stays bounded
// while a 1 GB body streams in, nothing reaches the stream, and the
// refusals are logged once per status.
func TestPostBadInput(t *testing.T) {
	v := newEnv(t, nil, Config{MaxBodyBytes: 1 << 20, MaxDecompressedBytes: 2 << 20}, stream.Config{})
	srv := httptest.NewServer(v.e)
	defer srv.Close()
	addr := srv.Listener.Addr().String()

	const ok = `"endpoint":"/a","response_time_ms":1,"status_code":200`
	zipped := gz(t, []byte(`{`+ok+`}`))
	var bomb bytes.Buffer // 3 MiB of spaces, over the 2 MiB limit
	zw, _ := gzip.NewWriterLevel(&bomb, gzip.BestSpeed)
	spaces := bytes.Repeat([]byte(" "), 1<<20)
	for range 3 {
		_, _ = zw.Write(spaces)
	}
	_ = zw.Close()
	var tenK strings.Builder
	tenK.WriteString(`{` + ok)
	for i := range 10000 {
		fmt.Fprintf(&tenK, `,"f%d":%d`, i, i)
	}
	tenK.WriteString(`}`)

	type bad struct {
		name     string
		body     func() io.Reader
		length   int64 // Content-Length when not the body's; -1: chunked
		ct, enc  string
		status   int
		field    string // the field of the first detail, if any
		heapOnly bool   // measure the heap while it is sent
	}
	str := func(s string) func() io.Reader { return func() io.Reader { return strings.NewReader(s) } }
	byt := func(b []byte) func() io.Reader { return func() io.Reader { return bytes.NewReader(b) } }
	event := func(members string) func() io.Reader { return str(`{` + members + `}`) }
	oneGB := func() io.Reader { return io.LimitReader(&generated{}, 1<<30) }
	cases := []bad{
		// Bodies too big, on the wire or inflated.
		{name: "1 GB streamed, chunked", body: oneGB, length: -1, status: 413, heapOnly: true},
		{name: "1 GB streamed, Content-Length", body: oneGB, length: 1 << 30, status: 413, heapOnly: true},
		{name: "gzip bomb, 3 MiB inflated", body: byt(bomb.Bytes()), enc: "gzip", status: 413, heapOnly: true},
		{name: "too many events", body: func() io.Reader {
			return io.MultiReader(io.LimitReader(&generated{}, int64(1+10001*len(generatedUnit))), strings.NewReader(`{}]`))
		}, length: -1, status: 413},
		// Broken gzip and media types.
		{name: "truncated gzip", body: byt(zipped[:len(zipped)-6]), enc: "gzip", status: 400, field: "body"},
		{name: "gzip header only", body: byt(zipped[:10]), enc: "gzip", status: 400, field: "body"},
		{name: "not gzip", body: str(`{` + ok + `}`), enc: "gzip", status: 400, field: "body"},
		{name: "unknown encoding", body: str(`{` + ok + `}`), enc: "compress", status: 415},
		{name: "form body", body: str("endpoint=/a"), ct: "application/x-www-form-urlencoded", status: 415},
		// Broken and hostile JSON.
		{name: "empty", body: str(""), status: 400, field: "body"},
		{name: "truncated", body: str(`{"endpoint":"/a","response_ti`), status: 400, field: "body"},
		{name: "deeply nested arrays", body: str(strings.Repeat("[", 1<<19)), status: 400, field: "body"},
		{name: "deeply nested ignored field", body: str(`{` + ok + `,"x":` + strings.Repeat(`{"a":`, 100000)), status: 400, field: "body"},
		{name: "deeply nested, closed", body: str(`{` + ok + `,"x":` + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + `}`), status: 400, field: "body"},
		{name: "NUL byte between values", body: str("{" + ok + "}\x00"), status: 400, field: "body"},
		{name: "NUL byte in a string", body: str(`{"endpoint":"/a` + "\x00" + `","response_time_ms":1,"status_code":200}`), status: 400, field: "body"},
		{name: "escaped NUL in endpoint", body: event(`"endpoint":"/a\u0000","response_time_ms":1,"status_code":200`), status: 400, field: "endpoint"},
		{name: "escaped NUL in service", body: event(ok + `,"service":"web\u0000"`), status: 400, field: "service"},
		{name: "escaped NUL in request_id", body: event(ok + `,"request_id":"r\u0000"`), status: 400, field: "request_id"},
		{name: "huge response time", body: event(`"endpoint":"/a","response_time_ms":1e400,"status_code":200`), status: 400, field: "response_time_ms"},
		{name: "negative huge response time", body: event(`"endpoint":"/a","response_time_ms":-1e400,"status_code":200`), status: 400, field: "response_time_ms"},
		{name: "half a million digits", body: event(`"endpoint":"/a","response_time_ms":1` + strings.Repeat("0", 500000) + `,"status_code":200`), status: 400, field: "response_time_ms"},
		{name: "huge status code", body: event(`"endpoint":"/a","response_time_ms":1,"status_code":100000000000000000000`), status: 400, field: "status_code"},
		{name: "10,000 fields", body: str(tenK.String()), status: 400, field: "event"},
		{name: "10,000 known fields", body: event(strings.Repeat(`"endpoint":"/a",`, 10000) + ok), status: 400, field: "event"},
		// Invalid UTF-8 in every string field, known or not, and unpaired
		// surrogates.
		{name: "invalid UTF-8 in endpoint", body: event(`"endpoint":"/a` + "\xff" + `","response_time_ms":1,"status_code":200`), status: 400, field: "endpoint"},
		{name: "invalid UTF-8 in user_id", body: event(ok + `,"user_id":"` + "\xc3" + `"`), status: 400, field: "user_id"},
		{name: "invalid UTF-8 in error_message", body: event(ok + `,"error_message":"boom ` + "\xe2\x82" + `"`), status: 400, field: "error_message"},
		{name: "invalid UTF-8 in timestamp", body: event(ok + `,"timestamp":"2026` + "\x80" + `"`), status: 400, field: "timestamp"},
		{name: "invalid UTF-8 in service", body: event(ok + `,"service":"` + "\xfe" + `"`), status: 400, field: "service"},
		{name: "invalid UTF-8 in method", body: event(ok + `,"method":"GET` + "\xc0\xaf" + `"`), status: 400, field: "method"},
		{name: "invalid UTF-8 in request_id", body: event(ok + `,"request_id":"` + "\xed\xa0\x80" + `"`), status: 400, field: "request_id"},
		{name: "invalid UTF-8 in an ignored field", body: event(ok + `,"note":["` + "\xff" + `"]`), status: 400, field: "note"},
		{name: "invalid UTF-8 in an unknown key", body: event(ok + `,"no` + "\xff" + `te":1`), status: 400, field: "no\ufffdte"},
		{name: "unpaired high surrogate", body: event(ok + `,"error_message":"\ud83d"`), status: 400, field: "error_message"},
		{name: "unpaired low surrogate", body: event(`"endpoint":"/\ude00",` + `"response_time_ms":1,"status_code":200`), status: 400, field: "endpoint"},
		{name: "invalid UTF-8 in NDJSON", body: str(`{` + ok + "}\n{" + ok + `,"method":"` + "\xff" + `"}`), ct: "application/x-ndjson", status: 400, field: "method"},
		{name: "invalid UTF-8, gzipped", body: byt(gz(t, []byte(`[{`+ok+`,"service":"`+"\xff"+`"}]`))), enc: "gzip", status: 400, field: "service"},
	}
	var maxGrowth uint64
	for _, c := range cases {
		req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/api/admin/system/metrics", c.body())
		if err != nil {
			t.Fatal(err)
		}
		// NewRequest knows the length of a bytes or strings reader; other
		// bodies, and those of length -1, are sent chunked.
		switch {
		case c.length > 0:
			req.ContentLength = c.length
		case c.length < 0:
			req.ContentLength = 0
		}
		req.Header.Set("Content-Type", "application/json")
		if c.ct != "" {
			req.Header.Set("Content-Type", c.ct)
		}
		if c.enc != "" {
			req.Header.Set("Content-Encoding", c.enc)
		}
		req.Header.Set("Authorization", "Bearer "+ingestToken)

		runtime.GC()
		before := heapBytes()
		stop := heapPeak()
		start := time.Now()
		status, body := rawPost(t, addr, req)
		peak := stop()
		if c.heapOnly {
			t.Logf("%s: answered in %v", c.name, time.Since(start))
		}
		if peak > before {
			growth := peak - before
			if c.heapOnly && growth > maxGrowth {
				maxGrowth = growth
			}
			// The limits are 1 MiB on the wire and 2 MiB inflated; the
			// buffers grow by doubling and garbage waits for the GC.
			if growth > 64<<20 {
				t.Errorf("%s: the heap grew by %d MiB while it was sent", c.name, growth>>20)
			}
		}
		if status != c.status {
			t.Errorf("%s: got %d %.300s; want %d", c.name, status, body, c.status)
			continue
		}
		if c.field != "" && !strings.Contains(body, fmt.Sprintf(`"details":[{"index":%d,"field":%q`, 0, c.field)) &&
			!strings.Contains(body, fmt.Sprintf(`"field":%q`, c.field)) {
			t.Errorf("%s: got %.300s; want a detail naming %q", c.name, body, c.field)
		}
	}
	t.Logf("largest heap growth while a big body was refused: %d MiB", maxGrowth>>20)

	if got := v.streamInfo(t).Msgs; got != 0 {
		t.Errorf("the stream holds %d messages after bad input; want 0", got)
	}
	if got := v.edge.Stats().Rejected.Load(); got != uint64(len(cases)) {
		t.Errorf("Stats().Rejected = %d; want %d", got, len(cases))
	}
	// One log line per status (the edge's clock stands still in these
	// tests, within the 10 s of the limiter), never the body.
	lines := map[string]int{}
	for _, l := range strings.Split(v.log.String(), "\n") {
		if strings.Contains(l, "request refused") {
			for _, st := range []string{"400", "413", "415"} {
				if strings.Contains(l, `"status":`+st+`,`) {
					lines[st]++
				}
			}
			if strings.Contains(l, "/api/x") || strings.Contains(l, `"endpoint":"/a"`) {
				t.Errorf("a log line holds the body: %.300s", l)
			}
		}
	}
	if lines["400"] != 1 || lines["413"] != 1 || lines["415"] != 1 {
		t.Errorf("got refusal log lines by status %v; want one each of 400, 413, 415 (log %.2000s)", lines, v.log.String())
	}
}
