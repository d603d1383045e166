package safeerr

import (
	"sync"
	"time"
)

// Limiter lets a kind of log line through at most once per period and
// counts the ones it held back, so that a burst of the same failure is a
// few lines, not a storm. It is safe for concurrent use.
type Limiter struct {
	mu         sync.Mutex
	period     time.Duration
	last       map[string]time.Time
	suppressed map[string]int
}

// NewLimiter returns a Limiter letting each kind through once per period.
func NewLimiter(period time.Duration) *Limiter {
	return &Limiter{period: period, last: map[string]time.Time{}, suppressed: map[string]int{}}
}

// Allow reports whether a line of kind may be logged now, and how many
// were held back since the last one.
func (l *Limiter) Allow(kind string, now time.Time) (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if last, ok := l.last[kind]; ok && now.Sub(last) < l.period {
		l.suppressed[kind]++
		return false, 0
	}
	n := l.suppressed[kind]
	l.last[kind], l.suppressed[kind] = now, 0
	return true, n
}
