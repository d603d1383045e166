// Package aggregator consumes the ingest stream and writes its events into
// ClickHouse in large batches, acking each message only once its rows are
// committed (see Sink for why nothing is lost or stored twice).
package aggregator

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"github.com/wedsync/pulse/internal/event"
	"github.com/wedsync/pulse/internal/stream"
)

// Config tunes batching and the durable consumer. A zero field takes the
// default named beside it: New applies the defaults, then Validate.
type Config struct {
	Stream       string        // ingest stream name; default PULSE_INGEST
	Consumer     string        // durable consumer shared by all replicas; default DefaultConsumer
	MaxRows      int           // flush when a batch holds this many rows; default 50,000
	MaxDelay     time.Duration // or when its oldest message waited this long; default 1s
	AckWait      time.Duration // redelivery after this without ack or heartbeat; default 1m
	Retention    time.Duration // events older than this are dead-lettered; default 30 days
	DrainTimeout time.Duration // how long shutdown may spend flushing; default 30s
	FetchBytes   int           // bytes one fetch may bring per row still wanted (bounds a batch's overshoot); default 128
}

// DefaultConsumer is the durable consumer the aggregator reads through when
// Config.Consumer is empty; the stream metrics and probes watch its lag.
const DefaultConsumer = "aggregator"

// withDefaults returns c with its zero fields set to their defaults.
func (c Config) withDefaults() Config {
	if c.Stream == "" {
		c.Stream = "PULSE_INGEST"
	}
	if c.Consumer == "" {
		c.Consumer = DefaultConsumer
	}
	if c.MaxRows == 0 {
		c.MaxRows = 50000
	}
	if c.MaxDelay == 0 {
		c.MaxDelay = time.Second
	}
	if c.AckWait == 0 {
		c.AckWait = time.Minute
	}
	if c.Retention == 0 {
		c.Retention = 30 * 24 * time.Hour
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = 30 * time.Second
	}
	if c.FetchBytes == 0 {
		c.FetchBytes = 128
	}
	return c
}

// Validate reports whether c is usable, its zero fields taking their
// defaults; New refuses c when it is not.
func (c Config) Validate() error {
	c = c.withDefaults()
	switch {
	case c.MaxRows < 1 || c.MaxRows > 1_000_000:
		return errors.New("aggregator batch rows must be between 1 and 1,000,000")
	case c.MaxDelay < time.Millisecond:
		return errors.New("aggregator batch delay must be at least 1ms")
	case c.AckWait < 5*time.Second:
		return errors.New("aggregator ack wait must be at least 5s")
	}
	return nil
}

// Stats counts what the aggregator did; safe for concurrent reads.
type Stats struct {
	Rows        atomic.Uint64 // rows committed
	Batches     atomic.Uint64 // inserts committed
	DeadLetters atomic.Uint64 // messages moved to the dead-letter subject
	Retries     atomic.Uint64 // failed insert attempts
	Refused     atomic.Uint64 // messages dead-lettered because ClickHouse refused their rows (also in DeadLetters)
	LastInsert  atomic.Int64  // duration of the last committed insert, retries included, ns
}

// Aggregator is the consumer. Run it once.
type Aggregator struct {
	cfg    Config
	js     jetstream.JetStream
	sink   *Sink
	log    zerolog.Logger
	stats  Stats
	events EventObserver

	// Observed once per committed insert; see metrics.go.
	insertSeconds prometheus.Observer
	batchRows     prometheus.Observer
}

// New returns an Aggregator reading cfg.Stream through js and writing to
// store. It applies cfg's defaults and returns Validate's error if cfg is
// still unusable. When reg is not nil, the aggregator registers its metrics
// on it (see metrics.go); registering them twice on one registry fails.
// New does not contact NATS or ClickHouse.
func New(cfg Config, js jetstream.JetStream, store Store, reg prometheus.Registerer, log zerolog.Logger) (*Aggregator, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log = log.With().Str("component", "aggregator").Logger()
	a := &Aggregator{
		cfg:  cfg,
		js:   js,
		sink: NewSink(store, nuid.Next(), log),
		log:  log,
	}
	if err := a.registerMetrics(reg); err != nil {
		return nil, err
	}
	return a, nil
}

