package alerts

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/wedsync/pulse/alerts/rules"
	"github.com/wedsync/pulse/internal/event"
)

// InstantConfig tunes the instant evaluator. Zero fields take defaults.
type InstantConfig struct {
	Stream StreamConfig
	// Tick is how often cooldowns are checked and failed operations
	// retried (default 200ms). A first match is handled at once, not on
	// the tick.
	Tick time.Duration
	// FlushEvery is how often a growing count is written to KV (default
	// 2s); it is also written whenever the KV record's last match is half
	// a cooldown old, so that another replica does not resolve an alert
	// this one still sees matches for.
	FlushEvery time.Duration
	// SweepEvery is how often every instant alert in KV is read, so that
	// this replica finishes what a dead one left: resolving after the
	// cooldown, publishing an unpublished transition (default 5s).
	SweepEvery time.Duration
	// MaxGroups bounds the groups of each rule this replica tracks
	// (default 1000): beyond it, matches of the rule fold into its
	// overflow group, labelled overflow=true, rather than opening more
	// alerts. Other rules are not affected.
	MaxGroups int
	// Timeout bounds one NATS operation (default 5s).
	Timeout time.Duration
	// Instance names this replica's share of alert counts in KV
	// (default: the host name and a random suffix, new each run).
	Instance string
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Registerer receives the evaluator's metrics,
	// pulse_alerts_instant_*; nil registers none.
	Registerer prometheus.Registerer
}

