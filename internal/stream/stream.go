// Package stream is Pulse's use of NATS JetStream: the subjects, the ingest
// stream and its dead-letter stream, the embedded server that `pulse serve`
// runs when no external NATS is configured, and client connections.
package stream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// Subjects. Everything under pulse.ingest.> is captured by the ingest stream.
const (
	// SubjectIngest is the prefix of all ingest subjects.
	SubjectIngest = "pulse.ingest."
	// SubjectRequests prefixes the JSON request metrics the fleet publishes
	// directly: pulse.ingest.requests.<service>.
	SubjectRequests = "pulse.ingest.requests."
	// SubjectEdgeRequests carries request batches the ingest edge validated,
	// in the event package's batch encoding.
	SubjectEdgeRequests = "pulse.ingest.edge.requests"
	// SubjectResources carries resource samples as JSON (one object or an
	// array): the edge publishes validated samples on
	// pulse.ingest.resources.edge, the fleet may publish its own on
	// pulse.ingest.resources.<host>.
	SubjectResources = "pulse.ingest.resources."
	// SubjectHealth carries health probe results as JSON arrays, published
	// by Pulse's probes: pulse.ingest.health.<component>.
	SubjectHealth = "pulse.ingest.health."
	// SubjectDeadLetter prefixes invalid messages taken off the ingest
	// stream: pulse.deadletter.<original subject without "pulse.">.
	SubjectDeadLetter = "pulse.deadletter."
	// SubjectEdgeLog carries the edge log: every batch of coalesced single
	// events, written before the same batch goes on SubjectEdgeRequests
	// (see ingest's coalescer). It is outside pulse.ingest.>, in a stream of
	// its own.
	SubjectEdgeLog = "pulse.edgelog.requests"

	// HeaderReason on a dead letter says why the message was rejected.
	HeaderReason = "Pulse-Reason"
	// HeaderSubject on a dead letter is the subject it was published on.
	HeaderSubject = "Pulse-Subject"

	// HeaderEncoding names the payload encoding of a message on
	// SubjectEdgeRequests; the aggregator refuses any other.
	HeaderEncoding = "Pulse-Encoding"
	// EncodingBatchV1 is event.AppendBatch's encoding.
	EncodingBatchV1 = "batch-v1"
	// HeaderCaller on an edge log message is the caller scope the batch's
	// request IDs belong to.
	HeaderCaller = "Pulse-Caller"
	// HeaderEdge on an edge log message names the edge process that wrote
	// it.
	HeaderEdge = "Pulse-Edge"
)

// Config describes the ingest streams.
type Config struct {
	IngestStream     string        // default PULSE_INGEST
	DeadLetterStream string        // default PULSE_DEADLETTER
	EdgeLogStream    string        // default PULSE_EDGE_LOG
	MaxBytes         int64         // backlog limit; beyond it publishes fail (discard new)
	MaxAge           time.Duration // unconsumed messages older than this are removed
	Replicas         int           // 1 here, 3 on a production cluster
	DuplicateWindow  time.Duration // publishes with a Nats-Msg-Id seen within it are dropped
}

// Defaults fills zero fields.
func (c *Config) Defaults() {
	if c.IngestStream == "" {
		c.IngestStream = "PULSE_INGEST"
	}
	if c.DeadLetterStream == "" {
		c.DeadLetterStream = "PULSE_DEADLETTER"
	}
	if c.EdgeLogStream == "" {
		c.EdgeLogStream = "PULSE_EDGE_LOG"
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = 8 << 30
	}
	if c.MaxAge == 0 {
		c.MaxAge = 7 * 24 * time.Hour
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.DuplicateWindow == 0 {
		c.DuplicateWindow = 2 * time.Minute
	}
}

// Validate checks c after Defaults.
func (c Config) Validate() error {
	switch {
	case c.MaxBytes < 1<<20:
		return errors.New("stream max bytes must be at least 1 MiB")
	case c.MaxAge < time.Minute:
		return errors.New("stream max age must be at least a minute")
	case c.Replicas < 1 || c.Replicas > 5:
		return errors.New("stream replicas must be between 1 and 5")
	case c.DuplicateWindow <= 0 || c.DuplicateWindow > c.MaxAge:
		return errors.New("duplicate window must be positive and within max age")
	}
	return nil
}

// Ensure creates the ingest and dead-letter streams, or updates them to c.
//
// The ingest stream is a work queue: a message is removed once the
// aggregator acked it, so its bytes are the backlog, and discard-new makes
// a full backlog refuse publishes, which the edge turns into 503.
func Ensure(ctx context.Context, js jetstream.JetStream, c Config) error {
	_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        c.IngestStream,
		Description: "Pulse ingest: request metrics, resource samples and health results awaiting the aggregator",
		Subjects:    []string{SubjectIngest + ">"},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Discard:     jetstream.DiscardNew,
		MaxBytes:    c.MaxBytes,
		MaxAge:      c.MaxAge,
		Replicas:    c.Replicas,
		Duplicates:  c.DuplicateWindow,
		MaxMsgSize:  -1,
	})
	if err != nil {
		return fmt.Errorf("create stream %s: %w", c.IngestStream, err)
	}
	_, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        c.DeadLetterStream,
		Description: "Pulse dead letters: ingest messages that failed validation, with the reason",
		Subjects:    []string{SubjectDeadLetter + ">"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Discard:     jetstream.DiscardOld,
		MaxBytes:    min(c.MaxBytes, 1<<30),
		MaxAge:      c.MaxAge,
		Replicas:    c.Replicas,
	})
	if err != nil {
		return fmt.Errorf("create stream %s: %w", c.DeadLetterStream, err)
	}
	_, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        c.EdgeLogStream,
		Description: "Pulse edge log: batches of coalesced single events, kept for the duplicate window so that any edge can recognise a retry",
		Subjects:    []string{SubjectEdgeLog},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Discard:     jetstream.DiscardNew,
		MaxBytes:    min(c.MaxBytes, 2<<30),
		MaxAge:      c.EdgeLogAge(),
		Replicas:    c.Replicas,
		Duplicates:  c.DuplicateWindow,
		MaxMsgSize:  -1,
	})
	if err != nil {
		return fmt.Errorf("create stream %s: %w", c.EdgeLogStream, err)
	}
	return nil
}

