package probe

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/wedsync/pulse/aggregator"
	"github.com/wedsync/pulse/internal/event"
	"github.com/wedsync/pulse/internal/stream"
	"github.com/wedsync/pulse/internal/testenv"
)

// running is a Runner started by a test; stop cancels it and waits for Run.
type running struct {
	*Runner
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

func startRunner(t *testing.T, cfg Config, pub Publisher, log zerolog.Logger) *running {
	t.Helper()
	runner, err := New(cfg, pub, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{Runner: runner, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- r.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

func (r *running) stop(t *testing.T) {
	t.Helper()
	r.once.Do(func() {
		r.cancel()
		select {
		case err := <-r.done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("Run did not return within 15s of cancel")
		}
	})
}

// TestRunnerNotConfigured: with nothing configured every component says
// so on every run, and Latest lists each once.
func TestRunnerNotConfigured(t *testing.T) {
	pub := &memPublisher{}
	r := startRunner(t, Config{Interval: 50 * time.Millisecond, Timeout: 50 * time.Millisecond}, pub, zerolog.Nop())
	testenv.Eventually(t, 5*time.Second, "3 runs of each probe", func() bool { return r.Stats().Runs.Load() >= 18 })
	r.stop(t)
	counts := map[string]int{}
	for _, h := range pub.health(t) {
		counts[h.Component+"/"+h.Target]++
		wantStatus(t, h.Component+"/"+h.Target, h, event.StatusUnknown)
		if d := details(t, h); d["reason"] != "not configured" || d["configured"] != false {
			t.Errorf("%s: details %v", h.Component, d)
		}
	}
	want := []string{"database/", "auth/", "realtime/", "api/", "external/", "pipeline/nats", "pipeline/clickhouse", "pipeline/redis"}
	for _, k := range want {
		if counts[k] < 3 {
			t.Errorf("%s reported %d times; want once per run, at least 3", k, counts[k])
		}
	}
	latest := r.Latest()
	var keys []string
	for _, h := range latest {
		keys = append(keys, h.Component+"/"+h.Target)
	}
	if strings.Join(keys, " ") != "database/ auth/ realtime/ api/ external/ pipeline/clickhouse pipeline/nats pipeline/redis" {
		t.Errorf("Latest lists %v", keys)
	}
	if n := r.Stats().Published.Load(); n != uint64(len(pub.all())) || r.Stats().PublishFailures.Load() != 0 {
		t.Errorf("published %d, failures %d; want %d, 0", n, r.Stats().PublishFailures.Load(), len(pub.all()))
	}
}

// firstSince returns the first published result of component/target whose
// run started at or after since, waiting up to timeout for it.
func firstSince(t *testing.T, pub *memPublisher, component, target string, since time.Time, timeout time.Duration) event.HealthResult {
	t.Helper()
	var found *event.HealthResult
	testenv.Eventually(t, timeout, fmt.Sprintf("a %s/%s result after %s", component, target, since.Format(time.StampMilli)), func() bool {
		for _, h := range pub.health(t) {
			if h.Component == component && h.Target == target && !h.Timestamp.Before(since) {
				found = &h
				return true
			}
		}
		return false
	})
	return *found
}

// TestDependencyOutage is the checked requirement: stopping a dependency
// (Postgres on a test port, an HTTP fake for auth) turns its component
// degraded or critical within one probe interval, and recovery turns it
// back, through the Runner.
func TestDependencyOutage(t *testing.T) {
	pg := startPostgres(t)
	auth := newSwitchServer(t, ok)
	pub := &memPublisher{}
	const interval = 800 * time.Millisecond
	r := startRunner(t, Config{Interval: interval, Timeout: 600 * time.Millisecond,
		DatabaseURL: pg.URL(""), AuthHealthURL: auth.url("/auth/v1/health")}, pub, zerolog.Nop())

	// within checks that the first run after a change has the status and
	// started within one interval of the change.
	within := func(what, component, want string, change time.Time) {
		t.Helper()
		h := firstSince(t, pub, component, "", change, 3*interval)
		wantStatus(t, what, h, want)
		if lag := h.Timestamp.Sub(change); lag > interval+200*time.Millisecond {
			t.Errorf("%s: first run after the change started %s later; want within the interval %s", what, lag, interval)
		}
		if got := latestOf(r.Runner, component, ""); got.Timestamp.Before(change) {
			t.Errorf("%s: Latest still holds a result from before the change", what)
		}
	}
	wantStatus(t, "database up", firstSince(t, pub, "database", "", time.Time{}, 3*interval), event.StatusHealthy)
	wantStatus(t, "auth up", firstSince(t, pub, "auth", "", time.Time{}, 3*interval), event.StatusHealthy)

	auth.stop()
	within("auth stopped", "auth", event.StatusCritical, time.Now())
	auth.set(slow(300*time.Millisecond, 200))
	auth.start()
	within("auth slow", "auth", event.StatusDegraded, time.Now())
	auth.set(ok)
	within("auth recovered", "auth", event.StatusHealthy, time.Now())

	pg.stop()
	within("postgres stopped", "database", event.StatusCritical, time.Now())
	pg.start()
	within("postgres restarted", "database", event.StatusHealthy, time.Now())
}

func latestOf(r *Runner, component, target string) event.HealthResult {
	for _, h := range r.Latest() {
		if h.Component == component && h.Target == target {
			return h
		}
	}
	return event.HealthResult{}
}

// TestRunnerPublishFailure: a stream that refuses publishes is counted and
// logged once, the runs go on, and Latest stays current.
func TestRunnerPublishFailure(t *testing.T) {
	pub := &memPublisher{}
	pub.fail.Store(true)
	var logs logBuffer
	r := startRunner(t, Config{Interval: 30 * time.Millisecond, Timeout: 30 * time.Millisecond}, pub, logs.logger())
	testenv.Eventually(t, 5*time.Second, "failed publishes", func() bool { return r.Stats().PublishFailures.Load() >= 40 })
	if n := strings.Count(logs.String(), "probe result not published"); n != 1 {
		t.Errorf("publish failure logged %d times; want once within a minute\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), `"cause":"timeout"`) {
		t.Errorf("publish failure logged without its cause: %s", logs.String())
	}
	if len(r.Latest()) != 8 {
		t.Errorf("Latest holds %d results; want 8", len(r.Latest()))
	}
	pub.fail.Store(false)
	testenv.Eventually(t, 5*time.Second, "publishing again", func() bool { return len(pub.all()) >= 8 })
}

var msgIDPattern = regexp.MustCompile(`^(health/(database|auth|realtime|api|external|pipeline)/[a-z]*|resources/[a-z0-9._-]+/connections)/[0-9]{13}$`)

// TestRunnerJetStream runs every probe against real servers, publishing
// to an in-process JetStream; the messages decode as the aggregator
// decodes them, carry deduplication IDs, and the aggregator stores them.
func TestRunnerJetStream(t *testing.T) {
	ns := testenv.NATS(t)
	_, js := testenv.Connect(t, ns.ClientURL())
	testenv.Streams(t, js, stream.Config{})
	store := testenv.ClickHouse(t)
	insert(t, store, reqs(time.Now().Add(-time.Minute), "web", "/api/forms", 20, 200, 40))
	auth := newSwitchServer(t, ok)
	ws := newWSServer(t, false)
	ext := newSwitchServer(t, ok)

	cfg := Config{Interval: 300 * time.Millisecond, Timeout: 250 * time.Millisecond,
		DatabaseURL: sharedDatabaseURL(), AuthHealthURL: auth.url("/auth/v1/health"), RealtimeURL: ws.wsURL("vsn=1.0.0"),
		External: []Dependency{{Name: "payments", URL: ext.url("/")}, {Name: "email", URL: ext.url("/email")}},
		Metrics:  StoreMetrics{Store: store}, JetStream: js, ClickHouse: store, Redis: newRedis(t, redisURL())}
	r := startRunner(t, cfg, JetStreamPublisher{JS: js}, zerolog.Nop())
	testenv.Eventually(t, 10*time.Second, "two runs of every probe", func() bool { return r.Stats().Runs.Load() >= 12 })
	r.stop(t)
	if f := r.Stats().PublishFailures.Load(); f != 0 {
		t.Fatalf("%d publish failures", f)
	}

	ctx := context.Background()
	st, err := js.Stream(ctx, "PULSE_INGEST")
	if err != nil {
		t.Fatal(err)
	}
	info, _ := st.Info(ctx)
	if info.State.Msgs != r.Stats().Published.Load() {
		t.Fatalf("stream holds %d messages; the runner published %d", info.State.Msgs, r.Stats().Published.Load())
	}
	statuses := map[string]string{}
	var results, samples int
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		if id := m.Header.Get("Nats-Msg-Id"); !msgIDPattern.MatchString(id) {
			t.Errorf("message %d on %s: Nats-Msg-Id %q", seq, m.Subject, id)
		}
		switch {
		case strings.HasPrefix(m.Subject, stream.SubjectHealth):
			hs, err := event.DecodeHealth(m.Data, 100)
			if err != nil || len(hs) != 1 {
				t.Fatalf("message %d: %d results, %v: %s", seq, len(hs), err, m.Data)
			}
			h := hs[0]
			if m.Subject != stream.SubjectHealth+h.Component || m.Header.Get("Nats-Msg-Id") != fmt.Sprintf("health/%s/%s/%d", h.Component, h.Target, h.Timestamp.UnixMilli()) {
				t.Errorf("result %s/%s on %s with ID %s", h.Component, h.Target, m.Subject, m.Header.Get("Nats-Msg-Id"))
			}
			statuses[h.Component+"/"+h.Target] = h.Status
			results++
		case m.Subject == stream.SubjectResources+"postgres":
			if _, err := event.DecodeResources(m.Data, event.Rules{Now: time.Now()}, 10); err != nil {
				t.Fatalf("message %d: %v: %s", seq, err, m.Data)
			}
			samples++
		default:
			t.Errorf("message %d on unexpected subject %s", seq, m.Subject)
		}
	}
	want := map[string]string{
		"database/": event.StatusHealthy, "auth/": event.StatusHealthy, "realtime/": event.StatusHealthy, "api/": event.StatusHealthy,
		"external/payments": event.StatusHealthy, "external/email": event.StatusHealthy,
		"pipeline/nats": event.StatusHealthy, "pipeline/clickhouse": event.StatusHealthy, "pipeline/redis": event.StatusHealthy,
	}
	for k, s := range want {
		if statuses[k] != s {
			t.Errorf("%s: last status %q; want %s", k, statuses[k], s)
		}
	}
	if samples < 2 {
		t.Errorf("%d connections samples; want one per database run", samples)
	}

	// Publishing a message again is deduplicated by its ID.
	m, _ := st.GetMsg(ctx, info.State.LastSeq)
	if err := (JetStreamPublisher{JS: js}).Publish(ctx, m.Subject, m.Data); err != nil {
		t.Fatal(err)
	}
	if info, _ := st.Info(ctx); info.State.Msgs != r.Stats().Published.Load() {
		t.Errorf("a republished message was stored again: %d messages", info.State.Msgs)
	}

	// The aggregator stores every result and sample.
	actx, cancel := context.WithCancel(ctx)
	agg, err := aggregator.New(aggregator.Config{MaxDelay: 50 * time.Millisecond}, js, store, nil, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- agg.Run(actx) }()
	testenv.Eventually(t, 20*time.Second, "rows stored", func() bool {
		return testenv.Count(t, store, "SELECT count() FROM "+store.T("health_checks")) >= uint64(results) &&
			testenv.Count(t, store, "SELECT count() FROM "+store.T("resources")) >= uint64(samples)
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := testenv.Count(t, store, "SELECT count() FROM "+store.T("health_checks")); n != uint64(results) {
		t.Errorf("%d health rows; want %d", n, results)
	}
	if n := testenv.Count(t, store, "SELECT count() FROM "+store.T("resources")+" WHERE host = 'postgres' AND resource = 'connections' AND capacity > 0"); n != uint64(samples) {
		t.Errorf("%d connections rows; want %d", n, samples)
	}
	if n := agg.Stats().DeadLetters.Load(); n != 0 {
		t.Errorf("%d dead letters", n)
	}
}

func TestMsgID(t *testing.T) {
	ts := time.UnixMilli(1781956980123).UTC()
	h, _ := json.Marshal([]event.HealthResult{{Timestamp: ts, Component: "external", Target: "payments", Status: "healthy"}})
	s, _ := json.Marshal(event.ResourceSample{Timestamp: ts, Host: "postgres", Resource: "connections"})
	a, _ := json.Marshal([]event.ResourceSample{{Timestamp: ts, Host: "web-1", Resource: "cpu"}})
	for _, tt := range []struct {
		subject string
		data    []byte
		want    string
	}{
		{"pulse.ingest.health.external", h, "health/external/payments/1781956980123"},
		{"pulse.ingest.resources.postgres", s, "resources/postgres/connections/1781956980123"},
		{"pulse.ingest.resources.web-1", a, "resources/web-1/cpu/1781956980123"},
		{"pulse.ingest.health.api", []byte(`[]`), ""},
		{"pulse.ingest.health.api", []byte(`nonsense`), ""},
		{"pulse.ingest.requests.web", h, ""},
	} {
		if got := msgID(tt.subject, tt.data); got != tt.want {
			t.Errorf("msgID(%s, %s) = %q; want %q", tt.subject, tt.data, got, tt.want)
		}
	}
}

// TestSecretsNeverLeave configures recognisable secrets everywhere and
// checks that no published result, no Latest result and no log line
// holds one, nor an address, on success and on error paths.
func TestSecretsNeverLeave(t *testing.T) {
	secrets := []string{"pg-pw-SECRET-31", "rt-apikey-SECRET-47", "auth-apikey-SECRET-59", "ext-token-SECRET-61", "ext-pw-SECRET-73"}
	pg := startPostgres(t)
	var gotAuthKey, gotBasic string
	var mu sync.Mutex
	auth := newSwitchServer(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		gotAuthKey = r.Header.Get("apikey")
		mu.Unlock()
		w.WriteHeader(http.StatusInternalServerError) // an error path, with the key sent
	})
	ext := newSwitchServer(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		_, gotBasic, _ = r.BasicAuth()
		mu.Unlock()
		ok(w, r)
	})
	ws := newWSServer(t, false)
	closed := closedAddr(t)

	var logs logBuffer
	pub := &memPublisher{}
	reachable := Config{
		DatabaseURL:   pg.URL("pg-pw-SECRET-31"),
		AuthHealthURL: auth.url("/auth/v1/health"), AuthAPIKey: "auth-apikey-SECRET-59",
		RealtimeURL: ws.wsURL("apikey=rt-apikey-SECRET-47&vsn=1.0.0"),
		External: []Dependency{{Name: "payments", URL: strings.Replace(ext.url("/health?token=ext-token-SECRET-61"), "http://", "http://user:ext-pw-SECRET-73@", 1)},
			{Name: "sms", URL: "http://" + closed + "/?token=ext-token-SECRET-61"}},
	}
	unreachable := Config{
		DatabaseURL:   "postgres://app:pg-pw-SECRET-31@" + closed + "/app?sslmode=disable",
		AuthHealthURL: "http://" + closed + "/auth/v1/health", AuthAPIKey: "auth-apikey-SECRET-59",
		RealtimeURL: "ws://" + closed + "/realtime/v1/websocket?apikey=rt-apikey-SECRET-47",
		External:    []Dependency{{Name: "payments", URL: "http://nowhere.invalid/?token=ext-token-SECRET-61"}},
	}
	var latest []event.HealthResult
	for i, c := range []Config{reachable, unreachable} {
		c.Interval, c.Timeout = 500*time.Millisecond, 400*time.Millisecond
		r := startRunner(t, c, pub, logs.logger())
		testenv.Eventually(t, 10*time.Second, "two runs of every probe", func() bool { return r.Stats().Runs.Load() >= 12 })
		if i == 1 {
			pub.fail.Store(true) // and a publish failure, logged
			testenv.Eventually(t, 10*time.Second, "a failed publish", func() bool { return r.Stats().PublishFailures.Load() > 0 })
		}
		r.stop(t)
		latest = append(latest, r.Latest()...)
	}
	mu.Lock()
	if gotAuthKey != "auth-apikey-SECRET-59" || gotBasic != "ext-pw-SECRET-73" || ws.query.Load() != "apikey=rt-apikey-SECRET-47&vsn=1.0.0" {
		t.Errorf("the secrets were not sent where they belong: apikey %q, basic %q, realtime query %v", gotAuthKey, gotBasic, ws.query.Load())
	}
	mu.Unlock()

	var published strings.Builder
	statuses := map[string]bool{}
	for _, m := range pub.all() {
		published.Write(m.data)
		published.WriteString(m.subject)
	}
	for _, h := range pub.health(t) {
		statuses[h.Component+"/"+h.Target+"="+h.Status] = true
	}
	// Both the healthy and the failing paths ran.
	for _, k := range []string{"database/=healthy", "database/=critical", "auth/=critical", "realtime/=healthy", "realtime/=critical",
		"external/payments=healthy", "external/payments=critical", "external/sms=critical"} {
		if !statuses[k] {
			t.Errorf("no published result %s; got %v", k, statuses)
		}
	}
	latestJSON, _ := json.Marshal(latest)
	log := logs.String()
	if !strings.Contains(log, "health status") || !strings.Contains(log, "probe result not published") {
		t.Fatalf("the runs logged too little to check: %s", log)
	}
	for name, text := range map[string]string{"published messages": published.String(), "Latest": string(latestJSON), "logs": log} {
		for _, s := range append(secrets, "127.0.0.1", closed, "nowhere.invalid", "user:") {
			if strings.Contains(text, s) {
				t.Errorf("%s hold %q", name, s)
			}
		}
	}

	// Invalid configuration: the errors do not quote the URLs either.
	_, err := New(Config{DatabaseURL: "postgres://u:pg-pw-SECRET-31@host:port/x", RealtimeURL: "http://x/?apikey=rt-apikey-SECRET-47",
		External: []Dependency{{Name: "Bad Name", URL: "ftp://x/?token=ext-token-SECRET-61"}}}, pub, logs.logger())
	if err == nil {
		t.Fatal("invalid config: New returned no error")
	}
	for _, s := range secrets {
		if strings.Contains(err.Error(), s) {
			t.Errorf("config error holds %q: %v", s, err)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tt := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"defaults", Config{}, ""},
		{"timeout over interval", Config{Interval: time.Second, Timeout: 2 * time.Second}, "timeout"},
		{"bad database url", Config{DatabaseURL: "postgres://x:y@h:notaport/db"}, "database url"},
		{"auth not http", Config{AuthHealthURL: "ftp://x/health"}, "auth health url"},
		{"realtime not ws", Config{RealtimeURL: "https://x/realtime"}, "realtime url"},
		{"dependency name", Config{External: []Dependency{{Name: "Pay Ments", URL: "https://x"}}}, "external dependency 1: name"},
		{"dependency twice", Config{External: []Dependency{{Name: "a", URL: "https://x"}, {Name: "a", URL: "https://y"}}}, "named twice"},
		{"dependency url", Config{External: []Dependency{{Name: "a", URL: "x"}}}, "external dependency a: url"},
		{"lags", Config{LagDegraded: 10, LagCritical: 5}, "lag"},
		{"window", Config{MetricsWindow: time.Second}, "metrics window"},
		{"database host", Config{DatabaseHost: "DB 1"}, "database host"},
		{"short interval, default timeout", Config{Interval: 2 * time.Second}, ""},
		{"min requests", Config{MinRequests: -1}, "minimum requests"},
	} {
		err := tt.cfg.Validate()
		if _, nerr := New(tt.cfg, &memPublisher{}, zerolog.Nop()); (nerr == nil) != (err == nil) {
			t.Errorf("%s: Validate says %v but New says %v", tt.name, err, nerr)
		}
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s: %v", tt.name, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%s: error %v; want one about %q", tt.name, err, tt.want)
		}
	}
	deps, err := ParseDependencies([]string{"payments=https://pay.example.com/health", " sms = https://sms.example.com/?a=b=c"})
	if err != nil || len(deps) != 2 || deps[1].Name != "sms" || deps[1].URL != "https://sms.example.com/?a=b=c" {
		t.Errorf("ParseDependencies: %+v, %v", deps, err)
	}
	if _, err := ParseDependencies([]string{"https://secret@x"}); err == nil || strings.Contains(err.Error(), "secret") {
		t.Errorf("ParseDependencies without a name: %v", err)
	}
	c := Config{Timeout: time.Second, External: []Dependency{{Name: "a", URL: "https://x", Timeout: time.Minute}}}
	r, err := New(c, &memPublisher{}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if r.cfg.External[0].Timeout != time.Second {
		t.Errorf("dependency timeout %s; want capped at the probe timeout", r.cfg.External[0].Timeout)
	}
	if c.External[0].Timeout != time.Minute {
		t.Errorf("New changed the caller's dependency timeout to %s", c.External[0].Timeout)
	}
	// The timeout defaults to the smaller of 5s and the interval.
	for interval, want := range map[time.Duration]time.Duration{2 * time.Second: 2 * time.Second, time.Minute: 5 * time.Second} {
		r, err := New(Config{Interval: interval}, &memPublisher{}, zerolog.Nop())
		if err != nil || r.cfg.Timeout != want || r.cfg.MinRequests != DefaultMinRequests {
			t.Errorf("interval %s: timeout %s, min requests %d, %v; want %s, %d", interval, r.cfg.Timeout, r.cfg.MinRequests, err, want, DefaultMinRequests)
		}
	}
}

func TestCause(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want string
	}{
		{context.DeadlineExceeded, "timeout"},
		{fmt.Errorf("dial: %w", context.Canceled), "canceled"},
		{errors.New("something with a password=hunter2"), "error"},
		{jetstream.ErrNoStreamResponse, "no stream responded"},
	} {
		if got := cause(tt.err); got != tt.want {
			t.Errorf("cause(%v) = %q; want %q", tt.err, got, tt.want)
		}
	}
}

// TestRunnerLogsChanges: results are logged when their status changes and
// once at start, not every run; an unconfigured check's first result is
// at debug level only.
func TestRunnerLogsChanges(t *testing.T) {
	auth := newSwitchServer(t, ok)
	var logs logBuffer
	pub := &memPublisher{}
	r := startRunner(t, Config{Interval: 200 * time.Millisecond, AuthHealthURL: auth.url("/auth/v1/health")},
		pub, logs.logger().Level(zerolog.InfoLevel))
	testenv.Eventually(t, 20*time.Second, "ten rounds", func() bool { return r.Stats().Runs.Load() >= 60 })
	auth.set(status(http.StatusServiceUnavailable))
	runs := r.Stats().Runs.Load()
	testenv.Eventually(t, 20*time.Second, "ten more rounds", func() bool { return r.Stats().Runs.Load() >= runs+60 })
	r.stop(t)
	// The published results say when auth's status changed.
	var changes []string
	for _, h := range pub.health(t) {
		if h.Component == "auth" && (len(changes) == 0 || changes[len(changes)-1] != h.Status) {
			changes = append(changes, h.Status)
		}
	}
	lines := logs.Lines("health status")
	if len(changes) < 2 || changes[len(changes)-1] != event.StatusCritical || len(lines) != len(changes) {
		t.Fatalf("auth went through %v; got %d status lines, want one per change:\n%s", changes, len(lines), strings.Join(lines, "\n"))
	}
	for i, l := range lines {
		if !strings.Contains(l, `"probe":"auth"`) || !strings.Contains(l, `"status":"`+changes[i]+`"`) {
			t.Errorf("line %d: %s; want auth's change to %s (unconfigured probes log at debug only)", i, l, changes[i])
		}
	}
}
