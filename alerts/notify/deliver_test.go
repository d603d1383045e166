package notify_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/wedsync/pulse/alerts"
	"github.com/wedsync/pulse/alerts/notify"
	"github.com/wedsync/pulse/internal/ratelimit"
	"github.com/wedsync/pulse/internal/testenv"
)

func TestParseWebhooks(t *testing.T) {
	const secretURL = "https://hooks.example.com/services/T0/B0/s3cr3t-token"
	good, err := notify.ParseWebhooks("ops=" + secretURL + ";severity=critical|warning;format=slack, audit=http://127.0.0.1:9/x")
	if err != nil {
		t.Fatalf("ParseWebhooks: %v", err)
	}
	want := []notify.Receiver{
		{Name: "ops", Kind: notify.KindWebhook, URL: secretURL, Severities: []string{"critical", "warning"}, Format: notify.FormatSlack},
		{Name: "audit", Kind: notify.KindWebhook, URL: "http://127.0.0.1:9/x", Format: notify.FormatAlertmanager},
	}
	if fmt.Sprint(good) != fmt.Sprint(want) {
		t.Errorf("got %+v; want %+v", good, want)
	}
	for _, bad := range []string{
		"ops",                               // no URL
		"ops=not a url s3cr3t-token",        // not a URL
		"ops=ftp://host/s3cr3t-token",       // not http
		"ops=https:///s3cr3t-token",         // no host
		"Ops=https://host/s3cr3t-token",     // bad name
		"ops=https://host/s3cr3t-token;x=1", // unknown option
		"ops=https://host/s3cr3t-token;severity=urgent",
		"ops=https://host/s3cr3t-token;format=teams",
		"ops=https://a/s3cr3t-token,ops=https://b/s3cr3t-token",
		"alertmanager=https://a/s3cr3t-token",
	} {
		_, err := notify.ParseWebhooks(bad)
		if err == nil {
			t.Errorf("ParseWebhooks(%q) = nil error; want one", bad)
			continue
		}
		if strings.Contains(err.Error(), "s3cr3t") {
			t.Errorf("ParseWebhooks(%q) error %q quotes the URL", bad, err)
		}
	}
	if _, err := notify.ParseAlertmanagerURLs("http://am-1:9093, http://am-2:9093/"); err != nil {
		t.Errorf("ParseAlertmanagerURLs: %v", err)
	}
	if _, err := notify.ParseAlertmanagerURLs("am-1:9093"); err == nil {
		t.Error("ParseAlertmanagerURLs(am-1:9093) = nil error; want one (no scheme)")
	}
}

// TestWebhookOutage is the check with a 5-second outage: a
// receiver that answers 503 (Retry-After: 1) while transitions happen gets
// every one of them exactly once, in order, when it returns, although the
// delivering component was killed (its NATS connection cut, nothing handed
// back) and another started during the outage. While it is down it is
// reported: metric, log line, receivers status with the sanitised error.
func TestWebhookOutage(t *testing.T) {
	n := newNATS(t)
	h := newHook(t)
	secretURL := h.srv.URL + "/hook/s3cr3t-token"
	rs, err := notify.ParseWebhooks("ops=" + secretURL)
	if err != nil {
		t.Fatal(err)
	}
	var logs testenv.LogBuffer
	reg := registry()
	cfg := fastConfig(rs...)
	cfg.Registerer = reg
	nc1, js1 := n.conn(t)
	_, stop1 := startNotifier(t, cfg, js1, zerolog.New(&logs))

	h.set("fail")
	outageStart := time.Now()
	var want []string
	for i := range 3 {
		id := fmt.Sprintf("outage%d", i)
		n.publish(t, transition(id, "server_error", "critical", alerts.StateFiring), true)
		n.publish(t, transition(id, "server_error", "critical", alerts.StateResolved), true)
		want = append(want, id+"/firing", id+"/resolved")
	}
	testenv.Eventually(t, 10*time.Second, "failed attempts", func() bool { return h.failures() >= 2 })
	if got := testenv.Counter(t, reg, "pulse_alerts_notify_failures_total", "receiver", "ops"); got < 1 {
		t.Errorf("pulse_alerts_notify_failures_total = %v; want >= 1", got)
	}
	if lines := logs.Lines("alert receiver failing"); len(lines) == 0 || !strings.Contains(lines[0], `"receiver":"ops"`) {
		t.Errorf("no failing log line naming the receiver: %q", logs.String())
	}
	// Status through the API, as admins see it.
	e := newAPIServer(t, cfg, n.js, nil)
	r := testenv.Get(t, e, "/api/admin/alerts/receivers", adminToken)
	if r.Status != 200 || !strings.Contains(string(r.Body), `"state":"failing"`) || !strings.Contains(string(r.Body), "HTTP 503 Service Unavailable") {
		t.Errorf("receivers: %d %s; want ops failing with HTTP 503", r.Status, r.Body)
	}

	// Kill the deliverer: its connection goes, nothing is handed back;
	// another one takes over after the ack wait.
	nc1.Close()
	stop1()
	_, js2 := n.conn(t)
	startNotifier(t, fastConfig(rs...), js2, zerolog.New(&logs))

	time.Sleep(time.Until(outageStart.Add(5 * time.Second))) // the outage lasts 5 s on purpose
	h.set("ok")
	testenv.Eventually(t, 30*time.Second, "every missed transition", func() bool { return len(h.transitions(t)) >= len(want) })
	// Anything sent twice would arrive within a few more attempts.
	n.publish(t, transition("marker", "server_error", "critical", alerts.StateFiring), true)
	testenv.Eventually(t, 10*time.Second, "the marker", func() bool { return slices.Contains(h.transitions(t), "marker/firing") })
	got := h.transitions(t)
	if !slices.Equal(got, append(want, "marker/firing")) {
		t.Errorf("received %v; want each of %v once, in order, then the marker", got, want)
	}
	for _, s := range append(h.raw(), logs.String(), string(testenv.Get(t, e, "/api/admin/alerts/receivers", adminToken).Body)) {
		if strings.Contains(s, "s3cr3t") {
			t.Errorf("the webhook URL's secret leaked: %s", s)
		}
	}
	r = testenv.Get(t, e, "/api/admin/alerts/receivers", adminToken)
	if !strings.Contains(string(r.Body), `"state":"ok"`) {
		t.Errorf("receivers after recovery: %s; want ops ok", r.Body)
	}
}

