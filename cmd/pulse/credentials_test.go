package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wedsync/pulse/internal/testenv"
)

// TestServeDependencyCredentials runs Pulse against servers of its own
// that check passwords: ClickHouse 18.16 with a password, Redis with
// requirepass and an ACL user, Postgres with scram-sha-256. With the right
// credentials it starts and is ready; with a wrong one it exits 2 naming
// the dependency, never a secret. When Redis stops accepting the ACL
// user's password while Pulse runs, /readyz answers 503 naming redis_auth
// and pulse_dependency_auth_failures_total{dependency="redis"} counts; the
// same for ClickHouse when its password changes and it restarts.
func TestServeDependencyCredentials(t *testing.T) {
	bin := pulseBinary(t, "")
	chPassword, pgPassword := newSecret("chpw", 24), newSecret("pgpw", 24)
	adminPassword, pulsePassword := newSecret("redisadm", 24), newSecret("redispulse", 24)

	start := time.Now()
	ch := testenv.StartClickHouseServer(t)
	t.Logf("ClickHouse started in %s", time.Since(start).Round(time.Millisecond))
	ch.SetPassword(chPassword)
	t.Logf("ClickHouse demands its password after %s", time.Since(start).Round(time.Millisecond))
	pg := testenv.StartPostgresServer(t, pgPassword)
	t.Logf("Postgres started after %s", time.Since(start).Round(time.Millisecond))
	rs := testenv.StartRedisServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// The ACL user may use Pulse's keys only; requirepass guards the
	// default user.
	rc := rs.Client()
	for _, cmd := range [][]any{
		{"ACL", "SETUSER", "pulse", "on", ">" + pulsePassword, "~pulse:*", "+@all"},
		{"CONFIG", "SET", "requirepass", adminPassword},
	} {
		if err := rc.Do(ctx, cmd...).Err(); err != nil {
			t.Fatalf("redis %v: %v", cmd[:2], err)
		}
	}
	admin := redis.NewClient(&redis.Options{Addr: rs.Addr(), Password: adminPassword})
	defer admin.Close()
	if err := admin.Ping(ctx).Err(); err != nil {
		t.Fatalf("redis as the default user with requirepass: %v", err)
	}

	adminToken := newSecret("admtok", 24)
	chDSN := func(pw string) string {
		return "clickhouse://default:" + pw + "@127.0.0.1:" + strconv.Itoa(ch.Port) + "/pulse"
	}
	redisURL := func(user, pw string) string { return "redis://" + user + ":" + pw + "@" + rs.Addr() + "/0" }
	env := func(chPW, redisUser, redisPW, pgPW string) []string {
		return []string{"PULSE_LOG_FORMAT=json", "PULSE_HTTP_ADDR=" + testenv.FreeAddr(t), "PULSE_DATA_DIR=" + t.TempDir(),
			"PULSE_NATS_LISTEN=" + testenv.FreeAddr(t), "PULSE_ADMIN_TOKENS=ops:" + adminToken, "PULSE_INGEST_TOKENS=fleet:" + newSecret("ingtok", 24),
			"PULSE_CLICKHOUSE_DSN=" + chDSN(chPW), "PULSE_ADMIN_RATE_LIMIT=100/hour", "PULSE_REDIS_URL=" + redisURL(redisUser, redisPW), "PULSE_DATABASE_URL=" + pg.URL(pgPW)}
	}
	secrets := []string{chPassword, pgPassword, adminPassword, pulsePassword, adminToken}
	noSecret := func(t *testing.T, what, s string, extra ...string) {
		t.Helper()
		for _, sec := range append(secrets, extra...) {
			if strings.Contains(s, sec) {
				t.Errorf("%s holds a secret (%.8s...):\n%s", what, sec, s)
			}
		}
	}

	t.Run("wrong credentials", func(t *testing.T) {
		f := func(name string, env []string, want, wrong string) {
			t.Run(name, func(t *testing.T) {
				code, out := runPulse(t, bin, env, "serve")
				if code != 2 || !strings.Contains(out, want) {
					t.Errorf("exit %d; want 2 saying %q\n%s", code, want, out)
				}
				noSecret(t, "the output", out, wrong)
			})
		}
		wrong := newSecret("wrong", 24)
		f("ClickHouse password", env(wrong, "pulse", pulsePassword, pgPassword), "ClickHouse refused Pulse's credential", wrong)
		f("Redis ACL password", env(chPassword, "pulse", wrong, pgPassword), "Redis refused Pulse's credential", wrong)
		f("Redis requirepass", env(chPassword, "", wrong, pgPassword), "Redis refused Pulse's credential", wrong)
		f("Postgres password", env(chPassword, "pulse", pulsePassword, wrong), "Postgres (--database-url) refused Pulse's credential", wrong)
	})

	p := startPulse(t, bin, env(chPassword, "pulse", pulsePassword, pgPassword), "serve")
	addr := p.httpAddr()
	ready := func() (int, httpReady) {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		noSecret(t, "/readyz", string(b))
		var r httpReady
		_ = json.Unmarshal(b, &r)
		return resp.StatusCode, r
	}
	testenv.Eventually(t, 30*time.Second, "/readyz 200 with every credential accepted", func() bool {
		code, r := ready()
		return code == http.StatusOK && r.Checks["redis_auth"] == "ok" && r.Checks["clickhouse"] == "ok"
	})
	// Pulse works with Redis as the ACL user: an admin call is rate
	// limited there, under Pulse's prefix.
	authFailures := func(dependency string) string {
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/metrics", nil)
		req.Header.Set("Authorization", "Bearer "+adminToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, `pulse_dependency_auth_failures_total{dependency="`+dependency+`"}`) {
				return strings.Fields(l)[1]
			}
		}
		t.Fatalf("/metrics has no %s auth failures line", dependency)
		return ""
	}
	if n := authFailures("redis"); n != "0" {
		t.Errorf("redis auth failures %s while Redis accepts the credential; want 0", n)
	}
	if keys, err := admin.Keys(ctx, "pulse:rl:admin:*").Result(); err != nil || len(keys) == 0 {
		t.Errorf("Redis holds admin rate-limit keys %v (%v); want some: Redis as the ACL user unused", keys, err)
	}

	// The ACL user's password is changed and its connections dropped.
	if err := admin.Do(ctx, "ACL", "SETUSER", "pulse", "resetpass", ">"+newSecret("rotated", 24)).Err(); err != nil {
		t.Fatal(err)
	}
	if err := admin.Do(ctx, "CLIENT", "KILL", "USER", "pulse").Err(); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, "/readyz 503 naming redis_auth", func() bool {
		code, r := ready()
		return code == http.StatusServiceUnavailable && r.Checks["redis_auth"] == "failing"
	})
	if n := authFailures("redis"); n == "0" {
		t.Error("pulse_dependency_auth_failures_total{dependency=\"redis\"} is 0 after refusals")
	}

	// ClickHouse's password changes and it restarts: Pulse's new
	// connections are refused.
	if n := authFailures("clickhouse"); n != "0" {
		t.Errorf("clickhouse auth failures %s while ClickHouse accepted the credential; want 0", n)
	}
	ch.SetPassword(newSecret("chrotated", 24))
	ch.Stop()
	ch.Start()
	testenv.Eventually(t, 30*time.Second, "a ClickHouse refusal counted", func() bool {
		code, r := ready()
		return code == http.StatusServiceUnavailable && r.Checks["clickhouse"] == "failing" && authFailures("clickhouse") != "0"
	})
	// Killed, not stopped: the aggregator would retry its batch against
	// the refusing ClickHouse for the whole shutdown timeout.
	p.kill()
	noSecret(t, "the log", p.stderr.String())
}

