// Package safeerr turns errors into words that are safe to show. The error
// texts of drivers and HTTP clients quote what they tried to reach: a URL
// with its query (an apikey), a host and port, a user name. None of it may
// leave Pulse in a response, a health detail or a log line; Cause maps an
// error to one phrase of a fixed vocabulary instead.
package safeerr

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
)

// Cause says in a few fixed words why err happened.
func Cause(err error) string {
	var (
		pgErr   *pgconn.PgError
		dnsErr  *net.DNSError
		netErr  net.Error
		certErr *tls.CertificateVerificationError
		recErr  tls.RecordHeaderError
		alert   tls.AlertError
		unkAuth x509.UnknownAuthorityError
		host    x509.HostnameError
		inval   x509.CertificateInvalidError
		apiErr  *jetstream.APIError
	)
	switch {
	case err == nil:
		return ""
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.As(err, &pgErr):
		return PGCause(pgErr.Code)
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "connection reset"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "no route to host"
	case errors.As(err, &dnsErr):
		return "name not resolved"
	case errors.As(err, &certErr), errors.As(err, &unkAuth), errors.As(err, &host), errors.As(err, &inval),
		errors.As(err, &recErr), errors.As(err, &alert):
		return "tls handshake failed"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
		return "connection closed"
	case errors.Is(err, nats.ErrNoResponders), errors.Is(err, jetstream.ErrNoStreamResponse):
		return "no stream responded"
	case errors.Is(err, nats.ErrConnectionClosed), errors.Is(err, nats.ErrConnectionReconnecting), errors.Is(err, nats.ErrDisconnected):
		return "not connected"
	case errors.Is(err, nats.ErrTimeout):
		return "timeout"
	case errors.As(err, &apiErr):
		return "jetstream error " + strconv.Itoa(int(apiErr.ErrorCode))
	case errors.As(err, &netErr) && netErr.Timeout():
		return "timeout"
	}
	return "error"
}

// PGCause names a Postgres error class by its SQLSTATE code.
func PGCause(code string) string {
	switch {
	case code == "28P01" || code == "28000":
		return "authentication failed"
	case code == "3D000":
		return "database does not exist"
	case code == "53300":
		return "too many connections"
	case code == "57P03":
		return "database not accepting connections"
	case code == "57014":
		return "statement timeout"
	case code == "55P03":
		return "lock timeout"
	case strings.HasPrefix(code, "57P"):
		return "database shutting down"
	case strings.HasPrefix(code, "42"):
		return "permission or syntax error"
	case strings.HasPrefix(code, "08"):
		return "connection failure"
	}
	return "database error " + code
}

// RedisKind names the kind of a Redis failure (timeout, connection_refused,
// redis_<code>, ...) for a log line or a metric label, without quoting the
// error, whose text can hold Redis's address.
func RedisKind(err error) string {
	var ne net.Error
	var re redis.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection_refused"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "connection_lost"
	case errors.Is(err, redis.ErrPoolTimeout):
		return "pool_timeout"
	case errors.Is(err, redis.ErrClosed):
		return "client_closed"
	case errors.As(err, &re):
		// A Redis error reply starts with its code: ERR, LOADING, OOM,
		// READONLY, NOSCRIPT, ... The rest may name addresses (MOVED).
		code, _, _ := strings.Cut(re.Error(), " ")
		if code != "" && len(code) <= 16 && strings.Trim(code, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") == "" {
			return "redis_" + strings.ToLower(code)
		}
		return "redis_error"
	}
	return "other"
}
