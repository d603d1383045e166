package probe

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/wedsync/pulse/internal/event"
	"github.com/wedsync/pulse/internal/testenv"
)

// sharedDatabaseURL is the Postgres that scripts/services.sh runs.
func sharedDatabaseURL() string {
	if u := os.Getenv("PULSE_TEST_DATABASE_URL"); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
}

// pgServer is a Postgres of the test's own on a free loopback port, which
// the test may stop and start. initdb refuses to run as root, so as root
// the server runs as the postgres user, its data in a folder it owns.
type pgServer struct {
	t       *testing.T
	bin     string
	dir     string
	port    int
	asUser  string
	options string
}

func startPostgres(t *testing.T, options ...string) *pgServer {
	t.Helper()
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(bins) == 0 {
		t.Fatal("no initdb in /usr/lib/postgresql/*/bin (scripts/services.sh installs PostgreSQL)")
	}
	sort.Strings(bins)
	s := &pgServer{t: t, bin: filepath.Dir(bins[len(bins)-1]), options: strings.Join(options, " ")}
	dir, err := os.MkdirTemp("", "pulse-probe-pg-")
	if err != nil {
		t.Fatal(err)
	}
	s.dir = dir
	t.Cleanup(func() { os.RemoveAll(dir) })
	if os.Getuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("running as root needs a postgres user for initdb: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
		s.asUser = "postgres"
	}
	s.port = portOf(t, closedAddr(t))
	s.run("initdb", "-D", filepath.Join(dir, "data"), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync")
	s.start()
	t.Cleanup(func() {
		_ = s.cmd("pg_ctl", "-D", filepath.Join(s.dir, "data"), "-m", "immediate", "-w", "stop").Run()
	})
	return s
}

func portOf(t *testing.T, addr string) int {
	t.Helper()
	i := strings.LastIndexByte(addr, ':')
	p, err := strconv.Atoi(addr[i+1:])
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (s *pgServer) cmd(name string, args ...string) *exec.Cmd {
	path := filepath.Join(s.bin, name)
	if s.asUser != "" {
		return exec.Command("runuser", append([]string{"-u", s.asUser, "--", path}, args...)...)
	}
	return exec.Command(path, args...)
}

func (s *pgServer) run(name string, args ...string) {
	s.t.Helper()
	if out, err := s.cmd(name, args...).CombinedOutput(); err != nil {
		s.t.Fatalf("%s: %v\n%s", name, err, out)
	}
}

func (s *pgServer) start() {
	s.t.Helper()
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off %s", s.port, s.dir, s.options)
	s.run("pg_ctl", "-D", filepath.Join(s.dir, "data"), "-l", filepath.Join(s.dir, "log"), "-o", opts, "-w", "-t", "60", "start")
}

func (s *pgServer) stop() {
	s.t.Helper()
	s.run("pg_ctl", "-D", filepath.Join(s.dir, "data"), "-m", "fast", "-w", "stop")
}

// URL is the server's URL; password, when given, is put in it (the server
// trusts every local connection, so any password works).
func (s *pgServer) URL(password string) string {
	if password != "" {
		return fmt.Sprintf("postgres://postgres:%s@127.0.0.1:%d/postgres?sslmode=disable", password, s.port)
	}
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", s.port)
}

func (s *pgServer) exec(sql ...string) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.URL(""))
	if err != nil {
		s.t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, q := range sql {
		if _, err := conn.Exec(ctx, q); err != nil {
			s.t.Fatalf("%s: %v", q, err)
		}
	}
}

func newDB(t *testing.T, c Config) *databaseProbe {
	t.Helper()
	p, err := newDatabaseProbe(testConfig(c))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.close)
	return p
}

func num(t *testing.T, d map[string]any, key string) float64 {
	t.Helper()
	v, ok := d[key].(float64)
	if !ok {
		t.Fatalf("details[%q] = %v; want a number (details %v)", key, d[key], d)
	}
	return v
}

