// Package ingest is Pulse's ingest edge: it takes request metrics over HTTP,
// validates them, and answers 202 only once JetStream has persisted them.
package ingest

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/rs/zerolog"

	"github.com/wedsync/pulse/internal/auth"
	"github.com/wedsync/pulse/internal/event"
	"github.com/wedsync/pulse/internal/httpapi"
)

// Config bounds what one request may carry.
type Config struct {
	MaxBodyBytes         int64         // on the wire, compressed or not (413 beyond)
	MaxDecompressedBytes int64         // after gunzip (413 beyond)
	MaxEvents            int           // per request (413 beyond)
	Retention            time.Duration // older events are rejected
	DefaultService       string        // for events without a service
	PublishTimeout       time.Duration // wait for JetStream's acknowledgement
}

// Defaults fills zero fields.
func (c *Config) Defaults() {
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
}

// Validate checks c after Defaults.
func (c Config) Validate() error {
	switch {
	case c.MaxBodyBytes < 1024 || c.MaxDecompressedBytes < c.MaxBodyBytes:
		return errors.New("ingest body limits: max body at least 1 KiB, decompressed limit at least the body limit")
	case c.MaxEvents < 1:
		return errors.New("ingest max events must be positive")
	case !event.ValidService(c.DefaultService):
		return fmt.Errorf("ingest default service %q is not a valid service name", c.DefaultService)
	}
	return nil
}

// Stats counts what the edge did; safe for concurrent reads.
type Stats struct {
	Accepted    atomic.Uint64 // events persisted
	Rejected    atomic.Uint64 // requests refused for bad input (4xx)
	Unavailable atomic.Uint64 // requests refused because the stream was unavailable (503)
}

// Observer learns of accepted and refused ingest requests.
type Observer interface {
	ObservePublish(events int, d time.Duration)
	ObserveRejected(status int)
}

type nopObserver struct{}

func (nopObserver) ObservePublish(int, time.Duration) {}
func (nopObserver) ObserveRejected(int)               {}

// Edge serves the ingest routes.
type Edge struct {
	obs   Observer
	cfg   Config
	pub   *Publisher
	log   zerolog.Logger
	stats Stats
	now   func() time.Time
}

// New returns an Edge publishing through pub.
func New(cfg Config, pub *Publisher, log zerolog.Logger) *Edge {
	cfg.Defaults()
	return &Edge{cfg: cfg, pub: pub, obs: nopObserver{}, log: log.With().Str("component", "ingest").Logger(), now: time.Now}
}

// SetObserver makes o learn of requests. Call it before serving.
func (e *Edge) SetObserver(o Observer) { e.obs = o }

// Stats returns the edge's counters.
func (e *Edge) Stats() *Stats { return &e.stats }

// Register adds the ingest routes, for ingest-scoped callers: POST
// /api/admin/system/metrics (request metrics) and POST
// /api/admin/system/resources (resource samples of fleet hosts).
func (e *Edge) Register(r *httpapi.Router) {
	r.Handle(http.MethodPost, "/api/admin/system/metrics", auth.ScopeIngest, e.postMetrics)
	r.Handle(http.MethodPost, "/api/admin/system/resources", auth.ScopeIngest, e.postResources)
}

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func (e *Edge) postMetrics(c echo.Context) error {
	reqs, err := e.decode(c.Request())
	if err != nil {
		e.stats.Rejected.Add(1)
		var he *httpapi.Error
		if errors.As(err, &he) {
			e.obs.ObserveRejected(he.Status)
		}
		return err
	}
	p, _ := httpapi.PrincipalOf(c)
	start := time.Now()
	err = e.pub.Publish(c.Request().Context(), p.Name, reqs, c.Request().Header.Get("Idempotency-Key"))
	if err != nil {
		e.stats.Unavailable.Add(1)
		e.obs.ObserveRejected(http.StatusServiceUnavailable)
		e.log.Warn().Err(err).Int("events", len(reqs)).Msg("events not persisted; answered 503")
		return httpapi.Unavailable("the event stream is unavailable; retry later", 2*time.Second)
	}
	e.stats.Accepted.Add(uint64(len(reqs)))
	e.obs.ObservePublish(len(reqs), time.Since(start))
	return c.JSON(http.StatusAccepted, map[string]int{"accepted": len(reqs)})
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

// decode reads and validates a body of request metrics.
func (e *Edge) decode(r *http.Request) ([]event.Request, error) {
	ct, data, release, err := e.readBody(r, "application/json", "application/x-ndjson")
	defer release()
	if err != nil {
		return nil, err
	}
	d := event.Decoder{
		Rules:          event.Rules{Now: e.now(), Retention: e.cfg.Retention},
		DefaultService: e.cfg.DefaultService,
		MaxEvents:      e.cfg.MaxEvents,
	}
	var reqs []event.Request
	if ct == "application/x-ndjson" {
		reqs, err = d.NDJSON(data)
	} else {
		reqs, err = d.JSON(data)
	}
	return reqs, e.decodeError(err)
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

func (e *Edge) postResources(c echo.Context) error {
	samples, err := e.decodeSamples(c.Request())
	if err != nil {
		e.stats.Rejected.Add(1)
		var he *httpapi.Error
		if errors.As(err, &he) {
			e.obs.ObserveRejected(he.Status)
		}
		return err
	}
	p, _ := httpapi.PrincipalOf(c)
	if err := e.pub.PublishSamples(c.Request().Context(), p.Name, samples, c.Request().Header.Get("Idempotency-Key")); err != nil {
		e.stats.Unavailable.Add(1)
		e.obs.ObserveRejected(http.StatusServiceUnavailable)
		e.log.Warn().Err(err).Int("samples", len(samples)).Msg("samples not persisted; answered 503")
		return httpapi.Unavailable("the event stream is unavailable; retry later", 2*time.Second)
	}
	return c.JSON(http.StatusAccepted, map[string]int{"accepted": len(samples)})
}

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
