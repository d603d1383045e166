package pulseclient

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/wedsync/pulse/internal/event"
)

// MiddlewareOptions say how Middleware names a request.
type MiddlewareOptions struct {
	// Route returns the route template of r (e.g. "/api/clients/{id}");
	// nil uses the path of r.Pattern when a ServeMux matched one, else
	// r.URL.Path (Pulse turns numeric and UUID segments into ":id").
	Route func(r *http.Request) string
	// UserID returns the signed-in user's UUID, or "".
	UserID func(r *http.Request) string
	// RequestID returns the request's ID (e.g. its X-Request-Id), or "".
	RequestID func(r *http.Request) string
}

// Middleware returns next wrapped: every request it serves is recorded with
// its duration, status, method, route and user once next returns. A panic
// in next is recorded as a 500 and re-panicked. Recording never blocks.
func (c *Client) Middleware(next http.Handler, o MiddlewareOptions) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			m := Metric{ResponseTime: time.Since(start), StatusCode: sw.status, Method: r.Method, Timestamp: start}
			if m.StatusCode == 0 {
				m.StatusCode = http.StatusOK
			}
			if p := recover(); p != nil {
				m.StatusCode = http.StatusInternalServerError
				m.ErrorMessage = truncate(fmt.Sprint(p), event.MaxErrorMessageLen)
				defer panic(p)
			}
			switch {
			case o.Route != nil:
				m.Endpoint = o.Route(r)
			case r.Pattern != "":
				// "GET example.com/a/{id}" names the route "/a/{id}".
				m.Endpoint = r.Pattern[strings.IndexByte(r.Pattern, '/'):]
			default:
				m.Endpoint = r.URL.Path
			}
			if o.UserID != nil {
				m.UserID = o.UserID(r)
			}
			if o.RequestID != nil {
				m.RequestID = o.RequestID(r)
			}
			c.Record(m)
		}()
		next.ServeHTTP(sw, r)
	})
}

// statusWriter remembers the status a handler wrote.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush passes on to the underlying writer when it can flush.
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Hijack passes on to the underlying writer when it can hijack.
func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if h, ok := w.ResponseWriter.(http.Hijacker); ok {
		return h.Hijack()
	}
	return nil, nil, http.ErrNotSupported
}
