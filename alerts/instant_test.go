package alerts_test

import (
	"context"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wedsync/pulse/alerts"
	"github.com/wedsync/pulse/internal/event"
	"github.com/wedsync/pulse/internal/testenv"
)

const serverErrorRule = `
instant:
  - name: server_error
    field: status_code
    op: ">="
    value: 500
    group_by: [service, endpoint]
    cooldown: %s
    severity: critical
  - name: slow_response
    field: response_time_ms
    op: ">"
    value: 5000
    cooldown: %s
`

func instantRules(t testing.TB, cooldown time.Duration) string {
	return fmt.Sprintf(serverErrorRule, cooldown, cooldown)
}

// batches splits n requests made by mk into batches of size, as the
// aggregator's decoded messages.
func batches(n, size int, mk func(i int) event.Request) [][]event.Request {
	var out [][]event.Request
	for i := 0; i < n; i += size {
		b := make([]event.Request, 0, size)
		for j := i; j < min(i+size, n); j++ {
			b = append(b, mk(j))
		}
		out = append(out, b)
	}
	return out
}

// TestBurst is the check: a burst of 10,000 5xx responses on one
// endpoint gives exactly one firing alert on pulse.alerts.> within a
// second, then, once errors stop, exactly one resolved alert after the
// cooldown, carrying the count of all 10,000. The alerts are also kept in
// the stream for replay, deduplicated by Nats-Msg-Id.
func TestBurst(t *testing.T) {
	n := newNATS(t)
	c := collect(t, n.nc)
	const cooldown = time.Second
	reg := prometheus.NewRegistry()
	in := newInstant(t, alerts.InstantConfig{Registerer: reg}, mustParse(t, instantRules(t, cooldown)), n.js, nop)
	testenv.Run(t, in.Run)
	// Run is up once it has swept the bucket; an event before that only
	// waits in memory, but the latency check should not measure start-up.
	in.Observe([]event.Request{req(time.Now(), "warmup", "/warmup", 200, 1)})
	testenv.Eventually(t, 10*time.Second, "instant evaluator running", func() bool { return in.Stats().Observed.Load() > 0 })

	now := time.Now()
	start := time.Now()
	var last time.Time // when the last batch was handed over
	for _, b := range batches(10_000, 500, func(i int) event.Request {
		return req(now, "api", "/api/payments", 500+i%4, 120)
	}) {
		last = time.Now()
		in.Observe(b)
	}
	observed := time.Since(start)
	// How fast is BenchmarkAlertLatency's figure (make bench); here the
	// alert must come, on a loaded machine too.
	fired := c.wait("server_error", alerts.StateFiring, 1, 30*time.Second)
	latency := fired[0].at.Sub(start)
	t.Logf("10,000 events observed in %s; firing alert received %s after the first (count %d)", observed, latency, fired[0].alert.Count)
	f := fired[0]
	// /metrics counts the alert by rule and severity.
	testenv.Eventually(t, 5*time.Second, "pulse_alerts_fired_total{rule=server_error} at 1", func() bool {
		return testenv.Counter(t, reg, "pulse_alerts_fired_total", "evaluator", "instant", "rule", "server_error", "severity", "critical") == 1
	})
	if v := testenv.Counter(t, reg, "pulse_alerts_fired_total", "rule", "slow_response"); v != 0 {
		t.Errorf("fired{slow_response} = %v; want 0", v)
	}
	if f.subject != "pulse.alerts.critical.server_error" {
		t.Errorf("got subject %q; want pulse.alerts.critical.server_error", f.subject)
	}
	if f.alert.Count < 1 || f.alert.Count > 10_000 {
		t.Errorf("firing count %d; want between 1 and 10000", f.alert.Count)
	}
	if f.alert.Labels["service"] != "api" || f.alert.Labels["endpoint"] != "/api/payments" {
		t.Errorf("got labels %v; want service=api endpoint=/api/payments", f.alert.Labels)
	}
	if f.alert.Value == nil || *f.alert.Value != 503 || f.alert.Threshold != 500 || f.alert.ResolvedAt != nil {
		t.Errorf("got value %v threshold %v resolved_at %v; want the worst status 503, 500, null", f.alert.Value, f.alert.Threshold, f.alert.ResolvedAt)
	}

	resolved := c.wait("server_error", alerts.StateResolved, 1, 10*time.Second)
	r := resolved[0].alert
	if r.ID != f.alert.ID || r.Count != 10_000 || r.ResolvedAt == nil {
		t.Errorf("resolved alert %+v; want id %s, count 10000 and resolved_at", r, f.alert.ID)
	}
	if r.ResolvedAt != nil && r.ResolvedAt.Before(last.Add(cooldown)) {
		t.Errorf("resolved at %s, %s after the last error; want at least the cooldown %s", r.ResolvedAt, r.ResolvedAt.Sub(last), cooldown)
	}
	if !strings.Contains(r.Message, "10000 requests") {
		t.Errorf("message %q does not give the count", r.Message)
	}
	// Once the record is gone the evaluator has nothing more to publish.
	testenv.Eventually(t, 5*time.Second, "alert state deleted", func() bool { return len(kvKeys(t, n.kv, "instant.")) == 0 })
	c.settle(nil)
	if got := len(c.of("server_error", "")); got != 2 {
		t.Errorf("got %d server_error messages; want exactly 2 (one firing, one resolved)", got)
	}
	if got := len(c.of("slow_response", "")); got != 0 {
		t.Errorf("got %d slow_response messages for requests of 120 ms", got)
	}
	// The stream also keeps the collector's settle markers, which are
	// plain publishes: the collector can see one before the stream stored
	// it, so the count is read once it has caught up.
	var msgs int64
	testenv.Eventually(t, 5*time.Second, "the alert stream holds the markers", func() bool {
		st, err := n.js.Stream(testCtx(t), alerts.DefaultStream)
		if err != nil {
			t.Fatal(err)
		}
		msgs = int64(st.CachedInfo().State.Msgs) - int64(c.marks)
		return msgs >= 2
	})
	if msgs != 2 {
		t.Errorf("stream %s holds %d alert messages; want 2", alerts.DefaultStream, msgs)
	}
	if s := in.Stats(); s.Fired.Load() != 1 || s.Resolved.Load() != 1 || s.Matched.Load() != 10_000 {
		t.Errorf("stats fired %d resolved %d matched %d; want 1, 1, 10000", s.Fired.Load(), s.Resolved.Load(), s.Matched.Load())
	}
}

