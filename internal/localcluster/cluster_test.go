package localcluster

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/wedsync/pulse/internal/chstore"
	"github.com/wedsync/pulse/internal/testenv"
)

// The cluster fault suite: the whole topology as real processes on
// loopback (see Start), one fault at a time under load, and then every
// event the edges answered 202 is in ClickHouse exactly once, on each
// replica and through the Distributed tables, compared by request ID.

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

var pulseBin struct {
	once sync.Once
	path string
	err  error
	dir  string
}

// startCluster builds pulse once per test binary and starts a cluster
// that the test's cleanup stops.
func startCluster(t *testing.T, cfg Config) *Cluster {
	t.Helper()
	pulseBin.once.Do(func() {
		pulseBin.dir, pulseBin.err = os.MkdirTemp("", "pulse-cluster-bin-")
		if pulseBin.err == nil {
			pulseBin.path = pulseBin.dir + "/pulse"
			pulseBin.err = Build(context.Background(), pulseBin.path)
		}
	})
	if pulseBin.err != nil {
		t.Fatal(pulseBin.err)
	}
	cfg.Dir, cfg.Pulse = t.TempDir(), pulseBin.path
	cfg.Progress = testWriter{t}
	t0 := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		// The logs outlive the test's temporary folder, for a post-mortem.
		if keep, err := os.MkdirTemp("", "pulse-cluster-failed-"); err == nil {
			if err := os.CopyFS(keep, os.DirFS(cfg.Dir+"/log")); err == nil {
				t.Logf("process logs kept in %s", keep)
			}
		}
		for i := range c.ClickHouse {
			b, _ := os.ReadFile(fmt.Sprintf("%s/clickhouse-%d/log/clickhouse-server.err.log", cfg.Dir, i+1))
			if len(b) > 3000 {
				b = b[len(b)-3000:]
			}
			t.Logf("clickhouse-%d errors:\n%s", i+1, b)
		}
	})
	t.Logf("cluster up in %s", time.Since(t0).Round(100*time.Millisecond))
	return c
}

// testWriter logs each write through t.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// load posts events in batches of perRequest to the ingest processes in
// turn, at most rate events a second. A batch that is not answered 202 is
// sent again, with the same Idempotency-Key, to the next edge until it is
// (or the load is stopped): the edges then store it at most once.
type load struct {
	c          *Cluster
	prefix     string
	total      int
	perRequest int
	rate       int

	stop    <-chan struct{} // see start
	done    chan struct{}
	started time.Time

	accepted atomic.Int64 // events answered 202
	retries  atomic.Int64 // requests sent again after an error or a non-202
	mu       sync.Mutex
	answers  map[int]int // status code -> count (0: transport error)
	ok       map[int]bool
}

func newLoad(c *Cluster, prefix string, total, rate int) *load {
	return &load{c: c, prefix: prefix, total: total, perRequest: 500, rate: rate, answers: map[int]int{}, ok: map[int]bool{}}
}

// run sends every batch and returns when each was answered 202 or ctx
// ended. Once stop is closed it starts no new batch.
func (l *load) run(ctx context.Context, stop <-chan struct{}) {
	batches := l.total / l.perRequest
	interval := time.Duration(float64(time.Second) * float64(l.perRequest) / float64(l.rate))
	client := &http.Client{Timeout: 10 * time.Second}
	var wg sync.WaitGroup
	next := time.Now()
	sem := make(chan struct{}, 4)
	for b := range batches {
		select {
		case <-ctx.Done():
		case <-stop:
		case <-time.After(time.Until(next)):
		}
		next = next.Add(interval)
		if ctx.Err() != nil || closed(stop) {
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			l.send(ctx, client, b)
		}()
	}
	wg.Wait()
}

func closed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

