package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/wedsync/pulse/internal/chstore"
	"github.com/wedsync/pulse/internal/stream"
	"github.com/wedsync/pulse/internal/testenv"
)

// The fault suite: each fault is a scenario that runs real pulse processes
// on loopback under HTTP load, injects the fault, ends the load and tallies
// the request IDs answered 202 against the multiset of request IDs stored.
// The short form of each runs in `make test` (TestFault*, and
// TestClickHouseOutage in outage_test.go); `make soak` runs them again and
// again for SOAK_DURATION (soak_test.go) and prints the tallies. Killing
// the only aggregator again and again (kill_test.go) and killing the edge
// under retrying clients (edgekill_test.go) have tests of their own.

// TestFaultAggregatorKilled kills one of two aggregators with SIGKILL
// under load and does not restart it: the other takes over its messages.
func TestFaultAggregatorKilled(t *testing.T) { assertTally(t, faultAggregatorKilled(t, 1)) }

// TestFaultSIGTERMEveryRole sends SIGTERM, under load, to an edge, an
// aggregator and the query and alerts process, one after the other (each
// but the last restarted): each exits 0 after draining.
func TestFaultSIGTERMEveryRole(t *testing.T) { assertTally(t, faultSIGTERMEveryRole(t, 1)) }

// TestFaultStreamFull fills a 1 MiB ingest stream with no aggregator
// running: ingest answers 503 with Retry-After, and accepts again once an
// aggregator drains the stream.
func TestFaultStreamFull(t *testing.T) { assertTally(t, faultStreamFull(t, 1)) }

// TestFaultRedisStopped stops Redis under load: both route classes fall
// back to in-process limits as internal/ratelimit documents (ingest keeps
// answering 202; admin answers, still limited: 200s then 429s, no 5xx).
func TestFaultRedisStopped(t *testing.T) { assertTally(t, faultRedisStopped(t, 1)) }

// TestFaultPostgresUnreachable cuts the probed Postgres (a loopback proxy
// closed): the database component turns critical and nothing crashes.
func TestFaultPostgresUnreachable(t *testing.T) { assertTally(t, faultPostgresUnreachable(t, 1)) }

// tally is the accounting of one fault: events posted, answered 202,
// stored (distinct accepted request IDs found), stored more than once
// (extra rows of accepted IDs) and lost (accepted, never stored).
type tally struct {
	Fault                                    string
	Sent, Accepted, Stored, Duplicated, Lost int
	Statuses                                 map[int]int // answers by status; 0: no answer
}

func assertTally(t *testing.T, r tally) {
	t.Helper()
	t.Logf("%s: sent %d, accepted %d, stored %d, duplicated %d, lost %d (statuses %v)",
		r.Fault, r.Sent, r.Accepted, r.Stored, r.Duplicated, r.Lost, r.Statuses)
	if r.Accepted == 0 {
		t.Errorf("%s: no event was accepted; the load did not run", r.Fault)
	}
	if r.Lost != 0 || r.Duplicated != 0 {
		t.Errorf("%s: %d accepted events lost, %d duplicated; want none", r.Fault, r.Lost, r.Duplicated)
	}
}

// rig is the servers of one fault scenario: an in-process NATS, a fresh
// ClickHouse database (on the shared server, or on a private one the
// scenario may stop) and the environment every pulse process gets.
type rig struct {
	t     *testing.T
	bin   string
	store *chstore.Store
	ch    *testenv.ClickHouseServer // nil: the shared server
	env   []string
}

// rigOptions change a rig: the ingest stream's byte limit, a private
// ClickHouse server, extra environment.
type rigOptions struct {
	streamMaxBytes int64
	privateCH      bool
	env            []string
}

