// Package ingest is Pulse's ingest edge: it takes request metrics over HTTP,
// validates them, and answers 202 only once JetStream has persisted them.
package ingest

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/wedsync/pulse/internal/auth"
	"github.com/wedsync/pulse/internal/event"
	"github.com/wedsync/pulse/internal/httpapi"
	"github.com/wedsync/pulse/internal/safeerr"
	"github.com/wedsync/pulse/internal/stream"
)

// Config bounds what one request may carry and says how single events are
// coalesced. The zero value of each field means its default, except
// CoalesceDelay, whose zero turns coalescing off.
type Config struct {
	MaxBodyBytes         int64         // on the wire, compressed or not (413 beyond); default 8 MiB
	MaxDecompressedBytes int64         // after gunzip (413 beyond); default 32 MiB
	MaxEvents            int           // per request (413 beyond); default 10,000
	Retention            time.Duration // older events are rejected; default 30 days
	DefaultService       string        // for events without a service
	PublishTimeout       time.Duration // wait for JetStream's acknowledgement; default 5 s

	// StrictFields rejects events with fields the edge does not know (400
	// "is not a known field"); by default they are ignored, counted and
	// named in the 202 answer.
	StrictFields bool

	// CoalesceDelay is how long a batch of single events waits for more
	// before it is published (group commit); 0 publishes each on its own.
	CoalesceDelay time.Duration
	// Stream names the streams (the edge log in particular) and the
	// duplicate window; its zero fields get stream.Config's defaults.
	Stream stream.Config
}

func (c Config) withDefaults() Config {
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = 8 << 20
	}
	if c.MaxDecompressedBytes == 0 {
		c.MaxDecompressedBytes = 32 << 20
	}
	if c.MaxEvents == 0 {
		c.MaxEvents = 10000
	}
	if c.Retention == 0 {
		c.Retention = 30 * 24 * time.Hour
	}
	if c.DefaultService == "" {
		c.DefaultService = event.DefaultService
	}
	if c.PublishTimeout == 0 {
		c.PublishTimeout = 5 * time.Second
	}
	c.Stream.Defaults()
	return c
}

// Validate reports what is wrong with c once its defaults are applied.
func (c Config) Validate() error {
	c = c.withDefaults()
	switch {
	case c.MaxBodyBytes < 1024 || c.MaxDecompressedBytes < c.MaxBodyBytes:
		return errors.New("ingest body limits: max body at least 1 KiB, decompressed limit at least the body limit")
	case c.MaxEvents < 1:
		return errors.New("ingest max events must be positive")
	case !event.ValidService(c.DefaultService):
		return fmt.Errorf("ingest default service %q is not a valid service name", c.DefaultService)
	case c.PublishTimeout < 0:
		return errors.New("ingest publish timeout must not be negative")
	case c.CoalesceDelay < 0 || c.CoalesceDelay > time.Second:
		return errors.New("ingest coalesce delay must be between 0 and 1s")
	}
	return c.Stream.Validate()
}

// Stats counts what the edge did; safe for concurrent reads.
type Stats struct {
	Accepted    atomic.Uint64 // events persisted
	Rejected    atomic.Uint64 // requests refused for bad input (4xx)
	Unavailable atomic.Uint64 // requests answered 503: not persisted, or not confirmed in time
	Abandoned   atomic.Uint64 // requests whose client went away before the answer
}

// Edge serves the ingest routes. New builds it, Register adds its routes
// and Run must be running while they serve: with coalescing on, single
// events wait until Run has read the edge log.
type Edge struct {
	cfg      Config
	pub      *Publisher
	coalesce *coalescer // nil when coalescing is off
	metrics  *edgeMetrics
	log      zerolog.Logger
	logs     *safeerr.Limiter // 503 causes: one line each every 10 s
	stats    Stats
	now      func() time.Time
}