func (c *InstantConfig) defaults() {
	if c.Instance == "" {
		c.Instance = defaultInstance()
	}
	if c.Tick == 0 {
		c.Tick = 200 * time.Millisecond
	}
	if c.FlushEvery == 0 {
		c.FlushEvery = 2 * time.Second
	}
	if c.SweepEvery == 0 {
		c.SweepEvery = 5 * time.Second
	}
	if c.MaxGroups == 0 {
		c.MaxGroups = 1000
	}
	if c.Timeout == 0 {
		c.Timeout = 5 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate checks c; zero fields are valid (they take defaults).
func (c InstantConfig) Validate() error {
	switch {
	case c.Tick < 0 || c.FlushEvery < 0 || c.SweepEvery < 0 || c.Timeout < 0:
		return errors.New("instant alert intervals must not be negative")
	case c.MaxGroups < 0:
		return errors.New("instant alert max groups must not be negative")
	}
	return c.Stream.Validate()
}

// InstantStats counts what the instant evaluator did; safe for concurrent
// reads.
type InstantStats struct {
	Observed atomic.Uint64 // requests passed to Observe
	Matched  atomic.Uint64 // rule matches folded into groups
	Overflow atomic.Uint64 // matches folded into an overflow group because MaxGroups was reached
	Fired    atomic.Uint64 // firing alerts published by this replica
	Resolved atomic.Uint64 // resolved alerts published by this replica
	Joined   atomic.Uint64 // alerts found firing in KV (another replica's, or an earlier run's) and joined
	Failures atomic.Uint64 // NATS operations that failed; their work is retried
	Panics   atomic.Uint64 // Observe calls cut short by a panic (none expected)
}

// instantRule is a rule compiled for the hot path.
type instantRule struct {
	rules.Instant
	status                bool // compares status_code, else response_time_ms
	byService, byEndpoint bool
}

// match reports whether q matches r. It reads only numbers and, for
// filtered rules, compares strings: no allocation.
func (r *instantRule) match(q *event.Request) bool {
	v := q.ResponseTimeMS
	if r.status {
		v = float64(q.StatusCode)
	}
	if !r.Matches(v) {
		return false
	}
	if r.Filters.Service != "" && q.Service != r.Filters.Service {
		return false
	}
	return r.Filters.Endpoint == "" || q.Endpoint == r.Filters.Endpoint
}

func (r *instantRule) value(q *event.Request) float64 {
	if r.status {
		return float64(q.StatusCode)
	}
	return q.ResponseTimeMS
}

// worse returns the more extreme of a and b for r: the larger for > and
// >=, the smaller for < and <=, else b (the latest).
func (r *instantRule) worse(a, b float64) float64 {
	switch r.Op {
	case ">", ">=":
		return max(a, b)
	case "<", "<=":
		return min(a, b)
	}
	return b
}

// groupKey identifies an alert group: a rule and the values of its
// group_by labels.
type groupKey struct {
	rule              int
	service, endpoint string
	overflow          bool
}

// hit is what Observe folded into a group since the evaluator last looked.
type hit struct {
	count       uint64
	first, last time.Time
	worst       float64
	id          string // the alert id a failed create tried, so that its retry recognises it
}

// Instant evaluates instant rules. Observe is called by the aggregator for
// every decoded batch; Run, in its own goroutine, publishes. Observe never
// blocks on I/O and is safe for concurrent use; it may be called before Run
// starts and after it returned (matches then wait, bounded by MaxGroups).
type Instant struct {
	cfg   InstantConfig
	rules []instantRule
	js    jetstream.JetStream
	log   zerolog.Logger
	stats InstantStats
	fired *prometheus.CounterVec // firing alerts published, by rule and severity

	mu        sync.Mutex
	pending   map[groupKey]*hit // filled by Observe, taken by Run
	spare     map[groupKey]*hit // the other buffer, empty
	pendingOf []int             // groups in pending, by rule
	wake      chan struct{}

	// Owned by Run's goroutine.
	kv        jetstream.KeyValue
	open      map[groupKey]*openAlert
	openOf    []int // groups in open, by rule
	byKey     map[string]*openAlert
	byName    map[string]int
	lastSweep time.Time
	failing   bool // an operation failed this round: the rest waits for the next
	down      bool // operations have been failing since an earlier round
}

// openAlert is an alert group this replica tracks.
type openAlert struct {
	gk      groupKey
	key     string
	rule    *instantRule // nil when the rule is no longer configured
	rec     *record      // as last read from or written to KV
	rev     uint64
	mine    uint64    // matches this replica folded into the alert: its share of the count
	last    time.Time // the latest match seen here
	worst   float64
	hasHit  bool // last and worst hold a match seen here
	flushed time.Time
	owner   bool // this replica wrote rec's current phase, so publishes it at once
	sent    bool // this replica published rec's current phase
}

// NewInstant returns an instant evaluator of set's instant rules,
// publishing through js. It fills cfg's defaults, checks it and registers
// the evaluator's metrics on cfg.Registerer. It starts nothing; call Run.
func NewInstant(cfg InstantConfig, set *rules.Set, js jetstream.JetStream, log zerolog.Logger) (*Instant, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("instant alerts: %w", err)
	}
	cfg.defaults()
	cfg.Stream.defaults()
	in := &Instant{
		cfg:     cfg,
		js:      js,
		log:     log.With().Str("component", "alerts.instant").Logger(),
		pending: map[groupKey]*hit{},
		spare:   map[groupKey]*hit{},
		wake:    make(chan struct{}, 1),
		open:    map[groupKey]*openAlert{},
		byKey:   map[string]*openAlert{},
		byName:  map[string]int{},
	}
	for i, r := range set.Instant {
		ir := instantRule{Instant: r, status: r.Field == rules.FieldStatusCode}
		for _, g := range r.GroupBy {
			ir.byService = ir.byService || g == "service"
			ir.byEndpoint = ir.byEndpoint || g == "endpoint"
		}
		in.rules = append(in.rules, ir)
		in.byName[r.Name] = i
	}
	in.pendingOf = make([]int, len(in.rules))
	in.openOf = make([]int, len(in.rules))
	st := &in.stats
	severities := map[string]string{}
	for _, r := range set.Instant {
		severities[r.Name] = r.Severity
	}
	in.fired = firedVec("instant", severities)
	err := register(cfg.Registerer, in.fired,
		counterOf("pulse_alerts_instant_observed_requests_total", "Requests passed to the instant alert rules.", &st.Observed),
		counterOf("pulse_alerts_instant_matches_total", "Instant rule matches folded into alert groups.", &st.Matched),
		counterOf("pulse_alerts_instant_overflow_matches_total", "Instant rule matches folded into a rule's overflow group because the rule had its most groups.", &st.Overflow),
		counterOf("pulse_alerts_instant_fired_total", "Firing instant alerts this replica published.", &st.Fired),
		counterOf("pulse_alerts_instant_resolved_total", "Resolved instant alerts this replica published.", &st.Resolved),
		counterOf("pulse_alerts_instant_joined_total", "Instant alerts found firing in the state bucket (another replica's, or an earlier run's) and joined.", &st.Joined),
		counterOf("pulse_alerts_instant_nats_failures_total", "Failed NATS operations of the instant evaluator; their work is retried.", &st.Failures),
		counterOf("pulse_alerts_instant_panics_total", "Instant rule checks of a batch cut short by a recovered panic (none expected).", &st.Panics),
	)
	if err != nil {
		return nil, fmt.Errorf("instant alerts: %w", err)
	}
	return in, nil
}

// Stats returns the evaluator's counters.
func (in *Instant) Stats() *InstantStats { return &in.stats }

// Observe folds the requests that match a rule into their groups and wakes
// Run. It does not keep reqs. A request that matches nothing costs a few
// comparisons per rule and no allocation; a batch with matches takes a
// mutex once and allocates only for groups new since Run last looked. A
// panic (none is expected: it only compares numbers and strings) is
// recovered and counted, never passed to the aggregator.
func (in *Instant) Observe(reqs []event.Request) {
	if len(in.rules) == 0 || len(reqs) == 0 {
		return
	}
	in.stats.Observed.Add(uint64(len(reqs)))
	locked := false
	matched := uint64(0)
	defer func() {
		if r := recover(); r != nil {
			in.stats.Panics.Add(1)
		}
		if locked {
			in.mu.Unlock()
			in.stats.Matched.Add(matched)
			select {
			case in.wake <- struct{}{}:
			default:
			}
		}
	}()
	var now time.Time
	for i := range reqs {
		q := &reqs[i]
		for ri := range in.rules {
			r := &in.rules[ri]
			if !r.match(q) {
				continue
			}
			if !locked {
				in.mu.Lock()
				locked = true
				now = in.cfg.Now()
			}
			in.fold(ri, r, q, now)
			matched++
		}
	}
}

// fold adds one match to its group in pending; in.mu is held.
func (in *Instant) fold(ri int, r *instantRule, q *event.Request, now time.Time) {
	k := groupKey{rule: ri}
	if r.byService {
		k.service = q.Service
	}
	if r.byEndpoint {
		k.endpoint = q.Endpoint
	}
	v := r.value(q)
	h := in.pending[k]
	if h == nil {
		if in.pendingOf[ri] >= in.cfg.MaxGroups {
			in.stats.Overflow.Add(1)
			k = groupKey{rule: ri, overflow: true}
			h = in.pending[k]
		} else {
			// The key outlives reqs: copy its strings, bounded.
			k.service = strings.Clone(clip(k.service, event.MaxServiceLen))
			k.endpoint = strings.Clone(clip(k.endpoint, event.MaxEndpointLen))
		}
		if h == nil {
			h = &hit{first: now, worst: v}
			in.pending[k] = h
			in.pendingOf[ri]++
		}
	}
	h.count++
	h.last = now
	h.worst = r.worse(h.worst, v)
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// take swaps the pending matches out.
func (in *Instant) take() map[groupKey]*hit {
	in.mu.Lock()
	defer in.mu.Unlock()
	if len(in.pending) == 0 {
		return nil
	}
	out := in.pending
	in.pending, in.spare = in.spare, nil
	if in.pending == nil {
		in.pending = map[groupKey]*hit{}
	}
	clear(in.pendingOf)
	return out
}

// give back the map take returned, emptied, for reuse.
func (in *Instant) giveBack(m map[groupKey]*hit) {
	if m == nil {
		return
	}
	clear(m)
	in.mu.Lock()
	if in.spare == nil {
		in.spare = m
	}
	in.mu.Unlock()
}

// requeue puts matches back for the next round, after a failure.
func (in *Instant) requeue(k groupKey, h *hit) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if old := in.pending[k]; old != nil {
		old.count += h.count
		if old.id == "" {
			old.id = h.id
		}
		old.first = minTime(old.first, h.first)
		old.last = maxTime(old.last, h.last)
		old.worst = in.rules[k.rule].worse(old.worst, h.worst)
		return
	}
	in.pending[k] = h
	in.pendingOf[k.rule]++
}

// Run publishes what Observe found until ctx ends: it fires new groups at
// once and resolves them after their cooldown. It first creates the alert
// stream and state bucket (retrying while NATS is unavailable) and joins
// the alerts already firing in KV, so that a restart does not fire them
// again. On return it has written the counts it held to KV where it
// could. It returns nil when ctx ends.
func (in *Instant) Run(ctx context.Context) error {
	if len(in.rules) == 0 {
		<-ctx.Done()
		return nil
	}
	kv, err := ensureRetry(ctx, in.js, in.cfg.Stream, in.cfg.Timeout, in.log)
	if err != nil {
		return nil // ctx ended
	}
	in.kv = kv
	in.sweep(ctx, in.cfg.Now())
	t := time.NewTicker(in.cfg.Tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			in.shutdown()
			return nil
		case <-in.wake:
		case <-t.C:
		}
		in.round(ctx, in.cfg.Now())
	}
}

