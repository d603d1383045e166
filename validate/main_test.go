package validate

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/labstack/echo/v4"
	"github.com/rs/zerolog"

	"github.com/wedsync/pulse/internal/auth"
	"github.com/wedsync/pulse/internal/chstore"
	"github.com/wedsync/pulse/internal/httpapi"
	"github.com/wedsync/pulse/internal/testenv"
)

func TestMain(m *testing.M) {
	code := testenv.Main(m)
	stopStatsServer()
	os.Exit(code)
}

// adminURL is the test Postgres, as a superuser (make test sets it).
func adminURL() string {
	if u := os.Getenv("PULSE_TEST_DATABASE_URL"); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
}

func randName() string {
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// withDatabase returns base with its database (and user, when not "")
// replaced.
func withDatabase(t testing.TB, base, database, usr string) string {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("parse test database URL: %v", err)
	}
	u.Path = "/" + database
	if usr != "" {
		u.User = url.User(usr)
	}
	return u.String()
}

func exec1(t testing.TB, dsn, sql string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect to the test Postgres: %v\n(make test starts it and sets PULSE_TEST_DATABASE_URL)", err)
	}
	defer c.Close(ctx)
	if _, err := c.PgConn().Exec(ctx, sql).ReadAll(); err != nil {
		t.Fatalf("%s: %v", firstLine(sql), err)
	}
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

// pgEnv is a fresh database of its own on a Postgres server, with API roles
// of its own; both are dropped when the test ends.
type pgEnv struct {
	admin string // the server's superuser URL (any database)
	url   string // the test database, as superuser
	db    string
	anon  string // the API roles
	authd string
}

// newPG creates a database pulse_v_<random> and roles for it on the server
// of admin.
func newPG(t testing.TB, admin string) *pgEnv {
	t.Helper()
	id := randName()
	e := &pgEnv{admin: admin, db: "pulse_v_" + id, anon: "pulse_v_" + id + "_anon", authd: "pulse_v_" + id + "_authenticated"}
	exec1(t, admin, fmt.Sprintf("CREATE ROLE %s NOLOGIN; CREATE ROLE %s NOLOGIN", e.anon, e.authd))
	t.Cleanup(func() {
		exec1(t, admin, fmt.Sprintf("DROP ROLE IF EXISTS %s; DROP ROLE IF EXISTS %s", e.anon, e.authd))
	})
	exec1(t, admin, "CREATE DATABASE "+e.db)
	t.Cleanup(func() { exec1(t, admin, "DROP DATABASE IF EXISTS "+e.db+" WITH (FORCE)") })
	e.url = withDatabase(t, admin, e.db, "")
	return e
}

// load runs fixtures from testdata into the database. A fixture is run as
// one simple-protocol batch, except that a line "-- @statement" starts a
// batch of its own (for statements that cannot run in a transaction
// block), and a batch holding a line "-- @expect-error" must fail.
func (e *pgEnv) load(t testing.TB, fixtures ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := pgx.Connect(ctx, e.url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer c.Close(ctx)
	for _, name := range fixtures {
		raw, err := os.ReadFile(filepath.Join("testdata", name+".sql"))
		if err != nil {
			t.Fatal(err)
		}
		sql := strings.NewReplacer("{{anon}}", e.anon, "{{authenticated}}", e.authd).Replace(string(raw))
		var batches []string
		var cur strings.Builder
		for _, line := range strings.SplitAfter(sql, "\n") {
			if strings.HasPrefix(line, "-- @statement") {
				batches = append(batches, cur.String())
				cur.Reset()
				continue
			}
			cur.WriteString(line)
		}
		batches = append(batches, cur.String())
		for i, batch := range batches {
			_, err := c.PgConn().Exec(ctx, batch).ReadAll()
			switch expect := strings.Contains(batch, "-- @expect-error"); {
			case expect && err == nil:
				t.Fatalf("fixture %s, batch %d: should fail", name, i)
			case !expect && err != nil:
				t.Fatalf("fixture %s, batch %d: %v", name, i, err)
			}
		}
	}
}

// config is a validator Config for the environment's database and roles.
func (e *pgEnv) config() Config {
	return Config{DatabaseURL: e.url, APIRoles: []string{e.anon, e.authd}}
}

// loginRole creates a role that may log in and has no grant at all, and
// returns the test database's URL as that role.
func (e *pgEnv) loginRole(t testing.TB) string {
	t.Helper()
	name := e.db + "_nogrant"
	exec1(t, e.admin, "CREATE ROLE "+name+" LOGIN")
	t.Cleanup(func() { exec1(t, e.admin, "DROP ROLE IF EXISTS "+name) })
	return withDatabase(t, e.admin, e.db, name)
}

// validator returns a Validator closed when the test ends.
func validator(t testing.TB, cfg Config, deps Deps) *Validator {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("config: %v", err)
	}
	v := New(cfg, deps, zerolog.Nop())
	t.Cleanup(v.Close)
	return v
}

// lints returns the lints of issues, each once, leaving out those named in
// ignore.
func lints(issues []Issue, ignore ...string) []string {
	var out []string
	for _, is := range issues {
		if !slices.Contains(out, is.Lint) && !slices.Contains(ignore, is.Lint) {
			out = append(out, is.Lint)
		}
	}
	slices.Sort(out)
	return out
}

// find returns the issues of lint.
func find(issues []Issue, lint string) []Issue {
	var out []Issue
	for _, is := range issues {
		if is.Lint == lint {
			out = append(out, is)
		}
	}
	return out
}

func objects(issues []Issue) []string {
	out := make([]string, len(issues))
	for i, is := range issues {
		out[i] = is.Object
	}
	slices.Sort(out)
	return out
}