// TestGroups: matches are grouped by rule, service and endpoint; a rule
// without group_by has one group. A group that fires again after
// resolving is a new alert with a new id.
func TestGroups(t *testing.T) {
	n := newNATS(t)
	c := collect(t, n.nc)
	set := mustParse(t, `
instant:
  - name: server_error
    field: status_code
    op: ">="
    value: 500
    cooldown: 1s
  - name: any_slow
    field: response_time_ms
    op: ">"
    value: 5000
    group_by: []
    filters: {service: web}
    cooldown: 1s
`)
	in := newInstant(t, alerts.InstantConfig{}, set, n.js, nop)
	testenv.Run(t, in.Run)
	now := time.Now()
	in.Observe([]event.Request{
		req(now, "web", "/a", 500, 6000), req(now, "web", "/b", 502, 7000), req(now, "api", "/a", 503, 9000),
		req(now, "web", "/a", 200, 10), req(now, "web", "/a", 504, 10),
	})
	c.wait("server_error", alerts.StateFiring, 3, 5*time.Second)
	slow := c.wait("any_slow", alerts.StateFiring, 1, 5*time.Second)
	if l := slow[0].alert.Labels; l["service"] != "web" || l["endpoint"] != "" {
		t.Errorf("any_slow labels %v; want only the filter's service=web", l)
	}
	res := c.wait("server_error", alerts.StateResolved, 3, 10*time.Second)
	counts := map[string]uint64{}
	for _, r := range res {
		counts[r.alert.Labels["service"]+" "+r.alert.Labels["endpoint"]] = r.alert.Count
	}
	if counts["web /a"] != 2 || counts["web /b"] != 1 || counts["api /a"] != 1 {
		t.Errorf("resolved counts %v; want web /a 2, web /b 1, api /a 1", counts)
	}
	if r := c.wait("any_slow", alerts.StateResolved, 1, 10*time.Second); r[0].alert.Count != 2 {
		t.Errorf("any_slow count %d; want 2 (the api request is filtered out)", r[0].alert.Count)
	}
	// Again: a new alert.
	in.Observe([]event.Request{req(time.Now(), "web", "/a", 500, 10)})
	again := c.wait("server_error", alerts.StateFiring, 4, 5*time.Second)
	ids := map[string]bool{}
	for _, a := range again {
		ids[a.alert.ID] = true
	}
	if len(ids) != 4 {
		t.Errorf("got %d distinct ids for 4 firing alerts; want 4", len(ids))
	}
}

