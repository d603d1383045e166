// Package alerts turns Pulse's events into alerts: instant rules checked
// against every request the aggregator decodes, window rules evaluated
// against ClickHouse every interval, and scaling rules whose alerts are
// scale recommendations. Rules come from package alerts/rules.
//
// # What subscribers get
//
// Every transition is one JSON Alert published on
// pulse.alerts.<severity>.<rule> (scaling: pulse.scaling.<up|down>.<rule>)
// through JetStream, with the header Nats-Msg-Id "<id>/<state>", so a
// re-sent transition is dropped by the stream's duplicate window. The
// stream PULSE_ALERTS (limits retention, file storage, 30 days) keeps them
// for replay; History copies them into the ClickHouse table alerts
// (schema/migrations/0008_alerts.sql) for history queries. An alert is published twice: once
// firing, once resolved, both with the same id. Only a failure can repeat
// a publication (a process dying between recording a transition and
// publishing it, or a publish whose acknowledgement was lost): the
// replica that finishes the transition publishes it again with the same
// Nats-Msg-Id, so the stream still holds it once, while a live core
// subscriber may see it twice.
//
// # Components
//
//   - Instant (every aggregator replica): Observe folds matching requests
//     into groups (rule x service x endpoint) without blocking and without
//     allocating for requests that match nothing; its own goroutine fires
//     the first match of a group at once and resolves the alert once the
//     rule's cooldown passed without a match. Later matches only add to
//     the alert's count, which is written to KV every few seconds and
//     published once, on the resolved message: a burst of 10,000 errors is
//     one firing and one resolved message.
//   - Evaluator (window and scaling rules): one replica at a time, the
//     holder of a lease in KV, queries ClickHouse every interval and moves
//     each series through pending (the condition holds, for not yet over),
//     firing, and resolved (past the resolve threshold).
//   - History: a durable JetStream consumer writing the alert stream into
//     ClickHouse, acking after the insert.
//   - API: GET /api/admin/alerts and /api/admin/alerts/rules.
//   - Tail: a live subscriber printing one line per alert.
//
// # Construction, dependencies, metrics
//
// Each component's New fills its config's zero fields with defaults,
// checks it (the config's Validate) and returns the component or an
// error; nothing starts before Run. What a component needs of ClickHouse
// is declared here: Evaluator and API a Querier, History an Inserter
// (*chstore.Store is both). Instant, Evaluator and History register what
// they count on their config's Registerer (nil: nowhere), as
// pulse_alerts_instant_*, pulse_alerts_evaluator_* and
// pulse_alerts_history_*, and both evaluators count the alerts they fire in
// pulse_alerts_fired_total{evaluator, rule, severity}; a second component
// of a kind on the same registry is refused.
//
// # State
//
// Everything a restart must not lose lives in the JetStream KV bucket
// PULSE_ALERTS_STATE: one key per alert group or series
// (instant.<rule>.<hash>, window.<rule>.<hash>) holding its record (firing
// alerts with their count and last match, which is also the cooldown
// timer; pending series with the time their condition started holding),
// and the lease leader.window. Writes are compare-and-set on the key's
// revision, so replicas never overwrite each other: the first replica to
// create an instant group's key fires it, the others add their counts to
// it, each writing its own share of the count (a total under its
// instance name, so a retried write counts nothing twice). A record says
// whether its transition was published; a process that dies between
// writing a transition and publishing it leaves that to the next replica
// that reads the record.
package alerts

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Subjects and JetStream names.
const (
	// SubjectAlerts prefixes alerts: pulse.alerts.<severity>.<rule>.
	SubjectAlerts = "pulse.alerts."
	// SubjectScaling prefixes scale recommendations:
	// pulse.scaling.<up|down>.<rule>.
	SubjectScaling = "pulse.scaling."
	// DefaultStream keeps alert history for replay.
	DefaultStream = "PULSE_ALERTS"
	// DefaultBucket holds alert state and the evaluator lease.
	DefaultBucket = "PULSE_ALERTS_STATE"
)

// States of an alert.
const (
	StateFiring   = "firing"
	StateResolved = "resolved"
)

// Kinds of alert.
const (
	KindAlert   = "alert"
	KindScaling = "scaling"
)