func newRig(t *testing.T, o rigOptions) *rig {
	t.Helper()
	r := &rig{t: t, bin: pulseBinary(t, "")}
	ns := testenv.NATS(t)
	_, js := testenv.Connect(t, ns.ClientURL())
	testenv.Streams(t, js, stream.Config{MaxBytes: o.streamMaxBytes})
	var dsn string
	if o.privateCH {
		r.ch = testenv.StartClickHouseServer(t)
		db := testenv.DatabaseName(t)
		dsn = r.ch.DSN(db)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		st, err := chstore.Open(ctx, dsn, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		r.store = st
	} else {
		r.store = testenv.ClickHouse(t)
		dsn = testenv.ClickHouseDSN() + "/" + r.store.Database()
	}
	r.env = append([]string{
		"PULSE_NATS_URL=" + ns.ClientURL(),
		"PULSE_CLICKHOUSE_DSN=" + dsn,
		"PULSE_LOG_FORMAT=json",
		"PULSE_INGEST_TOKENS=fleet:" + testIngestToken,
		"PULSE_ADMIN_TOKENS=ops:" + testAdminToken,
		"PULSE_INGEST_RATE_LIMIT=1000000/min",
	}, o.env...)
	if o.streamMaxBytes != 0 {
		r.env = append(r.env, fmt.Sprintf("PULSE_STREAM_MAX_BYTES=%d", o.streamMaxBytes))
	}
	return r
}

// start runs a pulse process with the given roles on a free HTTP address;
// args come last and override the defaults.
func (r *rig) start(roles string, args ...string) *proc {
	r.t.Helper()
	a := append([]string{"serve", "--data-dir", r.t.TempDir(), "--roles", roles, "--http-addr", testenv.FreeAddr(r.t),
		"--batch-delay", "100ms", "--ack-wait", "5s", "--drain-grace", "300ms"}, args...)
	return startPulse(r.t, r.bin, r.env, a...)
}

// ingestURL is p's ingest route.
func ingestURL(p *proc) string { return "http://" + p.httpAddr() + "/api/admin/system/metrics" }

// load posts NDJSON batches of 1..per events, each with a request ID
// <prefix>-<n> of its own, from workers goroutines to its targets in turn,
// and remembers which were answered 202. Safe for concurrent use.
type load struct {
	prefix  string
	per     int
	next    atomic.Int64
	sent    atomic.Int64
	targets atomic.Pointer[[]string]
	stop    chan struct{}
	wg      sync.WaitGroup
	once    sync.Once

	mu           sync.Mutex
	accepted     []string
	statuses     map[int]int // answers by status; 0: no answer
	noRetryAfter int         // 503s and 429s without Retry-After
}

func startLoad(prefix string, workers, per int, every time.Duration, targets ...string) *load {
	l := &load{prefix: prefix, per: per, stop: make(chan struct{}), statuses: map[int]int{}}
	l.setTargets(targets...)
	for w := range workers {
		l.wg.Go(func() {
			client := &http.Client{Timeout: 10 * time.Second}
			tick := time.NewTicker(every)
			defer tick.Stop()
			for i := w; ; i++ {
				select {
				case <-l.stop:
					return
				case <-tick.C:
				}
				ts := *l.targets.Load()
				l.post(client, ts[i%len(ts)])
			}
		})
	}
	return l
}

// setTargets makes the workers post to urls from now on.
func (l *load) setTargets(urls ...string) { l.targets.Store(&urls) }

func (l *load) post(client *http.Client, target string) {
	n := 1 + rand.IntN(l.per)
	first := int(l.next.Add(int64(n))) - n
	ids := make([]string, n)
	var body bytes.Buffer
	for i := range ids {
		ids[i] = fmt.Sprintf("%s-%d", l.prefix, first+i)
		fmt.Fprintf(&body, `{"endpoint":"/api/f","response_time_ms":%d,"status_code":200,"request_id":%q}`+"\n", (first+i)%900, ids[i])
	}
	l.sent.Add(int64(n))
	req, err := http.NewRequest(http.MethodPost, target, &body)
	if err != nil {
		panic(err) // the URL is the test's own
	}
	req.Header.Set("Authorization", "Bearer "+testIngestToken)
	req.Header.Set("Content-Type", "application/x-ndjson")
	status := 0
	retryAfter := true
	if resp, err := client.Do(req); err == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		status = resp.StatusCode
		retryAfter = resp.Header.Get("Retry-After") != ""
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.statuses[status]++
	if (status == http.StatusServiceUnavailable || status == http.StatusTooManyRequests) && !retryAfter {
		l.noRetryAfter++
	}
	if status == http.StatusAccepted {
		l.accepted = append(l.accepted, ids...)
	}
}

// count returns how many posts got status so far.
func (l *load) count(status int) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.statuses[status]
}

