package cache

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/wedsync/pulse/internal/safeerr"
)

// DefaultTimeout bounds each Redis call of a Redis cache.
const DefaultTimeout = 50 * time.Millisecond

// DefaultPrefix starts every key of a Redis cache made with prefix "".
const DefaultPrefix = "pulse:cache:"

// RetryInterval is how long a Redis cache leaves Redis alone after a
// failure: meanwhile every Get is a miss and every Set is dropped.
const RetryInterval = 500 * time.Millisecond

// LogInterval is the least time between two log lines about a failing
// Redis, per Redis cache.
const LogInterval = time.Minute

// Redis is a Cache in Redis, shared by every process using the same Redis
// and prefix. Each call waits at most DefaultTimeout; a failure makes Get
// a miss and Set a no-op, is counted in Errors, and is logged at most once
// per LogInterval with its kind and count (never the error text, which
// can hold Redis's address); after one, Redis is left alone for
// RetryInterval, so an outage costs one timeout per interval rather than
// one per request. Safe for concurrent use; it owns no goroutine and does
// not close the client.
type Redis struct {
	client   *redis.Client
	prefix   string
	timeout  time.Duration
	log      zerolog.Logger
	counters Counters
	outage   safeerr.Outage // RetryInterval and LogInterval; tests shorten them
}

// NewRedis returns a Cache on client whose keys start with prefix
// (DefaultPrefix when empty). When reg is not nil, the cache's counters
// are registered on it (see Counters.register).
//
// The client must have Options.ContextTimeoutEnabled set: without it
// go-redis ignores the call's deadline on the socket and a hanging Redis
// would hold a request for the client's ReadTimeout (seconds). NewRedis
// refuses such a client.
func NewRedis(client *redis.Client, prefix string, reg prometheus.Registerer, log zerolog.Logger) (*Redis, error) {
	if client == nil {
		return nil, errors.New("redis cache: no client")
	}
	if !client.Options().ContextTimeoutEnabled {
		return nil, errors.New("redis cache: the client must have ContextTimeoutEnabled, or a hanging Redis hangs requests")
	}
	if prefix == "" {
		prefix = DefaultPrefix
	}
	r := &Redis{
		client: client, prefix: prefix, timeout: DefaultTimeout,
		log:    log.With().Str("component", "cache").Logger(),
		outage: safeerr.Outage{Retry: RetryInterval, LogEvery: LogInterval},
	}
	r.counters.register(reg)
	return r, nil
}

// SetTimeout changes the bound on each Redis call. Call it before use.
func (r *Redis) SetTimeout(d time.Duration) { r.timeout = d }

// Counters returns r's counters.
func (r *Redis) Counters() *Counters { return &r.counters }

// Get implements Cache.
func (r *Redis) Get(ctx context.Context, key string) ([]byte, bool) {
	if !r.outage.Usable() {
		r.counters.Misses.Add(1)
		return nil, false
	}
	cctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	b, err := r.client.Get(cctx, r.prefix+key).Bytes()
	switch {
	case err == nil:
		r.succeeded()
		r.counters.Hits.Add(1)
		return b, true
	case errors.Is(err, redis.Nil):
		r.succeeded()
		r.counters.Misses.Add(1)
		return nil, false
	}
	r.counters.Misses.Add(1)
	r.failed(ctx, err)
	return nil, false
}

// Set implements Cache.
func (r *Redis) Set(ctx context.Context, key string, value []byte, ttl time.Duration) {
	if ttl < time.Millisecond || !r.outage.Usable() {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	if err := r.client.Set(cctx, r.prefix+key, value, ttl).Err(); err != nil {
		r.failed(ctx, err)
		return
	}
	r.succeeded()
}

// failed records err, unless the caller's ctx ended: a caller that gave
// up is no sign of a failing Redis.
func (r *Redis) failed(ctx context.Context, err error) {
	if ctx.Err() != nil {
		return
	}
	r.counters.Errors.Add(1)
	if log, n := r.outage.Failed(); log {
		r.log.Warn().Str("kind", errorKind(err)).Int("failures", n).
			Msg("redis cache failing; answering without the cache until it answers")
	}
}

func (r *Redis) succeeded() {
	if log, n := r.outage.Succeeded(); log {
		r.log.Info().Int("failures_since_last_line", n).Msg("redis cache answering again")
	}
}

// errorKind names the kind of a Redis failure for a log line, without
// quoting the error, whose text can hold Redis's address.
var errorKind = safeerr.RedisKind
