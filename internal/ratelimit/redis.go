package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wedsync/pulse/internal/safeerr"
)

// DefaultTimeout bounds each Redis call of a Redis limiter.
const DefaultTimeout = 50 * time.Millisecond

// DefaultPrefix starts every key of a Redis limiter made with prefix "".
const DefaultPrefix = "pulse:rl:"

// Redis is a Limiter whose buckets live in Redis, shared by every process
// using the same Redis and prefix. It is safe for concurrent use; it owns
// no goroutine and does not close the client.
type Redis struct {
	client  *redis.Client
	prefix  string
	timeout time.Duration
}

// NewRedis returns a Limiter on client whose keys start with prefix
// (DefaultPrefix when empty). Each call waits at most DefaultTimeout.
//
// The client must have Options.ContextTimeoutEnabled set: without it
// go-redis ignores the call's deadline on the socket and a hanging Redis
// would hold a request for the client's ReadTimeout (seconds). NewRedis
// refuses such a client.
func NewRedis(client *redis.Client, prefix string) (*Redis, error) {
	if client == nil {
		return nil, errors.New("redis rate limiter: no client")
	}
	if !client.Options().ContextTimeoutEnabled {
		return nil, errors.New("redis rate limiter: the client must have ContextTimeoutEnabled, or a hanging Redis hangs requests")
	}
	if prefix == "" {
		prefix = DefaultPrefix
	}
	return &Redis{client: client, prefix: prefix, timeout: DefaultTimeout}, nil
}

// SetTimeout changes the bound on each Redis call. Call it before use.
func (r *Redis) SetTimeout(d time.Duration) { r.timeout = d }

// gcraScript is gcra in Lua, in microseconds, on Redis's clock.
// KEYS[1] bucket; ARGV[1] interval (µs); ARGV[2] requests.
// Returns {allowed (0|1), remaining, reset after (µs), retry after (µs)}.
var gcraScript = redis.NewScript(`
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local period = interval * tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local clamped = false
if tat > now + period then tat = now + period; clamped = true end
local next = tat + interval
local allow_at = next - period
if now < allow_at then
  if clamped then
    redis.call('SET', KEYS[1], string.format('%d', tat), 'PX', math.ceil((tat - now) / 1000))
  end
  return {0, 0, tat - now, allow_at - now}
end
redis.call('SET', KEYS[1], string.format('%d', next), 'PX', math.ceil((next - now) / 1000))
return {1, math.floor((period - (next - now)) / interval), next - now, 0}
`)

// Allow implements Limiter with one atomic script call. An error means
// Redis did not answer in time or failed; the request was not counted.
func (r *Redis) Allow(ctx context.Context, key string, limit Limit) (Result, error) {
	if err := limit.Validate(); err != nil {
		return Result{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	interval := limit.interval().Microseconds()
	v, err := gcraScript.Run(ctx, r.client, []string{r.prefix + key}, interval, limit.Requests).Int64Slice()
	if err != nil {
		return Result{}, fmt.Errorf("redis rate limit: %w", err)
	}
	if len(v) != 4 {
		return Result{}, fmt.Errorf("redis rate limit: script returned %d values, want 4", len(v))
	}
	return Result{
		Allowed:    v[0] == 1,
		Limit:      limit.Requests,
		Remaining:  int(v[1]),
		ResetAfter: time.Duration(v[2]) * time.Microsecond,
		RetryAfter: time.Duration(v[3]) * time.Microsecond,
	}, nil
}

// errorKind names the kind of a Redis failure for a log line, without
// quoting the error, whose text can hold Redis's address.
var errorKind = safeerr.RedisKind
