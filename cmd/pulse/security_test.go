package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/wedsync/pulse/internal/testenv"
)

// runPulse runs the binary to its end and returns its exit code and
// output; it fails the test if the run takes over a minute.
func runPulse(t *testing.T, bin string, env []string, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return ee.ExitCode(), out.String()
	case err != nil:
		t.Fatalf("pulse %v: %v", args, err)
	}
	return 0, out.String()
}

// ingestOne posts one request metric for endpoint to the Pulse at base
// with an ingest token and returns the answer's status.
func ingestOne(t *testing.T, client *http.Client, base, token, endpoint string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/api/admin/system/metrics",
		strings.NewReader(`{"endpoint":"`+endpoint+`","response_time_ms":12,"status_code":200,"service":"web"}`))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func secretFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestServeSecureNATS runs every role against a NATS server that demands
// TLS from a private CA and a token: events flow end to end, `pulse alerts
// tail` connects the same way, and without the CA, with a wrong token or
// with a missing file pulse refuses to start, naming the cause and never
// the token.
func TestServeSecureNATS(t *testing.T) {
	bin := pulseBinary(t, "")
	ca := testenv.NewCA(t)
	token := newSecret("natstok", 24)
	ns := testenv.NATSWith(t, func(o *server.Options) {
		o.TLSConfig = ca.ServerTLS(t, false)
		o.Authorization = token
	})
	if !strings.HasPrefix(ns.ClientURL(), "tls://") {
		t.Fatalf("NATS client URL %s; want tls://", ns.ClientURL())
	}
	// ClickHouse is reached over TLS too, through a proxy with the same CA.
	store := testenv.ClickHouse(t)
	chDSN := "clickhouse://default:@" + ca.TLSProxy(t, hostOf(t, testenv.ClickHouseDSN(), "127.0.0.1:9000"), false) + "/" + store.Database()
	if code, out := runPulse(t, bin, nil, "migrate", "--clickhouse-dsn", chDSN, "--clickhouse-ca", ca.CAFile); code != 0 {
		t.Fatalf("migrate over TLS: exit %d\n%s", code, out)
	}
	if code, out := runPulse(t, bin, nil, "migrate", "--clickhouse-dsn", chDSN); code != 1 {
		t.Errorf("migrate to a TLS port without TLS: exit %d; want 1\n%s", code, out)
	}
	// A proxy that demands a client certificate: --clickhouse-cert/--clickhouse-key.
	mutualDSN := "clickhouse://default:@" + ca.TLSProxy(t, hostOf(t, testenv.ClickHouseDSN(), "127.0.0.1:9000"), true) + "/" + store.Database()
	if code, out := runPulse(t, bin, nil, "migrate", "--clickhouse-dsn", mutualDSN, "--clickhouse-ca", ca.CAFile,
		"--clickhouse-cert", ca.ClientCert, "--clickhouse-key", ca.ClientKey); code != 0 {
		t.Fatalf("migrate over mutual TLS: exit %d\n%s", code, out)
	}
	if code, out := runPulse(t, bin, nil, "migrate", "--clickhouse-dsn", mutualDSN, "--clickhouse-ca", ca.CAFile); code != 1 {
		t.Errorf("migrate over mutual TLS without a client certificate: exit %d; want 1\n%s", code, out)
	}
	if code, out := runPulse(t, bin, nil, "migrate", "--clickhouse-dsn", mutualDSN, "--clickhouse-cert", ca.ClientCert); code != 2 || !strings.Contains(out, "--clickhouse-key") {
		t.Errorf("--clickhouse-cert without --clickhouse-key: exit %d; want 2 naming the flag\n%s", code, out)
	}
	ingestToken := newSecret("ingtok", 24)
	tokenFile := secretFile(t, "nats-token", token)
	// The ClickHouse DSN and the ingest tokens come from files (_FILE twins).
	base := []string{"PULSE_LOG_FORMAT=json", "PULSE_DATA_DIR=" + t.TempDir(), "PULSE_NATS_URL=" + ns.ClientURL(),
		"PULSE_CLICKHOUSE_DSN_FILE=" + secretFile(t, "dsn", chDSN), "PULSE_CLICKHOUSE_CA=" + ca.CAFile, "PULSE_ADMIN_TOKENS=ops:" + newSecret("admtok", 24),
		"PULSE_INGEST_TOKENS_FILE=" + secretFile(t, "ingest-tokens", "fleet:"+ingestToken)}

	p := startPulse(t, bin, append(base, "PULSE_HTTP_ADDR="+testenv.FreeAddr(t), "PULSE_NATS_CA="+ca.CAFile, "PULSE_NATS_TOKEN_FILE="+tokenFile), "serve")
	if code := ingestOne(t, http.DefaultClient, "http://"+p.httpAddr(), ingestToken, "/api/tls"); code != http.StatusAccepted {
		t.Fatalf("ingest answered %d; want 202", code)
	}
	testenv.Eventually(t, 30*time.Second, "the event in ClickHouse", func() bool {
		return testenv.Count(t, store, "SELECT count() FROM "+store.T("requests")+" WHERE endpoint = '/api/tls'") == 1
	})
	if strings.Contains(p.stderr.String(), token) {
		t.Error("the NATS token appears in the log")
	}

	// alerts tail connects with the same flags.
	tail := exec.Command(bin, "alerts", "tail", "--nats-url", ns.ClientURL(), "--nats-ca", ca.CAFile, "--nats-token-file", tokenFile)
	var tailOut testenv.LogBuffer
	tail.Stdout, tail.Stderr = &tailOut, &tailOut
	if err := tail.Start(); err != nil {
		t.Fatal(err)
	}
	tailDone := make(chan error, 1)
	go func() { tailDone <- tail.Wait() }()
	t.Cleanup(func() { _ = tail.Process.Kill(); <-tailDone })
	testenv.Eventually(t, 30*time.Second, "alerts tail listening", func() bool {
		return strings.Contains(tailOut.String(), "# listening on")
	})
	_ = p.terminate(30 * time.Second)

	f := func(name string, env []string, code int, want ...string) {
		t.Run(name, func(t *testing.T) {
			got, out := runPulse(t, bin, append(append(base, "PULSE_HTTP_ADDR="+testenv.FreeAddr(t)), env...), "serve")
			if got != code {
				t.Errorf("exit %d; want %d\n%s", got, code, out)
			}
			for _, w := range want {
				if !strings.Contains(out, w) {
					t.Errorf("output does not say %q:\n%s", w, out)
				}
			}
			if strings.Contains(out, token) {
				t.Errorf("the output holds the NATS token:\n%s", out)
			}
		})
	}
	f("without the CA", []string{"PULSE_NATS_TOKEN_FILE=" + tokenFile}, 1, "connect to NATS", "certificate signed by unknown authority")
	f("with a wrong token", []string{"PULSE_NATS_CA=" + ca.CAFile, "PULSE_NATS_TOKEN_FILE=" + secretFile(t, "wrong", "wrong-"+token)}, 2, "NATS refused Pulse's credential", "uthorization")
	f("with a missing CA file", []string{"PULSE_NATS_CA=" + filepath.Join(t.TempDir(), "none.pem"), "PULSE_NATS_TOKEN_FILE=" + tokenFile}, 2, "--nats-ca")
	f("with a missing token file", []string{"PULSE_NATS_CA=" + ca.CAFile, "PULSE_NATS_TOKEN_FILE=" + filepath.Join(t.TempDir(), "none")}, 2, "--nats-token-file")
	f("with a certificate without its key", []string{"PULSE_NATS_CA=" + ca.CAFile, "PULSE_NATS_CERT=" + ca.ClientCert}, 2, "key")
}

