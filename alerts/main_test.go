package alerts_test

import (
	"context"
	"encoding/json"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/wedsync/pulse/aggregator"
	"github.com/wedsync/pulse/alerts"
	"github.com/wedsync/pulse/alerts/rules"
	"github.com/wedsync/pulse/internal/chstore"
	"github.com/wedsync/pulse/internal/event"
	"github.com/wedsync/pulse/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// The aggregator calls Instant through its EventObserver hook; the store
// pulse serve passes is what the evaluator, API and history need.
var (
	_ aggregator.EventObserver = (*alerts.Instant)(nil)
	_ alerts.Querier           = (*chstore.Store)(nil)
	_ alerts.Inserter          = (*chstore.Store)(nil)
)

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// natsEnv is an in-process NATS server with the alert stream and bucket.
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

// conn is another client of the same server, as another replica has.
func (n *natsEnv) conn(t testing.TB) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	return testenv.Connect(t, n.url)
}

// received is an alert as a subscriber got it.
type received struct {
	subject string
	at      time.Time
	alert   alerts.Alert
}

// collector is a core-NATS subscriber to every alert subject.
type collector struct {
	t   testing.TB
	nc  *nats.Conn
	mu  sync.Mutex
	got []received
	bad atomic.Int64

	settled chan string // settle markers, as the handler sees them
	marks   int         // settle markers sent
}

func collect(t testing.TB, nc *nats.Conn) *collector {
	t.Helper()
	c := &collector{t: t, nc: nc, settled: make(chan string, 1)}
	for _, subj := range []string{alerts.SubjectAlerts + ">", alerts.SubjectScaling + ">"} {
		sub, err := nc.Subscribe(subj, func(m *nats.Msg) {
			if strings.HasPrefix(m.Subject, settleSubject) {
				c.settled <- m.Subject
				return
			}
			now := time.Now()
			var a alerts.Alert
			if err := json.Unmarshal(m.Data, &a); err != nil {
				c.bad.Add(1)
				return
			}
			c.mu.Lock()
			c.got = append(c.got, received{subject: m.Subject, at: now, alert: a})
			c.mu.Unlock()
		})
		if err != nil {
			t.Fatalf("subscribe: %v", err)
		}
		t.Cleanup(func() { _ = sub.Unsubscribe() })
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return c
}

// all returns what arrived so far.
func (c *collector) all() []received {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]received(nil), c.got...)
}

// of returns the alerts of rule in state ("" for any).
func (c *collector) of(rule, state string) []received {
	var out []received
	for _, r := range c.all() {
		if (rule == "" || r.alert.Rule == rule) && (state == "" || r.alert.State == state) {
			out = append(out, r)
		}
	}
	return out
}

// wait polls until rule has n alerts in state.
func (c *collector) wait(rule, state string, n int, timeout time.Duration) []received {
	c.t.Helper()
	testenv.Eventually(c.t, timeout, rule+" "+state+" alerts", func() bool { return len(c.of(rule, state)) >= n })
	return c.of(rule, state)
}

// settle makes sure every message published before the call was
// handled: a round trip through the server after the publisher's own,
// then a marker through the collector's own subscription, which delivers
// in order, so that the handler has seen everything queued before it.
func (c *collector) settle(pub *nats.Conn) {
	c.t.Helper()
	if pub != nil {
		if err := pub.Flush(); err != nil {
			c.t.Fatal(err)
		}
	}
	if err := c.nc.Flush(); err != nil {
		c.t.Fatal(err)
	}
	c.marks++
	mark := settleSubject + strconv.Itoa(c.marks)
	if err := c.nc.Publish(mark, nil); err != nil {
		c.t.Fatal(err)
	}
	for {
		select {
		case got := <-c.settled:
			if got == mark {
				return
			}
		case <-time.After(30 * time.Second):
			c.t.Fatal("the collector did not see its settle marker within 30s")
		}
	}
}

// settleSubject prefixes the collector's own markers (under the alerts
// subjects it subscribes to, so that they queue behind the alerts).
const settleSubject = alerts.SubjectAlerts + "test-settle."

// kvKeys lists the keys of the state bucket under prefix.
func kvKeys(t testing.TB, kv jetstream.KeyValue, prefix string) []string {
	t.Helper()
	keys, err := kv.Keys(testCtx(t))
	if err != nil && !strings.Contains(err.Error(), "no keys found") {
		t.Fatalf("list keys: %v", err)
	}
	var out []string
	for _, k := range keys {
		if strings.HasPrefix(k, prefix) {
			out = append(out, k)
		}
	}
	return out
}

// newInstant, newEvaluator and newHistory build components whose
// configuration the test expects to be valid.
func newInstant(t testing.TB, cfg alerts.InstantConfig, set *rules.Set, js jetstream.JetStream, log zerolog.Logger) *alerts.Instant {
	t.Helper()
	in, err := alerts.NewInstant(cfg, set, js, log)
	if err != nil {
		t.Fatalf("NewInstant: %v", err)
	}
	return in
}