// round handles the matches since the last round and the open alerts'
// timers.
func (in *Instant) round(ctx context.Context, now time.Time) {
	in.failing = false
	batch := in.take()
	for k, h := range batch {
		if in.failing {
			in.requeue(k, h)
			continue
		}
		in.apply(ctx, k, h, now)
	}
	in.giveBack(batch)
	for _, o := range in.open {
		if in.failing {
			break
		}
		in.maintain(ctx, o, now)
	}
	if !in.failing && now.Sub(in.lastSweep) >= in.cfg.SweepEvery {
		in.sweep(ctx, now)
	}
	if in.down && !in.failing {
		in.down = false
		in.log.Info().Msg("alert state and stream reachable again")
	}
}

// op runs one NATS operation under the configured timeout.
func (in *Instant) op(ctx context.Context, f func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, in.cfg.Timeout)
	defer cancel()
	return f(ctx)
}

// fail records a failed NATS operation; the rest of the round waits for
// the next one, so that an unreachable NATS costs one timeout per round.
func (in *Instant) fail(what string, err error) {
	in.stats.Failures.Add(1)
	if !in.down {
		in.log.Warn().Err(err).Msg(what + " failed; retrying every round until it works")
	}
	in.failing, in.down = true, true
}

// labels returns the labels of group k of rule r.
func (in *Instant) labels(r *instantRule, k groupKey) map[string]string {
	l := map[string]string{}
	for name, v := range r.Labels {
		l[name] = v
	}
	r.Filters.Each(func(name, v string) { l[name] = v })
	if k.overflow {
		l["overflow"] = "true"
		return l
	}
	if r.byService {
		l["service"] = k.service
	}
	if r.byEndpoint {
		l["endpoint"] = k.endpoint
	}
	return l
}

