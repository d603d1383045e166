package cache

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/wedsync/pulse/internal/testenv"
)

func TestMain(m *testing.M) {
	// go-redis logs dial failures, with Redis's address, through a
	// process-wide logger; the outage tests would fill the output.
	redis.SetLogger(quiet{})
	os.Exit(testenv.Main(m))
}

type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}

// counted is a Cache with its counters.
type counted interface {
	Cache
	Counters() *Counters
}

// caches returns each Cache implementation, fresh and empty, by name.
func caches(t *testing.T) map[string]counted {
	t.Helper()
	c := sharedClient(t)
	r, err := NewRedis(c, testPrefix(t, c), nil, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	return map[string]counted{"redis": r, "memory": NewMemory(MemoryConfig{})}
}

func checkCounters(t *testing.T, c *Counters, hits, misses, errs uint64) {
	t.Helper()
	if h, m, e := c.Hits.Load(), c.Misses.Load(), c.Errors.Load(); h != hits || m != misses || e != errs {
		t.Errorf("counters: %d hits, %d misses, %d errors; want %d, %d, %d", h, m, e, hits, misses, errs)
	}
}

func TestGetSet(t *testing.T) {
	for name, c := range caches(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			if v, ok := c.Get(ctx, "health"); ok {
				t.Fatalf("empty cache: Get = %q; want a miss", v)
			}
			in := []byte(`{"overall_status":"healthy"}`)
			c.Set(ctx, "health", in, time.Minute)
			in[2] = 'X' // Set copied it
			v, ok := c.Get(ctx, "health")
			if !ok || string(v) != `{"overall_status":"healthy"}` {
				t.Fatalf("Get = %q, %v; want the stored value", v, ok)
			}
			v[2] = 'Y' // the caller's copy
			if v2, _ := c.Get(ctx, "health"); string(v2) != `{"overall_status":"healthy"}` {
				t.Fatalf("after changing a returned value: Get = %q", v2)
			}
			c.Set(ctx, "health", []byte("second"), time.Minute)
			if v, ok := c.Get(ctx, "health"); !ok || string(v) != "second" {
				t.Fatalf("after overwriting: Get = %q, %v; want second", v, ok)
			}
			c.Set(ctx, "empty", []byte{}, time.Minute)
			if v, ok := c.Get(ctx, "empty"); !ok || len(v) != 0 {
				t.Errorf("empty value: Get = %q, %v; want a hit", v, ok)
			}
			// A ttl under a millisecond stores nothing.
			c.Set(ctx, "brief", []byte("x"), time.Microsecond)
			c.Set(ctx, "none", []byte("x"), 0)
			for _, k := range []string{"brief", "none", "other"} {
				if v, ok := c.Get(ctx, k); ok {
					t.Errorf("Get(%q) = %q; want a miss", k, v)
				}
			}
			checkCounters(t, c.Counters(), 4, 4, 0)
		})
	}
}

// TestTTLExpiry checks that a value is served until its TTL and not after.
func TestTTLExpiry(t *testing.T) {
	for name, c := range caches(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			const ttl = 300 * time.Millisecond
			start := time.Now()
			c.Set(ctx, "k", []byte("v"), ttl)
			if _, ok := c.Get(ctx, "k"); !ok {
				t.Fatal("Get right after Set: miss; want a hit")
			}
			testenv.Eventually(t, 3*time.Second, "the value to expire", func() bool {
				_, ok := c.Get(ctx, "k")
				return !ok
			})
			if d := time.Since(start); d < ttl-20*time.Millisecond {
				t.Errorf("expired after %s; want no sooner than %s", d, ttl)
			}
		})
	}
}

