package httpapi

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// HSTS is the Strict-Transport-Security value of every answer over TLS:
// browsers keep to HTTPS for a year.
const HSTS = "max-age=31536000"

// TLSFiles names the PEM files of the HTTP listener's TLS.
type TLSFiles struct {
	CertFile, KeyFile string // the server's certificate (chain) and key
	ClientCAFile      string // optional: demand client certificates signed by these CAs (mutual TLS)
}

// Config loads the files and returns a server TLS configuration. The
// certificate and key are read again on the first handshake after either
// file's modification time changed, so a renewed certificate (cert-manager,
// certbot) is served without a restart; a pair that does not load (say, the
// certificate written and its key not yet) is logged and the previous pair
// kept. The client CAs are read once.
func (f TLSFiles) Config(log zerolog.Logger) (*tls.Config, error) {
	if f.CertFile == "" || f.KeyFile == "" {
		return nil, errors.New("TLS needs a certificate file and a key file")
	}
	r := &certReloader{certFile: f.CertFile, keyFile: f.KeyFile, log: log.With().Str("component", "tls").Logger()}
	if err := r.load(); err != nil {
		return nil, err
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: r.get}
	if f.ClientCAFile != "" {
		pem, err := os.ReadFile(f.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("read client CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("client CA file %s holds no PEM certificate", f.ClientCAFile)
		}
		c.ClientCAs, c.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return c, nil
}

// certReloader serves a certificate pair, reloaded when its files change.
// get is safe for concurrent handshakes.
type certReloader struct {
	certFile, keyFile string
	log               zerolog.Logger

	mu              sync.Mutex
	cert            *tls.Certificate
	certMod, keyMod time.Time
}

// load reads the pair and remembers the files' modification times.
func (r *certReloader) load() error {
	certMod, keyMod := modTime(r.certFile), modTime(r.keyFile)
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("load TLS certificate and key: %w", err)
	}
	r.cert, r.certMod, r.keyMod = &cert, certMod, keyMod
	return nil
}

func (r *certReloader) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	certMod, keyMod := modTime(r.certFile), modTime(r.keyFile)
	r.mu.Lock()
	defer r.mu.Unlock()
	if certMod.Equal(r.certMod) && keyMod.Equal(r.keyMod) {
		return r.cert, nil
	}
	if err := r.load(); err != nil {
		// Not again until a file changes once more.
		r.certMod, r.keyMod = certMod, keyMod
		r.log.Warn().Err(err).Msg("TLS certificate changed but does not load; serving the previous one")
		return r.cert, nil
	}
	r.log.Info().Msg("TLS certificate reloaded")
	return r.cert, nil
}

// modTime is path's modification time, zero when it cannot be read.
func modTime(path string) time.Time {
	fi, err := os.Stat(path)
	if err != nil {
		return time.Time{}
	}
	return fi.ModTime()
}
