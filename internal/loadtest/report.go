package loadtest

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// result is one request's outcome.
type result struct {
	kind    userKind
	latency time.Duration // from the intended send time to the end of the answer
	status  int           // 0 when there was no answer
	err     error
	events  int // events in the request (ingest)
	phase   int // wedding-season phase, or -1
}

func (r result) ok() bool { return r.err == nil && r.status >= 200 && r.status < 300 }

// counted is a latency histogram with its request and error counts.
type counted struct {
	h        Histogram
	requests atomic.Uint64
	failed   atomic.Uint64
}

func (c *counted) add(r result) {
	c.h.Record(r.latency)
	c.requests.Add(1)
	if !r.ok() {
		c.failed.Add(1)
	}
}

// recorder gathers the results of a run; safe for concurrent use.
type recorder struct {
	all, ingest, admin counted
	phases             [2]counted                // wedding-season steady parts, by due time
	window             atomic.Pointer[Histogram] // since the last progress line
	sentEvents         atomic.Uint64
	acceptedEvents     atomic.Uint64 // events answered 202 (preflight included)

	mu       sync.Mutex
	byStatus map[int]uint64    // failed answers by status
	byKind   map[string]uint64 // requests without an answer, by cause
}

func newRecorder() *recorder {
	r := &recorder{byStatus: map[int]uint64{}, byKind: map[string]uint64{}}
	r.window.Store(new(Histogram))
	return r
}

func (c *recorder) record(r result) {
	c.all.add(r)
	c.window.Load().Record(r.latency)
	if r.kind == ingestUser {
		c.ingest.add(r)
		c.sentEvents.Add(uint64(r.events))
		if r.status == 202 {
			c.acceptedEvents.Add(uint64(r.events))
		}
	} else {
		c.admin.add(r)
	}
	if r.phase >= 0 {
		c.phases[r.phase].add(r)
	}
	if r.ok() {
		return
	}
	c.mu.Lock()
	if r.err != nil {
		c.byKind[errKind(r.err)]++
	} else {
		c.byStatus[r.status]++
	}
	c.mu.Unlock()
}

