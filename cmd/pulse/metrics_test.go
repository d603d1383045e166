package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/wedsync/pulse/internal/testenv"
)

// promtool is the path of promtool: $PULSE_TEST_PROMTOOL (scripts/services.sh
// installs it and sets it), else the one on PATH. The test fails, never
// skips, without it.
func promtool(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("PULSE_TEST_PROMTOOL"); p != "" {
		return p
	}
	p, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool not found: run scripts/services.sh (make test does), which installs it and sets PULSE_TEST_PROMTOOL")
	}
	return p
}

// TestMetricsExposition is issue #12's check: after real traffic on a
// real pulse serve — ingest posts beyond the rate limit, bad credentials,
// URLs that match no route — /metrics counts every answer by route
// template and status, its 429s included, carries pulse_build_info and
// the alert counters, and `promtool check metrics` finds nothing wrong.
func TestMetricsExposition(t *testing.T) {
	tool := promtool(t)
	store := testenv.ClickHouse(t)
	const admin, ingest = "metrics-admin-token-0123456789", "metrics-ingest-token-0123456789"
	p := startPulse(t, pulseBinary(t, ""), []string{
		"PULSE_CLICKHOUSE_DSN=" + testenv.ClickHouseDSN() + "/" + store.Database(),
		"PULSE_INGEST_TOKENS=fleet:" + ingest, "PULSE_ADMIN_TOKENS=ops:" + admin,
		"PULSE_HTTP_ADDR=" + testenv.FreeAddr(t), "PULSE_NATS_LISTEN=" + testenv.FreeAddr(t),
		"PULSE_LOG_FORMAT=json", "PULSE_INGEST_RATE_LIMIT=5/min",
	}, "serve", "--data-dir", t.TempDir())
	base := "http://" + p.httpAddr()
	client := &http.Client{Timeout: 10 * time.Second}
	do := func(method, path, token, body string) int {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		req.Header.Set("Content-Type", "application/x-ndjson")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}

	codes := map[int]int{}
	for i := range 20 {
		codes[do(http.MethodPost, "/api/admin/system/metrics", ingest,
			fmt.Sprintf(`{"endpoint":"/api/m","response_time_ms":%d,"status_code":200,"service":"web"}`, i))]++
	}
	if codes[http.StatusTooManyRequests] < 10 || codes[http.StatusAccepted]+codes[http.StatusTooManyRequests] != 20 {
		t.Fatalf("20 posts with a limit of 5/min answered %v; want 202s and at least 10 429s", codes)
	}
	for range 3 {
		if code := do(http.MethodGet, "/api/admin/system/stats", "not-a-token", ""); code != http.StatusUnauthorized {
			t.Fatalf("stats with a bad token = %d; want 401", code)
		}
	}
	for i := range 4 {
		do(http.MethodGet, fmt.Sprintf("/scan/%d/.env", i), "", "")
	}

	req, _ := http.NewRequest(http.MethodGet, base+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+admin)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	text, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics = %d; want 200", resp.StatusCode)
	}

	cmd := exec.Command(tool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(text)
	if out, err := cmd.CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}

	parser := expfmt.NewTextParser(model.LegacyValidation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(text))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	value := func(name string, labels ...string) (float64, bool) {
		for _, m := range families[name].GetMetric() {
			if hasLabelPairs(m.GetLabel(), labels) {
				if m.GetCounter() != nil {
					return m.GetCounter().GetValue(), true
				}
				return m.GetGauge().GetValue(), true
			}
		}
		return 0, false
	}
	for _, c := range []struct {
		labels []string
		want   int
	}{
		{[]string{"method", "POST", "route", "/api/admin/system/metrics", "status", "429"}, codes[http.StatusTooManyRequests]},
		{[]string{"method", "POST", "route", "/api/admin/system/metrics", "status", "202"}, codes[http.StatusAccepted]},
		{[]string{"method", "GET", "route", "/api/admin/system/stats", "status", "401"}, 3},
		{[]string{"method", "GET", "route", "unmatched", "status", "404"}, 4},
	} {
		if v, ok := value("pulse_http_requests_total", c.labels...); !ok || v != float64(c.want) {
			t.Errorf("pulse_http_requests_total%v = %v (present %v); want %d", c.labels, v, ok, c.want)
		}
	}
	for _, m := range families["pulse_http_requests_total"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "route" && strings.Contains(l.GetValue(), "scan") {
				t.Errorf("a raw URL became a route label: %q", l.GetValue())
			}
		}
	}
	if v, ok := value("pulse_build_info", "version", version); !ok || v != 1 {
		t.Errorf("pulse_build_info{version=%q} = %v (present %v); want 1", version, v, ok)
	}
	for _, name := range []string{"pulse_alerts_fired_total", "pulse_alerts_instant_panics_total",
		"pulse_alerts_history_malformed_messages_total", "pulse_probe_publish_failures_total", "pulse_ratelimit_refused_requests_total"} {
		if _, ok := families[name]; !ok {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	if v, ok := value("pulse_alerts_fired_total", "evaluator", "instant", "rule", "server_error", "severity", "critical"); !ok || v != 0 {
		t.Errorf("pulse_alerts_fired_total{server_error} = %v (present %v); want 0 (no 5xx posted)", v, ok)
	}
	for _, source := range []string{"probe", "host"} {
		if _, ok := value("pulse_probe_publish_failures_total", "source", source); !ok {
			t.Errorf("pulse_probe_publish_failures_total{source=%q} missing", source)
		}
	}
}

// hasLabelPairs reports whether have holds every name, value pair of want.
func hasLabelPairs(have []*dto.LabelPair, want []string) bool {
	for i := 0; i+1 < len(want); i += 2 {
		found := false
		for _, l := range have {
			found = found || l.GetName() == want[i] && l.GetValue() == want[i+1]
		}
		if !found {
			return false
		}
	}
	return true
}