// TestStallAndRejection: a receiver slower than the timeout is retried
// until it answers; a message it refuses (400) is not retried and does not
// hold back the next one.
func TestStallAndRejection(t *testing.T) {
	n := newNATS(t)
	h := newHook(t)
	rs, _ := notify.ParseWebhooks("slow=" + h.srv.URL)
	h.set("stall")
	startNotifier(t, fastConfig(rs...), n.js, nop)
	n.publish(t, transition("stalled", "server_error", "critical", alerts.StateFiring), true)
	testenv.Eventually(t, 10*time.Second, "timed-out attempts", func() bool { return h.failures() >= 2 })
	h.set("ok")
	testenv.Eventually(t, 10*time.Second, "the stalled transition", func() bool { return len(h.transitions(t)) == 1 })
	h.set("reject")
	n.publish(t, transition("refused", "server_error", "critical", alerts.StateFiring), true)
	testenv.Eventually(t, 10*time.Second, "a refusal", func() bool { return h.failures() >= 3 })
	h.set("ok")
	n.publish(t, transition("next", "server_error", "critical", alerts.StateFiring), true)
	testenv.Eventually(t, 10*time.Second, "the next transition", func() bool { return len(h.transitions(t)) == 2 })
	if got := h.transitions(t); !slices.Equal(got, []string{"stalled/firing", "next/firing"}) {
		t.Errorf("received %v; want stalled/firing, next/firing", got)
	}
}

// TestNoDuplicate: a transition published again (after the stream's
// duplicate window, so the stream holds it twice) reaches the receiver
// once; another receiver with a severity filter gets only its severity.
func TestNoDuplicate(t *testing.T) {
	n := newNATS(t)
	h, pager := newHook(t), newHook(t)
	rs, _ := notify.ParseWebhooks("all=" + h.srv.URL + ",pager=" + pager.srv.URL + ";severity=critical")
	startNotifier(t, fastConfig(rs...), n.js, nop)
	a := transition("twice", "server_error", "critical", alerts.StateFiring)
	n.publish(t, a, true)
	n.publish(t, a, false)
	n.publish(t, transition("warn", "slow_response", "warning", alerts.StateFiring), true)
	testenv.Eventually(t, 10*time.Second, "the warning", func() bool { return slices.Contains(h.transitions(t), "warn/firing") })
	testenv.Eventually(t, 10*time.Second, "the pager's alert", func() bool { return len(pager.transitions(t)) >= 1 })
	if got := h.transitions(t); !slices.Equal(got, []string{"twice/firing", "warn/firing"}) {
		t.Errorf("all received %v; want twice/firing once, then warn/firing", got)
	}
	n.publish(t, transition("crit2", "server_error", "critical", alerts.StateFiring), true)
	testenv.Eventually(t, 10*time.Second, "the pager's second alert", func() bool { return len(pager.transitions(t)) >= 2 })
	if got := pager.transitions(t); !slices.Equal(got, []string{"twice/firing", "crit2/firing"}) {
		t.Errorf("pager received %v; want only the critical ones, each once", got)
	}
}

