package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/nats-io/nats.go"

	"github.com/wedsync/pulse/internal/httpapi"
	"github.com/wedsync/pulse/internal/stats"
	"github.com/wedsync/pulse/internal/testenv"
)

// TestMain fails the run when a test left a data folder in the source tree
// (pulse serve's default --data-dir is relative): tests write under
// t.TempDir().
func TestMain(m *testing.M) {
	_, err := os.Stat("data")
	existed := err == nil
	code := testenv.Main(m)
	if _, err := os.Stat("data"); err == nil && !existed && code == 0 {
		fmt.Fprintln(os.Stderr, "a test wrote cmd/pulse/data; tests must write under t.TempDir()")
		code = 1
	}
	os.Exit(code)
}

// TestServeEmbedded is `make run`: pulse serve with no configuration runs
// the whole pipeline on embedded NATS and chDB, prints generated tokens
// once, three events posted with curl's body become rows and fire the
// instant alerts, and on SIGTERM /readyz turns 503 before the listener
// closes. How fast is BenchmarkServeLatency's business; the deadlines here
// only keep a broken build from hanging.
func TestServeEmbedded(t *testing.T) {
	bin := pulseBinary(t, "chdb")
	dir := t.TempDir()
	const jwtSecret = "a-jwt-secret-of-at-least-32-bytes-for-tests"
	p := startPulse(t, bin, []string{"PULSE_LOG_FORMAT=json", "PULSE_HTTP_ADDR=" + testenv.FreeAddr(t),
		"PULSE_JWT_SECRET=" + jwtSecret, "PULSE_ADMIN_RATE_LIMIT=60/min"}, "serve", "--data-dir", dir, "--drain-grace", "10s")
	addr := p.httpAddr()

	out := p.stdout.String()
	admin := regexp.MustCompile(`admin token:\s+(\S+)`).FindStringSubmatch(out)
	ingest := regexp.MustCompile(`ingest token:\s+(\S+)`).FindStringSubmatch(out)
	if admin == nil || ingest == nil {
		t.Fatalf("no generated tokens on stdout:\n%s", out)
	}
	if strings.Contains(p.stderr.String(), admin[1]) || strings.Contains(p.stderr.String(), ingest[1]) {
		t.Fatal("a generated token appears in the log")
	}

	// Alert subscribers on the embedded NATS learn of the slow and the
	// failed request (the spec's instant rules).
	nc, err := nats.Connect(p.natsURL())
	if err != nil {
		t.Fatalf("connect to the embedded NATS: %v", err)
	}
	defer nc.Close()
	alertsSeen := make(chan *nats.Msg, 16)
	if _, err := nc.ChanSubscribe("pulse.alerts.>", alertsSeen); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	body := `{"endpoint":"/api/clients/1","response_time_ms":42,"status_code":200,"service":"web"}
{"endpoint":"/api/forms","response_time_ms":130.5,"status_code":201,"service":"web","method":"POST"}
{"endpoint":"/api/payments","response_time_ms":5400,"status_code":502,"service":"api","error_message":"upstream timeout"}`
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/api/admin/system/metrics", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+ingest[1])
	req.Header.Set("Content-Type", "application/x-ndjson")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted || strings.TrimSpace(string(got)) != `{"accepted":3}` {
		t.Fatalf("POST metrics: %d %s; want 202 {\"accepted\":3}", resp.StatusCode, got)
	}
	firing := map[string]bool{}
	for timeout := time.After(30 * time.Second); len(firing) < 2; {
		select {
		case m := <-alertsSeen:
			var a struct{ Rule, State string }
			if json.Unmarshal(m.Data, &a) == nil && a.State == "firing" {
				firing[a.Rule] = true
			}
		case <-timeout:
			t.Fatalf("within 30 s of the 202, firing alerts %v; want slow_response and server_error", firing)
		}
	}
	if !firing["slow_response"] || !firing["server_error"] {
		t.Errorf("firing alerts %v; want slow_response and server_error", firing)
	}

	var st stats.Body
	// The admin rate limit (60/min) applies to polls: back off.
	pollBackoff(t, time.Minute, "3 events stored", func() bool {
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/api/admin/system/stats", nil)
		req.Header.Set("Authorization", "Bearer "+admin[1])
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		return json.NewDecoder(resp.Body).Decode(&st) == nil && st.RequestsStored == 3
	})

	// Pulse's own metrics: admin only, and they saw the three events.
	resp, err = http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("/metrics without a token = %d; want 401", resp.StatusCode)
	}
	req, _ = http.NewRequest(http.MethodGet, "http://"+addr+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+admin[1])
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	metricsText, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	// Rows and batches also count the probes' health results and host samples.
	for _, want := range []string{"pulse_ingest_events_total 3", "pulse_aggregator_rows_total ", "pulse_aggregator_batch_rows_count ",
		"pulse_stream_pending_messages 0", "pulse_ingest_publish_seconds_count 1"} {
		if !strings.Contains(string(metricsText), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	// The probes and the host sampler run: health answers (with components
	// not configured here reported as such), and this host's samples show.
	var health struct {
		Overall    string `json:"overall_status"`
		Components []struct {
			Name       string `json:"name"`
			Status     string `json:"status"`
			Configured bool   `json:"configured"`
		} `json:"components"`
	}
	var resources struct {
		Items []struct {
			Resource string `json:"resource"`
		} `json:"items"`
	}
	getJSON := func(path string, v any) int {
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
		req.Header.Set("Authorization", "Bearer "+admin[1])
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		return resp.StatusCode
	}
	pollBackoff(t, time.Minute, "resource samples of this host", func() bool {
		getJSON("/api/admin/system/resources", &resources)
		return len(resources.Items) > 0
	})
	if code := getJSON("/api/admin/system/health?detailed=true", &health); code != http.StatusOK || health.Overall == "" {
		t.Errorf("health: %d %+v; want 200 with an overall status", code, health)
	}
	for _, c := range health.Components {
		if c.Name == "database" && (c.Configured || c.Status != "unknown") {
			t.Errorf("database without --database-url: %+v; want unknown, not configured", c)
		}
	}

	// A Supabase admin JWT is an admin credential too.
	jwtAdmin, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": "user-1", "role": "authenticated", "app_metadata": map[string]any{"role": "admin"},
		"exp": time.Now().Add(time.Hour).Unix(),
	}).SignedString([]byte(jwtSecret))
	if err != nil {
		t.Fatal(err)
	}
	get := func(token string) int {
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/api/admin/system/stats", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get(jwtAdmin); code != http.StatusOK {
		t.Errorf("stats with an admin JWT = %d; want 200", code)
	}
	// The admin token has made some calls already; within 60 more it is
	// refused with 429, while the JWT principal has its own budget.
	limited := false
	for i := 0; i < 60 && !limited; i++ {
		limited = get(admin[1]) == http.StatusTooManyRequests
	}
	if !limited {
		t.Error("60 more admin calls with a limit of 60/min: never 429")
	}
	if code := get(jwtAdmin); code != http.StatusOK {
		t.Errorf("stats with the JWT after the token was limited = %d; want 200", code)
	}

	resp, err = http.Get("http://" + addr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/readyz = %d; want 200", resp.StatusCode)
	}

	// On SIGTERM, /readyz says not ready while the listener still answers
	// (the drain grace), then the process exits cleanly.
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	var ready httpapi.ReadyBody
	testenv.Eventually(t, 10*time.Second, "/readyz answering 503 draining", func() bool {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			t.Fatalf("/readyz during the drain grace: %v; want an answer", err)
		}
		defer resp.Body.Close()
		return resp.StatusCode == http.StatusServiceUnavailable &&
			json.NewDecoder(resp.Body).Decode(&ready) == nil && ready.Checks["shutdown"] == "draining"
	})
	if err := p.wait(60 * time.Second); err != nil {
		t.Errorf("exit after SIGTERM: %v", err)
	}
}

