package query

import (
	"cmp"
	"context"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"golang.org/x/sync/errgroup"

	"github.com/wedsync/pulse/internal/chstore"
	"github.com/wedsync/pulse/internal/event"
	"github.com/wedsync/pulse/schema"
)

// CurrentWindow is the span of requests performance_metrics describes:
// the whole minutes holding its end, counting the current one
// (schema.RecentMinutes: at 12:03:20, 11:59-12:04), read from the
// per-service rollups so that the health page costs a few states a service
// whatever the traffic.
const CurrentWindow = 5 * time.Minute

// HealthResponse is the /system/health answer. overall_status, components
// and uptime cover the components answered: all, or the one asked for.
// The spec's fields (overall_status, components, performance_metrics,
// last_updated, uptime) are there with Pulse's beside them.
type HealthResponse struct {
	OverallStatus       string             `json:"overall_status"`
	Components          []ComponentHealth  `json:"components"`
	PerformanceMetrics  CurrentPerformance `json:"performance_metrics"`
	Uptime              map[string]Uptime  `json:"uptime"` // by component name
	UptimeDefinition    string             `json:"uptime_definition"`
	ErrorRateDefinition string             `json:"error_rate_definition"`
	LastUpdated         time.Time          `json:"last_updated"`
	Timeframe           string             `json:"timeframe"` // as asked (the spec's query schema); status is current and uptime covers 24h, 7d and 30d whatever it is
	// Source is where the components' status comes from: "store" (the
	// stored probe results) or "probes" (the probes' latest results in
	// memory, while the store is down).
	Source string     `json:"source"`
	Store  StoreState `json:"store"`
	// Stale names the sections that are not current and why: while the
	// store is down, performance_metrics and uptime are the last figures
	// read (or empty), as of the time given.
	Stale map[string]string `json:"stale,omitempty"`

	fromProbes bool // not cached: the next answer should read the store again
}

// StoreState says whether the metrics store answered this health query.
type StoreState struct {
	Status string `json:"status"`           // up or down
	Reason string `json:"reason,omitempty"` // why down, without internals
}

// ComponentHealth is the latest probe result of a component. A component
// with several targets (external_services: one per dependency) lists
// them, and its status is the worst of theirs. Error and LastError are the
// spec's: present when the latest result is a failure (its probe reported
// an error, or the status is critical), sanitised like every detail.
type ComponentHealth struct {
	Name           string         `json:"name"`       // the spec's names (database, auth, realtime, api, external_services) and pipeline
	Status         string         `json:"status"`     // healthy, degraded, critical or unknown
	Configured     bool           `json:"configured"` // false: unknown and left out of overall_status
	Reason         string         `json:"reason,omitempty"`
	Error          string         `json:"error,omitempty"`      // the failure, short: "check failed: unreachable", "1 of 2 targets critical: email"
	LastError      string         `json:"last_error,omitempty"` // the failure with its cause: "unreachable: connection refused"
	ResponseTimeMS *float64       `json:"response_time_ms"`
	LastChecked    *time.Time     `json:"last_checked"`
	Details        map[string]any `json:"details,omitempty"` // detailed=true only
	Targets        []TargetHealth `json:"targets,omitempty"`
}

// TargetHealth is the latest probe result of one target of a component.
type TargetHealth struct {
	Name           string         `json:"name"`
	Status         string         `json:"status"`
	Configured     bool           `json:"configured"`
	Reason         string         `json:"reason,omitempty"`
	Error          string         `json:"error,omitempty"`
	LastError      string         `json:"last_error,omitempty"`
	ResponseTimeMS *float64       `json:"response_time_ms"`
	LastChecked    time.Time      `json:"last_checked"`
	Details        map[string]any `json:"details,omitempty"` // detailed=true only
}

