package main

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wedsync/pulse/internal/testenv"
)

// TestCommandsWithoutEnvironment: a binary built with the chdb tag runs
// the commands that need no ClickHouse with an empty environment (no
// CHDB_LIB_PATH, no HOME); chDB is loaded only when a chdb: DSN is opened,
// and then a missing library is one line saying how to get it.
func TestCommandsWithoutEnvironment(t *testing.T) {
	bin := pulseBinary(t, "chdb")
	rules, err := filepath.Abs("../../deploy/alerts.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	f := func(wantCode int, want string, args ...string) {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Env = []string{}
		cmd.Dir = t.TempDir()
		out, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("pulse %s: %v", strings.Join(args, " "), err)
		}
		if code != wantCode || !strings.Contains(string(out), want) || strings.Contains(string(out), "panic") {
			t.Errorf("pulse %s: exit %d, output:\n%s\nwant exit %d and %q, no panic", strings.Join(args, " "), code, out, wantCode, want)
		}
	}
	f(0, "Usage: pulse <command>", "--help")
	f(0, "pulse dev", "version")
	f(0, "ok: ", "rules", "check", rules)
	f(0, "-firing", "alerts", "tail", "--help")
	f(0, "-clickhouse-dsn", "migrate", "-h")
	// serve opens chDB, which is not to be found here: one line, exit 1.
	f(1, "pulse: open chdb at ", "serve", "--data-dir", t.TempDir(), "--http-addr", testenv.FreeAddr(t), "--nats-listen", testenv.FreeAddr(t))
}
