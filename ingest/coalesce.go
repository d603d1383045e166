package ingest

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/rs/zerolog"

	"github.com/wedsync/pulse/internal/event"
	"github.com/wedsync/pulse/internal/stream"
)

// A coalescer is the edge's group commit for single events: the one-event
// requests of a caller that arrive within Delay of each other become one
// batch, one JetStream message, and each request is answered once that
// message is persisted. At thousands of requests a second this turns
// thousands of publishes and acknowledgements into tens.
//
// Coalescing keeps what a message per event gave: a retried event (same
// caller, same request ID) within the stream's duplicate window is stored
// once, whichever edge takes the retry and even after an edge was killed.
// It holds like this:
//   - Every batch has an ID and is published twice, both times with that ID
//     as its Nats-Msg-Id: first to the edge log (a stream that keeps batches
//     for the duplicate window), then to the ingest stream. A request is
//     answered 202 after the second acknowledgement.
//   - Every edge remembers, for the duplicate window, which batch holds each
//     (caller, request ID) it published, and follows the edge log to learn
//     the batches of other edges and of its own earlier runs. Requests wait
//     until the log was read up to its end at start.
//   - An event already held by a batch does not start a new one: the retry
//     waits for that batch, or publishes it again (from memory or from the
//     edge log) to the ingest stream, whose duplicate detection drops it if
//     it is already there. Either way the answer is that batch's.
//
// So a kill between the two publishes loses nothing (the batch is in the
// log, the client had no 202 and retries, the retry re-publishes the whole
// batch), and a kill after them duplicates nothing (the retry finds the
// batch in the log). What it does not cover: a retry that reaches another
// edge before that edge has read the first attempt's log entry (the log is
// followed within milliseconds; clients retry after seconds), and retries
// after the duplicate window, which a message per event did not cover
// either.
type coalescer struct {
	js     jetstream.JetStream
	nc     *nats.Conn
	cfg    coalesceConfig
	edgeID string // this process's name in the edge log
	seq    atomic.Uint64
	seeds  [2]maphash.Seed
	sem    chan struct{} // bounds the batches being published
	caught chan struct{} // closed once the edge log was read to its end
	log    zerolog.Logger
	now    func() time.Time

	mu   sync.Mutex
	open map[string]*batch // per caller, the batch taking events
	win  window
}

type coalesceConfig struct {
	Delay     time.Duration // how long a batch waits for more events
	MaxEvents int           // a batch is sealed at this many events
	MaxBytes  int           // or at this many encoded bytes
	InFlight  int           // batches being published at once
	Window    time.Duration // the stream's duplicate window
	Timeout   time.Duration // for both publishes of a batch
	LogStream string        // the edge log's stream
}

// batch is one coalesced message. Its fields below mu change as it is
// published; done is closed once the first attempt's outcome is known.
type batch struct {
	id      string
	caller  string
	created time.Time
	done    chan struct{}

	// Taking events; guarded by the coalescer's mu.
	reqs   []event.Request
	size   int
	closed bool // full: takes no more events
	sealed bool // taken by a publisher

	mu     sync.Mutex
	data   []byte // the encoding; dropped once stored
	logSeq uint64 // sequence in the edge log, 0 until known
	stored bool   // the ingest stream acknowledged it
	err    error  // the last attempt's failure
}

// key identifies an event: its caller and request ID, hashed to 128 bits
// so that two different events never share a key in practice.
type key [2]uint64

func (c *coalescer) key(caller, id string) key {
	var k key
	for i := range k {
		var h maphash.Hash
		h.SetSeed(c.seeds[i])
		h.WriteString(caller)
		h.WriteByte(0)
		h.WriteString(id)
		k[i] = h.Sum64()
	}
	return k
}

func newCoalescer(cfg coalesceConfig, js jetstream.JetStream, nc *nats.Conn, log zerolog.Logger) *coalescer {
	c := &coalescer{
		js: js, nc: nc, cfg: cfg, edgeID: nuid.Next(),
		seeds:  [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()},
		sem:    make(chan struct{}, cfg.InFlight),
		caught: make(chan struct{}),
		log:    log, now: time.Now,
		open: map[string]*batch{},
	}
	c.win.init(cfg.Window, c.now())
	return c
}

