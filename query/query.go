// Package query is Pulse's read side: the admin API that answers how the
// platform is doing from what the pipeline stored in ClickHouse.
//
// Routes (all admin-only, registered through httpapi.Router):
//
//	GET /api/admin/system/performance  P50/P95/P99, throughput and error rates over 1h, 24h, 7d or 30d
//	GET /api/admin/system/resources    latest utilisation per host and resource, flagged against a threshold
//	GET /api/admin/system/health       component health, current performance, uptime from stored probe results
//
// Decisions every answer follows:
//
//   - error_rate is the share of 5xx responses (server failures); error_rate_4xx
//     and error_rate_5xx are given beside it, and error_rate_definition says so.
//   - /performance reads rollups, never raw request rows, so that its cost
//     grows with the number of services, endpoints and buckets, not of
//     requests: 1-minute rollups for 1h (1-minute buckets), 5-minute ones
//     for 24h (5-minute buckets) and 1-hour ones for 7d and 30d (1-hour
//     buckets); source names the period. Series and summary merge one
//     state per bucket and service (requests_*_svc), or per bucket of the
//     one endpoint asked for (requests_*_drill); the slowest endpoints merge
//     per endpoint the coarsest periods that tile the window
//     (requests_*_ep, schema.Tile: an hour ending at 12:01 is 11:01-11:05
//     and 12:00-12:01 in minutes and 11:05-12:00 in 5 minutes). Counts, error rates, sums and maxima are
//     exact. Percentiles come from latency histograms of bins 1.5% wide
//     (see schema.LatencyMS): the bin holding the exact percentile, read as
//     its middle and capped at the maximum, within 0.75% of exact for any
//     number of requests (percentile_method "histogram"). The summary is
//     its own query over the window (not WITH ROLLUP, which on ClickHouse
//     18.16 gives partial totals at volume). The window is timeframe long,
//     aligned to bucket boundaries of Unix time, and ends at the end of the
//     bucket holding now: its last bucket is still filling. Series list
//     only the buckets with requests (or samples), unless fill=true asks
//     for every bucket, empty ones with count 0 and null figures; limit
//     (0-100, default 10) bounds the slowest endpoints. metric selects the
//     sections: response_time, throughput and error_rate give the request
//     series, summary and slowest endpoints (each point carries every figure);
//     resource_usage gives only utilisation per resource type; no metric
//     gives both (utilisation only without a service or endpoint filter, as
//     resource samples are per host).
//   - Uptime is the share of probe runs whose status was healthy or degraded
//     (the component answered), among the runs with a known status: unknown
//     runs are left out of both sides.
//   - A probe writes status unknown with details {"configured": false} for a
//     component it is not configured to check. Such a component, and one with
//     no stored result at all ("no probe results yet"), is not configured: it
//     shows as unknown with a reason and does not count towards
//     overall_status. A configured component whose latest result is unknown
//     (its probe could not tell), or older than Config.StaleAfter (its probe
//     stopped), is shown as unknown and counts as degraded: Pulse cannot see
//     it. overall_status is the worst of the configured components answered
//     (all six, or the one asked for), or unknown when none is configured.
//   - A component of several targets (external: one per dependency;
//     pipeline: nats, clickhouse, redis) has the worst status of its
//     configured targets (critical, degraded, unknown, healthy) and lists
//     them; a target that stopped reporting while others still do is left
//     out, as removed from the probe's configuration.
//   - Components carry the spec's names: the probes' external component is
//     answered as external_services (component= takes external, the spec's
//     query schema's value, or external_services). A failed component (its
//     probe reported an error, or its status is critical) carries the
//     spec's error and last_error, built from the sanitised details.
//     performance_metrics carries the spec's avg_response_time (0 without
//     requests) beside Pulse's nullable figures; timeframe is accepted and
//     echoed (status is current, uptime covers 24h, 7d and 30d).
//   - Monitoring does not go dark with the store: when a health query
//     fails on ClickHouse and Config.Probes is set, the answer is 200 from
//     the probes' latest results in memory (source "probes", store.status
//     "down"), with performance_metrics and uptime of the last answer read
//     from the store, named in stale with their time; such an answer is not
//     cached. Every other route answers 503 with Retry-After.
//   - Details written by the probes are shown only with detailed=true, after
//     dropping keys that name credentials or addresses and scrubbing URLs,
//     IP addresses and host:port pairs from strings.
//
// Health answers are cached for Config.HealthCacheTTL (30 s) and performance
// answers for 10 s (1h), 30 s (24h) or 60 s (7d, 30d), keyed by the
// normalised query; concurrent misses of one key share one computation. An
// answer says X-Cache: hit or miss when there is a cache.
//
// Every query runs under Config.QueryTimeout. When ClickHouse fails or times
// out the answer is 503 with Retry-After (health: see above); bad input, unknown parameters
// included, is 400 with field errors.
package query

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/rs/zerolog"
	"golang.org/x/sync/singleflight"

	"github.com/wedsync/pulse/internal/auth"
	"github.com/wedsync/pulse/internal/cache"
	"github.com/wedsync/pulse/internal/chstore"
	"github.com/wedsync/pulse/internal/httpapi"
)

