package ingest

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/wedsync/pulse/internal/auth"
	"github.com/wedsync/pulse/internal/event"
	"github.com/wedsync/pulse/internal/httpapi"
	"github.com/wedsync/pulse/internal/stream"
	"github.com/wedsync/pulse/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

const (
	ingestToken = "ingest-token-0123456789" // principal "web"
	otherToken  = "other-token-0123456789"  // principal "mobile", ingest scope
	adminToken  = "admin-token-0123456789"  // principal "ops"
)

// now is the edge's clock in these tests: the default timestamp and the
// reference of the retention and future-skew rules.
var now = time.Now().UTC().Truncate(time.Second)

// env is an ingest edge on a real, in-process JetStream.
type env struct {
	ns   *server.Server
	nc   *nats.Conn
	js   jetstream.JetStream
	sc   stream.Config
	edge *Edge
	e    *echo.Echo
	log  *bytes.Buffer
}

// newEnv starts NATS (or uses ns), creates the streams with sc (skipped
// when sc.IngestStream is "-") and serves an edge configured with cfg.
func newEnv(t testing.TB, ns *server.Server, cfg Config, sc stream.Config) *env {
	t.Helper()
	if ns == nil {
		ns = testenv.NATS(t)
	}
	nc, js := testenv.Connect(t, ns.ClientURL())
	if sc.IngestStream != "-" {
		sc = testenv.Streams(t, js, sc)
	}
	if cfg.PublishTimeout == 0 {
		cfg.PublishTimeout = 5 * time.Second
	}
	var buf bytes.Buffer
	log := zerolog.New(&buf)
	var tokens auth.StaticTokens
	tokens.Add(ingestToken, auth.Principal{Name: "web", Scopes: []auth.Scope{auth.ScopeIngest}})
	tokens.Add(otherToken, auth.Principal{Name: "mobile", Scopes: []auth.Scope{auth.ScopeIngest}})
	tokens.Add(adminToken, auth.Principal{Name: "ops", Scopes: []auth.Scope{auth.ScopeAdmin}})
	e := httpapi.New(log)
	if cfg.Stream.IngestStream == "" {
		cfg.Stream = sc
	}
	edge, err := New(cfg, nc, nil, log)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	edge.now = func() time.Time { return now }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- edge.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Edge.Run: %v", err)
		}
	})
	edge.Register(httpapi.NewRouter(e, &tokens))
	return &env{ns: ns, nc: nc, js: js, sc: sc, edge: edge, e: e, log: &buf}
}

// post is a request to the edge; zero fields get the defaults of post.
type post struct {
	body     io.Reader // a *bytes.Reader has a Content-Length; other readers do not
	ct       string    // default application/json; "-" for none
	encoding string    // Content-Encoding
	key      string    // Idempotency-Key
	token    string    // default ingestToken; "-" for none
	path     string    // default /api/admin/system/metrics
}

func (v *env) do(p post) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	v.e.ServeHTTP(rec, newPost(p))
	return rec
}

// newPost builds the request p describes.
func newPost(p post) *http.Request {
	if p.body == nil {
		p.body = bytes.NewReader(nil)
	}
	if p.path == "" {
		p.path = "/api/admin/system/metrics"
	}
	req := httptest.NewRequest(http.MethodPost, p.path, p.body)
	switch p.ct {
	case "":
		req.Header.Set(echo.HeaderContentType, "application/json")
	case "-":
	default:
		req.Header.Set(echo.HeaderContentType, p.ct)
	}
	if p.encoding != "" {
		req.Header.Set(echo.HeaderContentEncoding, p.encoding)
	}
	if p.key != "" {
		req.Header.Set("Idempotency-Key", p.key)
	}
	switch p.token {
	case "":
		req.Header.Set(echo.HeaderAuthorization, "Bearer "+ingestToken)
	case "-":
	default:
		req.Header.Set(echo.HeaderAuthorization, "Bearer "+p.token)
	}
	return req
}

// accept posts p and fails the test unless the edge answers 202 with
// accepted = n.
func (v *env) accept(t testing.TB, p post, n int) {
	t.Helper()
	rec := v.do(p)
	if rec.Code != http.StatusAccepted {
		t.Fatalf("got status %d; want 202 (body %s)", rec.Code, rec.Body)
	}
	var got map[string]int
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatalf("body %q: %v", rec.Body, err)
	}
	if len(got) != 1 || got["accepted"] != n {
		t.Fatalf("got body %s; want {\"accepted\":%d}", rec.Body, n)
	}
}

// streamInfo returns the ingest stream's state.
func (v *env) streamInfo(t testing.TB) jetstream.StreamState {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := v.js.Stream(ctx, v.sc.IngestStream)
	if err != nil {
		t.Fatalf("stream %s: %v", v.sc.IngestStream, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatalf("stream info: %v", err)
	}
	return info.State
}

// messages returns the ingest stream's messages in order. The stream is a
// work queue, which refuses the ordered (ack-less) consumer, so they are
// read with direct gets and stay in place.
func (v *env) messages(t testing.TB) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := v.js.Stream(ctx, v.sc.IngestStream)
	if err != nil {
		t.Fatalf("stream %s: %v", v.sc.IngestStream, err)
	}
	state := v.streamInfo(t)
	var out []*jetstream.RawStreamMsg
	for seq := state.FirstSeq; state.Msgs > 0 && seq <= state.LastSeq; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("get message %d: %v", seq, err)
		}
		out = append(out, m)
	}
	if uint64(len(out)) != state.Msgs {
		t.Fatalf("read %d messages; the stream holds %d", len(out), state.Msgs)
	}
	return out
}

