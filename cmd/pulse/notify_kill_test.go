package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/wedsync/pulse/alerts"
	"github.com/wedsync/pulse/alerts/notify"
	"github.com/wedsync/pulse/internal/stream"
	"github.com/wedsync/pulse/internal/testenv"
)

// TestWebhookOutageKill9 is the issue's check on the real binary: `pulse
// serve --roles alerts` delivers to a webhook that answers 503 for 5 s
// while alerts fire and resolve; killed with SIGKILL during the outage and
// started again, it delivers every missed transition exactly once, in
// order, when the webhook returns. The webhook's URL (with its secret)
// appears in no log line.
func TestWebhookOutageKill9(t *testing.T) {
	bin := pulseBinary(t, "")
	ns := testenv.NATS(t)
	_, js := testenv.Connect(t, ns.ClientURL())
	testenv.Streams(t, js, stream.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if _, err := alerts.Ensure(ctx, js, alerts.StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	store := testenv.ClickHouse(t)

	var mu sync.Mutex
	down, failed := true, 0
	var got []string
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		if down {
			failed++
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		var m struct {
			Alerts []struct {
				Status      string            `json:"status"`
				Annotations map[string]string `json:"annotations"`
			} `json:"alerts"`
		}
		if err := json.Unmarshal(body, &m); err != nil {
			t.Errorf("webhook body %s: %v", body, err)
		}
		for _, a := range m.Alerts {
			got = append(got, a.Annotations["alert_id"]+"/"+a.Status)
		}
	}))
	defer hook.Close()
	received := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(got)
	}

	env := []string{
		"PULSE_NATS_URL=" + ns.ClientURL(),
		"PULSE_CLICKHOUSE_DSN=" + testenv.ClickHouseDSN() + "/" + store.Database(),
		"PULSE_LOG_FORMAT=json",
		"PULSE_ALERT_WEBHOOK=ops=" + hook.URL + "/hook/s3cr3t-token",
	}
	args := []string{"serve", "--data-dir", t.TempDir(), "--roles", "alerts"}
	p := startPulse(t, bin, env, args...)
	testenv.Eventually(t, 30*time.Second, "the receiver's consumer", func() bool {
		_, err := js.Consumer(ctx, alerts.DefaultStream, notify.ConsumerName("ops"))
		return err == nil
	})

	publish := func(id, state string) {
		t.Helper()
		start := time.Now().UTC().Add(-time.Minute)
		a := alerts.Alert{ID: id, Kind: alerts.KindAlert, Rule: "server_error", State: state, Severity: "critical",
			Labels: map[string]string{"service": "api", "endpoint": "/api/" + id}, Threshold: 500, StartedAt: start, Count: 1, Message: "m"}
		if state == alerts.StateResolved {
			end := start.Add(time.Second)
			a.ResolvedAt = &end
		}
		data, _ := json.Marshal(a)
		msg := &nats.Msg{Subject: a.Subject(), Header: nats.Header{}, Data: data}
		msg.Header.Set(jetstream.MsgIDHeader, a.MsgID())
		if _, err := js.PublishMsg(ctx, msg); err != nil {
			t.Fatal(err)
		}
	}
	outage := time.Now()
	var want []string
	for i := range 3 {
		id := fmt.Sprintf("k%d", i)
		publish(id, alerts.StateFiring)
		publish(id, alerts.StateResolved)
		want = append(want, id+"/firing", id+"/resolved")
	}
	testenv.Eventually(t, 30*time.Second, "a failed delivery", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return failed > 0
	})
	// The failure is logged once the attempt has returned, a moment after
	// the receiver answered it: kill only after that.
	testenv.Eventually(t, 30*time.Second, "the failing receiver logged", func() bool {
		return strings.Contains(p.stderr.String(), "alert receiver failing")
	})
	p.kill()
	logs := p.stderr.String()
	p = startPulse(t, bin, env, args...)
	time.Sleep(time.Until(outage.Add(5 * time.Second))) // the outage lasts 5 s on purpose
	mu.Lock()
	down = false
	mu.Unlock()
	// The killed process's message waits for its ack wait (30 s) before
	// the new one gets it.
	testenv.Eventually(t, 90*time.Second, "every missed transition", func() bool { return len(received()) >= len(want) })
	publish("marker", alerts.StateFiring)
	testenv.Eventually(t, 30*time.Second, "the marker", func() bool { return slices.Contains(received(), "marker/firing") })
	if g := received(); !slices.Equal(g, append(want, "marker/firing")) {
		t.Errorf("received %v; want each of %v once, in order, then the marker", g, want)
	}
	if err := p.terminate(30 * time.Second); err != nil {
		t.Errorf("exit after SIGTERM: %v", err)
	}
	logs += p.stderr.String()
	if !strings.Contains(logs, `"receiver":"ops"`) || !strings.Contains(logs, "alert receiver failing") {
		t.Errorf("no log line reports the failing receiver ops:\n%s", logs)
	}
	if strings.Contains(logs, "s3cr3t") {
		t.Errorf("the webhook URL's secret is in the log:\n%s", logs)
	}
}