// New returns an Edge publishing on nc, with defaults applied to cfg; it
// fails when cfg is invalid or a metric cannot be registered on reg (nil
// registers none).
func New(cfg Config, nc *nats.Conn, reg prometheus.Registerer, log zerolog.Logger) (*Edge, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	log = log.With().Str("component", "ingest").Logger()
	pub, err := NewPublisher(nc, cfg.PublishTimeout)
	if err != nil {
		return nil, err
	}
	m, err := newEdgeMetrics(reg)
	if err != nil {
		return nil, err
	}
	e := &Edge{cfg: cfg, pub: pub, metrics: m, log: log, logs: safeerr.NewLimiter(10 * time.Second), now: time.Now}
	if cfg.CoalesceDelay > 0 {
		e.coalesce = newCoalescer(coalesceConfig{
			Delay: cfg.CoalesceDelay, MaxEvents: 1000, MaxBytes: 512 << 10, InFlight: 8,
			Window: cfg.Stream.DuplicateWindow, Timeout: cfg.PublishTimeout, LogStream: cfg.Stream.EdgeLogStream,
		}, pub.js, nc, log)
	}
	return e, nil
}

// Run follows the edge log while coalescing is on, and returns when ctx
// ends.
func (e *Edge) Run(ctx context.Context) error {
	if e.coalesce == nil {
		<-ctx.Done()
		return nil
	}
	return e.coalesce.follow(ctx)
}

// Stats returns the edge's counters.
func (e *Edge) Stats() *Stats { return &e.stats }

// Register adds the ingest routes, for ingest-scoped callers: POST
// /api/admin/system/metrics (request metrics) and POST
// /api/admin/system/resources (resource samples of fleet hosts).
func (e *Edge) Register(r *httpapi.Router) {
	r.Handle(http.MethodPost, "/api/admin/system/metrics", auth.ScopeIngest, e.postMetrics)
	r.Handle(http.MethodPost, "/api/admin/system/resources", auth.ScopeIngest, e.postResources)
}

// statusClientClosed answers a request whose client went away (nginx's
// 499); nobody reads it, but access logs and metrics do.
const statusClientClosed = 499

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func (e *Edge) postMetrics(c echo.Context) error {
	reqs, ignored, err := e.decodeAside(c.Request())
	if err != nil {
		return e.refused(c, err)
	}
	p, _ := httpapi.PrincipalOf(c)
	key := c.Request().Header.Get("Idempotency-Key")
	return e.accept(c, len(reqs), ignored, func(ctx context.Context) error {
		if e.coalesce != nil && len(reqs) == 1 && key == "" {
			return e.publishSingle(ctx, p.Name, reqs[0])
		}
		return e.pub.Publish(ctx, p.Name, reqs, key)
	})
}

func (e *Edge) postResources(c echo.Context) error {
	samples, err := e.decodeSamples(c.Request())
	if err != nil {
		return e.refused(c, err)
	}
	p, _ := httpapi.PrincipalOf(c)
	key := c.Request().Header.Get("Idempotency-Key")
	return e.accept(c, len(samples), event.IgnoredFields{}, func(ctx context.Context) error {
		return e.pub.PublishSamples(ctx, p.Name, samples, key)
	})
}

// publishSingle hands one event to the coalescer and waits for its batch.
func (e *Edge) publishSingle(ctx context.Context, caller string, q event.Request) error {
	if e.pub.nc.Status() != nats.CONNECTED {
		return fmt.Errorf("%w: not connected to NATS", errNotConnected)
	}
	if err := e.coalesce.ready(ctx, e.cfg.PublishTimeout); err != nil {
		return err
	}
	b, retry := e.coalesce.add(caller, q)
	// The batch's outcome is known within about twice the publish timeout
	// (see coalescer.seal); ctx ends sooner only when the client goes.
	if err := e.coalesce.wait(ctx, b, retry); err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return nil
}

// acceptedBody is the 202 answer {"accepted":n}, written without
// reflection: it is most of what the edge sends. When fields were ignored
// it names them: {"accepted":n,"ignored_fields":["a","b"]}.
func acceptedBody(n int, ignored []string) []byte {
	b := strconv.AppendInt([]byte(`{"accepted":`), int64(n), 10)
	if len(ignored) > 0 {
		names, _ := json.Marshal(ignored) // strings never fail
		b = append(append(b, `,"ignored_fields":`...), names...)
	}
	return append(b, '}', '\n')
}

