package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"github.com/wedsync/pulse/aggregator"
	"github.com/wedsync/pulse/alerts"
	"github.com/wedsync/pulse/alerts/notify"
	"github.com/wedsync/pulse/alerts/rules"
	"github.com/wedsync/pulse/ingest"
	"github.com/wedsync/pulse/internal/auth"
	"github.com/wedsync/pulse/internal/cache"
	"github.com/wedsync/pulse/internal/chstore"
	"github.com/wedsync/pulse/internal/dashboard"
	"github.com/wedsync/pulse/internal/httpapi"
	"github.com/wedsync/pulse/internal/metrics"
	"github.com/wedsync/pulse/internal/probe"
	"github.com/wedsync/pulse/internal/ratelimit"
	"github.com/wedsync/pulse/internal/stats"
	"github.com/wedsync/pulse/internal/stream"
	"github.com/wedsync/pulse/query"
	"github.com/wedsync/pulse/schema"
	"github.com/wedsync/pulse/validate"
)

var allRoles = []string{"ingest", "aggregator", "query", "alerts"}

// defaultHTTPAddr is --http-addr's default; only it falls back to a free
// port when taken.
const defaultHTTPAddr = "127.0.0.1:7480"

type serveFlags struct {
	roles           string
	httpAddr        string
	tlsCert         string
	tlsKey          string
	tlsClientCA     string
	dataDir         string
	natsURL         string
	natsListen      string
	natsListenToken string // file
	natsListenUsers string // file
	nats            natsFlags
	clickhouseDSN   string
	clickhouseTLS   clickHouseTLS
	adminTokens     string
	ingestTokens    string
	jwt             auth.JWTConfig
	jwtSecret       string
	redisURL        string
	redisCA         string
	redisCert       string
	redisKey        string
	adminLimit      string
	ingestLimit     string
	migrate         bool
	shutdownTimeout time.Duration
	drainGrace      time.Duration
	rulesFile       string
	alertInterval   time.Duration
	alertmanagerURL string
	alertWebhooks   string
	alertResend     time.Duration
	alertNotifyRate string
	externalURL     string
	notify          notify.Config // built from the alert delivery flags

	stream   stream.Config
	ingest   ingest.Config
	probe    probe.Config
	external string
	agg      aggregator.Config
	validate validateFlags
	log      logFlags
}

// validateFlags are the flags of architecture validation (validate.Config).
type validateFlags struct {
	requiredTables, exposedSchemas, userIDColumns string
	cfg                                           validate.Config
}

func (v *validateFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&v.requiredTables, "validate-required-tables", strings.Join(validate.DefaultRequiredTables, ","),
		"tables the app's Postgres must have, comma-separated table or schema.table; empty requires none")
	fs.StringVar(&v.exposedSchemas, "validate-exposed-schemas", "public", "schemas the app's API exposes, comma-separated")
	fs.StringVar(&v.userIDColumns, "validate-user-id-columns", strings.Join(validate.DefaultUserIDColumns, ","),
		"the app's columns whose values the fleet sends as user_id, comma-separated table.column or schema.table.column; judged pseudonymous when random UUID keys")
	fs.BoolVar(&v.cfg.UserIDsPseudonymised, "validate-user-ids-pseudonymised", false, "the fleet sends keyed hashes (HMAC) of user ids, not the app's ids")
	fs.DurationVar(&v.cfg.SLOAverage, "validate-slo-avg", 500*time.Millisecond, "API average response time SLO")
	fs.DurationVar(&v.cfg.SLOP95, "validate-slo-p95", time.Second, "API P95 response time SLO")
	fs.Float64Var(&v.cfg.SLOErrorRate, "validate-slo-error-rate", 0.01, "API 5xx share SLO (0-1)")
}

// config returns the validation config of the flags; a bad value is a
// usage error.
func (v validateFlags) config(databaseURL string) (validate.Config, error) {
	c := v.cfg
	c.DatabaseURL = databaseURL
	c.RequiredTables, c.ExposedSchemas, c.UserIDColumns = commaList(v.requiredTables), commaList(v.exposedSchemas), commaList(v.userIDColumns)
	if c.SLOAverage <= 0 || c.SLOP95 <= 0 || c.SLOErrorRate <= 0 {
		return c, fmt.Errorf("%w: --validate-slo-avg, --validate-slo-p95 and --validate-slo-error-rate must be positive", errUsage)
	}
	if err := c.Validate(); err != nil {
		return c, fmt.Errorf("%w: architecture validation: %v", errUsage, err)
	}
	return c, nil
}

