package notify_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/wedsync/pulse/alerts"
	"github.com/wedsync/pulse/alerts/notify"
	"github.com/wedsync/pulse/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

var nop = zerolog.Nop()

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// natsEnv is an in-process NATS server with the alert stream.
type natsEnv struct {
	url string
	nc  *nats.Conn
	js  jetstream.JetStream
	kv  jetstream.KeyValue
}

func newNATS(t testing.TB) *natsEnv {
	t.Helper()
	ns := testenv.NATS(t)
	nc, js := testenv.Connect(t, ns.ClientURL())
	kv, err := alerts.Ensure(testCtx(t), js, alerts.StreamConfig{})
	if err != nil {
		t.Fatalf("ensure alert stream: %v", err)
	}
	return &natsEnv{url: ns.ClientURL(), nc: nc, js: js, kv: kv}
}

// publish puts a transition on the alert stream as package alerts does;
// withID false leaves out the Nats-Msg-Id, as a republication after the
// duplicate window looks to the stream.
func (n *natsEnv) publish(t testing.TB, a alerts.Alert, withID bool) {
	t.Helper()
	data, _ := json.Marshal(a)
	msg := &nats.Msg{Subject: a.Subject(), Header: nats.Header{}, Data: data}
	if withID {
		msg.Header.Set(jetstream.MsgIDHeader, a.MsgID())
	}
	if _, err := n.js.PublishMsg(testCtx(t), msg); err != nil {
		t.Fatalf("publish %s: %v", a.MsgID(), err)
	}
}

// transition is alert id of rule in state.
func transition(id, rule, severity, state string) alerts.Alert {
	start := time.Now().Add(-time.Minute).UTC().Truncate(time.Second)
	v := 503.0
	a := alerts.Alert{ID: id, Kind: alerts.KindAlert, Rule: rule, State: state, Severity: severity,
		Labels: map[string]string{"service": "api", "endpoint": "/api/payments/" + id}, Value: &v, Threshold: 500,
		StartedAt: start, Count: 1, Message: rule + " on api"}
	if state == alerts.StateResolved {
		end := start.Add(30 * time.Second)
		a.ResolvedAt = &end
	}
	return a
}

// startNotifier runs a Notifier and waits until its receivers' consumers
// exist (they deliver new transitions only).
func startNotifier(t testing.TB, cfg notify.Config, js jetstream.JetStream, log zerolog.Logger) (*notify.Notifier, func()) {
	t.Helper()
	n, err := notify.New(cfg, js, log)
	if err != nil {
		t.Fatalf("notify.New: %v", err)
	}
	stop := testenv.Run(t, n.Run)
	for _, r := range cfg.Receivers {
		testenv.Eventually(t, 20*time.Second, "consumer of "+r.Name, func() bool {
			_, err := js.Consumer(testCtx(t), alerts.DefaultStream, notify.ConsumerName(r.Name))
			return err == nil
		})
	}
	return n, stop
}

// hook is a webhook receiver in the test process that can fail, stall
// and recover.
type hook struct {
	srv *httptest.Server

	mu     sync.Mutex
	mode   string // ok, fail (503 with Retry-After: 1), stall (no answer for 3s)
	bodies [][]byte
	failed int
}

func newHook(t testing.TB) *hook {
	t.Helper()
	h := &hook{mode: "ok"}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		mode := h.mode
		if mode != "ok" {
			h.failed++
		}
		h.mu.Unlock()
		switch mode {
		case "fail":
			w.Header().Set("Retry-After", "1")
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		case "stall":
			select {
			case <-r.Context().Done():
			case <-time.After(3 * time.Second):
			}
			http.Error(w, "too late", http.StatusGatewayTimeout)
			return
		case "reject":
			http.Error(w, "bad payload", http.StatusBadRequest)
			return
		}
		h.mu.Lock()
		h.bodies = append(h.bodies, body)
		h.mu.Unlock()
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hook) set(mode string) {
	h.mu.Lock()
	h.mode = mode
	h.mu.Unlock()
}

func (h *hook) failures() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.failed
}

// webhookMsg is the part of Alertmanager's webhook body the tests read.
type webhookMsg struct {
	Status   string `json:"status"`
	Receiver string `json:"receiver"`
	Alerts   []struct {
		Status      string            `json:"status"`
		Labels      map[string]string `json:"labels"`
		Annotations map[string]string `json:"annotations"`
		StartsAt    time.Time         `json:"startsAt"`
		EndsAt      time.Time         `json:"endsAt"`
	} `json:"alerts"`
}

