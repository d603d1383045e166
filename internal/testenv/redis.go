package testenv

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisURL is the shared test Redis (`make test` starts it and sets
// PULSE_TEST_REDIS_URL).
func RedisURL() string {
	if u := os.Getenv("PULSE_TEST_REDIS_URL"); u != "" {
		return u
	}
	return "redis://127.0.0.1:6379/0"
}

// Redis connects to the shared test Redis as cmd/pulse does (context
// deadlines honoured) and closes the client when the test ends. It fails
// the test if Redis is down.
func Redis(t testing.TB) *redis.Client {
	t.Helper()
	opt, err := redis.ParseURL(RedisURL())
	if err != nil {
		t.Fatalf("PULSE_TEST_REDIS_URL: %v", err)
	}
	opt.ContextTimeoutEnabled = true
	c := redis.NewClient(opt)
	t.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("test Redis at %s is not answering (make test starts it): %v", RedisURL(), err)
	}
	return c
}

// RedisPrefix returns a key prefix of this test's own under namespace; its
// keys are deleted when the test ends.
func RedisPrefix(t testing.TB, c *redis.Client, namespace string) string {
	t.Helper()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	p := "pulse:test:" + namespace + ":" + hex.EncodeToString(b) + ":"
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		keys, err := c.Keys(ctx, p+"*").Result()
		if err == nil && len(keys) > 0 {
			c.Del(ctx, keys...)
		}
	})
	return p
}

// RedisServer is a redis-server of the test's own, which it may kill,
// restart on the same port, pause and resume (the shared one must stay
// up). No persistence: a restart starts empty.
type RedisServer struct {
	t    testing.TB
	port int
	dir  string
	cmd  *exec.Cmd
	done chan struct{}
	args []string    // more redis-server arguments (StartRedisTLS)
	tls  *tls.Config // of the readiness PING, when the port speaks TLS
}

// StartRedisServer starts a private redis-server on a free loopback port
// and kills it when the test ends.
func StartRedisServer(t testing.TB) *RedisServer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &RedisServer{t: t, port: l.Addr().(*net.TCPAddr).Port, dir: t.TempDir()}
	l.Close()
	s.Start()
	t.Cleanup(s.Stop)
	return s
}

// Addr is the server's host:port.
func (s *RedisServer) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// Start runs redis-server and waits until it answers PING.
func (s *RedisServer) Start() {
	s.t.Helper()
	args := append([]string{"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", s.dir}, s.args...)
	s.cmd = exec.Command("redis-server", args...)
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("start redis-server: %v", err)
	}
	s.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) {
		_ = cmd.Wait()
		close(done)
	}(s.cmd, s.done)
	deadline := time.Now().Add(10 * time.Second)
	for {
		var conn net.Conn
		var err error
		if s.tls != nil {
			conn, err = tls.DialWithDialer(&net.Dialer{Timeout: 100 * time.Millisecond}, "tcp", s.Addr(), s.tls)
		} else {
			conn, err = net.DialTimeout("tcp", s.Addr(), 100*time.Millisecond)
		}
		if err == nil {
			_ = conn.SetDeadline(time.Now().Add(time.Second))
			_, _ = conn.Write([]byte("PING\r\n"))
			buf := make([]byte, 7)
			n, _ := conn.Read(buf)
			conn.Close()
			if strings.HasPrefix(string(buf[:n]), "+PONG") {
				return
			}
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("redis-server on %s not ready within 10s", s.Addr())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop kills redis-server (paused or not) and waits for it to exit.
func (s *RedisServer) Stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.done
	s.cmd = nil
}

// Pause stops the process without closing its sockets: Redis hangs.
func (s *RedisServer) Pause() {
	if err := s.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		s.t.Fatal(err)
	}
}

// Resume continues a paused server.
func (s *RedisServer) Resume() {
	if err := s.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		s.t.Fatal(err)
	}
}

// Client connects to s as cmd/pulse would and closes when the test ends.
func (s *RedisServer) Client() *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), ContextTimeoutEnabled: true})
	s.t.Cleanup(func() { c.Close() })
	return c
}
