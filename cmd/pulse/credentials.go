package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
)

// A dependency that refuses Pulse's credential at start is a configuration
// error (exit 2) naming the dependency and the server's reason, never the
// credential; one that refuses it later fails its /readyz check and counts
// in pulse_dependency_auth_failures_total{dependency}. A dependency that is
// merely away is not a credential problem: at start Pulse fails or waits
// as before, at run time each component's fallback applies.

// refusedCredential is err, a refusal of Pulse's credential by dependency,
// as a usage error.
func refusedCredential(dependency string, err error) error {
	return fmt.Errorf("%w: %s refused Pulse's credential: %v", errUsage, dependency, err)
}

// natsAuthError reports whether NATS refused the credential.
func natsAuthError(err error) bool {
	return errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) || errors.Is(err, nats.ErrAuthRevoked)
}

// clickHouseAuthError reports whether ClickHouse refused the user or its
// password: UNKNOWN_USER, WRONG_PASSWORD, REQUIRED_PASSWORD,
// IP_ADDRESS_NOT_ALLOWED, AUTHENTICATION_FAILED.
func clickHouseAuthError(err error) bool {
	var ex *clickhouse.Exception
	if !errors.As(err, &ex) {
		return false
	}
	switch ex.Code {
	case 192, 193, 194, 195, 516:
		return true
	}
	return false
}

// redisAuthError reports whether Redis refused the credential or the ACL
// user's rights: WRONGPASS, NOAUTH, NOPERM.
func redisAuthError(err error) bool {
	var re redis.Error
	if !errors.As(err, &re) {
		return false
	}
	msg := re.Error()
	return strings.HasPrefix(msg, "WRONGPASS") || strings.HasPrefix(msg, "NOAUTH") || strings.HasPrefix(msg, "NOPERM")
}

// postgresAuthError reports whether Postgres refused the role or its
// password (SQLSTATE class 28).
func postgresAuthError(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && strings.HasPrefix(pe.Code, "28")
}

// authFailures is pulse_dependency_auth_failures_total.
func authFailures(reg prometheus.Registerer) (*prometheus.CounterVec, error) {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pulse_dependency_auth_failures_total",
		Help: "Refusals of Pulse's credential by a dependency while running (clickhouse, redis, and postgres: the database probe's connections), by dependency. NATS counts in pulse_nats_errors_total{kind=\"auth\"}.",
	}, []string{"dependency"})
	if err := reg.Register(c); err != nil {
		return nil, fmt.Errorf("register credential metrics: %w", err)
	}
	c.WithLabelValues("clickhouse")
	c.WithLabelValues("redis")
	c.WithLabelValues("postgres")
	return c, nil
}

// redisAuthHook counts every Redis command refused for want of a valid
// credential or ACL right.
type redisAuthHook struct{ failures prometheus.Counter }

func (h redisAuthHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h redisAuthHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if redisAuthError(err) {
			h.failures.Inc()
		}
		return err
	}
}

func (h redisAuthHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		if redisAuthError(err) {
			h.failures.Inc()
		}
		return err
	}
}

// checkRedis pings Redis at start: a refused credential is a usage error;
// an unreachable Redis is logged, and the in-process fallbacks serve until
// it answers.
func checkRedis(ctx context.Context, rdb *redis.Client, log zerolog.Logger) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	err := rdb.Ping(ctx).Err()
	switch {
	case err == nil:
		return nil
	case redisAuthError(err):
		return refusedCredential("Redis", err)
	case tlsRefused(err):
		return fmt.Errorf("%w: Redis: TLS handshake failed: %v", errUsage, err)
	}
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, context.DeadlineExceeded) {
		log.Warn().Msg("Redis is not answering at start; rate limits and the cache work in process until it does")
		return nil
	}
	log.Warn().Str("error", err.Error()).Msg("Redis ping failed at start")
	return nil
}

// checkPostgres connects once to the app's Postgres at start: a refused
// role or password is a usage error; an unreachable server is left to the
// probes, which report it.
func checkPostgres(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err == nil {
		_ = conn.Close(ctx)
		return nil
	}
	if postgresAuthError(err) {
		var pe *pgconn.PgError
		errors.As(err, &pe)
		return refusedCredential("Postgres (--database-url)", fmt.Errorf("%s (SQLSTATE %s)", pe.Message, pe.Code))
	}
	return nil
}

// clickHouseCheck is the /readyz probe of ClickHouse: ping, and a refusal
// of the credential counts in failures.
func clickHouseCheck(ping func(context.Context) error, failures *prometheus.CounterVec) func(context.Context) error {
	return func(ctx context.Context) error {
		err := ping(ctx)
		if clickHouseAuthError(err) {
			failures.WithLabelValues("clickhouse").Inc()
			return errors.New("credential refused")
		}
		return err
	}
}

// redisAuthCheck fails while Redis refuses Pulse's credential (the hook
// counts it); an unreachable Redis passes: the fallbacks serve.
func redisAuthCheck(rdb *redis.Client) func(context.Context) error {
	return func(ctx context.Context) error {
		if err := rdb.Ping(ctx).Err(); redisAuthError(err) {
			return errors.New("credential refused")
		}
		return nil
	}
}

// redisTLS applies --redis-ca, --redis-cert and --redis-key to opt: any of
// them turns TLS on (rediss:// does too, trusting the system's roots); an
// unreadable file, or a certificate without its key, is a usage error
// naming the flag.
func redisTLS(opt *redis.Options, ca, cert, key string) error {
	if ca == "" && cert == "" && key == "" {
		return nil
	}
	if opt.TLSConfig == nil {
		host, _, _ := net.SplitHostPort(opt.Addr)
		opt.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: host}
	}
	if ca != "" {
		pool, err := readCAFile(ca)
		if err != nil {
			return fmt.Errorf("%w: --redis-ca: %v", errUsage, err)
		}
		opt.TLSConfig.RootCAs = pool
	}
	if (cert == "") != (key == "") {
		return fmt.Errorf("%w: --redis-cert and --redis-key go together", errUsage)
	}
	if cert != "" {
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return fmt.Errorf("%w: --redis-cert/--redis-key: %v", errUsage, err)
		}
		opt.TLSConfig.Certificates = []tls.Certificate{pair}
	}
	return nil
}

// tlsRefused reports whether err is a failed TLS handshake: a certificate
// not trusted, or one the server refused (or did not get).
func tlsRefused(err error) bool {
	var verify *tls.CertificateVerificationError
	var op *net.OpError // a TLS alert from the server is a "remote error"
	return errors.As(err, &verify) || errors.As(err, &op) && op.Op == "remote error"
}
