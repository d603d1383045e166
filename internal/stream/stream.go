// Package stream is Pulse's use of NATS JetStream: the subjects, the ingest
// stream and its dead-letter stream, the embedded server that `pulse serve`
// runs when no external NATS is configured, and client connections.
package stream

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
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

// errCodeSubjectOverlap is the server's "subjects overlap with an existing
// stream" (nats.go names no constant for it).
const errCodeSubjectOverlap jetstream.ErrorCode = 10065

// createOrUpdate creates the stream of cfg or updates it to cfg. Processes
// starting together race to create it: the loser's create can fail with
// "subjects overlap" or "name already in use" while the winner's stream is
// being created (on a cluster, until its replicas agree), so those errors
// are retried a few times, after which the stream exists and is updated.
func createOrUpdate(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig) error {
	var err error
	for attempt := 1; attempt <= 5; attempt++ {
		if _, err = js.CreateOrUpdateStream(ctx, cfg); err == nil {
			return nil
		}
		var apiErr *jetstream.APIError
		if !errors.As(err, &apiErr) || apiErr.ErrorCode != errCodeSubjectOverlap && apiErr.ErrorCode != jetstream.JSErrCodeStreamNameInUse {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Duration(attempt) * 200 * time.Millisecond):
		}
	}
	return err
}

