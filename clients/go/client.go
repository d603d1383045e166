// Package pulseclient reports a Go service's requests to Pulse: metrics are
// batched in memory (500 events or 1 s), sent as gzipped NDJSON with one
// Idempotency-Key per batch, retried with exponential backoff and jitter on
// network errors, timeouts, 429 and 5xx (honouring Retry-After), and held
// in a bounded buffer that drops the oldest when Pulse stays away.
//
// Record never blocks on the network and never fails the caller; a metric
// Pulse would refuse is dropped, counted and reported once, instead of
// making Pulse refuse its whole batch. Middleware records every request an
// http.Handler serves.
package pulseclient

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

// IngestPath is Pulse's ingest route; a Config.URL naming only Pulse's
// origin gets it appended.
const IngestPath = "/api/admin/system/metrics"

// Config configures a Client. Zero fields get the defaults New states.
type Config struct {
	URL     string // Pulse's base URL (http://pulse:7480) or the full ingest URL; required
	Token   string // an ingest-scoped bearer token; required
	Service string // this service's name; metrics may override it; required

	BatchSize      int           // events per request; default 500, at most 10,000
	FlushInterval  time.Duration // a partial batch waits at most this long; default 1 s
	MaxBuffer      int           // events held, queued and in flight; default 20,000
	Concurrency    int           // batches in flight; default 2
	RequestTimeout time.Duration // one attempt; default 10 s
	MinBackoff     time.Duration // first retry delay, doubled per attempt; default 100 ms
	MaxBackoff     time.Duration // largest retry delay (Retry-After may ask up to 5 min); default 30 s
	Retention      time.Duration // Pulse's raw retention: older metrics are dropped; default 30 days
	DisableGzip    bool
	HTTPClient     *http.Client // default: a client of its own with keep-alive
}

func (c Config) withDefaults() Config {
	if c.BatchSize == 0 {
		c.BatchSize = 500
	}
	if c.FlushInterval == 0 {
		c.FlushInterval = time.Second
	}
	if c.MaxBuffer == 0 {
		c.MaxBuffer = 20000
	}
	if c.Concurrency == 0 {
		c.Concurrency = 2
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = 10 * time.Second
	}
	if c.MinBackoff == 0 {
		c.MinBackoff = 100 * time.Millisecond
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = 30 * time.Second
	}
	if c.Retention == 0 {
		c.Retention = 30 * 24 * time.Hour
	}
	if c.HTTPClient == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = 16
		c.HTTPClient = &http.Client{Transport: t}
	}
	return c
}

// Validate reports what is wrong with c once its defaults are applied.
func (c Config) Validate() error {
	c = c.withDefaults()
	u, err := url.Parse(c.URL)
	switch {
	case c.URL == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return errors.New("pulse client: url must be an http or https URL")
	case c.Token == "":
		return errors.New("pulse client: token is required")
	case !validService(strings.ToLower(c.Service)):
		return errors.New("pulse client: service must be 1-64 characters of a-z, 0-9, '_' or '-', starting with a letter or digit")
	case c.BatchSize < 1 || c.BatchSize > 10000:
		return errors.New("pulse client: batch size must be 1-10000")
	case c.MaxBuffer < c.BatchSize:
		return errors.New("pulse client: max buffer must be at least the batch size")
	case c.Concurrency < 1 || c.FlushInterval < 0 || c.RequestTimeout < 0 || c.MinBackoff < 0 || c.MaxBackoff < c.MinBackoff:
		return errors.New("pulse client: concurrency must be positive, durations not negative, max backoff at least min backoff")
	}
	return nil
}

// Stats are the client's counters: Recorded = Sent + Dropped() + Failed +
// Buffered + InFlight.
type Stats struct {
	Recorded        uint64 // metrics given to Record
	Sent            uint64 // events Pulse accepted (202)
	Retried         uint64 // attempts retried (network error, timeout, 429, 5xx)
	DroppedInvalid  uint64 // metrics Pulse would refuse
	DroppedOverflow uint64 // oldest events dropped from a full buffer
	DroppedClosed   uint64 // recorded after Shutdown
	Failed          uint64 // events Pulse refused (4xx other than 429), or unconfirmed at the shutdown deadline
	Buffered        int    // events waiting for a batch
	InFlight        int    // events in batches being sent or retried
	LastError       string // the last delivery error, cleared by the next success
}

// Dropped is the number of events the client dropped itself.
func (s Stats) Dropped() uint64 { return s.DroppedInvalid + s.DroppedOverflow + s.DroppedClosed }

