package alerts

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/wedsync/pulse/alerts/rules"
)

// EvaluatorConfig tunes the window evaluator. Zero fields take defaults.
type EvaluatorConfig struct {
	Stream       StreamConfig
	Interval     time.Duration // between evaluations (default 15s)
	QueryTimeout time.Duration // bound of one rule's ClickHouse query (default 10s)
	Lease        time.Duration // leadership lease (default 10s): a dead leader is replaced within 1.2x this
	Timeout      time.Duration // bound of one NATS operation (default 5s)
	Instance     string        // this replica's name in the lease (default host name and a random suffix)
	// MinRequests is the minimum sample of error_rate rules that set no
	// min_requests of their own (default 20, --health-min-requests): a
	// window of fewer requests is no data, so that one failed request
	// among three cannot fire an alert.
	MinRequests uint64
	// Now is the evaluation clock (default time.Now): windows end at Now,
	// and for durations are measured on it. The lease always uses the
	// real monotonic clock.
	Now func() time.Time
	// Registerer receives the evaluator's metrics,
	// pulse_alerts_evaluator_*; nil registers none.
	Registerer prometheus.Registerer
}

func (c *EvaluatorConfig) defaults() {
	if c.Interval == 0 {
		c.Interval = 15 * time.Second
	}
	if c.QueryTimeout == 0 {
		c.QueryTimeout = 10 * time.Second
	}
	if c.Lease == 0 {
		c.Lease = 10 * time.Second
	}
	if c.Timeout == 0 {
		c.Timeout = 5 * time.Second
	}
	if c.Instance == "" {
		c.Instance = defaultInstance()
	}
	if c.MinRequests == 0 {
		c.MinRequests = DefaultMinRequests
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// DefaultMinRequests is the default of EvaluatorConfig.MinRequests.
const DefaultMinRequests = 20

// Validate checks c; zero fields are valid (they take defaults).
func (c EvaluatorConfig) Validate() error {
	switch {
	case c.Interval < 0 || c.QueryTimeout < 0 || c.Timeout < 0:
		return errors.New("alert evaluation intervals and timeouts must not be negative")
	case c.Interval != 0 && c.Interval < 10*time.Millisecond:
		return errors.New("alert evaluation interval must be at least 10ms")
	case c.Lease != 0 && c.Lease < 500*time.Millisecond:
		return errors.New("alert evaluator lease must be at least 500ms")
	}
	return c.Stream.Validate()
}

// Status is the window evaluator's health, as of its last evaluation.
type Status struct {
	Instance string `json:"instance"`
	Leader   bool   `json:"leader"` // this replica holds the lease and evaluates
	// Degraded is true when the last evaluation could not run every rule
	// (ClickHouse failed or timed out) or could not record state (NATS
	// failed). Alerts then stay as they were: nothing resolves for want
	// of an answer.
	Degraded       bool      `json:"degraded"`
	Reason         string    `json:"reason,omitempty"` // why degraded, without internals
	LastEvaluation time.Time `json:"last_evaluation,omitzero"`
	Evaluations    uint64    `json:"evaluations"` // evaluations this replica ran
	Firing         int       `json:"firing"`
	Pending        int       `json:"pending"`
}

// series is the state of one window rule's group.
type series struct {
	key   string
	rule  *rules.Window // nil when the rule is no longer configured
	rec   *record
	rev   uint64
	sent  bool // this process published rec's current phase
	owner bool // this process wrote rec's current phase
}

// Evaluator evaluates window and scaling rules. Run campaigns for the
// lease and evaluates every Interval while it holds it; Evaluate runs one
// evaluation now. Status is safe for concurrent use.
type Evaluator struct {
	cfg   EvaluatorConfig
	rules []rules.Window
	js    jetstream.JetStream
	store Querier
	log   zerolog.Logger

	evalMu sync.Mutex // one evaluation at a time; guards the fields below
	kv     jetstream.KeyValue
	series map[string]*series // by KV key; nil until loaded from KV
	stale  bool               // a write met another writer's: read series again
	lease  *lease

	statusMu sync.Mutex
	status   Status

	fired *prometheus.CounterVec // firing alerts published, by rule and severity
}

// NewEvaluator returns an evaluator of set's window and scaling rules,
// reading store and publishing through js. It fills cfg's defaults,
// checks it and registers the evaluator's metrics on cfg.Registerer. It
// starts nothing; call Run.
func NewEvaluator(cfg EvaluatorConfig, set *rules.Set, js jetstream.JetStream, store Querier, log zerolog.Logger) (*Evaluator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("window alerts: %w", err)
	}
	cfg.defaults()
	cfg.Stream.defaults()
	e := &Evaluator{cfg: cfg, rules: withMinSample(set.Evaluated(), cfg.MinRequests), js: js, store: store,
		log: log.With().Str("component", "alerts.evaluator").Logger()}
	e.status.Instance = cfg.Instance
	severities := map[string]string{}
	for _, r := range e.rules {
		severities[r.Name] = r.Severity
	}
	e.fired = firedVec("window", severities)
	err := register(cfg.Registerer, e.fired,
		gaugeOf("pulse_alerts_evaluator_degraded", "1 when the last window evaluation could not run every rule.",
			func() bool { return e.Status().Degraded }),
		gaugeOf("pulse_alerts_evaluator_leader", "1 while this replica holds the window evaluator lease.",
			func() bool { return e.Status().Leader }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pulse_alerts_evaluator_evaluations_total", Help: "Window rule evaluations this replica ran."},
			func() float64 { return float64(e.Status().Evaluations) }),
	)
	if err != nil {
		return nil, fmt.Errorf("window alerts: %w", err)
	}
	return e, nil
}

// withMinSample gives the error_rate rules of rs that set no min_requests
// (or 0) the minimum sample n; it changes rs in place and returns it.
func withMinSample(rs []rules.Window, n uint64) []rules.Window {
	for i := range rs {
		if rs[i].Metric == rules.MetricErrorRate && rs[i].MinRequests == 0 {
			rs[i].MinRequests = n
		}
	}
	return rs
}

// Status returns the evaluator's health.
func (e *Evaluator) Status() Status {
	e.statusMu.Lock()
	defer e.statusMu.Unlock()
	s := e.status
	if e.lease != nil {
		s.Leader = e.lease.held()
	}
	return s
}

// Run campaigns for the lease and, while this replica holds it, evaluates
// every Interval (and at once on taking it over, after reading the state
// from KV). It returns nil when ctx ends, after releasing the lease so
// that another replica takes over at once.
func (e *Evaluator) Run(ctx context.Context) error {
	kv, err := ensureRetry(ctx, e.js, e.cfg.Stream, e.cfg.Timeout, e.log)
	if err != nil {
		return nil // ctx ended
	}
	e.evalMu.Lock()
	e.kv = kv
	e.evalMu.Unlock()
	l := newLease(kv, keyLease, e.cfg.Instance, e.cfg.Lease, e.cfg.Timeout, e.log)
	e.statusMu.Lock()
	e.lease = l
	e.statusMu.Unlock()
	done := make(chan struct{})
	go func() {
		defer close(done)
		l.run(ctx)
	}()
	defer func() { <-done }()

	t := time.NewTicker(e.cfg.Interval)
	defer t.Stop()
	leader, degraded := false, false
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-l.changed:
		case <-t.C:
		}
		holds := l.held()
		if holds && !leader {
			// Another replica may have changed the state meanwhile.
			e.evalMu.Lock()
			e.series = nil
			e.evalMu.Unlock()
		}
		leader = holds
		if !leader {
			continue
		}
		err := e.evaluate(ctx, l.held)
		switch {
		case ctx.Err() != nil:
		case err != nil && !degraded:
			e.log.Warn().Err(err).Msg("evaluation incomplete; alerts keep their state until it completes")
		case err == nil && degraded:
			e.log.Info().Msg("evaluation complete again")
		}
		degraded = err != nil
	}
}

