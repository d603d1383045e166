package dashboard_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/wedsync/pulse/internal/dashboard"
	"github.com/wedsync/pulse/internal/testenv"
)

// binDir holds the pulse binary the tests build once (pulseBinary).
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "pulse-dashboard-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := testenv.Main(m)
	os.RemoveAll(dir)
	os.Exit(code)
}

const (
	adminToken  = "admin-token-for-the-dashboard-test"
	ingestToken = "ingest-token-for-the-dashboard-test"
	xssEndpoint = "<img src=x onerror=alert(1)>"
	chromium    = "/usr/bin/chromium"
)

// fixture is what the fleet reported: a slow failing payment (it fires
// slow_response and server_error), two fast requests, and an endpoint
// name that is HTML. The P95 of the four is the payment's 5400 ms.
const fixture = `{"endpoint":"/api/clients/1","response_time_ms":42,"status_code":200,"service":"web"}
{"endpoint":"/api/forms","response_time_ms":130.5,"status_code":201,"service":"web","method":"POST"}
{"endpoint":"/api/payments","response_time_ms":5400,"status_code":502,"service":"api","error_message":"upstream timeout"}
{"endpoint":"<img src=x onerror=alert(1)>","response_time_ms":10,"status_code":404,"service":"web"}
`

// TestDashboardInChromium drives Debian's chromium against a real pulse
// serve (embedded NATS, the ClickHouse server) holding the fixture: a bad
// token is refused, an admin token opens panels showing the fixture's
// values and firing alerts, the HTML endpoint name stays text and nothing
// runs or breaks the CSP, and screenshots at laptop and phone widths land
// in .work/test-output.
func TestDashboardInChromium(t *testing.T) {
	ensureChromium(t)
	srv := startPulse(t, "6000/min")
	base := srv.base
	postFixture(t, base)

	// The page's own answers carry the CSP; it allows no inline script.
	resp, err := http.Get(base + "/admin")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Security-Policy") != dashboard.ContentSecurityPolicy {
		t.Fatalf("GET /admin = %d with CSP %q; want 200 with %q", resp.StatusCode, resp.Header.Get("Content-Security-Policy"), dashboard.ContentSecurityPolicy)
	}
	if strings.Contains(dashboard.ContentSecurityPolicy, "unsafe-inline") {
		t.Fatal("the CSP allows unsafe-inline")
	}

	ctx, dialogs := browser(t)
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("read %s: %v", sel, err)
		}
		return s
	}
	waitFor := func(what, js string) {
		t.Helper()
		if _, err := chromedp.Run(ctx, chromedp.Poll[any](js, chromedp.WithPollingTimeout(20*time.Second))); err != nil {
			t.Fatalf("waiting for %s: %v\nthe page says:\n%s", what, err, text("body"))
		}
	}
	shown := func(sel string) string {
		return fmt.Sprintf(`(() => { const e = document.querySelector(%q); return e && !e.closest("[hidden]") })()`, sel)
	}
	contains := func(sel, want string) string {
		return fmt.Sprintf(`(document.querySelector(%q) || {}).textContent?.includes(%q)`, sel, want)
	}

	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1440, 900), chromedp.Navigate(base+"/admin")); err != nil {
		t.Fatal(err)
	}
	waitFor("the token prompt", shown("#token"))

	// A bad token goes back to the prompt with the reason.
	if err := chromedp.Do(ctx, chromedp.SendKeys(chromedp.CSS("#token"), "not-a-token-pulse-knows"), chromedp.Click(chromedp.CSS("#login-form button"))); err != nil {
		t.Fatal(err)
	}
	waitFor("the 401 message", shown("#login-message")+` && `+contains("#login-message", "refused this token (401)"))
	if !strings.Contains(text("#login-message"), "401") {
		t.Fatalf("login message %q; want the 401 explained", text("#login-message"))
	}

	if err := chromedp.Do(ctx, chromedp.SendKeys(chromedp.CSS("#token"), adminToken), chromedp.Click(chromedp.CSS("#login-form button"))); err != nil {
		t.Fatal(err)
	}
	waitFor("the P95 of the fixture", contains("#trend-summary", "5400 ms"))
	waitFor("the firing alerts", contains("#firing", "server_error")+` && `+contains("#firing", "slow_response"))
	waitFor("the component cards", contains("#components", "pipeline"))
	waitFor("the host resources", contains("#hosts", "cpu"))
	waitFor("the stored events", contains("#pipeline-figures", "4 in all"))
	waitFor("the compliance report", contains("#compliance", "gdpr"))

	summary := text("#trend-summary")
	for _, want := range []string{"requests4", "P955400 ms", "P995400 ms", "5xx25.0%", "4xx25.0%"} {
		if !strings.Contains(strings.ReplaceAll(summary, "\n", ""), want) {
			t.Errorf("trend summary %q lacks %q", summary, want)
		}
	}
	if got := text("#firing"); !strings.Contains(got, "critical") || !strings.Contains(got, "endpoint=/api/payments") {
		t.Errorf("firing list %q; want server_error as critical on endpoint=/api/payments", got)
	}
	if got := text("#overall"); got == "" || got == "loading" {
		t.Errorf("overall status %q; want the platform's status in words", got)
	}

	// Run a validation from the page.
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS("#validate-form button"))); err != nil {
		t.Fatal(err)
	}
	waitFor("the validation result", contains("#validate-status", "deployment/security: valid"))
	waitFor("the validation in the history", contains("#validations", "deployment/security"))

	// The HTML endpoint is text: the link reads as the raw name, no image
	// element exists, no dialog opened, no CSP violation was reported.
	type xssState struct {
		Text   bool `json:"text"`
		Images int  `json:"images"`
	}
	xss, err := chromedp.Run(ctx, chromedp.Evaluate[xssState](fmt.Sprintf(`({
		text: [...document.querySelectorAll("#slowest .endpoint")].some(a => a.textContent === %q),
		images: document.querySelectorAll("img").length })`, xssEndpoint)))
	if err != nil {
		t.Fatal(err)
	}
	if !xss.Text || xss.Images != 0 {
		t.Errorf("XSS fixture: shown as text %v, %d img elements; want true and 0", xss.Text, xss.Images)
	}
	type pageState struct {
		Violations []string `json:"violations"`
		Budget     float64  `json:"budget"`
	}
	page, err := chromedp.Run(ctx, chromedp.Evaluate[pageState](`({violations: window.pulseDashboard.violations(), budget: window.pulseDashboard.requestsPerMinute})`))
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Violations) != 0 {
		t.Errorf("CSP violations %v; want none", page.Violations)
	}
	if page.Budget <= 0 || page.Budget > 12 {
		t.Errorf("the refresh schedule sends %.1f requests a minute; want at most 12", page.Budget)
	}

	// Sorting by endpoint, ascending, puts "/api/clients/:id" first.
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`#slowest button[data-sort="endpoint"]`))); err != nil {
		t.Fatal(err)
	}
	if got := text("#slowest tbody tr:first-child .endpoint"); got != "/api/clients/:id" {
		t.Errorf("first endpoint sorted by name %q; want /api/clients/:id", got)
	}

	out := outputDir(t)
	shot := func(name string, w, h int64, opts ...chromedp.EmulateViewportOption) {
		t.Helper()
		if err := chromedp.Do(ctx, chromedp.EmulateViewport(w, h, opts...)); err != nil {
			t.Fatal(err)
		}
		waitFor("the trends after resizing", contains("#trend-summary", "5400 ms"))
		// Nothing is wider than the window (tables scroll inside their box).
		wide, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](fmt.Sprintf(`window.scrollTo(0, 0),
			[...document.querySelectorAll("body *")].filter(e => !e.closest(".scroll") && e.getBoundingClientRect().right > %d + 1)
				.slice(0, 5).map(e => e.tagName + "#" + e.id + "." + e.className + " " + Math.round(e.getBoundingClientRect().right))`, w)))
		if err != nil {
			t.Fatal(err)
		}
		if len(wide) != 0 {
			t.Errorf("at %dx%d these elements are wider than the window: %v", w, h, wide)
		}
		buf, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		top, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		for file, png := range map[string][]byte{name + ".png": buf, name + "-top.png": top} {
			path := filepath.Join(out, file)
			if err := os.WriteFile(path, png, 0o644); err != nil {
				t.Fatal(err)
			}
			t.Logf("screenshot: %s", path)
		}
	}
	shot("dashboard-1440x900", 1440, 900)
	shot("dashboard-390x844", 390, 844, chromedp.EmulateMobile)

	// A short load test moves the charts: after "Refresh now" the trend
	// counts the load test's events and the throughput chart draws more.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1440, 900)); err != nil {
		t.Fatal(err)
	}
	before := trendState(t, ctx)
	if before.Requests != 4 || before.Throughput <= 0 {
		t.Fatalf("before the load test the trend shows %+v; want 4 requests and some throughput drawn", before)
	}
	lt := exec.Command(srv.bin, "loadtest", "--target", base, "--users", "20", "--ramp-up", "1s", "--duration", "3s",
		"--token", ingestToken, "--admin-token", adminToken, "--verify-timeout", "30s")
	if out, err := lt.CombinedOutput(); err != nil {
		t.Fatalf("pulse loadtest: %v\n%s", err, out)
	}
	// Pulse caches a 1h trend for 10 s, so the first clicks may show the
	// cached answer: click every 2 s until the trend moves.
	moved := `!document.querySelector("#refresh").disabled && ` +
		`window.pulseDashboard.chartData("throughput")[1].reduce((a, v) => a + (v || 0), 0) > ` + fmt.Sprint(before.Throughput)
	for deadline := time.Now().Add(30 * time.Second); ; {
		if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS("#refresh"))); err != nil {
			t.Fatal(err)
		}
		_, err := chromedp.Run(ctx, chromedp.Poll[any](moved, chromedp.WithPollingTimeout(2*time.Second)))
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the trend did not move within 30 s of the load test (%v); it shows %+v", err, trendState(t, ctx))
		}
	}
	after := trendState(t, ctx)
	if after.Requests < before.Requests+20 || after.Throughput <= before.Throughput {
		t.Errorf("after the load test the trend shows %+v; want at least 20 more requests than %+v and more throughput", after, before)
	}
	waitFor("the stored count moved", `!/(^|[^\d,])4 in all/.test(document.querySelector("#pipeline-figures").textContent)`)

	// An outage of the API: every panel says Pulse did not answer and keeps
	// its last answer on screen; the page stays up.
	srv.stop()
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS("#refresh"))); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"now", "alerts", "trends", "pipeline", "resources", "architecture"} {
		sel := "#" + id + ` [data-role="state"]`
		waitFor(id+" showing the outage", shown(sel)+` && document.querySelector(`+fmt.Sprintf("%q", sel)+`).dataset.kind === "error" && `+
			contains(sel, "Pulse did not answer")+` && `+contains(sel, "Showing the last answer"))
	}
	type upState struct {
		App, Login bool
		Summary    string
	}
	up, err := chromedp.Run(ctx, chromedp.Evaluate[upState](`({app: !document.querySelector("#app").hidden,
		login: !document.querySelector("#login").hidden, summary: document.querySelector("#trend-summary").textContent})`))
	if err != nil {
		t.Fatal(err)
	}
	if !up.App || up.Login || !strings.Contains(up.Summary, "5400 ms") {
		t.Errorf("during the outage: dashboard shown %v, token prompt shown %v, trend summary %q; want the dashboard with its last answer", up.App, up.Login, up.Summary)
	}
	screenshot(t, ctx, out, "dashboard-outage-1440x900")

	if d := dialogs(); len(d) != 0 {
		t.Errorf("%d JavaScript dialogs opened (%v); want none", len(d), d)
	}
}