// Stats summarises a set of requests. Latencies are in milliseconds,
// measured from each request's intended send time.
type Stats struct {
	Requests    uint64  `json:"requests"`
	Failed      uint64  `json:"failed"`
	SuccessRate float64 `json:"success_rate"` // 2xx answers / requests; 0 without requests
	AvgMS       float64 `json:"avg_ms"`
	P50MS       float64 `json:"p50_ms"`
	P95MS       float64 `json:"p95_ms"`
	P99MS       float64 `json:"p99_ms"`
	MaxMS       float64 `json:"max_ms"`
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func (c *counted) stats() Stats {
	s := Stats{Requests: c.requests.Load(), Failed: c.failed.Load(),
		AvgMS: ms(c.h.Mean()), P50MS: ms(c.h.Quantile(0.50)), P95MS: ms(c.h.Quantile(0.95)),
		P99MS: ms(c.h.Quantile(0.99)), MaxMS: ms(c.h.Max())}
	if s.Requests > 0 {
		s.SuccessRate = float64(s.Requests-s.Failed) / float64(s.Requests)
	}
	return s
}

// ErrorRate is the share of requests that failed; 0 without requests.
func (s Stats) ErrorRate() float64 {
	if s.Requests == 0 {
		return 0
	}
	return float64(s.Failed) / float64(s.Requests)
}

// Report is the outcome of a run, as printed and as written by --json.
type Report struct {
	Scenario        string            `json:"scenario"`
	Target          string            `json:"target"`
	RunService      string            `json:"run_service"` // the service every event of the run carries
	Users           int               `json:"users"`
	PeakUsers       int               `json:"peak_users"`
	RampUpSeconds   float64           `json:"ramp_up_seconds"`
	DurationSeconds float64           `json:"duration_seconds"` // of the run (of each phase for wedding-season)
	RatePerUser     float64           `json:"rate_per_user"`
	Batch           int               `json:"batch"`
	ElapsedSeconds  float64           `json:"elapsed_seconds"`
	Interrupted     bool              `json:"interrupted"`
	Total           Stats             `json:"total"`
	Ingest          *Stats            `json:"ingest,omitempty"`
	Admin           *Stats            `json:"admin,omitempty"`
	ThroughputRPS   float64           `json:"throughput_rps"`
	ErrorsByStatus  map[string]uint64 `json:"errors_by_status"`
	ErrorsByKind    map[string]uint64 `json:"errors_by_kind"`
	Phases          []Phase           `json:"phases,omitempty"`
	Database        *Database         `json:"database,omitempty"`
	Verification    Verification      `json:"verification"`
	Criteria        []Criterion       `json:"criteria"`
	Pass            bool              `json:"pass"`
}

// Phase is one wedding-season phase's steady part (after its ramp-up).
type Phase struct {
	Name  string `json:"name"`
	Users int    `json:"users"`
	Stats Stats  `json:"stats"`
}

// Criterion results.
const (
	Passed  = "PASS"
	Failed  = "FAIL"
	Skipped = "SKIPPED"
)

// Criterion is one target and how the run did against it.
type Criterion struct {
	Name   string `json:"name"`
	Target string `json:"target"`
	Value  string `json:"value"`
	Result string `json:"result"` // PASS, FAIL or SKIPPED (with the reason in Value)
}

// report builds the report of the requests recorded.
func (r *Runner) report(start time.Time, elapsed time.Duration, interrupted bool) *Report {
	c := r.cfg
	rep := &Report{Scenario: c.Scenario, Target: c.Target, RunService: r.service, Users: c.Users, PeakUsers: c.PeakUsers(),
		RampUpSeconds: c.RampUp.Seconds(), DurationSeconds: c.Duration.Seconds(), RatePerUser: c.RatePerUser, Batch: c.Batch,
		ElapsedSeconds: elapsed.Seconds(), Interrupted: interrupted, Total: r.rec.all.stats(),
		ErrorsByStatus: map[string]uint64{}, ErrorsByKind: map[string]uint64{}}
	if elapsed > 0 {
		rep.ThroughputRPS = float64(rep.Total.Requests) / elapsed.Seconds()
	}
	if s := r.rec.ingest.stats(); s.Requests > 0 {
		rep.Ingest = &s
	}
	if s := r.rec.admin.stats(); s.Requests > 0 {
		rep.Admin = &s
	}
	r.rec.mu.Lock()
	for code, n := range r.rec.byStatus {
		rep.ErrorsByStatus[strconv.Itoa(code)] = n
	}
	maps.Copy(rep.ErrorsByKind, r.rec.byKind)
	r.rec.mu.Unlock()
	if c.Scenario == ScenarioWeddingSeason {
		rep.Phases = []Phase{
			{Name: "baseline", Users: c.Users, Stats: r.rec.phases[0].stats()},
			{Name: "peak", Users: c.PeakUsers(), Stats: r.rec.phases[1].stats()},
		}
	}
	return rep
}

// degradation is (peak-base)/base, or false when base is not positive.
func degradation(base, peak float64) (float64, bool) {
	if !(base > 0) {
		return 0, false
	}
	return (peak - base) / base, true
}

// judge sets the criteria and Pass. The spec's targets ("Load Testing"):
// success rate > 99%, average < 500 ms, P95 < 1 s; for wedding-season an
// error rate < 1% in each phase and a database degradation < 20%. Every
// event answered 202 must be stored. A criterion that could not be
// measured is SKIPPED, never PASS; the run passes when none FAILs.
func (rep *Report) judge(cfg Config) {
	add := func(name, target, value string, ok bool) {
		res := Passed
		if !ok {
			res = Failed
		}
		rep.Criteria = append(rep.Criteria, Criterion{Name: name, Target: target, Value: value, Result: res})
	}
	skip := func(name, target, why string) {
		rep.Criteria = append(rep.Criteria, Criterion{Name: name, Target: target, Value: why, Result: Skipped})
	}
	t := rep.Total
	if t.Requests == 0 {
		add("requests made", "> 0", "0", false)
	}
	if cfg.Scenario != ScenarioWeddingSeason {
		add("success rate", "> 99%", pct(t.SuccessRate), t.SuccessRate > 0.99)
		add("average latency", "< 500 ms", msString(t.AvgMS), t.AvgMS < 500)
		add("P95 latency", "< 1000 ms", msString(t.P95MS), t.P95MS < 1000)
	} else {
		for _, p := range rep.Phases {
			if p.Stats.Requests == 0 {
				skip("API error rate ("+p.Name+")", "< 1%", "no requests in the phase's steady part")
				continue
			}
			add("API error rate ("+p.Name+")", "< 1%", pct(p.Stats.ErrorRate()), p.Stats.ErrorRate() < 0.01)
		}
		if len(rep.Phases) == 2 {
			if d, ok := degradation(rep.Phases[0].Stats.P95MS, rep.Phases[1].Stats.P95MS); ok {
				// No target in the spec: reported, not judged.
				rep.Criteria = append(rep.Criteria, Criterion{Name: "API P95 degradation (baseline to peak)", Target: "reported",
					Value: fmt.Sprintf("%+.1f%% (%s to %s)", 100*d, msString(rep.Phases[0].Stats.P95MS), msString(rep.Phases[1].Stats.P95MS)), Result: "INFO"})
			}
		}
		db := rep.Database
		switch {
		case db == nil || db.Skipped != "":
			why := "no admin token: the database probe was not read"
			if db != nil {
				why = db.Skipped
			}
			skip("database degradation", "< 20%", why)
		default:
			add("database degradation", "< 20%", fmt.Sprintf("%+.1f%% (%s to %s)", 100*db.Degradation, msString(db.BaselineMS), msString(db.PeakMS)), db.Degradation < 0.2)
		}
	}
	v := rep.Verification
	switch v.Status {
	case VerifyStored:
		add("every 202 stored", "stored >= accepted", fmt.Sprintf("%d stored of %d accepted", v.Stored, v.Accepted), true)
	case VerifyLost, VerifyDuplicated:
		add("every 202 stored", "stored >= accepted", v.Reason, false)
	case VerifyNone:
	default:
		skip("every 202 stored", "stored >= accepted", "not verified: "+v.Reason)
	}
	rep.Pass = true
	for _, c := range rep.Criteria {
		if c.Result == Failed {
			rep.Pass = false
		}
	}
}

func pct(f float64) string { return strconv.FormatFloat(100*f, 'f', 2, 64) + "%" }

func msString(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) + " ms" }