// TestServeEmbeddedNATSListen: the embedded NATS on a non-loopback address
// refuses to start without a token or users; with one, Pulse connects with
// it and a client without it cannot publish to pulse.ingest.>; a
// publisher's user may publish events and nothing more.
func TestServeEmbeddedNATSListen(t *testing.T) {
	bin := pulseBinary(t, "")
	_, port, _ := net.SplitHostPort(testenv.FreeAddr(t))
	base := []string{"PULSE_LOG_FORMAT=json", "PULSE_ROLES=ingest", "PULSE_NATS_LISTEN=0.0.0.0:" + port,
		"PULSE_ADMIN_TOKENS=ops:" + newSecret("admtok", 24), "PULSE_INGEST_TOKENS=fleet:" + newSecret("ingtok", 24)}

	code, out := runPulse(t, bin, append(base, "PULSE_HTTP_ADDR="+testenv.FreeAddr(t), "PULSE_DATA_DIR="+t.TempDir()), "serve")
	if code != 2 || !strings.Contains(out, "--nats-listen") || !strings.Contains(out, "without authentication") {
		t.Fatalf("serve on 0.0.0.0 without a token: exit %d; want 2 naming --nats-listen\n%s", code, out)
	}

	token := newSecret("embtok", 24)
	p := startPulse(t, bin, append(base, "PULSE_HTTP_ADDR="+testenv.FreeAddr(t), "PULSE_DATA_DIR="+t.TempDir(),
		"PULSE_NATS_LISTEN_TOKEN_FILE="+secretFile(t, "token", token)), "serve")
	url := strings.Replace(p.natsURL(), "0.0.0.0", "127.0.0.1", 1)
	if nc, err := nats.Connect(url); err == nil {
		err := nc.Publish("pulse.ingest.requests.intruder", []byte(`{}`))
		if err == nil {
			err = nc.Flush()
		}
		nc.Close()
		t.Fatalf("a client without the token connected (publish: %v)", err)
	} else if !errors.Is(err, nats.ErrAuthorization) {
		t.Errorf("connect without the token: %v; want an authorization violation", err)
	}
	nc, err := nats.Connect(url, nats.Token(token))
	if err != nil {
		t.Fatalf("connect with the token: %v", err)
	}
	nc.Close()
	if strings.Contains(p.stderr.String(), token) {
		t.Error("the token appears in the log")
	}
	_ = p.terminate(30 * time.Second)

	// With a users file: the publisher's JetStream publish to
	// pulse.ingest.> is acked, its purge of the ingest stream is not
	// answered, and a client without a credential does not get in.
	password := newSecret("fleetpw", 24)
	users := secretFile(t, "users.conf", `authorization { users = [
  { user: fleet, password: "`+password+`", permissions: { publish: ["pulse.ingest.>"], subscribe: ["_INBOX.>"] } } ] }`)
	p = startPulse(t, bin, append(base, "PULSE_HTTP_ADDR="+testenv.FreeAddr(t), "PULSE_DATA_DIR="+t.TempDir(),
		"PULSE_NATS_LISTEN_USERS_FILE="+users), "serve")
	url = strings.Replace(p.natsURL(), "0.0.0.0", "127.0.0.1", 1)
	if nc, err := nats.Connect(url); err == nil {
		nc.Close()
		t.Fatal("a client without a credential connected to the embedded NATS with users")
	}
	fleet, err := nats.Connect(url, nats.UserInfo("fleet", password))
	if err != nil {
		t.Fatalf("the publisher connects: %v", err)
	}
	defer fleet.Close()
	js, err := jetstream.New(fleet)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.Publish(ctx, "pulse.ingest.resources.fleet", []byte(`{"cpu":1}`)); err != nil {
		t.Errorf("the publisher's publish to pulse.ingest.resources.fleet: %v; want acked", err)
	}
	if _, err := fleet.Request("$JS.API.STREAM.PURGE.PULSE_INGEST", nil, 500*time.Millisecond); err == nil {
		t.Error("the publisher's purge of the ingest stream was answered")
	}
	if strings.Contains(p.stderr.String(), password) {
		t.Error("the publisher's password appears in the log")
	}
	code, out = runPulse(t, bin, append(base, "PULSE_HTTP_ADDR="+testenv.FreeAddr(t), "PULSE_DATA_DIR="+t.TempDir(),
		"PULSE_NATS_LISTEN_USERS_FILE="+secretFile(t, "bad.conf", `authorization { token: "`+password+`" }`)), "serve")
	if code != 2 || !strings.Contains(out, "--nats-listen-users-file") || strings.Contains(out, password) {
		t.Errorf("serve with a users file holding a token: exit %d; want 2 naming the flag, never the secret\n%s", code, out)
	}
}

