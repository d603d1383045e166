package chstore

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
)

// tlsConfig reads the TLS options of a clickhouse:// DSN: secure=true
// turns TLS on with the system's roots, ca=FILE (PEM) trusts that CA
// instead (and turns TLS on), cert=FILE and key=FILE present a client
// certificate. It returns nil when the DSN asks for no TLS.
func tlsConfig(u *url.URL) (*tls.Config, error) {
	q := u.Query()
	secure, ca, cert, key := q.Get("secure"), q.Get("ca"), q.Get("cert"), q.Get("key")
	switch secure {
	case "", "false", "true":
	default:
		return nil, fmt.Errorf("parse ClickHouse DSN: secure must be true or false")
	}
	if secure != "true" && ca == "" && cert == "" {
		return nil, nil
	}
	host, _, err := net.SplitHostPort(strings.Split(u.Host, ",")[0]) // one name for every host of a list
	if err != nil {
		host = u.Host
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: host}
	if ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return nil, fmt.Errorf("read ClickHouse CA file: %w", err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ClickHouse CA file %s holds no PEM certificate", ca)
		}
	}
	if (cert == "") != (key == "") {
		return nil, fmt.Errorf("parse ClickHouse DSN: cert and key go together")
	}
	if cert != "" {
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return nil, fmt.Errorf("load ClickHouse client certificate: %w", err)
		}
		c.Certificates = []tls.Certificate{pair}
	}
	return c, nil
}