// CurrentPerformance describes the fleet's requests over the last
// CurrentWindow, from the rollups. Figures of no requests are null, but
// for the spec's avg_response_time, which is 0 then.
type CurrentPerformance struct {
	WindowSeconds     int      `json:"window_seconds"`
	RequestCount      uint64   `json:"request_count"`
	AvgResponseTime   float64  `json:"avg_response_time"` // the spec's name: avg_response_time_ms, or 0 without requests
	AvgResponseTimeMS *float64 `json:"avg_response_time_ms"`
	P95ResponseTimeMS *float64 `json:"p95_response_time_ms"` // from the latency histogram, within 0.75%
	ErrorRate         *float64 `json:"error_rate"`           // 5xx share
	ThroughputRPS     float64  `json:"throughput_rps"`       // requests per second of the window's time up to now
}

// Uptime is a component's uptime over three windows ending now.
type Uptime struct {
	Last24h UptimeWindow `json:"24h"`
	Last7d  UptimeWindow `json:"7d"`
	Last30d UptimeWindow `json:"30d"`
}

// UptimeWindow counts the probe runs of one window.
type UptimeWindow struct {
	Ratio  *float64 `json:"ratio"`  // up / checks; null without checks
	Checks uint64   `json:"checks"` // runs with a known status (unknown runs are left out)
	Up     uint64   `json:"up"`     // runs that were healthy or degraded
}

// UptimeDefinition is what uptime means in every health answer.
const UptimeDefinition = "share of probe runs that were healthy or degraded, among runs with a known status (unknown runs excluded)"

// ExternalServices is the spec's name of the component the probes call
// external: answers name it so, and component= takes either.
const ExternalServices = "external_services"

// answerName is the name an answer gives the stored component c.
func answerName(c string) string {
	if c == "external" {
		return ExternalServices
	}
	return c
}

// Probes gives the probes' latest results in memory (*probe.Runner).
type Probes interface {
	Latest() []event.HealthResult
}

// storeDown is the reason an answer gives while the store does not answer.
const storeDown = "the metrics store is unavailable"

// healthQuery is a normalised health query.
type healthQuery struct {
	component string // stored name; "" for all
	timeframe string
	detailed  bool
}

func (a *API) health(c echo.Context) error {
	p := newParams(c.Request().URL.RawQuery, "component", "detailed", "timeframe")
	q := healthQuery{
		component: p.Enum("component", "", append(slices.Clone(event.Components), ExternalServices)...),
		timeframe: p.Enum("timeframe", "1h", "1h", "24h", "7d", "30d"),
		detailed:  p.Bool("detailed", false),
	}
	if err := p.Err(); err != nil {
		return err
	}
	if q.component == ExternalServices {
		q.component = "external"
	}
	key := a.cacheKey("health", "component="+q.component, "detailed="+strconv.FormatBool(q.detailed), "timeframe="+q.timeframe)
	return a.answer(c, key, a.cfg.HealthCacheTTL, func(ctx context.Context) (any, error) {
		return a.buildHealth(ctx, q)
	})
}

// transient reports whether the answer must not be cached.
func (r *HealthResponse) transient() bool { return r.fromProbes }

// probeResult is a stored probe run.
type probeResult struct {
	component, target, status, details string
	responseTimeMS                     float64
	ts                                 time.Time
}

// lastFigures are the store's figures of the last health answer that
// read them, served (marked stale) while the store is down.
type lastFigures struct {
	mu     sync.Mutex
	at     time.Time // when they were read; zero: never
	perf   CurrentPerformance
	uptime map[string]Uptime // by answered name
}

// buildHealth answers from the store or, when it fails and the probes'
// latest results are at hand, from those.
func (a *API) buildHealth(ctx context.Context, q healthQuery) (*HealthResponse, error) {
	resp, err := a.healthFromStore(ctx, q)
	if err == nil {
		a.last.mu.Lock()
		a.last.at, a.last.perf = resp.LastUpdated, resp.PerformanceMetrics
		if a.last.uptime == nil {
			a.last.uptime = map[string]Uptime{}
		}
		maps.Copy(a.last.uptime, resp.Uptime)
		a.last.mu.Unlock()
		return resp, nil
	}
	if a.cfg.Probes == nil {
		return nil, err
	}
	return a.healthFromProbes(q), nil
}