// refused counts and returns a 4xx answer, and logs it: one line per
// status every 10 s of the edge's clock, without the body.
func (e *Edge) refused(c echo.Context, err error) error {
	e.stats.Rejected.Add(1)
	var he *httpapi.Error
	if !errors.As(err, &he) {
		return err
	}
	e.metrics.rejected(he.Status)
	if ok, suppressed := e.logs.Allow("rejected "+strconv.Itoa(he.Status), e.now()); ok {
		p, _ := httpapi.PrincipalOf(c)
		ev := e.log.Info().Int("status", he.Status).Str("error", he.Body.Error).Str("answer", he.Body.Message).
			Str("caller", p.Name).Int("suppressed", suppressed)
		if len(he.Body.Details) > 0 {
			// A detail may quote a key of the body; keep the line short.
			detail := he.Body.Details[0].Error()
			if len(detail) > 200 {
				detail = strings.ToValidUTF8(detail[:200], "") + "…"
			}
			ev = ev.Str("first_detail", detail)
		}
		ev.Msg("request refused (one line per status every 10s; suppressed counts those since the last line)")
	}
	return err
}

// accept runs publish for a request of n validated items, whose ignored
// fields are ignored, and answers it: 202 once they are persisted, 503 +
// Retry-After when they are not (or not confirmed in time), nothing when
// the client went away first.
func (e *Edge) accept(c echo.Context, n int, ignored event.IgnoredFields, publish func(context.Context) error) error {
	start := time.Now()
	ctx := c.Request().Context()
	err := publish(ctx)
	if err == nil {
		e.stats.Accepted.Add(uint64(n))
		e.metrics.accepted(n, ignored.Count, time.Since(start))
		return c.JSONBlob(http.StatusAccepted, acceptedBody(n, ignored.Names))
	}
	if ctx.Err() != nil {
		// Nobody is there to answer; whatever was published stays
		// published, and a retry with the same request_id or
		// Idempotency-Key cannot store it twice.
		e.stats.Abandoned.Add(1)
		e.metrics.abandoned.Inc()
		return httpapi.Errorf(statusClientClosed, "client_closed_request", "the client closed the request")
	}
	reason := unavailableReason(err)
	e.stats.Unavailable.Add(1)
	e.metrics.unavailable(reason)
	if ok, suppressed := e.logs.Allow(reason, time.Now()); ok {
		e.log.Warn().Err(err).Str("reason", reason).Int("suppressed", suppressed).
			Msg("request answered 503 (one line per reason every 10s; suppressed counts those since the last line)")
	}
	if reason == reasonTimeout {
		return httpapi.Unavailable("the event stream did not confirm in time; a retry with the same request_id or Idempotency-Key is stored once", 2*time.Second)
	}
	return httpapi.Unavailable("the event stream is unavailable; retry later", 2*time.Second)
}

func badRequest(field, message string) *httpapi.Error {
	return httpapi.Errorf(http.StatusBadRequest, "invalid_request", "the request is invalid",
		event.FieldError{Field: field, Message: message})
}

// readBody reads, bounds and decompresses the body of r, whose content
// type must be one of types. release hands the buffers back; data is valid
// until then.
func (e *Edge) readBody(r *http.Request, types ...string) (ct string, data []byte, release func(), err error) {
	release = func() {}
	if key := r.Header.Get("Idempotency-Key"); len(key) > 128 {
		return "", nil, release, badRequest("Idempotency-Key", "must be at most 128 characters")
	}
	ct, _, err = mime.ParseMediaType(r.Header.Get(echo.HeaderContentType))
	if err != nil || !slices.Contains(types, ct) {
		return "", nil, release, httpapi.Errorf(http.StatusUnsupportedMediaType, "unsupported_media_type",
			"Content-Type must be "+strings.Join(types, " or "))
	}
	gz := false
	// Content codings are case-insensitive, and x-gzip is gzip (RFC 9110,
	// section 8.4.1).
	switch enc := strings.ToLower(strings.TrimSpace(r.Header.Get(echo.HeaderContentEncoding))); enc {
	case "", "identity":
	case "gzip", "x-gzip":
		gz = true
	default:
		return "", nil, release, httpapi.Errorf(http.StatusUnsupportedMediaType, "unsupported_media_type",
			"Content-Encoding must be gzip or absent")
	}
	if r.ContentLength > e.cfg.MaxBodyBytes {
		return "", nil, release, tooLarge(fmt.Sprintf("the body exceeds %d bytes", e.cfg.MaxBodyBytes))
	}

	raw := bufPool.Get().(*bytes.Buffer)
	raw.Reset()
	bufs := []*bytes.Buffer{raw}
	release = func() {
		for _, b := range bufs {
			putBuf(b)
		}
	}
	if r.ContentLength > 0 {
		raw.Grow(int(r.ContentLength))
	}
	if n, err := raw.ReadFrom(io.LimitReader(r.Body, e.cfg.MaxBodyBytes+1)); err != nil {
		return "", nil, release, badRequest("body", "could not be read")
	} else if n > e.cfg.MaxBodyBytes {
		return "", nil, release, tooLarge(fmt.Sprintf("the body exceeds %d bytes", e.cfg.MaxBodyBytes))
	}
	if !gz {
		return ct, raw.Bytes(), release, nil
	}
	zr, err := gzip.NewReader(bytes.NewReader(raw.Bytes()))
	if err != nil {
		return "", nil, release, badRequest("body", "is not valid gzip")
	}
	body := bufPool.Get().(*bytes.Buffer)
	body.Reset()
	bufs = append(bufs, body)
	n, err := body.ReadFrom(io.LimitReader(zr, e.cfg.MaxDecompressedBytes+1))
	if err != nil {
		return "", nil, release, badRequest("body", "is not valid gzip")
	}
	if n > e.cfg.MaxDecompressedBytes {
		return "", nil, release, tooLarge(fmt.Sprintf("the decompressed body exceeds %d bytes", e.cfg.MaxDecompressedBytes))
	}
	return ct, body.Bytes(), release, nil
}

