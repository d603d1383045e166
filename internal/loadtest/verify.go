package loadtest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// preflight checks, within preflightTimeout, that the target is ready and
// takes the tokens the scenario needs, so that a wrong URL or token fails
// in seconds instead of as a run of errors. The one event it posts is the
// run's first (counted as accepted, not in the latency figures).
func (r *Runner) preflight(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, preflightTimeout)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, r.base+"/readyz", nil)
	status, _, err := r.fetch(req)
	if err != nil {
		return fmt.Errorf("reach %s: %s (%w)", r.cfg.Target, errKind(err), err)
	}
	if status != http.StatusOK {
		return fmt.Errorf("%s is not ready: GET /readyz answered %d", r.cfg.Target, status)
	}
	if r.cfg.Scenario != ScenarioAdmin {
		body, ct := r.events(r.cfg.PeakUsers(), 0) // a user number no virtual user has
		req, _ = http.NewRequestWithContext(ctx, http.MethodPost, r.base+"/api/admin/system/metrics", bytes.NewReader(body))
		req.Header.Set("Content-Type", ct)
		req.Header.Set("Authorization", "Bearer "+r.cfg.Token)
		status, answer, err := r.fetch(req)
		if err != nil {
			return fmt.Errorf("POST /api/admin/system/metrics: %s (%w)", errKind(err), err)
		}
		if err := refused("ingest", "--token", status); err != nil {
			return err
		}
		if status != http.StatusAccepted {
			return fmt.Errorf("POST /api/admin/system/metrics answered %d, not 202: %s", status, snippet(answer))
		}
		r.rec.sentEvents.Add(uint64(r.cfg.Batch))
		r.rec.acceptedEvents.Add(uint64(r.cfg.Batch))
	}
	if r.cfg.AdminToken != "" {
		db, status, err := r.database(ctx, "/api/admin/system/health?component=database")
		if err != nil {
			return fmt.Errorf("GET /api/admin/system/health: %s (%w)", errKind(err), err)
		}
		if err := refused("admin", "--admin-token", status); err != nil {
			return err
		}
		if status != http.StatusOK {
			return fmt.Errorf("GET /api/admin/system/health answered %d, not 200", status)
		}
		if db != nil {
			configured := db.Configured
			r.dbConfigured = &configured
		}
	}
	return nil
}

// refused explains a 401 or 403 answer to a token.
func refused(which, flag string, status int) error {
	switch status {
	case http.StatusUnauthorized:
		return fmt.Errorf("the %s token was refused (401): check %s", which, flag)
	case http.StatusForbidden:
		return fmt.Errorf("the %s token lacks the %s scope (403): check %s", which, which, flag)
	case http.StatusTooManyRequests:
		return fmt.Errorf("the %s token is rate limited (429): wait, or raise the target's rate limits for a load test", which)
	}
	return nil
}

func snippet(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

// fetch sends req and returns the status and up to 1 MiB of the answer.
func (r *Runner) fetch(req *http.Request) (int, []byte, error) {
	resp, err := r.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return 0, nil, err
	}
	return resp.StatusCode, b, nil
}

// Storage check results.
const (
	VerifyStored      = "verified"     // every event answered 202 is stored
	VerifyLost        = "LOST"         // fewer stored than answered 202
	VerifyDuplicated  = "DUPLICATED"   // more stored than sent
	VerifyNotVerified = "not verified" // could not check; Reason says why
	VerifyNone        = "none"         // the scenario sends no events
)

// Verification is the storage check: the events of the run's service
// that GET /api/admin/system/performance counts, against those answered
// 202.
type Verification struct {
	Status        string  `json:"status"`
	Reason        string  `json:"reason,omitempty"`
	Sent          uint64  `json:"sent"`
	Accepted      uint64  `json:"accepted"` // answered 202
	Stored        uint64  `json:"stored"`
	Extra         uint64  `json:"stored_not_acknowledged"` // stored beyond accepted: requests that timed out or failed, yet persisted
	WaitedSeconds float64 `json:"waited_seconds"`
}