// end stops the load and waits for the posts in flight.
func (l *load) end() {
	l.once.Do(func() { close(l.stop) })
	l.wg.Wait()
}

// tally ends the load, waits until every accepted event is stored (or
// timeout passes) and the table stops growing, and compares the request
// IDs answered 202 with the multiset stored.
func (l *load) tally(t *testing.T, fault string, store *chstore.Store, timeout time.Duration) tally {
	t.Helper()
	l.end()
	l.mu.Lock()
	accepted := append([]string(nil), l.accepted...)
	statuses := map[int]int{}
	for k, v := range l.statuses {
		statuses[k] = v
	}
	l.mu.Unlock()
	var stored map[string]uint64
	deadline := time.Now().Add(timeout)
	for {
		stored = storedIDCounts(t, store, l.prefix)
		missing := 0
		for _, id := range accepted {
			if stored[id] == 0 {
				missing++
			}
		}
		if missing == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	countQ := fmt.Sprintf("SELECT count() FROM %s WHERE request_id LIKE '%s-%%'", store.T("requests"), l.prefix)
	if err := settle(ctx, func() uint64 { return testenv.Count(t, store, countQ) }); err != nil {
		t.Error(err)
	}
	stored = storedIDCounts(t, store, l.prefix)
	r := tally{Fault: fault, Sent: int(l.sent.Load()), Accepted: len(accepted), Statuses: statuses}
	want := make(map[string]bool, len(accepted))
	for _, id := range accepted {
		want[id] = true
	}
	for id, n := range stored {
		// An ID stored though not answered 202 (a 503 after a publish
		// JetStream did not confirm may have landed) is neither lost nor
		// duplicated; only its extra copies count.
		if want[id] {
			r.Stored++
		}
		r.Duplicated += int(n) - 1
	}
	r.Lost = r.Accepted - r.Stored
	return r
}

// storedIDCounts reads how often each request ID starting <prefix>- is
// stored.
func storedIDCounts(t *testing.T, store *chstore.Store, prefix string) map[string]uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rows, err := store.Query(ctx, fmt.Sprintf("SELECT request_id, count() FROM %s WHERE request_id LIKE '%s-%%' GROUP BY request_id",
		store.T("requests"), prefix))
	if err != nil {
		t.Fatalf("read stored request ids: %v", err)
	}
	defer rows.Close()
	out := map[string]uint64{}
	for rows.Next() {
		var id string
		var n uint64
		if err := rows.Scan(&id, &n); err != nil {
			t.Fatalf("read stored request ids: %v", err)
		}
		out[id] = n
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("read stored request ids: %v", err)
	}
	return out
}

// pause waits d, scaled.
func pause(d time.Duration, scale int) { time.Sleep(d * time.Duration(scale)) }

func faultAggregatorKilled(t *testing.T, scale int) tally {
	r := newRig(t, rigOptions{})
	edge := r.start("ingest")
	a1 := r.start("aggregator")
	r.start("aggregator")
	l := startLoad("agk", 4, 200, 20*time.Millisecond, ingestURL(edge))
	pause(3*time.Second, scale)
	a1.kill()
	pause(4*time.Second, scale)
	return l.tally(t, "one of two aggregators killed", r.store, 60*time.Second)
}