// apply adds matches h to group k: to its open alert, or by firing one.
func (in *Instant) apply(ctx context.Context, k groupKey, h *hit, now time.Time) {
	o := in.open[k]
	if o == nil && !k.overflow && in.openOf[k.rule] >= in.cfg.MaxGroups {
		in.stats.Overflow.Add(h.count)
		k = groupKey{rule: k.rule, overflow: true}
		o = in.open[k]
	}
	if o != nil {
		o.add(h)
		return
	}
	r := &in.rules[k.rule]
	labels := in.labels(r, k)
	if h.id == "" {
		h.id = nuid.Next()
	}
	rec := &record{
		Alert: Alert{
			ID: h.id, Kind: KindAlert, Rule: r.Name, State: StateFiring, Severity: r.Severity,
			Labels: labels, Value: value(h.worst), Threshold: r.Value, StartedAt: h.first.UTC(), Count: h.count,
		},
		Phase: phaseFiring, LastSeen: h.last.UTC(), Worst: h.worst, Updated: now.UTC(),
		Counts: map[string]uint64{in.cfg.Instance: h.count},
	}
	rec.Message = instantMessage(r, rec, false)
	key := stateKey(prefixInstant, r.Name, labels)
	var rev uint64
	err := in.op(ctx, func(ctx context.Context) (err error) {
		rev, err = in.kv.Create(ctx, key, rec.encode())
		return err
	})
	switch {
	case err == nil:
		o = &openAlert{gk: k, key: key, rule: r, rec: rec, rev: rev, flushed: now, owner: true,
			mine: h.count, last: h.last, worst: h.worst, hasHit: true}
		in.track(o)
		in.notify(ctx, o, now)
	case errors.Is(err, jetstream.ErrKeyExists):
		// Another replica (or an earlier run) fired this group: join it.
		var entry jetstream.KeyValueEntry
		err := in.op(ctx, func(ctx context.Context) (err error) {
			entry, err = in.kv.Get(ctx, key)
			return err
		})
		if err != nil {
			if !isGone(err) {
				in.fail("read alert state", err)
			}
			in.requeue(k, h)
			return
		}
		old, err := decodeRecord(entry.Value())
		if err != nil || old.Phase == phaseResolved {
			// Being resolved right now: these matches open the next alert.
			in.requeue(k, h)
			return
		}
		// A create whose outcome was unknown (a timeout) may have landed
		// after all: then the alert is this replica's own, and its share
		// in the record already holds some of h.
		o = &openAlert{gk: k, key: key, rule: r, rec: old, rev: entry.Revision(), flushed: now,
			owner: old.ID == h.id, mine: old.Counts[in.cfg.Instance]}
		if o.owner {
			o.mine = 0 // h.count is the whole share, the landed part included
		}
		o.add(h)
		in.track(o)
		if !o.owner {
			in.stats.Joined.Add(1)
		}
	default:
		in.fail("create alert state", err)
		in.requeue(k, h)
	}
}

