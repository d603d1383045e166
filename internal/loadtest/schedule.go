package loadtest

import (
	"math/rand/v2"
	"time"
)

// schedule is one virtual user's open-model arrivals: the k-th request is
// due at first + k*interval, moved by a small random jitter that does not
// accumulate. Due times depend only on the schedule, never on when earlier
// answers came back, so a slow server cannot slow the load down: a late
// user's next requests are already due, and their latency counts from
// when they were due (no coordinated omission).
type schedule struct {
	first    time.Time
	interval time.Duration
	jitter   time.Duration // each due time moves by up to ±jitter
	rng      *rand.Rand
}

// jitterFraction of the interval is the most a due time moves.
const jitterFraction = 0.05

func newSchedule(first time.Time, interval time.Duration, seed1, seed2 uint64) schedule {
	return schedule{first: first, interval: interval, jitter: time.Duration(float64(interval) * jitterFraction),
		rng: rand.New(rand.NewPCG(seed1, seed2))}
}

// due returns when the k-th request (from 0) is due. Calls must come in
// order of k, once each (the jitter is drawn from the user's own source).
// The first request is never due before first.
func (s schedule) due(k int) time.Time {
	t := s.first.Add(time.Duration(k) * s.interval)
	if s.jitter > 0 {
		j := time.Duration(s.rng.Int64N(int64(2*s.jitter)+1)) - s.jitter
		if k == 0 {
			j = max(j, 0)
		}
		t = t.Add(j)
	}
	return t
}