// Alert is one transition of an alert, as published and stored.
type Alert struct {
	ID         string            `json:"id"`
	Kind       string            `json:"kind"` // alert or scaling
	Rule       string            `json:"rule"`
	State      string            `json:"state"` // firing or resolved
	Severity   string            `json:"severity"`
	Labels     map[string]string `json:"labels"`
	Value      *float64          `json:"value"` // null when there was no data
	Threshold  float64           `json:"threshold"`
	StartedAt  time.Time         `json:"started_at"`
	ResolvedAt *time.Time        `json:"resolved_at"` // null while firing
	// Count is, for an instant rule, the number of matching requests
	// folded into the alert; for a window rule, the number of evaluations
	// in which its condition held.
	Count     uint64  `json:"count"`
	Message   string  `json:"message"`
	Direction string  `json:"direction,omitempty"` // scaling: up or down
	Factor    float64 `json:"factor,omitempty"`    // scaling: suggested capacity multiplier
}

// Subject is the subject a is published on.
func (a *Alert) Subject() string {
	if a.Kind == KindScaling {
		return SubjectScaling + a.Direction + "." + a.Rule
	}
	return SubjectAlerts + a.Severity + "." + a.Rule
}

// MsgID is the Nats-Msg-Id of a's publication: one per alert and state.
func (a *Alert) MsgID() string { return a.ID + "/" + a.State }

// At is the time of the transition: when it fired or resolved.
func (a *Alert) At() time.Time {
	if a.State == StateResolved && a.ResolvedAt != nil {
		return *a.ResolvedAt
	}
	return a.StartedAt
}

// value returns v as an Alert value: nil unless finite.
func value(v float64) *float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return &v
}

// StreamConfig names and sizes the alert stream and the state bucket.
// Zero fields take defaults.
type StreamConfig struct {
	Stream          string        // default PULSE_ALERTS
	Bucket          string        // default PULSE_ALERTS_STATE
	MaxAge          time.Duration // history kept in the stream (default 30 days)
	MaxBytes        int64         // (default 1 GiB)
	Replicas        int           // 1 here, 3 on a production cluster
	DuplicateWindow time.Duration // a repeated Nats-Msg-Id within it is dropped (default 10m)
}

func (c *StreamConfig) defaults() {
	if c.Stream == "" {
		c.Stream = DefaultStream
	}
	if c.Bucket == "" {
		c.Bucket = DefaultBucket
	}
	if c.MaxAge == 0 {
		c.MaxAge = 30 * 24 * time.Hour
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = 1 << 30
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.DuplicateWindow == 0 {
		c.DuplicateWindow = 10 * time.Minute
	}
}

// Validate checks c; zero fields are valid (they take defaults).
func (c StreamConfig) Validate() error {
	c.defaults()
	switch {
	case c.MaxAge < time.Hour:
		return errors.New("alert stream max age must be at least an hour")
	case c.MaxBytes < 1<<20:
		return errors.New("alert stream max bytes must be at least 1 MiB")
	case c.Replicas < 1 || c.Replicas > 5:
		return errors.New("alert stream replicas must be between 1 and 5")
	case c.DuplicateWindow <= 0 || c.DuplicateWindow > c.MaxAge:
		return errors.New("alert duplicate window must be positive and within max age")
	}
	return nil
}

// Ensure creates the alert stream and the state bucket, or updates them to
// c (its zero fields taking defaults), and returns the bucket. Every
// component calls it when it starts; calling it again is harmless.
func Ensure(ctx context.Context, js jetstream.JetStream, c StreamConfig) (jetstream.KeyValue, error) {
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("alert stream: %w", err)
	}
	c.defaults()
	_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        c.Stream,
		Description: "Pulse alerts and scale recommendations, kept for replay",
		Subjects:    []string{SubjectAlerts + ">", SubjectScaling + ">"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Discard:     jetstream.DiscardOld,
		MaxAge:      c.MaxAge,
		MaxBytes:    c.MaxBytes,
		Replicas:    c.Replicas,
		Duplicates:  c.DuplicateWindow,
	})
	if err != nil {
		return nil, fmt.Errorf("create stream %s: %w", c.Stream, err)
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      c.Bucket,
		Description: "Pulse alert state: firing alerts, pending timers, cooldowns, the evaluator lease",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    c.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("create key-value bucket %s: %w", c.Bucket, err)
	}
	return kv, nil
}

