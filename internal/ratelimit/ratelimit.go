// Package ratelimit limits how often each principal may call a class of
// routes, with one algorithm behind two Limiters: Redis, shared by every
// Pulse process, and Memory, in-process. Middleware applies a Limiter to
// echo routes and answers 429 with Retry-After and RateLimit headers.
//
// # Algorithm
//
// Both limiters implement GCRA, the generic cell rate algorithm (a leaky
// bucket kept as a single timestamp, the "theoretical arrival time"). A
// Limit of N requests per P allows a burst of N, then one request every
// P/N; a bucket left alone for P is full again. GCRA was chosen over the
// alternatives because:
//
//   - a fixed window (INCR + PEXPIRE) lets 2N through across a window
//     boundary, and its Retry-After is the rest of the window;
//   - a sliding log stores every request (N entries per principal);
//   - a sliding-window counter is an approximation;
//   - GCRA is exact, stores one integer per principal that expires by
//     itself once the bucket is full (PEXPIRE), and yields exact
//     Remaining, Reset and Retry-After values.
//
// In Redis it runs as one Lua script (atomic: concurrent requests from any
// number of processes can never let more than N through), reading the
// clock with TIME on the Redis server, so that Pulse processes with skewed
// clocks agree. Keys are "<prefix><class>:<principal>", by default
// "pulse:rl:admin:ops".
//
// # When Redis fails
//
// Every Redis call has a short timeout (DefaultTimeout, 50 ms), so a
// hanging Redis delays a request by at most that much. After a failure
// Middleware stops asking Redis for RetryInterval, then tries again, so an
// outage costs one timeout per interval per class rather than one per
// request; it logs the failure at most once per LogInterval per class
// (with the number of failures since the last line, never the error text,
// which can hold Redis's address) and logs when Redis answers again.
// What happens to the request meanwhile is the Middleware's Policy. Pulse
// uses Fallback for both classes:
//
//	class   default limit            Redis fails  during the outage
//	admin   60/min per principal     Fallback     admins keep their dashboards; still limited
//	ingest  6000/min per principal   Fallback     fleet events keep flowing; still limited
//
// Under Fallback a request is never answered 500 and never let through
// unlimited: the in-process limiter decides, its buckets starting full, so
// the effective limit during an outage is N per process (N times the
// number of Pulse processes behind the load balancer). FailClosed would
// turn a Redis outage into an admin API outage, and for ingest into 503s
// that every app in the fleet retries at once; FailOpen would lift the
// limit exactly when something is already wrong. Both exist for
// deployments that want them; neither is Pulse's default.
//
// A call that timed out may still have been executed by Redis (a paused
// Redis runs the queued script when it resumes), so an outage can count a
// request twice, once in Redis and once in process; it never counts none.
package ratelimit

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Classes of routes, each with its own limit and its own buckets.
const (
	ClassAdmin  = "admin"
	ClassIngest = "ingest"
)

// Default limits per principal.
var (
	// DefaultAdmin is the limit on admin reads (the spec's 60 per minute).
	DefaultAdmin = Limit{Requests: 60, Per: time.Minute}
	// DefaultIngest is the limit on ingest: a fleet host posts batches
	// often, and several hosts may share a token.
	DefaultIngest = Limit{Requests: 6000, Per: time.Minute}
)

// Limit is Requests per Per: a burst of Requests, refilled evenly over Per.
type Limit struct {
	Requests int
	Per      time.Duration
}

// Validate reports whether l can be enforced: both fields positive and at
// least a microsecond between requests.
func (l Limit) Validate() error {
	if l.Requests <= 0 || l.Per <= 0 {
		return fmt.Errorf("rate limit %d per %s: requests and period must be positive", l.Requests, l.Per)
	}
	if l.Per/time.Duration(l.Requests) < time.Microsecond {
		return fmt.Errorf("rate limit %d per %s: more than one request per microsecond", l.Requests, l.Per)
	}
	return nil
}

func (l Limit) String() string { return fmt.Sprintf("%d/%s", l.Requests, l.Per) }

// interval is the time between requests at the sustained rate.
func (l Limit) interval() time.Duration { return l.Per / time.Duration(l.Requests) }

// ParseLimit reads a limit written as "<requests>/<period>", where period
// is a Go duration ("1m", "30s") or a unit: s, sec, second, m, min,
// minute, h, hour. For example "60/min" or "6000/1m".
func ParseLimit(s string) (Limit, error) {
	n, per, ok := strings.Cut(strings.TrimSpace(s), "/")
	if !ok {
		return Limit{}, fmt.Errorf("rate limit %q: want <requests>/<period>, e.g. 60/min", s)
	}
	reqs, err := strconv.Atoi(strings.TrimSpace(n))
	if err != nil {
		return Limit{}, fmt.Errorf("rate limit %q: requests %q is not a whole number", s, n)
	}
	var d time.Duration
	switch p := strings.TrimSpace(per); p {
	case "s", "sec", "second":
		d = time.Second
	case "m", "min", "minute":
		d = time.Minute
	case "h", "hour":
		d = time.Hour
	default:
		if d, err = time.ParseDuration(p); err != nil {
			return Limit{}, fmt.Errorf("rate limit %q: period %q is not a duration or a unit", s, p)
		}
	}
	l := Limit{Requests: reqs, Per: d}
	return l, l.Validate()
}

// Result is a Limiter's decision on one request.
type Result struct {
	Allowed   bool
	Limit     int // the limit's Requests
	Remaining int // requests allowed right now after this one
	// ResetAfter is how long until the bucket is full again.
	ResetAfter time.Duration
	// RetryAfter is, when refused, how long until a request is allowed.
	RetryAfter time.Duration
}

// Limiter decides whether the request of key may go ahead under limit and
// counts it if so. Implementations are safe for concurrent use.
type Limiter interface {
	Allow(ctx context.Context, key string, limit Limit) (Result, error)
}

// gcra applies one request to a bucket whose theoretical arrival time is
// tat (zero or in the past: full), at now, and returns the decision and
// the bucket's new tat. Times are in any one unit; Memory uses
// nanoseconds, the Lua script the same steps in microseconds.
func gcra(tat, now, interval int64, requests int) (res Result, newTAT int64) {
	period := interval * int64(requests) // the burst, exactly requests intervals
	if tat < now {
		tat = now
	}
	if tat > now+period { // stored under a longer limit than today's
		tat = now + period
	}
	next := tat + interval
	allowAt := next - period
	if now < allowAt {
		return Result{Limit: requests, ResetAfter: time.Duration(tat - now), RetryAfter: time.Duration(allowAt - now)}, tat
	}
	return Result{
		Allowed:    true,
		Limit:      requests,
		Remaining:  int((period - (next - now)) / interval),
		ResetAfter: time.Duration(next - now),
	}, next
}