// Client batches metrics and ships them to Pulse. It is safe for concurrent
// use. New starts its flush timer goroutine and each batch is sent by a
// goroutine of its own; Shutdown stops and waits for all of them.
type Client struct {
	cfg       Config
	endpoint  string
	keyPrefix string
	log       zerolog.Logger

	mu             sync.Mutex
	ring           []Metric
	head, n        int
	enqueued       uint64 // events ever queued: the sequence number of the next
	forceThrough   uint64 // events queued before this are sent without waiting for a full batch
	due            bool   // the flush timer fired
	inflight       map[*batch]struct{}
	inflightEvents int
	batchSeq       uint64
	closed         bool
	changed        chan struct{} // closed and replaced when a batch settles
	reported       map[string]bool
	failing        bool
	lastErr        string

	recorded, sent, retried, droppedInvalid, droppedOverflow, droppedClosed, failed atomic.Uint64

	abortCtx context.Context // cancelled at the shutdown deadline
	abort    context.CancelFunc
	stop     chan struct{}
	wg       sync.WaitGroup
	shutOnce sync.Once
	shutRes  Stats
}

type batch struct {
	events   []Metric
	key      string
	firstSeq uint64
}

// New returns a running client. It fails only for an invalid cfg.
func New(cfg Config, log zerolog.Logger) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	cfg.Service = strings.ToLower(cfg.Service)
	u, _ := url.Parse(cfg.URL)
	if u.Path == "" || u.Path == "/" {
		u.Path = IngestPath
	}
	var id [8]byte
	_, _ = rand.Read(id[:])
	ctx, cancel := context.WithCancel(context.Background())
	c := &Client{
		cfg: cfg, endpoint: u.String(), keyPrefix: hex.EncodeToString(id[:]),
		log:  log.With().Str("component", "pulseclient").Logger(),
		ring: make([]Metric, cfg.MaxBuffer), inflight: map[*batch]struct{}{},
		changed: make(chan struct{}), reported: map[string]bool{},
		abortCtx: ctx, abort: cancel, stop: make(chan struct{}),
	}
	c.wg.Add(1)
	go c.tick()
	return c, nil
}

// Record queues m for sending and returns at once. An invalid m is dropped
// (the reason is logged once per kind); when the buffer is full the oldest
// queued event is dropped. Record after Shutdown drops m.
func (c *Client) Record(m Metric) {
	c.recorded.Add(1)
	now := time.Now()
	if m.Timestamp.IsZero() {
		m.Timestamp = now
	}
	if m.Service == "" {
		m.Service = c.cfg.Service
	}
	if reason := m.check(now, c.cfg.Retention); reason != "" {
		c.droppedInvalid.Add(1)
		c.once("invalid:"+reason, zerolog.WarnLevel, "a metric Pulse would refuse was dropped", reason)
		return
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		c.droppedClosed.Add(1)
		return
	}
	if c.n+c.inflightEvents >= len(c.ring) {
		c.droppedOverflow.Add(1)
		if c.n == 0 {
			c.mu.Unlock()
			return
		}
		c.ring[c.head] = Metric{}
		c.head = (c.head + 1) % len(c.ring)
		c.n--
		c.onceLocked("overflow", zerolog.WarnLevel, "the buffer is full: dropping the oldest metrics (counted in Stats.DroppedOverflow)", "")
	}
	c.ring[(c.head+c.n)%len(c.ring)] = m
	c.n++
	c.enqueued++
	if c.n >= c.cfg.BatchSize {
		c.pumpLocked()
	}
	c.mu.Unlock()
}

// Stats returns the counters.
func (c *Client) Stats() Stats {
	c.mu.Lock()
	s := Stats{Buffered: c.n, InFlight: c.inflightEvents, LastError: c.lastErr}
	c.mu.Unlock()
	s.Recorded, s.Sent, s.Retried = c.recorded.Load(), c.sent.Load(), c.retried.Load()
	s.DroppedInvalid, s.DroppedOverflow, s.DroppedClosed = c.droppedInvalid.Load(), c.droppedOverflow.Load(), c.droppedClosed.Load()
	s.Failed = c.failed.Load()
	return s
}

// Flush sends every event recorded before the call and returns once Pulse
// accepted or refused them, or ctx ends (then with ctx's error).
func (c *Client) Flush(ctx context.Context) error {
	c.mu.Lock()
	target := c.enqueued
	c.forceThrough = max(c.forceThrough, target)
	c.pumpLocked()
	for {
		pending := c.enqueued-uint64(c.n) < target
		for b := range c.inflight {
			if b.firstSeq < target {
				pending = true
			}
		}
		if !pending {
			c.mu.Unlock()
			return nil
		}
		ch := c.changed
		c.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("flush metrics to pulse: %w", ctx.Err())
		}
		c.mu.Lock()
	}
}