type httpReady struct {
	Status string            `json:"status"`
	Checks map[string]string `json:"checks"`
}

// TestServeRedisMutualTLS: a Redis that speaks TLS only and demands client
// certificates is used with --redis-ca, --redis-cert and --redis-key;
// without the client certificate, or without the CA, pulse exits 2 naming
// Redis and TLS.
func TestServeRedisMutualTLS(t *testing.T) {
	bin := pulseBinary(t, "")
	ca := testenv.NewCA(t)
	rs := testenv.StartRedisTLS(t, ca, true)
	fleet, ingestToken := newSecret("fleetmtls", 12), newSecret("ingtok", 24)
	base := []string{"PULSE_LOG_FORMAT=json", "PULSE_ROLES=ingest", "PULSE_ADMIN_TOKENS=ops:" + newSecret("admtok", 24),
		"PULSE_INGEST_TOKENS=" + fleet + ":" + ingestToken, "PULSE_REDIS_URL=redis://" + rs.Addr() + "/0",
		"PULSE_INGEST_RATE_LIMIT=10/hour"} // a rate-limit key that lives long enough to be seen
	env := func(extra ...string) []string {
		return append(append(base, "PULSE_HTTP_ADDR="+testenv.FreeAddr(t), "PULSE_DATA_DIR="+t.TempDir(), "PULSE_NATS_LISTEN="+testenv.FreeAddr(t)), extra...)
	}
	p := startPulse(t, bin, env("PULSE_REDIS_CA="+ca.CAFile, "PULSE_REDIS_CERT="+ca.ClientCert, "PULSE_REDIS_KEY="+ca.ClientKey), "serve")
	if code := ingestOne(t, http.DefaultClient, "http://"+p.httpAddr(), ingestToken, "/api/mtls"); code != http.StatusAccepted {
		t.Fatalf("ingest answered %d; want 202", code)
	}
	cert, err := tls.LoadX509KeyPair(ca.ClientCert, ca.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	rc := redis.NewClient(&redis.Options{Addr: rs.Addr(), TLSConfig: &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}})
	defer rc.Close()
	if n, err := rc.Exists(context.Background(), "pulse:rl:ingest:"+fleet).Result(); err != nil || n != 1 {
		t.Errorf("Redis over mutual TLS holds %d rate-limit keys (%v); want 1", n, err)
	}
	_ = p.terminate(30 * time.Second)

	f := func(name string, env []string, want ...string) {
		t.Run(name, func(t *testing.T) {
			code, out := runPulse(t, bin, env, "serve")
			if code != 2 {
				t.Errorf("exit %d; want 2\n%s", code, out)
			}
			for _, w := range want {
				if !strings.Contains(out, w) {
					t.Errorf("output does not say %q:\n%s", w, out)
				}
			}
		})
	}
	f("without the client certificate", env("PULSE_REDIS_CA="+ca.CAFile), "Redis: TLS handshake failed")
	f("without the CA", env("PULSE_REDIS_CERT="+ca.ClientCert, "PULSE_REDIS_KEY="+ca.ClientKey), "Redis: TLS handshake failed", "unknown authority")
	f("a certificate without its key", env("PULSE_REDIS_CA="+ca.CAFile, "PULSE_REDIS_CERT="+ca.ClientCert), "--redis-cert and --redis-key")
}
