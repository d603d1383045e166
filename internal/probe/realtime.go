package probe

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/wedsync/pulse/internal/event"
)

// Realtime thresholds of the handshake time (connect, TLS and upgrade).
const (
	RealtimeHealthy  = 300 * time.Millisecond
	RealtimeDegraded = time.Second
)

// wsGUID is RFC 6455's key suffix of Sec-WebSocket-Accept.
const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// closeWait bounds how long the probe waits for the server's close frame.
const closeWait = 500 * time.Millisecond

var (
	errNotUpgraded = errors.New("handshake refused")
	errBadAccept   = errors.New("bad handshake")
)

// realtimeProbe opens a WebSocket and closes it again.
type realtimeProbe struct {
	u   *url.URL // nil: not configured
	tls *tls.Config
}

type realtimeDetails struct {
	Error      string  `json:"error,omitempty"`
	Cause      string  `json:"cause,omitempty"`
	HTTPStatus int     `json:"http_status,omitempty"`
	Scheme     string  `json:"scheme"`
	LatencyMS  float64 `json:"latency_ms"`
	Closed     string  `json:"closed,omitempty"` // "clean" when the server answered the close frame, else "abrupt"
}

func newRealtimeProbe(cfg Config) *realtimeProbe {
	p := &realtimeProbe{}
	if cfg.RealtimeURL != "" {
		p.u, _ = url.Parse(cfg.RealtimeURL) // validated
	}
	return p
}

func (p *realtimeProbe) component() string { return "realtime" }
func (p *realtimeProbe) close()            {}

// Probe runs the check once.
func (p *realtimeProbe) Probe(ctx context.Context) []event.HealthResult {
	h, _ := p.run(ctx)
	return h
}

func (p *realtimeProbe) run(ctx context.Context) ([]event.HealthResult, []event.ResourceSample) {
	ts := time.Now().UTC()
	if p.u == nil {
		return []event.HealthResult{notConfigured(ts, "realtime", "")}, nil
	}
	d := realtimeDetails{Scheme: p.u.Scheme}
	latency, code, clean, err := p.handshake(ctx)
	d.LatencyMS = ms(latency)
	status := byLatency(latency, RealtimeHealthy, RealtimeDegraded)
	switch {
	case errors.Is(err, errNotUpgraded):
		d.Error, d.HTTPStatus, status = "handshake refused", code, event.StatusCritical
	case errors.Is(err, errBadAccept):
		d.Error, d.HTTPStatus, status = "bad handshake", code, event.StatusCritical
	case err != nil:
		d.Error, d.Cause, status = "unreachable", cause(err), event.StatusCritical
	default:
		d.HTTPStatus, d.Closed = code, "abrupt"
		if clean {
			d.Closed = "clean"
		}
	}
	return []event.HealthResult{result(ts, "realtime", "", status, d.LatencyMS, d)}, nil
}

// handshake performs the opening handshake of RFC 6455 section 4 and then
// the closing one (a masked close frame with status 1000, waiting briefly
// for the server's). It returns the time to a validated 101 answer, the
// answer's status, and whether the server answered the close frame.
func (p *realtimeProbe) handshake(ctx context.Context) (time.Duration, int, bool, error) {
	host, port := p.u.Hostname(), p.u.Port()
	if port == "" {
		port = map[string]string{"ws": "80", "wss": "443"}[p.u.Scheme]
	}
	start := time.Now()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(host, port))
	if err != nil {
		return time.Since(start), 0, false, err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	if p.u.Scheme == "wss" {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if p.tls != nil {
			cfg = p.tls.Clone()
		}
		cfg.ServerName = host
		cfg.NextProtos = []string{"http/1.1"} // an HTTP/2 connection cannot be upgraded
		tc := tls.Client(conn, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			return time.Since(start), 0, false, err
		}
		conn = tc
	}

	var nonce [16]byte
	rand.Read(nonce[:])
	key := base64.StdEncoding.EncodeToString(nonce[:])
	bw := bufio.NewWriter(conn)
	fmt.Fprintf(bw, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\nUser-Agent: pulse-probe\r\n\r\n", p.u.RequestURI(), p.u.Host, key)
	if err := bw.Flush(); err != nil {
		return time.Since(start), 0, false, err
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodGet})
	if err != nil {
		return time.Since(start), 0, false, err
	}
	latency := time.Since(start)
	if resp.StatusCode != http.StatusSwitchingProtocols {
		resp.Body.Close()
		return latency, resp.StatusCode, false, errNotUpgraded
	}
	if !strings.EqualFold(resp.Header.Get("Upgrade"), "websocket") || !headerHasToken(resp.Header, "Connection", "upgrade") ||
		resp.Header.Get("Sec-WebSocket-Accept") != acceptKey(key) {
		return latency, resp.StatusCode, false, errBadAccept
	}
	return latency, resp.StatusCode, closeWebSocket(conn, br), nil
}

// acceptKey is the Sec-WebSocket-Accept a server must answer key with.
func acceptKey(key string) string {
	h := sha1.Sum([]byte(key + wsGUID))
	return base64.StdEncoding.EncodeToString(h[:])
}

func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// closeWebSocket sends a close frame with status 1000 (normal closure),
// masked as a client's frames must be, and waits up to closeWait for the
// server's close frame, skipping the frames it sends before. It reports
// whether that frame came.
func closeWebSocket(conn net.Conn, br *bufio.Reader) bool {
	var mask [4]byte
	rand.Read(mask[:])
	payload := []byte{0x03, 0xe8} // 1000
	frame := []byte{0x88, 0x80 | byte(len(payload)), mask[0], mask[1], mask[2], mask[3]}
	for i, b := range payload {
		frame = append(frame, b^mask[i%4])
	}
	if _, err := conn.Write(frame); err != nil {
		return false
	}
	conn.SetReadDeadline(time.Now().Add(closeWait))
	for range 16 {
		var hdr [2]byte
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			return false
		}
		n := uint64(hdr[1] & 0x7f)
		switch n {
		case 126:
			var ext [2]byte
			if _, err := io.ReadFull(br, ext[:]); err != nil {
				return false
			}
			n = uint64(ext[0])<<8 | uint64(ext[1])
		case 127:
			var ext [8]byte
			if _, err := io.ReadFull(br, ext[:]); err != nil {
				return false
			}
			n = 0
			for _, b := range ext {
				n = n<<8 | uint64(b)
			}
		}
		if hdr[1]&0x80 != 0 {
			n += 4 // a masked frame from a server is a protocol error; skip it all the same
		}
		if n > maxBody {
			return false
		}
		if _, err := br.Discard(int(n)); err != nil {
			return false
		}
		if hdr[0]&0x0f == 0x8 {
			return true
		}
	}
	return false
}