func TestSecretFileTwins(t *testing.T) {
	secret := newSecret("jwtsecret", 48)
	parse := func() (string, string, error) {
		fs := newFlagSet("x", io.Discard)
		jwt := fs.String("jwt-secret", "", "")
		roles := fs.String("roles", "all", "")
		err := parseWithEnv(fs, nil)
		return *jwt, *roles, err
	}
	t.Setenv("PULSE_JWT_SECRET_FILE", secretFile(t, "jwt", secret)) // with a trailing newline
	t.Setenv("PULSE_ROLES_FILE", secretFile(t, "roles", "ingest"))  // not a secret flag: no file twin
	jwt, roles, err := parse()
	if err != nil || jwt != secret || roles != "all" {
		t.Errorf("jwt-secret %q, roles %q, err %v; want the file's secret without its newline, all, nil", jwt, roles, err)
	}

	t.Setenv("PULSE_JWT_SECRET", "also-set-directly-0123456789abcdef")
	if _, _, err := parse(); !errors.Is(err, errUsage) || !strings.Contains(err.Error(), "PULSE_JWT_SECRET_FILE") {
		t.Errorf("both twins set: err %v; want a usage error naming PULSE_JWT_SECRET_FILE", err)
	}
	os.Unsetenv("PULSE_JWT_SECRET")

	t.Setenv("PULSE_JWT_SECRET_FILE", secretFile(t, "empty", "")) // a newline only
	if _, _, err := parse(); !errors.Is(err, errUsage) {
		t.Errorf("empty secret file: err %v; want a usage error", err)
	}

	// A missing file stops pulse serve with exit 2 naming the variable and
	// the flag.
	t.Setenv("PULSE_JWT_SECRET_FILE", filepath.Join(t.TempDir(), "missing"))
	var stderr bytes.Buffer
	if code := run([]string{"serve"}, io.Discard, &stderr); code != 2 {
		t.Errorf("serve with a missing PULSE_JWT_SECRET_FILE: exit %d; want 2", code)
	}
	if !strings.Contains(stderr.String(), "PULSE_JWT_SECRET_FILE (--jwt-secret)") {
		t.Errorf("the error does not name the variable and the flag: %s", stderr.String())
	}
}