// TestDashboardBacksOffOn429 opens the page against a pulse whose admin
// rate limit is 2 a minute: the first round of requests meets a 429, the
// page says it is backing off, sends nothing more (not even on "Refresh
// now"), and shows what it got, never a blank page or the token prompt.
func TestDashboardBacksOffOn429(t *testing.T) {
	ensureChromium(t)
	srv := startPulse(t, "2/min")
	ctx, _ := browser(t)
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1440, 900), chromedp.Navigate(srv.base+"/admin")); err != nil {
		t.Fatal(err)
	}
	poll := func(what, js string) {
		t.Helper()
		if _, err := chromedp.Run(ctx, chromedp.Poll[any](js, chromedp.WithPollingTimeout(20*time.Second))); err != nil {
			body, _ := chromedp.Run(ctx, chromedp.TextContent(chromedp.CSS("body")))
			t.Fatalf("waiting for %s: %v\nthe page says:\n%s", what, err, body)
		}
	}
	poll("the token prompt", `!document.querySelector("#token").closest("[hidden]")`)
	if err := chromedp.Do(ctx, chromedp.SendKeys(chromedp.CSS("#token"), adminToken), chromedp.Click(chromedp.CSS("#login-form button"))); err != nil {
		t.Fatal(err)
	}
	poll("the 429 banner", `!document.querySelector("#banner").hidden && document.querySelector("#banner").textContent.includes("(429)")`)
	poll("the trends backing off", `document.querySelector('#trends [data-role="state"]').textContent.includes("Rate limited by Pulse")`)
	poll("the first round settled", `![...document.querySelectorAll("section.panel")].some(s => s.getAttribute("aria-busy") === "true")`)

	type backoff struct {
		App, Login bool
		Sent       int
		Banner     string
		Kinds      map[string]string
		Text       int
	}
	read := func() backoff {
		t.Helper()
		b, err := chromedp.Run(ctx, chromedp.Evaluate[backoff](`({app: !document.querySelector("#app").hidden,
			login: !document.querySelector("#login").hidden, sent: window.pulseDashboard.requestsSent(),
			banner: document.querySelector("#banner").textContent,
			kinds: Object.fromEntries([...document.querySelectorAll("section.panel")].map(s => [s.id,
				s.querySelector('[data-role="state"]').hidden ? "data" : s.querySelector('[data-role="state"]').dataset.kind])),
			text: document.querySelector("main").innerText.length})`))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	first := read()
	if !first.App || first.Login || first.Text < 200 {
		t.Fatalf("after a 429: dashboard shown %v, token prompt shown %v, %d characters of panels; want the dashboard, not blank", first.App, first.Login, first.Text)
	}
	// The limit lets 2 requests through (the Now panel's health and
	// alerts); the first refused makes every later request wait.
	if first.Kinds["now"] != "data" || first.Kinds["trends"] != "error" {
		t.Errorf("panel states %v; want now showing data and trends the rate-limit error", first.Kinds)
	}
	if first.Sent > 6 {
		t.Errorf("the page sent %d of its first round's 9 requests; want it to stop after the 429 (at most 6 in flight by then)", first.Sent)
	}
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS("#refresh"))); err != nil {
		t.Fatal(err)
	}
	poll("the pause said", `document.querySelector("#banner").textContent.includes("refreshing resumes in")`)
	if again := read(); again.Sent != first.Sent || !again.App {
		t.Errorf("Refresh now during the pause sent %d requests (had %d), dashboard shown %v; want none sent and the dashboard kept", again.Sent, first.Sent, again.App)
	}
	screenshot(t, ctx, outputDir(t), "dashboard-429-1440x900")
}

