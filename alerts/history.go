package alerts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/wedsync/pulse/internal/chstore"
)

// HistoryTable is the ClickHouse table of alert transitions (schema.sql).
const HistoryTable = "alerts"

// HistoryConfig tunes the history writer. Zero fields take defaults.
type HistoryConfig struct {
	Stream   StreamConfig
	Consumer string        // durable consumer shared by every replica (default "alerts-history")
	Batch    int           // messages per insert at most (default 1000)
	MaxWait  time.Duration // how long a fetch waits for messages (default 1s)
	Retry    time.Duration // how long a failed insert waits before redelivery (default 5s)
	Timeout  time.Duration // bound of one insert (default 30s)
	// Registerer receives the writer's metrics, pulse_alerts_history_*;
	// nil registers none.
	Registerer prometheus.Registerer
}

func (c *HistoryConfig) defaults() {
	if c.Consumer == "" {
		c.Consumer = "alerts-history"
	}
	if c.Batch == 0 {
		c.Batch = 1000
	}
	if c.MaxWait == 0 {
		c.MaxWait = time.Second
	}
	if c.Retry == 0 {
		c.Retry = 5 * time.Second
	}
	if c.Timeout == 0 {
		c.Timeout = 30 * time.Second
	}
}

// Validate checks c; zero fields are valid (they take defaults).
func (c HistoryConfig) Validate() error {
	switch {
	case c.Batch < 0 || c.Batch > 100_000:
		return errors.New("alert history batch must be between 1 and 100,000")
	case c.MaxWait < 0 || c.Retry < 0 || c.Timeout < 0:
		return errors.New("alert history durations must not be negative")
	}
	return c.Stream.Validate()
}

// HistoryStats counts what the history writer did.
type HistoryStats struct {
	Rows      atomic.Uint64 // transitions stored
	Malformed atomic.Uint64 // messages on alert subjects that were not alerts, terminated
	Failures  atomic.Uint64 // failed inserts, redelivered later
}

// History copies the alert stream into ClickHouse: a durable consumer
// shared by all replicas, acking a message only once its row is inserted.
// A crash between the insert and the ack stores a transition twice;
// readers deduplicate by (id, state), as QueryHistory does.
type History struct {
	cfg   HistoryConfig
	js    jetstream.JetStream
	store Inserter
	log   zerolog.Logger
	stats HistoryStats
}

// Inserter is what History needs of ClickHouse: a columnar insert into
// one table of the store's database. *chstore.Store is one.
type Inserter interface {
	Insert(ctx context.Context, queryID, table string, cols []chstore.Column) error
}

// NewHistory returns a writer of the alert stream into store. It fills
// cfg's defaults, checks it and registers the writer's metrics on
// cfg.Registerer. It starts nothing; call Run.
func NewHistory(cfg HistoryConfig, js jetstream.JetStream, store Inserter, log zerolog.Logger) (*History, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("alert history: %w", err)
	}
	cfg.defaults()
	cfg.Stream.defaults()
	h := &History{cfg: cfg, js: js, store: store, log: log.With().Str("component", "alerts.history").Logger()}
	err := register(cfg.Registerer,
		counterOf("pulse_alerts_history_rows_total", "Alert transitions stored in ClickHouse.", &h.stats.Rows),
		counterOf("pulse_alerts_history_malformed_messages_total", "Messages on alert subjects that were not alerts; terminated, not stored.", &h.stats.Malformed),
		counterOf("pulse_alerts_history_insert_failures_total", "Failed alert history inserts; their messages are redelivered.", &h.stats.Failures),
	)
	if err != nil {
		return nil, fmt.Errorf("alert history: %w", err)
	}
	return h, nil
}

// Stats returns the writer's counters.
func (h *History) Stats() *HistoryStats { return &h.stats }