func (in *Instant) track(o *openAlert) {
	in.open[o.gk] = o
	in.byKey[o.key] = o
	if o.gk.rule >= 0 {
		in.openOf[o.gk.rule]++
	}
}

func (in *Instant) untrack(o *openAlert) {
	if in.open[o.gk] == o && o.gk.rule >= 0 {
		in.openOf[o.gk.rule]--
	}
	delete(in.open, o.gk)
	delete(in.byKey, o.key)
}

// unflushed is how many of this replica's matches the record in KV lacks.
func (o *openAlert) unflushed(instance string) uint64 {
	return o.mine - min(o.mine, o.rec.Counts[instance])
}

func (o *openAlert) add(h *hit) {
	o.mine += h.count
	if !o.hasHit {
		o.last, o.worst, o.hasHit = h.last, h.worst, true
		return
	}
	o.last = maxTime(o.last, h.last)
	if o.rule != nil {
		o.worst = o.rule.worse(o.worst, h.worst)
	}
}

// notify publishes o's current phase if nobody has. The creator of a
// record publishes at once; a record left unpublished for Timeout (its
// creator died) is published by whoever holds it, deduplicated by the
// stream through its Nats-Msg-Id.
func (in *Instant) notify(ctx context.Context, o *openAlert, now time.Time) {
	if o.rec.Notified || o.sent {
		return
	}
	a := o.rec.Alert
	if err := in.op(ctx, func(ctx context.Context) error { return publish(ctx, in.js, &a) }); err != nil {
		in.fail("publish alert", err)
		return
	}
	o.sent = true
	if a.State == StateFiring {
		in.stats.Fired.Add(1)
		in.fired.WithLabelValues(a.Rule, a.Severity).Inc()
	} else {
		in.stats.Resolved.Add(1)
	}
	if a.State == StateFiring {
		in.flush(ctx, o, now) // records Notified
	}
}

// errGone says an alert's record was deleted: another replica resolved it.
var errGone = errors.New("alert record gone")

// flush writes o's new matches, and that its transition was published, to
// KV, merging with what other replicas wrote. A replica writes its share
// of the count as a total under its instance name, never as an increment,
// so a write applied twice (a retry after a timeout whose write landed)
// counts nothing twice.
func (in *Instant) flush(ctx context.Context, o *openAlert, now time.Time) error {
	for attempt := 0; attempt < 3; attempt++ {
		r := *o.rec
		r.Counts = make(map[string]uint64, len(o.rec.Counts)+1)
		for k, v := range o.rec.Counts {
			r.Counts[k] = v
		}
		r.Counts[in.cfg.Instance] = max(o.mine, r.Counts[in.cfg.Instance])
		r.Count = 0
		for _, v := range r.Counts {
			r.Count += v
		}
		if o.hasHit {
			r.LastSeen = maxTime(r.LastSeen, o.last.UTC())
			if o.rule != nil {
				r.Worst = o.rule.worse(r.Worst, o.worst)
			}
			r.Value = value(r.Worst)
		}
		r.Notified = r.Notified || o.sent
		r.Updated = now.UTC()
		if o.rule != nil && r.Phase == phaseFiring {
			r.Message = instantMessage(o.rule, &r, false)
		}
		var rev uint64
		err := in.op(ctx, func(ctx context.Context) (err error) {
			rev, err = in.kv.Update(ctx, o.key, r.encode(), o.rev)
			return err
		})
		if err == nil {
			o.rec, o.rev, o.flushed = &r, rev, now
			return nil
		}
		if !isConflict(err) {
			in.fail("update alert state", err)
			return err
		}
		if err := in.reload(ctx, o); err != nil {
			return err
		}
	}
	return errors.New("alert state keeps changing")
}