// TestPoison: events no validator would let through, and concurrent
// calls, cannot crash or wedge Observe; the evaluator still fires for the
// next valid event, and every published alert is valid JSON.
func TestPoison(t *testing.T) {
	n := newNATS(t)
	c := collect(t, n.nc)
	in := newInstant(t, alerts.InstantConfig{}, mustParse(t, instantRules(t, time.Minute)), n.js, nop)
	testenv.Run(t, in.Run)
	long := strings.Repeat("/x", 100_000)
	poison := []event.Request{
		{}, // zero: status 0, no service, no endpoint
		{StatusCode: 65535, ResponseTimeMS: math.NaN(), Service: "a.b.*.>", Endpoint: "\x00\xff\xfe"},
		{StatusCode: 500, ResponseTimeMS: math.Inf(1), Service: "\u202e\x1b[31m", Endpoint: long},
		{StatusCode: 599, ResponseTimeMS: math.Inf(-1), Timestamp: time.Unix(-1<<40, 0)},
		{StatusCode: 500, ResponseTimeMS: -1, Service: strings.Repeat("s", 10_000), Endpoint: "/\u00e9"},
		{StatusCode: 500, ResponseTimeMS: math.MaxFloat64, Endpoint: string([]byte{0xc3, 0x28})},
	}
	in.Observe(nil)
	in.Observe([]event.Request{})
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				p := poison[i%len(poison)]
				p.Endpoint = fmt.Sprintf("%s/%d", p.Endpoint, i%70)
				in.Observe([]event.Request{p})
			}
		}()
	}
	wg.Wait()
	if p := in.Stats().Panics.Load(); p != 0 {
		t.Errorf("%d panics in Observe", p)
	}
	in.Observe([]event.Request{req(time.Now(), "web", "/after-poison", 500, 1)})
	testenv.Eventually(t, 10*time.Second, "alert for the valid event after the poison", func() bool {
		for _, r := range c.of("server_error", alerts.StateFiring) {
			if r.alert.Labels["endpoint"] == "/after-poison" {
				return true
			}
		}
		return false
	})
	if bad := c.bad.Load(); bad != 0 {
		t.Errorf("%d alert messages were not valid JSON", bad)
	}
	for _, r := range c.all() {
		if len(r.alert.Labels["endpoint"]) > event.MaxEndpointLen || len(r.alert.Labels["service"]) > event.MaxServiceLen {
			t.Errorf("labels not bounded: endpoint %d bytes, service %d bytes", len(r.alert.Labels["endpoint"]), len(r.alert.Labels["service"]))
		}
		if r.alert.Value != nil && (math.IsNaN(*r.alert.Value) || math.IsInf(*r.alert.Value, 0)) {
			t.Errorf("non-finite value published: %v", *r.alert.Value)
		}
	}
}

// TestInstantRestart: an evaluator stopped while its alert fires and a
// new one on the same bucket do not fire it again; the new one adds its
// matches to the same alert and resolves it, with the count of both.
func TestInstantRestart(t *testing.T) {
	n := newNATS(t)
	c := collect(t, n.nc)
	set := mustParse(t, instantRules(t, 2*time.Second))
	nc1, js1 := n.conn(t)
	first := newInstant(t, alerts.InstantConfig{}, set, js1, nop)
	stop := testenv.Run(t, first.Run)
	first.Observe([]event.Request{req(time.Now(), "api", "/x", 500, 1), req(time.Now(), "api", "/x", 500, 1)})
	fired := c.wait("server_error", alerts.StateFiring, 1, 5*time.Second)
	first.Observe([]event.Request{req(time.Now(), "api", "/x", 500, 1)})
	testenv.Eventually(t, 5*time.Second, "third match handled", func() bool { return first.Stats().Matched.Load() == 3 })
	stop()
	nc1.Close() // the first process is gone

	_, js2 := n.conn(t)
	second := newInstant(t, alerts.InstantConfig{}, set, js2, nop)
	testenv.Run(t, second.Run)
	second.Observe([]event.Request{req(time.Now(), "api", "/x", 502, 1)})
	res := c.wait("server_error", alerts.StateResolved, 1, 10*time.Second)
	c.settle(nil)
	if got := len(c.of("server_error", alerts.StateFiring)); got != 1 {
		t.Errorf("got %d firing messages; want 1 (no duplicate after the restart)", got)
	}
	if res[0].alert.ID != fired[0].alert.ID || res[0].alert.Count != 4 {
		t.Errorf("resolved id %s count %d; want id %s and count 4 (3 before the restart, 1 after)", res[0].alert.ID, res[0].alert.Count, fired[0].alert.ID)
	}
	if second.Stats().Joined.Load() != 1 || second.Stats().Fired.Load() != 0 {
		t.Errorf("second evaluator joined %d, fired %d; want 1 and 0", second.Stats().Joined.Load(), second.Stats().Fired.Load())
	}
}

