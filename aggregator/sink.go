package aggregator

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/wedsync/pulse/internal/chstore"
)

// Sink writes batches into their tables exactly once, however often the
// stream delivers their messages and however often an insert fails.
//
// How: every row carries (stream_seq, seq_idx), the JetStream sequence of
// the message it came from and its index in that message. Decoding a
// message is deterministic (defaults come from the message, not the clock),
// so a redelivered message yields the same keys. Rows can already be stored
// only if their message was delivered before (JetStream counts deliveries)
// or an insert attempt of this batch failed, since a failed insert may have
// committed some parts: an INSERT spanning several daily partitions is not
// atomic, and a timed-out one may still finish on the server. For those
// suspect messages only, the sink first waits until no insert that could
// hold them is still running on the server (insert query IDs carry their
// table and sequence range, see queryID), then reads which of their keys
// are stored and inserts the rest. Messages delivered for the first time
// skip the check: no one can have stored their rows.
//
// On a replicated table (pulse migrate --cluster) the check reads one
// replica, which may not yet hold a part another replica committed: the
// part of an insert whose answer was lost when that replica stopped, for
// instance. So the same query also reads how many replication entries
// that replica has still to apply, and the check counts only when there
// are none; until then the batch waits and retries (heartbeating), for as
// long as the replica holding the part stays down. One case needs no
// wait: a batch retrying exactly the block its own failed attempt sent
// (no redelivered message, no row dropped) sends it again, and
// ReplicatedMergeTree's block deduplication (hashes kept in ZooKeeper for
// the last replicated_deduplication_window blocks) drops it if the first
// attempt was committed on any replica.
//
// A batch whose rows the server refuses is split by the aggregator (see
// commit and isolate in poison.go) into halves that are all suspect, so
// they too are stored exactly once; the message the server refuses alone
// is dead-lettered whole. Should the server have committed part of that
// message's rows before refusing the rest (an insert larger than one
// block), those rows stay stored and are in the dead letter as well.
//
// What it does not cover: a replica that kept a message past the consumer's
// AckWait without a heartbeat while another replica received it again, and
// both checked before either inserted. Heartbeats (InProgress) during every
// wait keep that from happening in practice.
type Sink struct {
	store    Store
	instance string
	log      zerolog.Logger
	n        atomic.Uint64

	// Skipped counts rows found already stored and not inserted again.
	Skipped atomic.Uint64
}

// Store is what the aggregator needs of ClickHouse: inserts named by query
// ID, the IDs of inserts still running, and a read of the keys a table
// already holds. *chstore.Store is one.
type Store interface {
	// Insert writes cols into table in one INSERT named queryID.
	Insert(ctx context.Context, queryID, table string, cols []chstore.Column) error
	// RunningQueries lists the IDs, starting with prefix, of the queries
	// executing on the server from any client.
	RunningQueries(ctx context.Context, prefix string) ([]string, error)
	// Query runs a SELECT.
	Query(ctx context.Context, query string) (chstore.Rows, error)
	// T qualifies table with the store's database, for use in a query.
	T(table string) string
	// Database is the store's database.
	Database() string
}

var _ Store = (*chstore.Store)(nil)

// NewSink returns a Sink writing to store. instance distinguishes this
// process's insert query IDs from other replicas'.
func NewSink(store Store, instance string, log zerolog.Logger) *Sink {
	return &Sink{store: store, instance: instance, log: log}
}

const queryIDPrefix = "pulse-insert-"

// queryID names an insert by its table and the range of stream sequences
// it holds: pulse-insert-<table>-<lo>-<hi>-<instance>-<n>.
func (s *Sink) queryID(table string, lo, hi uint64) string {
	return fmt.Sprintf("%s%s-%d-%d-%s-%d", queryIDPrefix, table, lo, hi, s.instance, s.n.Add(1))
}

// write inserts, table by table, b's rows that are not stored yet. It
// returns the first failure; the caller retries the whole batch with
// b.allSuspect set, so tables already written are checked, not rewritten.
func (s *Sink) write(ctx context.Context, b *batch) error {
	for _, t := range b.tables() {
		if b.hasSuspects() {
			if err := s.dropStored(ctx, b, t); err != nil {
				return err
			}
		}
		if t.len() == 0 {
			continue
		}
		lo, hi := seqRange(t.seq.v)
		if err := s.store.Insert(ctx, s.queryID(t.table, lo, hi), t.table, t.columns()); err != nil {
			return err
		}
	}
	return nil
}