func TestMemoryBounds(t *testing.T) {
	ctx := context.Background()
	t.Run("entries", func(t *testing.T) {
		m := NewMemory(MemoryConfig{MaxEntries: 3})
		for _, k := range []string{"a", "b", "c"} {
			m.Set(ctx, k, []byte(k), time.Minute)
		}
		m.Get(ctx, "a") // a is now the most recently used; b the least
		m.Set(ctx, "d", []byte("d"), time.Minute)
		for k, want := range map[string]bool{"a": true, "b": false, "c": true, "d": true} {
			if _, ok := m.Get(ctx, k); ok != want {
				t.Errorf("Get(%q): hit %v; want %v", k, ok, want)
			}
		}
		if n, _ := m.Len(); n != 3 {
			t.Errorf("Len() = %d entries; want 3", n)
		}
	})
	t.Run("bytes", func(t *testing.T) {
		m := NewMemory(MemoryConfig{MaxBytes: 3 * (entryOverhead + 1 + 100)})
		for _, k := range []string{"a", "b", "c", "d", "e"} {
			m.Set(ctx, k, bytes.Repeat([]byte{'x'}, 100), time.Minute)
			if _, size := m.Len(); size > m.cfg.MaxBytes {
				t.Fatalf("after %s: %d bytes; want at most %d", k, size, m.cfg.MaxBytes)
			}
		}
		if n, size := m.Len(); n != 3 || size != 3*(entryOverhead+101) {
			t.Errorf("Len() = %d, %d; want 3 entries of %d bytes", n, size, entryOverhead+101)
		}
		if _, ok := m.Get(ctx, "a"); ok {
			t.Error("the oldest value survived")
		}
		// A value larger than the whole bound is not stored, and takes
		// the old value of its key with it.
		m.Set(ctx, "e", bytes.Repeat([]byte{'x'}, int(m.cfg.MaxBytes)), time.Minute)
		if _, ok := m.Get(ctx, "e"); ok {
			t.Error("a value over the byte bound was stored (or the old one kept)")
		}
		if n, _ := m.Len(); n != 2 {
			t.Errorf("Len() = %d; want 2", n)
		}
	})
	t.Run("expired dropped on read", func(t *testing.T) {
		m := NewMemory(MemoryConfig{})
		clock := time.Now()
		m.now = func() time.Time { return clock }
		m.Set(ctx, "k", []byte("v"), time.Second)
		clock = clock.Add(999 * time.Millisecond)
		if _, ok := m.Get(ctx, "k"); !ok {
			t.Fatal("before the TTL: miss; want a hit")
		}
		clock = clock.Add(time.Millisecond)
		if _, ok := m.Get(ctx, "k"); ok {
			t.Fatal("at the TTL: hit; want a miss")
		}
		if n, size := m.Len(); n != 0 || size != 0 {
			t.Errorf("Len() = %d, %d; want 0, 0", n, size)
		}
	})
	if err := (MemoryConfig{MaxEntries: -1}).Validate(); err == nil {
		t.Error("Validate(MaxEntries -1): want an error")
	}
	if err := (MemoryConfig{}).Validate(); err != nil {
		t.Errorf("Validate(zero) = %v; want nil (defaults)", err)
	}
	if m := NewMemory(MemoryConfig{}); m.cfg.MaxEntries != DefaultMaxEntries || m.cfg.MaxBytes != DefaultMaxBytes {
		t.Errorf("NewMemory defaults: %+v", m.cfg)
	}
}

func TestKey(t *testing.T) {
	k := Key("performance.v1", "timeframe=24h", "metric=response_time", "service=", "endpoint=/api/x")
	if !strings.HasPrefix(k, "performance.v1:") || len(k) != len("performance.v1:")+32 {
		t.Errorf("Key = %q; want performance.v1: and 32 hex digits", k)
	}
	if strings.Contains(k, "api") || strings.Contains(k, "24h") {
		t.Errorf("Key = %q holds raw input", k)
	}
	same := Key("performance.v1", "endpoint=/api/x", "service=", "metric=response_time", "timeframe=24h")
	if same != k {
		t.Errorf("Key depends on the order of the parameters: %q != %q", same, k)
	}
	f := func(a, b []string) {
		t.Helper()
		if Key(a...) == Key(b...) {
			t.Errorf("Key(%q) == Key(%q); want different keys", a, b)
		}
	}
	f([]string{"p", "timeframe=24h"}, []string{"p", "timeframe=1h"})
	f([]string{"p", "timeframe=24h"}, []string{"q", "timeframe=24h"})
	f([]string{"p", "a=b", "c"}, []string{"p", "a=bc"})
	f([]string{"p", "a=b"}, []string{"p", "a=b", ""})
	f([]string{"p", "service="}, []string{"p"})
	if a, b := Key("health"), Key("health"); a != b || !strings.HasPrefix(a, "health:") {
		t.Errorf("Key(health) = %q, then %q; want one key in namespace health", a, b)
	}
	if k := Key(); k != "" {
		t.Errorf("Key() = %q; want empty", k)
	}
}