func (l *load) send(ctx context.Context, client *http.Client, b int) {
	type ev struct {
		Timestamp    string  `json:"timestamp"`
		Service      string  `json:"service"`
		Endpoint     string  `json:"endpoint"`
		StatusCode   int     `json:"status_code"`
		ResponseTime float64 `json:"response_time_ms"`
		RequestID    string  `json:"request_id"`
	}
	evs := make([]ev, l.perRequest)
	ts := time.Now().UTC().Format(time.RFC3339Nano)
	for i := range evs {
		n := b*l.perRequest + i
		evs[i] = ev{ts, "web", fmt.Sprintf("/api/e%d", n%7), 200 + 100*(n%4), float64(n % 900), fmt.Sprintf("%s%d", l.prefix, n)}
	}
	body, _ := json.Marshal(evs)
	for attempt := 0; ctx.Err() == nil; attempt++ {
		edge := l.c.Ingest[(b+attempt)%len(l.c.Ingest)]
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+edge.HTTPAddr+"/api/admin/system/metrics", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+l.c.IngestToken)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", fmt.Sprintf("%sbatch-%d", l.prefix, b))
		code := 0
		if resp, err := client.Do(req); err == nil {
			code = resp.StatusCode
			resp.Body.Close()
		}
		l.mu.Lock()
		l.answers[code]++
		if code == http.StatusAccepted {
			l.ok[b] = true
		}
		l.mu.Unlock()
		if code == http.StatusAccepted {
			l.accepted.Add(int64(l.perRequest))
			return
		}
		l.retries.Add(1)
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// start runs the load in the background until every batch was answered
// 202, or stop (nil: never) is closed and the batches sent were.
func (l *load) start(t *testing.T, stop <-chan struct{}) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	l.stop, l.done, l.started = stop, make(chan struct{}), time.Now()
	go func() { defer close(l.done); defer cancel(); l.run(ctx, stop) }()
	t.Cleanup(func() { cancel(); <-l.done })
}

// since is the time since the load started, for the log.
func (l *load) since() time.Duration { return time.Since(l.started).Round(time.Millisecond) }

// finish waits until the load ended and the ingest stream drained, then
// asserts that every accepted event is stored exactly once on each replica
// and through the Distributed tables.
func (l *load) finish(t *testing.T) {
	t.Helper()
	<-l.done
	t.Logf("load done in %s: %s", l.since(), l)
	accepted := l.accepted.Load()
	if int(accepted) != len(l.expected()) || l.stop == nil && accepted != int64(l.total) {
		t.Fatalf("accepted %d of %d events, %d distinct IDs; want every batch answered 202 in the end", accepted, l.total, len(l.expected()))
	}
	waitDrained(t, l.c)
	assertExactlyOnce(t, l.prefix, l.expected(), l.c.checkDSNs()...)
	t.Logf("stored exactly once %s after the load started", l.since())
}

// expected returns the request IDs answered 202.
func (l *load) expected() map[string]bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]bool{}
	for b := range l.ok {
		for i := range l.perRequest {
			out[fmt.Sprintf("%s%d", l.prefix, b*l.perRequest+i)] = true
		}
	}
	return out
}

func (l *load) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return fmt.Sprintf("accepted %d of %d events; answers by status %v; %d requests sent again", l.accepted.Load(), l.total, l.answers, l.retries.Load())
}

