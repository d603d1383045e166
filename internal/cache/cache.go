// Package cache keeps encoded answers for a while, so that repeated admin
// reads (health, performance trends) do not each query ClickHouse. Two
// Caches: Redis, shared by every Pulse process, and Memory, in-process and
// bounded. GetOrLoad puts a typed value through either, JSON-encoded, and
// coalesces concurrent loads of one key within the process.
//
// A cache is an optimisation, never a dependency: when Redis fails, Get
// is a miss and Set does nothing, so answers are computed afresh (see
// Redis for the timeout and the logging).
package cache

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"
)

// Cache holds values by key for a time. Implementations are safe for
// concurrent use, and never fail: a value that cannot be read is a miss,
// one that cannot be stored is not stored.
type Cache interface {
	// Get returns the value of key and true, or false on a miss. The
	// returned slice is the caller's.
	Get(ctx context.Context, key string) ([]byte, bool)
	// Set stores value under key for ttl; a ttl below a millisecond
	// stores nothing. Set copies value.
	Set(ctx context.Context, key string, value []byte, ttl time.Duration)
}

// Counters count a Cache's lookups. Safe for concurrent use.
type Counters struct {
	Hits   atomic.Uint64 // Gets that found a value
	Misses atomic.Uint64 // Gets that did not, failed ones included
	Errors atomic.Uint64 // failed calls to the backing store, Get and Set
}

// register exports c on reg, when not nil, as pulse_cache_hits_total,
// pulse_cache_misses_total and pulse_cache_errors_total, read on each
// scrape. It panics if reg holds them already: one response cache per
// registry.
func (c *Counters) register(reg prometheus.Registerer) {
	if reg == nil {
		return
	}
	counter := func(name, help string, v *atomic.Uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(v.Load()) })
	}
	reg.MustRegister(
		counter("pulse_cache_hits_total", "Response cache lookups that found an answer.", &c.Hits),
		counter("pulse_cache_misses_total", "Response cache lookups that did not.", &c.Misses),
		counter("pulse_cache_errors_total", "Failed calls to the cache's store (Redis).", &c.Errors),
	)
}

// Key builds a cache key from parts: parts[0] is a readable namespace
// (e.g. "performance.v1"), the rest are the query's normalised parameters
// as "name=value" strings, in any order. The parameters are sorted and
// hashed, so the key is short, holds no raw input, and is the same for
// the same set of parameters however they were given.
//
// Build the parameters from the validated query with defaults applied,
// not from the raw URL: "?timeframe=1h" and no timeframe (default 1h)
// should be one key. Include every parameter, empty or not, so that
// "service=" and a missing service agree.
func Key(parts ...string) string {
	if len(parts) == 0 {
		return ""
	}
	params := slices.Clone(parts[1:])
	slices.Sort(params)
	h := sha256.New()
	var n [binary.MaxVarintLen64]byte
	for _, p := range params {
		// Length-prefixed, so that no two lists of parts hash alike.
		h.Write(n[:binary.PutUvarint(n[:], uint64(len(p)))])
		h.Write([]byte(p))
	}
	return parts[0] + ":" + hex.EncodeToString(h.Sum(nil)[:16])
}

// flights coalesces GetOrLoad's loads within the process.
var flights singleflight.Group

// GetOrLoad returns the value of key from c, or loads it, stores it in c
// for ttl and returns it. hit reports whether c had it.
//
// Values go through JSON both ways, so the value returned is the same
// whether it was cached or loaded: T must survive encoding/json (exported
// fields; times lose their monotonic reading). A cached value that no
// longer decodes into T (its type changed in a deploy) is loaded afresh.
//
// Concurrent calls for the same c, key and T in this process share one
// lookup and, on a miss, one load: c's counters count lookups, not calls.
// The shared work runs with the first caller's context values and
// deadline but not its cancellation, so a caller that gives up does not
// fail the others; each caller waits until the work ends or its own ctx
// is done, and gets a value of its own. A load's error is returned to
// every caller sharing it and not cached; a load that panics returns an
// error.
func GetOrLoad[T any](ctx context.Context, c Cache, key string, ttl time.Duration, load func(ctx context.Context) (T, error)) (value T, hit bool, err error) {
	var zero T
	ch := flights.DoChan(flightKey[T](c, key), func() (res any, err error) {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("load %s for the cache: panic: %v", key, r)
			}
		}()
		lctx := context.WithoutCancel(ctx)
		if deadline, ok := ctx.Deadline(); ok {
			var cancel context.CancelFunc
			lctx, cancel = context.WithDeadline(lctx, deadline)
			defer cancel()
		}
		if b, ok := c.Get(lctx, key); ok {
			var v T
			if json.Unmarshal(b, &v) == nil {
				return flight[T]{b: b, v: v, hit: true}, nil
			}
		}
		loaded, err := load(lctx)
		if err != nil {
			return nil, err
		}
		b, err := json.Marshal(loaded)
		if err != nil {
			return nil, fmt.Errorf("encode %T for the cache: %w", loaded, err)
		}
		c.Set(lctx, key, b, ttl)
		var v T // as a hit would read it
		if err := json.Unmarshal(b, &v); err != nil {
			return nil, fmt.Errorf("decode %T from the cache: %w", v, err)
		}
		return flight[T]{b: b, v: v}, nil
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return zero, false, r.Err
		}
		f := r.Val.(flight[T])
		if !r.Shared {
			return f.v, f.hit, nil
		}
		var v T // each sharer gets its own copy
		if err := json.Unmarshal(f.b, &v); err != nil {
			return zero, false, fmt.Errorf("decode %T from the cache: %w", v, err)
		}
		return v, f.hit, nil
	case <-ctx.Done():
		return zero, false, ctx.Err()
	}
}

// flight is the outcome of GetOrLoad's shared work.
type flight[T any] struct {
	b   []byte
	v   T
	hit bool
}

// flightKey keeps the flights of different caches and types apart.
func flightKey[T any](c Cache, key string) string {
	id := ""
	if v := reflect.ValueOf(c); v.Kind() == reflect.Pointer {
		id = strconv.FormatUint(uint64(v.Pointer()), 16)
	}
	return id + "/" + reflect.TypeFor[T]().String() + "/" + key
}
