package ratelimit

import (
	"context"
	"strconv"
	"testing"
	"time"
)

// fakeClock makes m's clock t, which the test moves.
func fakeClock(m *Memory) *time.Duration {
	var t time.Duration = time.Hour // not zero: zero is also "never swept"
	m.now = func() int64 { return int64(t) }
	m.lastSweep = int64(t)
	return &t
}

func TestMemoryExact(t *testing.T) {
	m := NewMemory()
	clock := fakeClock(m)
	lim := Limit{Requests: 3, Per: 3 * time.Second}
	ctx := context.Background()
	f := func(wantAllowed bool, wantRemaining int, wantReset, wantRetry time.Duration) {
		t.Helper()
		res, err := m.Allow(ctx, "k", lim)
		if err != nil {
			t.Fatal(err)
		}
		want := Result{Allowed: wantAllowed, Limit: 3, Remaining: wantRemaining, ResetAfter: wantReset, RetryAfter: wantRetry}
		if res != want {
			t.Errorf("at %s: got %+v; want %+v", *clock, res, want)
		}
	}
	f(true, 2, time.Second, 0)
	f(true, 1, 2*time.Second, 0)
	f(true, 0, 3*time.Second, 0)
	f(false, 0, 3*time.Second, time.Second)
	*clock += 400 * time.Millisecond
	f(false, 0, 2600*time.Millisecond, 600*time.Millisecond)
	*clock += 600 * time.Millisecond // one interval since the burst
	f(true, 0, 3*time.Second, 0)
	*clock += 10 * time.Second // long idle: full again, never more than full
	f(true, 2, time.Second, 0)
}

// TestMemoryShorterLimit checks that a bucket filled under a long period
// does not block for longer than the new, shorter one allows.
func TestMemoryShorterLimit(t *testing.T) {
	m := NewMemory()
	clock := fakeClock(m)
	ctx := context.Background()
	for range 10 {
		_, _ = m.Allow(ctx, "k", Limit{Requests: 10, Per: time.Hour})
	}
	res, _ := m.Allow(ctx, "k", Limit{Requests: 2, Per: 2 * time.Second})
	if res.Allowed || res.RetryAfter > time.Second || res.ResetAfter > 2*time.Second {
		t.Fatalf("after the limit shrank: got %+v; want refused, retry within 1s, reset within 2s", res)
	}
	*clock += time.Second
	if res, _ := m.Allow(ctx, "k", Limit{Requests: 2, Per: 2 * time.Second}); !res.Allowed {
		t.Fatalf("one new interval later: got %+v; want allowed", res)
	}
}

// TestMemoryEvictsIdle checks that buckets that are full again are dropped
// on the next sweep, and only those.
func TestMemoryEvictsIdle(t *testing.T) {
	m := NewMemory()
	clock := fakeClock(m)
	ctx := context.Background()
	short := Limit{Requests: 10, Per: time.Second}
	long := Limit{Requests: 10, Per: time.Hour}
	for i := range 1000 {
		_, _ = m.Allow(ctx, "idle-"+strconv.Itoa(i), short)
	}
	_, _ = m.Allow(ctx, "busy", long)
	if got := m.Len(); got != 1001 {
		t.Fatalf("Len() = %d; want 1001", got)
	}
	// Within the sweep interval nothing is dropped.
	*clock += 30 * time.Second
	_, _ = m.Allow(ctx, "busy", long)
	if got := m.Len(); got != 1001 {
		t.Fatalf("before the sweep: Len() = %d; want 1001", got)
	}
	*clock += sweepEvery
	_, _ = m.Allow(ctx, "busy", long)
	if got := m.Len(); got != 1 {
		t.Fatalf("after the sweep: Len() = %d; want 1 (only the busy bucket)", got)
	}
	// The busy bucket kept its state: 3 requests counted.
	res, _ := m.Allow(ctx, "busy", long)
	if res.Remaining != 6 {
		t.Errorf("busy bucket after the sweep: Remaining %d; want 6", res.Remaining)
	}
	// An evicted key starts over with a full bucket, as it would have anyway.
	res, _ = m.Allow(ctx, "idle-1", short)
	if !res.Allowed || res.Remaining != 9 {
		t.Errorf("evicted key: got %+v; want a full bucket", res)
	}
}

// TestMemoryBounded checks that at most maxKeys buckets are held even when
// every one of them is active.
func TestMemoryBounded(t *testing.T) {
	m := NewMemory()
	m.maxKeys = 100
	fakeClock(m)
	ctx := context.Background()
	long := Limit{Requests: 10, Per: time.Hour}
	for i := range 1000 {
		_, _ = m.Allow(ctx, "k"+strconv.Itoa(i), long)
		if got := m.Len(); got > 100 {
			t.Fatalf("after %d keys: Len() = %d; want at most 100", i+1, got)
		}
	}
	if got := m.Len(); got < 90 {
		t.Errorf("Len() = %d; want at least 90 (the sweep keeps 90%%)", got)
	}
}

func BenchmarkMemoryAllow(b *testing.B) {
	m := NewMemory()
	ctx := context.Background()
	lim := Limit{Requests: 1 << 20, Per: time.Hour}
	keys := make([]string, 64)
	for i := range keys {
		keys[i] = "ingest:host-" + strconv.Itoa(i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, err := m.Allow(ctx, keys[i%len(keys)], lim); err != nil {
			b.Fatal(err)
		}
	}
}