// ---- a Postgres server of the tests' own, with pg_stat_statements loaded ----

var statsServer struct {
	sync.Mutex
	dir string
	url string
	cmd *exec.Cmd
	err error
}

// statsAdmin returns the superuser URL of a private Postgres cluster that
// loads pg_stat_statements (the shared test server does not), started once
// per test binary from the installed Postgres binaries and stopped by
// TestMain. Run as root, it runs the server as the postgres user.
func statsAdmin(t testing.TB) string {
	t.Helper()
	statsServer.Lock()
	defer statsServer.Unlock()
	if statsServer.url == "" && statsServer.err == nil {
		statsServer.err = startStatsServer()
	}
	if statsServer.err != nil {
		t.Fatalf("start a private Postgres with pg_stat_statements: %v", statsServer.err)
	}
	return statsServer.url
}

func pgBinDir() (string, error) {
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		if dir := strings.TrimSpace(string(out)); fileExists(filepath.Join(dir, "initdb")) {
			return dir, nil
		}
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(matches) == 0 {
		return "", fmt.Errorf("initdb not found (install postgresql)")
	}
	slices.Sort(matches)
	return filepath.Dir(matches[len(matches)-1]), nil
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

func startStatsServer() error {
	bin, err := pgBinDir()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "pulse-validate-pg-")
	if err != nil {
		return err
	}
	statsServer.dir = dir
	var cred *syscall.Credential
	if os.Geteuid() == 0 { // Postgres refuses to run as root
		u, err := user.Lookup("postgres")
		if err != nil {
			return fmt.Errorf("running as root needs a postgres user: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			return err
		}
	}
	run := func(name string, args ...string) *exec.Cmd {
		c := exec.Command(filepath.Join(bin, name), args...)
		c.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Setpgid: true}
		return c
	}
	data := filepath.Join(dir, "data")
	if out, err := run("initdb", "-D", data, "-U", "postgres", "--auth=trust", "-N", "-E", "UTF8", "--locale=C").CombinedOutput(); err != nil {
		return fmt.Errorf("initdb: %v: %s", err, out)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	logf, err := os.Create(filepath.Join(dir, "server.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := run("postgres", "-D", data, "-p", strconv.Itoa(port), "-k", dir, "-c", "listen_addresses=127.0.0.1",
		"-c", "shared_preload_libraries=pg_stat_statements", "-c", "fsync=off", "-c", "synchronous_commit=off",
		"-c", "full_page_writes=off", "-c", "max_connections=40")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return err
	}
	statsServer.cmd = cmd
	statsServer.url = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		c, err := pgx.Connect(ctx, statsServer.url)
		cancel()
		if err == nil {
			c.Close(context.Background())
			return nil
		}
		if time.Now().After(deadline) {
			out, _ := os.ReadFile(filepath.Join(dir, "server.log"))
			statsServer.url = ""
			return fmt.Errorf("not ready within 30s: %v\n%s", err, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func stopStatsServer() {
	statsServer.Lock()
	defer statsServer.Unlock()
	if statsServer.cmd != nil && statsServer.cmd.Process != nil {
		_ = statsServer.cmd.Process.Signal(syscall.SIGINT) // fast shutdown
		_ = statsServer.cmd.Wait()
	}
	if statsServer.dir != "" {
		os.RemoveAll(statsServer.dir)
	}
}

// ---- HTTP ----

const adminToken = "validate-admin-token-0123456789"
const ingestToken = "validate-ingest-token-0123456789"

// server serves v's routes behind the real guard.
func server(t testing.TB, v *Validator) *echo.Echo {
	t.Helper()
	var toks auth.StaticTokens
	toks.Add(adminToken, auth.Principal{Name: "ops", Scopes: []auth.Scope{auth.ScopeAdmin}})
	toks.Add(ingestToken, auth.Principal{Name: "web", Scopes: []auth.Scope{auth.ScopeIngest}})
	e := httpapi.New(zerolog.Nop())
	v.Register(httpapi.NewRouter(e, &toks))
	return e
}

// do sends a request with the admin token (token "" for none) and returns
// the answer.
func do(e *echo.Echo, method, path, token, contentType string, body string) *httptest.ResponseRecorder {
	var r io.Reader
	if body != "" {
		r = bytes.NewBufferString(body)
	}
	req := httptest.NewRequest(method, path, r)
	if token != "" {
		req.Header.Set(echo.HeaderAuthorization, "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set(echo.HeaderContentType, contentType)
	}
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, req)
	return rec
}

func wantStatus(t testing.TB, rec *httptest.ResponseRecorder, want int) {
	t.Helper()
	if rec.Code != want {
		t.Fatalf("status %d; want %d; body %s", rec.Code, want, rec.Body)
	}
}

// createTables (re)creates the tables of the validation migration in st's
// database, for tests that dropped them; testenv's stores are migrated.
func createTables(t testing.TB, st *chstore.Store) {
	t.Helper()
	ddl, err := os.ReadFile("../schema/migrations/0007_validation.sql")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, stmt := range strings.Split(string(ddl), ";\n") {
		var b strings.Builder
		for _, line := range strings.Split(stmt, "\n") {
			if !strings.HasPrefix(strings.TrimSpace(line), "--") {
				b.WriteString(line + "\n")
			}
		}
		if s := strings.TrimSpace(b.String()); s != "" {
			if err := st.Exec(ctx, strings.ReplaceAll(s, "{{db}}", "`"+st.Database()+"`")); err != nil {
				t.Fatalf("create validation tables: %v", err)
			}
		}
	}
}

var _ = http.MethodGet
