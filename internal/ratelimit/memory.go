package ratelimit

import (
	"context"
	"sync"
	"time"
)

// DefaultMaxKeys bounds the buckets a Memory limiter keeps.
const DefaultMaxKeys = 100_000

// sweepEvery is how often Memory drops the buckets that are full again.
const sweepEvery = time.Minute

// Memory is a Limiter whose buckets live in this process. Memory stays
// bounded: a bucket is only a timestamp, and one that has refilled
// completely carries no information, so Memory drops those at most every
// minute and whenever it holds DefaultMaxKeys buckets. If it still holds
// that many (that many principals active at once), it drops arbitrary
// buckets down to 90% of the bound; their principals start over with a
// full bucket, so the bound can loosen a limit but never tighten one.
//
// It is safe for concurrent use and owns no goroutine.
type Memory struct {
	mu        sync.Mutex
	tat       map[string]int64 // key -> theoretical arrival time, ns since epoch
	epoch     time.Time
	lastSweep int64
	maxKeys   int
	now       func() int64 // ns since epoch on the monotonic clock; for tests
}

// NewMemory returns an empty in-process Limiter.
func NewMemory() *Memory {
	m := &Memory{tat: map[string]int64{}, epoch: time.Now(), maxKeys: DefaultMaxKeys}
	m.now = func() int64 { return int64(time.Since(m.epoch)) }
	return m
}

// Allow implements Limiter. It fails only for an invalid limit.
func (m *Memory) Allow(_ context.Context, key string, limit Limit) (Result, error) {
	if err := limit.Validate(); err != nil {
		return Result{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	if now-m.lastSweep >= int64(sweepEvery) || len(m.tat) >= m.maxKeys {
		m.sweep(now)
	}
	tat, ok := m.tat[key]
	if !ok {
		tat = now
	}
	res, next := gcra(tat, now, int64(limit.interval()), limit.Requests)
	if next != tat { // counted, or clamped to a shorter limit
		m.tat[key] = next
	}
	return res, nil
}

// Len is the number of buckets held.
func (m *Memory) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.tat)
}

// sweep drops full buckets, then arbitrary ones while over the bound.
// m.mu is held.
func (m *Memory) sweep(now int64) {
	m.lastSweep = now
	for k, tat := range m.tat {
		if tat <= now {
			delete(m.tat, k)
		}
	}
	if len(m.tat) < m.maxKeys {
		return
	}
	keep := m.maxKeys * 9 / 10
	for k := range m.tat {
		if len(m.tat) <= keep {
			break
		}
		delete(m.tat, k)
	}
}