// stored decodes every edge batch on the stream, checking subject and
// encoding header.
func (v *env) stored(t testing.TB) []event.Request {
	t.Helper()
	var out []event.Request
	for _, m := range v.messages(t) {
		if m.Subject != stream.SubjectEdgeRequests {
			t.Fatalf("message %d on subject %q; want %q", m.Sequence, m.Subject, stream.SubjectEdgeRequests)
		}
		if got := m.Header.Get(stream.HeaderEncoding); got != stream.EncodingBatchV1 {
			t.Fatalf("message %d: %s header %q; want %q", m.Sequence, stream.HeaderEncoding, got, stream.EncodingBatchV1)
		}
		var err error
		if out, err = event.DecodeBatch(out, m.Data); err != nil {
			t.Fatalf("message %d: DecodeBatch: %v", m.Sequence, err)
		}
	}
	return out
}

func (v *env) purge(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := v.js.Stream(ctx, v.sc.IngestStream)
	if err != nil {
		t.Fatalf("stream: %v", err)
	}
	if err := st.Purge(ctx); err != nil {
		t.Fatalf("purge: %v", err)
	}
}

func gz(t testing.TB, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// line is one valid event as JSON, with request ID prefix-i.
func line(prefix string, i int) string {
	return fmt.Sprintf(`{"endpoint":"/api/clients/%d/forms","response_time_ms":%d.5,"status_code":%d,"service":"web","method":"get","request_id":"%s-%d"}`,
		i, i%900, 200+i%4*100, prefix, i)
}

func ndjson(prefix string, n int) []byte {
	var b bytes.Buffer
	for i := range n {
		b.WriteString(line(prefix, i))
		b.WriteByte('\n')
	}
	return b.Bytes()
}

func array(prefix string, n int) []byte {
	lines := make([]string, n)
	for i := range lines {
		lines[i] = line(prefix, i)
	}
	return []byte("[" + strings.Join(lines, ",") + "]")
}

// want is the request line(prefix, i) becomes.
func want(prefix string, i int) event.Request {
	return event.Request{Timestamp: now, Service: "web", Endpoint: "/api/clients/:id/forms", Method: "GET",
		StatusCode: uint16(200 + i%4*100), ResponseTimeMS: float64(i%900) + 0.5, RequestID: fmt.Sprintf("%s-%d", prefix, i)}
}

// same reports whether a and b are the same request.
func same(a, b event.Request) bool {
	if !a.Timestamp.Equal(b.Timestamp) {
		return false
	}
	a.Timestamp, b.Timestamp = time.Time{}, time.Time{}
	return a == b
}

func TestPostAccepted(t *testing.T) {
	v := newEnv(t, nil, Config{}, stream.Config{})
	user := uuid.MustParse("9b2f1c3e-1234-4abc-8def-0123456789ab")
	full := `{"endpoint":"/api/clients/42?page=2","response_time_ms":12.5,"status_code":201,"service":"Web","method":"post",` +
		`"user_id":"9b2f1c3e-1234-4abc-8def-0123456789ab","error_message":"boom","timestamp":"` +
		now.Add(-time.Hour).In(time.FixedZone("CEST", 2*3600)).Format(time.RFC3339Nano) + `","request_id":"req-1"}`
	fullWant := event.Request{Timestamp: now.Add(-time.Hour), Service: "web", Endpoint: "/api/clients/:id", Method: "POST",
		StatusCode: 201, ResponseTimeMS: 12.5, UserID: user, ErrorMessage: "boom", RequestID: "req-1"}
	minimal := `{"endpoint":"/api/clients/42","response_time_ms":0,"status_code":200}`
	minimalWant := event.Request{Timestamp: now, Service: event.DefaultService, Endpoint: "/api/clients/:id", StatusCode: 200}

	var accepted uint64
	f := func(name string, p post, wantReqs []event.Request, wantMsgID func(reqs []event.Request) string) {
		t.Helper()
		v.purge(t)
		v.accept(t, p, len(wantReqs))
		accepted += uint64(len(wantReqs))
		got := v.stored(t)
		if len(got) != len(wantReqs) {
			t.Fatalf("%s: stored %d requests; want %d", name, len(got), len(wantReqs))
		}
		for i := range got {
			w := wantReqs[i]
			if w.RequestID == "" { // generated
				if _, err := uuid.Parse(got[i].RequestID); err != nil {
					t.Errorf("%s: request %d: generated request_id %q is not a UUID", name, i, got[i].RequestID)
				}
				w.RequestID = got[i].RequestID
			}
			if !got[i].Timestamp.Equal(w.Timestamp) {
				t.Errorf("%s: request %d: got timestamp %s; want %s", name, i, got[i].Timestamp, w.Timestamp)
			}
			got[i].Timestamp, w.Timestamp = time.Time{}, time.Time{}
			if got[i] != w {
				t.Errorf("%s: request %d:\ngot  %+v\nwant %+v", name, i, got[i], w)
			}
		}
		msgs := v.messages(t)
		if len(msgs) != 1 {
			t.Fatalf("%s: %d messages on the stream; want 1", name, len(msgs))
		}
		if got, want := msgs[0].Header.Get(jetstream.MsgIDHeader), wantMsgID(got); got != want {
			t.Errorf("%s: got Nats-Msg-Id %q; want %q", name, got, want)
		}
		if got := v.edge.Stats().Accepted.Load(); got != accepted {
			t.Errorf("%s: Stats().Accepted = %d; want %d", name, got, accepted)
		}
	}
	singleID := func(reqs []event.Request) string { return "r/3:web/" + reqs[0].RequestID }
	keyID := func(key string) func([]event.Request) string {
		return func([]event.Request) string { return "k/3:web/" + key + "/0" }
	}

	f("single object", post{body: strings.NewReader(full)}, []event.Request{fullWant}, singleID)
	f("single object, defaults", post{body: strings.NewReader(minimal)}, []event.Request{minimalWant}, singleID)
	f("single object, charset", post{body: strings.NewReader(minimal), ct: "application/json; charset=utf-8"},
		[]event.Request{minimalWant}, singleID)
	// (Request IDs differ from case to case: a purge does not reset the
	// stream's duplicate window.)
	full2, full2Want := strings.Replace(full, "req-1", "req-2", 1), fullWant
	full2Want.RequestID = "req-2"
	f("array of one", post{body: strings.NewReader("[" + full2 + "]")}, []event.Request{full2Want}, singleID)
	f("array", post{body: bytes.NewReader(array("a", 3)), key: "batch-1"},
		[]event.Request{want("a", 0), want("a", 1), want("a", 2)}, keyID("batch-1"))
	f("NDJSON", post{body: strings.NewReader(full + "\r\n\n" + minimal + "\n" + line("n", 7)), ct: "application/x-ndjson", key: "nd"},
		[]event.Request{fullWant, minimalWant, want("n", 7)}, keyID("nd"))
	f("gzip NDJSON", post{body: bytes.NewReader(gz(t, ndjson("g", 4))), ct: "application/x-ndjson", encoding: "gzip", key: "gz"},
		[]event.Request{want("g", 0), want("g", 1), want("g", 2), want("g", 3)}, keyID("gz"))
	f("gzip array", post{body: bytes.NewReader(gz(t, []byte("["+minimal+","+minimal+"]"))), encoding: "gzip", key: "ga"},
		[]event.Request{minimalWant, minimalWant}, keyID("ga"))
	f("identity encoding", post{body: strings.NewReader(minimal), encoding: "identity"}, []event.Request{minimalWant}, singleID)
	f("GZIP", post{body: bytes.NewReader(gz(t, []byte(line("GZ", 1)))), encoding: "GZIP"}, []event.Request{want("GZ", 1)}, singleID)
	f("x-gzip", post{body: bytes.NewReader(gz(t, []byte(line("xgz", 1)))), encoding: "x-gzip"}, []event.Request{want("xgz", 1)}, singleID)
	f("admin token", post{body: strings.NewReader(minimal), token: adminToken, key: "adm"}, []event.Request{minimalWant},
		func([]event.Request) string { return "k/3:ops/adm/0" })

	// Without a key, a batch gets a random message ID.
	v.purge(t)
	v.accept(t, post{body: bytes.NewReader(array("r", 2))}, 2)
	if id := v.messages(t)[0].Header.Get(jetstream.MsgIDHeader); id == "" || strings.HasPrefix(id, "r/") || strings.HasPrefix(id, "k/") {
		t.Errorf("batch without key: got Nats-Msg-Id %q; want a random ID", id)
	}
	if got := v.edge.Stats().Rejected.Load() + v.edge.Stats().Unavailable.Load(); got != 0 {
		t.Errorf("Rejected + Unavailable = %d; want 0", got)
	}
}

func TestPostIdempotency(t *testing.T) {
	v := newEnv(t, nil, Config{}, stream.Config{})
	f := func(name string, p post, n int, wantMsgs uint64) {
		t.Helper()
		v.accept(t, p, n)
		if got := v.streamInfo(t).Msgs; got != wantMsgs {
			t.Errorf("%s: the stream holds %d messages; want %d", name, got, wantMsgs)
		}
	}
	body := array("idem", 3)
	f("first post with key", post{body: bytes.NewReader(body), key: "k1"}, 3, 1)
	f("same key and body again", post{body: bytes.NewReader(body), key: "k1"}, 3, 1)
	f("same key, NDJSON of the same events", post{body: bytes.NewReader(ndjson("idem", 3)), ct: "application/x-ndjson", key: "k1"}, 3, 1)
	f("another key", post{body: bytes.NewReader(body), key: "k2"}, 3, 2)
	// Keys belong to callers: another caller's identical key is another batch.
	f("another caller, same key", post{body: bytes.NewReader(array("mobile", 3)), key: "k1", token: otherToken}, 3, 3)
	f("that caller's retry", post{body: bytes.NewReader(array("mobile", 3)), key: "k1", token: otherToken}, 3, 3)
	// A key whose text looks like a request-ID message ID collides with nothing.
	f("key r", post{body: strings.NewReader(line("x", 0)), key: "r"}, 1, 4)
	f("request ID 0", post{body: strings.NewReader(`{"endpoint":"/","response_time_ms":1,"status_code":200,"request_id":"0"}`)}, 1, 5)
	// Without a key, a single event is deduplicated by its request ID...
	f("single event with request_id", post{body: strings.NewReader(line("single", 1))}, 1, 6)
	f("its retry", post{body: strings.NewReader(line("single", 1))}, 1, 6)
	f("the same request ID from another caller", post{body: strings.NewReader(line("single", 1)), token: otherToken}, 1, 7)
	// ...unless it has none: each post gets a new one.
	anon := `{"endpoint":"/","response_time_ms":1,"status_code":200}`
	f("single event without request_id", post{body: strings.NewReader(anon)}, 1, 8)
	f("posted again", post{body: strings.NewReader(anon)}, 1, 9)
	// A batch without a key cannot be recognised when retried.
	f("batch without key", post{body: bytes.NewReader(body)}, 3, 10)
	f("posted again", post{body: bytes.NewReader(body)}, 3, 11)

	// Everything accepted is on the stream: 3 distinct batches of the key
	// tests plus the rest, as the message count said.
	if got, want := len(v.stored(t)), 3+3+3+1+1+1+1+1+1+3+3; got != want {
		t.Errorf("stored %d requests; want %d", got, want)
	}
}

// TestPostChunks sends 10,000 events through a server with a 64 KiB
// maximum payload: the edge splits them into several messages, all
// persisted, each within the limit, and a retry with the same key adds none.
func TestPostChunks(t *testing.T) {
	const maxPayload = 64 << 10
	ns, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true, StoreDir: t.TempDir(),
		NoSigs: true, NoLog: true, MaxPayload: maxPayload,
	})
	if err != nil {
		t.Fatalf("NATS: %v", err)
	}
	ns.Start()
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS not ready")
	}
	v := newEnv(t, ns, Config{}, stream.Config{})
	if got := v.nc.MaxPayload(); got != maxPayload {
		t.Fatalf("server max payload %d; want %d", got, maxPayload)
	}

	const n = 10000
	body := gz(t, ndjson("chunk", n))
	v.accept(t, post{body: bytes.NewReader(body), ct: "application/x-ndjson", encoding: "gzip", key: "big"}, n)
	msgs := v.messages(t)
	if len(msgs) < 2 {
		t.Fatalf("%d messages on the stream; want the request split into several", len(msgs))
	}
	for i, m := range msgs {
		size := len(m.Data)
		for k, vals := range m.Header {
			size += len(k) + len(vals[0]) + 4
		}
		if size > maxPayload {
			t.Errorf("message %d: %d bytes with headers; want at most %d", i, size, maxPayload)
		}
		if got, want := m.Header.Get(jetstream.MsgIDHeader), "k/3:web/big/"+strconv.Itoa(i); got != want {
			t.Errorf("message %d: got Nats-Msg-Id %q; want %q", i, got, want)
		}
	}
	got := v.stored(t)
	if len(got) != n {
		t.Fatalf("stored %d requests in %d messages; want %d", len(got), len(msgs), n)
	}
	for i := range got {
		if w := want("chunk", i); !same(got[i], w) {
			t.Fatalf("request %d: got %+v; want %+v", i, got[i], w)
		}
	}
	if got := v.edge.Stats().Accepted.Load(); got != n {
		t.Errorf("Stats().Accepted = %d; want %d", got, n)
	}

	// The retry of a request that was split is recognised chunk by chunk.
	v.accept(t, post{body: bytes.NewReader(body), ct: "application/x-ndjson", encoding: "gzip", key: "big"}, n)
	if got := v.streamInfo(t).Msgs; got != uint64(len(msgs)) {
		t.Errorf("after the retry the stream holds %d messages; want %d", got, len(msgs))
	}
	// Without a key, the chunks are stored again, none of them taken for a
	// retry of another.
	v.accept(t, post{body: bytes.NewReader(body), ct: "application/x-ndjson", encoding: "gzip"}, n)
	if got := len(v.stored(t)); got != 2*n {
		t.Errorf("stored %d requests after a post without key; want %d", got, 2*n)
	}

	// A request split so that its last message holds one event is still a
	// batch: posted again without a key, that message is not dropped as
	// the retry of a single event with the same request ID. Equal-sized
	// events (request IDs of equal length) make every full message hold
	// as many as the first.
	v.purge(t)
	v.accept(t, post{body: bytes.NewReader(ndjsonFrom("eq", 10000, n)), ct: "application/x-ndjson"}, n)
	perMsg, err := event.DecodeBatch(nil, v.messages(t)[0].Data)
	if err != nil {
		t.Fatal(err)
	}
	odd := ndjsonFrom("od", 10000, 2*len(perMsg)+1)
	v.purge(t)
	for range 2 {
		v.accept(t, post{body: bytes.NewReader(odd), ct: "application/x-ndjson"}, 2*len(perMsg)+1)
	}
	if got, want := len(v.messages(t)), 6; got != want {
		t.Errorf("two posts of %d events (%d a message): %d messages on the stream; want %d", 2*len(perMsg)+1, len(perMsg), got, want)
	}
	if got, want := len(v.stored(t)), 2*(2*len(perMsg)+1); got != want {
		t.Errorf("stored %d requests; want %d", got, want)
	}
}

