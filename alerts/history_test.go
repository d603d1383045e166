package alerts_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/wedsync/pulse/alerts"
	"github.com/wedsync/pulse/internal/testenv"
)

// TestHistory: the writer copies the alert stream into ClickHouse on both
// backends, terminates messages that are not alerts, and QueryHistory
// returns each transition once although a redelivery stored it twice.
func TestHistory(t *testing.T) {
	for name, store := range testenv.Backends(t) {
		t.Run(name, func(t *testing.T) {
			createAlertsTable(t, store)
			n := newNATS(t)
			started := time.Now().UTC().Truncate(time.Second).Add(-time.Minute)
			resolvedAt := started.Add(30 * time.Second)
			v := 0.25
			firing := alerts.Alert{ID: "a1", Kind: alerts.KindAlert, Rule: "errors", State: alerts.StateFiring, Severity: "critical",
				Labels: map[string]string{"service": "api", "note": "quote ' and \\ and \t"}, Value: &v, Threshold: 0.1,
				StartedAt: started, Count: 3, Message: "errors: 25% above 10%"}
			resolved := firing
			resolved.State, resolved.ResolvedAt, resolved.Value, resolved.Count = alerts.StateResolved, &resolvedAt, nil, 4
			scale := alerts.Alert{ID: "s1", Kind: alerts.KindScaling, Rule: "more", State: alerts.StateFiring, Severity: "info",
				Labels: map[string]string{}, Threshold: 100, StartedAt: started, Count: 1, Direction: "up", Factor: 1.5}
			pub := func(a alerts.Alert, msgID string) {
				t.Helper()
				data, _ := json.Marshal(a)
				m := &nats.Msg{Subject: a.Subject(), Header: nats.Header{}, Data: data}
				m.Header.Set(jetstream.MsgIDHeader, msgID)
				if _, err := n.js.PublishMsg(testCtx(t), m); err != nil {
					t.Fatal(err)
				}
			}
			pub(firing, "a1/firing")
			pub(firing, "a1/firing")       // a re-sent transition: dropped by the stream
			pub(firing, "a1/firing-again") // as a redelivery would: stored twice
			pub(resolved, "a1/resolved")
			pub(scale, "s1/firing")
			if _, err := n.js.Publish(testCtx(t), "pulse.alerts.critical.junk", []byte(`{"id":""}`)); err != nil {
				t.Fatal(err)
			}
			h := newHistory(t, alerts.HistoryConfig{MaxWait: 100 * time.Millisecond}, n.js, store, nop)
			testenv.Run(t, h.Run)
			testenv.Eventually(t, 20*time.Second, "history written", func() bool {
				return h.Stats().Rows.Load() == 4 && h.Stats().Malformed.Load() == 1
			})
			if got := testenv.Count(t, store, "SELECT count() FROM "+store.T(alerts.HistoryTable)); got != 4 {
				t.Errorf("%d rows; want 4", got)
			}
			got, err := alerts.QueryHistory(testCtx(t), store, alerts.HistoryQuery{Since: started.Add(-time.Hour)})
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 3 {
				t.Fatalf("QueryHistory returned %d alerts; want 3 (a1 firing, a1 resolved, s1 firing): %+v", len(got), got)
			}
			byKey := map[string]alerts.Alert{}
			for _, a := range got {
				byKey[a.ID+"/"+a.State] = a
			}
			r := byKey["a1/resolved"]
			if r.ResolvedAt == nil || !r.ResolvedAt.Equal(resolvedAt) || r.Value != nil || r.Count != 4 || r.Labels["note"] != "quote ' and \\ and \t" {
				t.Errorf("resolved row %+v; want resolved_at %v, null value, count 4, labels intact", r, resolvedAt)
			}
			f := byKey["a1/firing"]
			if f.ResolvedAt != nil || f.Value == nil || *f.Value != 0.25 || !f.StartedAt.Equal(started) || f.Message != firing.Message {
				t.Errorf("firing row %+v; want no resolved_at, value 0.25, started_at %v", f, started)
			}
			if s := byKey["s1/firing"]; s.Kind != "scaling" || s.Direction != "up" || s.Factor != 1.5 {
				t.Errorf("scaling row %+v; want kind scaling, up, 1.5", s)
			}
			only, err := alerts.QueryHistory(testCtx(t), store, alerts.HistoryQuery{State: "resolved", Severity: "critical", Since: started.Add(-time.Hour), Limit: 10})
			if err != nil || len(only) != 1 || only[0].ID != "a1" {
				t.Errorf("filtered history %+v, %v; want a1 resolved alone", only, err)
			}
		})
	}
}
