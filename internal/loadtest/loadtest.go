// Package loadtest is `pulse loadtest`: virtual users that load a Pulse
// over HTTP the way the app fleet and its admins do, open-model, with
// latency measured from each request's intended send time, then a summary
// judged against the spec's targets and a check that every event Pulse
// acknowledged was stored.
//
// Each virtual user has its own schedule (see schedule): users start
// staggered over the ramp-up, then each sends one request every
// 1/RatePerUser seconds. A user has at most one request in flight, on its
// own keep-alive connection; when an answer is late the user's next
// requests are already due, are sent at once, and their latency counts from
// when they were due, so a slow server shows as latency instead of as
// fewer requests.
package loadtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Scenarios.
const (
	ScenarioIngest        = "ingest"         // every user reports its requests
	ScenarioAdmin         = "admin"          // every user reads the admin API
	ScenarioMixed         = "mixed"          // ingest users, and one admin user in adminEvery
	ScenarioWeddingSeason = "wedding-season" // ingest users, then PeakFactor times as many
)

// Scenarios lists the scenario names.
var Scenarios = []string{ScenarioIngest, ScenarioAdmin, ScenarioMixed, ScenarioWeddingSeason}

const (
	// PeakFactor is how many times the baseline users the wedding-season
	// peak phase runs.
	PeakFactor = 3
	// adminEvery: in the mixed scenario, user 0, adminEvery, 2*adminEvery...
	// read the admin API; the others ingest.
	adminEvery = 100
	// RequestTimeout bounds one request, answer included.
	RequestTimeout = 10 * time.Second
	// DrainTimeout bounds the wait for requests in flight after a cancel.
	DrainTimeout = 5 * time.Second
	// preflightTimeout bounds the checks made before the load starts.
	preflightTimeout = 5 * time.Second
)

// Config is one load test. Durations: the run lasts Duration in total,
// of which the first RampUp starts the users; wedding-season runs two
// such phases back to back (2*Duration).
type Config struct {
	Target        string        // base URL of the Pulse, e.g. http://127.0.0.1:7480
	Users         int           // virtual users (baseline users for wedding-season)
	RampUp        time.Duration // users start evenly spread over this
	Duration      time.Duration // whole run (each phase for wedding-season), ramp-up included
	RatePerUser   float64       // requests per second of each user
	Scenario      string        // one of Scenarios
	Token         string        // ingest token (needed unless Scenario is admin)
	AdminToken    string        // admin token: admin reads, storage check, database probe
	Batch         int           // events per ingest request (NDJSON when more than 1)
	VerifyTimeout time.Duration // how long to wait for the events to be stored
	AllowRemote   bool          // allow a target that is not on loopback
	MaxConns      int           // connection cap; 0 means one per user
	Progress      io.Writer     // progress lines; nil writes none
	Terminal      bool          // Progress is a terminal: one line, updated in place
}

// defaults fills unset fields; New and Validate apply it.
func (c *Config) defaults() {
	if c.Target == "" {
		c.Target = "http://127.0.0.1:7480"
	}
	if c.Scenario == "" {
		c.Scenario = ScenarioIngest
	}
	if c.Batch == 0 {
		c.Batch = 1
	}
}

// PeakUsers is the most users running at once.
func (c Config) PeakUsers() int {
	if c.Scenario == ScenarioWeddingSeason {
		return c.Users * PeakFactor
	}
	return c.Users
}

// Validate reports the first problem of c once its defaults are applied.
func (c Config) Validate() error {
	c.defaults()
	u, err := url.Parse(c.Target)
	switch {
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return fmt.Errorf("--target %q: want a base URL such as http://127.0.0.1:7480", c.Target)
	case !c.AllowRemote && !loopback(u.Hostname()):
		return fmt.Errorf("--target %q is not on loopback (127.0.0.0/8, ::1, localhost); pass --allow-remote to load another host", c.Target)
	case c.Users < 1:
		return fmt.Errorf("--users %d: want at least 1", c.Users)
	case c.Duration <= 0:
		return fmt.Errorf("--duration %s: want more than 0", c.Duration)
	case c.RampUp < 0 || c.RampUp > c.Duration:
		return fmt.Errorf("--ramp-up %s: want between 0 and --duration (%s)", c.RampUp, c.Duration)
	case c.Scenario == ScenarioWeddingSeason && c.RampUp == c.Duration:
		return fmt.Errorf("--ramp-up %s: wedding-season measures each phase after its ramp-up, so want less than --duration", c.RampUp)
	case !(c.RatePerUser > 0 && c.RatePerUser <= 1000):
		return fmt.Errorf("--rate-per-user %g: want more than 0 and at most 1000 requests per second", c.RatePerUser)
	case c.Batch < 1 || c.Batch > 1000:
		return fmt.Errorf("--batch %d: want 1 to 1000 events per request", c.Batch)
	case c.VerifyTimeout < 0:
		return fmt.Errorf("--verify-timeout %s: want 0 or more", c.VerifyTimeout)
	case c.MaxConns < 0:
		return fmt.Errorf("connection cap %d: want 0 or more", c.MaxConns)
	}
	switch c.Scenario {
	case ScenarioIngest, ScenarioWeddingSeason:
	case ScenarioAdmin, ScenarioMixed:
		if c.AdminToken == "" {
			return fmt.Errorf("--scenario %s reads the admin API: --admin-token (or PULSE_LOADTEST_ADMIN_TOKEN) is required", c.Scenario)
		}
	default:
		return fmt.Errorf("--scenario %q: want one of %s", c.Scenario, strings.Join(Scenarios, ", "))
	}
	if c.Scenario != ScenarioAdmin && c.Token == "" {
		return fmt.Errorf("--scenario %s sends events: --token (or PULSE_LOADTEST_TOKEN) is required", c.Scenario)
	}
	return nil
}