// Cache keeps encoded answers for a while. Get reports false on a miss or
// when the cache cannot answer; Set may drop the value. Implementations
// must be safe for concurrent use and bound their own latency: the API
// calls them on every request. A nil Cache caches nothing.
type Cache interface {
	Get(ctx context.Context, key string) ([]byte, bool)
	Set(ctx context.Context, key string, value []byte, ttl time.Duration)
}

// Store is what the API reads: queries over the tables of one ClickHouse
// database (chstore.Store). It must be safe for concurrent use.
type Store interface {
	Database() string
	T(table string) string // the qualified name of a table of the database
	Query(ctx context.Context, sql string) (chstore.Rows, error)
	QueryRow(ctx context.Context, sql string, dest ...any) error
}

// Config tunes the API. Zero fields get defaults in New.
type Config struct {
	QueryTimeout   time.Duration    // bound of the ClickHouse work of one answer (default 10s)
	RetryAfter     time.Duration    // Retry-After of a 503 (default 5s)
	HealthCacheTTL time.Duration    // how long a health answer is served from the cache (default 30s, the spec)
	StaleAfter     time.Duration    // a probe result older than this no longer says how a component is (default 5m)
	Now            func() time.Time // the clock (default time.Now)
	// Probes, when not nil, gives the probes' latest results in memory:
	// while the store is down, health answers from them (see the package
	// doc) instead of 503.
	Probes Probes
}

