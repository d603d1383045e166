package testenv

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"

	"github.com/wedsync/pulse/internal/chstore"
)

// SetPassword gives the server's default user a password (users.xml,
// which ClickHouse rereads on its own) and waits until the server demands
// it; DSN and Start use it from then on. Connections opened before keep
// working; new ones need it.
func (s *ClickHouseServer) SetPassword(password string) {
	s.t.Helper()
	path := filepath.Join(s.dir, "etc", "users.xml")
	users, err := os.ReadFile(path)
	if err != nil {
		s.t.Fatal(err)
	}
	start, end := strings.Index(string(users), "<password>"), strings.Index(string(users), "</password>")
	if start < 0 || end < start {
		s.t.Fatalf("%s holds no <password> element", path)
	}
	changed := string(users[:start]) + "<password>" + password + string(users[end:])
	before, err := os.Stat(path)
	if err != nil {
		s.t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(changed), 0o644); err != nil {
		s.t.Fatal(err)
	}
	// ClickHouse notices a change by the file's time in whole seconds: a
	// rewrite within the second it was loaded would go unnoticed.
	mtime := time.Now()
	if next := before.ModTime().Add(2 * time.Second); next.After(mtime) {
		mtime = next
	}
	if err := os.Chtimes(path, mtime, mtime); err != nil {
		s.t.Fatal(err)
	}
	opens := func(dsn string) bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		st, err := chstore.Open(ctx, dsn, zerolog.Nop())
		if err == nil {
			st.Close()
		}
		return err == nil
	}
	Eventually(s.t, 30*time.Second, "ClickHouse demanding the new password", func() bool {
		return opens(fmt.Sprintf("clickhouse://default:%s@127.0.0.1:%d/default", password, s.Port)) &&
			!opens(fmt.Sprintf("clickhouse://default:wrong-%s@127.0.0.1:%d/default", password, s.Port))
	})
	s.password = password
}

// StartRedisTLS starts a private redis-server that speaks TLS only, with
// ca's server certificate, demanding client certificates signed by ca
// when clientAuth is set.
func StartRedisTLS(t testing.TB, ca *TestCA, clientAuth bool) *RedisServer {
	t.Helper()
	auth := "no"
	if clientAuth {
		auth = "yes"
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &RedisServer{t: t, port: l.Addr().(*net.TCPAddr).Port, dir: t.TempDir()}
	l.Close()
	s.args = []string{"--tls-port", strconv.Itoa(s.port), "--port", "0", "--tls-cert-file", ca.ServerCert,
		"--tls-key-file", ca.ServerKey, "--tls-ca-cert-file", ca.CAFile, "--tls-auth-clients", auth}
	cert, err := tls.LoadX509KeyPair(ca.ClientCert, ca.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	s.tls = &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	s.Start()
	t.Cleanup(s.Stop)
	return s
}

// PostgresServer is a Postgres server of the test's own that checks
// passwords (scram-sha-256 for every connection), on a free loopback port;
// the shared server trusts loopback and could not tell a wrong password.
type PostgresServer struct {
	Port     int
	Password string // of the superuser postgres
}

// URL is a postgres:// URL of the server with password as postgres's.
func (s *PostgresServer) URL(password string) string {
	return fmt.Sprintf("postgres://postgres:%s@127.0.0.1:%d/postgres?sslmode=disable", password, s.Port)
}

// StartPostgresServer runs initdb and postgres (as the system user
// postgres, from /usr/lib/postgresql/*/bin) in a temporary folder, waits
// until the server accepts the password, and stops it when the test ends.
func StartPostgresServer(t testing.TB, password string) *PostgresServer {
	t.Helper()
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(bins) == 0 {
		t.Fatal("initdb not found under /usr/lib/postgresql (make test installs Postgres)")
	}
	bin := filepath.Dir(bins[len(bins)-1])
	u, err := user.Lookup("postgres")
	if err != nil {
		t.Fatalf("system user postgres: %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	dir, err := os.MkdirTemp("", "pulse-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	pwfile := filepath.Join(dir, "pw")
	if err := os.WriteFile(pwfile, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{dir, pwfile} {
		if err := os.Chown(p, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	asPostgres := func(name string, args ...string) *exec.Cmd {
		cmd := exec.Command(filepath.Join(bin, name), args...)
		cmd.Dir = dir
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, Setpgid: true}
		return cmd
	}
	data := filepath.Join(dir, "data")
	if out, err := asPostgres("initdb", "-D", data, "-U", "postgres", "--auth=scram-sha-256", "--pwfile="+pwfile, "-N").CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &PostgresServer{Port: l.Addr().(*net.TCPAddr).Port, Password: password}
	l.Close()
	log, err := os.Create(filepath.Join(dir, "postgres.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	cmd := asPostgres("postgres", "-D", data, "-p", strconv.Itoa(s.Port), "-k", dir,
		"-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "shared_buffers=16MB", "-c", "max_connections=20")
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start postgres: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGINT) // fast shutdown
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	})
	Eventually(t, 30*time.Second, "the private Postgres accepting the password", func() bool {
		select {
		case <-done:
			out, _ := os.ReadFile(log.Name())
			t.Fatalf("postgres exited at start:\n%s", tail(string(out), 2000))
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, s.URL(password))
		if err != nil {
			return false
		}
		conn.Close(ctx)
		return true
	})
	return s
}
