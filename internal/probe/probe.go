// Package probe runs Pulse's background health probes and samples the host
// it runs on. Results are events: the Runner publishes each probe run's
// health results as a JSON array on pulse.ingest.health.<component>, the
// database probe and the HostSampler publish resource samples on
// pulse.ingest.resources.<host>, and the aggregator stores them in
// ClickHouse, where the query API computes current health and uptime.
// Probes run on an interval, never per request; nothing here computes the
// overall status.
//
// # Components and status rules
//
// Every probe run has its own timeout (Config.Timeout). A component or
// target without configuration reports status unknown with details
// {"configured":false,"reason":"not configured"} on every run. Details are
// JSON objects of typed facts; they never hold a URL, DSN, password, key,
// host name or address, and never an error's text: a failed check says
// {"error":"unreachable","cause":"connection refused"}, the cause taken from
// a fixed vocabulary.
//
//   - database (the app's Postgres, through a pgx pool of at most 2
//     connections): ping round trip < 100 ms healthy, < 500 ms degraded,
//     else critical (the spec's thresholds); unreachable critical. Details
//     carry the connections (total client backends, active = not idle, the
//     server's max_connections, usage = total / max), the slow statements
//     of pg_stat_statements when it is installed, and the pool settings.
//     Each run also publishes a "connections" resource sample for host
//     Config.DatabaseHost: used = total client connections (an idle
//     connection holds a slot too), capacity = max_connections.
//   - auth: GET of the auth health URL. Critical when unreachable, when it
//     answers other than 2xx, or when the failure rate of auth requests is
//     at least 25%; degraded when the answer takes 200 ms or more or the
//     failure rate is at least 5%; else healthy. The failure rate comes from
//     Metrics (see StoreMetrics for what counts as an auth request and as a
//     failure) and is rated only over at least MinAuthRequests requests.
//   - realtime: a WebSocket opening handshake (RFC 6455) to the realtime
//     URL, closed with a close frame. Healthy under 300 ms, degraded under
//     1 s, else critical; critical when unreachable, when the answer is not
//     101 or when Sec-WebSocket-Accept is wrong.
//   - api: the fleet's requests over Config.MetricsWindow. Critical when
//     P95 > 3 s or the 5xx share > 5%; degraded when the average reaches
//     500 ms, P95 reaches 1 s or the 5xx share reaches 1% (the spec's SLOs:
//     average < 500 ms, P95 < 1 s, success > 99%); else healthy. Only a
//     window of at least Config.MinRequests requests is rated: no requests
//     is healthy with reason "no traffic" (no traffic is not a fault), and
//     fewer than MinRequests healthy with reason "too few requests to rate".
//     response_time_ms is the P95.
//   - external: one result per dependency (target = its name), each call
//     behind a circuit breaker. A call succeeds when the dependency answers
//     with a status below 500 (a 4xx is an answer: a health URL that wants
//     credentials still shows the service is up); success under 1 s is
//     healthy, slower degraded; a failure is critical. BreakerFailures
//     consecutive failures open the circuit: for BreakerCooldown the
//     dependency is not called and the result is critical with
//     {"circuit":"open"}; then one trial call (half-open) closes it on
//     success or opens it again on failure.
//   - pipeline: targets "nats" (connected, round trip, and the ingest
//     consumer's lag = NumPending + NumAckPending: critical when
//     disconnected or lag >= LagCritical, degraded when lag >= LagDegraded),
//     "clickhouse" (ping: critical when unreachable, degraded at 1 s or
//     more) and "redis" (ping: degraded when unreachable, as Pulse falls
//     back to in-process limits and caches; degraded at 1 s or more).
package probe

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/wedsync/pulse/internal/event"
	"github.com/wedsync/pulse/internal/safeerr"
	"github.com/wedsync/pulse/internal/stream"
)

// Publisher sends one message to the stream and returns once it is
// stored (or failed). It must be safe for concurrent use.
type Publisher interface {
	Publish(ctx context.Context, subject string, data []byte) error
}

// Pinger is a store that can tell whether it answers (*chstore.Store).
type Pinger interface {
	Ping(ctx context.Context) error
}

