package notify_test

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wedsync/pulse/alerts"
	"github.com/wedsync/pulse/alerts/notify"
	"github.com/wedsync/pulse/alerts/rules"
	"github.com/wedsync/pulse/internal/event"
	"github.com/wedsync/pulse/internal/testenv"
)

const burstRules = `
instant:
  - name: server_error
    field: status_code
    op: ">="
    value: 500
    group_by: [service, endpoint]
    cooldown: 1s
    severity: critical
`

// burst hands the instant evaluator 10,000 5xx requests on one endpoint.
func burst(in *alerts.Instant, endpoint string) {
	now := time.Now().UTC()
	for range 20 {
		b := make([]event.Request, 500)
		for i := range b {
			b[i] = event.Request{Timestamp: now, Service: "api", Endpoint: endpoint, Method: "POST", StatusCode: 502, ResponseTimeMS: 30, RequestID: "r"}
		}
		in.Observe(b)
	}
}

// TestAlertmanager is the check against a real Alertmanager: a 5xx
// burst of 10,000 requests gives one firing notification at Alertmanager's
// webhook receiver (the 2-second figure is measured by
// BenchmarkAlertmanagerLatency; here the deadline is loose), with Pulse's
// labels and annotations, and one resolved after recovery. A silence
// created through Pulse lands in Alertmanager, and a burst it matches
// notifies nobody while Alertmanager records the alert as suppressed.
func TestAlertmanager(t *testing.T) {
	n := newNATS(t)
	h := newHook(t)
	am := startAlertmanager(t, h.srv.URL+"/am")
	rs, err := notify.ParseAlertmanagerURLs(am.url)
	if err != nil {
		t.Fatal(err)
	}
	cfg := fastConfig(rs...)
	cfg.Timeout, cfg.ExternalURL = 5*time.Second, "https://pulse.example.com"
	startNotifier(t, cfg, n.js, nop)
	set, err := rules.Parse([]byte(burstRules))
	if err != nil {
		t.Fatal(err)
	}
	in, err := alerts.NewInstant(alerts.InstantConfig{}, set, n.js, nop)
	if err != nil {
		t.Fatal(err)
	}
	testenv.Run(t, in.Run)

	start := time.Now()
	burst(in, "/api/payments")
	testenv.Eventually(t, 30*time.Second, "the firing notification", func() bool { return len(h.got(t)) >= 1 })
	t.Logf("firing notification %s after the first bad event", time.Since(start).Round(time.Millisecond))
	first := h.got(t)[0]
	if first.Status != "firing" || len(first.Alerts) != 1 {
		t.Fatalf("first notification %+v; want one firing alert", first)
	}
	a := first.Alerts[0]
	for k, v := range map[string]string{"alertname": "server_error", "rule": "server_error", "severity": "critical", "service": "api", "endpoint": "/api/payments"} {
		if a.Labels[k] != v {
			t.Errorf("label %s = %q; want %q (labels %v)", k, a.Labels[k], v, a.Labels)
		}
	}
	for _, k := range []string{"summary", "description", "value", "threshold", "link"} {
		if a.Annotations[k] == "" {
			t.Errorf("annotation %s missing: %v", k, a.Annotations)
		}
	}
	if !strings.HasPrefix(a.Annotations["link"], "https://pulse.example.com/") {
		t.Errorf("link %q; want the external URL", a.Annotations["link"])
	}
	testenv.Eventually(t, 30*time.Second, "the resolved notification", func() bool {
		for _, m := range h.got(t) {
			if m.Status == "resolved" {
				return true
			}
		}
		return false
	})
	var firing, resolved int
	for _, m := range h.got(t) {
		if m.Status == "firing" {
			firing++
		} else {
			resolved++
		}
	}
	if firing != 1 || resolved != 1 {
		t.Errorf("%d firing and %d resolved notifications; want one of each", firing, resolved)
	}

	// A silence through Pulse's API is created in Alertmanager.
	e := newAPIServer(t, cfg, n.js, nil)
	ends := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	r := do(t, e, http.MethodPost, "/api/admin/silences", adminToken,
		`{"matchers":[{"name":"endpoint","value":"/api/forms"}],"endsAt":"`+ends+`","comment":"deploy"}`)
	if r.Status != http.StatusOK {
		t.Fatalf("create silence: %d %s", r.Status, r.Body)
	}
	id := jsonField(t, r.Body, "id")
	resp, err := http.Get(am.url + "/api/v2/silence/" + id)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("the silence %s is not in Alertmanager: %v %v", id, err, resp)
	}
	resp.Body.Close()
	if r := testenv.Get(t, e, "/api/admin/silences", adminToken); !strings.Contains(string(r.Body), id) || !strings.Contains(string(r.Body), `"store":"alertmanager"`) {
		t.Errorf("list silences: %s; want %s from alertmanager", r.Body, id)
	}
	before := len(h.got(t))
	burst(in, "/api/forms")
	testenv.Eventually(t, 30*time.Second, "the silenced alert in Alertmanager", func() bool { return am.alertState(t, "server_error", "/api/forms") == "suppressed" })
	// A marker alert in another group is notified; by then the silenced
	// one would have been too.
	burst(in, "/api/marker")
	testenv.Eventually(t, 30*time.Second, "the marker", func() bool { return len(h.got(t)) > before })
	for _, m := range h.got(t)[before:] {
		for _, a := range m.Alerts {
			if a.Labels["endpoint"] == "/api/forms" {
				t.Errorf("a silenced alert was notified: %+v", m)
			}
		}
	}
}