// trendFigures is what the Trends panel shows: the requests figure and the
// sum of the throughput chart's points.
type trendFigures struct {
	Requests   float64 `json:"requests"`
	Throughput float64 `json:"throughput"`
}

func trendState(t *testing.T, ctx context.Context) trendFigures {
	t.Helper()
	f, err := chromedp.Run(ctx, chromedp.Evaluate[trendFigures](`(() => {
		const fig = [...document.querySelectorAll("#trend-summary div")].find(d => d.querySelector("dt").textContent === "requests");
		const d = window.pulseDashboard.chartData("throughput");
		return { requests: Number(fig.querySelector("dd").textContent.replaceAll(",", "")),
			throughput: d ? d[1].reduce((a, v) => a + (v || 0), 0) : 0 };
	})()`))
	if err != nil {
		t.Fatalf("read the trend: %v", err)
	}
	return f
}

// screenshot writes the top of the page as name-top.png into dir.
func screenshot(t *testing.T, ctx context.Context, dir, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	path := filepath.Join(dir, name+"-top.png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
}

// ensureChromium installs Debian's chromium when it is missing.
func ensureChromium(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(chromium); err == nil {
		return
	}
	for _, args := range [][]string{
		{"-o", "DPkg::Lock::Timeout=300", "update", "-q"},
		{"-o", "DPkg::Lock::Timeout=300", "install", "-y", "-q", "chromium"},
	} {
		cmd := exec.Command("apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("apt-get %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// browser starts a headless chromium with a fresh profile; it records the
// JavaScript dialogs that open (and dismisses them).
func browser(t *testing.T) (context.Context, func() []string) {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1440, 900),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	if err := chromedp.Do(ctx); err != nil {
		cancelCtx()
		cancelAlloc()
		t.Fatalf("start chromium: %v", err)
	}
	var mu sync.Mutex
	var dialogs []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev, err := range chromedp.Events(ctx, page.JavascriptDialogOpening) {
			if err != nil {
				return
			}
			mu.Lock()
			dialogs = append(dialogs, ev.Message)
			mu.Unlock()
			_, _ = chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: false})
		}
	}()
	t.Cleanup(func() { cancelCtx(); cancelAlloc(); <-done })
	return ctx, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(dialogs)
	}
}