// Evaluate runs one evaluation of every rule now, whether or not this
// replica holds the lease (Run calls it only while it does). A rule whose
// query fails keeps its alerts as they are, and the evaluator reports
// itself degraded until an evaluation succeeds in full.
func (e *Evaluator) Evaluate(ctx context.Context) error {
	return e.evaluate(ctx, func() bool { return true })
}

func (e *Evaluator) evaluate(ctx context.Context, leader func() bool) error {
	e.evalMu.Lock()
	defer e.evalMu.Unlock()
	now := e.cfg.Now().UTC().Truncate(time.Second)
	var failed []string
	var stateErr error
	report := func() error {
		e.statusMu.Lock()
		defer e.statusMu.Unlock()
		e.status.Evaluations++
		e.status.LastEvaluation = now
		e.status.Degraded = len(failed) > 0 || stateErr != nil
		e.status.Reason = ""
		var errs []error
		if len(failed) > 0 {
			e.status.Reason = "ClickHouse did not answer for rules " + strings.Join(failed, ", ")
			errs = append(errs, fmt.Errorf("rules %s not evaluated", strings.Join(failed, ", ")))
		}
		if stateErr != nil {
			if e.status.Reason != "" {
				e.status.Reason += "; "
			}
			e.status.Reason += "alert state store (NATS) unavailable"
			errs = append(errs, stateErr)
		}
		e.status.Firing, e.status.Pending = 0, 0
		for _, s := range e.series {
			switch s.rec.Phase {
			case phaseFiring:
				e.status.Firing++
			case phasePending:
				e.status.Pending++
			}
		}
		return errors.Join(errs...)
	}
	if e.kv == nil {
		kv, err := e.op(ctx, func(ctx context.Context) (jetstream.KeyValue, error) { return Ensure(ctx, e.js, e.cfg.Stream) })
		if err != nil {
			stateErr = err
			return report()
		}
		e.kv = kv
	}
	if e.series == nil || e.stale {
		if err := e.load(ctx); err != nil {
			stateErr = err
			return report()
		}
	}
	// Finish transitions an earlier evaluation (or a dead leader) wrote
	// but did not publish.
	for _, s := range e.sorted() {
		if !s.rec.Notified && (s.rec.Phase == phaseFiring || s.rec.Phase == phaseResolved) {
			if err := e.announce(ctx, s); err != nil {
				stateErr = err
			}
		}
	}
	configured := map[string]bool{}
	for i := range e.rules {
		r := &e.rules[i]
		configured[r.Name] = true
		if !leader() || ctx.Err() != nil {
			return report() // the next leader evaluates
		}
		qctx, cancel := context.WithTimeout(ctx, e.cfg.QueryTimeout)
		samples, err := evaluate(qctx, e.store, r, now)
		cancel()
		if err != nil {
			e.log.Debug().Err(err).Str("rule", r.Name).Msg("rule not evaluated")
			failed = append(failed, r.Name)
			continue
		}
		if err := e.apply(ctx, r, samples, now); err != nil {
			stateErr = err
		}
	}
	// Alerts of rules no longer configured resolve.
	for _, s := range e.sorted() {
		if !configured[s.rec.Rule] && s.rec.Phase != phaseResolved {
			s.rule = nil
			if err := e.resolve(ctx, s, math.NaN(), now, "the rule is no longer configured"); err != nil {
				stateErr = err
			}
		}
	}
	return report()
}

