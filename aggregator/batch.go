package aggregator

import (
	"slices"
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

// column is one column of a table's pending rows.
type column interface {
	keep(mask []bool)
	// appendFrom appends the values of src, a column of the same type,
	// where mask is true.
	appendFrom(src column, mask []bool)
	ch() chstore.Column
}

type col[T any] struct {
	name string
	v    []T
}

func (c *col[T]) keep(mask []bool) {
	n := 0
	for i, k := range mask {
		if k {
			c.v[n] = c.v[i]
			n++
		}
	}
	c.v = c.v[:n]
}

func (c *col[T]) appendFrom(src column, mask []bool) {
	for i, v := range src.(*col[T]).v {
		if mask[i] {
			c.v = append(c.v, v)
		}
	}
}

func (c *col[T]) ch() chstore.Column { return chstore.Column{Name: c.name, Values: c.v} }

// rows are the pending rows of one table, in columns. Every table has ts,
// stream_seq and seq_idx; the sink needs nothing else to deduplicate.
type rows struct {
	table string
	ts    col[time.Time]
	seq   col[uint64]
	idx   col[uint32]
	cols  []column // every column, ts, stream_seq and seq_idx included

	trimmed bool // rows found stored were dropped: no longer the first attempt's block
}

// init sets r up in place (its column list points into r itself).
func (r *rows) init(table string, cols ...column) {
	r.table = table
	r.ts, r.seq, r.idx = col[time.Time]{name: "ts"}, col[uint64]{name: "stream_seq"}, col[uint32]{name: "seq_idx"}
	r.cols = append([]column{&r.ts, &r.seq, &r.idx}, cols...)
}

func (r *rows) len() int { return len(r.ts.v) }

// key appends the identity of one row.
func (r *rows) key(ts time.Time, seq uint64, idx int) {
	r.ts.v = append(r.ts.v, ts)
	r.seq.v = append(r.seq.v, seq)
	r.idx.v = append(r.idx.v, uint32(idx))
}

// drop removes the rows whose keys are in stored, keeping order, and
// returns how many it removed.
func (r *rows) drop(stored map[rowKey]bool) int {
	mask := make([]bool, r.len())
	n := 0
	for i := range mask {
		mask[i] = !stored[rowKey{r.seq.v[i], r.idx.v[i]}]
		if !mask[i] {
			n++
		}
	}
	if n > 0 {
		for _, c := range r.cols {
			c.keep(mask)
		}
		r.trimmed = true
	}
	return n
}

// appendFrom appends the rows of src, rows of the same table, whose
// stream sequence is in seqs.
func (r *rows) appendFrom(src *rows, seqs map[uint64]bool) {
	mask := make([]bool, src.len())
	for i, seq := range src.seq.v {
		mask[i] = seqs[seq]
	}
	for i, c := range r.cols {
		c.appendFrom(src.cols[i], mask)
	}
}

func (r *rows) columns() []chstore.Column {
	out := make([]chstore.Column, len(r.cols))
	for i, c := range r.cols {
		out[i] = c.ch()
	}
	return out
}

// requestRows are rows of the requests table.
type requestRows struct {
	rows
	service, endpoint, method, errMsg, requestID col[string]
	status                                       col[uint16]
	duration                                     col[float64]
	userID                                       col[uuid.UUID]
}

func newRequestRows() *requestRows {
	r := &requestRows{
		service: col[string]{name: "service"}, endpoint: col[string]{name: "endpoint"}, method: col[string]{name: "method"},
		status: col[uint16]{name: "status_code"}, duration: col[float64]{name: "response_time_ms"},
		userID: col[uuid.UUID]{name: "user_id"}, errMsg: col[string]{name: "error_message"}, requestID: col[string]{name: "request_id"},
	}
	r.init("requests", &r.service, &r.endpoint, &r.method, &r.status, &r.duration, &r.userID, &r.errMsg, &r.requestID)
	return r
}

func (r *requestRows) add(seq uint64, reqs []event.Request) {
	for i := range reqs {
		q := &reqs[i]
		r.key(q.Timestamp, seq, i)
		r.service.v = append(r.service.v, q.Service)
		r.endpoint.v = append(r.endpoint.v, q.Endpoint)
		r.method.v = append(r.method.v, q.Method)
		r.status.v = append(r.status.v, q.StatusCode)
		r.duration.v = append(r.duration.v, q.ResponseTimeMS)
		r.userID.v = append(r.userID.v, q.UserID)
		r.errMsg.v = append(r.errMsg.v, q.ErrorMessage)
		r.requestID.v = append(r.requestID.v, q.RequestID)
	}
}

// resourceRows are rows of the resources table.
type resourceRows struct {
	rows
	host, resource, name        col[string]
	used, capacity, utilisation col[float64]
}

func newResourceRows() *resourceRows {
	r := &resourceRows{
		host: col[string]{name: "host"}, resource: col[string]{name: "resource"}, name: col[string]{name: "name"},
		used: col[float64]{name: "used"}, capacity: col[float64]{name: "capacity"}, utilisation: col[float64]{name: "utilisation"},
	}
	r.init("resources", &r.host, &r.resource, &r.name, &r.used, &r.capacity, &r.utilisation)
	return r
}

func (r *resourceRows) add(seq uint64, samples []event.ResourceSample) {
	for i := range samples {
		s := &samples[i]
		r.key(s.Timestamp, seq, i)
		r.host.v = append(r.host.v, s.Host)
		r.resource.v = append(r.resource.v, s.Resource)
		r.name.v = append(r.name.v, s.Name)
		r.used.v = append(r.used.v, s.Used)
		r.capacity.v = append(r.capacity.v, s.Capacity)
		r.utilisation.v = append(r.utilisation.v, s.Utilisation)
	}
}

// healthRows are rows of the health_checks table.
type healthRows struct {
	rows
	component, target, status, details col[string]
	duration                           col[float64]
}

func newHealthRows() *healthRows {
	r := &healthRows{
		component: col[string]{name: "component"}, target: col[string]{name: "target"}, status: col[string]{name: "status"},
		duration: col[float64]{name: "response_time_ms"}, details: col[string]{name: "details"},
	}
	r.init("health_checks", &r.component, &r.target, &r.status, &r.duration, &r.details)
	return r
}

func (r *healthRows) add(seq uint64, results []event.HealthResult) {
	for i := range results {
		h := &results[i]
		r.key(h.Timestamp, seq, i)
		r.component.v = append(r.component.v, h.Component)
		r.target.v = append(r.target.v, h.Target)
		r.status.v = append(r.status.v, h.Status)
		r.duration.v = append(r.duration.v, h.ResponseTimeMS)
		details := string(h.Details)
		if details == "" {
			details = "{}"
		}
		r.details.v = append(r.details.v, details)
	}
}

// batch is the rows of a set of stream messages, per table, ready for one
// insert into each, with the messages to ack once all are committed.
type batch struct {
	msgs  []jetstream.Msg
	seqs  map[uint64]bool // stream sequences of msgs
	first time.Time       // when the first message was added

	// suspect holds the sequences of messages whose rows may already be
	// stored: redelivered, or part of an insert attempt that failed.
	// allSuspect makes every message suspect.
	suspect    map[uint64]bool
	allSuspect bool
	split      bool // a part of a batch the server refused (see subset)

	requests  *requestRows
	resources *resourceRows
	health    *healthRows
}

func newBatch() *batch {
	return &batch{seqs: map[uint64]bool{}, suspect: map[uint64]bool{},
		requests: newRequestRows(), resources: newResourceRows(), health: newHealthRows()}
}

// tables returns the row sets of the batch, one per table.
func (b *batch) tables() []*rows {
	return []*rows{&b.requests.rows, &b.resources.rows, &b.health.rows}
}

// rows is the number of rows in all tables.
func (b *batch) rows() int {
	n := 0
	for _, t := range b.tables() {
		n += t.len()
	}
	return n
}

// addMsg records msg, with stream sequence seq, as part of the batch.
func (b *batch) addMsg(msg jetstream.Msg, seq uint64, redelivered bool) {
	if len(b.msgs) == 0 {
		b.first = time.Now()
	}
	b.msgs = append(b.msgs, msg)
	b.seqs[seq] = true
	if redelivered {
		b.suspect[seq] = true
	}
}

// sequences returns the distinct stream sequences of b's messages, in
// ascending order.
func (b *batch) sequences() []uint64 {
	seqs := make([]uint64, 0, len(b.seqs))
	for seq := range b.seqs {
		seqs = append(seqs, seq)
	}
	slices.Sort(seqs)
	return seqs
}

// subset returns a batch of b's messages whose stream sequence is in
// seqs, with their rows. Every message of the subset is suspect: b was
// tried, and part of it may be stored.
func (b *batch) subset(seqs []uint64) *batch {
	in := make(map[uint64]bool, len(seqs))
	for _, seq := range seqs {
		in[seq] = true
	}
	s := newBatch()
	s.first, s.allSuspect, s.split = b.first, true, true
	for _, m := range b.msgs {
		if meta, err := m.Metadata(); err == nil && in[meta.Sequence.Stream] {
			s.msgs = append(s.msgs, m)
			s.seqs[meta.Sequence.Stream] = true
		}
	}
	dst := s.tables()
	for i, t := range b.tables() {
		dst[i].appendFrom(t, in)
	}
	return s
}

func (b *batch) hasSuspects() bool { return b.allSuspect || len(b.suspect) > 0 }

func (b *batch) isSuspect(seq uint64) bool { return b.allSuspect || b.suspect[seq] }

// Columns returns reqs as the columns of one insert into the requests
// table, as if they came from stream message seq. Benchmarks use it to
// measure the raw insert limit with exactly the aggregator's rows.
func Columns(reqs []event.Request, seq uint64) []chstore.Column {
	r := newRequestRows()
	r.add(seq, reqs)
	return r.columns()
}
