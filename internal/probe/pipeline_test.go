package probe

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/wedsync/pulse/internal/chstore"
	"github.com/wedsync/pulse/internal/event"
	"github.com/wedsync/pulse/internal/stream"
	"github.com/wedsync/pulse/internal/testenv"
)

func pipelineRun(t *testing.T, p *pipelineProbe) map[string]event.HealthResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	hs := p.Probe(ctx)
	valid(t, hs...)
	out := map[string]event.HealthResult{}
	for _, h := range hs {
		if h.Component != "pipeline" {
			t.Errorf("component %q; want pipeline", h.Component)
		}
		out[h.Target] = h
	}
	if len(out) != 3 {
		t.Fatalf("targets %v; want nats, clickhouse, redis", out)
	}
	return out
}

func redisURL() string {
	if u := os.Getenv("PULSE_TEST_REDIS_URL"); u != "" {
		return u
	}
	return "redis://127.0.0.1:6379/0"
}

func newRedis(t *testing.T, url string) redis.UniversalClient {
	t.Helper()
	opts, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	opts.MaxRetries = -1
	c := redis.NewClient(opts)
	t.Cleanup(func() { c.Close() })
	return c
}

// TestPipelineProbe checks the lag rules of the ingest consumer, and
// ClickHouse, Redis and NATS going away.
func TestPipelineProbe(t *testing.T) {
	t.Parallel()
	ns := testenv.NATS(t)
	_, js := testenv.Connect(t, ns.ClientURL())
	testenv.Streams(t, js, stream.Config{})
	chs := testenv.StartClickHouseServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	store, err := chstore.Open(ctx, chs.DSN("probe"), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()

	cfg := testConfig(Config{JetStream: js, ClickHouse: store, Redis: newRedis(t, redisURL()), LagDegraded: 5, LagCritical: 10})
	p := newPipelineProbe(cfg)
	publish := func(n int) {
		t.Helper()
		for range n {
			if _, err := js.Publish(ctx, stream.SubjectHealth+"api", []byte(`[]`)); err != nil {
				t.Fatal(err)
			}
		}
	}
	lag := func(what string, r map[string]event.HealthResult, status string, lag float64, consumer any) {
		t.Helper()
		h := r["nats"]
		wantStatus(t, what, h, status)
		d := details(t, h)
		if d["lag"] != lag || d["consumer"] != consumer || d["connection"] != "connected" {
			t.Errorf("%s: details %v; want lag %v, consumer %v, connected", what, d, lag, consumer)
		}
	}

	r := pipelineRun(t, p)
	lag("empty, no consumer", r, event.StatusHealthy, 0, "not found")
	wantStatus(t, "clickhouse", r["clickhouse"], event.StatusHealthy)
	wantStatus(t, "redis", r["redis"], event.StatusHealthy)

	publish(6)
	lag("6 waiting, no consumer", pipelineRun(t, p), event.StatusDegraded, 6, "not found")

	cons, err := js.CreateOrUpdateConsumer(ctx, "PULSE_INGEST", jetstream.ConsumerConfig{Durable: "aggregator", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(4)
	if err != nil {
		t.Fatal(err)
	}
	var got []jetstream.Msg
	for m := range batch.Messages() {
		got = append(got, m)
	}
	r = pipelineRun(t, p)
	lag("2 pending + 4 ack pending", r, event.StatusDegraded, 6, nil)
	if d := details(t, r["nats"]); d["num_pending"] != float64(2) || d["num_ack_pending"] != float64(4) {
		t.Errorf("details %v; want num_pending 2, num_ack_pending 4", d)
	}
	for _, m := range got {
		m.Ack()
	}
	testenv.Eventually(t, 5*time.Second, "acks applied", func() bool {
		return details(t, pipelineRun(t, p)["nats"])["lag"] == float64(2)
	})
	lag("2 pending", pipelineRun(t, p), event.StatusHealthy, 2, nil)
	publish(8)
	lag("10 pending", pipelineRun(t, p), event.StatusCritical, 10, nil)

	other := newPipelineProbe(testConfig(Config{JetStream: js, IngestStream: "NO_SUCH_STREAM"}))
	h := pipelineRun(t, other)["nats"]
	wantStatus(t, "stream missing", h, event.StatusCritical)
	if d := details(t, h); d["cause"] != "not found" {
		t.Errorf("stream missing: details %v", d)
	}

	down := newPipelineProbe(testConfig(Config{Redis: newRedis(t, "redis://"+closedAddr(t)+"/0")}))
	r = pipelineRun(t, down)
	wantStatus(t, "redis down", r["redis"], event.StatusDegraded)
	if d := details(t, r["redis"]); d["error"] != "unreachable" || d["cause"] != "connection refused" {
		t.Errorf("redis down: details %v", d)
	}
	for _, target := range []string{"nats", "clickhouse"} {
		wantStatus(t, target+" not configured", r[target], event.StatusUnknown)
	}

	chs.Stop()
	r = pipelineRun(t, p)
	wantStatus(t, "clickhouse stopped", r["clickhouse"], event.StatusCritical)
	if d := details(t, r["clickhouse"]); d["error"] != "unreachable" {
		t.Errorf("clickhouse stopped: details %v", d)
	}
	ns.Shutdown()
	ns.WaitForShutdown()
	r = pipelineRun(t, p)
	wantStatus(t, "nats stopped", r["nats"], event.StatusCritical)
	// Whether the client noticed before the probe or during its round trip.
	if d := details(t, r["nats"]); d["error"] != "disconnected" && d["error"] != "unreachable" {
		t.Errorf("nats stopped: details %v", d)
	}
}