// TestRateLimitDigest: 10,000 matching events spread over 50 groups are
// 50 firing alerts; a receiver limited to 3 per 2 seconds gets 3 of them,
// then one digest of the 47 others, and no resolved message for those.
func TestRateLimitDigest(t *testing.T) {
	n := newNATS(t)
	h, slackHook := newHook(t), newHook(t)
	rs, _ := notify.ParseWebhooks("ops=" + h.srv.URL + ",chat=" + slackHook.srv.URL + ";format=slack")
	cfg := fastConfig(rs...)
	cfg.RateLimit = ratelimit.Limit{Requests: 3, Per: 2 * time.Second}
	startNotifier(t, cfg, n.js, nop)
	for i := range 50 {
		a := transition(fmt.Sprintf("storm%02d", i), "server_error", "critical", alerts.StateFiring)
		a.Count = 200
		n.publish(t, a, true)
	}
	n.publish(t, transition("storm00", "server_error", "critical", alerts.StateResolved), true)
	n.publish(t, transition("storm49", "server_error", "critical", alerts.StateResolved), true)
	testenv.Eventually(t, 20*time.Second, "the digest", func() bool {
		return strings.Contains(strings.Join(h.raw(), "\n"), "47 more alerts in the last 2 seconds")
	})
	got := h.transitions(t)
	if len(got) > 6 || !slices.Contains(got, "storm00/resolved") || slices.Contains(got, "storm49/resolved") {
		t.Errorf("received %v; want 3 firing, storm00's resolved, one digest, and not storm49's resolved", got)
	}
	testenv.Eventually(t, 20*time.Second, "the Slack digest", func() bool {
		return strings.Contains(strings.Join(slackHook.raw(), "\n"), "47 more alerts")
	})
	if raw := slackHook.raw(); len(raw) > 6 || !strings.Contains(raw[0], `"text":"[FIRING] server_error on api /api/payments/storm00 (critical)"`) {
		t.Errorf("Slack receiver got %d messages, first %s; want at most a handful, in Slack's format", len(raw), raw[0])
	}
}

// TestSilenceWebhooks: without Alertmanager, silences live in Pulse; a
// silenced transition is recorded (its delivery key, a metric) but not
// sent, and an expired silence mutes nothing.
func TestSilenceWebhooks(t *testing.T) {
	n := newNATS(t)
	h := newHook(t)
	rs, _ := notify.ParseWebhooks("ops=" + h.srv.URL)
	reg := registry()
	cfg := fastConfig(rs...)
	cfg.Registerer, cfg.SilenceRefresh = reg, time.Nanosecond
	startNotifier(t, cfg, n.js, nop)
	e := newAPIServer(t, cfg, n.js, nil)
	ends := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	r := do(t, e, "POST", "/api/admin/silences", adminToken,
		`{"matchers":[{"name":"rule","value":"server_error","isRegex":false}],"endsAt":"`+ends+`","comment":"maintenance"}`)
	if r.Status != 200 {
		t.Fatalf("create silence: %d %s", r.Status, r.Body)
	}
	id := jsonField(t, r.Body, "id")
	n.publish(t, transition("muted", "server_error", "critical", alerts.StateFiring), true)
	n.publish(t, transition("loud", "slow_response", "warning", alerts.StateFiring), true)
	testenv.Eventually(t, 10*time.Second, "the unsilenced alert", func() bool { return len(h.transitions(t)) >= 1 })
	if got := h.transitions(t); !slices.Equal(got, []string{"loud/firing"}) {
		t.Errorf("received %v; want only loud/firing", got)
	}
	if got := testenv.Counter(t, reg, "pulse_alerts_notify_skipped_total", "receiver", "ops", "reason", "silenced"); got != 1 {
		t.Errorf("silenced transitions counted %v; want 1", got)
	}
	r = testenv.Get(t, e, "/api/admin/silences", adminToken)
	if !strings.Contains(string(r.Body), `"state":"active"`) || !strings.Contains(string(r.Body), `"createdBy":"admin"`) {
		t.Errorf("list silences: %s; want the active silence created by admin", r.Body)
	}
	if r := do(t, e, "DELETE", "/api/admin/silences/"+id, adminToken, ""); r.Status != 200 {
		t.Fatalf("expire silence: %d %s", r.Status, r.Body)
	}
	if r := do(t, e, "DELETE", "/api/admin/silences/no-such-silence", adminToken, ""); r.Status != 404 {
		t.Errorf("expire an unknown silence: %d %s; want 404", r.Status, r.Body)
	}
	n.publish(t, transition("again", "server_error", "critical", alerts.StateFiring), true)
	testenv.Eventually(t, 10*time.Second, "the alert after the silence", func() bool { return len(h.transitions(t)) >= 2 })
}

func jsonField(t testing.TB, body []byte, field string) string {
	t.Helper()
	i := strings.Index(string(body), `"`+field+`":"`)
	if i < 0 {
		t.Fatalf("no %s in %s", field, body)
	}
	rest := string(body)[i+len(field)+4:]
	return rest[:strings.Index(rest, `"`)]
}