// Run consumes the alert stream until ctx ends. It returns nil when ctx
// ends; what it fetched and did not store is redelivered to the next run.
func (h *History) Run(ctx context.Context) error {
	var cons jetstream.Consumer
	for attempt := 0; ; attempt++ {
		_, err := ensureRetry(ctx, h.js, h.cfg.Stream, h.cfg.Timeout, h.log)
		if err != nil {
			return nil
		}
		cctx, cancel := context.WithTimeout(ctx, h.cfg.Timeout)
		cons, err = h.js.CreateOrUpdateConsumer(cctx, h.cfg.Stream.Stream, jetstream.ConsumerConfig{
			Durable:       h.cfg.Consumer,
			Description:   "Pulse alert history: alert transitions into ClickHouse",
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       max(time.Minute, 2*h.cfg.Timeout),
			MaxDeliver:    -1,
			MaxAckPending: 4 * h.cfg.Batch,
			DeliverPolicy: jetstream.DeliverAllPolicy,
		})
		cancel()
		if err == nil {
			break
		}
		if attempt == 0 {
			h.log.Warn().Err(err).Msg("alert history consumer unavailable; retrying")
		}
		if !sleepCtx(ctx, time.Second) {
			return nil
		}
	}
	for ctx.Err() == nil {
		batch, err := cons.Fetch(h.cfg.Batch, jetstream.FetchMaxWait(h.cfg.MaxWait))
		if err != nil {
			if ctx.Err() == nil {
				h.log.Debug().Err(err).Msg("fetch failed; retrying")
				sleepCtx(ctx, time.Second)
			}
			continue
		}
		var msgs []jetstream.Msg
		var alerts []*Alert
		for m := range batch.Messages() {
			a, err := decodeAlert(m.Data())
			if err != nil {
				h.stats.Malformed.Add(1)
				h.log.Warn().Str("subject", m.Subject()).Str("reason", err.Error()).Msg("not an alert; dropped from history")
				_ = m.Term()
				continue
			}
			msgs, alerts = append(msgs, m), append(alerts, a)
		}
		if len(msgs) == 0 {
			continue
		}
		ictx, cancel := context.WithTimeout(context.WithoutCancel(ctx), h.cfg.Timeout)
		err = h.insert(ictx, alerts)
		cancel()
		if err != nil {
			h.stats.Failures.Add(1)
			h.log.Warn().Err(err).Int("alerts", len(msgs)).Msg("alert history insert failed; redelivering later")
			for _, m := range msgs {
				_ = m.NakWithDelay(h.cfg.Retry)
			}
			continue
		}
		h.stats.Rows.Add(uint64(len(alerts)))
		for _, m := range msgs {
			_ = m.Ack()
		}
	}
	return nil
}

// decodeAlert reads and checks an alert from the stream.
func decodeAlert(data []byte) (*Alert, error) {
	var a Alert
	if err := json.Unmarshal(data, &a); err != nil {
		return nil, errors.New("not alert JSON")
	}
	minT, maxT := time.Unix(1, 0), time.Unix(math.MaxUint32, 0)
	inRange := func(t time.Time) bool { return t.After(minT) && t.Before(maxT) }
	switch {
	case a.ID == "" || len(a.ID) > 64:
		return nil, errors.New("id must be 1-64 characters")
	case a.Rule == "" || len(a.Rule) > 64:
		return nil, errors.New("rule must be 1-64 characters")
	case a.State != StateFiring && a.State != StateResolved:
		return nil, errors.New("state must be firing or resolved")
	case !inRange(a.StartedAt):
		return nil, errors.New("started_at out of range")
	case a.ResolvedAt != nil && !inRange(*a.ResolvedAt):
		return nil, errors.New("resolved_at out of range")
	case a.State == StateResolved && a.ResolvedAt == nil:
		return nil, errors.New("a resolved alert needs resolved_at")
	}
	return &a, nil
}