// Ensure creates the ingest and dead-letter streams, or updates them to c.
//
// The ingest stream is a work queue: a message is removed once the
// aggregator acked it, so its bytes are the backlog, and discard-new makes
// a full backlog refuse publishes, which the edge turns into 503.
func Ensure(ctx context.Context, js jetstream.JetStream, c Config) error {
	err := createOrUpdate(ctx, js, jetstream.StreamConfig{
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
	err = createOrUpdate(ctx, js, jetstream.StreamConfig{
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
	err = createOrUpdate(ctx, js, jetstream.StreamConfig{
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

// ClientOptions is how a Pulse process proves itself to NATS and how it
// checks the server's certificate. The zero value connects without
// credentials and, on a tls:// URL, trusts the system's roots. Every NATS
// connection Pulse makes takes the same ClientOptions.
type ClientOptions struct {
	CredsFile string // a .creds file: user JWT and nkey seed (NATS accounts)
	NKeyFile  string // a file holding an nkey seed (a user nkey in the server's config)
	Token     string // a token the server demands (its authorization token)
	User      string // a user and password the server demands (the embedded
	Password  string // server's own user; no flag sets them)
	CAFile    string // PEM CA certificates that sign the server's certificate; implies TLS
	CertFile  string // PEM client certificate for mutual TLS, with KeyFile
	KeyFile   string

	// Registerer, when set, receives pulse_nats_errors_total{kind}: failed
	// reconnects and errors the server reports, by kind "auth" (a refused,
	// expired or revoked credential, a denied permission), "tls" (a
	// certificate not trusted) or "other".
	Registerer prometheus.Registerer
}

// Validate reports conflicting options: at most one credential, and a
// client certificate comes with its key.
func (o ClientOptions) Validate() error {
	n := 0
	for _, v := range []string{o.CredsFile, o.NKeyFile, o.Token, o.User} {
		if v != "" {
			n++
		}
	}
	switch {
	case n > 1:
		return errors.New("NATS: give one credential (creds file, nkey seed, token or user), not several")
	case (o.CertFile == "") != (o.KeyFile == ""):
		return errors.New("NATS: a client certificate needs its key, and a key its certificate")
	}
	return nil
}

// options are the nats.Option of o.
func (o ClientOptions) options() ([]nats.Option, error) {
	var opts []nats.Option
	switch {
	case o.CredsFile != "":
		opts = append(opts, nats.UserCredentials(o.CredsFile))
	case o.NKeyFile != "":
		opt, err := nats.NkeyOptionFromSeed(o.NKeyFile)
		if err != nil {
			return nil, fmt.Errorf("read NATS nkey seed: %w", err)
		}
		opts = append(opts, opt)
	case o.Token != "":
		opts = append(opts, nats.Token(o.Token))
	case o.User != "":
		opts = append(opts, nats.UserInfo(o.User, o.Password))
	}
	if o.CAFile != "" {
		opts = append(opts, nats.RootCAs(o.CAFile))
	}
	if o.CertFile != "" {
		opts = append(opts, nats.ClientCert(o.CertFile, o.KeyFile))
	}
	return opts, nil
}

// Connect dials NATS with o and keeps reconnecting forever; publishers see
// errors while it is away, nothing blocks. A refused credential or an
// untrusted certificate fails the first connect; the error names the cause,
// never the credential or the URL (which may hold one).
func Connect(url, name string, o ClientOptions, log zerolog.Logger) (*nats.Conn, error) {
	log = log.With().Str("component", "nats").Logger()
	if err := o.Validate(); err != nil {
		return nil, err
	}
	opts, err := o.options()
	if err != nil {
		return nil, err
	}
	errs, err := errorCounter(o.Registerer)
	if err != nil {
		return nil, err
	}
	count := func(err error) {
		if errs != nil && err != nil {
			errs.WithLabelValues(errorKind(err)).Inc()
		}
	}
	opts = append(opts,
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
		nats.ReconnectErrHandler(func(_ *nats.Conn, err error) {
			count(err)
			if errorKind(err) != "other" {
				log.Warn().Err(err).Msg("NATS refused to reconnect")
			}
		}),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			count(err)
			log.Warn().Err(err).Msg("NATS error")
		}),
	)
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS: %w", err)
	}
	return nc, nil
}

// errorCounter registers pulse_nats_errors_total on reg, or finds it
// registered by an earlier connection; nil without reg.
func errorCounter(reg prometheus.Registerer) (*prometheus.CounterVec, error) {
	if reg == nil {
		return nil, nil
	}
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pulse_nats_errors_total",
		Help: "NATS connection errors: failed reconnects and errors the server reported, by kind (auth, tls, other).",
	}, []string{"kind"})
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if !errors.As(err, &are) {
			return nil, fmt.Errorf("register NATS metrics: %w", err)
		}
		return are.ExistingCollector.(*prometheus.CounterVec), nil
	}
	return c, nil
}

// errorKind sorts a NATS connection error for pulse_nats_errors_total.
func errorKind(err error) string {
	var unknownCA x509.UnknownAuthorityError
	var invalid x509.CertificateInvalidError
	var hostname x509.HostnameError
	var verify *tls.CertificateVerificationError
	switch {
	case errors.Is(err, nats.ErrAuthorization), errors.Is(err, nats.ErrAuthExpired),
		errors.Is(err, nats.ErrAuthRevoked), errors.Is(err, nats.ErrPermissionViolation):
		return "auth"
	case errors.As(err, &unknownCA), errors.As(err, &invalid), errors.As(err, &hostname), errors.As(err, &verify):
		return "tls"
	}
	return "other"
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
	// Token, when set, is demanded of every client (Pulse connects with it:
	// ClientOptions returns it). Required, or users (LoadUsersFile), unless
	// Listen is a loopback address.
	Token string

	users        []*server.User     // from LoadUsersFile, with Pulse's own
	nkeys        []*server.NkeyUser // from LoadUsersFile
	selfPassword string             // of SelfUser, made up by LoadUsersFile
}

// SelfUser is the user Pulse connects to its embedded NATS as when users
// are configured (LoadUsersFile): full rights, with a password made up at
// each start and never written anywhere. A users file may not name it.
const SelfUser = "pulse-embedded-self"

// LoadUsersFile reads the users the embedded server admits from path, a
// nats-server configuration file of which only the authorization block's
// users (user/password, bcrypt hashes included, or nkey) and their
// permissions count. Pulse adds SelfUser for its own connection. A file
// that cannot be read or parsed, defines accounts, a token or no user at
// all, or names SelfUser, is an error that never quotes a password.
//
// A publisher of events needs these permissions (JetStream answers a
// publish on the publisher's inbox):
//
//	permissions: { publish: ["pulse.ingest.>"], subscribe: ["_INBOX.>"] }
func (c *EmbeddedConfig) LoadUsersFile(path string) error {
	o, err := server.ProcessConfigFile(path)
	if err != nil {
		return fmt.Errorf("read NATS users file: %w", err)
	}
	switch {
	case len(o.Accounts) > 0:
		return fmt.Errorf("NATS users file %s defines accounts; the embedded NATS takes users only (an authorization block), an external NATS takes accounts", path)
	case o.Authorization != "" || o.Username != "":
		return fmt.Errorf("NATS users file %s sets a single token or user; give a users list (or use the token file flag)", path)
	case len(o.Users)+len(o.Nkeys) == 0:
		return fmt.Errorf("NATS users file %s defines no users (want authorization { users = [...] })", path)
	}
	for _, u := range o.Users {
		if u.Username == SelfUser {
			return fmt.Errorf("NATS users file %s names %s, the user Pulse itself connects as; rename it", path, SelfUser)
		}
	}
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return fmt.Errorf("make up a NATS password: %w", err)
	}
	c.selfPassword = hex.EncodeToString(b)
	c.users = append([]*server.User{{Username: SelfUser, Password: c.selfPassword}}, o.Users...)
	c.nkeys = o.Nkeys
	return nil
}