// open opens dsn for the test.
func open(t *testing.T, dsn string) *chstore.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := chstore.Open(ctx, dsn, zerolog.Nop())
	if err != nil {
		t.Fatalf("open %s: %v", dsn, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// count returns how many rows of requests hold prefix's IDs, -1 when the
// server does not answer.
func count(s *chstore.Store, prefix string) int64 {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var n uint64
	if err := s.QueryRow(ctx, "SELECT count() FROM "+s.T("requests")+" WHERE startsWith(request_id, "+chstore.Quote(prefix)+")", &n); err != nil {
		return -1
	}
	return int64(n)
}

// assertExactlyOnce waits until every server behind dsns holds as many
// rows of prefix as want has IDs, then compares the multiset of their
// request IDs with want: each exactly once, no other.
func assertExactlyOnce(t *testing.T, prefix string, want map[string]bool, dsns ...string) {
	t.Helper()
	for _, dsn := range dsns {
		s := open(t, dsn)
		testenv.Eventually(t, 150*time.Second, "all rows on "+dsn, func() bool { return count(s, prefix) >= int64(len(want)) })
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		rows, err := s.Query(ctx, "SELECT request_id, count() FROM "+s.T("requests")+
			" WHERE startsWith(request_id, "+chstore.Quote(prefix)+") GROUP BY request_id")
		if err != nil {
			cancel()
			t.Fatalf("%s: %v", dsn, err)
		}
		got := map[string]uint64{}
		for rows.Next() {
			var id string
			var n uint64
			if err := rows.Scan(&id, &n); err != nil {
				t.Fatal(err)
			}
			got[id] = n
		}
		rows.Close()
		cancel()
		dup, extra, lost := 0, 0, 0
		for id, n := range got {
			switch {
			case !want[id]:
				extra++
			case n > 1:
				dup++
			}
		}
		for id := range want {
			if got[id] == 0 {
				lost++
			}
		}
		if dup+extra+lost > 0 || len(got) != len(want) {
			t.Errorf("%s: %d distinct IDs, want %d: %d duplicated, %d never accepted, %d lost", dsn, len(got), len(want), dup, extra, lost)
		}
		if dup > 0 {
			// Where the copies came from: one stream message stored twice
			// (the sink), or two stream messages holding one event (the edge).
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			rows, err := s.Query(ctx, "SELECT toString(groupArray(stream_seq)), toString(groupArray(seq_idx)), toString(groupArray(_part)) FROM "+s.T("requests")+
				" WHERE startsWith(request_id, "+chstore.Quote(prefix)+") GROUP BY request_id HAVING count() > 1 LIMIT 3")
			for err == nil && rows.Next() {
				var seqs, idxs, parts string
				if rows.Scan(&seqs, &idxs, &parts) == nil {
					t.Logf("%s: a duplicated event: stream_seq %s, seq_idx %s, parts %s", dsn, seqs, idxs, parts)
				}
			}
			if err == nil {
				rows.Close()
			}
			cancel()
		}
		// The rollup counts each once too: the views run where a row was
		// inserted, and replication copies their parts, not their inputs.
		var rolled uint64
		testenv.Eventually(t, 60*time.Second, "the 1-minute rollup on "+dsn, func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			err := s.QueryRow(ctx, "SELECT toUInt64(countMerge(requests)) FROM "+s.T("requests_1m"), &rolled)
			return err == nil && rolled >= uint64(len(want))
		})
		if rolled != uint64(len(want)) {
			t.Errorf("%s: requests_1m counts %d requests; want %d", dsn, rolled, len(want))
		}
	}
}

// dsns lists each replica alone and the Distributed tables.
func (c *Cluster) checkDSNs() []string {
	var out []string
	for i := range c.ClickHouse {
		out = append(out, c.ReplicaDSN(i))
	}
	return append(out, c.DistributedDSN(0))
}

// streamInfo returns the ingest stream's state as the cluster sees it.
func streamInfo(t *testing.T, c *Cluster) (*jetstream.StreamInfo, error) {
	t.Helper()
	nc, err := nats.Connect(c.NATSURL(), nats.Timeout(2*time.Second))
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, streamConfig().IngestStream)
	if err != nil {
		return nil, err
	}
	return st.Info(ctx)
}

// waitDrained waits until the ingest stream holds no message (every one
// acked by an aggregator).
func waitDrained(t *testing.T, c *Cluster) {
	t.Helper()
	testenv.Eventually(t, 120*time.Second, "ingest stream drained", func() bool {
		info, err := streamInfo(t, c)
		return err == nil && info.State.Msgs == 0
	})
}

