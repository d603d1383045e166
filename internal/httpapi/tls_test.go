package httpapi

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"math/big"
	"net/http"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/rs/zerolog"

	"github.com/wedsync/pulse/internal/auth"
	"github.com/wedsync/pulse/internal/testenv"
)

// TestServerTLS: with a certificate from a test CA, HTTPS reaches /healthz
// (with HSTS), plain HTTP does not, a renewed certificate is served without
// a restart, and a client CA makes client certificates mandatory.
func TestServerTLS(t *testing.T) {
	ca := testenv.NewCA(t)
	cfg, err := TLSFiles{CertFile: ca.ServerCert, KeyFile: ca.ServerKey}.Config(zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	srv := &Server{Addr: "127.0.0.1:0", TLS: cfg, Log: zerolog.Nop()}
	e := New(zerolog.Nop())
	NewHealth(srv.Draining).Register(NewRouter(e, &auth.StaticTokens{}))
	srv.Handler = e
	addr, cancel, done := start(t, srv)
	defer func() { cancel(); <-done }()

	// A new connection per request, so that each sees the certificate
	// served now.
	client := func(certs ...tls.Certificate) *http.Client {
		return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
			TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), Certificates: certs}}}
	}
	serial := func() *big.Int {
		t.Helper()
		resp, err := client().Get("https://" + addr.String() + "/healthz")
		if err != nil {
			t.Fatalf("GET /healthz over HTTPS: %v", err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET /healthz over HTTPS: %d; want 200", resp.StatusCode)
		}
		if got := resp.Header.Get("Strict-Transport-Security"); got != HSTS {
			t.Errorf("Strict-Transport-Security %q; want %q", got, HSTS)
		}
		return resp.TLS.PeerCertificates[0].SerialNumber
	}
	first := serial()

	resp, err := http.Get("http://" + addr.String() + "/healthz")
	if err == nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Errorf("plain HTTP reached /healthz: %d %s", resp.StatusCode, body)
		}
	}

	// Renewal: the files are rewritten; the next handshake serves the new
	// certificate.
	ca.Issue(t, "server", x509.ExtKeyUsageServerAuth)
	if second := serial(); second.Cmp(first) == 0 {
		t.Error("the renewed certificate is not served")
	}

	// Mutual TLS.
	mcfg, err := TLSFiles{CertFile: ca.ServerCert, KeyFile: ca.ServerKey, ClientCAFile: ca.CAFile}.Config(zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	msrv := &Server{Addr: "127.0.0.1:0", TLS: mcfg, Handler: e, Log: zerolog.Nop()}
	maddr, mcancel, mdone := start(t, msrv)
	defer func() { mcancel(); <-mdone }()
	if resp, err := client().Get("https://" + maddr.String() + "/healthz"); err == nil {
		resp.Body.Close()
		t.Error("mutual TLS: a client without a certificate got an answer")
	}
	cert, err := tls.LoadX509KeyPair(ca.ClientCert, ca.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	resp, err = client(cert).Get("https://" + maddr.String() + "/healthz")
	if err != nil {
		t.Fatalf("mutual TLS with a client certificate: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("mutual TLS with a client certificate: %d; want 200", resp.StatusCode)
	}
}

func TestTLSFilesBad(t *testing.T) {
	ca := testenv.NewCA(t)
	for _, f := range []TLSFiles{
		{CertFile: ca.ServerCert},
		{CertFile: ca.ServerCert, KeyFile: ca.ClientKey}, // not its key
		{CertFile: ca.ServerCert, KeyFile: ca.ServerKey, ClientCAFile: ca.ServerKey},
		{CertFile: ca.ServerCert, KeyFile: ca.ServerKey, ClientCAFile: ca.CAFile + ".missing"},
	} {
		if _, err := f.Config(zerolog.Nop()); err == nil {
			t.Errorf("%+v: no error", f)
		}
	}
}

// TestSecurityHeaders: every answer says nosniff; answers of guarded
// routes (admin, ingest), refusals included, are no-store; public ones
// are not.
func TestSecurityHeaders(t *testing.T) {
	s := newServer(t)
	s.r.Handle(http.MethodGet, "/public", Public, func(c echo.Context) error { return c.String(http.StatusOK, "ok") })
	s.r.Handle(http.MethodGet, "/admin", auth.ScopeAdmin, func(c echo.Context) error { return c.String(http.StatusOK, "ok") })
	f := func(path, authorization string, wantStatus int, wantCache string) {
		t.Helper()
		rec := s.do(http.MethodGet, path, authorization)
		if rec.Code != wantStatus {
			t.Errorf("GET %s: %d; want %d", path, rec.Code, wantStatus)
		}
		if got := rec.Header().Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("GET %s: X-Content-Type-Options %q; want nosniff", path, got)
		}
		if got := rec.Header().Get("Cache-Control"); got != wantCache {
			t.Errorf("GET %s: Cache-Control %q; want %q", path, got, wantCache)
		}
	}
	f("/public", "", http.StatusOK, "")
	f("/admin", "Bearer "+adminToken, http.StatusOK, "no-store")
	f("/admin", "", http.StatusUnauthorized, "no-store")
	f("/admin", "Bearer "+ingestToken, http.StatusForbidden, "no-store")
	f("/nowhere", "", http.StatusNotFound, "")

	// HTML answers get the content security policy, others do not.
	s.r.Handle(http.MethodGet, "/page", Public, func(c echo.Context) error { return c.HTML(http.StatusOK, "<p>hi</p>") })
	s.r.Handle(http.MethodGet, "/own", Public, func(c echo.Context) error {
		c.Response().Header().Set("Content-Security-Policy", "default-src 'none'")
		return c.HTML(http.StatusOK, "<p>hi</p>")
	})
	for path, want := range map[string]string{"/page": ContentSecurityPolicy, "/own": "default-src 'none'", "/public": ""} {
		if got := s.do(http.MethodGet, path, "").Header().Get("Content-Security-Policy"); got != want {
			t.Errorf("GET %s: Content-Security-Policy %q; want %q", path, got, want)
		}
	}
}
