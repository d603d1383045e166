package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wedsync/pulse/internal/loadtest"
	"github.com/wedsync/pulse/internal/testenv"
)

// TestLoadtest is the smoke of `pulse loadtest` in `make test`: 200 mixed
// users for 4 s against a real pulse serve pass, every 202 stored; a wrong
// token, an unreachable target and bad flags fail within seconds.
func TestLoadtest(t *testing.T) {
	bin := pulseBinary(t, "chdb")
	const admin, ingest = "loadtest-admin-token-0123456789", "loadtest-ingest-token-0123456789"
	p := startPulse(t, bin, []string{"PULSE_LOG_FORMAT=json", "PULSE_HTTP_ADDR=" + testenv.FreeAddr(t),
		"PULSE_ADMIN_TOKENS=a:" + admin, "PULSE_INGEST_TOKENS=i:" + ingest,
		"PULSE_INGEST_RATE_LIMIT=1000000/min", "PULSE_ADMIN_RATE_LIMIT=100000/min"}, "serve", "--data-dir", t.TempDir())
	target := "http://" + p.httpAddr()

	jsonFile := filepath.Join(t.TempDir(), "out.json")
	var stdout, stderr bytes.Buffer
	code := run([]string{"loadtest", "--target", target, "--users", "200", "--ramp-up", "1s", "--duration", "4s",
		"--scenario", "mixed", "--token", ingest, "--admin-token", admin, "--verify-timeout", "30s", "--json", jsonFile}, &stdout, &stderr)
	if code != 0 || !strings.Contains(stdout.String(), "\nPASS\n") {
		t.Fatalf("loadtest exited %d; want 0 and PASS\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	var rep loadtest.Report
	b, err := os.ReadFile(jsonFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatalf("--json file: %v", err)
	}
	v := rep.Verification
	if v.Status != loadtest.VerifyStored || v.Accepted < 600 || v.Stored < v.Accepted {
		t.Errorf("storage check %+v; want verified with stored >= accepted >= 600", v)
	}
	if rep.Admin == nil || rep.Admin.Requests == 0 || rep.Ingest == nil || rep.Total.SuccessRate <= 0.99 {
		t.Errorf("report: admin %+v ingest %+v total %+v; want both kinds of request and > 99%% success", rep.Admin, rep.Ingest, rep.Total)
	}
	t.Logf("smoke: %d requests, p95 %.1f ms, %d events stored after %.1fs", rep.Total.Requests, rep.Total.P95MS, v.Stored, v.WaitedSeconds)

	f := func(want int, wantErr string, args ...string) {
		t.Helper()
		var stdout, stderr bytes.Buffer
		began := time.Now()
		got := run(append([]string{"loadtest"}, args...), &stdout, &stderr)
		if got != want || !strings.Contains(stderr.String(), wantErr) {
			t.Errorf("pulse loadtest %v exited %d; want %d with %q\nstderr: %s", args, got, want, wantErr, stderr.String())
		}
		if took := time.Since(began); took > 10*time.Second {
			t.Errorf("pulse loadtest %v took %s to fail; want seconds", args, took)
		}
	}
	f(1, "the ingest token was refused", "--target", target, "--token", "not-the-token-0123456789", "--users", "10", "--duration", "2s", "--ramp-up", "1s")
	f(1, "the admin token was refused", "--target", target, "--token", ingest, "--admin-token", "not-the-token-0123456789", "--users", "10", "--duration", "2s", "--ramp-up", "1s")
	f(1, "connection refused", "--target", "http://"+testenv.FreeAddr(t), "--token", ingest, "--users", "10", "--duration", "2s", "--ramp-up", "1s")
	f(2, "not on loopback", "--target", "http://192.0.2.1:7480", "--token", ingest)
	f(2, "--scenario", "--scenario", "chaos", "--token", ingest)
	f(2, "--token", "--target", target)
	f(2, "flag provided but not defined", "--no-such-flag")
	t.Setenv("PULSE_LOADTEST_USERS", "many")
	f(2, "PULSE_LOADTEST_USERS", "--token", ingest)
}