// loopback reports whether host names this machine.
func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// userKind is what a virtual user does.
type userKind int

const (
	ingestUser userKind = iota
	adminUser
)

// Runner runs one load test. Its fields are set by New and read-only
// afterwards, except the recorder's counters.
type Runner struct {
	cfg     Config
	base    string // Target without a trailing slash
	service string // the run's service name: the run id on every event
	tr      *http.Transport
	client  *http.Client
	rec     *recorder
	// preflight and database probe findings
	dbConfigured *bool
}

// New returns a Runner of cfg, which must be valid.
func New(cfg Config) *Runner {
	cfg.defaults()
	conns := cfg.MaxConns
	if conns == 0 {
		conns = cfg.PeakUsers()
	}
	conns += 4 // the preflight, database probe and storage check
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: preflightTimeout, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		MaxConnsPerHost:     conns,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	return &Runner{
		cfg:     cfg,
		base:    strings.TrimRight(cfg.Target, "/"),
		service: "loadtest-" + randomHex(4),
		tr:      tr,
		client:  &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		rec:     newRecorder(),
	}
}

// Service is the service name every event of this run carries.
func (r *Runner) Service() string { return r.service }

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Run checks the target (preflight), runs the load until its end or until
// ctx is cancelled, then checks storage and returns the report. On a
// cancel it stops starting requests, waits up to DrainTimeout for those in
// flight and returns the partial report (Interrupted set, storage not
// checked). An error means the load never started: the target is
// unreachable, not ready, or refused a token. Run closes its connections
// before it returns.
func (r *Runner) Run(ctx context.Context) (*Report, error) {
	defer r.tr.CloseIdleConnections()
	if err := r.preflight(ctx); err != nil {
		return nil, err
	}
	start := time.Now().Add(50 * time.Millisecond) // time to start the users
	end := start.Add(r.cfg.Duration)
	if r.cfg.Scenario == ScenarioWeddingSeason {
		end = start.Add(2 * r.cfg.Duration)
	}
	// Requests in flight get DrainTimeout after a cancel, then are cut.
	reqCtx, cancelReqs := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelReqs()
	stopDrain := context.AfterFunc(ctx, func() { time.AfterFunc(DrainTimeout, cancelReqs) })
	defer stopDrain()

	var probe *dbProbe
	var wg sync.WaitGroup
	runCtx, stopRun := context.WithCancel(ctx)
	if r.cfg.Scenario == ScenarioWeddingSeason && r.cfg.AdminToken != "" && r.dbConfigured != nil && *r.dbConfigured {
		probe = &dbProbe{r: r}
		wg.Add(1)
		go func() { defer wg.Done(); probe.run(runCtx, end) }()
	}
	var active atomic.Int64
	wg.Add(1)
	go func() { defer wg.Done(); r.progress(runCtx, start, &active) }()

	var users sync.WaitGroup
	for u := 0; u < r.cfg.PeakUsers(); u++ {
		users.Add(1)
		go func() {
			defer users.Done()
			r.user(ctx, reqCtx, u, start, end, &active)
		}()
	}
	users.Wait()
	stopRun()
	wg.Wait()
	elapsed := time.Since(start)

	rep := r.report(start, elapsed, ctx.Err() != nil)
	switch {
	case probe != nil:
		rep.Database = probe.result(start, r.cfg)
	case r.cfg.Scenario != ScenarioWeddingSeason || r.cfg.AdminToken == "":
	case r.dbConfigured == nil:
		rep.Database = &Database{Skipped: "the target's health answer has no database component"}
	default:
		rep.Database = &Database{Skipped: "the database is not configured on the target (pulse serve --database-url): criterion skipped"}
	}
	rep.Verification = r.verifyStorage(ctx)
	rep.judge(r.cfg)
	return rep, nil
}

// user runs virtual user u from its first due time until end or a cancel.
func (r *Runner) user(ctx, reqCtx context.Context, u int, start, end time.Time, active *atomic.Int64) {
	first, kind := r.plan(u, start)
	interval := time.Duration(float64(time.Second) / r.cfg.RatePerUser)
	s := newSchedule(first, interval, uint64(u), uint64(start.UnixNano()))
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for k := 0; ; k++ {
		due := s.due(k)
		if !due.Before(end) {
			break
		}
		if wait := time.Until(due); wait > 0 {
			timer.Reset(wait)
			select {
			case <-ctx.Done():
				return
			case <-timer.C:
			}
		} else if ctx.Err() != nil {
			return
		}
		if k == 0 {
			active.Add(1)
			defer active.Add(-1)
		}
		r.send(reqCtx, kind, u, k, due, start)
	}
}