// Shutdown stops the client: it sends what is buffered and waits until
// Pulse confirmed it or ctx ends; then it abandons what is left (counted as
// Failed), waits for its goroutines and returns the final counters. It is
// safe to call more than once; later calls return the first result.
func (c *Client) Shutdown(ctx context.Context) Stats {
	c.shutOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		c.mu.Unlock()
		close(c.stop)
		if err := c.Flush(ctx); err != nil {
			c.abort()
			c.wg.Wait()
			c.mu.Lock()
			left := c.n
			for c.n > 0 {
				c.ring[c.head] = Metric{}
				c.head = (c.head + 1) % len(c.ring)
				c.n--
			}
			c.mu.Unlock()
			c.failed.Add(uint64(left))
			c.log.Error().Uint64("failed", c.failed.Load()).Msg("shutdown deadline passed: metrics not confirmed by Pulse are counted as failed")
		}
		c.abort()
		c.wg.Wait()
		c.shutRes = c.Stats()
	})
	return c.shutRes
}

func (c *Client) tick() {
	defer c.wg.Done()
	t := time.NewTicker(c.cfg.FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
			c.mu.Lock()
			if c.n > 0 {
				c.due = true
				c.pumpLocked()
			}
			c.mu.Unlock()
		}
	}
}

// pumpLocked cuts batches while a sending slot is free; c.mu is held.
func (c *Client) pumpLocked() {
	for len(c.inflight) < c.cfg.Concurrency && c.n > 0 && c.abortCtx.Err() == nil {
		headSeq := c.enqueued - uint64(c.n)
		if c.n < c.cfg.BatchSize && !c.due && headSeq >= c.forceThrough && !c.closed {
			return
		}
		k := min(c.n, c.cfg.BatchSize)
		events := make([]Metric, k)
		for i := range events {
			events[i] = c.ring[c.head]
			c.ring[c.head] = Metric{}
			c.head = (c.head + 1) % len(c.ring)
		}
		c.n -= k
		if c.n == 0 {
			c.due = false
		}
		c.batchSeq++
		c.startLocked(&batch{events: events, key: c.keyPrefix + "-" + strconv.FormatUint(c.batchSeq, 10), firstSeq: headSeq})
	}
}

func (c *Client) startLocked(b *batch) {
	c.inflight[b] = struct{}{}
	c.inflightEvents += len(b.events)
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.deliver(b)
		c.mu.Lock()
		delete(c.inflight, b)
		c.inflightEvents -= len(b.events)
		close(c.changed)
		c.changed = make(chan struct{})
		c.pumpLocked()
		c.mu.Unlock()
	}()
}

type outcome int

const (
	outSent outcome = iota
	outRetry
	outSplit
	outRefused
)

// deliver sends b until Pulse accepts or refuses it, or the client aborts.
func (c *Client) deliver(b *batch) {
	body, err := c.encode(b.events)
	if err != nil {
		c.failed.Add(uint64(len(b.events)))
		c.once("encode", zerolog.ErrorLevel, "encoding a batch failed", err.Error())
		return
	}
	for attempt := 0; ; attempt++ {
		if c.abortCtx.Err() != nil {
			c.failed.Add(uint64(len(b.events)))
			return
		}
		out, reason, wait := c.attempt(b, body)
		if out != outSent && c.abortCtx.Err() != nil {
			c.failed.Add(uint64(len(b.events)))
			return
		}
		switch out {
		case outSent:
			c.sent.Add(uint64(len(b.events)))
			c.mu.Lock()
			if c.failing {
				c.failing = false
				clear(c.reported)
				c.log.Info().Str("last_error", c.lastErr).Msg("Pulse accepts metrics again")
			}
			c.lastErr = ""
			c.mu.Unlock()
			return
		case outSplit:
			// 413: the halves go as batches of their own, with keys derived
			// from this one, so that their retries stay deduplicated too.
			half := (len(b.events) + 1) / 2
			c.mu.Lock()
			c.startLocked(&batch{events: b.events[:half], key: b.key + "a", firstSeq: b.firstSeq})
			c.startLocked(&batch{events: b.events[half:], key: b.key + "b", firstSeq: b.firstSeq + uint64(half)})
			c.mu.Unlock()
			return
		case outRefused:
			c.failed.Add(uint64(len(b.events)))
			c.mu.Lock()
			c.lastErr = reason
			c.mu.Unlock()
			c.once("refused:"+reason[:min(len(reason), 40)], zerolog.ErrorLevel, "Pulse refused a batch", reason)
			return
		case outRetry:
			c.retried.Add(1)
			c.mu.Lock()
			c.lastErr = reason
			first := !c.failing
			c.failing = true
			c.mu.Unlock()
			if first {
				c.log.Warn().Str("reason", reason).Str("url", c.origin()).Msg("cannot deliver to Pulse, retrying with backoff")
			}
			base := float64(c.cfg.MinBackoff) * math.Pow(2, float64(min(attempt, 30)))
			base = min(base, float64(c.cfg.MaxBackoff))
			d := time.Duration(base/2 + mrand.Float64()*base/2)
			d = max(d, min(wait, 5*time.Minute))
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-c.abortCtx.Done():
				t.Stop()
			}
		}
	}
}

