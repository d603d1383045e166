package safeerr

import (
	"sync"
	"sync/atomic"
	"time"
)

// Outage tracks the failures of a dependency Pulse can do without (Redis
// behind the response cache and the rate limiter): after a failure the
// dependency is left alone for Retry, and its failures are worth a log line
// at most once per LogEvery, its recovery once after a logged failure, so
// that a flapping dependency logs no more than one pair of lines per
// LogEvery. Outage decides when to log; its user writes the line (with
// RedisKind, never the error text).
//
// Set Retry and LogEvery before use; the zero Outage asks the dependency
// every time and logs every failure. Safe for concurrent use.
type Outage struct {
	Retry    time.Duration // how long the dependency is left alone after a failure
	LogEvery time.Duration // least time between two failure lines

	failing atomic.Bool // failed and has not answered since

	mu         sync.Mutex
	retryAt    time.Time // while failing and now is before, the dependency is not asked
	lastLog    time.Time
	reported   bool // a failure was logged and its recovery not yet
	unreported int  // failures since the last line
}

// Usable reports whether the dependency may be asked now: it has not
// failed, or Retry has passed since it last did.
func (o *Outage) Usable() bool {
	if !o.failing.Load() {
		return true
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	return !time.Now().Before(o.retryAt)
}

// Failed records a failure. log reports whether to write a failure line
// now; failures is then the number of failures it stands for, this one
// included.
func (o *Outage) Failed() (log bool, failures int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	now := time.Now()
	o.failing.Store(true)
	o.retryAt = now.Add(o.Retry)
	o.unreported++
	if !o.lastLog.IsZero() && now.Sub(o.lastLog) < o.LogEvery {
		return false, 0
	}
	failures = o.unreported
	o.lastLog, o.reported, o.unreported = now, true, 0
	return true, failures
}

// Succeeded records an answer. log reports whether to write a recovery
// line now (the first answer after a logged failure); failures is then the
// number of failures since the last failure line.
func (o *Outage) Succeeded() (log bool, failures int) {
	if !o.failing.Load() {
		return false, 0
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.failing.Load() {
		return false, 0
	}
	o.failing.Store(false)
	if !o.reported {
		return false, 0
	}
	o.reported = false
	return true, o.unreported
}