// EdgeLogAge is how long the edge log keeps a batch: the duplicate window,
// plus a minute so that an edge starting up still reads a whole window.
func (c Config) EdgeLogAge() time.Duration { return c.DuplicateWindow + time.Minute }

// Connect dials NATS and keeps reconnecting forever; publishers see errors
// while it is away, nothing blocks.
func Connect(url, name string, log zerolog.Logger) (*nats.Conn, error) {
	log = log.With().Str("component", "nats").Logger()
	nc, err := nats.Connect(url,
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250*time.Millisecond),
		nats.RetryOnFailedConnect(false),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn().Err(err).Msg("disconnected from NATS")
			}
		}),
		nats.ReconnectHandler(func(*nats.Conn) { log.Info().Msg("reconnected to NATS") }),
	)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS: %w", err)
	}
	return nc, nil
}

// Drain drains nc (its subscriptions stop taking messages and finish the
// ones taken, pending publishes and acks are flushed) and returns once it
// is closed. If that takes longer than timeout, or the connection is away
// (reconnecting), it closes nc without draining and says so. A closed nc
// is already drained. nc's closed handler, if any, still runs.
func Drain(nc *nats.Conn, timeout time.Duration) error {
	closed := make(chan struct{})
	prev := nc.ClosedHandler()
	nc.SetClosedHandler(func(c *nats.Conn) {
		if prev != nil {
			prev(c)
		}
		close(closed)
	})
	switch err := nc.Drain(); {
	case errors.Is(err, nats.ErrConnectionClosed):
		return nil
	case err != nil:
		nc.Close()
		return fmt.Errorf("drain NATS connection: %w", err)
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-closed:
		return nil
	case <-t.C:
		nc.Close()
		return fmt.Errorf("drain NATS connection: not done within %s; closed", timeout)
	}
}

// EmbeddedConfig configures the in-process NATS server.
type EmbeddedConfig struct {
	Listen   string // host:port; when the port is taken a free one is used
	StoreDir string // JetStream file store
}

// RunEmbedded starts a NATS server with JetStream in this process and waits
// until it accepts connections. The caller shuts it down with Shutdown and
// WaitForShutdown. If the configured port is taken (say, by a system NATS
// on 4222) it listens on a free port instead and logs which.
func RunEmbedded(c EmbeddedConfig, log zerolog.Logger) (*server.Server, error) {
	host, portStr, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return nil, fmt.Errorf("embedded NATS listen address %q: %w", c.Listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("embedded NATS listen address %q: bad port", c.Listen)
	}
	if port > 0 {
		if l, err := net.Listen("tcp", c.Listen); err != nil {
			log.Warn().Str("wanted", c.Listen).Msg("embedded NATS: port taken, listening on a free port instead")
			port = server.RANDOM_PORT
		} else {
			l.Close()
		}
	}
	opts := &server.Options{
		ServerName:         "pulse-embedded",
		Host:               host,
		Port:               port,
		JetStream:          true,
		StoreDir:           c.StoreDir,
		NoSigs:             true,
		MaxPayload:         8 << 20,
		JetStreamMaxMemory: 256 << 20,
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded NATS: %w", err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return nil, errors.New("embedded NATS did not become ready within 10s")
	}
	return ns, nil
}