var gzipPool = sync.Pool{New: func() any { w, _ := gzip.NewWriterLevel(io.Discard, gzip.BestSpeed); return w }}

func (c *Client) encode(events []Metric) ([]byte, error) {
	var raw bytes.Buffer
	enc := json.NewEncoder(&raw)
	for i := range events {
		if err := enc.Encode(events[i].wire()); err != nil {
			return nil, fmt.Errorf("encode metric: %w", err)
		}
	}
	if c.cfg.DisableGzip {
		return raw.Bytes(), nil
	}
	var out bytes.Buffer
	zw := gzipPool.Get().(*gzip.Writer)
	defer gzipPool.Put(zw)
	zw.Reset(&out)
	if _, err := zw.Write(raw.Bytes()); err != nil {
		return nil, fmt.Errorf("gzip batch: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("gzip batch: %w", err)
	}
	return out.Bytes(), nil
}

// errorBody is Pulse's error answer.
type errorBody struct {
	Message string            `json:"message"`
	Details []json.RawMessage `json:"details"`
}

func (c *Client) attempt(b *batch, body []byte) (outcome, string, time.Duration) {
	ctx, cancel := context.WithTimeout(c.abortCtx, c.cfg.RequestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.endpoint, bytes.NewReader(body))
	if err != nil {
		return outRefused, fmt.Sprintf("build request: %v", err), 0
	}
	req.Header.Set("Content-Type", "application/x-ndjson")
	req.Header.Set("Authorization", "Bearer "+c.cfg.Token)
	req.Header.Set("Idempotency-Key", b.key)
	if !c.cfg.DisableGzip {
		req.Header.Set("Content-Encoding", "gzip")
	}
	res, err := c.cfg.HTTPClient.Do(req)
	if err != nil {
		why := err.Error()
		if errors.Is(err, context.DeadlineExceeded) {
			why = fmt.Sprintf("no answer within %s", c.cfg.RequestTimeout)
		}
		return outRetry, "request to Pulse failed: " + why, 0
	}
	data, _ := io.ReadAll(io.LimitReader(res.Body, 64<<10))
	res.Body.Close()
	if res.StatusCode == http.StatusAccepted || res.StatusCode == http.StatusOK {
		return outSent, "", 0
	}
	var eb errorBody
	_ = json.Unmarshal(data, &eb)
	said := ""
	if eb.Message != "" {
		said = ": " + eb.Message
	}
	switch s := res.StatusCode; {
	case s == http.StatusRequestTimeout || s == http.StatusTooManyRequests || s >= 500:
		return outRetry, fmt.Sprintf("Pulse answered %d%s", s, said), retryAfter(res.Header.Get("Retry-After"), time.Now())
	case s == http.StatusRequestEntityTooLarge && len(b.events) > 1:
		return outSplit, "", 0
	case s == http.StatusUnauthorized:
		return outRefused, "Pulse refused the token (401): check the client's ingest token", 0
	case s == http.StatusForbidden:
		return outRefused, "Pulse refused the token (403): it is not an ingest-scoped token", 0
	case s == http.StatusNotFound || s == http.StatusMethodNotAllowed:
		return outRefused, fmt.Sprintf("Pulse answered %d at %s%s: check the client's url", s, c.origin(), IngestPath), 0
	default:
		details := ""
		if len(eb.Details) > 0 {
			d, _ := json.Marshal(eb.Details)
			details = " " + string(d)
		}
		return outRefused, fmt.Sprintf("Pulse refused a batch of %d metrics (%d)%s%s", len(b.events), s, said, details), 0
	}
}

// retryAfter reads a Retry-After header: seconds or an HTTP date.
func retryAfter(h string, now time.Time) time.Duration {
	if h == "" {
		return 0
	}
	if s, err := strconv.Atoi(h); err == nil {
		return max(0, time.Duration(s)*time.Second)
	}
	if t, err := http.ParseTime(h); err == nil {
		return max(0, t.Sub(now))
	}
	return 0
}

func (c *Client) origin() string {
	u, _ := url.Parse(c.endpoint)
	return u.Scheme + "://" + u.Host
}

// once logs a cause the first time it is seen since the last success.
func (c *Client) once(cause string, level zerolog.Level, msg, reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.onceLocked(cause, level, msg, reason)
}

func (c *Client) onceLocked(cause string, level zerolog.Level, msg, reason string) {
	if c.reported[cause] {
		return
	}
	if len(c.reported) < 100 {
		c.reported[cause] = true
	}
	e := c.log.WithLevel(level)
	if reason != "" {
		e = e.Str("reason", reason)
	}
	e.Msg(msg)
}