func (a *API) newHealth(now time.Time, q healthQuery) *HealthResponse {
	return &HealthResponse{Uptime: map[string]Uptime{}, UptimeDefinition: UptimeDefinition,
		ErrorRateDefinition: ErrorRateDefinition, LastUpdated: now, Timeframe: q.timeframe,
		Source: "store", Store: StoreState{Status: "up"}}
}

// healthFromProbes answers from the probes' latest results in memory,
// with the last figures read from the store, marked stale.
func (a *API) healthFromProbes(q healthQuery) *HealthResponse {
	now := a.cfg.Now().UTC()
	resp := a.newHealth(now, q)
	resp.fromProbes, resp.Source = true, "probes"
	resp.Store = StoreState{Status: "down", Reason: storeDown + ": components are the probes' latest results in memory"}
	var latest []probeResult
	for _, h := range a.cfg.Probes.Latest() {
		if q.component == "" || h.Component == q.component {
			latest = append(latest, probeResult{component: h.Component, target: h.Target, status: h.Status,
				details: string(h.Details), responseTimeMS: h.ResponseTimeMS, ts: h.Timestamp})
		}
	}
	a.last.mu.Lock()
	at, perf, uptime := a.last.at, a.last.perf, maps.Clone(a.last.uptime)
	a.last.mu.Unlock()
	why := storeDown + ": no figures read since start"
	if !at.IsZero() {
		why = storeDown + ": figures as of " + at.Format(time.RFC3339)
	} else {
		perf = CurrentPerformance{WindowSeconds: int(CurrentWindow / time.Second)}
	}
	resp.PerformanceMetrics = perf
	resp.Stale = map[string]string{"performance_metrics": why, "uptime": why}
	a.assemble(resp, q, latest, func(name string) Uptime { return uptime[answerName(name)] })
	return resp
}

func (a *API) healthFromStore(ctx context.Context, q healthQuery) (*HealthResponse, error) {
	now := a.cfg.Now().UTC()
	filter := ""
	if q.component != "" {
		filter = " AND component = " + chstore.Quote(q.component)
	}
	resp := a.newHealth(now, q)
	var latest []probeResult
	uptime := map[string]*[6]uint64{}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		const k = "(ts, stream_seq, seq_idx)"
		sql := "SELECT component, target, argMax(status, " + k + "), argMax(response_time_ms, " + k + "), argMax(details, " + k + "), max(ts) FROM " +
			a.store.T("health_checks") + " WHERE " + timeRange("ts", now.Add(-30*24*time.Hour), now.Add(event.MaxFutureSkew)) + filter +
			" GROUP BY component, target ORDER BY component, target"
		var r probeResult
		return a.each(gctx, "health latest", sql, []any{&r.component, &r.target, &r.status, &r.responseTimeMS, &r.details, &r.ts}, func() {
			latest = append(latest, r)
		})
	})
	g.Go(func() error {
		// Windows (now - d, now]; runs of unknown or unrecognised status count nowhere.
		up, known := "status IN ('healthy', 'degraded')", "status IN ('healthy', 'degraded', 'critical')"
		var cols []string
		for _, d := range []time.Duration{24 * time.Hour, 7 * 24 * time.Hour, 30 * 24 * time.Hour} {
			since := "ts > " + chstore.DateTime(now.Add(-d))
			cols = append(cols, "countIf("+since+" AND "+up+")", "countIf("+since+" AND "+known+")")
		}
		sql := "SELECT component, " + strings.Join(cols, ", ") + " FROM " + a.store.T("health_checks") +
			" WHERE ts > " + chstore.DateTime(now.Add(-30*24*time.Hour)) + " AND ts <= " + chstore.DateTime(now) + filter + " GROUP BY component"
		var name string
		var n [6]uint64
		return a.each(gctx, "health uptime", sql, []any{&name, &n[0], &n[1], &n[2], &n[3], &n[4], &n[5]}, func() {
			counts := n
			uptime[name] = &counts
		})
	})
	g.Go(func() error {
		from, to := schema.RecentMinutes(now, CurrentWindow)
		union := strings.Join(schema.TileSelects(a.store.T, from, to, []schema.Rollup{schema.Service1h, schema.Service5m, schema.Service1m},
			"requests, errors_5xx, duration_sum, duration_max, latency", ""), " UNION ALL ")
		var n, e5 uint64
		var sum, mx float64
		var bins []float64
		err := a.store.QueryRow(gctx, "SELECT toUInt64(countMerge(requests)), toUInt64(sumMerge(errors_5xx)), sumMerge(duration_sum), maxMerge(duration_max), "+
			schema.LatencyQuantiles+" FROM ("+union+")", &n, &e5, &sum, &mx, &bins)
		if err != nil {
			return a.unavailable("health performance", err)
		}
		pm := CurrentPerformance{WindowSeconds: int(CurrentWindow / time.Second), RequestCount: n,
			ThroughputRPS: float64(n) / now.Sub(from).Seconds()}
		if n > 0 && len(bins) == 3 {
			// A bin's middle may lie above the largest request it holds.
			pm.AvgResponseTimeMS, pm.P95ResponseTimeMS, pm.ErrorRate = num(sum/float64(n)), num(min(schema.LatencyMS(bins[1]), mx)), ratio(e5, n)
			if pm.AvgResponseTimeMS != nil {
				pm.AvgResponseTime = *pm.AvgResponseTimeMS
			}
		}
		resp.PerformanceMetrics = pm
		return nil
	})
	if err := g.Wait(); err != nil {
		return nil, err
	}
	a.assemble(resp, q, latest, func(name string) Uptime {
		if n := uptime[name]; n != nil {
			return Uptime{window(n[0], n[1]), window(n[2], n[3]), window(n[4], n[5])}
		}
		return Uptime{}
	})
	return resp, nil
}

