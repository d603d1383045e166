package alerts_test

import (
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/wedsync/pulse/alerts"
	"github.com/wedsync/pulse/internal/event"
	"github.com/wedsync/pulse/internal/testenv"
)

// restartableNATS is a NATS server that a test can stop and start again
// on the same port and store, as an operator's restart does.
type restartableNATS struct {
	t    testing.TB
	opts server.Options
	ns   *server.Server
}

func startRestartableNATS(t testing.TB) *restartableNATS {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	r := &restartableNATS{t: t, opts: server.Options{Host: "127.0.0.1", Port: port, JetStream: true,
		StoreDir: t.TempDir(), NoSigs: true, NoLog: true}}
	r.start()
	t.Cleanup(r.stop)
	return r
}

func (r *restartableNATS) start() {
	r.t.Helper()
	opts := r.opts
	ns, err := server.NewServer(&opts)
	if err != nil {
		r.t.Fatal(err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		r.t.Fatal("NATS not ready")
	}
	r.ns = ns
}

func (r *restartableNATS) stop() {
	if r.ns != nil {
		r.ns.Shutdown()
		r.ns.WaitForShutdown()
		r.ns = nil
	}
}

// TestInstantNATSOutage: while NATS is down Observe still returns at once
// (the aggregator never waits on alerting); matches wait, and once NATS
// is back the new group fires and the old one resolves, each once.
func TestInstantNATSOutage(t *testing.T) {
	srv := startRestartableNATS(t)
	url := srv.ns.ClientURL()
	nc, js := testenv.Connect(t, url)
	if _, err := alerts.Ensure(testCtx(t), js, alerts.StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	in := newInstant(t, alerts.InstantConfig{Timeout: 500 * time.Millisecond}, mustParse(t, instantRules(t, 2*time.Second)), js, nop)
	testenv.Run(t, in.Run)
	watch, _ := testenv.Connect(t, url)
	c := collect(t, watch)
	in.Observe([]event.Request{req(time.Now(), "api", "/before", 500, 1)})
	c.wait("server_error", alerts.StateFiring, 1, 5*time.Second)

	srv.stop()
	testenv.Eventually(t, 5*time.Second, "client disconnected", func() bool { return !nc.IsConnected() })
	start := time.Now()
	for i := 0; i < 100; i++ {
		in.Observe([]event.Request{req(time.Now(), "api", "/during", 503, 1)})
	}
	// Waiting on NATS would cost each call its 500 ms publish timeout, 50 s
	// in all; the bound is far from both that and a loaded machine's pace.
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("100 Observe calls took %s with NATS down; want them not to wait on NATS (500 ms each)", d)
	}
	testenv.Eventually(t, 10*time.Second, "failures noticed", func() bool { return in.Stats().Failures.Load() > 0 })

	srv.start()
	// A subscriber that was disconnected too misses what was published
	// before it re-subscribed; the stream keeps everything for replay.
	var got []alerts.Alert
	testenv.Eventually(t, 20*time.Second, "alerts in the stream after NATS is back", func() bool {
		got = streamAlerts(t, js)
		return len(got) >= 4
	})
	byEndpoint := map[string]int{}
	for _, a := range got {
		byEndpoint[a.Labels["endpoint"]+" "+a.State]++
		if a.Labels["endpoint"] == "/during" && a.State == alerts.StateResolved && a.Count != 100 {
			t.Errorf("the alert of the outage counts %d; want 100", a.Count)
		}
	}
	for _, k := range []string{"/before firing", "/before resolved", "/during firing", "/during resolved"} {
		if byEndpoint[k] != 1 || len(got) != 4 {
			t.Errorf("stream holds %v; want one message each of /before and /during, firing and resolved", byEndpoint)
			break
		}
	}
}

// streamAlerts reads every alert the stream holds.
func streamAlerts(t testing.TB, js jetstream.JetStream) []alerts.Alert {
	t.Helper()
	ctx := testCtx(t)
	cons, err := js.OrderedConsumer(ctx, alerts.DefaultStream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return nil // NATS not back yet
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return nil
	}
	var out []alerts.Alert
	for pending := info.NumPending; pending > 0; {
		batch, err := cons.Fetch(int(pending), jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return nil
		}
		n := 0
		for m := range batch.Messages() {
			var a alerts.Alert
			if err := json.Unmarshal(m.Data(), &a); err != nil {
				t.Errorf("stream message %q is not an alert", m.Data())
			}
			out = append(out, a)
			n++
		}
		if n == 0 {
			break
		}
		pending -= uint64(n)
	}
	return out
}

// TestEvaluatorStateDown: when the state bucket cannot be reached the
// evaluation is incomplete and the evaluator says so.
func TestEvaluatorStateDown(t *testing.T) {
	store := testenv.ClickHouse(t)
	n := newNATS(t)
	nc, js := n.conn(t)
	e := newEvaluator(t, alerts.EvaluatorConfig{Timeout: time.Second}, mustParse(t, "window:\n  - {name: w, metric: p95_ms, threshold: 1}\n"), js, store, nop)
	nc.Close()
	if err := e.Evaluate(testCtx(t)); err == nil {
		t.Fatal("Evaluate without NATS returned nil")
	}
	if s := e.Status(); !s.Degraded || !strings.Contains(s.Reason, "NATS") || s.Evaluations != 1 {
		t.Errorf("status %+v; want degraded naming the state store", s)
	}
}

// TestConfigValidate: configurations are checked before anything starts.
func TestConfigValidate(t *testing.T) {
	for _, tt := range []struct {
		name string
		err  error
	}{
		{"zero instant", alerts.InstantConfig{}.Validate()},
		{"zero evaluator", alerts.EvaluatorConfig{}.Validate()},
		{"zero history", alerts.HistoryConfig{}.Validate()},
		{"zero stream", alerts.StreamConfig{}.Validate()},
		{"zero API", alerts.APIConfig{}.Validate()},
	} {
		if tt.err != nil {
			t.Errorf("%s: %v; want valid", tt.name, tt.err)
		}
	}
	for _, tt := range []struct {
		name string
		err  error
	}{
		{"negative tick", alerts.InstantConfig{Tick: -1}.Validate()},
		{"negative groups", alerts.InstantConfig{MaxGroups: -1}.Validate()},
		{"tiny interval", alerts.EvaluatorConfig{Interval: time.Microsecond}.Validate()},
		{"tiny lease", alerts.EvaluatorConfig{Lease: time.Millisecond}.Validate()},
		{"huge batch", alerts.HistoryConfig{Batch: 1 << 30}.Validate()},
		{"short max age", alerts.StreamConfig{MaxAge: time.Minute}.Validate()},
		{"replicas", alerts.StreamConfig{Replicas: 7}.Validate()},
		{"dedup window", alerts.StreamConfig{DuplicateWindow: 90 * 24 * time.Hour}.Validate()},
		{"stream in instant", alerts.InstantConfig{Stream: alerts.StreamConfig{MaxBytes: 10}}.Validate()},
		{"negative API timeout", alerts.APIConfig{QueryTimeout: -1}.Validate()},
	} {
		if tt.err == nil {
			t.Errorf("%s: valid; want an error", tt.name)
		}
	}
}