// dropStored waits for in-flight inserts into t that may hold b's suspect
// rows, then removes from t the rows already stored.
func (s *Sink) dropStored(ctx context.Context, b *batch, t *rows) error {
	var lo, hi uint64
	var tlo, thi time.Time
	first := true
	for i, seq := range t.seq.v {
		if !b.isSuspect(seq) {
			continue
		}
		ts := t.ts.v[i]
		if first {
			lo, hi, tlo, thi, first = seq, seq, ts, ts, false
			continue
		}
		lo, hi = min(lo, seq), max(hi, seq)
		if ts.Before(tlo) {
			tlo = ts
		}
		if ts.After(thi) {
			thi = ts
		}
	}
	if first {
		return nil
	}
	if err := s.awaitInserts(ctx, t.table, lo, hi); err != nil {
		return err
	}
	// The keys, and in the same query (so from the same server) how far
	// that server lags its replicas: a row with stream_seq 0, which no
	// message has, carries the replication entries it has not applied yet
	// (queued, or in the shared log and not yet copied; a table whose log
	// never had an entry reads log_max_index 0 and log_pointer 0).
	q := fmt.Sprintf(`SELECT stream_seq, seq_idx, toUInt64(0) FROM %s WHERE ts >= %s AND ts <= %s AND stream_seq >= %d AND stream_seq <= %d
		UNION ALL SELECT toUInt64(0), toUInt32(0), toUInt64(queue_size) + toUInt64(log_max_index > 0 AND log_pointer <= log_max_index)
		FROM system.replicas WHERE database = %s AND table = %s`,
		s.store.T(t.table), chstore.DateTime(tlo), chstore.DateTime(thi.Add(time.Second)), lo, hi,
		chstore.Quote(s.store.Database()), chstore.Quote(t.table))
	rows, err := s.store.Query(ctx, q)
	if err != nil {
		return fmt.Errorf("read stored keys: %w", err)
	}
	defer rows.Close()
	stored := map[rowKey]bool{}
	var behind uint64
	for rows.Next() {
		var k rowKey
		var lag uint64
		if err := rows.Scan(&k.seq, &k.idx, &lag); err != nil {
			return fmt.Errorf("read stored keys: %w", err)
		}
		if k.seq == 0 {
			behind = lag
		} else if b.isSuspect(k.seq) {
			stored[k] = true
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read stored keys: %w", err)
	}
	if behind > 0 {
		// A part another replica committed (perhaps the failed insert
		// itself, on a replica that then stopped) may not be here yet, so
		// these keys could be incomplete. When the rows are exactly the
		// block a failed attempt of this batch sent, sending it again is
		// safe: ReplicatedMergeTree drops a block whose hash ZooKeeper
		// already holds, whichever replica committed it. Otherwise the
		// batch waits for this replica to catch up.
		if len(b.suspect) == 0 && !b.split && !t.trimmed {
			return nil
		}
		return fmt.Errorf("read stored keys: this replica of %s has %d replication entries to apply first (waiting for them, or for the replica that holds their parts)", t.table, behind)
	}
	if n := t.drop(stored); n > 0 {
		s.Skipped.Add(uint64(n))
		s.log.Info().Str("table", t.table).Int("rows", n).Msg("rows already stored; not inserting them again")
	}
	return nil
}

// awaitInserts waits until no insert into table whose sequence range
// overlaps [lo, hi] is running on the server, from any process.
func (s *Sink) awaitInserts(ctx context.Context, table string, lo, hi uint64) error {
	prefix := queryIDPrefix + table + "-"
	for {
		ids, err := s.store.RunningQueries(ctx, prefix)
		if err != nil {
			return fmt.Errorf("list running inserts: %w", err)
		}
		busy := false
		for _, id := range ids {
			parts := strings.SplitN(strings.TrimPrefix(id, prefix), "-", 3)
			if len(parts) < 3 {
				continue
			}
			a, err1 := strconv.ParseUint(parts[0], 10, 64)
			z, err2 := strconv.ParseUint(parts[1], 10, 64)
			if err1 == nil && err2 == nil && a <= hi && lo <= z {
				busy = true
			}
		}
		if !busy {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func seqRange(seqs []uint64) (lo, hi uint64) {
	lo, hi = seqs[0], seqs[0]
	for _, s := range seqs[1:] {
		lo, hi = min(lo, s), max(hi, s)
	}
	return lo, hi
}
