package query_test

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/rs/zerolog"

	"github.com/wedsync/pulse/aggregator"
	"github.com/wedsync/pulse/internal/auth"
	"github.com/wedsync/pulse/internal/chstore"
	"github.com/wedsync/pulse/internal/event"
	"github.com/wedsync/pulse/internal/httpapi"
	"github.com/wedsync/pulse/internal/testenv"
	"github.com/wedsync/pulse/query"
	"github.com/wedsync/pulse/schema"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

const (
	adminToken  = "admin-token-for-query-tests"
	ingestToken = "ingest-token-for-query-tests"
)

// clock is a settable clock for Config.Now and the fake cache.
type clock struct{ ns atomic.Int64 }

func newClock(t time.Time) *clock {
	c := &clock{}
	c.ns.Store(t.UnixNano())
	return c
}

func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }
func (c *clock) Set(t time.Time)         { c.ns.Store(t.UnixNano()) }
func testNow() time.Time                 { return time.Now().UTC().Truncate(time.Second) }
func ctx(t testing.TB) context.Context   { return testCtx(t, time.Minute) }
func testCtx(t testing.TB, d time.Duration) context.Context {
	c, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return c
}

// memCache is a small working in-memory Cache with TTLs on a given clock,
// counting what it is asked.
type memCache struct {
	now func() time.Time

	mu      sync.Mutex
	entries map[string]memEntry
	gets    int
	hits    int
	sets    int
	ttls    map[string]time.Duration // the TTL of the last Set of each key
	lastTTL time.Duration            // the TTL of the last Set
}

type memEntry struct {
	value   []byte
	expires time.Time
}

func newMemCache(now func() time.Time) *memCache {
	return &memCache{now: now, entries: map[string]memEntry{}, ttls: map[string]time.Duration{}}
}

func (m *memCache) Get(_ context.Context, key string) ([]byte, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.gets++
	e, ok := m.entries[key]
	if !ok || !m.now().Before(e.expires) {
		delete(m.entries, key)
		return nil, false
	}
	m.hits++
	return append([]byte(nil), e.value...), true
}

func (m *memCache) Set(_ context.Context, key string, value []byte, ttl time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sets++
	m.ttls[key] = ttl
	m.lastTTL = ttl
	m.entries[key] = memEntry{value: append([]byte(nil), value...), expires: m.now().Add(ttl)}
}

func (m *memCache) counts() (gets, hits, sets int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.gets, m.hits, m.sets
}

// newServer returns an echo server with the API registered the way Pulse
// registers it: through the guarded router, with static tokens.
func newServer(t testing.TB, cfg query.Config, store *chstore.Store, cache query.Cache) (*echo.Echo, *query.API) {
	t.Helper()
	e := httpapi.New(zerolog.Nop())
	toks := &auth.StaticTokens{}
	toks.Add(adminToken, auth.Principal{Name: "admin", Scopes: []auth.Scope{auth.ScopeAdmin}})
	toks.Add(ingestToken, auth.Principal{Name: "ingest", Scopes: []auth.Scope{auth.ScopeIngest}})
	api, err := query.New(cfg, store, cache, zerolog.Nop())
	if err != nil {
		t.Fatalf("query.New: %v", err)
	}
	api.Register(httpapi.NewRouter(e, toks))
	return e, api
}

// getJSON fetches target as admin, wants 200, and decodes the answer into v.
func getJSON(t testing.TB, e *echo.Echo, target string, v any) testenv.Response {
	t.Helper()
	r := testenv.Get(t, e, target, adminToken)
	if r.Status != http.StatusOK {
		t.Fatalf("GET %s: got status %d, body %s; want 200", target, r.Status, r.Body)
	}
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("GET %s: decode %s: %v", target, r.Body, err)
	}
	return r
}

// insertRequests stores reqs as the aggregator would, in batches.
func insertRequests(t testing.TB, s *chstore.Store, reqs []event.Request) {
	t.Helper()
	const batch = 50_000
	for i := 0; i < len(reqs); i += batch {
		j := min(i+batch, len(reqs))
		if err := s.Insert(ctx(t), "", "requests", aggregator.Columns(reqs[i:j], uint64(i/batch+1))); err != nil {
			t.Fatalf("insert requests: %v", err)
		}
	}
}

// resourceRow is one row of the resources table.
type resourceRow struct {
	ts                          time.Time
	host, resource, name        string
	used, capacity, utilisation float64
}

func insertResources(t testing.TB, s *chstore.Store, rows []resourceRow) {
	t.Helper()
	n := len(rows)
	ts, host, res, name := make([]time.Time, n), make([]string, n), make([]string, n), make([]string, n)
	used, capacity, util := make([]float64, n), make([]float64, n), make([]float64, n)
	seq, idx := make([]uint64, n), make([]uint32, n)
	for i, r := range rows {
		ts[i], host[i], res[i], name[i] = r.ts, r.host, r.resource, r.name
		used[i], capacity[i], util[i] = r.used, r.capacity, r.utilisation
		seq[i], idx[i] = uint64(i+1), 0
	}
	err := s.Insert(ctx(t), "", "resources", []chstore.Column{
		{Name: "ts", Values: ts}, {Name: "host", Values: host}, {Name: "resource", Values: res}, {Name: "name", Values: name},
		{Name: "used", Values: used}, {Name: "capacity", Values: capacity}, {Name: "utilisation", Values: util},
		{Name: "stream_seq", Values: seq}, {Name: "seq_idx", Values: idx},
	})
	if err != nil {
		t.Fatalf("insert resources: %v", err)
	}
}

// healthRow is one row of the health_checks table.
type healthRow struct {
	ts                        time.Time
	component, target, status string
	responseTimeMS            float64
	details                   string
}

var healthSeq atomic.Uint64

func insertHealth(t testing.TB, s *chstore.Store, rows []healthRow) {
	t.Helper()
	n := len(rows)
	ts, comp, target, status, details := make([]time.Time, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	rt, seq, idx := make([]float64, n), make([]uint64, n), make([]uint32, n)
	base := healthSeq.Add(uint64(n))
	for i, r := range rows {
		ts[i], comp[i], target[i], status[i], details[i], rt[i] = r.ts, r.component, r.target, r.status, r.details, r.responseTimeMS
		seq[i], idx[i] = base-uint64(n)+uint64(i)+1, 0
	}
	err := s.Insert(ctx(t), "", "health_checks", []chstore.Column{
		{Name: "ts", Values: ts}, {Name: "component", Values: comp}, {Name: "target", Values: target}, {Name: "status", Values: status},
		{Name: "response_time_ms", Values: rt}, {Name: "details", Values: details},
		{Name: "stream_seq", Values: seq}, {Name: "seq_idx", Values: idx},
	})
	if err != nil {
		t.Fatalf("insert health checks: %v", err)
	}
}

// openStore opens and migrates the database of dsn, closing it at the end.
func openStore(t testing.TB, dsn string) *chstore.Store {
	t.Helper()
	s, err := chstore.Open(ctx(t), dsn, zerolog.Nop())
	if err != nil {
		t.Fatalf("open ClickHouse: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	if _, err := schema.Migrate(ctx(t), s); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	return s
}