func faultSIGTERMEveryRole(t *testing.T, scale int) tally {
	r := newRig(t, rigOptions{})
	e1, e2 := r.start("ingest"), r.start("ingest")
	a1 := r.start("aggregator")
	r.start("aggregator")
	qa := r.start("query,alerts")
	l := startLoad("term", 4, 200, 20*time.Millisecond, ingestURL(e1), ingestURL(e2))
	terminate := func(p *proc, role string) {
		t.Helper()
		pause(2*time.Second, scale)
		if err := p.terminate(30 * time.Second); err != nil {
			t.Errorf("%s exit after SIGTERM under load: %v; want 0\n%s", role, err, lastChars(p.stderr.String(), 2000))
		}
	}
	// The edge is told to stop while posts still reach it (the balancer
	// has not moved away yet); a restarted edge takes its place.
	terminate(e1, "ingest")
	l.setTargets(ingestURL(e2))
	e1 = r.start("ingest")
	l.setTargets(ingestURL(e1), ingestURL(e2))
	terminate(a1, "aggregator")
	r.start("aggregator")
	terminate(qa, "query,alerts")
	pause(2*time.Second, scale)
	return l.tally(t, "SIGTERM to every role", r.store, 60*time.Second)
}

func faultStreamFull(t *testing.T, scale int) tally {
	r := newRig(t, rigOptions{streamMaxBytes: 1 << 20})
	edge := r.start("ingest")
	l := startLoad("full", 4, 200, 10*time.Millisecond, ingestURL(edge))
	testenv.Eventually(t, 60*time.Second, "ingest answering 503 on a full stream", func() bool {
		return l.count(http.StatusServiceUnavailable) > 0
	})
	pause(time.Second, scale)
	before := l.count(http.StatusAccepted)
	r.start("aggregator")
	testenv.Eventually(t, 60*time.Second, "ingest accepting again once the aggregator drains the stream", func() bool {
		return l.count(http.StatusAccepted) > before+50
	})
	pause(2*time.Second, scale)
	out := l.tally(t, "JetStream stream full", r.store, 60*time.Second)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.noRetryAfter != 0 {
		t.Errorf("%d answers 503 or 429 without Retry-After", l.noRetryAfter)
	}
	return out
}

func faultRedisStopped(t *testing.T, scale int) tally {
	redis := testenv.StartRedisServer(t)
	const adminLimit = 10
	r := newRig(t, rigOptions{env: []string{"PULSE_REDIS_URL=redis://" + redis.Addr() + "/0",
		fmt.Sprintf("PULSE_ADMIN_RATE_LIMIT=%d/min", adminLimit)}})
	p := r.start("all")
	l := startLoad("redis", 4, 200, 20*time.Millisecond, ingestURL(p))
	healthURL := "http://" + p.httpAddr() + "/api/admin/system/health"
	if got := adminGet(t, healthURL); got != http.StatusOK {
		t.Errorf("admin route with Redis up answered %d; want 200", got)
	}
	pause(2*time.Second, scale)
	notAccepted := func() int {
		return l.count(0) + l.count(http.StatusServiceUnavailable) + l.count(http.StatusInternalServerError)
	}
	before := notAccepted()
	redis.Stop()
	// Admin: the in-process limiter decides, its bucket starting full.
	codes := map[int]int{}
	for range adminLimit + 5 {
		codes[adminGet(t, healthURL)]++
	}
	if codes[http.StatusOK] == 0 || codes[http.StatusTooManyRequests] == 0 || codes[http.StatusOK]+codes[http.StatusTooManyRequests] != adminLimit+5 {
		t.Errorf("admin answers with Redis down: %v; want 200s, then 429s (still limited), nothing else", codes)
	}
	pause(3*time.Second, scale)
	if n := notAccepted() - before; n != 0 {
		t.Errorf("%d ingest posts not answered 202 while Redis was down; want 0 (in-process fallback)", n)
	}
	redis.Start()
	pause(2*time.Second, scale)
	return l.tally(t, "Redis stopped", r.store, 60*time.Second)
}