// pulseBinary builds cmd/pulse once for the package's tests.
var pulseBinary = sync.OnceValues(func() (string, error) {
	bin := filepath.Join(binDir, "pulse")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/pulse").CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %w\n%s", err, out)
	}
	return bin, nil
})

// pulse is a running `pulse serve`.
type pulse struct {
	base   string // http://host:port
	bin    string
	cmd    *exec.Cmd
	exited chan struct{}
	logs   *testenv.LogBuffer
}

// stop sends SIGTERM and waits for the process to exit (killing it after
// 30 s); it is safe to call twice.
func (p *pulse) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// startPulse runs `pulse serve` with every role on an embedded NATS and a
// fresh database on the ClickHouse server, admin requests limited to
// adminLimit per principal; it returns once the process serves, and stops
// it when the test ends.
func startPulse(t *testing.T, adminLimit string) *pulse {
	t.Helper()
	bin, err := pulseBinary()
	if err != nil {
		t.Fatal(err)
	}
	store := testenv.ClickHouse(t)
	dir := t.TempDir()
	addr := testenv.FreeAddr(t)
	cmd := exec.Command(bin, "serve", "--data-dir", filepath.Join(dir, "data"), "--http-addr", addr, "--nats-listen", testenv.FreeAddr(t),
		"--clickhouse-dsn", testenv.ClickHouseDSN()+"/"+store.Database(), "--admin-rate-limit", adminLimit)
	cmd.Env = append(os.Environ(), "PULSE_LOG_FORMAT=json", "PULSE_ADMIN_TOKENS=ops:"+adminToken, "PULSE_INGEST_TOKENS=fleet:"+ingestToken,
		"PULSE_INGEST_RATE_LIMIT=1000000/min")
	p := &pulse{base: "http://" + addr, bin: bin, cmd: cmd, exited: make(chan struct{}), logs: &testenv.LogBuffer{}}
	cmd.Stdout, cmd.Stderr = p.logs, p.logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start pulse: %v", err)
	}
	go func() { _ = cmd.Wait(); close(p.exited) }()
	t.Cleanup(p.stop)
	testenv.Eventually(t, 60*time.Second, "pulse serving", func() bool {
		select {
		case <-p.exited:
			t.Fatalf("pulse exited:\n%s", p.logs.String())
		default:
		}
		return strings.Contains(p.logs.String(), "pulse is serving")
	})
	return p
}

// postFixture sends the fixture and waits until it is stored and its two
// alerts fire.
func postFixture(t *testing.T, base string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/api/admin/system/metrics", strings.NewReader(fixture))
	req.Header.Set("Authorization", "Bearer "+ingestToken)
	req.Header.Set("Content-Type", "application/x-ndjson")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST fixture: %d; want 202", resp.StatusCode)
	}
	get := func(path string, v any) bool {
		req, _ := http.NewRequest(http.MethodGet, base+path, nil)
		req.Header.Set("Authorization", "Bearer "+adminToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		return resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(v) == nil
	}
	testenv.Eventually(t, 30*time.Second, "the fixture stored and its alerts firing", func() bool {
		var st struct {
			RequestsStored int `json:"requests_stored"`
		}
		var al struct {
			Firing int `json:"firing"`
		}
		return get("/api/admin/system/stats", &st) && st.RequestsStored == 4 && get("/api/admin/alerts", &al) && al.Firing >= 2
	})
}

// outputDir is .work/test-output at the repository root (gitignored).
func outputDir(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", "..", ".work", "test-output"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}