// Dependency is an external HTTP dependency the external probe checks.
type Dependency struct {
	Name    string        // target name: 1-64 of a-z, 0-9, '.', '_', '-'
	URL     string        // http or https; never reported
	Timeout time.Duration // of one call; default (and at most) Config.Timeout
}

// ParseDependencies reads dependencies written as name=url, e.g.
// "payments=https://status.example.com/health". Its errors name the entry
// by position, never its URL.
func ParseDependencies(list []string) ([]Dependency, error) {
	var out []Dependency
	for i, s := range list {
		name, u, ok := strings.Cut(strings.TrimSpace(s), "=")
		if !ok {
			return nil, fmt.Errorf("external dependency %d: must be written name=url", i+1)
		}
		out = append(out, Dependency{Name: strings.TrimSpace(name), URL: strings.TrimSpace(u)})
	}
	return out, nil
}

// Config configures the probes. Zero fields get the defaults noted (New
// fills them); the Metrics, JetStream, ClickHouse and Redis fields are
// clients rather than settings, and a nil one leaves the check it serves
// not configured.
type Config struct {
	Interval       time.Duration // between runs of each probe; default 15s; the first run is at start
	Timeout        time.Duration // bound of one run of one probe; default the smaller of 5s and Interval; at most Interval
	PublishTimeout time.Duration // bound of one publish; default 5s

	DatabaseURL              string        // the app's Postgres, URL or key=value DSN; "" = not configured
	DatabaseHost             string        // host of the connections resource sample; default "postgres"
	DatabaseStatementTimeout time.Duration // statement_timeout of the probe's sessions; default 3s
	SlowQueryThreshold       time.Duration // a statement is slow when its mean time exceeds this; default 1s
	DatabaseFailed           func(error)   // when not nil, called with each failure to reach the database (connect or ping); pulse serve counts credential refusals

	AuthHealthURL string // e.g. https://<project>.supabase.co/auth/v1/health; "" = not configured
	AuthAPIKey    string // sent as the apikey header of the auth check; never logged

	RealtimeURL string // ws:// or wss://, e.g. wss://<project>.supabase.co/realtime/v1/websocket?apikey=...&vsn=1.0.0

	External        []Dependency  // empty = not configured
	BreakerFailures int           // consecutive failures that open a circuit; default 3
	BreakerCooldown time.Duration // how long an open circuit stays open; default 30s

	MetricsWindow time.Duration // window of the api and auth figures; default 5m
	MinRequests   int           // requests the api window needs before its latency and error rate are rated; default DefaultMinRequests (20)

	IngestStream   string // default PULSE_INGEST
	IngestConsumer string // the aggregator's durable consumer; default "aggregator"
	LagDegraded    uint64 // consumer lag (messages) from which nats is degraded; default 10,000
	LagCritical    uint64 // and critical; default 100,000

	Metrics    Metrics               // request figures (StoreMetrics); nil: api not configured, auth without failure rate
	JetStream  jetstream.JetStream   // nil: nats not configured
	ClickHouse Pinger                // nil: clickhouse not configured
	Redis      redis.UniversalClient // nil: redis not configured

	// Registerer, when not nil, gets the Runner's metrics:
	// pulse_probe_runs_total, pulse_probe_panics_total, and
	// pulse_probe_published_messages_total and
	// pulse_probe_publish_failures_total with source="probe".
	Registerer prometheus.Registerer
}

// defaults fills zero fields. It does not write to the caller's External.
func (c *Config) defaults() {
	setDur := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	setDur(&c.Interval, 15*time.Second)
	setDur(&c.Timeout, min(5*time.Second, c.Interval))
	setDur(&c.PublishTimeout, 5*time.Second)
	setDur(&c.DatabaseStatementTimeout, 3*time.Second)
	setDur(&c.SlowQueryThreshold, time.Second)
	setDur(&c.BreakerCooldown, 30*time.Second)
	setDur(&c.MetricsWindow, 5*time.Minute)
	if c.DatabaseHost == "" {
		c.DatabaseHost = "postgres"
	}
	if c.BreakerFailures == 0 {
		c.BreakerFailures = 3
	}
	if c.MinRequests == 0 {
		c.MinRequests = DefaultMinRequests
	}
	if c.IngestStream == "" {
		c.IngestStream = "PULSE_INGEST"
	}
	if c.IngestConsumer == "" {
		c.IngestConsumer = "aggregator"
	}
	if c.LagDegraded == 0 {
		c.LagDegraded = 10_000
	}
	if c.LagCritical == 0 {
		c.LagCritical = 100_000
	}
	c.External = slices.Clone(c.External)
	for i := range c.External {
		if c.External[i].Timeout == 0 || c.External[i].Timeout > c.Timeout {
			c.External[i].Timeout = c.Timeout
		}
	}
}