// add takes q for caller and returns the batch that holds it: a new or
// open batch, or the batch of an earlier attempt at the same event.
func (c *coalescer) add(caller string, q event.Request) (b *batch, retry bool) {
	k := c.key(caller, q.RequestID)
	now := c.now()
	c.mu.Lock()
	if b := c.win.get(k, now); b != nil {
		c.mu.Unlock()
		return b, true
	}
	b = c.open[caller]
	if b == nil {
		b = &batch{id: c.edgeID + "." + strconv.FormatUint(c.seq.Add(1), 36), caller: caller, created: now, done: make(chan struct{})}
		c.open[caller] = b
		time.AfterFunc(c.cfg.Delay, func() { c.seal(b) })
	}
	b.reqs = append(b.reqs, q)
	b.size += event.MaxEncodedSize(&q)
	c.win.put(k, b, now)
	full := len(b.reqs) >= c.cfg.MaxEvents || b.size >= c.cfg.MaxBytes
	if full {
		b.closed = true
		delete(c.open, caller)
	}
	c.mu.Unlock()
	if full {
		c.seal(b)
	}
	return b, false
}

// seal publishes b once a publishing slot is free. Until then b keeps
// taking events (unless it is full), so batches grow while the stream is
// slow: group commit. A batch that finds no slot within the publish timeout
// of its creation fails unpublished (a retry of one of its events publishes
// it). Either way done is closed within about twice the publish timeout, so
// waiters need no timer of their own. Only the first call for a batch does
// anything.
func (c *coalescer) seal(b *batch) {
	slot := true
	select {
	case c.sem <- struct{}{}:
	default:
		t := time.NewTimer(time.Until(b.created.Add(c.cfg.Timeout)))
		select {
		case c.sem <- struct{}{}:
		case <-t.C:
			slot = false
		}
		t.Stop()
	}
	c.mu.Lock()
	if b.sealed {
		c.mu.Unlock()
		if slot {
			<-c.sem
		}
		return
	}
	b.sealed, b.closed = true, true
	if c.open[b.caller] == b {
		delete(c.open, b.caller)
	}
	reqs := b.reqs
	b.reqs = nil
	c.mu.Unlock()

	go func() {
		if slot {
			defer func() { <-c.sem }()
		}
		b.mu.Lock()
		b.data = event.AppendBatch(make([]byte, 0, 16+b.size), reqs)
		if slot {
			_ = c.publish(b) // the outcome is in b, for its waiters
		} else {
			b.err = fmt.Errorf("%w: no publishing slot within %s (the stream is slow)", errUnconfirmed, c.cfg.Timeout)
		}
		b.mu.Unlock()
		close(b.done)
	}()
}

// publish writes b to the edge log (unless its place there is known) and
// then to the ingest stream. Both carry b's ID as Nats-Msg-Id, so that
// publishing b again is harmless. b.mu is held.
func (c *coalescer) publish(b *batch) error {
	if b.stored {
		return nil
	}
	if c.nc.Status() != nats.CONNECTED {
		b.err = fmt.Errorf("%w: not connected to NATS", errNotConnected)
		return b.err
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.Timeout)
	defer cancel()
	if b.logSeq == 0 {
		msg := &nats.Msg{Subject: stream.SubjectEdgeLog, Data: b.data, Header: nats.Header{
			jetstream.MsgIDHeader: []string{b.id},
			stream.HeaderEncoding: []string{stream.EncodingBatchV1},
			stream.HeaderCaller:   []string{b.caller},
			stream.HeaderEdge:     []string{c.edgeID},
		}}
		ack, err := c.js.PublishMsg(ctx, msg)
		if err != nil {
			b.err = fmt.Errorf("edge log: %w", err)
			return b.err
		}
		b.logSeq = ack.Sequence
	}
	msg := &nats.Msg{Subject: stream.SubjectEdgeRequests, Data: b.data, Header: nats.Header{
		jetstream.MsgIDHeader: []string{b.id},
		stream.HeaderEncoding: []string{stream.EncodingBatchV1},
	}}
	if _, err := c.js.PublishMsg(ctx, msg); err != nil {
		b.err = err
		return b.err
	}
	b.stored, b.err, b.data = true, nil, nil
	return nil
}

// wait returns once b's first attempt is known, or ctx ends. A retry
// (the event was already held by b) makes sure b is stored, publishing it
// again when its first attempt failed or was another edge's.
func (c *coalescer) wait(ctx context.Context, b *batch, retry bool) error {
	select {
	case <-b.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stored {
		return nil
	}
	if !retry {
		return b.err
	}
	if b.data == nil { // another edge's batch: read it back from the log
		if err := c.readBack(ctx, b); err != nil {
			return err
		}
	}
	return c.publish(b)
}

// readBack loads b's encoding from the edge log. b.mu is held.
func (c *coalescer) readBack(ctx context.Context, b *batch) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	s, err := c.js.Stream(ctx, c.cfg.LogStream)
	if err != nil {
		return fmt.Errorf("read batch %s back from the edge log: %w", b.id, err)
	}
	m, err := s.GetMsg(ctx, b.logSeq)
	switch {
	case err == nil:
	case errors.Is(err, jetstream.ErrMsgNotFound):
		// Gone from the log means older than the duplicate window: the
		// ingest stream no longer recognises it either.
		return fmt.Errorf("%w: batch %s left the edge log", errUnconfirmed, b.id)
	default:
		return fmt.Errorf("read batch %s back from the edge log: %w", b.id, err)
	}
	if m.Header.Get(jetstream.MsgIDHeader) != b.id {
		return fmt.Errorf("%w: edge log sequence %d is not batch %s", errUnconfirmed, b.logSeq, b.id)
	}
	b.data = m.Data
	return nil
}

