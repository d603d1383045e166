package httpapi

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

// Production defaults of Server, chosen for 10,000 keep-alive clients: a
// client gets 10 s to send its headers and a minute for its body (an
// ingest body of up to 8 MiB on a slow link), an answer may take two
// minutes to write, and an idle connection is closed after two minutes.
const (
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultReadTimeout       = time.Minute
	DefaultWriteTimeout      = 2 * time.Minute
	DefaultIdleTimeout       = 2 * time.Minute
	DefaultMaxHeaderBytes    = 64 << 10
	DefaultShutdownTimeout   = 30 * time.Second
)

// Server is the HTTP server of a Pulse process. Set its fields, pass
// Draining to NewHealth, then call Listen (optional, to learn the address
// early) and Run once.
//
// Shutdown, when Run's context ends, follows the lame-duck order: Draining
// turns true so that /readyz answers 503 while the listener still accepts,
// for DrainGrace (load balancers move away); then the listener closes and
// requests in flight get up to ShutdownTimeout to finish.
type Server struct {
	Addr               string       // host:port to listen on
	FallbackToFreePort bool         // when Addr is taken, listen on a free port of the same host
	Handler            http.Handler // required
	// TLS, when set, makes the server speak HTTPS only (TLSFiles.Config
	// builds one) and adds Strict-Transport-Security to every answer.
	TLS             *tls.Config
	DrainGrace      time.Duration
	ShutdownTimeout time.Duration // default DefaultShutdownTimeout

	// Zero means the Default* value above.
	ReadHeaderTimeout, ReadTimeout, WriteTimeout, IdleTimeout time.Duration
	MaxHeaderBytes                                            int

	Log zerolog.Logger

	ln       net.Listener
	draining atomic.Bool
}

// Draining reports whether the server is shutting down. It is safe to
// call concurrently, before and after Run.
func (s *Server) Draining() bool { return s.draining.Load() }

// Listen binds Addr, or a free port of its host when Addr is taken and
// FallbackToFreePort is set, and returns the address bound. Run calls it
// when it was not called before.
func (s *Server) Listen() (net.Addr, error) {
	if s.ln != nil {
		return s.ln.Addr(), nil
	}
	ln, err := net.Listen("tcp", s.Addr)
	if err != nil && s.FallbackToFreePort {
		host, _, _ := net.SplitHostPort(s.Addr)
		s.Log.Warn().Str("wanted", s.Addr).Msg("HTTP port taken; listening on a free port instead")
		ln, err = net.Listen("tcp", net.JoinHostPort(host, "0"))
	}
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", s.Addr, err)
	}
	s.ln = ln
	return ln.Addr(), nil
}

// Run serves Handler until ctx ends, then shuts down as the type's comment
// says and returns nil; or it returns the error that stopped the server.
// It closes the listener in every case.
func (s *Server) Run(ctx context.Context) error {
	if s.Handler == nil {
		return errors.New("HTTP server: no handler")
	}
	if _, err := s.Listen(); err != nil {
		return err
	}
	h := s.Handler
	if s.TLS != nil {
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Strict-Transport-Security", HSTS)
			s.Handler.ServeHTTP(w, r)
		})
	}
	srv := &http.Server{
		Handler:           h,
		TLSConfig:         s.TLS,
		ReadHeaderTimeout: or(s.ReadHeaderTimeout, DefaultReadHeaderTimeout),
		ReadTimeout:       or(s.ReadTimeout, DefaultReadTimeout),
		WriteTimeout:      or(s.WriteTimeout, DefaultWriteTimeout),
		IdleTimeout:       or(s.IdleTimeout, DefaultIdleTimeout),
		MaxHeaderBytes:    or(s.MaxHeaderBytes, DefaultMaxHeaderBytes),
	}
	errc := make(chan error, 1)
	go func() {
		if s.TLS != nil {
			errc <- srv.ServeTLS(s.ln, "", "")
			return
		}
		errc <- srv.Serve(s.ln)
	}()
	select {
	case err := <-errc:
		return fmt.Errorf("HTTP server: %w", err)
	case <-ctx.Done():
	}
	s.draining.Store(true)
	if s.DrainGrace > 0 {
		s.Log.Info().Dur("grace", s.DrainGrace).Msg("not ready; closing the HTTP listener after the drain grace")
		select {
		case err := <-errc:
			return fmt.Errorf("HTTP server: %w", err)
		case <-time.After(s.DrainGrace):
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), or(s.ShutdownTimeout, DefaultShutdownTimeout))
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("HTTP shutdown: %w", err)
	}
	<-errc // http.ErrServerClosed
	return nil
}

// or returns v, or def when v is zero.
func or[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}
