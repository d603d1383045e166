package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/wedsync/pulse/internal/event"
	"github.com/wedsync/pulse/internal/stream"
)

// ErrUnavailable means the events were not persisted: NATS is unreachable,
// the stream is full, or it did not acknowledge in time. Retrying later is
// the right answer; with the same Idempotency-Key, a retry cannot duplicate
// the chunks that did get through.
var ErrUnavailable = errors.New("event stream unavailable")

// errNotConnected means nothing was published: NATS is not reachable.
var errNotConnected = errors.New("not connected to NATS")

// errUnconfirmed means a publish may or may not have been persisted.
var errUnconfirmed = errors.New("not confirmed")

// Publisher puts validated requests on the ingest stream. It is safe for
// concurrent use.
type Publisher struct {
	nc      *nats.Conn
	js      jetstream.JetStream
	timeout time.Duration
}

// NewPublisher returns a Publisher on nc. timeout bounds the wait for
// JetStream's acknowledgements of one Publish call.
func NewPublisher(nc *nats.Conn, timeout time.Duration) (*Publisher, error) {
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096), jetstream.WithPublishAsyncTimeout(timeout))
	if err != nil {
		return nil, fmt.Errorf("jetstream context: %w", err)
	}
	return &Publisher{nc: nc, js: js, timeout: timeout}, nil
}

// Publish writes reqs to the stream for caller (the principal's name) and
// returns once JetStream acknowledged every message: nil means persisted.
// Requests are split into messages that fit the server's maximum payload.
// Each message carries a Nats-Msg-Id, so that the stream drops a repeated
// publish within its duplicate window: "k/<caller>/<idempotencyKey>/<index
// of the message>" when the caller gave a key, "r/<caller>/<request ID>"
// when reqs is a single request, a random ID otherwise. The caller, written
// as its length, ':' and the name, keeps the keys and request IDs of
// different callers apart: one caller cannot drop another's events.
func (p *Publisher) Publish(ctx context.Context, caller string, reqs []event.Request, idempotencyKey string) error {
	if p.nc.Status() != nats.CONNECTED {
		return fmt.Errorf("%w: %w", ErrUnavailable, errNotConnected)
	}
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()

	scope := strconv.Itoa(len(caller)) + ":" + caller + "/"
	limit := int(p.nc.MaxPayload()) - 1024 - len(scope) - len(idempotencyKey) // headers and slack
	var futures []jetstream.PubAckFuture
	for chunk, start := 0, 0; start < len(reqs); chunk++ {
		size, end := 16, start
		for end < len(reqs) && (end == start || size+event.MaxEncodedSize(&reqs[end]) <= limit) {
			size += event.MaxEncodedSize(&reqs[end])
			end++
		}
		msg := &nats.Msg{
			Subject: stream.SubjectEdgeRequests,
			Header:  nats.Header{stream.HeaderEncoding: []string{stream.EncodingBatchV1}},
			Data:    event.AppendBatch(make([]byte, 0, size), reqs[start:end]),
		}
		switch {
		case idempotencyKey != "":
			msg.Header.Set(jetstream.MsgIDHeader, "k/"+scope+idempotencyKey+"/"+strconv.Itoa(chunk))
		case len(reqs) == 1:
			msg.Header.Set(jetstream.MsgIDHeader, "r/"+scope+reqs[0].RequestID)
		default:
			msg.Header.Set(jetstream.MsgIDHeader, nuid.Next())
		}
		// A full window of outstanding publishes is a moment's wait,
		// not a refusal: wait for room until the deadline.
		wait := time.Until(deadline(ctx))
		f, err := p.js.PublishMsgAsync(msg, jetstream.WithStallWait(max(wait, time.Millisecond)))
		if err != nil {
			return fmt.Errorf("%w: publish: %w", ErrUnavailable, err)
		}
		futures = append(futures, f)
		start = end
	}
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return fmt.Errorf("%w: %w", ErrUnavailable, err)
		case <-ctx.Done():
			return fmt.Errorf("%w: %w: no acknowledgement within %s", ErrUnavailable, ctx.Err(), p.timeout)
		}
	}
	return nil
}

// PublishSamples writes resource samples to the stream as one JSON message
// and returns once JetStream acknowledged it. The samples must fit one
// message; the edge bounds their number.
func (p *Publisher) PublishSamples(ctx context.Context, caller string, samples []event.ResourceSample, idempotencyKey string) error {
	if p.nc.Status() != nats.CONNECTED {
		return fmt.Errorf("%w: %w", ErrUnavailable, errNotConnected)
	}
	data, err := json.Marshal(samples)
	if err != nil {
		return fmt.Errorf("encode samples: %w", err)
	}
	msg := &nats.Msg{Subject: stream.SubjectResources + "edge", Data: data, Header: nats.Header{}}
	if idempotencyKey != "" {
		msg.Header.Set(jetstream.MsgIDHeader, "s/"+strconv.Itoa(len(caller))+":"+caller+"/"+idempotencyKey)
	}
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	if _, err := p.js.PublishMsg(ctx, msg); err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return nil
}

func deadline(ctx context.Context) time.Time {
	d, _ := ctx.Deadline()
	return d
}