// verifyStorage polls the run service's event count until it reaches the
// events answered 202 or VerifyTimeout passes. The performance answer is
// cached for 10 s per query, so the polls rotate through the metric
// parameter's values (each answer carries the same summary count).
func (r *Runner) verifyStorage(ctx context.Context) Verification {
	v := Verification{Sent: r.rec.sentEvents.Load(), Accepted: r.rec.acceptedEvents.Load()}
	switch {
	case r.cfg.Scenario == ScenarioAdmin:
		v.Status = VerifyNone
		return v
	case ctx.Err() != nil:
		v.Status, v.Reason = VerifyNotVerified, "the run was interrupted"
		return v
	case r.cfg.AdminToken == "":
		v.Status, v.Reason = VerifyNotVerified, "no admin token to read the stored events with"
		return v
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, r.cfg.VerifyTimeout)
	defer cancel()
	metrics := []string{"", "&metric=response_time", "&metric=throughput", "&metric=error_rate"}
	last, answered := "no answer", false
	for i := 0; ; i++ {
		wait := 500 * time.Millisecond
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet,
			r.base+"/api/admin/system/performance?timeframe=1h&service="+r.service+metrics[i%len(metrics)], nil)
		req.Header.Set("Authorization", "Bearer "+r.cfg.AdminToken)
		status, body, err := r.fetch(req)
		switch {
		case err != nil:
			last = errKind(err)
		case status == http.StatusOK:
			var answer struct {
				Summary *struct {
					Count uint64 `json:"count"`
				} `json:"summary"`
			}
			if err := json.Unmarshal(body, &answer); err != nil {
				last = "an answer that is not the performance JSON"
				break
			}
			answered = true
			if answer.Summary != nil {
				v.Stored = max(v.Stored, answer.Summary.Count)
			}
			if v.Stored >= v.Accepted {
				v.WaitedSeconds = time.Since(start).Seconds()
				v.Extra = v.Stored - v.Accepted
				v.Status = VerifyStored
				if v.Stored > v.Sent {
					v.Status = VerifyDuplicated
					v.Reason = fmt.Sprintf("%d stored of %d sent: some stored twice", v.Stored, v.Sent)
				}
				return v
			}
			last = fmt.Sprintf("%d stored", v.Stored)
		case status == http.StatusTooManyRequests:
			last, wait = "rate limited (429)", 2*time.Second
		default:
			last = "HTTP " + strconv.Itoa(status)
		}
		select {
		case <-ctx.Done():
			v.WaitedSeconds = time.Since(start).Seconds()
			if answered {
				v.Status = VerifyLost
				v.Reason = fmt.Sprintf("%d of %d events answered 202 stored after %s", v.Stored, v.Accepted, r.cfg.VerifyTimeout)
			} else {
				v.Status = VerifyNotVerified
				v.Reason = fmt.Sprintf("no count within --verify-timeout %s (last: %s)", r.cfg.VerifyTimeout, last)
			}
			return v
		case <-time.After(wait):
		}
	}
}

// componentHealth is the part of a health answer's component read here.
type componentHealth struct {
	Name           string     `json:"name"`
	Status         string     `json:"status"`
	Configured     bool       `json:"configured"`
	ResponseTimeMS *float64   `json:"response_time_ms"`
	LastChecked    *time.Time `json:"last_checked"`
}

// database reads the database component from the health answer at path.
func (r *Runner) database(ctx context.Context, path string) (*componentHealth, int, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, r.base+path, nil)
	req.Header.Set("Authorization", "Bearer "+r.cfg.AdminToken)
	status, body, err := r.fetch(req)
	if err != nil || status != http.StatusOK {
		return nil, status, err
	}
	var answer struct {
		Components []componentHealth `json:"components"`
	}
	if err := json.Unmarshal(body, &answer); err != nil {
		return nil, status, fmt.Errorf("decode health answer: %w", err)
	}
	for _, c := range answer.Components {
		if c.Name == "database" {
			return &c, status, nil
		}
	}
	return nil, status, nil
}

// Database is the monitored database probe's response time in each
// wedding-season phase: the median of the probe results checked during
// the phase's steady part.
type Database struct {
	Skipped     string       `json:"skipped,omitempty"` // why it was not measured
	BaselineMS  float64      `json:"baseline_ms"`
	PeakMS      float64      `json:"peak_ms"`
	Degradation float64      `json:"degradation"` // (peak-baseline)/baseline
	Samples     [2][]float64 `json:"samples_ms"`
}

// dbProbe samples the database component's health during a run.
type dbProbe struct {
	r       *Runner
	samples []componentHealth // distinct probe results, by last_checked
}

// dbProbeEvery is how often the health answer is read. Health answers are
// cached for 30 s per query, so the reads rotate through four queries.
const dbProbeEvery = 5 * time.Second

// run reads the health answer every dbProbeEvery until ctx ends or end.
func (p *dbProbe) run(ctx context.Context, end time.Time) {
	paths := []string{"?component=database", "?component=database&detailed=true", "", "?detailed=true"}
	tick := time.NewTicker(dbProbeEvery)
	defer tick.Stop()
	for i := 0; time.Now().Before(end); i++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		rctx, cancel := context.WithTimeout(ctx, preflightTimeout)
		c, _, err := p.r.database(rctx, "/api/admin/system/health"+paths[i%len(paths)])
		cancel()
		if err != nil || c == nil || c.ResponseTimeMS == nil || c.LastChecked == nil {
			continue
		}
		if !slices.ContainsFunc(p.samples, func(s componentHealth) bool { return s.LastChecked.Equal(*c.LastChecked) }) {
			p.samples = append(p.samples, *c)
		}
	}
}

// result is the probe's figures per phase; run must have returned.
func (p *dbProbe) result(start time.Time, cfg Config) *Database {
	d := &Database{}
	for _, s := range p.samples {
		at := s.LastChecked.Sub(start)
		for ph := range 2 {
			from := time.Duration(ph)*cfg.Duration + cfg.RampUp
			if at >= from && at < time.Duration(ph+1)*cfg.Duration {
				d.Samples[ph] = append(d.Samples[ph], *s.ResponseTimeMS)
			}
		}
	}
	if len(d.Samples[0]) == 0 || len(d.Samples[1]) == 0 {
		d.Skipped = "not measured: no database probe result in a phase's steady part (make --duration - --ramp-up longer than the target's --probe-interval)"
		return d
	}
	d.BaselineMS, d.PeakMS = median(d.Samples[0]), median(d.Samples[1])
	deg, ok := degradation(d.BaselineMS, d.PeakMS)
	if !ok {
		d.Skipped = "not measured: the baseline probe time is 0"
		return d
	}
	d.Degradation = deg
	return d
}

func median(v []float64) float64 {
	s := slices.Sorted(slices.Values(v))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
