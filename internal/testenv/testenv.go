// Package testenv gives tests real servers: an in-process NATS server with
// JetStream, a database of their own on the ClickHouse server that
// scripts/services.sh started, and on chDB. Nothing here is a mock.
//
// The ClickHouse server is found through PULSE_TEST_CLICKHOUSE_DSN (default
// clickhouse://127.0.0.1:9000); `make test` starts it and sets the variable.
// A missing server fails the test with a hint; it is never skipped.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/wedsync/pulse/internal/chstore"
	"github.com/wedsync/pulse/internal/stream"
	"github.com/wedsync/pulse/schema"
)

// NATS starts a NATS server with JetStream on a free loopback port, its
// store in a temporary folder, and shuts it down when the test ends.
func NATS(t testing.TB) *server.Server {
	t.Helper()
	return NATSWith(t, nil)
}

// NATSWith is NATS with options changed by configure before the server
// starts: authentication (Authorization, Nkeys, Users) or TLS (TLSConfig,
// then TLS and TLSVerify follow it).
func NATSWith(t testing.TB, configure func(*server.Options)) *server.Server {
	t.Helper()
	opts := &server.Options{
		Host:       "127.0.0.1",
		Port:       server.RANDOM_PORT,
		JetStream:  true,
		StoreDir:   t.TempDir(),
		NoSigs:     true,
		NoLog:      true,
		MaxPayload: 8 << 20,
	}
	if configure != nil {
		configure(opts)
	}
	if opts.TLSConfig != nil {
		opts.TLS = true
		opts.TLSVerify = opts.TLSConfig.ClientCAs != nil
		opts.TLSTimeout = 5
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("start NATS: %v", err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS not ready within 10s")
	}
	t.Cleanup(func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	return ns
}

// Connect connects to ns and closes the connection when the test ends.
func Connect(t testing.TB, url string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatalf("connect NATS: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("jetstream: %v", err)
	}
	return nc, js
}

// Streams creates the ingest streams with test-sized defaults.
func Streams(t testing.TB, js jetstream.JetStream, c stream.Config) stream.Config {
	t.Helper()
	if c.MaxBytes == 0 {
		c.MaxBytes = 1 << 30
	}
	c.Defaults()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := stream.Ensure(ctx, js, c); err != nil {
		t.Fatalf("ensure streams: %v", err)
	}
	return c
}

// ClickHouseDSN is the test ClickHouse server's DSN without a database.
func ClickHouseDSN() string {
	if dsn := os.Getenv("PULSE_TEST_CLICKHOUSE_DSN"); dsn != "" {
		u, err := url.Parse(dsn)
		if err == nil {
			u.Path = ""
			return u.String()
		}
	}
	return "clickhouse://127.0.0.1:9000"
}

// DatabaseName returns a database name unique to this test run.
func DatabaseName(t testing.TB) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, strings.ToLower(t.Name()))
	if len(name) > 40 {
		name = name[:40]
	}
	return "t_" + name + "_" + hex.EncodeToString(b)
}

// ClickHouse opens a fresh, migrated database on the ClickHouse server and
// drops it when the test ends.
func ClickHouse(t testing.TB) *chstore.Store {
	t.Helper()
	return open(t, ClickHouseDSN()+"/"+DatabaseName(t))
}

// Backends returns a fresh, migrated database on each ClickHouse backend,
// by name: "clickhouse" (the server) and "chdb" (embedded).
func Backends(t testing.TB) map[string]*chstore.Store {
	t.Helper()
	return map[string]*chstore.Store{"clickhouse": ClickHouse(t), "chdb": ChDB(t)}
}

// ChDB opens a fresh, migrated database on this process's chDB session
// (one data folder per test binary) and drops it when the test ends.
func ChDB(t testing.TB) *chstore.Store {
	t.Helper()
	return open(t, "chdb:"+chdbPath()+"?database="+DatabaseName(t))
}

var chdb struct {
	sync.Mutex
	dir    string
	keeper *chstore.Store // holds the session open between tests
}

func chdbPath() string {
	chdb.Lock()
	defer chdb.Unlock()
	if chdb.dir == "" {
		chdb.dir = fmt.Sprintf("%s/pulse-chdb-test-%d", os.TempDir(), os.Getpid())
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		chdb.keeper, _ = chstore.Open(ctx, "chdb:"+chdb.dir+"?database=default", zerolog.Nop())
	}
	return chdb.dir
}

// Main runs the tests of a package, removes the chDB data folder, and then
// fails the run if any goroutine is left behind. Call it from TestMain:
// os.Exit(testenv.Main(m)).
func Main(m *testing.M) int {
	code := m.Run()
	chdb.Lock()
	if chdb.keeper != nil {
		chdb.keeper.Close()
	}
	if chdb.dir != "" {
		os.RemoveAll(chdb.dir)
	}
	chdb.Unlock()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			return 1
		}
	}
	return code
}

func open(t testing.TB, dsn string) *chstore.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := chstore.Open(ctx, dsn, zerolog.Nop())
	if err != nil {
		t.Fatalf("open ClickHouse %s: %v\n(make test starts the ClickHouse server and sets PULSE_TEST_CLICKHOUSE_DSN and CHDB_LIB_PATH)", redactDSN(dsn), err)
	}
	if _, err := schema.Migrate(ctx, s); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := s.Exec(ctx, "DROP DATABASE IF EXISTS `"+s.Database()+"`"); err != nil {
			t.Errorf("drop test database %s: %v", s.Database(), err)
		}
		s.Close()
	})
	return s
}

func redactDSN(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil || u.User == nil {
		return dsn
	}
	u.User = url.User(u.User.Username())
	return u.String()
}

// Count returns the result of a count query, failing the test on error.
func Count(t testing.TB, s *chstore.Store, query string) uint64 {
	t.Helper()
	var n uint64
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.QueryRow(ctx, query, &n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// Eventually polls cond every 20ms until it holds or timeout passes.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
