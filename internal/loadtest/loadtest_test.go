package loadtest

import (
	"context"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestHistogramAccuracy: every quantile is within 1% of the exact one, at
// microseconds and at minutes.
func TestHistogramAccuracy(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var h Histogram
	var exact []time.Duration
	for range 100000 {
		// log-uniform from 1 µs to ~100 s
		d := time.Duration(float64(time.Microsecond) * pow10(rng.Float64()*8))
		d = d.Truncate(time.Microsecond)
		h.Record(d)
		exact = append(exact, d)
	}
	slices.Sort(exact)
	for _, q := range []float64{0.01, 0.5, 0.9, 0.95, 0.99, 0.999} {
		want := exact[int(q*float64(len(exact))+0.999999)-1]
		got := h.Quantile(q)
		if diff := got - want; diff < 0 && -diff > want/100+time.Microsecond || diff > 0 && diff > want/100+time.Microsecond {
			t.Errorf("quantile %g = %s; want %s within 1%%", q, got, want)
		}
	}
	if h.Max() != exact[len(exact)-1] {
		t.Errorf("max = %s; want %s", h.Max(), exact[len(exact)-1])
	}
	var sum time.Duration
	for _, d := range exact {
		sum += d
	}
	if mean := sum / time.Duration(len(exact)); (h.Mean() - mean).Abs() > time.Microsecond {
		t.Errorf("mean = %s; want %s", h.Mean(), mean)
	}
	var empty Histogram
	if empty.Quantile(0.95) != 0 || empty.Mean() != 0 {
		t.Error("an empty histogram has a non-zero quantile or mean")
	}
}

func pow10(x float64) float64 {
	r := 1.0
	for ; x >= 1; x-- {
		r *= 10
	}
	// 10^x for x in [0,1) by a few Taylor terms of exp(x ln 10) is enough here
	y := x * 2.302585092994046
	return r * (1 + y + y*y/2 + y*y*y/6 + y*y*y*y/24 + y*y*y*y*y/120 + y*y*y*y*y*y/720)
}

// TestBucketsRoundTrip: every value falls in the bucket whose range holds it.
func TestBucketsRoundTrip(t *testing.T) {
	for _, v := range []uint64{0, 1, 255, 256, 257, 1000, 1 << 20, 123456789, 1<<63 + 12345, ^uint64(0)} {
		i := bucketOf(v)
		lo, hi := bucketRange(i)
		if v < lo || v > hi || i >= numBuckets {
			t.Errorf("value %d: bucket %d holds [%d, %d]", v, i, lo, hi)
		}
		if v >= linear && float64(hi-lo)/float64(lo) > 1.0/subBuckets {
			t.Errorf("value %d: bucket [%d, %d] wider than 1/%d", v, lo, hi, subBuckets)
		}
	}
}

// TestScheduleOpenModel: due times follow the schedule alone, within the
// jitter, whatever the answers take; the first is never early.
func TestScheduleOpenModel(t *testing.T) {
	first := time.Unix(1000, 0)
	s := newSchedule(first, time.Second, 7, 9)
	for k := range 1000 {
		due := s.due(k)
		ideal := first.Add(time.Duration(k) * time.Second)
		if d := due.Sub(ideal); d.Abs() > 50*time.Millisecond || k == 0 && d < 0 {
			t.Fatalf("request %d due %s from its ideal time; want within ±50ms (and not early for the first)", k, d)
		}
	}
	// The same seeds give the same schedule.
	a, b := newSchedule(first, time.Second, 1, 2), newSchedule(first, time.Second, 1, 2)
	for k := range 10 {
		if !a.due(k).Equal(b.due(k)) {
			t.Fatalf("request %d: schedules of the same seeds differ", k)
		}
	}
}

// TestPlanRamp: users start evenly over the ramp-up; the wedding-season
// peak users over the second phase's ramp-up; one mixed user in 100 reads
// the admin API.
func TestPlanRamp(t *testing.T) {
	r := New(Config{Users: 100, RampUp: 10 * time.Second, Duration: 20 * time.Second, Scenario: ScenarioWeddingSeason, RatePerUser: 1})
	start := time.Unix(0, 0)
	for u, want := range map[int]time.Duration{0: 0, 50: 5 * time.Second, 99: 9900 * time.Millisecond, 100: 20 * time.Second, 200: 25 * time.Second} {
		if got, _ := r.plan(u, start); got.Sub(start) != want {
			t.Errorf("user %d starts at %s; want %s", u, got.Sub(start), want)
		}
	}
	if got := r.phaseOf(15 * time.Second); got != 0 {
		t.Errorf("phase at 15s = %d; want 0 (baseline steady part)", got)
	}
	if got := r.phaseOf(25 * time.Second); got != -1 {
		t.Errorf("phase at 25s = %d; want -1 (the peak's ramp-up)", got)
	}
	if got := r.phaseOf(35 * time.Second); got != 1 {
		t.Errorf("phase at 35s = %d; want 1 (peak steady part)", got)
	}
	m := New(Config{Users: 300, Duration: time.Second, Scenario: ScenarioMixed, RatePerUser: 1})
	admins := 0
	for u := range 300 {
		if _, k := m.plan(u, start); k == adminUser {
			admins++
		}
	}
	if admins != 3 {
		t.Errorf("mixed with 300 users: %d admin users; want 3", admins)
	}
}

// TestJudge: the spec's targets decide PASS and FAIL; what could not be
// measured is SKIPPED and never counts as a pass of that criterion.
func TestJudge(t *testing.T) {
	ok := Stats{Requests: 1000, Failed: 5, SuccessRate: 0.995, AvgMS: 100, P95MS: 900}
	stored := Verification{Status: VerifyStored, Accepted: 995, Stored: 995}
	f := func(name string, rep Report, cfg Config, wantPass bool, wantFailed ...string) {
		t.Helper()
		rep.judge(cfg)
		if rep.Pass != wantPass {
			t.Errorf("%s: pass = %v; want %v (%+v)", name, rep.Pass, wantPass, rep.Criteria)
		}
		var failed []string
		for _, c := range rep.Criteria {
			if c.Result == Failed {
				failed = append(failed, c.Name)
			}
		}
		if !slices.Equal(failed, wantFailed) {
			t.Errorf("%s: failed %q; want %q", name, failed, wantFailed)
		}
	}
	ingest := Config{Scenario: ScenarioIngest}
	f("all targets met", Report{Total: ok, Verification: stored}, ingest, true)
	f("99% exactly is not > 99%", Report{Total: Stats{Requests: 100, Failed: 1, SuccessRate: 0.99, AvgMS: 1, P95MS: 1}, Verification: stored}, ingest, false, "success rate")
	f("slow average", Report{Total: Stats{Requests: 10, SuccessRate: 1, AvgMS: 500, P95MS: 600}, Verification: stored}, ingest, false, "average latency")
	f("slow p95", Report{Total: Stats{Requests: 10, SuccessRate: 1, AvgMS: 50, P95MS: 1000}, Verification: stored}, ingest, false, "P95 latency")
	f("lost events", Report{Total: ok, Verification: Verification{Status: VerifyLost, Accepted: 995, Stored: 990}}, ingest, false, "every 202 stored")
	f("no requests", Report{Verification: stored}, ingest, false, "requests made", "success rate")

	rep := Report{Total: ok, Verification: Verification{Status: VerifyNotVerified, Reason: "no admin token"}}
	rep.judge(ingest)
	if !rep.Pass || rep.Criteria[len(rep.Criteria)-1].Result != Skipped {
		t.Errorf("unverified storage: %+v; want a SKIPPED storage criterion and no FAIL", rep.Criteria)
	}

	ws := Config{Scenario: ScenarioWeddingSeason}
	phases := func(base, peak Stats) []Phase {
		return []Phase{{Name: "baseline", Stats: base}, {Name: "peak", Stats: peak}}
	}
	calm := Stats{Requests: 1000, Failed: 5, P95MS: 10}
	f("wedding season within targets", Report{Total: ok, Phases: phases(calm, calm), Database: &Database{BaselineMS: 10, PeakMS: 11.9, Degradation: 0.19}, Verification: stored}, ws, true)
	f("database degraded", Report{Total: ok, Phases: phases(calm, calm), Database: &Database{BaselineMS: 10, PeakMS: 12, Degradation: 0.2}, Verification: stored}, ws, false, "database degradation")
	f("peak errors", Report{Total: ok, Phases: phases(calm, Stats{Requests: 100, Failed: 1}), Database: &Database{Degradation: 0}, Verification: stored}, ws, false, "API error rate (peak)")
	rep = Report{Total: ok, Phases: phases(calm, calm), Database: &Database{Skipped: "the database is not configured"}, Verification: stored}
	rep.judge(ws)
	found := false
	for _, c := range rep.Criteria {
		found = found || c.Name == "database degradation" && c.Result == Skipped && strings.Contains(c.Value, "not configured")
	}
	if !rep.Pass || !found {
		t.Errorf("database not configured: %+v; want the criterion SKIPPED saying so, and no FAIL", rep.Criteria)
	}
}

func TestValidate(t *testing.T) {
	good := Config{Target: "http://127.0.0.1:7480", Users: 10, RampUp: time.Second, Duration: 2 * time.Second, RatePerUser: 1, Scenario: ScenarioIngest, Token: "t", Batch: 1}
	if err := good.Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	f := func(want string, change func(*Config)) {
		t.Helper()
		c := good
		change(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err %v; want one mentioning %q", err, want)
		}
	}
	f("not on loopback", func(c *Config) { c.Target = "http://10.1.2.3:7480" })
	f("not on loopback", func(c *Config) { c.Target = "http://example.com" })
	f("--target", func(c *Config) { c.Target = "127.0.0.1:7480" })
	f("--users", func(c *Config) { c.Users = 0 })
	f("--ramp-up", func(c *Config) { c.RampUp = 3 * time.Second })
	f("--rate-per-user", func(c *Config) { c.RatePerUser = 0 })
	f("--scenario", func(c *Config) { c.Scenario = "chaos" })
	f("--admin-token", func(c *Config) { c.Scenario = ScenarioMixed })
	f("--token", func(c *Config) { c.Token = "" })
	f("--batch", func(c *Config) { c.Batch = -1 }) // 0 is the default, 1
	c := good
	c.Target, c.AllowRemote = "http://10.1.2.3:7480", true
	if err := c.Validate(); err != nil {
		t.Errorf("remote target with AllowRemote: %v", err)
	}
}

// TestLatencyFromIntendedTime: against a server that answers in 300 ms,
// a user due every 100 ms has one request in flight at a time, so its
// requests fall behind their schedule; their latency counts from when they
// were due and grows far beyond the 300 ms each answer takes, and the
// run still makes each user's scheduled requests.
func TestLatencyFromIntendedTime(t *testing.T) {
	var inFlight, most atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path == "/readyz" {
			return
		}
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		if req.Method == http.MethodPost && req.Header.Get("Authorization") == "Bearer tok" {
			time.Sleep(300 * time.Millisecond) // the slow server under test
			w.WriteHeader(http.StatusAccepted)
			return
		}
		w.WriteHeader(http.StatusUnauthorized)
	}))
	defer srv.Close()
	r := New(Config{Target: srv.URL, Users: 2, Duration: time.Second, RatePerUser: 10, Scenario: ScenarioIngest, Token: "tok"})
	rep, err := r.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// 2 users x 10 due requests (11 when the jitter moves the 11th before
	// the end); request k of a user is due at k*100 ms and answered at
	// (k+1)*300 ms: its latency is 300+200k ms, 2.1 s for the 10th.
	if n := rep.Total.Requests; n < 20 || n > 22 {
		t.Errorf("requests = %d; want 20 to 22 (every scheduled request is sent)", n)
	}
	if rep.Total.MaxMS < 2000 {
		t.Errorf("max latency %.0f ms; want > 2000 (measured from the intended send time, not from when the late request went out)", rep.Total.MaxMS)
	}
	if rep.Total.AvgMS < 1000 {
		t.Errorf("average latency %.0f ms; want > 1000 (a closed-loop client would report ~300)", rep.Total.AvgMS)
	}
	if most.Load() > 2 {
		t.Errorf("%d requests in flight at once; want at most one per user (2)", most.Load())
	}
	if !slices.ContainsFunc(rep.Criteria, func(c Criterion) bool { return c.Name == "average latency" && c.Result == Failed }) || rep.Pass {
		t.Errorf("criteria %+v; want the average latency FAILed and no PASS", rep.Criteria)
	}
}