// TestDatabaseSharedPostgres probes the Postgres of the test services.
func TestDatabaseSharedPostgres(t *testing.T) {
	p := newDB(t, Config{DatabaseURL: sharedDatabaseURL()})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	hs, samples := p.run(ctx)
	if len(hs) != 1 {
		t.Fatalf("%d results; want 1", len(hs))
	}
	h := hs[0]
	valid(t, h)
	wantStatus(t, "shared postgres", h, event.StatusHealthy)
	d := details(t, h)
	if m := num(t, d, "max_connections"); m <= 0 {
		t.Errorf("max_connections = %v; want > 0", m)
	}
	if total, active := num(t, d, "total_connections"), num(t, d, "active_connections"); total < 1 || active < 1 || active > total {
		t.Errorf("connections total %v, active %v; want the probe's own at least, active <= total", total, active)
	}
	switch d["pg_stat_statements"] {
	case "installed", "not installed", "not loaded":
	default:
		t.Errorf("pg_stat_statements = %v", d["pg_stat_statements"])
	}
	pool, _ := d["pool"].(map[string]any)
	if pool["max_conns"] != float64(2) || pool["statement_timeout_ms"] != float64(3000) {
		t.Errorf("pool details %v; want max_conns 2, statement_timeout_ms 3000", pool)
	}
	if h.ResponseTimeMS != num(t, d, "latency_ms") {
		t.Errorf("response_time_ms %v differs from latency_ms %v", h.ResponseTimeMS, d["latency_ms"])
	}
	checkConnectionSample(t, samples, "postgres", num(t, d, "total_connections"), num(t, d, "max_connections"))
}

// checkConnectionSample checks the connections resource sample through the
// aggregator's validation.
func checkConnectionSample(t *testing.T, samples []event.ResourceSample, host string, used, capacity float64) {
	t.Helper()
	if len(samples) != 1 {
		t.Fatalf("%d resource samples; want 1", len(samples))
	}
	data, _ := json.Marshal(samples[0])
	got, err := event.DecodeResources(data, event.Rules{Now: time.Now()}, 10)
	if err != nil {
		t.Fatalf("sample %s does not validate: %v", data, err)
	}
	s := got[0]
	if s.Host != host || s.Resource != "connections" || s.Used != used || s.Capacity != capacity || s.Utilisation != used/capacity {
		t.Errorf("sample %+v; want host %s, connections, used %v of %v", s, host, used, capacity)
	}
	if subject := ResourceSubject(s.Host); subject != "pulse.ingest.resources."+strings.ReplaceAll(host, ".", "_") {
		t.Errorf("subject %s", subject)
	}
}

// TestDatabasePrivatePostgres probes a Postgres of the test's own: without
// pg_stat_statements, then with it and a slow statement, then stopped.
func TestDatabasePrivatePostgres(t *testing.T) {
	pg := startPostgres(t, "-c shared_preload_libraries=pg_stat_statements")
	p := newDB(t, Config{DatabaseURL: pg.URL(""), DatabaseHost: "app-db.internal", SlowQueryThreshold: 100 * time.Millisecond})

	h, d := one(t, p, 10*time.Second)
	wantStatus(t, "private postgres", h, event.StatusHealthy)
	if d["pg_stat_statements"] != "not installed" {
		t.Errorf("pg_stat_statements = %v; want not installed", d["pg_stat_statements"])
	}
	if _, ok := d["slow_queries"]; ok {
		t.Errorf("slow_queries reported without pg_stat_statements: %v", d["slow_queries"])
	}

	const secret = "literal-secret-5f2a"
	pg.exec("CREATE EXTENSION pg_stat_statements",
		"SELECT pg_sleep(0.15)", "SELECT pg_sleep(0.2)",
		// A utility statement keeps its literals: it must not be listed.
		"DO $$ BEGIN PERFORM pg_sleep(0.15); RAISE NOTICE '"+secret+"'; END $$",
		"SELECT 1")
	h, d = one(t, p, 10*time.Second)
	wantStatus(t, "with pg_stat_statements", h, event.StatusHealthy)
	if d["pg_stat_statements"] != "installed" {
		t.Fatalf("pg_stat_statements = %v; want installed", d["pg_stat_statements"])
	}
	slow, _ := d["slow_queries"].([]any)
	if len(slow) != 1 || num(t, d, "slow_queries_count") != 1 {
		t.Fatalf("slow queries %v (count %v); want the one pg_sleep statement", d["slow_queries"], d["slow_queries_count"])
	}
	q := slow[0].(map[string]any)
	if q["query"] != "SELECT pg_sleep($1)" || q["calls"] != float64(2) || q["mean_ms"].(float64) < 150 {
		t.Errorf("slow query %v; want SELECT pg_sleep($1), 2 calls, mean >= 150 ms", q)
	}
	if strings.Contains(string(h.Details), secret) {
		t.Errorf("details hold a utility statement's literal: %s", h.Details)
	}
	if num(t, d, "slow_query_threshold_ms") != 100 {
		t.Errorf("slow_query_threshold_ms = %v; want 100", d["slow_query_threshold_ms"])
	}

	pg.stop()
	// The pool's idle connection learns of the shutdown first, then
	// connecting is refused.
	h, d = one(t, p, 5*time.Second)
	wantStatus(t, "stopped postgres", h, event.StatusCritical)
	if d["error"] != "unreachable" || d["cause"] != "database shutting down" && d["cause"] != "connection refused" {
		t.Errorf("details %v; want error unreachable, cause database shutting down or connection refused", d)
	}
	h, d = one(t, p, 5*time.Second)
	wantStatus(t, "stopped postgres, again", h, event.StatusCritical)
	if d["error"] != "unreachable" || d["cause"] != "connection refused" {
		t.Errorf("details %v; want error unreachable, cause connection refused", d)
	}
	pg.start()
	h, _ = one(t, p, 10*time.Second)
	wantStatus(t, "restarted postgres", h, event.StatusHealthy)
}