// TestNATSNodeKilled kills the ingest stream's leader node with SIGKILL
// while 100,000 events flow through two edges and two aggregators, brings
// it back 10 s later, and finds every accepted event stored exactly once.
func TestNATSNodeKilled(t *testing.T) {
	c := startCluster(t, Config{})
	const total, prefix = 100_000, "nk-"
	l := newLoad(c, prefix, total, 6000)
	l.start(t, nil)

	testenv.Eventually(t, 30*time.Second, "load flowing", func() bool { return l.accepted.Load() >= 15_000 })
	info, err := streamInfo(t, c)
	if err != nil {
		t.Fatal(err)
	}
	var leader *NATSNode
	for _, n := range c.NATS {
		if n.Name == info.Cluster.Leader {
			leader = n
		}
	}
	if leader == nil {
		t.Fatalf("stream leader %q is none of the nodes", info.Cluster.Leader)
	}
	leader.Kill()
	killedAt := l.accepted.Load()
	t.Logf("killed %s (stream leader) at %d accepted events, %s into the load", leader.Name, killedAt, l.since())
	time.Sleep(10 * time.Second) // the outage itself, not a wait for a condition
	if got := l.accepted.Load(); got <= killedAt {
		t.Errorf("no event accepted in the 10 s %s was down (%d before, %d after); want the cluster to go on with two nodes", leader.Name, killedAt, got)
	}
	if err := leader.Start(); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitNATS(context.Background()); err != nil {
		t.Fatal(err)
	}
	l.finish(t)
	// The node that came back is a current replica of the stream again.
	testenv.Eventually(t, 60*time.Second, leader.Name+" back in the stream's peers", func() bool {
		info, err := streamInfo(t, c)
		if err != nil {
			return false
		}
		current := 0
		for _, p := range info.Cluster.Replicas {
			if p.Current && !p.Offline {
				current++
			}
		}
		return current == 2
	})
}

// TestClickHouseReplicasStopped stops one ClickHouse replica under load,
// brings it back, then stops the other, then both; inserts go on through
// the replica that is up, events wait in JetStream while none is, and
// every accepted event ends up stored exactly once on both.
func TestClickHouseReplicasStopped(t *testing.T) {
	c := startCluster(t, Config{})
	assertClusterSchema(t, c)
	// The load runs until the faults are over (stopLoad), at most total.
	const total, prefix = 300_000, "cr-"
	l := newLoad(c, prefix, total, 1500)
	stopLoad := make(chan struct{})
	l.start(t, stopLoad)
	r := []*chstore.Store{open(t, c.ReplicaDSN(0)), open(t, c.ReplicaDSN(1))}
	testenv.Eventually(t, 30*time.Second, "rows arriving", func() bool { return count(r[0], prefix) >= 3000 })

	// stop sends replica i SIGTERM, and SIGKILL if it is not gone within
	// 5 s (18.16 may wait longer for its ZooKeeper session to close).
	stop := func(i int) {
		t.Helper()
		t1 := time.Now()
		c.ClickHouse[i].Stop(5 * time.Second)
		t.Logf("clickhouse-%d stopped in %s", i+1, time.Since(t1).Round(time.Millisecond))
	}
	// stopped stops replica i and checks that the other keeps taking
	// inserts: 3,000 more rows while i is down.
	stoppedUnderLoad := func(i int) {
		t.Helper()
		stop(i)
		other := r[1-i]
		before := count(other, prefix)
		t.Logf("stopped clickhouse-%d at %s; clickhouse-%d holds %d rows", i+1, l.since(), 2-i, before)
		testenv.Eventually(t, 60*time.Second, fmt.Sprintf("inserts through clickhouse-%d", 2-i), func() bool {
			return count(other, prefix) >= before+3000
		})
	}
	start := func(i int) {
		t.Helper()
		if err := c.ClickHouse[i].Start(); err != nil {
			t.Fatal(err)
		}
		if err := c.WaitClickHouse(context.Background(), i); err != nil {
			t.Fatal(err)
		}
		t.Logf("clickhouse-%d started again at %s", i+1, l.since())
	}

	stoppedUnderLoad(0)
	t.Logf("clickhouse-2 took 3,000 rows at %s", l.since())
	start(0)
	// Replica 1 catches up with what replica 2 took meanwhile before
	// replica 2 goes.
	took := count(r[1], prefix)
	testenv.Eventually(t, 60*time.Second, "clickhouse-1 caught up", func() bool {
		return count(r[0], prefix) >= took
	})
	t.Logf("clickhouse-1 caught up at %s", l.since())
	stoppedUnderLoad(1)
	t.Logf("clickhouse-1 took 3,000 rows at %s", l.since())

	// Both down: the edges go on answering 202, the events wait in the stream.
	stop(0)
	acceptedBefore := l.accepted.Load()
	backlogBefore := uint64(0)
	if info, err := streamInfo(t, c); err == nil {
		backlogBefore = info.State.Msgs
	}
	testenv.Eventually(t, 30*time.Second, "events accepted and waiting in JetStream with both replicas down", func() bool {
		info, err := streamInfo(t, c)
		return err == nil && l.accepted.Load() >= acceptedBefore+3000 && info.State.Msgs > backlogBefore
	})
	t.Logf("both replicas down at %s: %d events accepted meanwhile", l.since(), l.accepted.Load()-acceptedBefore)
	start(1)
	start(0)
	t.Logf("both replicas back at %s", l.since())
	time.Sleep(2 * time.Second) // a little load after the restart
	close(stopLoad)

	l.finish(t)
}