// assemble fills resp's components, overall status and uptime from the
// latest result of each component and target, and uptime of each stored
// component name.
func (a *API) assemble(resp *HealthResponse, q healthQuery, latest []probeResult, uptime func(stored string) Uptime) {
	names := event.Components // the spec's five and Pulse's own pipeline, in order
	if q.component != "" {
		names = []string{q.component}
	}
	byComponent := map[string][]probeResult{}
	for _, r := range latest {
		byComponent[r.component] = append(byComponent[r.component], r)
	}
	overall := -1 // rank of the worst configured component; -1: none configured
	for _, name := range names {
		ch := a.component(answerName(name), byComponent[name], resp.LastUpdated, q.detailed)
		resp.Components = append(resp.Components, ch)
		if ch.Configured {
			overall = max(overall, rank(ch.Status))
		}
		resp.Uptime[answerName(name)] = uptime(name)
	}
	resp.OverallStatus = []string{event.StatusUnknown, event.StatusHealthy, event.StatusDegraded, event.StatusCritical}[overall+1]
}

func window(up, checks uint64) UptimeWindow {
	return UptimeWindow{Ratio: ratio(up, checks), Checks: checks, Up: up}
}

// rank orders statuses for overall_status: a configured component whose
// probe could not tell (unknown) counts as degraded.
func rank(status string) int {
	switch status {
	case event.StatusHealthy:
		return 0
	case event.StatusCritical:
		return 2
	default:
		return 1
	}
}

// display orders statuses for a component of several targets: critical,
// then degraded, then unknown, then healthy.
func display(status string) int {
	switch status {
	case event.StatusCritical:
		return 3
	case event.StatusDegraded:
		return 2
	case event.StatusUnknown:
		return 1
	}
	return 0
}