// Validate reports whether New would accept c, its defaults filled. Its
// errors never quote a URL or DSN.
func (c Config) Validate() error {
	c.defaults()
	return c.validate()
}

// validate checks c, its defaults filled.
func (c Config) validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Interval < 10*time.Millisecond {
		bad("probe interval must be at least 10ms")
	}
	if c.Timeout <= 0 || c.Timeout > c.Interval {
		bad("probe timeout must be positive and at most the interval")
	}
	if c.PublishTimeout <= 0 {
		bad("probe publish timeout must be positive")
	}
	if c.DatabaseURL != "" {
		if _, err := pgxpool.ParseConfig(c.DatabaseURL); err != nil {
			bad("database url cannot be parsed") // pgx's message may quote the DSN
		}
	}
	if Hostname(c.DatabaseHost) != c.DatabaseHost {
		bad("database host label must be a-z, 0-9, '.', '_' or '-'")
	}
	if c.DatabaseStatementTimeout <= 0 || c.SlowQueryThreshold <= 0 {
		bad("database statement timeout and slow query threshold must be positive")
	}
	if c.AuthHealthURL != "" && !httpURL(c.AuthHealthURL, "http", "https") {
		bad("auth health url must be an absolute http or https URL")
	}
	if c.RealtimeURL != "" && !httpURL(c.RealtimeURL, "ws", "wss") {
		bad("realtime url must be an absolute ws or wss URL")
	}
	seen := map[string]bool{}
	for i, d := range c.External {
		switch {
		case d.Name == "" || len(d.Name) > 64 || Hostname(d.Name) != d.Name:
			bad("external dependency %d: name must be 1-64 of a-z, 0-9, '.', '_' or '-'", i+1)
		case seen[d.Name]:
			bad("external dependency %s: named twice", d.Name)
		case !httpURL(d.URL, "http", "https"):
			bad("external dependency %s: url must be an absolute http or https URL", d.Name)
		}
		seen[d.Name] = true
	}
	if c.BreakerFailures < 1 || c.BreakerCooldown <= 0 {
		bad("circuit breaker failures and cooldown must be positive")
	}
	if c.MinRequests < 1 {
		bad("minimum requests must be at least 1")
	}
	if c.MetricsWindow < time.Minute {
		bad("metrics window must be at least a minute")
	}
	if c.LagDegraded > c.LagCritical {
		bad("degraded lag must not exceed critical lag")
	}
	return errors.Join(errs...)
}

func httpURL(s string, schemes ...string) bool {
	u, err := url.Parse(s)
	return err == nil && slices.Contains(schemes, u.Scheme) && u.Host != ""
}

// prober is one probe. Probe runs it once and returns its results; run
// does the same and also returns the resource samples of the run (the
// database's connections). A probe runs once at a time. close releases its
// clients.
type prober interface {
	component() string
	Probe(ctx context.Context) []event.HealthResult
	run(ctx context.Context) ([]event.HealthResult, []event.ResourceSample)
	close()
}

// Stats counts the Runner's publishing; safe for concurrent reads.
type Stats struct {
	Runs            atomic.Uint64 // probe runs completed
	Published       atomic.Uint64 // messages the stream acknowledged
	PublishFailures atomic.Uint64 // messages that could not be published (dropped; the next run reports again)
	Panics          atomic.Uint64 // probe runs that panicked (recovered, reported critical)
}

// Runner runs the probes. Create it with New and call Run once.
type Runner struct {
	cfg   Config
	pub   Publisher
	log   zerolog.Logger
	stats Stats
	warn  *safeerr.Limiter

	mu     sync.RWMutex
	latest map[resultKey]event.HealthResult

	// probes overrides the probes built from cfg (tests).
	probes []prober
}