// publish sends a through JetStream and waits for the stream's ack.
func publish(ctx context.Context, js jetstream.JetStream, a *Alert) error {
	data, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("encode alert %s: %w", a.ID, err)
	}
	msg := &nats.Msg{Subject: a.Subject(), Header: nats.Header{}, Data: data}
	msg.Header.Set(jetstream.MsgIDHeader, a.MsgID())
	if _, err := js.PublishMsg(ctx, msg); err != nil {
		return fmt.Errorf("publish alert %s on %s: %w", a.ID, msg.Subject, err)
	}
	return nil
}

// Phases of a state record.
const (
	phasePending  = "pending"  // window rules: the condition holds, for not yet over
	phaseFiring   = "firing"   // published (or to be published) as firing
	phaseResolved = "resolved" // to be published as resolved, then deleted
)

// record is the state of one alert group (instant) or series (window) in
// KV. Notified says whether the current phase's transition was published.
type record struct {
	Alert
	Phase    string    `json:"phase"`
	Notified bool      `json:"notified"`
	Since    time.Time `json:"since,omitzero"`     // window: when the condition started holding
	LastSeen time.Time `json:"last_seen,omitzero"` // instant: the last match observed (the cooldown timer)
	Worst    float64   `json:"worst,omitempty"`    // instant: the most extreme matching value
	NoData   bool      `json:"no_data,omitempty"`  // window: fired for want of data
	// Counts holds, for an instant alert, each replica's share of Count
	// by instance name; Count is their sum.
	Counts  map[string]uint64 `json:"counts,omitempty"`
	Updated time.Time         `json:"updated"`
}

func (r *record) encode() []byte {
	if math.IsNaN(r.Worst) || math.IsInf(r.Worst, 0) {
		r.Worst = 0
	}
	if math.IsNaN(r.Threshold) || math.IsInf(r.Threshold, 0) {
		r.Threshold = 0
	}
	b, err := json.Marshal(r)
	if err != nil {
		// A record holds only strings, numbers and times: unreachable.
		panic(fmt.Sprintf("encode alert record: %v", err))
	}
	return b
}

func decodeRecord(b []byte) (*record, error) {
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("decode alert record: %w", err)
	}
	return &r, nil
}

// Key prefixes in the state bucket.
const (
	prefixInstant = "instant."
	prefixWindow  = "window."
	keyLease      = "leader.window"
)

// stateKey is the KV key of a rule's group or series with labels: the
// rule name and a hash of the labels (which may hold any characters).
func stateKey(prefix, rule string, labels map[string]string) string {
	return prefix + rule + "." + labelsHash(labels)
}

func labelsHash(labels map[string]string) string {
	h := fnv.New64a()
	for _, k := range sortedKeys(labels) {
		h.Write([]byte(k))
		h.Write([]byte{0})
		h.Write([]byte(labels[k]))
		h.Write([]byte{0})
	}
	return strconv.FormatUint(h.Sum64(), 16)
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// formatLabels writes labels as k=v pairs in key order.
func formatLabels(labels map[string]string) string {
	var b strings.Builder
	for i, k := range sortedKeys(labels) {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(labels[k])
	}
	return b.String()
}

// fmtValue formats a metric value for messages.
func fmtValue(v float64) string {
	if math.IsNaN(v) {
		return "no data"
	}
	if math.Abs(v) >= 100 || v == math.Trunc(v) {
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	return strconv.FormatFloat(v, 'g', 4, 64)
}

// isConflict reports whether err is a failed compare-and-set on a KV key.
func isConflict(err error) bool {
	return errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists)
}

// isGone reports whether err says a KV key does not exist (any more).
func isGone(err error) bool {
	return errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted)
}

// listKeys returns the keys of kv under prefix ("instant." or "window.").
func listKeys(ctx context.Context, kv jetstream.KeyValue, prefix string) ([]string, error) {
	lister, err := kv.ListKeysFiltered(ctx, prefix+">")
	if err != nil {
		if errors.Is(err, jetstream.ErrNoKeysFound) {
			return nil, nil
		}
		return nil, fmt.Errorf("list %s keys: %w", strings.TrimSuffix(prefix, "."), err)
	}
	defer lister.Stop()
	var keys []string
	seen := map[string]bool{}
	for k := range lister.Keys() {
		if !seen[k] {
			seen[k] = true
			keys = append(keys, k)
		}
	}
	return keys, ctx.Err()
}

// defaultInstance names this process: its host name and a random suffix.
func defaultInstance() string {
	host, _ := os.Hostname()
	if host == "" {
		host = "pulse"
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	return host + "-" + hex.EncodeToString(b[:])
}
