package probe

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/wedsync/pulse/internal/event"
)

// The error texts of drivers and HTTP clients quote what they tried to
// reach: a URL with its query (an apikey), a host and port, a user name.
// None of it may leave the probe. cause maps an error to one phrase of a
// fixed vocabulary, which is all that details and log lines ever carry.

// cause says in a few fixed words why err happened.
func cause(err error) string {
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
		return pgCause(pgErr.Code)
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

// pgCause names the Postgres error classes a probe can meet.
func pgCause(code string) string {
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
	case strings.HasPrefix(code, "57P"):
		return "database shutting down"
	case strings.HasPrefix(code, "42"):
		return "permission or syntax error"
	case strings.HasPrefix(code, "08"):
		return "connection failure"
	}
	return "database error"
}

// notConfigured is the result of a component or target that has no
// configuration. configured=false tells the query API to leave it out of
// the overall status.
func notConfigured(ts time.Time, component, target string) event.HealthResult {
	return result(ts, component, target, event.StatusUnknown, 0, reasonDetails{Configured: false, Reason: "not configured"})
}

type reasonDetails struct {
	Configured bool   `json:"configured"`
	Reason     string `json:"reason"`
}

// result assembles a health result; details is marshalled to a JSON object.
func result(ts time.Time, component, target, status string, ms float64, details any) event.HealthResult {
	d, err := json.Marshal(details)
	if err != nil || len(d) == 0 || d[0] != '{' || len(d) > event.MaxDetailsLen {
		d = []byte(`{"details":"unavailable"}`)
	}
	return event.HealthResult{Timestamp: ts.UTC(), Component: component, Target: target, Status: status,
		ResponseTimeMS: roundMS(ms), Details: d}
}

// ms is d in milliseconds.
func ms(d time.Duration) float64 { return roundMS(float64(d) / float64(time.Millisecond)) }

// roundMS rounds to microseconds and keeps the value within what a health
// result may carry.
func roundMS(v float64) float64 {
	if math.IsNaN(v) || v < 0 {
		return 0
	}
	return math.Min(math.Round(v*1000)/1000, event.MaxResponseTimeMS)
}

// round4 rounds a ratio for details.
func round4(v float64) float64 { return math.Round(v*1e4) / 1e4 }

// never is a latency bound no check reaches: byLatency(d, x, never) is
// healthy or degraded.
const never = time.Duration(math.MaxInt64)

// byLatency rates a latency: below healthy is healthy, below degraded is
// degraded, else critical.
func byLatency(d, healthy, degraded time.Duration) string {
	switch {
	case d < healthy:
		return event.StatusHealthy
	case d < degraded:
		return event.StatusDegraded
	}
	return event.StatusCritical
}

// worse returns the worse of two statuses among healthy, degraded and
// critical.
func worse(a, b string) string {
	rank := map[string]int{event.StatusHealthy: 0, event.StatusDegraded: 1, event.StatusCritical: 2}
	if rank[b] > rank[a] {
		return b
	}
	return a
}

var sqlLiteral = regexp.MustCompile(`'(?:[^']|'')*'`)

// scrubSQL replaces string literals in a statement's text with '?', in
// case pg_stat_statements kept one it could not normalise.
func scrubSQL(q string) string { return sqlLiteral.ReplaceAllString(q, "'?'") }

// Hostname returns name as a host label: lower case, characters outside
// a-z, 0-9, '.', '_' and '-' replaced by '-', at most 253 bytes, never
// empty.
func Hostname(name string) string {
	name = strings.ToLower(strings.TrimSpace(name))
	b := []byte(name)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			b[i] = '-'
		}
	}
	if len(b) > 253 {
		b = b[:253]
	}
	if len(b) == 0 {
		return "unknown-host"
	}
	return string(b)
}