type answer struct {
	Status string    `json:"status"`
	P95    float64   `json:"p95"`
	At     time.Time `json:"at"`
	Hosts  []string  `json:"hosts"`
}

func TestGetOrLoad(t *testing.T) {
	for name, c := range caches(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			at := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
			var loads atomic.Int64
			load := func(context.Context) (answer, error) {
				loads.Add(1)
				return answer{Status: "healthy", P95: 123.5, At: at, Hosts: []string{"a", "b"}}, nil
			}
			want := answer{Status: "healthy", P95: 123.5, At: at, Hosts: []string{"a", "b"}}
			for i, wantHit := range []bool{false, true, true} {
				v, hit, err := GetOrLoad(ctx, c, "health", time.Minute, load)
				if err != nil || hit != wantHit || v.Status != want.Status || v.P95 != want.P95 || !v.At.Equal(at) || len(v.Hosts) != 2 {
					t.Fatalf("call %d: got %+v, hit %v, %v; want %+v, hit %v", i+1, v, hit, err, want, wantHit)
				}
			}
			if n := loads.Load(); n != 1 {
				t.Errorf("load called %d times; want 1", n)
			}
			checkCounters(t, c.Counters(), 2, 1, 0)

			// Errors are returned and not cached.
			boom := errors.New("clickhouse unavailable")
			fail := func(context.Context) (answer, error) { loads.Add(1); return answer{}, boom }
			for range 2 {
				if _, _, err := GetOrLoad(ctx, c, "failing", time.Minute, fail); !errors.Is(err, boom) {
					t.Fatalf("failing load: got %v; want %v", err, boom)
				}
			}
			if n := loads.Load(); n != 3 {
				t.Errorf("load called %d times; want 3 (a failure is not cached)", n)
			}

			// A cached value that no longer decodes is loaded afresh and
			// replaced.
			c.Set(ctx, "changed", []byte(`{"status": 5}`), time.Minute)
			v, hit, err := GetOrLoad(ctx, c, "changed", time.Minute, load)
			if err != nil || hit || v.Status != "healthy" {
				t.Fatalf("undecodable cached value: got %+v, hit %v, %v; want a fresh load", v, hit, err)
			}
			if _, hit, _ := GetOrLoad(ctx, c, "changed", time.Minute, load); !hit {
				t.Error("the fresh value was not stored")
			}

			// A value that cannot be encoded is an error, not a panic.
			_, _, err = GetOrLoad(ctx, c, "unencodable", time.Minute, func(context.Context) (func(), error) { return func() {}, nil })
			if err == nil {
				t.Error("unencodable value: want an error")
			}
			// A panicking load is an error, not a crash.
			_, _, err = GetOrLoad(ctx, c, "panics", time.Minute, func(context.Context) (answer, error) { panic("bug") })
			if err == nil || !strings.Contains(err.Error(), "panic") {
				t.Errorf("panicking load: got %v; want an error naming the panic", err)
			}
		})
	}
}