// reload reads o's record again after a conflict.
func (in *Instant) reload(ctx context.Context, o *openAlert) error {
	var entry jetstream.KeyValueEntry
	err := in.op(ctx, func(ctx context.Context) (err error) {
		entry, err = in.kv.Get(ctx, o.key)
		return err
	})
	if isGone(err) {
		return errGone
	}
	if err != nil {
		in.fail("read alert state", err)
		return err
	}
	rec, err := decodeRecord(entry.Value())
	if err != nil || rec.ID != o.rec.ID {
		return errGone // a later alert of the same group
	}
	if rec.Phase != o.rec.Phase {
		o.sent, o.owner = false, false
	}
	o.rec, o.rev = rec, entry.Revision()
	return nil
}

// maintain publishes what is unpublished, writes counts, and resolves o
// once its cooldown passed without a match anywhere.
func (in *Instant) maintain(ctx context.Context, o *openAlert, now time.Time) {
	if o.rec.Phase == phaseResolved {
		in.finishResolve(ctx, o, now)
		return
	}
	if !o.rec.Notified && !o.sent && (o.owner || now.Sub(o.rec.Updated) >= in.cfg.Timeout) {
		in.notify(ctx, o, now)
		if in.failing {
			return
		}
	}
	cooldown := time.Duration(0)
	if o.rule != nil {
		cooldown = o.rule.Cooldown.D()
	}
	last := o.rec.LastSeen
	if o.hasHit {
		last = maxTime(last, o.last)
	}
	due := now.Sub(last) >= cooldown
	if o.unflushed(in.cfg.Instance) > 0 || (o.sent && !o.rec.Notified) {
		if due || now.Sub(o.flushed) >= in.cfg.FlushEvery || now.Sub(o.rec.LastSeen) >= cooldown/2 {
			if err := in.flush(ctx, o, now); err != nil {
				if errors.Is(err, errGone) {
					in.reopen(o)
				}
				return
			}
		}
	}
	if !due || now.Sub(o.rec.LastSeen) < cooldown {
		return
	}
	in.resolve(ctx, o, now)
}

// reopen handles matches this replica saw for an alert another replica
// resolved meanwhile: they open the next alert of the group.
func (in *Instant) reopen(o *openAlert) {
	in.untrack(o)
	if n := o.unflushed(in.cfg.Instance); n > 0 && o.rule != nil {
		in.requeue(o.gk, &hit{count: n, first: o.last, last: o.last, worst: o.worst})
	}
}

// resolve marks o resolved in KV, then publishes and deletes it.
func (in *Instant) resolve(ctx context.Context, o *openAlert, now time.Time) {
	r := *o.rec
	t := now.UTC()
	r.Phase, r.State, r.ResolvedAt, r.Notified, r.Updated = phaseResolved, StateResolved, &t, false, t
	if o.rule != nil {
		r.Message = instantMessage(o.rule, &r, true)
	} else {
		r.Message = r.Rule + " resolved: the rule is no longer configured"
	}
	var rev uint64
	err := in.op(ctx, func(ctx context.Context) (err error) {
		rev, err = in.kv.Update(ctx, o.key, r.encode(), o.rev)
		return err
	})
	switch {
	case err == nil:
		o.rec, o.rev, o.sent, o.owner = &r, rev, false, true
		in.finishResolve(ctx, o, now)
	case isConflict(err):
		if err := in.reload(ctx, o); errors.Is(err, errGone) {
			in.untrack(o)
		}
	default:
		in.fail("update alert state", err)
	}
}