func newEvaluator(t testing.TB, cfg alerts.EvaluatorConfig, set *rules.Set, js jetstream.JetStream, store alerts.Querier, log zerolog.Logger) *alerts.Evaluator {
	t.Helper()
	e, err := alerts.NewEvaluator(cfg, set, js, store, log)
	if err != nil {
		t.Fatalf("NewEvaluator: %v", err)
	}
	return e
}

func newHistory(t testing.TB, cfg alerts.HistoryConfig, js jetstream.JetStream, store alerts.Inserter, log zerolog.Logger) *alerts.History {
	t.Helper()
	h, err := alerts.NewHistory(cfg, js, store, log)
	if err != nil {
		t.Fatalf("NewHistory: %v", err)
	}
	return h
}

func mustParse(t testing.TB, yaml string) *rules.Set {
	t.Helper()
	s, err := rules.Parse([]byte(yaml))
	if err != nil {
		t.Fatalf("parse rules: %v\n%s", err, yaml)
	}
	return s
}

// createAlertsTable creates the history table from its migration, for
// tests that dropped it; testenv's stores are migrated.
func createAlertsTable(t testing.TB, s *chstore.Store) {
	t.Helper()
	ddl, err := os.ReadFile("../schema/migrations/0008_alerts.sql")
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(string(ddl), "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "--") {
			lines = append(lines, l)
		}
	}
	stmt := strings.TrimSuffix(strings.TrimSpace(strings.Join(lines, "\n")), ";")
	stmt = strings.ReplaceAll(stmt, "{{db}}", "`"+s.Database()+"`")
	if err := s.Exec(testCtx(t), stmt); err != nil {
		t.Fatalf("create alerts table: %v", err)
	}
}

// req is a request metric at ts.
func req(ts time.Time, service, endpoint string, status int, ms float64) event.Request {
	return event.Request{Timestamp: ts.UTC(), Service: service, Endpoint: endpoint, Method: "GET",
		StatusCode: uint16(status), ResponseTimeMS: ms, RequestID: "r"}
}

var seq atomic.Uint64

// insertRequests stores reqs as the aggregator does.
func insertRequests(t testing.TB, s *chstore.Store, reqs []event.Request) {
	t.Helper()
	if err := s.Insert(testCtx(t), "", "requests", aggregator.Columns(reqs, seq.Add(1))); err != nil {
		t.Fatalf("insert requests: %v", err)
	}
}

func insertResources(t testing.TB, s *chstore.Store, samples []event.ResourceSample) {
	t.Helper()
	n := len(samples)
	ts, host, res, name := make([]time.Time, n), make([]string, n), make([]string, n), make([]string, n)
	used, capacity, util := make([]float64, n), make([]float64, n), make([]float64, n)
	sq, idx := make([]uint64, n), make([]uint32, n)
	base := seq.Add(uint64(n))
	for i, r := range samples {
		ts[i], host[i], res[i], name[i] = r.Timestamp.UTC(), r.Host, r.Resource, r.Name
		used[i], capacity[i], util[i] = r.Used, r.Capacity, r.Utilisation
		sq[i], idx[i] = base+uint64(i), 0
	}
	err := s.Insert(testCtx(t), "", "resources", []chstore.Column{
		{Name: "ts", Values: ts}, {Name: "host", Values: host}, {Name: "resource", Values: res}, {Name: "name", Values: name},
		{Name: "used", Values: used}, {Name: "capacity", Values: capacity}, {Name: "utilisation", Values: util},
		{Name: "stream_seq", Values: sq}, {Name: "seq_idx", Values: idx},
	})
	if err != nil {
		t.Fatalf("insert resources: %v", err)
	}
}

func insertHealth(t testing.TB, s *chstore.Store, results []event.HealthResult) {
	t.Helper()
	n := len(results)
	ts, comp, target, status, details := make([]time.Time, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	rt, sq, idx := make([]float64, n), make([]uint64, n), make([]uint32, n)
	base := seq.Add(uint64(n))
	for i, r := range results {
		ts[i], comp[i], target[i], status[i], details[i], rt[i] = r.Timestamp.UTC(), r.Component, r.Target, r.Status, "{}", r.ResponseTimeMS
		sq[i], idx[i] = base+uint64(i), 0
	}
	err := s.Insert(testCtx(t), "", "health_checks", []chstore.Column{
		{Name: "ts", Values: ts}, {Name: "component", Values: comp}, {Name: "target", Values: target}, {Name: "status", Values: status},
		{Name: "response_time_ms", Values: rt}, {Name: "details", Values: details},
		{Name: "stream_seq", Values: sq}, {Name: "seq_idx", Values: idx},
	})
	if err != nil {
		t.Fatalf("insert health checks: %v", err)
	}
}

// clock is a settable clock.
type clock struct{ ns atomic.Int64 }

func newClock(t time.Time) *clock {
	c := &clock{}
	c.Set(t)
	return c
}

func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) Set(t time.Time)         { c.ns.Store(t.UnixNano()) }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// nop is the logger of components under test.
var nop = zerolog.Nop()
