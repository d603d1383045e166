package query_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"reflect"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/wedsync/pulse/internal/chstore"
	"github.com/wedsync/pulse/internal/event"
	"github.com/wedsync/pulse/internal/probe"
	"github.com/wedsync/pulse/internal/stream"
	"github.com/wedsync/pulse/internal/testenv"
	"github.com/wedsync/pulse/query"
)

// TestHealthStoreDown stops ClickHouse answering (the proxy Pulse reaches
// it through closes, so its port refuses): health still answers 200 from
// the probes' latest results in memory, with every component, the store
// marked down and the stored figures marked stale; performance answers
// 503 with Retry-After.
func TestHealthStoreDown(t *testing.T) {
	direct := testenv.ClickHouse(t) // a fresh database, dropped over a direct connection
	u, err := url.Parse(testenv.ClickHouseDSN())
	if err != nil {
		t.Fatal(err)
	}
	proxy := testenv.StartTCPProxy(t, u.Host)
	store, err := chstore.Open(ctx(t), "clickhouse://"+proxy.Addr()+"/"+direct.Database(), zerolog.Nop())
	if err != nil {
		t.Fatalf("open ClickHouse through the proxy: %v", err)
	}
	t.Cleanup(func() { store.Close() })
	now := time.Now().UTC()
	insertRequests(t, direct, currentRequests(now))

	// Real probes of a real NATS and of ClickHouse through the proxy.
	ns := testenv.NATS(t)
	_, js := testenv.Connect(t, ns.ClientURL())
	testenv.Streams(t, js, stream.Config{})
	runner, err := probe.New(probe.Config{Interval: 200 * time.Millisecond, JetStream: js, ClickHouse: store,
		Metrics: probe.StoreMetrics{Store: store}}, probe.JetStreamPublisher{JS: js}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	testenv.Run(t, runner.Run)
	clickhouseTarget := func() string {
		for _, h := range runner.Latest() {
			if h.Component == "pipeline" && h.Target == "clickhouse" {
				return h.Status
			}
		}
		return ""
	}
	testenv.Eventually(t, 20*time.Second, "a first probe round with ClickHouse healthy", func() bool {
		return len(runner.Latest()) >= len(event.Components) && clickhouseTarget() == event.StatusHealthy
	})

	e, _ := newServer(t, query.Config{Probes: runner, QueryTimeout: 5 * time.Second, RetryAfter: 7 * time.Second}, store, nil)
	var up query.HealthResponse
	getJSON(t, e, "/api/admin/system/health", &up)
	if up.Source != "store" || up.Store.Status != "up" || up.Stale != nil || up.PerformanceMetrics.RequestCount == 0 {
		t.Fatalf("store up: got source %q, store %+v, stale %v, %d requests; want store, up, nothing stale, the requests",
			up.Source, up.Store, up.Stale, up.PerformanceMetrics.RequestCount)
	}

	proxy.Close()
	testenv.Eventually(t, 20*time.Second, "the probes to see ClickHouse down", func() bool {
		return clickhouseTarget() == event.StatusCritical
	})
	var down query.HealthResponse
	r := getJSON(t, e, "/api/admin/system/health?timeframe=24h", &down)
	if down.Source != "probes" || down.Store.Status != "down" || down.Store.Reason == "" {
		t.Errorf("store down: got source %q, store %+v; want probes, down with a reason", down.Source, down.Store)
	}
	if len(down.Components) != len(event.Components) {
		t.Fatalf("got %d components; want %d: %s", len(down.Components), len(event.Components), r.Body)
	}
	for _, c := range down.Components {
		if c.LastChecked == nil || time.Since(*c.LastChecked) > 10*time.Second {
			t.Errorf("component %s: last_checked %v; want a probe result of the last seconds", c.Name, c.LastChecked)
		}
	}
	pipeline := down.Components[len(down.Components)-1]
	var ch *query.TargetHealth
	for i := range pipeline.Targets {
		if pipeline.Targets[i].Name == "clickhouse" {
			ch = &pipeline.Targets[i]
		}
	}
	if pipeline.Name != "pipeline" || ch == nil || ch.Status != event.StatusCritical || down.OverallStatus != event.StatusCritical {
		t.Errorf("got overall %q, pipeline %+v; want critical with target clickhouse critical", down.OverallStatus, pipeline)
	}
	// The stored figures are the last read, marked stale with their time.
	if !reflect.DeepEqual(down.PerformanceMetrics, up.PerformanceMetrics) || down.Stale["performance_metrics"] == "" || down.Stale["uptime"] == "" {
		t.Errorf("got performance_metrics %+v, stale %v; want the last figures %+v, marked stale", down.PerformanceMetrics, down.Stale, up.PerformanceMetrics)
	}
	var raw map[string]any
	if err := json.Unmarshal(r.Body, &raw); err != nil || raw["timeframe"] != "24h" {
		t.Errorf("got timeframe %v; want 24h echoed", raw["timeframe"])
	}

	// Other routes answer 503 with Retry-After, as before.
	p := testenv.Get(t, e, "/api/admin/system/performance", adminToken)
	if p.Status != http.StatusServiceUnavailable || p.Header.Get("Retry-After") != "7" {
		t.Errorf("performance with the store down: got %d, Retry-After %q; want 503, 7", p.Status, p.Header.Get("Retry-After"))
	}
	// Without the probes' results, health is 503 too.
	bare, _ := newServer(t, query.Config{QueryTimeout: 5 * time.Second}, store, nil)
	if b := testenv.Get(t, bare, "/api/admin/system/health", adminToken); b.Status != http.StatusServiceUnavailable || b.Header.Get("Retry-After") == "" {
		t.Errorf("health without probes, store down: got %d; want 503 with Retry-After", b.Status)
	}
}