// TestPreflight: an unreachable target and a refused token end Run within
// seconds with a clear error, before any load.
func TestPreflight(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path != "/readyz" {
			w.WriteHeader(http.StatusUnauthorized)
		}
	}))
	defer srv.Close()
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()
	f := func(target, want string) {
		t.Helper()
		began := time.Now()
		_, err := New(Config{Target: target, Users: 5, Duration: time.Minute, RatePerUser: 1, Token: "wrong"}).Run(context.Background())
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("target %s: err %v; want one saying %q", target, err, want)
		}
		if time.Since(began) > preflightTimeout+time.Second {
			t.Errorf("target %s: took %s to fail", target, time.Since(began))
		}
	}
	f(srv.URL, "the ingest token was refused")
	f(deadURL, "connection refused")
}

// TestInterrupt: a cancel stops the run, drains and still reports.
func TestInterrupt(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path != "/readyz" {
			w.WriteHeader(http.StatusAccepted)
		}
	}))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	r := New(Config{Target: srv.URL, Users: 20, Duration: time.Hour, RatePerUser: 20, Token: "t"})
	time.AfterFunc(500*time.Millisecond, cancel)
	began := time.Now()
	rep, err := r.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Interrupted || rep.Total.Requests == 0 || rep.Verification.Status != VerifyNotVerified {
		t.Errorf("interrupted run: interrupted %v, %d requests, storage %q; want interrupted, some requests, not verified",
			rep.Interrupted, rep.Total.Requests, rep.Verification.Status)
	}
	if time.Since(began) > DrainTimeout {
		t.Errorf("stopping took %s; want well under %s", time.Since(began), DrainTimeout)
	}
}