// WriteTable prints the report as a table: the figures, errors, then each
// criterion and the verdict.
func (rep *Report) WriteTable(w io.Writer) {
	fmt.Fprintf(w, "\npulse loadtest: scenario %s, %d users", rep.Scenario, rep.Users)
	if rep.PeakUsers != rep.Users {
		fmt.Fprintf(w, " then %d", rep.PeakUsers)
	}
	fmt.Fprintf(w, ", %g req/s each, %.0fs (ramp-up %.0fs), run service %s\n", rep.RatePerUser, rep.DurationSeconds, rep.RampUpSeconds, rep.RunService)
	if rep.Interrupted {
		fmt.Fprintln(w, "INTERRUPTED: partial results")
	}
	fmt.Fprintf(w, "\n%-22s %10s %9s %9s %9s %9s %9s %9s %9s\n", "", "requests", "success", "avg", "p50", "p95", "p99", "max", "")
	row := func(name string, s Stats) {
		fmt.Fprintf(w, "%-22s %10d %8.2f%% %7.1fms %7.1fms %7.1fms %7.1fms %7.1fms\n", name, s.Requests, 100*s.SuccessRate, s.AvgMS, s.P50MS, s.P95MS, s.P99MS, s.MaxMS)
	}
	row("total", rep.Total)
	if rep.Ingest != nil && rep.Admin != nil {
		row("  ingest POSTs", *rep.Ingest)
		row("  admin reads", *rep.Admin)
	}
	for _, p := range rep.Phases {
		row(fmt.Sprintf("  %s (%d users)", p.Name, p.Users), p.Stats)
	}
	fmt.Fprintf(w, "\nthroughput %.0f requests/s over %.1fs; latency counts from each request's intended send time\n", rep.ThroughputRPS, rep.ElapsedSeconds)
	if len(rep.ErrorsByStatus)+len(rep.ErrorsByKind) == 0 {
		fmt.Fprintln(w, "errors: none")
	} else {
		fmt.Fprint(w, "errors:")
		for _, k := range slices.Sorted(maps.Keys(rep.ErrorsByStatus)) {
			fmt.Fprintf(w, "  HTTP %s: %d", k, rep.ErrorsByStatus[k])
		}
		for _, k := range slices.Sorted(maps.Keys(rep.ErrorsByKind)) {
			fmt.Fprintf(w, "  %s: %d", k, rep.ErrorsByKind[k])
		}
		fmt.Fprintln(w)
		if rep.ErrorsByStatus["429"] > 0 {
			fmt.Fprintln(w, "  (429: the target's rate limit is below this load; raise its --ingest-rate-limit / --admin-rate-limit for a load test)")
		}
	}
	if v := rep.Verification; v.Status != VerifyNone {
		fmt.Fprintf(w, "storage: %s", v.Status)
		if v.Status != VerifyNotVerified {
			fmt.Fprintf(w, ": %d events answered 202, %d stored for %s", v.Accepted, v.Stored, rep.RunService)
			if v.Extra > 0 {
				fmt.Fprintf(w, " (%d stored without a 202: allowed for requests that timed out or failed)", v.Extra)
			}
		} else {
			fmt.Fprintf(w, " (%s)", v.Reason)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w)
	for _, c := range rep.Criteria {
		fmt.Fprintf(w, "%-8s %-40s %-22s %s\n", c.Result, c.Name, c.Target, c.Value)
	}
	verdict := "PASS"
	if !rep.Pass {
		verdict = "FAIL"
	}
	fmt.Fprintln(w, verdict)
}

// progress writes a progress line every second on a terminal (updated in
// place) and every 5 s otherwise, until ctx ends.
func (r *Runner) progress(ctx context.Context, start time.Time, active *atomic.Int64) {
	if r.cfg.Progress == nil {
		return
	}
	every := 5 * time.Second
	if r.cfg.Terminal {
		every = time.Second
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	last, lastAt := uint64(0), time.Now()
	line := func() {
		now := time.Now()
		window := r.rec.window.Swap(new(Histogram))
		n := r.rec.all.requests.Load()
		rps := float64(n-last) / now.Sub(lastAt).Seconds()
		last, lastAt = n, now
		s := fmt.Sprintf("elapsed %4.0fs  users %d/%d  %7.0f req/s  errors %d  p95 %.1f ms",
			max(now.Sub(start), 0).Seconds(), active.Load(), r.cfg.PeakUsers(), rps, r.rec.all.failed.Load(), ms(window.Quantile(0.95)))
		if r.cfg.Terminal {
			fmt.Fprint(r.cfg.Progress, "\r"+s+"\x1b[K")
		} else {
			fmt.Fprintln(r.cfg.Progress, s)
		}
	}
	for {
		select {
		case <-ctx.Done():
			if r.cfg.Terminal {
				line()
				fmt.Fprintln(r.cfg.Progress)
			}
			return
		case <-tick.C:
			line()
		}
	}
}