// decodeAside runs decode on a goroutine of its own. Parsing and
// validating needs more stack than the rest of a request, and Go keeps a
// goroutine's stack at its deepest size while it is busy: done on the
// connection's goroutine, every request waiting for its acknowledgement
// would hold that stack, 10,000 times over at 10,000 connections. The few
// goroutines decoding at any moment hold it instead.
func (e *Edge) decodeAside(r *http.Request) (reqs []event.Request, ignored event.IgnoredFields, err error) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		reqs, ignored, err = e.decode(r)
	}()
	<-done
	return reqs, ignored, err
}

// decode reads and validates a body of request metrics, and says which
// unknown fields it ignored. The requests carry no trace of those fields.
func (e *Edge) decode(r *http.Request) ([]event.Request, event.IgnoredFields, error) {
	var ignored event.IgnoredFields
	ct, data, release, err := e.readBody(r, "application/json", "application/x-ndjson")
	defer release()
	if err != nil {
		return nil, ignored, err
	}
	d := event.Decoder{
		Rules:          event.Rules{Now: e.now(), Retention: e.cfg.Retention},
		DefaultService: e.cfg.DefaultService,
		MaxEvents:      e.cfg.MaxEvents,
		StrictFields:   e.cfg.StrictFields,
		Ignored:        &ignored,
	}
	var reqs []event.Request
	if ct == "application/x-ndjson" {
		reqs, err = d.NDJSON(data)
	} else {
		reqs, err = d.JSON(data)
	}
	return reqs, ignored, e.decodeError(err)
}

// decodeError maps a decoder error to the answer the caller gets.
func (e *Edge) decodeError(err error) error {
	var be *event.BatchError
	switch {
	case err == nil:
		return nil
	case errors.Is(err, event.ErrTooManyEvents):
		return tooLarge(fmt.Sprintf("a request may carry at most %d events", e.cfg.MaxEvents))
	case errors.As(err, &be):
		msg := fmt.Sprintf("the batch was rejected whole: %d invalid field(s)", be.Invalid)
		return httpapi.Errorf(http.StatusBadRequest, "invalid_request", msg, be.Errors...)
	default:
		return badRequest("body", "could not be decoded")
	}
}

// MaxSamples bounds the resource samples of one request.
const MaxSamples = 1000

func (e *Edge) decodeSamples(r *http.Request) ([]event.ResourceSample, error) {
	_, data, release, err := e.readBody(r, "application/json")
	defer release()
	if err != nil {
		return nil, err
	}
	samples, err := event.DecodeResources(data, event.Rules{Now: e.now(), Retention: e.cfg.Retention}, MaxSamples)
	if errors.Is(err, event.ErrTooManyEvents) {
		return nil, tooLarge(fmt.Sprintf("a request may carry at most %d samples", MaxSamples))
	}
	return samples, e.decodeError(err)
}

func tooLarge(msg string) *httpapi.Error {
	return httpapi.Errorf(http.StatusRequestEntityTooLarge, "too_large", msg)
}

// putBuf returns b to the pool unless it grew beyond what is worth keeping.
func putBuf(b *bytes.Buffer) {
	if b.Cap() <= 16<<20 {
		bufPool.Put(b)
	}
}