// adminGet returns the status of a GET of target with the admin token.
func adminGet(t *testing.T, target string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, target, nil)
	req.Header.Set("Authorization", "Bearer "+testAdminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", target, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func faultPostgresUnreachable(t *testing.T, scale int) tally {
	pgURL := os.Getenv("PULSE_TEST_DATABASE_URL")
	if pgURL == "" {
		pgURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	}
	pg, err := url.Parse(pgURL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := testenv.StartTCPProxy(t, pg.Host)
	pg.Host = proxy.Addr()
	r := newRig(t, rigOptions{env: []string{"PULSE_DATABASE_URL=" + pg.String(), "PULSE_ADMIN_RATE_LIMIT=100000/min"}})
	p := r.start("all", "--probe-interval", "5s") // at least the probes' 5 s timeout
	l := startLoad("pg", 4, 200, 20*time.Millisecond, ingestURL(p))
	// The probe's results, as it logs them: the health route caches its
	// answers for 30 s, so the test waits on the source.
	probed := func(statuses ...string) bool {
		for _, line := range p.logLines() {
			if line["message"] == "health status" && line["probe"] == "database" && slices.Contains(statuses, fmt.Sprint(line["status"])) {
				return true
			}
		}
		return false
	}
	testenv.Eventually(t, 30*time.Second, "the database probed healthy through the proxy", func() bool { return probed("healthy", "degraded") })
	pause(time.Second, scale)
	proxy.Close()
	testenv.Eventually(t, 30*time.Second, "the database probed critical once unreachable", func() bool { return probed("critical") })
	critical := fmt.Sprintf("SELECT count() FROM %s WHERE component = 'database' AND status = 'critical'", r.store.T("health_checks"))
	testenv.Eventually(t, 30*time.Second, "the critical result stored", func() bool { return testenv.Count(t, r.store, critical) > 0 })
	// A question not asked before, so not answered from the cache.
	req, _ := http.NewRequest(http.MethodGet, "http://"+p.httpAddr()+"/api/admin/system/health?component=database&detailed=true", nil)
	req.Header.Set("Authorization", "Bearer "+testAdminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET health: %v", err)
	}
	var h struct {
		OverallStatus string `json:"overall_status"`
		Components    []struct{ Name, Status string }
	}
	err = json.NewDecoder(resp.Body).Decode(&h)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || err != nil || len(h.Components) != 1 || h.Components[0].Status != "critical" || h.OverallStatus != "critical" {
		t.Errorf("health with Postgres unreachable: HTTP %d, %+v (%v); want 200, the database and overall critical", resp.StatusCode, h, err)
	}
	pause(2*time.Second, scale)
	select {
	case <-p.exited:
		t.Fatalf("pulse exited with Postgres unreachable: %v\n%s", p.err, lastChars(p.stderr.String(), 2000))
	default:
	}
	resp, err = http.Get("http://" + p.httpAddr() + "/healthz")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("/healthz with Postgres unreachable: %v %v; want 200", resp, err)
	}
	if err == nil {
		resp.Body.Close()
	}
	return l.tally(t, "Postgres unreachable", r.store, 60*time.Second)
}

// faultClickHouseStopped stops a private ClickHouse server for 30 s under
// load: the edge must answer 202 throughout, and the rollup count each
// stored event once.
func faultClickHouseStopped(t *testing.T, scale int) tally {
	r := newRig(t, rigOptions{privateCH: true})
	p := r.start("ingest,aggregator")
	// The pace of the outage test before the suite: about 8,000 events/s.
	l := startLoad("chs", 1, 400, 25*time.Millisecond, ingestURL(p))
	pause(3*time.Second, scale)
	before := l.count(http.StatusAccepted)
	r.ch.Stop()
	time.Sleep(30 * time.Second)
	during := l.count(http.StatusAccepted) - before
	r.ch.Start()
	t.Logf("ClickHouse restarted; %d posts answered 202 while it was down", during)
	pause(3*time.Second, scale)
	out := l.tally(t, "ClickHouse stopped 30 s", r.store, 120*time.Second)
	// How many is a figure of the machine; that the edge kept accepting
	// is the contract.
	if during == 0 {
		t.Error("no post answered 202 during the outage; the edge should keep accepting")
	}
	if n := out.Sent - out.Accepted; n != 0 {
		t.Errorf("%d events not answered 202 (statuses %v); want all accepted", n, out.Statuses)
	}
	if got := testenv.Count(t, r.store, "SELECT toUInt64(countMerge(requests)) FROM "+r.store.T("requests_1m")); got != uint64(out.Accepted) {
		t.Errorf("rollup counts %d; want %d", got, out.Accepted)
	}
	return out
}

func lastChars(s string, n int) string { return s[max(0, len(s)-n):] }