// pollBackoff calls cond until it holds, waiting 100 ms after the first
// call and twice as long after each next one, up to 2 s; it fails the test
// when timeout passed.
func pollBackoff(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for wait := 100 * time.Millisecond; !cond(); wait = min(2*wait, 2*time.Second) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(wait)
	}
}

func TestEnvTwins(t *testing.T) {
	fs := newFlagSet("x", io.Discard)
	a := fs.String("http-addr", "default", "")
	b := fs.Int("batch-rows", 1, "")
	t.Setenv("PULSE_HTTP_ADDR", "from-env")
	t.Setenv("PULSE_BATCH_ROWS", "7")
	if err := parseWithEnv(fs, []string{"--batch-rows", "9"}); err != nil {
		t.Fatal(err)
	}
	if *a != "from-env" || *b != 9 {
		t.Errorf("http-addr %q, batch-rows %d; want from-env (env) and 9 (flag wins)", *a, *b)
	}

	t.Setenv("PULSE_BATCH_ROWS", "many")
	fs = newFlagSet("x", io.Discard)
	fs.Int("batch-rows", 1, "")
	err := parseWithEnv(fs, nil)
	if err == nil || !strings.Contains(err.Error(), "PULSE_BATCH_ROWS") {
		t.Errorf("bad PULSE_BATCH_ROWS: err %v; want one naming the variable", err)
	}
}

func TestRunExitCodes(t *testing.T) {
	f := func(want int, args ...string) {
		t.Helper()
		if got := run(args, io.Discard, io.Discard); got != want {
			t.Errorf("pulse %v exited %d; want %d", args, got, want)
		}
	}
	f(2)
	f(2, "frobnicate")
	f(0, "version")
	f(0, "help")
	f(2, "serve", "--roles", "ingest,teleport")
	f(2, "serve", "--log-level", "loud")
	f(2, "serve", "--retention-raw", "1h")
	f(2, "serve", "--batch-rows", "-5")
	f(2, "serve", "--ingest-tokens", "short")
	f(2, "migrate", "extra-arg")
	f(1, "migrate", "--clickhouse-dsn", "mysql://x")
	f(2, "rules")
	f(2, "rules", "lint", "x.yaml")
	f(0, "rules", "check", "../../deploy/alerts.example.yaml")
	f(1, "rules", "check", "../../alerts/testdata/rules/bad_duplicate_name.yaml")
	f(1, "rules", "check", "no-such-file.yaml")
	f(2, "serve", "--rules", "../../alerts/testdata/rules/bad_types.yaml")
	f(2, "alerts")
	f(2, "alerts", "tail", "--severity")
}
