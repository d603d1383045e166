package alerts

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// lease is leadership held through one KV key, without trusting clocks to
// agree across replicas: every time is measured on the local monotonic
// clock.
//
//   - The holder rewrites the key every ttl/5, each write conditional on
//     the revision of its previous one; a failed condition means it lost
//     the lease. It counts itself leader until ttl - ttl/5 after the start
//     of its last successful write, so a holder cut off from NATS stops
//     before anyone can take over.
//   - Any other replica reads the key every ttl/5. When the revision has
//     not changed for ttl since it first saw it, the holder is dead: it
//     writes the key conditional on that revision, and exactly one such
//     write succeeds. A missing key (released on shutdown, or never
//     written) is taken at once with create-if-absent.
//
// So a new leader takes over within ttl + ttl/5 of the old one's last
// renewal, and within ttl/5 of a clean shutdown.
type lease struct {
	kv       jetstream.KeyValue
	key      string
	instance string
	ttl      time.Duration
	timeout  time.Duration
	log      zerolog.Logger

	mu         sync.Mutex
	rev        uint64    // revision of our last write while we hold the lease; 0 when we do not
	validUntil time.Time // we count as leader until then
	seenRev    uint64    // follower: the revision last seen
	seenAt     time.Time // follower: when seenRev was first seen
	changed    chan struct{}
}

// leaseValue is what the lease key holds, for people reading the bucket.
type leaseValue struct {
	Holder  string    `json:"holder"`
	Renewed time.Time `json:"renewed"`
}

func newLease(kv jetstream.KeyValue, key, instance string, ttl, timeout time.Duration, log zerolog.Logger) *lease {
	return &lease{kv: kv, key: key, instance: instance, ttl: ttl, timeout: min(timeout, ttl/5), log: log,
		changed: make(chan struct{}, 1)}
}

// held reports whether this replica holds the lease now.
func (l *lease) held() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.rev != 0 && time.Now().Before(l.validUntil)
}

// run keeps campaigning and renewing until ctx ends, then releases the
// lease if it holds it.
func (l *lease) run(ctx context.Context) {
	t := time.NewTicker(l.ttl / 5)
	defer t.Stop()
	for {
		l.step(ctx)
		select {
		case <-ctx.Done():
			l.release()
			return
		case <-t.C:
		}
	}
}

func (l *lease) signal() {
	select {
	case l.changed <- struct{}{}:
	default:
	}
}

func (l *lease) value() []byte {
	b, _ := json.Marshal(leaseValue{Holder: l.instance, Renewed: time.Now().UTC()})
	return b
}

// step renews the lease, or watches it and takes it over when its holder
// stopped renewing.
func (l *lease) step(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	l.mu.Lock()
	rev := l.rev
	l.mu.Unlock()
	if rev != 0 {
		start := time.Now()
		next, err := l.kv.Update(ctx, l.key, l.value(), rev)
		switch {
		case err == nil:
			l.hold(next, start)
			return
		case isConflict(err) || isGone(err):
			l.log.Warn().Msg("lost the window evaluator lease")
			l.mu.Lock()
			l.rev = 0
			l.mu.Unlock()
			l.signal()
		default:
			// NATS unreachable: the lease lapses on its own at validUntil.
			return
		}
	}
	now := time.Now()
	entry, err := l.kv.Get(ctx, l.key)
	switch {
	case isGone(err):
		if next, err := l.kv.Create(ctx, l.key, l.value()); err == nil {
			l.hold(next, now)
		}
	case err != nil:
	default:
		l.mu.Lock()
		seen, at := l.seenRev, l.seenAt
		if entry.Revision() != seen {
			l.seenRev, l.seenAt = entry.Revision(), now
		}
		l.mu.Unlock()
		if entry.Revision() == seen && now.Sub(at) >= l.ttl {
			if next, err := l.kv.Update(ctx, l.key, l.value(), seen); err == nil {
				l.log.Info().Msg("took over the window evaluator lease from a replica that stopped renewing it")
				l.hold(next, now)
			}
		}
	}
}

func (l *lease) hold(rev uint64, start time.Time) {
	l.mu.Lock()
	was := l.rev != 0
	l.rev, l.validUntil = rev, start.Add(l.ttl-l.ttl/5)
	l.mu.Unlock()
	if !was {
		l.log.Info().Msg("holding the window evaluator lease")
		l.signal()
	}
}

// release gives the lease up so another replica takes it at once.
func (l *lease) release() {
	l.mu.Lock()
	rev := l.rev
	l.rev = 0
	l.mu.Unlock()
	if rev == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), l.timeout)
	defer cancel()
	_ = l.kv.Delete(ctx, l.key, jetstream.LastRevision(rev))
}
