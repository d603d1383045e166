package safeerr

import (
	"testing"
	"time"
)

func TestLimiter(t *testing.T) {
	l := NewLimiter(10 * time.Second)
	t0 := time.Unix(0, 0)
	type answer struct {
		ok         bool
		suppressed int
	}
	f := func(kind string, at time.Duration, want answer) {
		t.Helper()
		ok, n := l.Allow(kind, t0.Add(at))
		if (answer{ok, n}) != want {
			t.Errorf("Allow(%q) at %s = %v, %d; want %v", kind, at, ok, n, want)
		}
	}
	f("a", 0, answer{true, 0})
	f("a", time.Second, answer{false, 0})
	f("a", 2*time.Second, answer{false, 0})
	f("b", 3*time.Second, answer{true, 0}) // kinds are apart
	f("a", 11*time.Second, answer{true, 2})
	f("a", 12*time.Second, answer{false, 0})
}
