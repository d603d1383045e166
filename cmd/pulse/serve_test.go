package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/nats-io/nats.go"

	"github.com/wedsync/pulse/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// TestServeEmbedded is `make run`: pulse serve with no configuration runs
// the whole pipeline on embedded NATS and chDB, prints generated tokens
// once, and three events posted with curl's body are rows within 2 s.
func TestServeEmbedded(t *testing.T) {
	bin := pulseBinary(t, "chdb")
	dir := t.TempDir()
	const jwtSecret = "a-jwt-secret-of-at-least-32-bytes-for-tests"
	p := startPulse(t, bin, []string{"PULSE_LOG_FORMAT=json", "PULSE_HTTP_ADDR=" + freeAddr(t),
		"PULSE_JWT_SECRET=" + jwtSecret, "PULSE_ADMIN_RATE_LIMIT=60/min"}, "serve", "--data-dir", dir)
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
	// failed request (the spec's instant rules) within a second.
	var natsURL string
	for _, l := range p.logLines() {
		if l["message"] == "embedded NATS server with JetStream is listening" {
			natsURL = fmt.Sprint(l["url"])
		}
	}
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatalf("connect to the embedded NATS at %q: %v", natsURL, err)
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
	sentAt := time.Now()
	firing := map[string]bool{}
	for timeout := time.After(time.Second); len(firing) < 2; {
		select {
		case m := <-alertsSeen:
			var a struct{ Rule, State string }
			if json.Unmarshal(m.Data, &a) == nil && a.State == "firing" {
				firing[a.Rule] = true
			}
		case <-timeout:
			t.Fatalf("within 1 s of the 202, firing alerts %v; want slow_response and server_error", firing)
		}
	}
	if !firing["slow_response"] || !firing["server_error"] {
		t.Errorf("firing alerts %v; want slow_response and server_error", firing)
	}

	var stats StatsBody
	// Poll every 100 ms (not faster: the admin rate limit applies).
	deadline := time.Now().Add(2 * time.Second)
	for stored := false; !stored; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("3 events not stored within 2 s of the 202 (last stats %+v)", stats)
		}
		stored = func() bool {
			req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/api/admin/system/stats", nil)
			req.Header.Set("Authorization", "Bearer "+admin[1])
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return false
			}
			defer resp.Body.Close()
			return json.NewDecoder(resp.Body).Decode(&stats) == nil && stats.RequestsStored == 3
		}()
	}
	t.Logf("3 events stored %s after the 202", time.Since(sentAt).Round(time.Millisecond))

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
	deadline = time.Now().Add(10 * time.Second)
	for ; len(resources.Items) == 0 && time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		getJSON("/api/admin/system/resources", &resources)
	}
	if len(resources.Items) == 0 {
		t.Error("no resource samples of this host within 10 s")
	}
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
	if err := p.terminate(30 * time.Second); err != nil {
		t.Errorf("exit after SIGTERM: %v", err)
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