func (e *Evaluator) op(ctx context.Context, f func(ctx context.Context) (jetstream.KeyValue, error)) (jetstream.KeyValue, error) {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.Timeout)
	defer cancel()
	return f(ctx)
}

// do runs one NATS operation under the configured timeout.
func (e *Evaluator) do(ctx context.Context, f func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.Timeout)
	defer cancel()
	return f(ctx)
}

// load reads every window series from KV.
func (e *Evaluator) load(ctx context.Context) error {
	var keys []string
	if err := e.do(ctx, func(ctx context.Context) (err error) {
		keys, err = listKeys(ctx, e.kv, prefixWindow)
		return err
	}); err != nil {
		return err
	}
	byName := map[string]*rules.Window{}
	for i := range e.rules {
		byName[e.rules[i].Name] = &e.rules[i]
	}
	all := map[string]*series{}
	for _, key := range keys {
		var entry jetstream.KeyValueEntry
		err := e.do(ctx, func(ctx context.Context) (err error) {
			entry, err = e.kv.Get(ctx, key)
			return err
		})
		if isGone(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("read alert state: %w", err)
		}
		rec, err := decodeRecord(entry.Value())
		if err != nil {
			e.log.Warn().Str("key", key).Msg("unreadable alert state ignored")
			continue
		}
		all[key] = &series{key: key, rule: byName[rec.Rule], rec: rec, rev: entry.Revision()}
	}
	e.series, e.stale = all, false
	return nil
}

