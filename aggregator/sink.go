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

// Sink writes batches into the requests table exactly once, however often
// the stream delivers their messages and however often an insert fails.
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
// sequence range, see queryID), then reads which of their keys are stored
// and inserts the rest. Messages delivered for the first time skip the
// check: no one can have stored their rows.
//
// What it does not cover: a replica that kept a message past the consumer's
// AckWait without a heartbeat while another replica received it again, and
// both checked before either inserted. Heartbeats (InProgress) during every
// wait keep that from happening in practice.
type Sink struct {
	store    *chstore.Store
	table    string
	instance string
	log      zerolog.Logger
	n        atomic.Uint64

	// Skipped counts rows found already stored and not inserted again.
	Skipped atomic.Uint64
}

// NewSink returns a Sink writing to table. instance distinguishes this
// process's insert query IDs from other replicas'.
func NewSink(store *chstore.Store, table, instance string, log zerolog.Logger) *Sink {
	return &Sink{store: store, table: table, instance: instance, log: log}
}

const queryIDPrefix = "pulse-insert-"

// queryID names an insert by the range of stream sequences it holds:
// pulse-insert-<table>-<lo>-<hi>-<instance>-<n>.
func (s *Sink) queryID(lo, hi uint64) string {
	return fmt.Sprintf("%s%s-%d-%d-%s-%d", queryIDPrefix, s.table, lo, hi, s.instance, s.n.Add(1))
}

// write inserts b's rows that are not stored yet. It returns an error if
// the insert failed; the caller retries with b.allSuspect set.
func (s *Sink) write(ctx context.Context, b *batch) error {
	if b.hasSuspects() {
		if err := s.dropStored(ctx, b); err != nil {
			return err
		}
	}
	if b.rows() == 0 {
		return nil
	}
	lo, hi := seqRange(b.streamSeq)
	return s.store.Insert(ctx, s.queryID(lo, hi), s.table, b.columns())
}

// dropStored waits for in-flight inserts that may hold b's suspect rows,
// then removes from b the rows already stored.
func (s *Sink) dropStored(ctx context.Context, b *batch) error {
	var lo, hi uint64
	var tlo, thi time.Time
	first := true
	for i, seq := range b.streamSeq {
		if !b.isSuspect(seq) {
			continue
		}
		t := b.ts[i]
		if first {
			lo, hi, tlo, thi, first = seq, seq, t, t, false
			continue
		}
		lo, hi = min(lo, seq), max(hi, seq)
		if t.Before(tlo) {
			tlo = t
		}
		if t.After(thi) {
			thi = t
		}
	}
	if first {
		return nil
	}
	if err := s.awaitInserts(ctx, lo, hi); err != nil {
		return err
	}
	q := fmt.Sprintf("SELECT stream_seq, seq_idx FROM %s WHERE ts >= %s AND ts <= %s AND stream_seq >= %d AND stream_seq <= %d",
		s.store.T(s.table), chstore.DateTime(tlo), chstore.DateTime(thi.Add(time.Second)), lo, hi)
	rows, err := s.store.Query(ctx, q)
	if err != nil {
		return fmt.Errorf("read stored keys: %w", err)
	}
	defer rows.Close()
	stored := map[rowKey]bool{}
	for rows.Next() {
		var k rowKey
		if err := rows.Scan(&k.seq, &k.idx); err != nil {
			return fmt.Errorf("read stored keys: %w", err)
		}
		if b.isSuspect(k.seq) {
			stored[k] = true
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read stored keys: %w", err)
	}
	if n := b.drop(stored); n > 0 {
		s.Skipped.Add(uint64(n))
		s.log.Info().Int("rows", n).Msg("rows already stored; not inserting them again")
	}
	return nil
}

// awaitInserts waits until no insert into the table whose sequence range
// overlaps [lo, hi] is running on the server, from any process.
func (s *Sink) awaitInserts(ctx context.Context, lo, hi uint64) error {
	prefix := queryIDPrefix + s.table + "-"
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