type resultKey struct{ component, target string }

// New returns a Runner publishing through pub, or an error when cfg,
// its defaults filled, is invalid. It registers the Runner's metrics on
// cfg.Registerer and starts nothing.
func New(cfg Config, pub Publisher, log zerolog.Logger) (*Runner, error) {
	cfg.defaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("probe config: %w", err)
	}
	r := &Runner{
		cfg:    cfg,
		pub:    pub,
		log:    log.With().Str("component", "probe").Logger(),
		warn:   safeerr.NewLimiter(time.Minute),
		latest: map[resultKey]event.HealthResult{},
	}
	if reg := cfg.Registerer; reg != nil {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "pulse_probe_runs_total", Help: "Health probe runs completed.",
		}, func() float64 { return float64(r.stats.Runs.Load()) }))
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "pulse_probe_panics_total", Help: "Health probe runs that panicked; each was recovered and reported critical.",
		}, func() float64 { return float64(r.stats.Panics.Load()) }))
		registerPublish(reg, "probe", &r.stats.Published, &r.stats.PublishFailures)
	}
	return r, nil
}

// registerPublish registers the publishing counters of source (probe or
// host) on reg: both sources share the metric names, told apart by label.
func registerPublish(reg prometheus.Registerer, source string, published, failures *atomic.Uint64) {
	counter := func(name, help string, v *atomic.Uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: prometheus.Labels{"source": source}},
			func() float64 { return float64(v.Load()) })
	}
	reg.MustRegister(
		counter("pulse_probe_published_messages_total", "Health results and resource samples the stream acknowledged, by source (probe, host).", published),
		counter("pulse_probe_publish_failures_total", "Health results and resource samples that could not be published and were dropped, by source (probe, host).", failures),
	)
}

// Stats returns the Runner's counters.
func (r *Runner) Stats() *Stats { return &r.stats }

// Latest returns the latest result of every component and target, ordered
// by component (as event.Components lists them) and target. It is safe to
// call concurrently with Run.
func (r *Runner) Latest() []event.HealthResult {
	r.mu.RLock()
	out := make([]event.HealthResult, 0, len(r.latest))
	for _, h := range r.latest {
		h.Details = bytes.Clone(h.Details)
		out = append(out, h)
	}
	r.mu.RUnlock()
	slices.SortFunc(out, func(a, b event.HealthResult) int {
		if c := slices.Index(event.Components, a.Component) - slices.Index(event.Components, b.Component); c != 0 {
			return c
		}
		return strings.Compare(a.Target, b.Target)
	})
	return out
}

// Run opens the probes' clients, runs every
// probe at once and then every Interval until ctx is done, and returns
// after the last run finished and was published and the clients are
// closed. A run that ctx cut short is neither published nor kept; one that
// completed is published even while shutting down, within PublishTimeout. Publish failures are counted
// and logged (at most once a minute), never returned. Run returns an error
// only when a probe's client cannot be built from the configuration.
func (r *Runner) Run(ctx context.Context) error {
	probes := r.probes
	if probes == nil {
		var err error
		if probes, err = build(r.cfg); err != nil {
			return err
		}
	}
	names := make([]string, len(probes))
	for i, p := range probes {
		names[i] = p.component()
	}
	r.log.Info().Strs("probes", names).Dur("interval", r.cfg.Interval).Dur("timeout", r.cfg.Timeout).Msg("health probes running")
	var wg sync.WaitGroup
	for _, p := range probes {
		wg.Go(func() {
			defer p.close()
			r.loop(ctx, p)
		})
	}
	wg.Wait()
	return nil
}

// build makes the probes of every component from cfg.
func build(cfg Config) ([]prober, error) {
	db, err := newDatabaseProbe(cfg)
	if err != nil {
		return nil, err
	}
	return []prober{
		db,
		newAuthProbe(cfg),
		newRealtimeProbe(cfg),
		newAPIProbe(cfg),
		newExternalProbe(cfg),
		newPipelineProbe(cfg),
	}, nil
}