// target evaluates one stored result at now.
func (a *API) target(r probeResult, now time.Time, detailed bool) TargetHealth {
	details := parseDetails(r.details)
	t := TargetHealth{Name: scrub(r.target), Status: r.status, Configured: true, LastChecked: r.ts}
	switch t.Status {
	case event.StatusHealthy, event.StatusDegraded, event.StatusCritical, event.StatusUnknown:
	default:
		t.Status = event.StatusUnknown
		t.Reason = "unrecognised probe status"
	}
	if configured, ok := details["configured"].(bool); ok && !configured && t.Status == event.StatusUnknown {
		t.Configured = false
	}
	// The probes' short account: a reason or an error, with its cause
	// (all sanitised by parseDetails).
	for _, k := range []string{"reason", "error"} {
		if s, ok := details[k].(string); ok && s != "" && t.Reason == "" {
			t.Reason = s
			if c, ok := details["cause"].(string); ok && c != "" {
				t.Reason += ": " + c
			}
		}
	}
	// The spec's error and last_error: the failure, short and with its cause.
	if s, ok := details["error"].(string); ok && s != "" {
		t.Error, t.LastError = "check failed: "+s, s
		if c, ok := details["cause"].(string); ok && c != "" {
			t.LastError += ": " + c
		}
	}
	switch {
	case !t.Configured:
		if t.Reason == "" {
			t.Reason = "not configured"
		}
	case now.Sub(r.ts) > a.cfg.StaleAfter:
		t.Status = event.StatusUnknown
		t.Reason = "no probe result since " + r.ts.UTC().Format(time.RFC3339)
		t.Error, t.LastError = "", "" // not a current failure
	default:
		t.ResponseTimeMS = num(r.responseTimeMS)
		if t.Status == event.StatusCritical && t.Error == "" {
			t.Error = cmp.Or(t.Reason, "critical")
			t.LastError = t.Error
		}
	}
	if detailed {
		t.Details = details
	}
	return t
}

// component evaluates a component from the latest result of each of its
// targets.
func (a *API) component(name string, results []probeResult, now time.Time, detailed bool) ComponentHealth {
	ch := ComponentHealth{Name: name, Status: event.StatusUnknown}
	if len(results) == 0 {
		ch.Reason = "no probe results yet"
		return ch
	}
	// A target that stopped reporting while others still do was removed
	// from the probe's configuration: leave it out.
	var fresh []probeResult
	for _, r := range results {
		if now.Sub(r.ts) <= a.cfg.StaleAfter {
			fresh = append(fresh, r)
		}
	}
	if len(fresh) > 0 {
		results = fresh
	}
	var targets []TargetHealth
	for _, r := range results {
		targets = append(targets, a.target(r, now, detailed))
		if ch.LastChecked == nil || r.ts.After(*ch.LastChecked) {
			ts := r.ts
			ch.LastChecked = &ts
		}
	}
	multi := len(targets) > 1 || targets[0].Name != ""
	if !multi {
		t := targets[0]
		ch.Status, ch.Configured, ch.Reason, ch.ResponseTimeMS, ch.Details = t.Status, t.Configured, t.Reason, t.ResponseTimeMS, t.Details
		ch.Error, ch.LastError = t.Error, t.LastError
		return ch
	}
	ch.Targets = targets
	worst := -1
	for _, t := range targets {
		if !t.Configured {
			continue
		}
		ch.Configured = true
		if d := display(t.Status); d > worst {
			worst, ch.Status = d, t.Status
		}
		if t.ResponseTimeMS != nil && (ch.ResponseTimeMS == nil || *t.ResponseTimeMS > *ch.ResponseTimeMS) {
			ch.ResponseTimeMS = num(*t.ResponseTimeMS)
		}
	}
	if !ch.Configured {
		ch.Reason = "no target is configured"
		return ch
	}
	if ch.Status != event.StatusHealthy {
		var which []string
		for _, t := range targets {
			if t.Configured && t.Status == ch.Status {
				which = append(which, t.Name)
			}
		}
		sort.Strings(which)
		ch.Reason = strconv.Itoa(len(which)) + " of " + strconv.Itoa(countConfigured(targets)) + " targets " + ch.Status + ": " + strings.Join(slices.Compact(which), ", ")
	}
	// The spec's error: the worst failing target's, named.
	for _, t := range targets {
		if t.Configured && t.Error != "" && t.Status == ch.Status {
			ch.Error, ch.LastError = ch.Reason, t.Name+": "+t.LastError
			break
		}
	}
	return ch
}

func countConfigured(ts []TargetHealth) int {
	n := 0
	for _, t := range ts {
		if t.Configured {
			n++
		}
	}
	return n
}