// insert stores alerts as rows of the history table.
func (h *History) insert(ctx context.Context, alerts []*Alert) error {
	n := len(alerts)
	ts, started, resolved := make([]time.Time, n), make([]time.Time, n), make([]time.Time, n)
	id, kind, rule, state, sev, labels, msg, dir := make([]string, n), make([]string, n), make([]string, n),
		make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	val, thr, factor := make([]float64, n), make([]float64, n), make([]float64, n)
	count := make([]uint64, n)
	for i, a := range alerts {
		ts[i], started[i] = a.At().UTC(), a.StartedAt.UTC()
		resolved[i] = time.Unix(0, 0).UTC()
		if a.ResolvedAt != nil {
			resolved[i] = a.ResolvedAt.UTC()
		}
		l, _ := json.Marshal(a.Labels)
		if a.Labels == nil {
			l = []byte("{}")
		}
		id[i], kind[i], rule[i], state[i], sev[i], labels[i], msg[i], dir[i] =
			a.ID, a.Kind, a.Rule, a.State, a.Severity, string(l), a.Message, a.Direction
		val[i] = math.NaN()
		if a.Value != nil {
			val[i] = *a.Value
		}
		thr[i], factor[i], count[i] = a.Threshold, a.Factor, a.Count
	}
	return h.store.Insert(ctx, "", HistoryTable, []chstore.Column{
		{Name: "ts", Values: ts}, {Name: "id", Values: id}, {Name: "kind", Values: kind}, {Name: "rule", Values: rule},
		{Name: "state", Values: state}, {Name: "severity", Values: sev}, {Name: "labels", Values: labels},
		{Name: "value", Values: val}, {Name: "threshold", Values: thr}, {Name: "started_at", Values: started},
		{Name: "resolved_at", Values: resolved}, {Name: "count", Values: count}, {Name: "message", Values: msg},
		{Name: "direction", Values: dir}, {Name: "factor", Values: factor},
	})
}

// HistoryQuery selects alert transitions from the history table. Empty
// fields do not filter.
type HistoryQuery struct {
	State    string    // firing or resolved
	Severity string    // one of rules.Severities
	Kind     string    // alert or scaling
	Since    time.Time // transitions at or after it
	Limit    int       // most rows returned (default 100)
}

// QueryHistory returns the transitions q selects, newest first, each
// (id, state) once.
func QueryHistory(ctx context.Context, s Querier, q HistoryQuery) ([]Alert, error) {
	if q.Limit <= 0 {
		q.Limit = 100
	}
	where := []string{"ts >= " + chstore.DateTime(q.Since)}
	for _, f := range [][2]string{{"state", q.State}, {"severity", q.Severity}, {"kind", q.Kind}} {
		if f[1] != "" {
			where = append(where, f[0]+" = "+chstore.Quote(f[1]))
		}
	}
	sql := "SELECT id, kind, rule, state, severity, labels, value, threshold, started_at, resolved_at, count, message, direction, factor FROM " +
		s.T(HistoryTable) + " WHERE " + strings.Join(where, " AND ") +
		" ORDER BY ts DESC, id, state LIMIT 1 BY id, state LIMIT " + strconv.Itoa(q.Limit)
	rows, err := s.Query(ctx, sql)
	if err != nil {
		return nil, fmt.Errorf("query alert history: %w", err)
	}
	defer rows.Close()
	out := []Alert{}
	for rows.Next() {
		var a Alert
		var labels string
		var v float64
		var resolved time.Time
		if err := rows.Scan(&a.ID, &a.Kind, &a.Rule, &a.State, &a.Severity, &labels, &v, &a.Threshold,
			&a.StartedAt, &resolved, &a.Count, &a.Message, &a.Direction, &a.Factor); err != nil {
			return nil, fmt.Errorf("read alert history: %w", err)
		}
		a.Value = value(v)
		if resolved.Unix() > 0 {
			a.ResolvedAt = &resolved
		}
		if err := json.Unmarshal([]byte(labels), &a.Labels); err != nil || a.Labels == nil {
			a.Labels = map[string]string{}
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read alert history: %w", err)
	}
	return out, nil
}

// Firing returns the alerts firing now, as recorded in the state bucket
// kv (with the latest counts of instant alerts), newest first.
func Firing(ctx context.Context, kv jetstream.KeyValue) ([]Alert, error) {
	out := []Alert{}
	for _, prefix := range []string{prefixInstant, prefixWindow} {
		keys, err := listKeys(ctx, kv, prefix)
		if err != nil {
			return nil, err
		}
		for _, key := range keys {
			entry, err := kv.Get(ctx, key)
			if isGone(err) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("read alert state: %w", err)
			}
			rec, err := decodeRecord(entry.Value())
			if err != nil || rec.Phase != phaseFiring {
				continue
			}
			out = append(out, rec.Alert)
		}
	}
	sortNewest(out)
	return out, nil
}

func sortNewest(as []Alert) {
	slices.SortFunc(as, func(a, b Alert) int {
		if c := b.At().Compare(a.At()); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
