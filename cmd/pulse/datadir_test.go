package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wedsync/pulse/internal/testenv"
)

// TestDataDirLock: a second holder of a data directory is refused with an
// error naming the first's pid; once released, the directory is free.
func TestDataDirLock(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	release, err := lockDataDir(dir, true)
	if err != nil {
		t.Fatal(err)
	}
	_, err = lockDataDir(dir, true)
	if err == nil || !strings.Contains(err.Error(), "pid "+strconv.Itoa(os.Getpid())) {
		t.Fatalf("second lock: %v; want an error naming pid %d", err, os.Getpid())
	}
	release()
	release, err = lockDataDir(dir, true)
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	release()
	if _, err := lockDataDir(filepath.Join(t.TempDir(), "unused"), false); err != nil {
		t.Errorf("lock not needed: %v", err)
	}
}

// TestGeneratedTokensKept: generated tokens are written mode 0600 and
// read back by the next run; configured tokens leave the file alone; a
// file others can read is refused.
func TestGeneratedTokensKept(t *testing.T) {
	dir := t.TempDir()
	ts, err := parseTokens("", "")
	if err != nil {
		t.Fatal(err)
	}
	if err := ts.generate(dir); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, tokensFile)
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("tokens file: %v, %v; want mode 0600", fi, err)
	}
	if ts.file != path || ts.Len() != 2 {
		t.Errorf("file %q, %d tokens; want %q, 2", ts.file, ts.Len(), path)
	}
	again, _ := parseTokens("", "")
	if err := again.generate(dir); err != nil {
		t.Fatal(err)
	}
	for scope, tok := range ts.generated {
		if again.generated[scope] != tok || len(tok) < 16 {
			t.Errorf("%s token after restart %q; want %q", scope, again.generated[scope], tok)
		}
	}
	configured, _ := parseTokens("ops:"+testAdminToken, "")
	if err := configured.generate(t.TempDir()); err != nil || configured.generated != nil || configured.file != "" {
		t.Errorf("configured tokens: generated %v, file %q, %v; want none", configured.generated, configured.file, err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	open, _ := parseTokens("", "")
	if err := open.generate(dir); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("world-readable tokens file: %v; want a refusal", err)
	}
}

// TestServeDataDir runs the binary: a restart prints the same tokens and
// where they are kept (never logging them), and a second pulse serve on
// the same data directory exits at once with one line naming the first.
func TestServeDataDir(t *testing.T) {
	bin := pulseBinary(t, "chdb")
	dir := t.TempDir()
	env := []string{"PULSE_LOG_FORMAT=json", "PULSE_ROLES=ingest"}
	tokens := func(p *proc) (string, string) {
		t.Helper()
		out := p.stdout.String()
		admin := regexp.MustCompile(`admin token:\s+(\S+)`).FindStringSubmatch(out)
		ingest := regexp.MustCompile(`ingest token:\s+(\S+)`).FindStringSubmatch(out)
		if admin == nil || ingest == nil || !strings.Contains(out, filepath.Join(dir, tokensFile)) {
			t.Fatalf("stdout lacks the tokens or where they are kept:\n%s", out)
		}
		if strings.Contains(p.stderr.String(), admin[1]) || strings.Contains(p.stderr.String(), ingest[1]) {
			t.Fatal("a generated token appears in the log")
		}
		return admin[1], ingest[1]
	}
	p := startPulse(t, bin, append(env, "PULSE_HTTP_ADDR="+testenv.FreeAddr(t)), "serve", "--data-dir", dir, "--nats-listen", testenv.FreeAddr(t))
	admin, ingest := tokens(p)
	var st storedTokens
	b, err := os.ReadFile(filepath.Join(dir, tokensFile))
	if err != nil || json.Unmarshal(b, &st) != nil || st.Admin != admin || st.Ingest != ingest {
		t.Fatalf("tokens file %s (%v); want the printed tokens", b, err)
	}

	second := exec.Command(bin, "serve", "--data-dir", dir, "--nats-listen", testenv.FreeAddr(t), "--http-addr", testenv.FreeAddr(t))
	second.Env = append(os.Environ(), env...)
	out, err := second.CombinedOutput()
	want := "is in use by another pulse serve (pid " + strconv.Itoa(p.cmd.Process.Pid) + ")"
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), want) ||
		strings.Count(strings.TrimSpace(string(out)), "\n") != 0 {
		t.Errorf("second pulse serve: %v\n%s\nwant exit 1 and one line containing %q", err, out, want)
	}

	if err := p.terminate(30 * time.Second); err != nil {
		t.Fatalf("first pulse serve: %v\n%s", err, p.stderr.String())
	}
	// Durations are logged as Go writes them.
	if !strings.Contains(p.stderr.String(), `"grace":"5s"`) {
		t.Errorf("shutdown log lacks \"grace\":\"5s\":\n%s", p.stderr.String())
	}
	p = startPulse(t, bin, append(env, "PULSE_HTTP_ADDR="+testenv.FreeAddr(t)), "serve", "--data-dir", dir, "--nats-listen", testenv.FreeAddr(t))
	if a, i := tokens(p); a != admin || i != ingest {
		t.Errorf("tokens after restart differ from the first run's")
	}
}