func (c *Config) defaults() {
	if c.QueryTimeout == 0 {
		c.QueryTimeout = 10 * time.Second
	}
	if c.RetryAfter == 0 {
		c.RetryAfter = 5 * time.Second
	}
	if c.HealthCacheTTL == 0 {
		c.HealthCacheTTL = 30 * time.Second
	}
	if c.StaleAfter == 0 {
		c.StaleAfter = 5 * time.Minute
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate checks c; zero fields are valid (they take defaults).
func (c Config) Validate() error {
	switch {
	case c.QueryTimeout < 0:
		return errors.New("query timeout must not be negative")
	case c.RetryAfter < 0:
		return errors.New("query retry-after must not be negative")
	case c.HealthCacheTTL < 0:
		return errors.New("health cache TTL must not be negative")
	case c.StaleAfter < 0:
		return errors.New("probe staleness limit must not be negative")
	}
	return nil
}

// Performance answers are cached for a time that fits their timeframe.
const (
	ttl1h   = 10 * time.Second
	ttl24h  = 30 * time.Second
	ttlLong = 60 * time.Second
)

// CacheStats counts cache lookups of this API.
type CacheStats struct {
	Hits   uint64 `json:"hits"`
	Misses uint64 `json:"misses"`
}

// API serves the admin read routes. It is safe for concurrent use; it
// starts no goroutines that outlive a request.
type API struct {
	cfg   Config
	store Store
	cache Cache
	log   zerolog.Logger

	flight       singleflight.Group // one computation per cache key at a time
	hits, misses atomic.Uint64
	last         lastFigures // of the last health answer read from the store
}

// New returns the API reading store, with cfg's zero fields set to their
// defaults; it fails when cfg is invalid or store is nil. cache may be nil.
func New(cfg Config, store Store, cache Cache, log zerolog.Logger) (*API, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("query config: %w", err)
	}
	if store == nil {
		return nil, errors.New("query: no store")
	}
	cfg.defaults()
	return &API{cfg: cfg, store: store, cache: cache, log: log.With().Str("component", "query").Logger()}, nil
}

// Register adds the routes to r, each for admins only.
func (a *API) Register(r *httpapi.Router) {
	r.Handle(http.MethodGet, "/api/admin/system/performance", auth.ScopeAdmin, a.performance)
	r.Handle(http.MethodGet, "/api/admin/system/resources", auth.ScopeAdmin, a.resources)
	r.Handle(http.MethodGet, "/api/admin/system/health", auth.ScopeAdmin, a.health)
}

// CacheStats returns the cache hits and misses so far.
func (a *API) CacheStats() CacheStats {
	return CacheStats{Hits: a.hits.Load(), Misses: a.misses.Load()}
}

// cacheKey is the cache key of an answer of route to the normalised query
// params ("name=value", every parameter with defaults applied): versioned
// with the answer's shape, and keyed by the database too, so that
// deployments sharing a cache do not share answers.
func (a *API) cacheKey(route string, params ...string) string {
	return cache.Key(append([]string{"query." + route + ".v1", "database=" + a.store.Database()}, params...)...)
}

// cacheTimeout bounds a cache lookup or store, so that a slow cache costs
// at most this much.
const cacheTimeout = time.Second

// answer writes the JSON of what build returns, served from the cache
// under key when it holds it and stored there for ttl otherwise.
// Concurrent misses of one key share one build.
func (a *API) answer(c echo.Context, key string, ttl time.Duration, build func(ctx context.Context) (any, error)) error {
	rctx := c.Request().Context()
	if a.cache != nil {
		ctx, cancel := context.WithTimeout(rctx, cacheTimeout)
		b, ok := a.cache.Get(ctx, key)
		cancel()
		if ok {
			a.hits.Add(1)
			c.Response().Header().Set("X-Cache", "hit")
			return c.JSONBlob(http.StatusOK, b)
		}
		a.misses.Add(1)
	}
	v, err, _ := a.flight.Do(key, func() (any, error) {
		// The work is shared, so one caller going away must not cancel it.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(rctx), a.cfg.QueryTimeout)
		defer cancel()
		body, err := build(ctx)
		if err != nil {
			return nil, err
		}
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("encode answer: %w", err)
		}
		if t, ok := body.(interface{ transient() bool }); ok && t.transient() {
			return b, nil // a stop-gap answer: the next one reads again
		}
		if a.cache != nil {
			cctx, ccancel := context.WithTimeout(ctx, cacheTimeout)
			a.cache.Set(cctx, key, b, ttl)
			ccancel()
		}
		return b, nil
	})
	if err != nil {
		return err
	}
	if a.cache != nil {
		c.Response().Header().Set("X-Cache", "miss")
	}
	return c.JSONBlob(http.StatusOK, v.([]byte))
}

// unavailable logs a failed store query and returns the safe 503 for it.
func (a *API) unavailable(what string, err error) error {
	a.log.Warn().Err(err).Str("query", what).Msg("ClickHouse query failed; answered 503")
	return httpapi.Unavailable("the metrics store is unavailable; retry later", a.cfg.RetryAfter)
}

// num returns v, or nil when it is not a finite number (JSON has none).
func num(v float64) *float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return &v
}

// ratio returns part/whole, or nil when whole is 0.
func ratio(part, whole uint64) *float64 {
	if whole == 0 {
		return nil
	}
	return num(float64(part) / float64(whole))
}