// ndjsonFrom is n events, line(prefix, from) onwards.
func ndjsonFrom(prefix string, from, n int) []byte {
	var b bytes.Buffer
	for i := from; i < from+n; i++ {
		b.WriteString(line(prefix, i))
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// TestPostConcurrent posts from many goroutines at once: every request is
// persisted exactly once.
func TestPostConcurrent(t *testing.T) {
	v := newEnv(t, nil, Config{}, stream.Config{})
	const workers, posts, events = 8, 25, 20
	var wg sync.WaitGroup
	errs := make(chan string, workers*posts)
	for w := range workers {
		wg.Go(func() {
			for i := range posts {
				p := post{body: bytes.NewReader(gz(t, ndjson(fmt.Sprintf("w%d-%d", w, i), events))), ct: "application/x-ndjson",
					encoding: "gzip", key: fmt.Sprintf("w%d/%d", w, i)}
				if i%2 == 1 {
					p = post{body: bytes.NewReader(array(fmt.Sprintf("w%d-%d", w, i), events))}
				}
				if rec := v.do(p); rec.Code != http.StatusAccepted || strings.TrimSpace(rec.Body.String()) != `{"accepted":20}` {
					errs <- fmt.Sprintf("worker %d, post %d: got %d %s", w, i, rec.Code, rec.Body)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	got := v.stored(t)
	if len(got) != workers*posts*events {
		t.Fatalf("stored %d requests; want %d", len(got), workers*posts*events)
	}
	ids := map[string]bool{}
	for _, q := range got {
		ids[q.RequestID] = true
	}
	if len(ids) != len(got) {
		t.Errorf("stored %d distinct request IDs among %d requests; want all distinct", len(ids), len(got))
	}
	if got := v.edge.Stats().Accepted.Load(); got != workers*posts*events {
		t.Errorf("Stats().Accepted = %d; want %d", got, workers*posts*events)
	}
}

// TestPostConfig checks that the edge applies its configured default
// service and retention.
func TestPostConfig(t *testing.T) {
	v := newEnv(t, nil, Config{DefaultService: "fleet", Retention: time.Hour}, stream.Config{})
	ts := func(d time.Duration) string { return now.Add(d).Format(time.RFC3339) }
	v.accept(t, post{body: strings.NewReader(`{"endpoint":"/","response_time_ms":1,"status_code":200,"request_id":"c-1","timestamp":"` + ts(-59*time.Minute) + `"}`)}, 1)
	got := v.stored(t)
	if len(got) != 1 || got[0].Service != "fleet" || !got[0].Timestamp.Equal(now.Add(-59*time.Minute)) {
		t.Fatalf("stored %+v; want one request of service fleet at %s", got, ts(-59*time.Minute))
	}
	rec := v.do(post{body: strings.NewReader(`{"endpoint":"/","response_time_ms":1,"status_code":200,"timestamp":"` + ts(-61*time.Minute) + `"}`)})
	if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), `"field":"timestamp"`) {
		t.Errorf("an event older than the retention: got %d %s; want 400 naming the timestamp", rec.Code, rec.Body)
	}
}

func TestPostGuard(t *testing.T) {
	v := newEnv(t, nil, Config{}, stream.Config{})
	body := `{"endpoint":"/","response_time_ms":1,"status_code":200}`
	f := func(token string, wantStatus int) {
		t.Helper()
		rec := v.do(post{body: strings.NewReader(body), token: token})
		if rec.Code != wantStatus {
			t.Errorf("token %q: got status %d; want %d (body %s)", token, rec.Code, wantStatus, rec.Body)
		}
	}
	f("-", 401)
	f("not-a-known-token-at-all", 401)
	f(ingestToken, 202)
	f(otherToken, 202)
	f(adminToken, 202)
	if got := v.streamInfo(t).Msgs; got != 3 {
		t.Errorf("the stream holds %d messages; want 3", got)
	}
	// Authentication failures are the guard's, not the edge's.
	if got := v.edge.Stats().Rejected.Load(); got != 0 {
		t.Errorf("Stats().Rejected = %d; want 0", got)
	}
}

// chunked hides the length of a body, so that the request has none.
type chunked struct{ r io.Reader }

func (c chunked) Read(p []byte) (int, error) { return c.r.Read(p) }

func TestPostRejects(t *testing.T) {
	cfg := Config{MaxBodyBytes: 16 << 10, MaxDecompressedBytes: 64 << 10, MaxEvents: 5}
	v := newEnv(t, nil, cfg, stream.Config{})
	ok := `{"endpoint":"/api/x","response_time_ms":1,"status_code":200}`
	var rejected uint64
	// f posts p and checks the status, the error code and, when wantDetails
	// is not empty, the index and field of every detail, written
	// "index:field ..." (messages are only checked to be present).
	f := func(name string, p post, wantStatus int, wantCode string, wantDetails string) {
		t.Helper()
		rec := v.do(p)
		rejected++
		if rec.Code != wantStatus {
			t.Fatalf("%s: got status %d; want %d (body %s)", name, rec.Code, wantStatus, rec.Body)
		}
		if ct := rec.Header().Get(echo.HeaderContentType); !strings.HasPrefix(ct, "application/json") {
			t.Errorf("%s: got Content-Type %q; want JSON", name, ct)
		}
		var b httpapi.ErrorBody
		dec := json.NewDecoder(bytes.NewReader(rec.Body.Bytes()))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&b); err != nil {
			t.Fatalf("%s: body %q: %v", name, rec.Body, err)
		}
		if b.Error != wantCode || b.Message == "" {
			t.Errorf("%s: got error %q, message %q; want %q with a message", name, b.Error, b.Message, wantCode)
		}
		if wantStatus == http.StatusBadRequest && len(b.Details) == 0 {
			t.Errorf("%s: a 400 without details: %s", name, rec.Body)
		}
		if wantDetails != "" {
			var got []string
			for _, d := range b.Details {
				got = append(got, fmt.Sprintf("%d:%s", d.Index, d.Field))
				if d.Message == "" {
					t.Errorf("%s: detail %+v has no message", name, d)
				}
			}
			if strings.Join(got, " ") != wantDetails {
				t.Errorf("%s: got details %q; want %q (body %s)", name, strings.Join(got, " "), wantDetails, rec.Body)
			}
		} else if len(b.Details) != 0 {
			t.Errorf("%s: got details %+v; want none", name, b.Details)
		}
		if got := v.edge.Stats().Rejected.Load(); got != rejected {
			t.Errorf("%s: Stats().Rejected = %d; want %d", name, got, rejected)
		}
	}
	s := strings.NewReader
	nd := "application/x-ndjson"

	// Malformed JSON.
	f("truncated object", post{body: s(`{"endpoint":"/x",`)}, 400, "invalid_request", "0:body")
	f("not JSON", post{body: s(`endpoint=/x`)}, 400, "invalid_request", "0:body")
	f("broken third element", post{body: s("[" + ok + "," + ok + `,{"endpoint":}]`)}, 400, "invalid_request", "2:body")
	f("unclosed array", post{body: s("[" + ok)}, 400, "invalid_request", "1:body")
	f("two objects as application/json", post{body: s(ok + ok)}, 400, "invalid_request", "0:body")
	f("broken NDJSON line 3", post{body: s(ok + "\n" + ok + "\n{\"endpoint\n"), ct: nd}, 400, "invalid_request", "2:body")
	f("a number", post{body: s(`42`)}, 400, "invalid_request", "0:event")
	f("an array of numbers", post{body: s(`[` + ok + `, 1]`)}, 400, "invalid_request", "1:event")
	f("null", post{body: s(`null`)}, 400, "invalid_request", "0:endpoint 0:response_time_ms 0:status_code")
	// Wrong types.
	f("wrong type", post{body: s(`{"endpoint":5,"response_time_ms":1,"status_code":200}`)}, 400, "invalid_request", "0:endpoint")
	f("wrong type and a missing field", post{body: s(`{"endpoint":"/","response_time_ms":"fast"}`)}, 400, "invalid_request",
		"0:response_time_ms 0:status_code")
	f("fractional status", post{body: s(`[` + ok + `,{"endpoint":"/","response_time_ms":1,"status_code":200.5}]`)}, 400, "invalid_request",
		"1:status_code")
	f("string status in NDJSON", post{body: s(ok + "\n" + `{"endpoint":"/","response_time_ms":1,"status_code":"200"}`), ct: nd}, 400, "invalid_request",
		"1:status_code")
	// Out of range.
	f("out of range", post{body: s(`[` + ok + `,{"endpoint":"/","response_time_ms":-1,"status_code":99,"method":"FETCH","service":"-web",` +
		`"user_id":"00000000-0000-0000-0000-000000000000","request_id":"has space","timestamp":"` +
		now.Add(time.Hour).Format(time.RFC3339) + `"}]`)}, 400, "invalid_request",
		"1:response_time_ms 1:status_code 1:user_id 1:timestamp 1:service 1:method 1:request_id")
	f("too old", post{body: s(`{"endpoint":"/","response_time_ms":1,"status_code":200,"timestamp":"` +
		now.Add(-31*24*time.Hour).Format(time.RFC3339) + `"}`)}, 400, "invalid_request", "0:timestamp")
	f("slow beyond a day", post{body: s(`{"endpoint":"/","response_time_ms":86400001,"status_code":600}`)}, 400, "invalid_request",
		"0:response_time_ms 0:status_code")
	f("endpoint too long", post{body: s(`{"endpoint":"/` + strings.Repeat("a", 512) + `","response_time_ms":1,"status_code":200}`)}, 400, "invalid_request",
		"0:endpoint")
	f("missing fields", post{body: s(`[{}]`)}, 400, "invalid_request", "0:endpoint 0:response_time_ms 0:status_code")
	// Invalid UTF-8, and too many fields (unknown ones are ignored: see
	// TestPostUnknownFields).
	f("invalid UTF-8", post{body: s("{\"endpoint\":\"/\xff\",\"response_time_ms\":1,\"status_code\":200}")}, 400, "invalid_request",
		"0:endpoint")
	f("unpaired surrogate in NDJSON", post{body: s(ok + "\n" + ok + "\n" + `{"endpoint":"/","response_time_ms":1,"status_code":200,"Extra":"\udc00"}`), ct: nd},
		400, "invalid_request", "2:Extra")
	f("too many fields", post{body: s(`{"endpoint":"/","response_time_ms":1,"status_code":200` + strings.Repeat(`,"x":1`, 98) + `}`)},
		400, "invalid_request", "0:event")
	// Empty bodies.
	f("empty JSON", post{}, 400, "invalid_request", "0:body")
	f("blank JSON", post{body: s(" \n\t ")}, 400, "invalid_request", "0:body")
	f("empty array", post{body: s(`[]`)}, 400, "invalid_request", "0:body")
	f("empty NDJSON", post{ct: nd}, 400, "invalid_request", "0:body")
	f("blank NDJSON", post{body: s("\n\n"), ct: nd}, 400, "invalid_request", "0:body")
	f("empty gzip", post{body: bytes.NewReader(gz(t, nil)), encoding: "gzip"}, 400, "invalid_request", "0:body")
	// The batch is rejected whole, and the details are bounded.
	many := make([]string, 5)
	for i := range many {
		many[i] = `{"endpoint":"","response_time_ms":-1,"status_code":1}`
	}
	rec := v.do(post{body: s("[" + strings.Join(many, ",") + "]")})
	rejected++
	if rec.Code != 400 || !strings.Contains(rec.Body.String(), "15 invalid field(s)") {
		t.Errorf("5 bad events: got %s; want the message to count 15 invalid fields", rec.Body)
	}
	// Size limits.
	big := bytes.Repeat([]byte(" "), 16<<10+1)
	f("body over the limit", post{body: bytes.NewReader(big)}, 413, "too_large", "")
	f("chunked body over the limit", post{body: chunked{bytes.NewReader(big)}}, 413, "too_large", "")
	f("gzip body over the limit", post{body: bytes.NewReader(append(gz(t, []byte(ok)), big...)), encoding: "gzip"}, 413, "too_large", "")
	bomb := gz(t, bytes.Repeat([]byte(" "), 64<<10+1))
	if len(bomb) > 16<<10 {
		t.Fatalf("the bomb is %d bytes compressed; want it within the body limit", len(bomb))
	}
	f("decompression bomb", post{body: bytes.NewReader(bomb), encoding: "gzip"}, 413, "too_large", "")
	f("chunked decompression bomb", post{body: chunked{bytes.NewReader(bomb)}, encoding: "gzip", ct: nd}, 413, "too_large", "")
	f("too many events", post{body: bytes.NewReader(array("many", 6))}, 413, "too_large", "")
	f("too many NDJSON events", post{body: bytes.NewReader(ndjson("many", 6)), ct: nd}, 413, "too_large", "")
	f("too many gzip NDJSON events", post{body: bytes.NewReader(gz(t, ndjson("many", 6))), ct: nd, encoding: "gzip"}, 413, "too_large", "")
	// Broken gzip.
	zipped := gz(t, []byte(ok))
	f("not gzip", post{body: s(ok), encoding: "gzip"}, 400, "invalid_request", "0:body")
	f("truncated gzip", post{body: bytes.NewReader(zipped[:len(zipped)-6]), encoding: "gzip"}, 400, "invalid_request", "0:body")
	corrupt := slices.Clone(zipped)
	corrupt[len(corrupt)-5] ^= 0xff // the length in the trailer
	f("bad gzip trailer", post{body: bytes.NewReader(corrupt), encoding: "gzip"}, 400, "invalid_request", "0:body")
	f("garbage after gzip", post{body: bytes.NewReader(append(slices.Clone(zipped), "garbage"...)), encoding: "gzip"}, 400, "invalid_request", "0:body")
	// Media types and encodings.
	f("text/plain", post{body: s(ok), ct: "text/plain"}, 415, "unsupported_media_type", "")
	f("no Content-Type", post{body: s(ok), ct: "-"}, 415, "unsupported_media_type", "")
	f("form", post{body: s(ok), ct: "application/x-www-form-urlencoded"}, 415, "unsupported_media_type", "")
	f("malformed Content-Type", post{body: s(ok), ct: "application/json; ;"}, 415, "unsupported_media_type", "")
	f("brotli", post{body: s(ok), encoding: "br"}, 415, "unsupported_media_type", "")
	f("two encodings", post{body: s(ok), encoding: "gzip, gzip"}, 415, "unsupported_media_type", "")
	f("deflate", post{body: s(ok), encoding: "deflate"}, 415, "unsupported_media_type", "")
	f("gzip;q=1", post{body: s(ok), encoding: "gzip;q=1"}, 415, "unsupported_media_type", "")
	// Idempotency keys.
	f("body read error", post{body: io.MultiReader(s(ok), failingReader{})}, 400, "invalid_request", "0:body")
	f("key over 128 characters", post{body: s(ok), key: strings.Repeat("k", 129)}, 400, "invalid_request", "0:Idempotency-Key")

	if got := v.streamInfo(t).Msgs; got != 0 {
		t.Errorf("the stream holds %d messages after rejected requests; want 0", got)
	}
	if got := v.edge.Stats().Accepted.Load() + v.edge.Stats().Unavailable.Load(); got != 0 {
		t.Errorf("Accepted + Unavailable = %d; want 0", got)
	}
	// The limits are inclusive: a key of 128 characters, 5 events, a body
	// of exactly the limit are fine.
	v.accept(t, post{body: s(ok), key: strings.Repeat("k", 128)}, 1)
	v.accept(t, post{body: bytes.NewReader(ndjson("five", 5)), ct: nd}, 5)
	exact := append([]byte(ok), bytes.Repeat([]byte(" "), 16<<10-len(ok))...)
	v.accept(t, post{body: bytes.NewReader(exact)}, 1)
	v.accept(t, post{body: chunked{bytes.NewReader(exact)}}, 1)
	if got := v.streamInfo(t).Msgs; got != 4 {
		t.Errorf("the stream holds %d messages; want 4", got)
	}
}

// TestPostOverHTTP drives the edge through a real HTTP server: a body sent
// with chunked transfer encoding is bounded like any other, and a good one
// is accepted.
func TestPostOverHTTP(t *testing.T) {
	v := newEnv(t, nil, Config{MaxBodyBytes: 16 << 10}, stream.Config{})
	srv := httptest.NewServer(v.e)
	defer srv.Close()
	client := srv.Client()
	defer client.CloseIdleConnections()
	send := func(body io.Reader, encoding string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, srv.URL+"/api/admin/system/metrics", body)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/x-ndjson")
		req.Header.Set("Authorization", "Bearer "+ingestToken)
		if encoding != "" {
			req.Header.Set("Content-Encoding", encoding)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("POST: %v", err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if len(resp.TransferEncoding) > 0 {
			t.Logf("response transfer encoding %v", resp.TransferEncoding)
		}
		return resp.StatusCode, strings.TrimSpace(string(b))
	}
	// An endless chunked body: the edge stops reading at the limit.
	code, body := send(io.MultiReader(bytes.NewReader(ndjson("x", 10)), chunked{neverEnding('\n')}), "")
	if code != 413 || !strings.Contains(body, `"too_large"`) {
		t.Errorf("endless chunked body: got %d %s; want 413 too_large", code, body)
	}
	code, body = send(chunked{bytes.NewReader(gz(t, ndjson("h", 50)))}, "gzip")
	if code != 202 || body != `{"accepted":50}` {
		t.Errorf("chunked gzip NDJSON: got %d %s; want 202 {\"accepted\":50}", code, body)
	}
	if got := len(v.stored(t)); got != 50 {
		t.Errorf("stored %d requests; want 50", got)
	}
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("connection reset by peer") }

type neverEnding byte

func (b neverEnding) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(b)
	}
	return len(p), nil
}

// unavailable posts one valid event and checks the edge answers 503 with
// Retry-After and counts it, without internals in the body.
func (v *env) unavailable(t *testing.T, what string, wantCount uint64) {
	t.Helper()
	accepted := v.edge.Stats().Accepted.Load()
	id := strings.ReplaceAll(what, " ", "-")
	rec := v.do(post{body: strings.NewReader(line(id, 1)), key: id})
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("%s: got status %d; want 503 (body %s)", what, rec.Code, rec.Body)
	}
	if got := rec.Header().Get("Retry-After"); got != "2" {
		t.Errorf("%s: got Retry-After %q; want \"2\"", what, got)
	}
	var b httpapi.ErrorBody
	if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil || b.Error != "unavailable" {
		t.Errorf("%s: got body %s (%v); want error \"unavailable\"", what, rec.Body, err)
	}
	for _, internal := range []string{"nats", "NATS", "stream " + v.sc.IngestStream, "127.0.0.1", "maximum"} {
		if strings.Contains(rec.Body.String(), internal) {
			t.Errorf("%s: body %s shows %q", what, rec.Body, internal)
		}
	}
	if got := v.edge.Stats().Unavailable.Load(); got != wantCount {
		t.Errorf("%s: Stats().Unavailable = %d; want %d", what, got, wantCount)
	}
	if got := v.edge.Stats().Accepted.Load(); got != accepted {
		t.Errorf("%s: Stats().Accepted went from %d to %d", what, accepted, got)
	}
	if !strings.Contains(v.log.String(), "answered 503") {
		t.Errorf("%s: log %q lacks the warning", what, v.log)
	}
}

func TestPostNATSDown(t *testing.T) {
	v := newEnv(t, nil, Config{}, stream.Config{})
	v.accept(t, post{body: strings.NewReader(line("up", 1))}, 1)
	v.ns.Shutdown()
	v.ns.WaitForShutdown()
	testenv.Eventually(t, 10*time.Second, "the client to notice the server is gone", func() bool {
		return v.nc.Status() != nats.CONNECTED
	})
	v.unavailable(t, "server down", 1)
	v.unavailable(t, "server still down", 2)
	v.nc.Close()
	v.unavailable(t, "connection closed", 3)
}

func TestPostNoStream(t *testing.T) {
	v := newEnv(t, nil, Config{PublishTimeout: 2 * time.Second}, stream.Config{IngestStream: "-"})
	v.sc.IngestStream = "PULSE_INGEST"
	v.unavailable(t, "no stream", 1)
}

// TestPostNoAck has a subscriber, not a stream, take the edge's messages:
// no acknowledgement comes, and the edge answers 503 once its publish
// timeout passed, never 202.
func TestPostNoAck(t *testing.T) {
	const timeout = 300 * time.Millisecond
	v := newEnv(t, nil, Config{PublishTimeout: timeout}, stream.Config{IngestStream: "-"})
	var got atomic.Int64
	sub, err := v.nc.Subscribe(stream.SubjectEdgeRequests, func(*nats.Msg) { got.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := v.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	v.unavailable(t, "no ack", 1)
	if d := time.Since(start); d < timeout {
		t.Errorf("answered after %s; want the publish timeout of %s first", d, timeout)
	}
	if got.Load() != 1 {
		t.Errorf("the subscriber got %d messages; want 1", got.Load())
	}
}

// TestPostClientGone checks a request whose caller went away while the
// edge waited: it is counted as abandoned, neither accepted nor a 503, and
// answered (to nobody) with nginx's 499.
func TestPostClientGone(t *testing.T) {
	v := newEnv(t, nil, Config{}, stream.Config{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req := httptest.NewRequestWithContext(ctx, http.MethodPost, "/api/admin/system/metrics", strings.NewReader(line("gone", 1)))
	req.Header.Set(echo.HeaderContentType, "application/json")
	req.Header.Set(echo.HeaderAuthorization, "Bearer "+ingestToken)
	rec := httptest.NewRecorder()
	v.e.ServeHTTP(rec, req)
	if rec.Code != statusClientClosed {
		t.Errorf("got status %d; want %d (body %s)", rec.Code, statusClientClosed, rec.Body)
	}
	if a, u, g := v.edge.Stats().Accepted.Load(), v.edge.Stats().Unavailable.Load(), v.edge.Stats().Abandoned.Load(); a != 0 || u != 0 || g != 1 {
		t.Errorf("Stats() Accepted %d, Unavailable %d, Abandoned %d; want 0, 0, 1", a, u, g)
	}
	if strings.Contains(v.log.String(), "503") {
		t.Errorf("a client that went away was logged as a 503:\n%s", v.log)
	}
}

func TestPostStreamFull(t *testing.T) {
	v := newEnv(t, nil, Config{}, stream.Config{MaxBytes: 1 << 20})
	v.accept(t, post{body: strings.NewReader(line("before", 1))}, 1)
	// Fill the backlog directly, as the fleet publishing to NATS would.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Halving the size until not even a byte fits leaves less room than
	// any edge message needs.
	filled := 0
	for size := 32 << 10; size >= 1; size /= 2 {
		for {
			if filled > 2<<20 {
				t.Fatal("a 1 MiB stream took 2 MiB without complaint")
			}
			if _, err := v.js.Publish(ctx, stream.SubjectRequests+"filler", make([]byte, size)); err != nil {
				break // full for this size
			}
			filled += size
		}
	}
	full := v.streamInfo(t)
	v.unavailable(t, "stream full", 1)
	v.unavailable(t, "stream still full", 2)
	if got := v.streamInfo(t); got.Msgs != full.Msgs || got.Bytes != full.Bytes {
		t.Errorf("the full stream went from %d messages, %d bytes to %d, %d", full.Msgs, full.Bytes, got.Msgs, got.Bytes)
	}
	// Once the aggregator drains the backlog, the edge accepts again.
	v.purge(t)
	v.accept(t, post{body: strings.NewReader(line("after", 1))}, 1)
	if got := v.stored(t); len(got) != 1 || got[0].RequestID != "after-1" {
		t.Errorf("after draining, stored %+v; want the one request after-1", got)
	}
}

func TestConfig(t *testing.T) {
	c := Config{}.withDefaults()
	var sc stream.Config
	sc.Defaults()
	want := Config{MaxBodyBytes: 8 << 20, MaxDecompressedBytes: 32 << 20, MaxEvents: 10000, Retention: 30 * 24 * time.Hour,
		DefaultService: event.DefaultService, PublishTimeout: 5 * time.Second, Stream: sc}
	if c != want {
		t.Fatalf("Defaults: got %+v; want %+v", c, want)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate(defaults): %v", err)
	}
	f := func(change func(*Config), wantErr bool) {
		t.Helper()
		c := want
		change(&c)
		if err := c.Validate(); (err != nil) != wantErr {
			t.Errorf("Validate(%+v) = %v; want error: %v", c, err, wantErr)
		}
	}
	f(func(c *Config) { c.MaxBodyBytes = 1023 }, true)
	f(func(c *Config) { c.MaxBodyBytes = 1024; c.MaxDecompressedBytes = 1024 }, false)
	f(func(c *Config) { c.MaxDecompressedBytes = c.MaxBodyBytes - 1 }, true)
	f(func(c *Config) { c.MaxEvents = -1 }, true)
	f(func(c *Config) { c.DefaultService = "Web" }, true)
	f(func(c *Config) { c.DefaultService = "web-2" }, false)
}

// BenchmarkPostNDJSON posts 1,000-event NDJSON bodies through the echo
// handler to the in-process JetStream; each answer is the 202 after the
// acknowledgement.
func BenchmarkPostNDJSON(b *testing.B) {
	v := newEnv(b, nil, Config{}, stream.Config{})
	const n = 1000
	body := ndjson("bench", n)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if i > 0 && i%500 == 0 { // keep the store small
			b.StopTimer()
			v.purge(b)
			b.StartTimer()
		}
		rec := v.do(post{body: bytes.NewReader(body), ct: "application/x-ndjson"})
		if rec.Code != http.StatusAccepted {
			b.Fatalf("got status %d; want 202 (body %s)", rec.Code, rec.Body)
		}
	}
	b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "events/s")
}