// plan is when user u starts and what it does. Users start evenly spread
// over the ramp-up; the wedding-season peak's extra users over the ramp-up
// that starts the second phase.
func (r *Runner) plan(u int, start time.Time) (time.Time, userKind) {
	n, offset := r.cfg.Users, time.Duration(0)
	if u >= r.cfg.Users { // wedding-season peak users
		n, offset = r.cfg.Users*(PeakFactor-1), r.cfg.Duration
		u -= r.cfg.Users
	}
	first := start.Add(offset + time.Duration(int64(r.cfg.RampUp)*int64(u)/int64(n)))
	switch {
	case r.cfg.Scenario == ScenarioAdmin,
		r.cfg.Scenario == ScenarioMixed && u%adminEvery == 0:
		return first, adminUser
	}
	return first, ingestUser
}

// send makes user u's k-th request, due at due, and records it.
func (r *Runner) send(ctx context.Context, kind userKind, u, k int, due, start time.Time) {
	ctx, cancel := context.WithTimeout(ctx, RequestTimeout)
	defer cancel()
	var req *http.Request
	events := 0
	if kind == ingestUser {
		body, ct := r.events(u, k)
		events = r.cfg.Batch
		req, _ = http.NewRequestWithContext(ctx, http.MethodPost, r.base+"/api/admin/system/metrics", bytes.NewReader(body))
		req.Header.Set("Content-Type", ct)
		req.Header.Set("Authorization", "Bearer "+r.cfg.Token)
	} else {
		req, _ = http.NewRequestWithContext(ctx, http.MethodGet, r.base+adminPath(u, k), nil)
		req.Header.Set("Authorization", "Bearer "+r.cfg.AdminToken)
	}
	status, err := r.do(req)
	r.rec.record(result{
		kind: kind, latency: time.Since(due), status: status, err: err, events: events,
		phase: r.phaseOf(due.Sub(start)),
	})
}

// do sends req and reads its answer to the end, so that the connection
// is reused; it returns the status, or the error that prevented one.
func (r *Runner) do(req *http.Request) (int, error) {
	resp, err := r.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return 0, err
	}
	return resp.StatusCode, nil
}

// phaseOf is the wedding-season phase whose steady part holds a request
// due at offset since the start: 0 baseline, 1 peak, -1 none (ramp-ups,
// other scenarios).
func (r *Runner) phaseOf(offset time.Duration) int {
	if r.cfg.Scenario != ScenarioWeddingSeason {
		return -1
	}
	for p := range 2 {
		from := time.Duration(p)*r.cfg.Duration + r.cfg.RampUp
		if offset >= from && offset < time.Duration(p+1)*r.cfg.Duration {
			return p
		}
	}
	return -1
}

// endpoints are the app routes the virtual users report.
var endpoints = []string{"/api/clients/:id", "/api/forms", "/api/forms/:id/submissions", "/api/vendors/:id", "/api/timeline", "/api/guests"}

// events is the body of user u's k-th ingest request: one JSON event, or
// Batch NDJSON lines. Each event has a unique request_id and the run's
// service; latencies and statuses look like a healthy app's (no alert
// rule fires on them).
func (r *Runner) events(u, k int) ([]byte, string) {
	var b bytes.Buffer
	for i := 0; i < r.cfg.Batch; i++ {
		n := u*7 + k*13 + i
		if i > 0 {
			b.WriteByte('\n')
		}
		status := 200
		if n%10 == 0 {
			status = 201
		}
		fmt.Fprintf(&b, `{"endpoint":%q,"response_time_ms":%d.%d,"status_code":%d,"service":%q,"method":"GET","request_id":"%s-%d-%d-%d"}`,
			strings.Replace(endpoints[n%len(endpoints)], ":id", strconv.Itoa(n%997), 1), 20+n%380, n%10, status, r.service, r.service, u, k, i)
	}
	if r.cfg.Batch == 1 {
		return b.Bytes(), "application/json"
	}
	return b.Bytes(), "application/x-ndjson"
}

// adminPath is the k-th read of admin user u: a dashboard's mix of
// health, performance, resources and alerts.
func adminPath(u, k int) string {
	paths := [...]string{
		"/api/admin/system/health",
		"/api/admin/system/performance?timeframe=1h",
		"/api/admin/system/health",
		"/api/admin/system/resources",
		"/api/admin/system/performance?timeframe=24h",
		"/api/admin/alerts",
		"/api/admin/system/health",
		"/api/admin/system/performance?timeframe=1h",
	}
	return paths[(u+k)%len(paths)]
}

// errKind names why a request got no answer.
func errKind(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "cancelled"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, syscall.EPIPE):
		return "broken pipe"
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		return "too many open files"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return "no free local port"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed"
	}
	return "other"
}