// TestGetOrLoadCoalesces checks that 100 concurrent misses on one key
// share one load.
func TestGetOrLoadCoalesces(t *testing.T) {
	for name, c := range caches(t) {
		t.Run(name, func(t *testing.T) {
			const n = 100
			var loads, started atomic.Int64
			load := func(context.Context) (answer, error) {
				loads.Add(1)
				// Hold the load until every caller has started, so that
				// they all miss while it runs.
				deadline := time.Now().Add(5 * time.Second)
				for started.Load() < n && time.Now().Before(deadline) {
					time.Sleep(time.Millisecond)
				}
				return answer{Status: "healthy"}, nil
			}
			var wg sync.WaitGroup
			var misses atomic.Int64
			for range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					started.Add(1)
					v, hit, err := GetOrLoad(context.Background(), c, "perf", time.Minute, load)
					if err != nil || v.Status != "healthy" {
						t.Errorf("GetOrLoad: %+v, %v", v, err)
					}
					if !hit {
						misses.Add(1)
					}
				}()
			}
			wg.Wait()
			if got := loads.Load(); got != 1 {
				t.Errorf("%d concurrent calls: load called %d times; want 1", n, got)
			}
			if misses.Load() < 2 {
				t.Errorf("only %d calls shared the load; want the test to have raced", misses.Load())
			}
		})
	}
}