// finishResolve publishes o's resolution (unless this replica did) and
// deletes its record. A record another replica is resolving is left to it
// for Timeout.
func (in *Instant) finishResolve(ctx context.Context, o *openAlert, now time.Time) {
	if !o.owner && !o.sent && now.Sub(o.rec.Updated) < in.cfg.Timeout {
		return
	}
	if !o.sent {
		in.notify(ctx, o, now)
		if !o.sent {
			return
		}
	}
	err := in.op(ctx, func(ctx context.Context) error {
		return in.kv.Delete(ctx, o.key, jetstream.LastRevision(o.rev))
	})
	switch {
	case err == nil || isConflict(err) || isGone(err):
		in.untrack(o)
	default:
		in.fail("delete alert state", err)
	}
}

// sweep reads every instant alert in KV and tracks those this replica
// does not: at start, to join what is firing, and then to finish what a
// dead replica left.
func (in *Instant) sweep(ctx context.Context, now time.Time) {
	in.lastSweep = now
	var keys []string
	err := in.op(ctx, func(ctx context.Context) (err error) {
		keys, err = listKeys(ctx, in.kv, prefixInstant)
		return err
	})
	if err != nil {
		in.fail("list alert state", err)
		return
	}
	for _, key := range keys {
		if in.byKey[key] != nil {
			continue
		}
		var entry jetstream.KeyValueEntry
		err := in.op(ctx, func(ctx context.Context) (err error) {
			entry, err = in.kv.Get(ctx, key)
			return err
		})
		if isGone(err) {
			continue
		}
		if err != nil {
			in.fail("read alert state", err)
			return
		}
		rec, err := decodeRecord(entry.Value())
		if err != nil {
			in.log.Warn().Str("key", key).Msg("unreadable alert state deleted")
			_ = in.op(ctx, func(ctx context.Context) error {
				return in.kv.Delete(ctx, key, jetstream.LastRevision(entry.Revision()))
			})
			continue
		}
		o := &openAlert{key: key, rec: rec, rev: entry.Revision(), flushed: now, mine: rec.Counts[in.cfg.Instance]}
		if i, ok := in.byName[rec.Rule]; ok {
			r := &in.rules[i]
			o.rule = r
			o.gk = groupKey{rule: i, overflow: rec.Labels["overflow"] == "true"}
			if r.byService && !o.gk.overflow {
				o.gk.service = rec.Labels["service"]
			}
			if r.byEndpoint && !o.gk.overflow {
				o.gk.endpoint = rec.Labels["endpoint"]
			}
			if in.open[o.gk] != nil {
				continue
			}
		} else {
			o.gk = groupKey{rule: -1, service: key}
		}
		in.track(o)
		in.stats.Joined.Add(1)
	}
}

// shutdown writes the counts this replica holds, briefly.
func (in *Instant) shutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), in.cfg.Timeout)
	defer cancel()
	now := in.cfg.Now()
	for _, o := range in.open {
		if o.unflushed(in.cfg.Instance) > 0 && o.rec.Phase == phaseFiring && ctx.Err() == nil {
			_ = in.flush(ctx, o, now)
		}
	}
}

// instantMessage is the human text of an instant alert.
func instantMessage(r *instantRule, rec *record, resolved bool) string {
	n := "requests"
	if rec.Count == 1 {
		n = "request"
	}
	where := formatLabels(rec.Labels)
	if where == "" {
		where = "all services"
	}
	if resolved {
		return fmt.Sprintf("%s resolved: %d %s with %s %s %s on %s (worst %s); none for %s",
			r.Name, rec.Count, n, r.Field, r.Op, fmtValue(r.Value), where, fmtValue(rec.Worst), r.Cooldown)
	}
	return fmt.Sprintf("%s: %s %s %s on %s (%d %s so far, worst %s)",
		r.Name, r.Field, r.Op, fmtValue(r.Value), where, rec.Count, n, fmtValue(rec.Worst))
}

// ensureRetry creates the stream and bucket, retrying every second until
// it succeeds or ctx ends.
func ensureRetry(ctx context.Context, js jetstream.JetStream, c StreamConfig, timeout time.Duration, log zerolog.Logger) (jetstream.KeyValue, error) {
	for attempt := 0; ; attempt++ {
		octx, cancel := context.WithTimeout(ctx, timeout)
		kv, err := Ensure(octx, js, c)
		cancel()
		if err == nil {
			return kv, nil
		}
		if attempt == 0 {
			log.Warn().Err(err).Msg("alert stream or state bucket unavailable; retrying")
		}
		t := time.NewTimer(time.Second)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
