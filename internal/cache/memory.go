package cache

import (
	"container/list"
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Defaults of MemoryConfig.
const (
	DefaultMaxEntries = 10_000
	DefaultMaxBytes   = 64 << 20
)

// entryOverhead is what an entry is taken to cost beyond its key and value.
const entryOverhead = 96

// MemoryConfig bounds a Memory cache. Zero fields take the defaults.
type MemoryConfig struct {
	MaxEntries int   // at most this many values
	MaxBytes   int64 // keys, values and a fixed overhead per entry

	// Registerer, when not nil, gets the cache's counters (see
	// Counters.register).
	Registerer prometheus.Registerer
}

// Validate reports a negative bound.
func (c MemoryConfig) Validate() error {
	if c.MaxEntries < 0 || c.MaxBytes < 0 {
		return fmt.Errorf("memory cache bounds %d entries, %d bytes: must not be negative", c.MaxEntries, c.MaxBytes)
	}
	return nil
}

// Memory is an in-process Cache, bounded in entries and bytes: when full
// it drops the least recently used values. Expired values are dropped when
// read or when they reach the end of the LRU list. A value larger than the
// byte bound is not stored. Safe for concurrent use; it owns no goroutine.
type Memory struct {
	mu       sync.Mutex
	cfg      MemoryConfig
	lru      *list.List // of *entry, most recently used first
	items    map[string]*list.Element
	bytes    int64
	counters Counters
	now      func() time.Time // for tests
}

type entry struct {
	key     string
	value   []byte
	expires time.Time
}

func (e *entry) size() int64 { return int64(len(e.key)+len(e.value)) + entryOverhead }

// NewMemory returns an empty Memory cache bounded by cfg (defaults for
// zero fields; negative ones, which Validate refuses, are treated as zero,
// so NewMemory cannot fail) and registers its counters on cfg.Registerer.
func NewMemory(cfg MemoryConfig) *Memory {
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = DefaultMaxEntries
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = DefaultMaxBytes
	}
	m := &Memory{cfg: cfg, lru: list.New(), items: map[string]*list.Element{}, now: time.Now}
	m.counters.register(cfg.Registerer)
	return m
}

// Get implements Cache.
func (m *Memory) Get(_ context.Context, key string) ([]byte, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	el, ok := m.items[key]
	if ok && !m.now().Before(el.Value.(*entry).expires) {
		m.remove(el)
		ok = false
	}
	if !ok {
		m.counters.Misses.Add(1)
		return nil, false
	}
	m.counters.Hits.Add(1)
	m.lru.MoveToFront(el)
	return append([]byte(nil), el.Value.(*entry).value...), true
}

// Set implements Cache.
func (m *Memory) Set(_ context.Context, key string, value []byte, ttl time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if el, ok := m.items[key]; ok {
		m.remove(el)
	}
	e := &entry{key: key, value: append([]byte(nil), value...), expires: m.now().Add(ttl)}
	if ttl < time.Millisecond || e.size() > m.cfg.MaxBytes {
		return
	}
	m.items[key] = m.lru.PushFront(e)
	m.bytes += e.size()
	for len(m.items) > m.cfg.MaxEntries || m.bytes > m.cfg.MaxBytes {
		m.remove(m.lru.Back())
	}
}

// remove drops el; m.mu is held.
func (m *Memory) remove(el *list.Element) {
	e := m.lru.Remove(el).(*entry)
	delete(m.items, e.key)
	m.bytes -= e.size()
}

// Len returns the number of entries and their size in bytes, expired
// ones not yet dropped included.
func (m *Memory) Len() (entries int, bytes int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.items), m.bytes
}

// Counters returns m's counters. Errors stays zero.
func (m *Memory) Counters() *Counters { return &m.counters }