// TestGetOrLoadCallerGivesUp checks that a caller whose context ends stops
// waiting, while the load it started goes on for the others and is cached.
func TestGetOrLoadCallerGivesUp(t *testing.T) {
	c := NewMemory(MemoryConfig{})
	release := make(chan struct{})
	loading := make(chan struct{})
	var loadErr atomic.Value
	load := func(ctx context.Context) (answer, error) {
		close(loading)
		<-release
		if err := ctx.Err(); err != nil {
			loadErr.Store(err)
		}
		return answer{Status: "healthy"}, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	first := make(chan error, 1)
	go func() {
		_, _, err := GetOrLoad(ctx, c, "k", time.Minute, load)
		first <- err
	}()
	<-loading
	second := make(chan answer, 1)
	go func() {
		v, _, _ := GetOrLoad(context.Background(), c, "k", time.Minute, func(context.Context) (answer, error) {
			return answer{Status: "second load"}, nil
		})
		second <- v
	}()
	cancel()
	if err := <-first; !errors.Is(err, context.Canceled) {
		t.Fatalf("first caller: got %v; want context.Canceled", err)
	}
	close(release)
	if v := <-second; v.Status != "healthy" {
		t.Errorf("second caller: got %+v; want the first caller's load", v)
	}
	if err := loadErr.Load(); err != nil {
		t.Errorf("the load's context ended with its caller: %v", err)
	}
	if _, ok := c.Get(context.Background(), "k"); !ok {
		t.Error("the load's value was not cached")
	}
}

// TestGetOrLoadSeparateCaches checks that loads of one key in two caches
// are not coalesced: each cache gets its own value.
func TestGetOrLoadSeparateCaches(t *testing.T) {
	a, b := NewMemory(MemoryConfig{}), NewMemory(MemoryConfig{})
	aLoading := make(chan struct{})
	bLoaded := make(chan struct{})
	done := make(chan answer, 1)
	go func() {
		v, _, _ := GetOrLoad(context.Background(), a, "k", time.Minute, func(context.Context) (answer, error) {
			close(aLoading)
			<-bLoaded // deadlocks if b's call waits for a's load
			return answer{Status: "a"}, nil
		})
		done <- v
	}()
	<-aLoading
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	v, _, err := GetOrLoad(ctx, b, "k", time.Minute, func(context.Context) (answer, error) { return answer{Status: "b"}, nil })
	close(bLoaded)
	if err != nil || v.Status != "b" {
		t.Errorf("cache b: got %+v, %v; want its own load", v, err)
	}
	if v := <-done; v.Status != "a" {
		t.Errorf("cache a: got %+v; want its own load", v)
	}
}

// TestRedisDown kills Redis under a Redis cache: Gets miss quickly,
// GetOrLoad still answers from its load without error, the failure is
// counted and logged once; when Redis is back it is used again.
func TestRedisDown(t *testing.T) {
	srv := startRedisServer(t)
	var log bytes.Buffer
	r, err := NewRedis(srv.Client(), "", nil, zerolog.New(&log))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	r.Set(ctx, "health", []byte(`{"status":"cached"}`), time.Minute)
	if v, ok := r.Get(ctx, "health"); !ok || string(v) != `{"status":"cached"}` {
		t.Fatalf("Get = %q, %v; want the cached value", v, ok)
	}

	srv.Stop()
	var loads int
	load := func(context.Context) (answer, error) { loads++; return answer{Status: "loaded"}, nil }
	for i := range 10 {
		start := time.Now()
		v, hit, err := GetOrLoad(ctx, r, "health", time.Minute, load)
		if d := time.Since(start); d > 200*time.Millisecond {
			t.Errorf("call %d with Redis down took %s; want at most 200ms", i+1, d)
		}
		if err != nil || hit || v.Status != "loaded" {
			t.Fatalf("call %d with Redis down: got %+v, hit %v, %v; want a load", i+1, v, hit, err)
		}
	}
	if loads != 10 {
		t.Errorf("load called %d times; want 10", loads)
	}
	if e := r.Counters().Errors.Load(); e < 1 {
		t.Errorf("Errors = %d; want at least 1", e)
	}
	if m := r.Counters().Misses.Load(); m != 10 {
		t.Errorf("Misses = %d; want 10", m)
	}
	lines := strings.Count(log.String(), "redis cache failing")
	if lines != 1 {
		t.Errorf("log has %d failure lines; want 1:\n%s", lines, log.String())
	}
	if strings.Contains(log.String(), srv.Addr()) {
		t.Errorf("log shows Redis's address:\n%s", log.String())
	}

	srv.Start()
	testenv.Eventually(t, 3*time.Second, "the cache to work again", func() bool {
		r.Set(ctx, "back", []byte("1"), time.Minute)
		_, ok := r.Get(ctx, "back")
		return ok
	})
	if !strings.Contains(log.String(), "redis cache answering again") {
		t.Errorf("no recovery line in the log:\n%s", log.String())
	}
}

// TestRedisHangs checks that a Redis that never answers delays a call by
// no more than the timeout.
func TestRedisHangs(t *testing.T) {
	srv := startRedisServer(t)
	r, err := NewRedis(srv.Client(), "", nil, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	r.outage.Retry = 0 // ask Redis every time
	r.SetTimeout(30 * time.Millisecond)
	ctx := context.Background()
	r.Set(ctx, "k", []byte("v"), time.Minute)
	srv.Pause()
	defer srv.Resume()
	for range 3 {
		start := time.Now()
		if _, ok := r.Get(ctx, "k"); ok {
			t.Error("Get from a hung Redis: hit")
		}
		r.Set(ctx, "k2", []byte("v"), time.Minute)
		if d := time.Since(start); d < 60*time.Millisecond || d > 200*time.Millisecond {
			t.Errorf("Get and Set on a hung Redis took %s; want about 2 x 30ms", d)
		}
	}
	if e := r.Counters().Errors.Load(); e != 6 {
		t.Errorf("Errors = %d; want 6", e)
	}
}

// TestRedisLogsOncePerInterval checks the log rate: one line per
// interval, counting the failures in between.
func TestRedisLogsOncePerInterval(t *testing.T) {
	srv := startRedisServer(t)
	var log bytes.Buffer
	r, err := NewRedis(srv.Client(), "", nil, zerolog.New(&log))
	if err != nil {
		t.Fatal(err)
	}
	r.outage.Retry = 0
	srv.Stop()
	ctx := context.Background()
	for range 20 {
		r.Get(ctx, "k")
	}
	if got := strings.Count(log.String(), "redis cache failing"); got != 1 {
		t.Fatalf("20 failures: %d lines; want 1", got)
	}
	r.outage.LogEvery = 0
	r.Get(ctx, "k")
	if got := strings.Count(log.String(), `"failures":20`); got != 1 {
		t.Errorf("second line does not count the 20 failures since the first:\n%s", log.String())
	}
}

// TestMetrics checks that each cache registers its counters under the
// names Pulse has always exported, and that a scrape sees them move: a
// miss and a hit, and for Redis an error once Redis is down.
func TestMetrics(t *testing.T) {
	ctx := context.Background()
	scrape := func(reg prometheus.Gatherer) (hits, misses, errs float64) {
		return testenv.Counter(t, reg, "pulse_cache_hits_total"), testenv.Counter(t, reg, "pulse_cache_misses_total"),
			testenv.Counter(t, reg, "pulse_cache_errors_total")
	}
	want := func(name string, reg prometheus.Gatherer, hits, misses, errs float64) {
		t.Helper()
		if h, m, e := scrape(reg); h != hits || m != misses || e != errs {
			t.Errorf("%s: scraped hits %v, misses %v, errors %v; want %v, %v, %v", name, h, m, e, hits, misses, errs)
		}
	}

	reg := prometheus.NewRegistry()
	m := NewMemory(MemoryConfig{Registerer: reg})
	m.Get(ctx, "k")
	m.Set(ctx, "k", []byte("v"), time.Minute)
	m.Get(ctx, "k")
	want("memory", reg, 1, 1, 0)

	srv := startRedisServer(t)
	reg = prometheus.NewRegistry()
	r, err := NewRedis(srv.Client(), "", reg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	r.Get(ctx, "k")
	r.Set(ctx, "k", []byte("v"), time.Minute)
	r.Get(ctx, "k")
	want("redis", reg, 1, 1, 0)
	srv.Stop()
	r.Get(ctx, "k")
	want("redis down", reg, 1, 2, 1)
}

func TestNewRedisRefusesClientWithoutContextTimeouts(t *testing.T) {
	opt, err := redis.ParseURL(redisURL())
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(opt)
	defer c.Close()
	if _, err := NewRedis(c, "", nil, zerolog.Nop()); err == nil {
		t.Error("NewRedis with a client ignoring context deadlines: want an error")
	}
	if _, err := NewRedis(nil, "", nil, zerolog.Nop()); err == nil {
		t.Error("NewRedis(nil): want an error")
	}
}

// TestRedisValueIsJSON checks what GetOrLoad stores: the JSON of the value
// under the prefixed key, with the TTL.
func TestRedisValueIsJSON(t *testing.T) {
	c := sharedClient(t)
	prefix := testPrefix(t, c)
	r, err := NewRedis(c, prefix, nil, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	key := Key("health.v1", "component=", "detailed=false")
	if _, _, err := GetOrLoad(ctx, r, key, 30*time.Second, func(context.Context) (answer, error) {
		return answer{Status: "healthy"}, nil
	}); err != nil {
		t.Fatal(err)
	}
	raw, err := c.Get(ctx, prefix+key).Bytes()
	if err != nil {
		t.Fatalf("GET %s: %v", prefix+key, err)
	}
	var a answer
	if err := json.Unmarshal(raw, &a); err != nil || a.Status != "healthy" {
		t.Errorf("stored %q; want the answer's JSON", raw)
	}
	if ttl := c.PTTL(ctx, prefix+key).Val(); ttl <= 29*time.Second || ttl > 30*time.Second {
		t.Errorf("PTTL = %s; want just under 30s", ttl)
	}
}

func BenchmarkMemoryGetOrLoadHit(b *testing.B) {
	c := NewMemory(MemoryConfig{})
	ctx := context.Background()
	load := func(context.Context) (answer, error) {
		return answer{Status: "healthy", Hosts: []string{"a", "b"}}, nil
	}
	if _, _, err := GetOrLoad(ctx, c, "k", time.Hour, load); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, hit, err := GetOrLoad(ctx, c, "k", time.Hour, load); err != nil || !hit {
			b.Fatal(hit, err)
		}
	}
}