// ClientOptions is how Pulse connects to the embedded server c describes.
func (c EmbeddedConfig) ClientOptions() ClientOptions {
	if c.selfPassword != "" {
		return ClientOptions{User: SelfUser, Password: c.selfPassword}
	}
	return ClientOptions{Token: c.Token}
}

// Authenticated reports whether the server c describes demands a
// credential of every client.
func (c EmbeddedConfig) Authenticated() bool { return c.Token != "" || c.selfPassword != "" }

// ErrUnauthenticatedListen is RunEmbedded's refusal to listen beyond
// loopback without authentication.
var ErrUnauthenticatedListen = errors.New("embedded NATS listens beyond loopback without authentication: anyone who reaches it could publish events, read alerts and purge streams; set a token file or a users file, or listen on 127.0.0.1")

// loopback reports whether host (of a listen address) is reachable from
// this machine only.
func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// RunEmbedded starts a NATS server with JetStream in this process and waits
// until it accepts connections. The caller shuts it down with Shutdown and
// WaitForShutdown. If the configured port is taken (say, by a system NATS
// on 4222) it listens on a free port instead and logs which. On an address
// other than loopback it refuses to start without c.Token or users
// (ErrUnauthenticatedListen).
func RunEmbedded(c EmbeddedConfig, log zerolog.Logger) (*server.Server, error) {
	host, portStr, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return nil, fmt.Errorf("embedded NATS listen address %q: %w", c.Listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("embedded NATS listen address %q: bad port", c.Listen)
	}
	switch {
	case !c.Authenticated() && !loopback(host):
		return nil, fmt.Errorf("%w (listen address %s)", ErrUnauthenticatedListen, c.Listen)
	case c.Token != "" && c.selfPassword != "":
		return nil, errors.New("embedded NATS: give a token or users, not both")
	}
	switch {
	case port == 0: // any free port (to the NATS server, 0 means 4222)
		port = server.RANDOM_PORT
	case port > 0:
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
		Authorization:      c.Token,
		Users:              c.users,
		Nkeys:              c.nkeys,
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

// RegisterBacklogMetrics registers on reg the backlog of consumer on the
// stream named stream, read from JetStream on each scrape (0 while it
// cannot be read):
//
//	pulse_stream_pending_messages      messages not yet delivered to the consumer (stream lag)
//	pulse_stream_ack_pending_messages  messages delivered and not yet acknowledged
func RegisterBacklogMetrics(reg prometheus.Registerer, js jetstream.JetStream, stream, consumer string) error {
	read := func(f func(*jetstream.ConsumerInfo) float64) func() float64 {
		return func() float64 {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			c, err := js.Consumer(ctx, stream, consumer)
			if err != nil {
				return 0
			}
			return f(c.CachedInfo())
		}
	}
	for _, g := range []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "pulse_stream_pending_messages",
			Help: "Ingest messages not yet delivered to the aggregator (stream lag)."},
			read(func(i *jetstream.ConsumerInfo) float64 { return float64(i.NumPending) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "pulse_stream_ack_pending_messages",
			Help: "Ingest messages delivered to the aggregator and not yet committed."},
			read(func(i *jetstream.ConsumerInfo) float64 { return float64(i.NumAckPending) })),
	} {
		if err := reg.Register(g); err != nil {
			return fmt.Errorf("register stream metrics: %w", err)
		}
	}
	return nil
}
