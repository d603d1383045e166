package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/wedsync/pulse/internal/chstore"
	"github.com/wedsync/pulse/internal/testenv"
)

// The tests in this package run the real pulse binary as child processes.
var binaries struct {
	sync.Mutex
	dir   string
	built map[string]string
}

// pulseBinary builds cmd/pulse once per test binary, with the given build
// tags, and returns its path.
func pulseBinary(t testing.TB, tags string) string {
	t.Helper()
	binaries.Lock()
	defer binaries.Unlock()
	if path, ok := binaries.built[tags]; ok {
		return path
	}
	if binaries.dir == "" {
		dir, err := os.MkdirTemp("", "pulse-bin-")
		if err != nil {
			t.Fatal(err)
		}
		binaries.dir, binaries.built = dir, map[string]string{}
	}
	path := filepath.Join(binaries.dir, "pulse"+strings.ReplaceAll(tags, ",", "-"))
	cmd := exec.Command("go", "build", "-tags", tags, "-o", path, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	binaries.built[tags] = path
	return path
}

// proc is a running pulse child process.
type proc struct {
	t      testing.TB
	cmd    *exec.Cmd
	stdout *testenv.LogBuffer
	stderr *testenv.LogBuffer
	exited chan struct{}
	err    error
}

// startPulse runs the binary with args and extra environment variables and
// waits until its log says it is serving.
func startPulse(t testing.TB, bin string, env []string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	p := &proc{t: t, cmd: cmd, stdout: &testenv.LogBuffer{}, stderr: &testenv.LogBuffer{}, exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.stdout, p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start pulse: %v", err)
	}
	go func() { p.err = cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() { p.kill() })
	deadline := time.After(60 * time.Second)
	for !strings.Contains(p.stderr.String(), "pulse is serving") {
		select {
		case <-p.exited:
			t.Fatalf("pulse exited before serving: %v\nstderr:\n%s", p.err, p.stderr.String())
		case <-deadline:
			t.Fatalf("pulse not serving within 60s\nstderr:\n%s", p.stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	return p
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *proc) kill() {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
}

// terminate sends SIGTERM and returns the exit error after it stopped.
func (p *proc) terminate(timeout time.Duration) error {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	return p.wait(timeout)
}

// wait returns the exit error once the process stopped; it fails the test
// when that takes longer than timeout.
func (p *proc) wait(timeout time.Duration) error {
	select {
	case <-p.exited:
		return p.err
	case <-time.After(timeout):
		p.t.Fatalf("pulse did not exit within %s\nstderr:\n%s", timeout, p.stderr.String())
		return nil
	}
}

// logLines returns the JSON log lines the process wrote.
func (p *proc) logLines() []map[string]any {
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(p.stderr.String()))
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

// httpAddr returns the address the process logged it listens on.
func (p *proc) httpAddr() string {
	for _, l := range p.logLines() {
		if l["message"] == "HTTP listening" {
			addr := strings.TrimPrefix(fmt.Sprint(l["addr"]), "http://")
			return strings.TrimPrefix(addr, "https://")
		}
	}
	p.t.Fatalf("no HTTP address in the log:\n%s", p.stderr.String())
	return ""
}

// natsURL returns the client URL of the embedded NATS server the process
// logged it runs.
func (p *proc) natsURL() string {
	for _, l := range p.logLines() {
		if l["message"] == "embedded NATS server with JetStream is listening" {
			return fmt.Sprint(l["url"])
		}
	}
	p.t.Fatalf("no embedded NATS URL in the log:\n%s", p.stderr.String())
	return ""
}

// assertExactlyOnce checks that store holds each of the total events
// with request IDs <prefix>0 .. <prefix><total-1> exactly once, in the raw
// table and in the 1-minute rollup.
func assertExactlyOnce(t testing.TB, store *chstore.Store, prefix string, total uint64) {
	t.Helper()
	if got := testenv.Count(t, store, "SELECT count() FROM "+store.T("requests")); got != total {
		t.Errorf("rows = %d; want %d", got, total)
	}
	if got := testenv.Count(t, store, "SELECT uniqExact(request_id) FROM "+store.T("requests")); got != total {
		t.Errorf("distinct request ids = %d; want %d", got, total)
	}
	// As many distinct IDs as rows, the largest <prefix><total-1>: exactly
	// the events sent.
	q := fmt.Sprintf("SELECT max(toUInt64(substring(request_id, %d))) FROM %s", len(prefix)+1, store.T("requests"))
	if got := testenv.Count(t, store, q); got != total-1 {
		t.Errorf("largest request id %s%d; want %s%d", prefix, got, prefix, total-1)
	}
	if got := testenv.Count(t, store, "SELECT toUInt64(countMerge(requests)) FROM "+store.T("requests_1m")); got != total {
		t.Errorf("rollup counts %d; want %d", got, total)
	}
}
