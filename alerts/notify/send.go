package notify

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// sendError is a failed delivery attempt. Its text is safe to show and
// log: it never holds the receiver's URL.
type sendError struct {
	desc       string        // e.g. "HTTP 503 Service Unavailable", "connection refused"
	status     int           // HTTP status; 0 when no answer came
	retryAfter time.Duration // what the receiver asked to wait
}

func (e *sendError) Error() string { return e.desc }

// permanent reports whether sending the same body again cannot succeed:
// the receiver refused this message itself (400, 413, 422). A receiver
// that refuses everything (401, 403, 404, 5xx) is retried: it is broken,
// and reported, until someone fixes it.
func (e *sendError) permanent() bool {
	switch e.status {
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnprocessableEntity:
		return true
	}
	return false
}

// post sends body as JSON to url with client, each attempt bounded by
// timeout. The error is a *sendError.
func post(ctx context.Context, client *http.Client, url string, body any, timeout time.Duration, now time.Time) error {
	data, err := json.Marshal(body)
	if err != nil {
		return &sendError{desc: "encode the notification: " + err.Error()}
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(data))
	if err != nil {
		return &sendError{desc: "invalid receiver URL"}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "pulse-notify")
	resp, err := client.Do(req)
	if err != nil {
		return &sendError{desc: describe(err, timeout)}
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	return &sendError{desc: fmt.Sprintf("HTTP %d %s", resp.StatusCode, http.StatusText(resp.StatusCode)), status: resp.StatusCode,
		retryAfter: retryAfter(resp.Header.Get("Retry-After"), now)}
}

// describe names what went wrong with a request without quoting the URL
// (a *url.Error's text holds it).
func describe(err error, timeout time.Duration) string {
	var dns *net.DNSError
	var tlsErr tls.RecordHeaderError
	var certErr *tls.CertificateVerificationError
	var netErr net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &netErr) && netErr.Timeout()):
		return "no answer within " + timeout.String()
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.As(err, &dns):
		return "host name lookup failed"
	case errors.As(err, &tlsErr) || errors.As(err, &certErr) || strings.Contains(err.Error(), "tls:"):
		return "TLS handshake failed"
	case errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed by the receiver"
	case errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH):
		return "host unreachable"
	}
	return "request failed"
}

// retryAfter reads a Retry-After header: seconds or an HTTP date.
func retryAfter(h string, now time.Time) time.Duration {
	h = strings.TrimSpace(h)
	if h == "" {
		return 0
	}
	if s, err := strconv.Atoi(h); err == nil && s > 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(h); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