// BenchmarkAlertmanagerLatency measures the figure: from the first
// bad event of a burst to the firing notification at Alertmanager's
// webhook receiver (target: within 2 s).
func BenchmarkAlertmanagerLatency(b *testing.B) {
	n := newNATS(b)
	h := newHook(b)
	am := startAlertmanager(b, h.srv.URL+"/am")
	rs, _ := notify.ParseAlertmanagerURLs(am.url)
	cfg := notify.Config{Receivers: rs, MaxWait: 100 * time.Millisecond}
	startNotifier(b, cfg, n.js, nop)
	set, _ := rules.Parse([]byte(burstRules))
	in, _ := alerts.NewInstant(alerts.InstantConfig{}, set, n.js, nop)
	testenv.Run(b, in.Run)
	var worst time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		want := len(h.got(b)) + 1
		start := time.Now()
		burst(in, fmt.Sprintf("/api/bench/%d", i))
		testenv.Eventually(b, 30*time.Second, "the firing notification", func() bool { return len(h.got(b)) >= want })
		worst = max(worst, time.Since(start))
	}
	b.ReportMetric(float64(worst.Milliseconds()), "worst-ms")
}

// TestAlertmanagerExample: deploy/alertmanager.example.yml is a valid
// Alertmanager configuration (amtool check-config), with its secret files
// pointed at temporary ones.
func TestAlertmanagerExample(t *testing.T) {
	data, err := os.ReadFile("../../deploy/alertmanager.example.yml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := string(data)
	for _, f := range []string{"/etc/prometheus/slack-webhook-url", "/etc/prometheus/pagerduty-routing-key"} {
		local := filepath.Join(dir, filepath.Base(f))
		if err := os.WriteFile(local, []byte("https://hooks.example.com/x\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg = strings.ReplaceAll(cfg, f, local)
	}
	path := filepath.Join(dir, "alertmanager.yml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	amtool := filepath.Join(filepath.Dir(alertmanagerBinary(t)), "amtool")
	out, err := exec.Command(amtool, "check-config", path).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "SUCCESS") {
		t.Errorf("amtool check-config: %v\n%s", err, out)
	}
}

// TestResend: a firing alert in the state bucket is posted to
// Alertmanager again every ResendEvery, so an Alertmanager that never got
// the transition (restarted, or started after it) holds it active.
func TestResend(t *testing.T) {
	n := newNATS(t)
	h := newHook(t)
	am := startAlertmanager(t, h.srv.URL+"/am")
	rs, _ := notify.ParseAlertmanagerURLs(am.url)
	rec := `{"id":"f00d","kind":"alert","rule":"db_down","state":"firing","severity":"critical","labels":{"component":"database"},"value":1,` +
		`"threshold":0,"started_at":"` + time.Now().UTC().Format(time.RFC3339) + `","resolved_at":null,"count":1,"message":"database down","phase":"firing","notified":true}`
	if _, err := n.kv.Put(testCtx(t), "window.db_down.abc", []byte(rec)); err != nil {
		t.Fatal(err)
	}
	startNotifier(t, fastConfig(rs...), n.js, nop)
	testenv.Eventually(t, 30*time.Second, "the re-sent alert in Alertmanager", func() bool {
		return am.alertStateBy(t, `alertname="db_down"`, `component="database"`) == "active"
	})
}