func (r *Runner) loop(ctx context.Context, p prober) {
	t := time.NewTicker(r.cfg.Interval)
	defer t.Stop()
	for {
		r.runOnce(ctx, p)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (r *Runner) runOnce(ctx context.Context, p prober) {
	if ctx.Err() != nil {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	results, samples := r.safeRun(rctx, p)
	cancel()
	if ctx.Err() != nil {
		return // shutting down: a run cut short says nothing about the dependency
	}
	r.stats.Runs.Add(1)
	r.record(results)
	// A completed run is published even when shutdown began meanwhile
	// (that is Run's drain), within PublishTimeout.
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.PublishTimeout)
	defer cancel()
	// One message per target, so that each message has one Nats-Msg-Id.
	for _, h := range results {
		data, err := json.Marshal([]event.HealthResult{h})
		if err != nil {
			continue
		}
		r.publish(pctx, stream.SubjectHealth+h.Component, data)
	}
	for _, s := range samples {
		data, err := json.Marshal(s)
		if err != nil {
			continue
		}
		r.publish(pctx, ResourceSubject(s.Host), data)
	}
}

// safeRun runs p once. A probe that panics does not take the process
// down: its component is reported critical ("probe failed") and the panic
// is logged with its stack (which holds no values) and counted.
func (r *Runner) safeRun(ctx context.Context, p prober) (results []event.HealthResult, samples []event.ResourceSample) {
	defer func() {
		if v := recover(); v != nil {
			r.stats.Panics.Add(1)
			r.log.Error().Str("probe", p.component()).Str("panic", fmt.Sprintf("%T", v)).Bytes("stack", debug.Stack()).
				Msg("probe panicked; reported critical, the next run tries again")
			results = []event.HealthResult{result(time.Now(), p.component(), "", event.StatusCritical, 0,
				failedDetails{Error: "probe failed", Cause: "the probe panicked"})}
			samples = nil
		}
	}()
	return p.run(ctx)
}

// failedDetails are the details of a probe that failed in itself.
type failedDetails struct {
	Error string `json:"error"`
	Cause string `json:"cause"`
}

func (r *Runner) publish(ctx context.Context, subject string, data []byte) {
	if err := r.pub.Publish(ctx, subject, data); err != nil {
		n := r.stats.PublishFailures.Add(1)
		if ok, suppressed := r.warn.Allow("publish", time.Now()); ok {
			r.log.Warn().Str("subject", subject).Str("cause", cause(err)).Uint64("failures_total", n).
				Int("suppressed", suppressed).Msg("probe result not published; the next run reports again")
		}
		return
	}
	r.stats.Published.Add(1)
}

// record keeps the results as the latest and logs a result only when its
// status changed, and the first of each component and target (at debug
// level when it is not configured), never every run.
func (r *Runner) record(results []event.HealthResult) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, h := range results {
		k := resultKey{h.Component, h.Target}
		prev, seen := r.latest[k]
		r.latest[k] = h
		if seen && prev.Status == h.Status {
			continue
		}
		lvl := zerolog.InfoLevel
		switch {
		case h.Status == event.StatusCritical || h.Status == event.StatusDegraded:
			lvl = zerolog.WarnLevel
		case !seen && notConfiguredResult(h):
			lvl = zerolog.DebugLevel // "health probes running" names the probes; an unset one is no news
		}
		e := r.log.WithLevel(lvl).Str("probe", h.Component).Str("target", h.Target).Str("status", h.Status).
			Float64("response_time_ms", h.ResponseTimeMS).RawJSON("details", h.Details)
		if seen {
			e = e.Str("was", prev.Status)
		}
		e.Msg("health status")
	}
}

// notConfiguredResult reports whether h says its check is not configured.
func notConfiguredResult(h event.HealthResult) bool {
	var d struct {
		Configured *bool `json:"configured"`
	}
	return h.Status == event.StatusUnknown && json.Unmarshal(h.Details, &d) == nil && d.Configured != nil && !*d.Configured
}

// ResourceSubject is the subject of resource samples of host: the host's
// dots become underscores, as a subject token cannot hold them.
func ResourceSubject(host string) string {
	return stream.SubjectResources + strings.ReplaceAll(Hostname(host), ".", "_")
}