// got decodes what the hook accepted.
func (h *hook) got(t testing.TB) []webhookMsg {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]webhookMsg, 0, len(h.bodies))
	for _, b := range h.bodies {
		var m webhookMsg
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("webhook body %s: %v", b, err)
		}
		out = append(out, m)
	}
	return out
}

func (h *hook) raw() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]string, len(h.bodies))
	for i, b := range h.bodies {
		out[i] = string(b)
	}
	return out
}

// transitions lists what the hook accepted as "<alert_id>/<status>".
func (h *hook) transitions(t testing.TB) []string {
	var out []string
	for _, m := range h.got(t) {
		for _, a := range m.Alerts {
			out = append(out, a.Annotations["alert_id"]+"/"+a.Status)
		}
	}
	return out
}

// fastConfig is a delivery configuration with test-sized waits.
func fastConfig(rs ...notify.Receiver) notify.Config {
	return notify.Config{Receivers: rs, Timeout: 500 * time.Millisecond, MinBackoff: 50 * time.Millisecond,
		MaxBackoff: 500 * time.Millisecond, AckWait: 2 * time.Second, MaxWait: 200 * time.Millisecond, ResendEvery: time.Second}
}

// alertmanager is a real Alertmanager (Debian's prometheus-alertmanager)
// on a free loopback port, with a config routing everything to a webhook
// receiver in the test process.
type alertmanager struct {
	url string
}

func alertmanagerBinary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("PULSE_TEST_ALERTMANAGER"); p != "" {
		return p
	}
	for _, name := range []string{"prometheus-alertmanager", "alertmanager"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("no Alertmanager binary: run the tests with scripts/test.sh, which installs Debian's prometheus-alertmanager")
	return ""
}

func startAlertmanager(t testing.TB, webhookURL string) *alertmanager {
	t.Helper()
	dir := t.TempDir()
	cfg := fmt.Sprintf(`route:
  receiver: hook
  group_by: ['alertname', 'service', 'endpoint']
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: hook
    webhook_configs:
      - url: %q
        send_resolved: true
`, webhookURL)
	if err := os.WriteFile(filepath.Join(dir, "alertmanager.yml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := testenv.FreeAddr(t)
	var log strings.Builder
	var logMu sync.Mutex
	cmd := exec.Command(alertmanagerBinary(t), "--config.file="+filepath.Join(dir, "alertmanager.yml"),
		"--storage.path="+filepath.Join(dir, "data"), "--web.listen-address="+addr,
		"--cluster.listen-address=", "--log.level=warn")
	cmd.Stdout, cmd.Stderr = lockedWriter{&logMu, &log}, lockedWriter{&logMu, &log}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start Alertmanager: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
	})
	am := &alertmanager{url: "http://" + addr}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(am.url + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return am
			}
		}
		select {
		case <-done:
			logMu.Lock()
			defer logMu.Unlock()
			t.Fatalf("Alertmanager exited at start:\n%s", log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("Alertmanager not ready within 30s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// alertState returns the state Alertmanager holds for the alert of rule
// on endpoint: "active", "suppressed", or "" when it has none.
func (am *alertmanager) alertState(t testing.TB, rule, endpoint string) string {
	t.Helper()
	return am.alertStateBy(t, `alertname="`+rule+`"`, `endpoint="`+endpoint+`"`)
}

// alertStateBy returns the state of the first alert matching filters.
func (am *alertmanager) alertStateBy(t testing.TB, filters ...string) string {
	t.Helper()
	q := url.Values{"filter": filters}
	resp, err := http.Get(am.url + "/api/v2/alerts?" + q.Encode())
	if err != nil {
		t.Fatalf("list Alertmanager alerts: %v", err)
	}
	defer resp.Body.Close()
	var got []struct {
		Status struct {
			State string `json:"state"`
		} `json:"status"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatalf("decode Alertmanager alerts: %v", err)
	}
	if len(got) == 0 {
		return ""
	}
	return got[0].Status.State
}

// registry is a fresh registry for a component's metrics.
func registry() *prometheus.Registry { return prometheus.NewRegistry() }

// conn is another client of the same server, as another replica has.
func (n *natsEnv) conn(t testing.TB) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	return testenv.Connect(t, n.url)
}