func (e *Evaluator) sorted() []*series {
	out := make([]*series, 0, len(e.series))
	for _, s := range e.series {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].key < out[j].key })
	return out
}

// baseLabels are the labels every alert of r carries: its own and its
// filters'.
func baseLabels(r *rules.Window) map[string]string {
	l := map[string]string{}
	for k, v := range r.Labels {
		l[k] = v
	}
	r.Filters.Each(func(name, v string) { l[name] = v })
	return l
}

// apply moves r's series according to one evaluation's samples.
func (e *Evaluator) apply(ctx context.Context, r *rules.Window, samples []sample, now time.Time) error {
	base := baseLabels(r)
	seen := map[string]bool{}
	anyData := false
	var errs []error
	step := func(labels map[string]string, v float64, ok bool) {
		key := stateKey(prefixWindow, r.Name, labels)
		seen[key] = true
		if err := e.step(ctx, r, key, labels, v, ok, now); err != nil {
			errs = append(errs, err)
		}
	}
	for _, sm := range samples {
		anyData = anyData || sm.ok
	}
	for _, sm := range samples {
		labels := map[string]string{}
		for k, v := range base {
			labels[k] = v
		}
		for k, v := range sm.labels {
			labels[k] = v
		}
		step(labels, sm.value, sm.ok)
	}
	// A grouped rule without any data: its no-data alert is rule-wide,
	// the series of the base labels alone.
	ruleWide := stateKey(prefixWindow, r.Name, base)
	if len(r.GroupBy) > 0 && !anyData && r.NoData == rules.NoDataAlert && !seen[ruleWide] {
		step(base, math.NaN(), false)
	}
	// Series this evaluation found no row for have no data.
	for _, s := range e.sorted() {
		if s.rec.Rule != r.Name || seen[s.key] {
			continue
		}
		if s.key == ruleWide && len(r.GroupBy) > 0 && anyData {
			// The rule-wide no-data alert ends when any group has data.
			if err := e.resolve(ctx, s, math.NaN(), now, "data is back"); err != nil {
				errs = append(errs, err)
			}
			continue
		}
		if err := e.step(ctx, r, s.key, s.rec.Labels, math.NaN(), false, now); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// step moves one series: the state machine of a window rule.
//
//	none     --condition-->            pending (firing at once when for is 0)
//	pending  --condition held for-->   firing    (published)
//	pending  --condition false-->      none
//	firing   --past resolve threshold-> resolved (published, then deleted)
//
// Without data (ok false) no_data decides: keep leaves the series as it is,
// resolve resolves or drops it, alert counts as the condition holding.
func (e *Evaluator) step(ctx context.Context, r *rules.Window, key string, labels map[string]string, v float64, ok bool, now time.Time) error {
	s := e.series[key]
	cond := ok && r.Fires(v)
	if !ok {
		switch r.NoData {
		case rules.NoDataKeep:
			return nil
		case rules.NoDataResolve:
			if s == nil {
				return nil
			}
			if s.rec.Phase == phasePending {
				return e.drop(ctx, s)
			}
			return e.resolve(ctx, s, v, now, "no data")
		case rules.NoDataAlert:
			cond = true
		}
	}
	if s == nil {
		if !cond {
			return nil
		}
		rec := &record{
			Alert: Alert{ID: nuid.Next(), Kind: KindAlert, Rule: r.Name, State: StateFiring, Severity: r.Severity,
				Labels: labels, Value: value(v), Threshold: r.Threshold, Count: 1},
			Phase: phasePending, Since: now, NoData: !ok, Updated: now,
		}
		if r.Scaling() {
			rec.Kind, rec.Direction, rec.Factor = KindScaling, r.Direction, r.Factor
		}
		if r.For.D() == 0 {
			rec.Phase, rec.StartedAt = phaseFiring, now
		}
		rec.Message = windowMessage(r, rec, v, false, "")
		var rev uint64
		err := e.do(ctx, func(ctx context.Context) (err error) {
			rev, err = e.kv.Create(ctx, key, rec.encode())
			return err
		})
		if err != nil {
			if isConflict(err) {
				e.stale = true // another writer: read everything again next time
			}
			return fmt.Errorf("create alert state: %w", err)
		}
		s = &series{key: key, rule: r, rec: rec, rev: rev, owner: true}
		e.series[key] = s
		if rec.Phase == phaseFiring {
			return e.announce(ctx, s)
		}
		return nil
	}
	s.rule = r
	switch s.rec.Phase {
	case phasePending:
		if !cond {
			return e.drop(ctx, s)
		}
		next := *s.rec
		next.Count++
		next.Value = value(v)
		next.NoData = !ok
		next.Updated = now
		if now.Sub(s.rec.Since) >= r.For.D() {
			next.Phase, next.StartedAt, next.Notified = phaseFiring, now, false
		}
		next.Message = windowMessage(r, &next, v, false, "")
		if err := e.write(ctx, s, &next); err != nil {
			return err
		}
		if next.Phase == phaseFiring {
			return e.announce(ctx, s)
		}
		return nil
	case phaseFiring:
		switch {
		case !ok: // no_data alert: still firing
		case s.rec.NoData && !cond:
			return e.resolve(ctx, s, v, now, "data is back")
		case !s.rec.NoData && r.Resolves(v):
			return e.resolve(ctx, s, v, now, "")
		}
		next := *s.rec
		if cond {
			next.Count++
		}
		next.Value, next.NoData, next.Updated = value(v), !ok, now
		if next.NoData != s.rec.NoData {
			next.Message = windowMessage(r, &next, v, false, "")
		}
		if next.Count == s.rec.Count && sameValue(next.Value, s.rec.Value) && next.NoData == s.rec.NoData {
			return nil // nothing new to record
		}
		return e.write(ctx, s, &next)
	case phaseResolved:
		return e.announce(ctx, s)
	}
	return nil
}

func sameValue(a, b *float64) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// write replaces s's record, conditional on its revision.
func (e *Evaluator) write(ctx context.Context, s *series, next *record) error {
	var rev uint64
	err := e.do(ctx, func(ctx context.Context) (err error) {
		rev, err = e.kv.Update(ctx, s.key, next.encode(), s.rev)
		return err
	})
	if err != nil {
		if isConflict(err) || isGone(err) {
			e.stale = true // another writer: read everything again next time
		}
		return fmt.Errorf("update alert state: %w", err)
	}
	if next.Phase != s.rec.Phase {
		s.sent, s.owner = false, true
	}
	s.rec, s.rev = next, rev
	return nil
}

// drop forgets a pending series whose condition stopped holding.
func (e *Evaluator) drop(ctx context.Context, s *series) error {
	err := e.do(ctx, func(ctx context.Context) error {
		return e.kv.Delete(ctx, s.key, jetstream.LastRevision(s.rev))
	})
	if err != nil && !isGone(err) {
		if isConflict(err) {
			e.stale = true
		}
		return fmt.Errorf("delete alert state: %w", err)
	}
	delete(e.series, s.key)
	return nil
}

// resolve records s as resolved, then publishes and deletes it. A pending
// series is dropped.
func (e *Evaluator) resolve(ctx context.Context, s *series, v float64, now time.Time, why string) error {
	switch s.rec.Phase {
	case phasePending:
		return e.drop(ctx, s)
	case phaseResolved:
		return e.announce(ctx, s)
	}
	next := *s.rec
	next.Phase, next.State, next.Notified, next.Updated = phaseResolved, StateResolved, false, now
	next.ResolvedAt = &now
	if vv := value(v); vv != nil {
		next.Value = vv
	}
	next.Message = windowMessage(s.rule, &next, v, true, why)
	if err := e.write(ctx, s, &next); err != nil {
		return err
	}
	return e.announce(ctx, s)
}

// announce publishes s's current phase and records that it did: firing
// records are marked notified, resolved ones deleted.
func (e *Evaluator) announce(ctx context.Context, s *series) error {
	if !s.sent {
		a := s.rec.Alert
		if err := e.do(ctx, func(ctx context.Context) error { return publish(ctx, e.js, &a) }); err != nil {
			return err
		}
		s.sent = true
		if a.State == StateFiring {
			e.fired.WithLabelValues(a.Rule, a.Severity).Inc()
		}
	}
	if s.rec.Phase == phaseResolved {
		err := e.do(ctx, func(ctx context.Context) error {
			return e.kv.Delete(ctx, s.key, jetstream.LastRevision(s.rev))
		})
		if err != nil && !isConflict(err) && !isGone(err) {
			return fmt.Errorf("delete alert state: %w", err)
		}
		delete(e.series, s.key)
		return nil
	}
	next := *s.rec
	next.Notified = true
	return e.write(ctx, s, &next)
}

// windowMessage is the human text of a window or scaling alert.
func windowMessage(r *rules.Window, rec *record, v float64, resolved bool, why string) string {
	if r == nil {
		return rec.Rule + " resolved: " + why
	}
	where := formatLabels(rec.Labels)
	if where != "" {
		where = " for " + where
	}
	cmp, rcmp := "above", "at or below"
	if r.Op == rules.Below {
		cmp, rcmp = "below", "at or above"
	}
	what := describe(r, v)
	var b strings.Builder
	b.WriteString(r.Name)
	if resolved {
		b.WriteString(" resolved: ")
		switch {
		case why != "":
			b.WriteString(why + "; ")
			if !math.IsNaN(v) {
				b.WriteString(what + " over " + r.Window.String() + where)
			} else {
				b.WriteString("over " + r.Window.String() + where)
			}
		default:
			fmt.Fprintf(&b, "%s %s %s over %s%s", what, rcmp, unit(r.Metric, r.ResolveThreshold), r.Window, where)
		}
		if r.Scaling() {
			b.WriteString("; the recommendation to scale " + r.Direction + " is withdrawn")
		}
		return b.String()
	}
	b.WriteString(": ")
	if r.Scaling() {
		fmt.Fprintf(&b, "scale %s by %sx: ", r.Direction, fmtValue(r.Factor))
	}
	if math.IsNaN(v) {
		fmt.Fprintf(&b, "no data over %s%s (no_data: alert)", r.Window, where)
	} else {
		fmt.Fprintf(&b, "%s %s %s over %s%s", what, cmp, unit(r.Metric, r.Threshold), r.Window, where)
	}
	if rec.Phase == phasePending {
		fmt.Fprintf(&b, "; pending, fires after %s", r.For)
	} else if r.For.D() > 0 {
		fmt.Fprintf(&b, " for %s", r.For)
	}
	return b.String()
}