// TestAggregatorKilled kills one of the two aggregators with SIGKILL twice
// while 60,000 events flow, starting it again each time: the other goes on,
// the killed one's unacked messages are redelivered, and every accepted
// event is stored exactly once.
func TestAggregatorKilled(t *testing.T) {
	c := startCluster(t, Config{})
	const total, prefix = 60_000, "ak-"
	l := newLoad(c, prefix, total, 3000)
	l.start(t, nil)
	r := open(t, c.ReplicaDSN(0))
	agg := c.Aggregators[0]
	for kill := 1; kill <= 2; kill++ {
		at := int64(kill * 10_000)
		testenv.Eventually(t, 60*time.Second, fmt.Sprintf("%d rows stored", at), func() bool { return count(r, prefix) >= at })
		agg.Kill()
		t.Logf("killed %s at %s", agg.Name, l.since())
		before := count(r, prefix)
		testenv.Eventually(t, 30*time.Second, "the other aggregator going on", func() bool { return count(r, prefix) >= before+3000 })
		if err := c.StartPulse(agg); err != nil {
			t.Fatal(err)
		}
		if err := c.WaitPulse(agg); err != nil {
			t.Fatal(err)
		}
	}
	l.finish(t)
}

// assertClusterSchema checks what `pulse migrate --cluster` built: on
// each replica every MergeTree-family table but schema_migrations is
// Replicated*, and the Distributed database has a table for each.
func assertClusterSchema(t *testing.T, c *Cluster) {
	t.Helper()
	for i := range c.ClickHouse {
		s := open(t, c.ReplicaDSN(i))
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		rows, err := s.Query(ctx, "SELECT name, engine FROM system.tables WHERE database = "+chstore.Quote(s.Database())+" AND engine LIKE '%MergeTree'")
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for rows.Next() {
			var name, engine string
			if err := rows.Scan(&name, &engine); err != nil {
				t.Fatal(err)
			}
			names = append(names, name)
			if replicated := strings.HasPrefix(engine, "Replicated"); replicated == (name == "schema_migrations") {
				t.Errorf("replica %d: %s has engine %s", i+1, name, engine)
			}
		}
		rows.Close()
		if len(names) < 20 {
			t.Errorf("replica %d: %d tables %v; want the whole schema", i+1, len(names), names)
		}
		var dist uint64
		err = s.QueryRow(ctx, "SELECT count() FROM system.tables WHERE database = "+chstore.Quote(s.Database()+"_dist")+" AND engine = 'Distributed'", &dist)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if dist != uint64(len(names)) {
			t.Errorf("replica %d: %d Distributed tables; want %d, one per table", i+1, dist, len(names))
		}
	}
}