// TestServeHTTPS: with --tls-cert/--tls-key an HTTPS client trusting the
// CA reaches /healthz, plain HTTP does not; a certificate without its key
// is exit 2.
func TestServeHTTPS(t *testing.T) {
	bin := pulseBinary(t, "")
	ca := testenv.NewCA(t)
	// Redis is reached through a TLS proxy with the same CA (--redis-ca).
	redisURL, err := url.Parse(testenv.RedisURL())
	if err != nil {
		t.Fatal(err)
	}
	rediss := "rediss://" + ca.TLSProxy(t, redisURL.Host, false) + redisURL.Path
	fleet, ingestToken := newSecret("fleettls", 12), newSecret("ingtok", 24)
	base := []string{"PULSE_LOG_FORMAT=json", "PULSE_ROLES=ingest", "PULSE_NATS_LISTEN=" + testenv.FreeAddr(t),
		"PULSE_ADMIN_TOKENS=ops:" + newSecret("admtok", 24), "PULSE_INGEST_TOKENS=" + fleet + ":" + ingestToken}
	p := startPulse(t, bin, append(base, "PULSE_HTTP_ADDR="+testenv.FreeAddr(t), "PULSE_DATA_DIR="+t.TempDir(),
		"PULSE_REDIS_URL="+rediss, "PULSE_REDIS_CA="+ca.CAFile, "PULSE_INGEST_RATE_LIMIT=1/hour"),
		"serve", "--tls-cert", ca.ServerCert, "--tls-key", ca.ServerKey)
	addr := p.httpAddr()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}}}
	defer client.CloseIdleConnections()
	resp, err := client.Get("https://" + addr + "/healthz")
	if err != nil {
		t.Fatalf("GET /healthz over HTTPS: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Strict-Transport-Security") == "" {
		t.Errorf("GET /healthz over HTTPS: %d, HSTS %q; want 200 with HSTS", resp.StatusCode, resp.Header.Get("Strict-Transport-Security"))
	}
	if resp, err := http.Get("http://" + addr + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Error("plain HTTP reached /healthz")
		}
	}
	if _, err := http.DefaultClient.Get("https://" + addr + "/healthz"); err == nil {
		t.Error("a client without the CA trusted the certificate")
	}

	// An ingest call is rate limited in Redis, over TLS.
	rdb := testenv.Redis(t)
	key := "pulse:rl:ingest:" + fleet
	t.Cleanup(func() { rdb.Del(context.Background(), key) })
	if code := ingestOne(t, client, "https://"+addr, ingestToken, "/api/tls"); code != http.StatusAccepted {
		t.Errorf("ingest over HTTPS: %d; want 202", code)
	}
	if n, err := rdb.Exists(context.Background(), key).Result(); err != nil || n != 1 {
		t.Errorf("Redis holds %d rate-limit keys %s (%v); want 1: Redis over TLS unused", n, key, err)
	}

	code, out := runPulse(t, bin, append(base, "PULSE_HTTP_ADDR="+testenv.FreeAddr(t), "PULSE_DATA_DIR="+t.TempDir()), "serve", "--tls-cert", ca.ServerCert)
	if code != 2 || !strings.Contains(out, "--tls-cert") {
		t.Errorf("--tls-cert without --tls-key: exit %d; want 2 naming the flag\n%s", code, out)
	}
	code, out = runPulse(t, bin, append(base, "PULSE_HTTP_ADDR="+testenv.FreeAddr(t), "PULSE_DATA_DIR="+t.TempDir(),
		"PULSE_REDIS_URL="+rediss, "PULSE_REDIS_CA="+ca.ServerKey), "serve")
	if code != 2 || !strings.Contains(out, "--redis-ca") {
		t.Errorf("--redis-ca without a certificate: exit %d; want 2 naming the flag\n%s", code, out)
	}
}

// TestNATSFlagsMismatch: NATS client flags without --nats-url, or the
// embedded server's token file with it, are usage errors, not ignored.
func TestNATSFlagsMismatch(t *testing.T) {
	token := secretFile(t, "token", newSecret("tok", 24))
	f := func(want string, args ...string) {
		t.Helper()
		var stderr bytes.Buffer
		args = append([]string{"serve", "--data-dir", t.TempDir(), "--http-addr", testenv.FreeAddr(t)}, args...)
		if code := run(args, io.Discard, &stderr); code != 2 || !strings.Contains(stderr.String(), want) {
			t.Errorf("pulse %v: exit %d, %q; want 2 saying %q", args, code, stderr.String(), want)
		}
	}
	f("are for --nats-url", "--nats-token-file", token)
	f("are for the embedded NATS", "--nats-url", "nats://127.0.0.1:1", "--nats-listen-token-file", token)
}
