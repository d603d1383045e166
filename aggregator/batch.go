package aggregator

import (
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/wedsync/pulse/internal/chstore"
	"github.com/wedsync/pulse/internal/event"
)

// rowKey identifies a stored row: the stream sequence of the message it
// came from and its index in that message.
type rowKey struct {
	seq uint64
	idx uint32
}

// batch is the rows of a set of stream messages, in columns ready for one
// insert, with the messages to ack once they are committed.
type batch struct {
	msgs  []jetstream.Msg
	seqs  map[uint64]bool // stream sequences of msgs
	first time.Time       // when the first message was added

	// suspect holds the sequences of messages whose rows may already be
	// stored: redelivered, or part of an insert attempt that failed. all
	// makes every message suspect.
	suspect    map[uint64]bool
	allSuspect bool

	ts        []time.Time
	service   []string
	endpoint  []string
	method    []string
	status    []uint16
	duration  []float64
	userID    []uuid.UUID
	errMsg    []string
	requestID []string
	streamSeq []uint64
	seqIdx    []uint32
}

func newBatch() *batch {
	return &batch{seqs: map[uint64]bool{}, suspect: map[uint64]bool{}}
}

func (b *batch) rows() int { return len(b.ts) }

// add appends msg and its requests; seq is its stream sequence.
func (b *batch) add(msg jetstream.Msg, seq uint64, redelivered bool, reqs []event.Request) {
	if len(b.msgs) == 0 {
		b.first = time.Now()
	}
	b.msgs = append(b.msgs, msg)
	b.seqs[seq] = true
	if redelivered {
		b.suspect[seq] = true
	}
	for i := range reqs {
		q := &reqs[i]
		b.ts = append(b.ts, q.Timestamp)
		b.service = append(b.service, q.Service)
		b.endpoint = append(b.endpoint, q.Endpoint)
		b.method = append(b.method, q.Method)
		b.status = append(b.status, q.StatusCode)
		b.duration = append(b.duration, q.ResponseTimeMS)
		b.userID = append(b.userID, q.UserID)
		b.errMsg = append(b.errMsg, q.ErrorMessage)
		b.requestID = append(b.requestID, q.RequestID)
		b.streamSeq = append(b.streamSeq, seq)
		b.seqIdx = append(b.seqIdx, uint32(i))
	}
}

// hasSuspects reports whether some rows may already be stored.
func (b *batch) hasSuspects() bool { return b.allSuspect || len(b.suspect) > 0 }

func (b *batch) isSuspect(seq uint64) bool { return b.allSuspect || b.suspect[seq] }

// drop removes the rows whose keys are in stored, keeping order.
func (b *batch) drop(stored map[rowKey]bool) int {
	n := 0
	for i := range b.ts {
		if stored[rowKey{b.streamSeq[i], b.seqIdx[i]}] {
			continue
		}
		b.ts[n], b.service[n], b.endpoint[n], b.method[n] = b.ts[i], b.service[i], b.endpoint[i], b.method[i]
		b.status[n], b.duration[n], b.userID[n], b.errMsg[n] = b.status[i], b.duration[i], b.userID[i], b.errMsg[i]
		b.requestID[n], b.streamSeq[n], b.seqIdx[n] = b.requestID[i], b.streamSeq[i], b.seqIdx[i]
		n++
	}
	dropped := len(b.ts) - n
	b.ts, b.service, b.endpoint, b.method = b.ts[:n], b.service[:n], b.endpoint[:n], b.method[:n]
	b.status, b.duration, b.userID, b.errMsg = b.status[:n], b.duration[:n], b.userID[:n], b.errMsg[:n]
	b.requestID, b.streamSeq, b.seqIdx = b.requestID[:n], b.streamSeq[:n], b.seqIdx[:n]
	return dropped
}

func (b *batch) columns() []chstore.Column {
	return []chstore.Column{
		{Name: "ts", Values: b.ts},
		{Name: "service", Values: b.service},
		{Name: "endpoint", Values: b.endpoint},
		{Name: "method", Values: b.method},
		{Name: "status_code", Values: b.status},
		{Name: "response_time_ms", Values: b.duration},
		{Name: "user_id", Values: b.userID},
		{Name: "error_message", Values: b.errMsg},
		{Name: "request_id", Values: b.requestID},
		{Name: "stream_seq", Values: b.streamSeq},
		{Name: "seq_idx", Values: b.seqIdx},
	}
}

// Columns returns reqs as the columns of one insert into the requests
// table, as if they came from stream message seq. Benchmarks use it to
// measure the raw insert limit with exactly the aggregator's rows.
func Columns(reqs []event.Request, seq uint64) []chstore.Column {
	b := newBatch()
	b.add(nil, seq, false, reqs)
	return b.columns()
}
