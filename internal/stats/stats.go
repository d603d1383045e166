// Package stats serves GET /api/admin/system/stats: what the pipeline holds
// (rows stored, the ingest stream's backlog) and what this process's edge
// and aggregator have done, for operators and for checking that events
// arrived.
//
// It declares what it reads of each stage (Store, Streams, Edge,
// Aggregator) and needs nothing else; a stage this process does not run
// is left nil and its part of the answer is left out.
package stats

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/wedsync/pulse/aggregator"
	"github.com/wedsync/pulse/ingest"
	"github.com/wedsync/pulse/internal/auth"
	"github.com/wedsync/pulse/internal/httpapi"
)

// Store is what stats reads of ClickHouse: a table's name qualified with
// the store's database, and one row of a query. *chstore.Store is one.
type Store interface {
	T(table string) string
	QueryRow(ctx context.Context, query string, dest ...any) error
}

// Streams is what stats reads of JetStream: the connection's state and a
// stream's info. jetstream.JetStream is one.
type Streams interface {
	Conn() *nats.Conn
	Stream(ctx context.Context, name string) (jetstream.Stream, error)
}

// Edge is the ingest edge of this process; *ingest.Edge is one.
type Edge interface {
	Stats() *ingest.Stats
}

// Aggregator is the aggregator of this process; *aggregator.Aggregator is
// one.
type Aggregator interface {
	Stats() *aggregator.Stats
	Skipped() uint64
}

// Config configures the handler.
type Config struct {
	Stream  string        // the ingest stream whose backlog is shown; required
	Timeout time.Duration // for the store and the stream together; default 5s
}

// Validate checks c after New filled its defaults.
func (c Config) Validate() error {
	switch {
	case c.Stream == "":
		return errors.New("stats: the ingest stream's name is required")
	case c.Timeout < 0:
		return errors.New("stats: timeout must not be negative")
	}
	return nil
}

// Handler answers GET /api/admin/system/stats. It only reads, so it is
// safe for concurrent requests.
type Handler struct {
	cfg     Config
	store   Store
	streams Streams
	edge    Edge
	agg     Aggregator
}

// New returns the handler. store and streams are required; edge and agg
// are nil when this process does not run them. New fills Config's
// defaults and validates it.
func New(cfg Config, store Store, streams Streams, edge Edge, agg Aggregator) (*Handler, error) {
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Second
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Handler{cfg: cfg, store: store, streams: streams, edge: edge, agg: agg}, nil
}

// Register adds GET /api/admin/system/stats to r, for admins.
func (h *Handler) Register(r *httpapi.Router) {
	r.Handle(http.MethodGet, "/api/admin/system/stats", auth.ScopeAdmin, h.serve)
}

// Body is the /api/admin/system/stats answer.
type Body struct {
	RequestsStored uint64           `json:"requests_stored"`
	Stream         StreamStats      `json:"stream"`
	Ingest         *IngestStats     `json:"ingest,omitempty"`
	Aggregator     *AggregatorStats `json:"aggregator,omitempty"`
}

// StreamStats describes the ingest stream's backlog.
type StreamStats struct {
	Messages uint64 `json:"messages"` // awaiting the aggregator
	Bytes    uint64 `json:"bytes"`
}

// IngestStats are this process's edge counters.
type IngestStats struct {
	Accepted    uint64 `json:"events_accepted"`
	Rejected    uint64 `json:"requests_rejected"`
	Unavailable uint64 `json:"requests_unavailable"`
}

// AggregatorStats are this process's aggregator counters.
type AggregatorStats struct {
	Rows        uint64 `json:"rows_inserted"`
	Batches     uint64 `json:"batches_inserted"`
	DeadLetters uint64 `json:"dead_letters"`
	Retries     uint64 `json:"insert_retries"`
	Skipped     uint64 `json:"duplicate_rows_skipped"`
}

// retryAfter is what a caller is asked to wait when the store or the
// stream cannot be read.
const retryAfter = 5 * time.Second

func (h *Handler) serve(c echo.Context) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), h.cfg.Timeout)
	defer cancel()
	var body Body
	if err := h.store.QueryRow(ctx, "SELECT count() FROM "+h.store.T("requests"), &body.RequestsStored); err != nil {
		return httpapi.Unavailable("the event store is unavailable", retryAfter)
	}
	if h.streams.Conn().Status() != nats.CONNECTED {
		return httpapi.Unavailable("the event stream is unavailable", retryAfter)
	}
	st, err := h.streams.Stream(ctx, h.cfg.Stream)
	if err != nil {
		return httpapi.Unavailable("the event stream is unavailable", retryAfter)
	}
	info := st.CachedInfo()
	body.Stream = StreamStats{Messages: info.State.Msgs, Bytes: info.State.Bytes}
	if h.edge != nil {
		s := h.edge.Stats()
		body.Ingest = &IngestStats{Accepted: s.Accepted.Load(), Rejected: s.Rejected.Load(), Unavailable: s.Unavailable.Load()}
	}
	if h.agg != nil {
		s := h.agg.Stats()
		body.Aggregator = &AggregatorStats{Rows: s.Rows.Load(), Batches: s.Batches.Load(), DeadLetters: s.DeadLetters.Load(),
			Retries: s.Retries.Load(), Skipped: h.agg.Skipped()}
	}
	return c.JSON(http.StatusOK, body)
}