// EventObserver sees every request metric as it is decoded, before it is
// committed, so that instant alert rules react within a second. Observe
// must not block and must not keep reqs, which the aggregator reuses. A
// redelivered message is not observed again.
type EventObserver interface {
	Observe(reqs []event.Request)
}

// SetEventObserver makes o see decoded requests. Call it before Run.
func (a *Aggregator) SetEventObserver(o EventObserver) { a.events = o }

// Stats returns the aggregator's counters.
func (a *Aggregator) Stats() *Stats { return &a.stats }

// Skipped counts rows found already stored on redelivery.
func (a *Aggregator) Skipped() uint64 { return a.sink.Skipped.Load() }

// Run consumes until ctx is done, then stops fetching, flushes what it
// holds, acks it and returns. It returns early only if the consumer cannot
// be created.
func (a *Aggregator) Run(ctx context.Context) error {
	cons, err := a.js.CreateOrUpdateConsumer(ctx, a.cfg.Stream, jetstream.ConsumerConfig{
		Durable:       a.cfg.Consumer,
		Description:   "Pulse aggregator: ingest events into ClickHouse",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       a.cfg.AckWait,
		MaxDeliver:    -1,
		MaxAckPending: 4*a.cfg.MaxRows + 1000,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return fmt.Errorf("create consumer %s: %w", a.cfg.Consumer, err)
	}
	// Unbuffered: a full batch stays with handOver, which heartbeats its
	// messages, until the writer takes it and heartbeats them itself. A
	// buffered batch would wait unheartbeated behind a slow insert, and
	// past AckWait JetStream would hand its messages to another
	// aggregator while this one still meant to insert them.
	full := make(chan *batch)
	var g errgroup.Group
	g.Go(func() error {
		defer close(full)
		a.fetch(ctx, cons, full)
		return nil
	})
	g.Go(func() error {
		for b := range full {
			a.flush(ctx, b)
		}
		return nil
	})
	return g.Wait()
}

// fetch fills batches from the consumer and hands each full one to out.
// When ctx ends it hands over what it holds and returns.
func (a *Aggregator) fetch(ctx context.Context, cons jetstream.Consumer, out chan<- *batch) {
	b := newBatch()
	var reqs []event.Request
	for ctx.Err() == nil {
		wait := time.Second
		if b.rows() > 0 {
			wait = max(a.cfg.MaxDelay-time.Since(b.first), 10*time.Millisecond)
		}
		// Fetch by bytes, not messages: a message can hold one event or
		// thousands, and every fetched message joins this batch. The
		// budget always fits the largest message the server accepts, or
		// such a message could never be fetched.
		budget := max(int(a.js.Conn().MaxPayload())+64<<10, (a.cfg.MaxRows-b.rows())*a.cfg.FetchBytes)
		msgs, err := cons.FetchBytes(budget, jetstream.FetchMaxWait(wait))
		if err != nil {
			a.log.Warn().Err(err).Msg("fetch failed; retrying")
			sleep(ctx, time.Second)
			continue
		}
		for msg := range msgs.Messages() {
			reqs = a.accept(b, msg, reqs[:0])
		}
		if err := msgs.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && ctx.Err() == nil {
			a.log.Debug().Err(err).Msg("fetch ended early")
		}
		if b.rows() >= a.cfg.MaxRows || len(b.msgs) > 0 && time.Since(b.first) >= a.cfg.MaxDelay {
			if !a.handOver(ctx, b, out) {
				return
			}
			b = newBatch()
		}
	}
	if len(b.msgs) > 0 {
		out <- b
	}
}

// handOver sends b to out, heartbeating its messages while out is busy so
// that JetStream does not redeliver them meanwhile. It reports false if ctx
// ended first; the caller then still owns b.
func (a *Aggregator) handOver(ctx context.Context, b *batch, out chan<- *batch) bool {
	select {
	case out <- b:
		return true
	default:
	}
	t := time.NewTicker(a.cfg.AckWait / 4)
	defer t.Stop()
	for {
		select {
		case out <- b:
			return true
		case <-t.C:
			inProgress(b.msgs)
		case <-ctx.Done():
			out <- b // the writer drains after ctx ends, so this returns
			return false
		}
	}
}

// accept decodes msg into b, or dead-letters it.
func (a *Aggregator) accept(b *batch, msg jetstream.Msg, scratch []event.Request) []event.Request {
	meta, err := msg.Metadata()
	if err != nil {
		a.deadLetter(msg, "message has no JetStream metadata")
		return scratch
	}
	seq := meta.Sequence.Stream
	if b.seqs[seq] {
		// The same message again, while its first copy waits in this batch.
		b.msgs = append(b.msgs, msg)
		return scratch
	}
	subject := msg.Subject()
	switch {
	case strings.HasPrefix(subject, stream.SubjectResources):
		// Timestamps default to the message's and must lie within the
		// retention before it, so every one can be stored.
		samples, err := event.DecodeResources(msg.Data(), event.Rules{Now: meta.Timestamp, Retention: a.cfg.Retention}, maxEventsPerMessage)
		if err != nil {
			a.deadLetter(msg, err.Error())
			return scratch
		}
		b.addMsg(msg, seq, meta.NumDelivered > 1)
		b.resources.add(seq, samples)
	case strings.HasPrefix(subject, stream.SubjectHealth):
		results, err := event.DecodeHealth(msg.Data(), maxEventsPerMessage)
		if err != nil {
			a.deadLetter(msg, err.Error())
			return scratch
		}
		b.addMsg(msg, seq, meta.NumDelivered > 1)
		b.health.add(seq, results)
	default:
		reqs, err := a.decodeRequests(msg, meta, scratch)
		if err != nil {
			a.deadLetter(msg, err.Error())
			return reqs
		}
		b.addMsg(msg, seq, meta.NumDelivered > 1)
		b.requests.add(seq, reqs)
		if a.events != nil && meta.NumDelivered == 1 {
			a.events.Observe(reqs)
		}
		return reqs
	}
	return scratch
}

// maxEventsPerMessage bounds the events one stream message may carry.
const maxEventsPerMessage = 100000

// decodeRequests turns a request-metrics message into requests. Defaults
// that would otherwise come from the clock (timestamp, request ID) come
// from the message, so that decoding it again gives the same rows.
func (a *Aggregator) decodeRequests(msg jetstream.Msg, meta *jetstream.MsgMetadata, dst []event.Request) ([]event.Request, error) {
	subject := msg.Subject()
	switch {
	case subject == stream.SubjectEdgeRequests:
		if enc := msg.Headers().Get(stream.HeaderEncoding); enc != stream.EncodingBatchV1 {
			return dst, fmt.Errorf("unknown encoding %q", enc)
		}
		reqs, err := event.DecodeBatch(dst, msg.Data())
		if err != nil {
			return reqs, err
		}
		for i := range reqs {
			if !plausible(&reqs[i]) {
				return reqs, fmt.Errorf("event %d: implausible values in an edge batch", i)
			}
		}
		return reqs, nil
	case strings.HasPrefix(subject, stream.SubjectRequests):
		service := strings.TrimPrefix(subject, stream.SubjectRequests)
		if !event.ValidService(service) {
			return dst, fmt.Errorf("subject %q: the last token must be a service name", subject)
		}
		d := event.Decoder{
			Rules:          event.Rules{Now: meta.Timestamp, Retention: a.cfg.Retention},
			DefaultService: service,
			MaxEvents:      maxEventsPerMessage,
			RequestID: func(i int) string {
				return fmt.Sprintf("nats-%d-%d", meta.Sequence.Stream, i)
			},
		}
		reqs, err := d.JSON(msg.Data())
		if err != nil {
			return dst, err
		}
		return append(dst, reqs...), nil
	default:
		return dst, fmt.Errorf("no event kind is published on subject %q", subject)
	}
}

// The DateTime range ClickHouse can store; a row outside it would fail its
// whole batch again and again.
var (
	minTime = time.Unix(0, 0)
	maxTime = time.Unix(1<<32-1, 0)
)

// plausible is the cheap check of events the edge already validated: what
// ClickHouse would refuse, or the queries would misread, never reaches an
// insert.
func plausible(q *event.Request) bool {
	return q.StatusCode >= 100 && q.StatusCode <= 599 && q.ResponseTimeMS >= 0 &&
		q.ResponseTimeMS <= event.MaxResponseTimeMS && q.Endpoint != "" && event.ValidService(q.Service) &&
		!q.Timestamp.Before(minTime) && !q.Timestamp.After(maxTime)
}

// deadLetter republishes msg with the reason on the dead-letter subject and
// terminates it. If the dead letter cannot be persisted, msg is left unacked
// and comes back later: nothing is dropped silently. It reports whether msg
// was dead-lettered.
func (a *Aggregator) deadLetter(msg jetstream.Msg, reason string) bool {
	dl := &nats.Msg{
		Subject: stream.SubjectDeadLetter + strings.TrimPrefix(msg.Subject(), "pulse."),
		Header:  nats.Header{},
		Data:    msg.Data(),
	}
	dl.Header.Set(stream.HeaderReason, truncate(reason, 1024))
	dl.Header.Set(stream.HeaderSubject, msg.Subject())
	if meta, err := msg.Metadata(); err == nil {
		dl.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("dl-%d", meta.Sequence.Stream))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := a.js.PublishMsg(ctx, dl); err != nil {
		a.log.Warn().Err(err).Msg("dead letter not persisted; message will be redelivered")
		_ = msg.NakWithDelay(5 * time.Second)
		return false
	}
	a.stats.DeadLetters.Add(1)
	a.log.Warn().Str("subject", msg.Subject()).Str("reason", truncate(reason, 200)).Msg("message dead-lettered")
	_ = msg.Term()
	return true
}

// flush commits b and acks its messages. An insert that fails for a
// retryable reason (see permanent) is retried with backoff, the messages
// heartbeating meanwhile, until it succeeds or, after ctx ended, the drain
// timeout passes; then the messages stay unacked and JetStream redelivers
// them. An insert the server refuses for its rows is split until the
// messages it refuses are alone; those are dead-lettered and the rest
// committed (see commit).
func (a *Aggregator) flush(ctx context.Context, b *batch) {
	if len(b.msgs) == 0 {
		return
	}
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stop := context.AfterFunc(ctx, func() {
		time.AfterFunc(a.cfg.DrainTimeout, cancel)
	})
	defer stop()
	hb := heartbeat(b.msgs, a.cfg.AckWait/4)
	defer hb()
	a.commit(wctx, b)
}

// commit writes b and acks its messages, retrying retryable failures with
// backoff. When the server refuses b's rows (a permanent failure), commit
// bisects: it commits each half of b's messages the same way, so that a
// refused message ends up alone in a batch, where it is dead-lettered with
// the server's reason. Messages of a half that was committed are acked at
// once; the sink's check of stored keys keeps retried halves from storing
// a row twice (the halves are all suspect). commit reports false when it
// stopped because ctx ended; what it did not ack is then redelivered.
func (a *Aggregator) commit(ctx context.Context, b *batch) bool {
	backoff := 100 * time.Millisecond
	start := time.Now()
	for attempt := 1; ; attempt++ {
		err := a.sink.write(ctx, b)
		if err == nil {
			d := time.Since(start)
			a.stats.LastInsert.Store(int64(d))
			a.insertSeconds.Observe(d.Seconds())
			a.batchRows.Observe(float64(b.rows()))
			a.stats.Rows.Add(uint64(b.rows()))
			a.stats.Batches.Add(1)
			for _, m := range b.msgs {
				_ = m.Ack()
			}
			return true
		}
		a.stats.Retries.Add(1)
		b.allSuspect = true
		if ctx.Err() != nil {
			a.log.Error().Err(err).Int("messages", len(b.msgs)).Msg("shutting down with an uncommitted batch; it will be redelivered")
			return false
		}
		if permanent(err) {
			return a.isolate(ctx, b, err)
		}
		a.log.Warn().Err(err).Int("attempt", attempt).Int("rows", b.rows()).Dur("backoff", backoff).Msg("insert failed; retrying")
		sleep(ctx, backoff)
		backoff = min(backoff*2, 5*time.Second)
	}
}

// heartbeat tells JetStream every interval that msgs are still being
// worked on, until the returned stop is called.
func heartbeat(msgs []jetstream.Msg, every time.Duration) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				inProgress(msgs)
			}
		}
	}()
	return func() { close(done); <-finished }
}

func inProgress(msgs []jetstream.Msg) {
	for _, m := range msgs {
		_ = m.InProgress()
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
