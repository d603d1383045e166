package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/wedsync/pulse/internal/chstore"
)

// ClickHouseServer is a ClickHouse server of the test's own, which the test
// may stop and start (the shared one must stay up for other tests). It uses
// the development config in deploy/clickhouse-dev, on a free loopback port,
// with its data in a temporary folder.
type ClickHouseServer struct {
	t    testing.TB
	dir  string
	Port int
	cmd  *exec.Cmd
	done chan struct{}
	// password of the default user, once SetPassword gave it one
	password string
}

// StartClickHouseServer starts a private ClickHouse server and stops it
// when the test ends.
func StartClickHouseServer(t testing.TB) *ClickHouseServer {
	t.Helper()
	bin, err := exec.LookPath("clickhouse-server")
	if err != nil {
		t.Fatalf("clickhouse-server is not installed (make test installs it): %v", err)
	}
	_, file, _, _ := runtime.Caller(0)
	tpl := filepath.Join(filepath.Dir(file), "..", "..", "deploy", "clickhouse-dev")
	dir := t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	conf, err := os.ReadFile(filepath.Join(tpl, "config.xml"))
	if err != nil {
		t.Fatal(err)
	}
	users, err := os.ReadFile(filepath.Join(tpl, "users.xml"))
	if err != nil {
		t.Fatal(err)
	}
	rendered := strings.NewReplacer("@TCP_PORT@", strconv.Itoa(port), "@CH_DIR@", dir).Replace(string(conf))
	for _, sub := range []string{"etc", "log", "data", "tmp", "user_files", "format_schemas"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "etc", "config.xml"), []byte(rendered), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "etc", "users.xml"), users, 0o644); err != nil {
		t.Fatal(err)
	}
	s := &ClickHouseServer{t: t, dir: dir, Port: port}
	s.bin(bin)
	s.Start()
	t.Cleanup(func() { s.Stop() })
	return s
}

func (s *ClickHouseServer) bin(path string) {
	s.cmd = exec.Command(path, "--config-file="+filepath.Join(s.dir, "etc", "config.xml"))
}

// DSN is the server's DSN with the given database (and the password
// SetPassword gave).
func (s *ClickHouseServer) DSN(database string) string {
	if s.password != "" {
		return fmt.Sprintf("clickhouse://default:%s@127.0.0.1:%d/%s", s.password, s.Port, database)
	}
	return fmt.Sprintf("clickhouse://127.0.0.1:%d/%s", s.Port, database)
}

// Start starts the server (again) and waits until it answers queries.
func (s *ClickHouseServer) Start() {
	s.t.Helper()
	cmd := exec.Command(s.cmd.Path, s.cmd.Args[1:]...)
	cmd.Dir = s.dir
	log, err := os.OpenFile(filepath.Join(s.dir, "log", "stderr.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		s.t.Fatal(err)
	}
	defer log.Close()
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start clickhouse-server: %v", err)
	}
	s.cmd = cmd
	s.done = make(chan struct{})
	go func() { _ = cmd.Wait(); close(s.done) }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		st, err := chstore.Open(ctx, s.DSN("default"), zerolog.Nop())
		cancel()
		if err == nil {
			st.Close()
			return
		}
		select {
		case <-s.done:
			out, _ := os.ReadFile(filepath.Join(s.dir, "log", "clickhouse-server.err.log"))
			s.t.Fatalf("clickhouse-server exited at start:\n%s", tail(string(out), 2000))
		default:
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("clickhouse-server on port %d not answering within 60s: %v", s.Port, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Stop stops the server (SIGTERM, then SIGKILL after 20s) and waits for it.
func (s *ClickHouseServer) Stop() {
	if s.done == nil {
		return
	}
	select {
	case <-s.done:
		return
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(20 * time.Second):
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.done
	}
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}