func TestDatabaseNotLoaded(t *testing.T) {
	pg := startPostgres(t)
	pg.exec("CREATE EXTENSION pg_stat_statements") // installed, but not in shared_preload_libraries
	_, d := one(t, newDB(t, Config{DatabaseURL: pg.URL("")}), 10*time.Second)
	if d["pg_stat_statements"] != "not loaded" {
		t.Errorf("pg_stat_statements = %v; want not loaded", d["pg_stat_statements"])
	}
}

func TestDatabaseNotConfigured(t *testing.T) {
	h, d := one(t, newDB(t, Config{}), time.Second)
	wantStatus(t, "no database url", h, event.StatusUnknown)
	if d["reason"] != "not configured" || d["configured"] != false {
		t.Errorf("details %v; want reason not configured, configured false", d)
	}
}

func TestDatabaseWrongDatabaseAndPassword(t *testing.T) {
	pg := startPostgres(t)
	pg.exec("CREATE ROLE app LOGIN PASSWORD 'right'")
	// The server trusts local connections; require passwords over TCP.
	hba := filepath.Join(pg.dir, "data", "pg_hba.conf")
	if err := os.WriteFile(hba, []byte("local all all trust\nhost all postgres 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 scram-sha-256\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pg.exec("SELECT pg_reload_conf()")
	for _, tt := range []struct {
		url, cause string
	}{
		{fmt.Sprintf("postgres://app:wrong-pw-77@127.0.0.1:%d/postgres?sslmode=disable", pg.port), "authentication failed"},
		{fmt.Sprintf("postgres://postgres@127.0.0.1:%d/nosuchdb?sslmode=disable", pg.port), "database does not exist"},
	} {
		h, d := one(t, newDB(t, Config{DatabaseURL: tt.url}), 10*time.Second)
		wantStatus(t, tt.cause, h, event.StatusCritical)
		if d["error"] != "unreachable" || d["cause"] != tt.cause {
			t.Errorf("details %v; want cause %s", d, tt.cause)
		}
		if strings.Contains(string(h.Details), "wrong-pw-77") || strings.Contains(string(h.Details), "127.0.0.1") {
			t.Errorf("details leak the DSN: %s", h.Details)
		}
	}
}

// TestDatabaseRefusedCredential: a Postgres that checks passwords refuses
// the probe's; the result is critical without the password, and
// DatabaseFailed sees the server's refusal (SQLSTATE 28P01), which pulse
// serve counts in pulse_dependency_auth_failures_total{dependency="postgres"}.
func TestDatabaseRefusedCredential(t *testing.T) {
	srv := testenv.StartPostgresServer(t, "right-pw-7d1f")
	var refused []error
	p := newDB(t, Config{DatabaseURL: srv.URL("wrong-pw-93ab"), DatabaseFailed: func(err error) { refused = append(refused, err) }})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	hs, _ := p.run(ctx)
	if len(hs) != 1 {
		t.Fatalf("%d results; want 1", len(hs))
	}
	wantStatus(t, "wrong password", hs[0], event.StatusCritical)
	if b, _ := json.Marshal(hs[0]); strings.Contains(string(b), "wrong-pw-93ab") {
		t.Errorf("the result holds the password: %s", b)
	}
	var pe *pgconn.PgError
	if len(refused) != 1 || !errors.As(refused[0], &pe) || pe.Code != "28P01" {
		t.Fatalf("DatabaseFailed got %v; want one invalid_password (28P01) error", refused)
	}

	refused = nil
	p = newDB(t, Config{DatabaseURL: srv.URL("right-pw-7d1f"), DatabaseFailed: func(err error) { refused = append(refused, err) }})
	hs, _ = p.run(ctx)
	if hs[0].Status == event.StatusCritical || len(refused) != 0 {
		t.Errorf("right password: status %s, DatabaseFailed got %v; want not critical and no call", hs[0].Status, refused)
	}
}