// TestInstantReplicas: two aggregator replicas seeing errors of the same
// group fire one alert between them (create-if-absent on its key) and
// resolve it once, with the sum of their counts.
func TestInstantReplicas(t *testing.T) {
	n := newNATS(t)
	c := collect(t, n.nc)
	set := mustParse(t, instantRules(t, 2*time.Second))
	var replicas []*alerts.Instant
	for i := 0; i < 2; i++ {
		_, js := n.conn(t)
		in := newInstant(t, alerts.InstantConfig{FlushEvery: 200 * time.Millisecond}, set, js, nop)
		testenv.Run(t, in.Run)
		replicas = append(replicas, in)
	}
	var wg sync.WaitGroup
	for i, in := range replicas {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 20; j++ {
				in.Observe([]event.Request{req(time.Now(), "api", "/shared", 500, 1)})
				time.Sleep(10 * time.Millisecond) // spread over a few rounds
			}
			_ = i
		}()
	}
	wg.Wait()
	res := c.wait("server_error", alerts.StateResolved, 1, 15*time.Second)
	testenv.Eventually(t, 5*time.Second, "alert state deleted", func() bool { return len(kvKeys(t, n.kv, "instant.")) == 0 })
	c.settle(nil)
	if got := len(c.of("server_error", alerts.StateFiring)); got != 1 {
		t.Errorf("got %d firing messages from two replicas; want 1", got)
	}
	if got := len(c.of("server_error", alerts.StateResolved)); got != 1 {
		t.Errorf("got %d resolved messages from two replicas; want 1", got)
	}
	if res[0].alert.Count != 40 {
		t.Errorf("resolved count %d; want 40 (20 from each replica)", res[0].alert.Count)
	}
	fired := replicas[0].Stats().Fired.Load() + replicas[1].Stats().Fired.Load()
	joined := replicas[0].Stats().Joined.Load() + replicas[1].Stats().Joined.Load()
	if fired != 1 || joined < 1 {
		t.Errorf("replicas fired %d and joined %d; want 1 and at least 1", fired, joined)
	}
}

// TestObserveWithoutRun: Observe before Run (or without NATS) neither
// blocks nor grows without bound.
func TestObserveWithoutRun(t *testing.T) {
	in := newInstant(t, alerts.InstantConfig{MaxGroups: 10}, mustParse(t, instantRules(t, time.Minute)), nil, nop)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 1000; i++ {
			in.Observe([]event.Request{req(time.Now(), "api", fmt.Sprintf("/e/%d", i), 500, 1)})
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Observe blocked without Run")
	}
	if got := in.Stats().Overflow.Load(); got != 990 {
		t.Errorf("got %d overflow matches; want 990 (1000 groups, 10 tracked)", got)
	}
}

// TestInstantNoRules: without instant rules Run just waits and Observe
// does nothing.
func TestInstantNoRules(t *testing.T) {
	in := newInstant(t, alerts.InstantConfig{}, mustParse(t, "window:\n  - {name: w, metric: p95_ms, threshold: 1}\n"), nil, nop)
	in.Observe([]event.Request{req(time.Now(), "api", "/", 500, 1)})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := in.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if in.Stats().Observed.Load() != 0 {
		t.Errorf("observed %d requests without rules", in.Stats().Observed.Load())
	}
}

// TestObserveAllocs: a request that matches no rule costs no allocation,
// the contract the aggregator relies on.
func TestObserveAllocs(t *testing.T) {
	in := newInstant(t, alerts.InstantConfig{}, mustParse(t, instantRules(t, time.Minute)), nil, nop)
	reqs := make([]event.Request, 1000)
	for i := range reqs {
		reqs[i] = req(time.Now(), "web", "/api/clients/:id", 200, 42)
	}
	if a := testing.AllocsPerRun(100, func() { in.Observe(reqs) }); a != 0 {
		t.Errorf("Observe of 1000 non-matching requests allocates %v times; want 0", a)
	}
	bad := []event.Request{req(time.Now(), "web", "/x", 500, 1)}
	in.Observe(bad) // the group exists now
	if a := testing.AllocsPerRun(100, func() { in.Observe(bad) }); a != 0 {
		t.Errorf("Observe of a match of a known group allocates %v times; want 0", a)
	}
}