// commaList splits a comma-separated flag, trimming spaces; "" is empty,
// not nil.
func commaList(s string) []string {
	out := []string{}
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func retentionFlags(fs *flag.FlagSet) func() (schema.Retention, error) {
	raw := fs.Duration("retention-raw", schema.DefaultRetention.Raw, "how long raw events are kept")
	rollup := fs.Duration("retention-rollup", schema.DefaultRetention.Rollup, "how long rollups and alert history are kept")
	return func() (schema.Retention, error) {
		r := schema.Retention{Raw: *raw, Rollup: *rollup}
		if err := r.Validate(); err != nil {
			return r, fmt.Errorf("%w: %v", errUsage, err)
		}
		return r, nil
	}
}

// serveFlagSet defines the flags of `pulse serve` on f; the returned
// function reads the retention flags once parsed.
func serveFlagSet(f *serveFlags, stderr io.Writer) (*flag.FlagSet, func() (schema.Retention, error)) {
	fs := newFlagSet("serve", stderr)
	fs.StringVar(&f.roles, "roles", "all", "roles to run, comma-separated: ingest, aggregator, query, alerts, or all")
	fs.StringVar(&f.httpAddr, "http-addr", defaultHTTPAddr, "HTTP listen address; if the default is taken a free port is used")
	fs.StringVar(&f.tlsCert, "tls-cert", "", "PEM certificate (chain) of the HTTP listener; with --tls-key it serves HTTPS only, reloaded when the files change")
	fs.StringVar(&f.tlsKey, "tls-key", "", "PEM key of --tls-cert")
	fs.StringVar(&f.tlsClientCA, "tls-client-ca", "", "PEM CAs whose client certificates the HTTP listener demands (mutual TLS; needs --tls-cert)")
	fs.StringVar(&f.dataDir, "data-dir", "data", "folder for the embedded NATS store (and the default chDB data)")
	fs.StringVar(&f.natsURL, "nats-url", "", "external NATS server URL; empty runs an embedded NATS server")
	fs.StringVar(&f.natsListen, "nats-listen", "127.0.0.1:4322", "listen address of the embedded NATS server; if taken a free port is used")
	fs.StringVar(&f.natsListenToken, "nats-listen-token-file", "", "file holding the token the embedded NATS demands of every client; this or --nats-listen-users-file is required when --nats-listen is not loopback")
	fs.StringVar(&f.natsListenUsers, "nats-listen-users-file", "", "nats-server config file whose authorization { users = [...] } (passwords or nkeys, with permissions) the embedded NATS admits; Pulse connects as a user of its own")
	f.nats.register(fs)
	fs.StringVar(&f.clickhouseDSN, "clickhouse-dsn", "", "ClickHouse: clickhouse://host:9000/db (server) or chdb:path (embedded; default chdb:<data-dir>/chdb)")
	f.clickhouseTLS.register(fs)
	fs.StringVar(&f.adminTokens, "admin-tokens", "", "admin bearer tokens, comma-separated name:token (prefer the env twin)")
	fs.StringVar(&f.ingestTokens, "ingest-tokens", "", "ingest bearer tokens, comma-separated name:token (prefer the env twin)")
	fs.StringVar(&f.jwtSecret, "jwt-secret", "", "HS256 secret of Supabase-compatible admin JWTs (at least 32 bytes; prefer the env twin)")
	fs.StringVar(&f.jwt.Issuer, "jwt-issuer", "", "required iss claim of JWTs, e.g. https://<project>.supabase.co/auth/v1")
	fs.StringVar(&f.jwt.Audience, "jwt-audience", "", "required aud claim of JWTs, e.g. authenticated")
	fs.StringVar(&f.redisURL, "redis-url", "", "Redis for rate limits and the response cache, redis://host:6379/0; empty keeps both in process")
	fs.StringVar(&f.redisCA, "redis-ca", "", "PEM CA certificates of Redis's certificate; turns TLS on (as rediss:// does, which trusts the system's roots)")
	fs.StringVar(&f.redisCert, "redis-cert", "", "PEM client certificate for mutual TLS with Redis (with --redis-key; turns TLS on)")
	fs.StringVar(&f.redisKey, "redis-key", "", "PEM key of --redis-cert")
	fs.StringVar(&f.adminLimit, "admin-rate-limit", "60/min", "requests per principal to admin routes")
	fs.StringVar(&f.ingestLimit, "ingest-rate-limit", "6000/min", "requests per principal to ingest routes")
	fs.StringVar(&f.probe.DatabaseURL, "database-url", "", "the app's Postgres, probed for health and connections (prefer the env twin)")
	fs.StringVar(&f.probe.AuthHealthURL, "auth-health-url", "", "auth health endpoint, e.g. https://<project>.supabase.co/auth/v1/health")
	fs.StringVar(&f.probe.AuthAPIKey, "auth-api-key", "", "apikey header for the auth health check (prefer the env twin)")
	fs.StringVar(&f.probe.RealtimeURL, "realtime-url", "", "realtime WebSocket URL, e.g. wss://<project>.supabase.co/realtime/v1/websocket?apikey=...&vsn=1.0.0")
	fs.StringVar(&f.external, "external", "", "external dependencies to probe, comma-separated name=url (payments, email, SMS)")
	fs.DurationVar(&f.probe.Interval, "probe-interval", 15*time.Second, "interval of the health probes")
	fs.IntVar(&f.probe.MinRequests, "health-min-requests", probe.DefaultMinRequests, "requests a window needs before its error rate and latency rate the api component, and before an error_rate alert rule without min_requests can fire")
	fs.StringVar(&f.rulesFile, "rules", "", "alert rules file (YAML); empty uses the built-in rules")
	fs.DurationVar(&f.alertInterval, "alert-interval", 15*time.Second, "interval of the window alert rules")
	fs.StringVar(&f.alertmanagerURL, "alertmanager-url", "", "Alertmanager base URLs that receive alerts (v2 API), comma-separated; several for an HA pair")
	fs.StringVar(&f.alertWebhooks, "alert-webhook", "", "direct alert webhooks, comma-separated name=url[;severity=critical|warning][;format=slack] (prefer the env twin)")
	fs.DurationVar(&f.alertResend, "alert-resend-interval", time.Minute, "how often firing alerts are posted to Alertmanager again")
	fs.StringVar(&f.alertNotifyRate, "alert-webhook-rate-limit", "10/5m", "firing notifications per webhook per period; the rest go into one digest")
	fs.StringVar(&f.externalURL, "external-url", "", "URL people reach Pulse at, for links in alert notifications (default http://<http-addr>)")
	fs.BoolVar(&f.migrate, "migrate", true, "apply the ClickHouse schema at start")
	fs.DurationVar(&f.shutdownTimeout, "shutdown-timeout", httpapi.DefaultShutdownTimeout, "how long shutdown may take to drain")
	fs.DurationVar(&f.drainGrace, "drain-grace", 5*time.Second, "on shutdown, /readyz answers 503 this long before the HTTP listener closes, so that load balancers move away")
	fs.Int64Var(&f.stream.MaxBytes, "stream-max-bytes", 8<<30, "ingest stream backlog limit in bytes; beyond it ingest answers 503")
	fs.DurationVar(&f.stream.MaxAge, "stream-max-age", 7*24*time.Hour, "unconsumed events older than this leave the stream")
	fs.IntVar(&f.stream.Replicas, "stream-replicas", 1, "stream replicas (3 on a production cluster)")
	fs.DurationVar(&f.stream.DuplicateWindow, "dedup-window", 2*time.Minute, "window in which a repeated Nats-Msg-Id is dropped")
	fs.Int64Var(&f.ingest.MaxBodyBytes, "max-body-bytes", 8<<20, "largest ingest body on the wire")
	fs.Int64Var(&f.ingest.MaxDecompressedBytes, "max-decompressed-bytes", 32<<20, "largest ingest body after gunzip")
	fs.IntVar(&f.ingest.MaxEvents, "max-events", 10000, "most events in one ingest request")
	fs.StringVar(&f.ingest.DefaultService, "default-service", "default", "service of events that name none")
	fs.BoolVar(&f.ingest.StrictFields, "strict-fields", false, "reject ingested events with unknown fields (400) instead of ignoring and counting them")
	fs.DurationVar(&f.ingest.CoalesceDelay, "coalesce-delay", time.Millisecond, "single-event requests arriving within this delay share one JetStream message (group commit); 0 publishes each alone")
	fs.IntVar(&f.agg.MaxRows, "batch-rows", 50000, "aggregator: insert when a batch holds this many rows")
	fs.DurationVar(&f.agg.MaxDelay, "batch-delay", time.Second, "aggregator: or when its oldest event waited this long")
	fs.DurationVar(&f.agg.AckWait, "ack-wait", time.Minute, "aggregator: redelivery delay of unacked messages")
	ret := retentionFlags(fs)
	f.validate.register(fs)
	f.log.register(fs)
	return fs, ret
}

func serve(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var f serveFlags
	fs, ret := serveFlagSet(&f, stderr)
	if err := parseWithEnv(fs, args); err != nil {
		return err
	}
	log, err := f.log.logger(stderr)
	if err != nil {
		return err
	}
	retention, err := ret()
	if err != nil {
		return err
	}
	roles, err := parseRoles(f.roles)
	if err != nil {
		return err
	}
	f.stream.Defaults()
	if err := f.stream.Validate(); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	f.ingest.Retention, f.agg.Retention = retention.Raw, retention.Raw
	if err := f.ingest.Validate(); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	f.agg.Consumer = aggregator.DefaultConsumer // named by the stream metrics and probes
	if err := f.agg.Validate(); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if f.clickhouseDSN == "" {
		f.clickhouseDSN = "chdb:" + filepath.Join(f.dataDir, "chdb")
	}
	if f.clickhouseDSN, err = f.clickhouseTLS.apply(f.clickhouseDSN); err != nil {
		return err
	}
	tokens, err := parseTokens(f.adminTokens, f.ingestTokens)
	if err != nil {
		return err
	}
	// An invalid rules file never starts a half-configured evaluator.
	ruleSet := rules.Default()
	if f.rulesFile != "" {
		if ruleSet, err = rules.Load(f.rulesFile); err != nil {
			return fmt.Errorf("%w: --rules:\n%v", errUsage, err)
		}
	}
	authn := auth.Authenticator(tokens.StaticTokens)
	if f.jwtSecret != "" {
		f.jwt.Secret = []byte(f.jwtSecret)
		jwt, err := auth.NewJWT(f.jwt)
		if err != nil {
			return fmt.Errorf("%w: JWT: %v", errUsage, err)
		}
		authn = auth.Chain(jwt, tokens.StaticTokens)
	}
	if f.external != "" {
		if f.probe.External, err = probe.ParseDependencies(strings.Split(f.external, ",")); err != nil {
			return fmt.Errorf("%w: --external: %v", errUsage, err)
		}
	}
	if f.notify, err = notifyConfig(f); err != nil {
		return err
	}
	if f.drainGrace < 0 {
		return fmt.Errorf("%w: --drain-grace must not be negative", errUsage)
	}
	if err := f.probe.Validate(); err != nil {
		return fmt.Errorf("%w: probes: %v", errUsage, err)
	}
	if f.validate.cfg, err = f.validate.config(f.probe.DatabaseURL); err != nil {
		return err
	}
	for _, l := range []*string{&f.adminLimit, &f.ingestLimit} {
		if _, err := ratelimit.ParseLimit(*l); err != nil {
			return fmt.Errorf("%w: rate limit %q: %v", errUsage, *l, err)
		}
	}
	var tlsConfig *tls.Config
	if f.tlsCert != "" || f.tlsKey != "" || f.tlsClientCA != "" {
		files := httpapi.TLSFiles{CertFile: f.tlsCert, KeyFile: f.tlsKey, ClientCAFile: f.tlsClientCA}
		if tlsConfig, err = files.Config(log); err != nil {
			return fmt.Errorf("%w: --tls-cert/--tls-key/--tls-client-ca: %v", errUsage, err)
		}
	}
	natsOpts, err := f.nats.options()
	if err != nil {
		return err
	}
	switch {
	case f.natsURL == "" && natsOpts != (stream.ClientOptions{}):
		return fmt.Errorf("%w: the NATS credential and TLS flags are for --nats-url; the embedded NATS takes --nats-listen-token-file", errUsage)
	case f.natsURL != "" && (f.natsListenToken != "" || f.natsListenUsers != ""):
		return fmt.Errorf("%w: --nats-listen-token-file and --nats-listen-users-file are for the embedded NATS; with --nats-url use --nats-token-file", errUsage)
	case f.natsListenToken != "" && f.natsListenUsers != "":
		return fmt.Errorf("%w: give --nats-listen-token-file or --nats-listen-users-file, not both", errUsage)
	}
	embedded := stream.EmbeddedConfig{Listen: f.natsListen, StoreDir: filepath.Join(f.dataDir, "nats")}
	if f.natsListenToken != "" {
		if embedded.Token, err = readSecretFile(f.natsListenToken); err != nil {
			return fmt.Errorf("%w: --nats-listen-token-file: %v", errUsage, err)
		}
	}
	if f.natsListenUsers != "" {
		if err := embedded.LoadUsersFile(f.natsListenUsers); err != nil {
			return fmt.Errorf("%w: --nats-listen-users-file: %v", errUsage, err)
		}
	}
	release, err := lockDataDir(f.dataDir, f.natsURL == "" || strings.HasPrefix(f.clickhouseDSN, "chdb:"))
	if err != nil {
		return err
	}
	defer release()
	if err := tokens.generate(f.dataDir); err != nil {
		return err
	}
	p := &process{flags: f, tls: tlsConfig, natsOpts: natsOpts, embeddedNATS: embedded, roles: roles, retention: retention, tokens: tokens, authn: authn, rules: ruleSet, log: log, stdout: stdout}
	return p.run(ctx)
}

func parseRoles(s string) (map[string]bool, error) {
	roles := map[string]bool{}
	for _, r := range strings.Split(s, ",") {
		switch r = strings.TrimSpace(r); r {
		case "all":
			for _, a := range allRoles {
				roles[a] = true
			}
		case "ingest", "aggregator", "query", "alerts":
			roles[r] = true
		default:
			return nil, fmt.Errorf("%w: --roles: unknown role %q (want %s or all)", errUsage, r, strings.Join(allRoles, ", "))
		}
	}
	return roles, nil
}

// process is one `pulse serve` process: the clients it built and the roles
// it runs.
type process struct {
	flags        serveFlags
	tls          *tls.Config          // of the HTTP listener; nil for plain HTTP
	natsOpts     stream.ClientOptions // for an external NATS
	embeddedNATS stream.EmbeddedConfig
	roles        map[string]bool
	retention    schema.Retention
	tokens       tokenSet
	authn        auth.Authenticator
	rules        *rules.Set
	log          zerolog.Logger
	stdout       io.Writer

	embedded  *server.Server
	nc        *nats.Conn
	js        jetstream.JetStream
	store     *chstore.Store
	redis     *redis.Client
	runner    *probe.Runner
	validator *validate.Validator
	edge      *ingest.Edge
	metrics   *metrics.Metrics
	draining  func() bool // readiness turns false when it returns true
	authFails *prometheus.CounterVec
}

func (s *process) run(ctx context.Context) error {
	defer s.close()
	s.metrics = metrics.New(version)
	var err error
	if s.authFails, err = authFailures(s.metrics.Registerer()); err != nil {
		return err
	}
	if err := s.connectNATS(ctx); err != nil {
		return err
	}
	if s.flags.redisURL != "" {
		opt, err := redis.ParseURL(s.flags.redisURL)
		if err != nil {
			return fmt.Errorf("%w: --redis-url: not a redis:// URL", errUsage)
		}
		// Deadlines must reach the socket, so that a hanging Redis costs a
		// request its short timeout, not seconds; and the rate-limit script
		// must not be retried.
		opt.ContextTimeoutEnabled, opt.MaxRetries = true, -1
		if err := redisTLS(opt, s.flags.redisCA, s.flags.redisCert, s.flags.redisKey); err != nil {
			return err
		}
		s.redis = redis.NewClient(opt)
		s.redis.AddHook(redisAuthHook{failures: s.authFails.WithLabelValues("redis")})
		if err := checkRedis(ctx, s.redis, s.log); err != nil {
			return err
		}
	}
	if s.roles["query"] && s.flags.probe.DatabaseURL != "" {
		if err := checkPostgres(ctx, s.flags.probe.DatabaseURL); err != nil {
			return err
		}
	}
	if s.roles["aggregator"] || s.roles["query"] || s.roles["alerts"] {
		store, err := chstore.Open(ctx, s.flags.clickhouseDSN, s.log)
		if clickHouseAuthError(err) {
			return refusedCredential("ClickHouse", err)
		}
		if err != nil {
			return err
		}
		s.store = store
		if s.flags.migrate {
			if _, err := applySchema(ctx, store, s.retention); err != nil {
				return err
			}
		}
		s.log.Info().Str("backend", store.Kind()).Str("version", store.Version().String()).Str("database", store.Database()).Msg("ClickHouse ready")
	}

	if err := stream.RegisterBacklogMetrics(s.metrics.Registerer(), s.js, s.flags.stream.IngestStream, s.flags.agg.Consumer); err != nil {
		return err
	}
	// Every process samples its own host; the query role probes the
	// platform's components (one role, so that they are probed once).
	host, err := probe.NewHostSampler(probe.HostConfig{Paths: []string{s.flags.dataDir}, Registerer: s.metrics.Registerer()}, probe.JetStreamPublisher{JS: s.js}, s.log)
	if err != nil {
		return err
	}
	if s.roles["query"] {
		pc := s.flags.probe
		pc.Metrics = probe.StoreMetrics{Store: s.store}
		pc.JetStream, pc.ClickHouse = s.js, s.store
		pc.IngestStream, pc.IngestConsumer = s.flags.stream.IngestStream, s.flags.agg.Consumer
		if s.redis != nil {
			pc.Redis = s.redis
		}
		pc.Registerer = s.metrics.Registerer()
		pc.DatabaseFailed = func(err error) {
			if postgresAuthError(err) {
				s.authFails.WithLabelValues("postgres").Inc()
			}
		}
		if s.runner, err = probe.New(pc, probe.JetStreamPublisher{JS: s.js}, s.log); err != nil {
			return err
		}
	}
	g, ctx := errgroup.WithContext(ctx)
	var agg *aggregator.Aggregator
	if s.roles["aggregator"] {
		a, err := aggregator.New(s.flags.agg, s.js, s.store, s.metrics.Registerer(), s.log)
		if err != nil {
			return err
		}
		agg = a
		// Instant alert rules see every event as the aggregator decodes it.
		inst, err := alerts.NewInstant(alerts.InstantConfig{Stream: s.alertStreams(), Registerer: s.metrics.Registerer()}, s.rules, s.js, s.log)
		if err != nil {
			return err
		}
		agg.SetEventObserver(inst)
		g.Go(func() error { return inst.Run(ctx) })
		g.Go(func() error { return agg.Run(ctx) })
		job := &schema.RetentionJob{Store: s.store, Retention: s.retention, Interval: time.Hour, Log: s.log}
		g.Go(func() error { return job.Run(ctx) })
	}
	if s.roles["alerts"] {
		ev, err := alerts.NewEvaluator(alerts.EvaluatorConfig{Stream: s.alertStreams(), Interval: s.flags.alertInterval, Registerer: s.metrics.Registerer(),
			MinRequests: uint64(max(s.flags.probe.MinRequests, 0))},
			s.rules, s.js, s.store, s.log)
		if err != nil {
			return err
		}
		hist, err := alerts.NewHistory(alerts.HistoryConfig{Stream: s.alertStreams(), Registerer: s.metrics.Registerer()}, s.js, s.store, s.log)
		if err != nil {
			return err
		}
		g.Go(func() error { return ev.Run(ctx) })
		g.Go(func() error { return hist.Run(ctx) })
		if len(s.flags.notify.Receivers) > 0 {
			nc := s.flags.notify
			nc.Stream, nc.Registerer = s.alertStreams(), s.metrics.Registerer()
			notifier, err := notify.New(nc, s.js, s.log)
			if err != nil {
				return err
			}
			g.Go(func() error { return notifier.Run(ctx) })
		}
	}
	g.Go(func() error { return host.Run(ctx) })
	if s.runner != nil {
		g.Go(func() error { return s.runner.Run(ctx) })
	}
	// Every role serves HTTP: at least /healthz, /readyz and /metrics, which
	// supervisors probe (deploy/kubernetes) and Prometheus scrapes.
	{
		srv, err := s.httpServer(agg)
		if err != nil {
			return err
		}
		// The edge serves requests until the listener closed: it stops
		// after the server, not with it.
		edgeCtx, stopEdge := context.WithCancel(context.WithoutCancel(ctx))
		if s.edge != nil {
			g.Go(func() error { return s.edge.Run(edgeCtx) })
		}
		g.Go(func() error { defer stopEdge(); return srv.Run(ctx) })
	}
	s.log.Info().Strs("roles", keys(s.roles)).Msg("pulse is serving")
	err = g.Wait()
	s.log.Info().Msg("pulse stopped")
	return err
}

// connectNATS starts the embedded server when no URL is given, connects,
// and makes sure the streams exist.
func (s *process) connectNATS(ctx context.Context) error {
	url, opts := s.flags.natsURL, s.natsOpts
	if url == "" {
		ns, err := stream.RunEmbedded(s.embeddedNATS, s.log)
		if errors.Is(err, stream.ErrUnauthenticatedListen) {
			return fmt.Errorf("%w: --nats-listen: %v", errUsage, err)
		}
		if err != nil {
			return err
		}
		s.embedded = ns
		url, opts = ns.ClientURL(), s.embeddedNATS.ClientOptions()
		s.log.Info().Str("url", url).Bool("authentication", s.embeddedNATS.Authenticated()).Msg("embedded NATS server with JetStream is listening")
	}
	opts.Registerer = s.metrics.Registerer()
	nc, err := stream.Connect(url, "pulse", opts, s.log)
	if natsAuthError(err) {
		return refusedCredential("NATS", err)
	}
	if err != nil {
		return err
	}
	s.nc = nc
	if s.js, err = jetstream.New(nc); err != nil {
		return fmt.Errorf("jetstream context: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return stream.Ensure(ctx, s.js, s.flags.stream)
}

// httpServer builds the HTTP routes of the roles this process runs and
// binds the server that serves them.
func (s *process) httpServer(agg *aggregator.Aggregator) (*httpapi.Server, error) {
	srv := &httpapi.Server{Addr: s.flags.httpAddr, FallbackToFreePort: s.flags.httpAddr == defaultHTTPAddr,
		ShutdownTimeout: s.flags.shutdownTimeout, DrainGrace: s.flags.drainGrace, TLS: s.tls, Log: s.log}
	s.draining = srv.Draining
	e, err := s.router(agg)
	if err != nil {
		return nil, err
	}
	srv.Handler = e
	addr, err := srv.Listen()
	if err != nil {
		return nil, err
	}
	scheme := "http://"
	if s.tls != nil {
		scheme = "https://"
	}
	s.log.Info().Str("addr", scheme+addr.String()).Msg("HTTP listening")
	if s.tokens.generated != nil && (s.roles["ingest"] || s.roles["query"]) {
		printWelcome(s.stdout, scheme+addr.String(), s.tokens)
	}
	return srv, nil
}

// router builds the HTTP routes of the roles this process runs. Every
// route goes through httpapi.Router, so every route has its guard.
func (s *process) router(agg *aggregator.Aggregator) (*echo.Echo, error) {
	e := httpapi.New(s.log)
	reqMetrics, err := httpapi.RequestMetrics(s.metrics.Registerer())
	if err != nil {
		return nil, err
	}
	e.Use(reqMetrics)
	r := httpapi.NewRouter(e, auth.LogRejections(s.authn, s.log, 0))
	if err := s.rateLimits(r); err != nil {
		return nil, err
	}

	checks := []httpapi.Check{{Name: "nats", Probe: func(context.Context) error {
		if s.nc.Status() != nats.CONNECTED {
			return errors.New("not connected")
		}
		return nil
	}}}
	if s.store != nil {
		checks = append(checks,
			httpapi.Check{Name: "clickhouse", Probe: clickHouseCheck(s.store.Ping, s.authFails)},
			httpapi.Check{Name: "schema", Probe: func(ctx context.Context) error { return schema.Ready(ctx, s.store) }})
	}
	if s.redis != nil {
		checks = append(checks, httpapi.Check{Name: "redis_auth", Probe: redisAuthCheck(s.redis)})
	}
	httpapi.NewHealth(s.draining, checks...).Register(r)

	var edge *ingest.Edge
	if s.roles["ingest"] {
		cfg := s.flags.ingest
		cfg.Stream = s.flags.stream
		var err error
		if edge, err = ingest.New(cfg, s.nc, s.metrics.Registerer(), s.log); err != nil {
			return nil, err
		}
		edge.Register(r)
		s.edge = edge
	}
	r.Handle(http.MethodGet, "/metrics", auth.ScopeAdmin, echo.WrapHandler(s.metrics.Handler()))
	if s.roles["query"] {
		qc := query.Config{}
		if s.runner != nil {
			qc.Probes = s.runner // health answers from the probes while ClickHouse is down
		}
		api, err := query.New(qc, s.store, s.responseCache(), s.log)
		if err != nil {
			return nil, err
		}
		api.Register(r)
		alertAPI, err := alerts.NewAPI(alerts.APIConfig{Stream: s.alertStreams()}, s.rules, s.js, s.store, s.log)
		if err != nil {
			return nil, err
		}
		alertAPI.Register(r)
		nc := s.flags.notify
		nc.Stream = s.alertStreams()
		deliveryAPI, err := notify.NewAPI(nc, s.js, s.store, s.log)
		if err != nil {
			return nil, err
		}
		deliveryAPI.Register(r)
		s.validator = validate.New(s.flags.validate.cfg, s.validateDeps(r), s.log)
		s.validator.Register(r)
		st, err := stats.New(stats.Config{Stream: s.flags.stream.IngestStream}, s.store, s.js, statsEdge(edge), statsAggregator(agg))
		if err != nil {
			return nil, err
		}
		st.Register(r)
		dashboard.Register(r)
	}
	r.Handle(http.MethodGet, "/api/admin/openapi.json", auth.ScopeAdmin, func(c echo.Context) error {
		return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, httpapi.OpenAPI())
	})
	return e, nil
}

// notifyConfig reads the alert delivery flags: a malformed URL is a usage
// error naming the receiver, never quoting its URL.
func notifyConfig(f serveFlags) (notify.Config, error) {
	ams, err := notify.ParseAlertmanagerURLs(f.alertmanagerURL)
	if err != nil {
		return notify.Config{}, fmt.Errorf("%w: --alertmanager-url: %v", errUsage, err)
	}
	hooks, err := notify.ParseWebhooks(f.alertWebhooks)
	if err != nil {
		return notify.Config{}, fmt.Errorf("%w: --alert-webhook: %v", errUsage, err)
	}
	limit, err := ratelimit.ParseLimit(f.alertNotifyRate)
	if err != nil {
		return notify.Config{}, fmt.Errorf("%w: --alert-webhook-rate-limit: %v", errUsage, err)
	}
	c := notify.Config{Receivers: append(ams, hooks...), ExternalURL: f.externalURL, ResendEvery: f.alertResend, RateLimit: limit}
	if c.ExternalURL == "" {
		host, port, err := net.SplitHostPort(f.httpAddr)
		if ip := net.ParseIP(host); err == nil && (host == "" || ip != nil && ip.IsUnspecified()) {
			host = "127.0.0.1"
		}
		scheme := "http://"
		if f.tlsCert != "" {
			scheme = "https://"
		}
		if err == nil {
			c.ExternalURL = scheme + net.JoinHostPort(host, port)
		}
	}
	if err := c.Validate(); err != nil {
		return notify.Config{}, fmt.Errorf("%w: alert delivery: %v", errUsage, err)
	}
	return c, nil
}

// alertStreams is where alerts, their history and their state live.
func (s *process) alertStreams() alerts.StreamConfig {
	return alerts.StreamConfig{Replicas: s.flags.stream.Replicas}
}

// responseCache is Redis when a Redis URL is set (a Redis failure is a
// miss), else an in-process cache; it registers its hits and misses.
func (s *process) responseCache() cache.Cache {
	if s.redis != nil {
		if rc, err := cache.NewRedis(s.redis, "", s.metrics.Registerer(), s.log); err == nil {
			return rc
		}
		s.log.Warn().Msg("Redis cache unusable; caching in process")
	}
	return cache.NewMemory(cache.MemoryConfig{Registerer: s.metrics.Registerer()})
}

// rateLimits limits each principal's calls per route class, in Redis when
// a Redis URL is set (with the in-process limiter as fallback while Redis
// fails), in process otherwise.
func (s *process) rateLimits(r *httpapi.Router) error {
	mem := ratelimit.NewMemory()
	var limiter ratelimit.Limiter = mem
	if s.redis != nil {
		rl, err := ratelimit.NewRedis(s.redis, ratelimit.DefaultPrefix)
		if err != nil {
			return err
		}
		limiter = rl
	}
	admin, _ := ratelimit.ParseLimit(s.flags.adminLimit)
	ingest, _ := ratelimit.ParseLimit(s.flags.ingestLimit)
	r.Use(auth.ScopeAdmin, ratelimit.Middleware(limiter, ratelimit.ClassAdmin, admin, mem, ratelimit.Fallback, s.metrics.Registerer(), s.log))
	r.Use(auth.ScopeIngest, ratelimit.Middleware(limiter, ratelimit.ClassIngest, ingest, mem, ratelimit.Fallback, s.metrics.Registerer(), s.log))
	return nil
}

// close releases clients in dependency order: NATS connection (flushing
// acks), the embedded server, then ClickHouse.
func (s *process) close() {
	if s.nc != nil {
		if err := stream.Drain(s.nc, 5*time.Second); err != nil {
			s.log.Warn().Err(err).Msg("NATS connection closed without draining")
		}
	}
	if s.embedded != nil {
		s.embedded.Shutdown()
		s.embedded.WaitForShutdown()
	}
	if s.store != nil {
		_ = s.store.Close()
	}
	if s.redis != nil {
		_ = s.redis.Close()
	}
	if s.validator != nil {
		s.validator.Close()
	}
}

// validateDeps tells architecture validation what this deployment is.
func (s *process) validateDeps(r *httpapi.Router) validate.Deps {
	f := s.flags
	admins, _, _ := auth.ParseTokens(f.adminTokens, auth.ScopeAdmin)
	n := len(admins)
	if s.tokens.generated != nil {
		n = 1
	}
	var secret []byte
	if f.jwtSecret != "" {
		secret = []byte(f.jwtSecret)
	}
	urls := map[string]string{"clickhouse": f.clickhouseDSN}
	for name, u := range map[string]string{"nats": f.natsURL, "auth health": f.probe.AuthHealthURL, "realtime": f.probe.RealtimeURL, "redis": f.redisURL} {
		if u != "" {
			urls[name] = u
		}
	}
	for _, d := range f.probe.External {
		urls["external "+d.Name] = d.URL
	}
	d := validate.Deps{
		Store: s.store, Metrics: probe.StoreMetrics{Store: s.store},
		Publisher: probe.JetStreamPublisher{JS: s.js},
		Routes: func() []validate.Route {
			var out []validate.Route
			for _, ri := range r.Routes() {
				out = append(out, validate.Route{Method: ri.Method, Path: ri.Path, Scope: ri.Scope})
			}
			return out
		},
		Auth: validate.AuthSettings{AdminTokens: n, JWTSecret: secret, JWTLeeway: f.jwt.Leeway, JWTIssuer: f.jwt.Issuer, JWTAudience: f.jwt.Audience},
		Deployment: validate.Deployment{
			NATSEmbedded: f.natsURL == "",
			Streams: []validate.Stream{{Name: f.stream.IngestStream, Replicas: f.stream.Replicas, MaxAge: f.stream.MaxAge},
				{Name: f.stream.DeadLetterStream, Replicas: f.stream.Replicas}},
			Retention: s.retention, URLs: urls,
		},
	}
	if s.runner != nil {
		d.Health = s.runner
	}
	return d
}

func keys(m map[string]bool) []string {
	var out []string
	for _, r := range allRoles {
		if m[r] {
			out = append(out, r)
		}
	}
	return out
}

// statsEdge is edge as stats sees it: nil when this process runs none.
func statsEdge(edge *ingest.Edge) stats.Edge {
	if edge == nil {
		return nil
	}
	return edge
}

// statsAggregator is agg as stats sees it: nil when this process runs none.
func statsAggregator(agg *aggregator.Aggregator) stats.Aggregator {
	if agg == nil {
		return nil
	}
	return agg
}

// readCAFile reads PEM CA certificates into a pool.
func readCAFile(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}