// follow reads the edge log from one duplicate window ago and keeps
// reading it until ctx ends, remembering the events of every batch another
// edge (or an earlier run of this one) wrote. caught is closed once it read
// what the log held at start.
func (c *coalescer) follow(ctx context.Context) error {
	start := c.now().Add(-c.cfg.Window)
	var cons jetstream.Consumer
	for {
		var err error
		cctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
		cons, err = c.js.OrderedConsumer(cctx, c.cfg.LogStream, jetstream.OrderedConsumerConfig{
			DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &start,
		})
		var info *jetstream.ConsumerInfo
		if err == nil {
			info, err = cons.Info(cctx)
		}
		cancel()
		if err == nil {
			if info.NumPending == 0 {
				close(c.caught)
			}
			break
		}
		c.log.Warn().Err(err).Msg("cannot read the edge log yet; single events wait")
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
	var reqs []event.Request
	caughtUp := false
	cc, err := cons.Consume(func(m jetstream.Msg) {
		md, err := m.Metadata()
		if err != nil {
			return
		}
		if h := m.Headers(); h.Get(stream.HeaderEdge) != c.edgeID {
			reqs, err = event.DecodeBatch(reqs[:0], m.Data())
			if err == nil {
				c.learn(h.Get(jetstream.MsgIDHeader), h.Get(stream.HeaderCaller), md, reqs)
			}
		}
		if !caughtUp && md.NumPending == 0 {
			caughtUp = true
			select {
			case <-c.caught:
			default:
				close(c.caught)
			}
		}
	})
	if err != nil {
		return fmt.Errorf("follow the edge log: %w", err)
	}
	<-ctx.Done()
	cc.Stop()
	<-cc.Closed()
	return nil
}

// learn remembers the events of a batch read from the edge log.
func (c *coalescer) learn(id, caller string, md *jetstream.MsgMetadata, reqs []event.Request) {
	b := &batch{id: id, caller: caller, created: md.Timestamp, done: closedChan, closed: true, sealed: true, logSeq: md.Sequence.Stream}
	now := c.now()
	if now.Sub(b.created) >= c.cfg.Window {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range reqs {
		k := c.key(caller, reqs[i].RequestID)
		if c.win.get(k, now) == nil {
			c.win.put(k, b, b.created)
		}
	}
}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// ready waits until the edge log was read to its end.
func (c *coalescer) ready(ctx context.Context, timeout time.Duration) error {
	select {
	case <-c.caught:
		return nil
	default:
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-c.caught:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return fmt.Errorf("%w: the edge log is still being read", errNotConnected)
	}
}

// window maps event keys to batches for one duplicate window. Keys live
// in generations of a quarter window each; the oldest generation is
// dropped whole, and get ignores batches older than the window, so an
// entry answers for exactly one window and memory holds at most five
// quarters of it.
type window struct {
	span  time.Duration // one generation
	life  time.Duration
	next  time.Time // when the newest generation stops taking keys
	gens  [5]map[key]*batch
	first int // index of the newest generation
}

func (w *window) init(life time.Duration, now time.Time) {
	w.life, w.span = life, life/4
	for i := range w.gens {
		w.gens[i] = map[key]*batch{}
	}
	w.next = now.Add(w.span)
}

func (w *window) get(k key, now time.Time) *batch {
	for i := range w.gens {
		if b := w.gens[(w.first+i)%len(w.gens)][k]; b != nil {
			if now.Sub(b.created) < w.life {
				return b
			}
			return nil
		}
	}
	return nil
}

func (w *window) put(k key, b *batch, now time.Time) {
	for !now.Before(w.next) {
		w.first = (w.first + len(w.gens) - 1) % len(w.gens)
		w.gens[w.first] = map[key]*batch{}
		w.next = w.next.Add(w.span)
		if now.Sub(w.next) > w.life { // idle for long: skip ahead
			w.next = now.Add(w.span)
		}
	}
	w.gens[w.first][k] = b
}

// len is the number of keys held, for tests.
func (w *window) len() int {
	n := 0
	for _, g := range w.gens {
		n += len(g)
	}
	return n
}
