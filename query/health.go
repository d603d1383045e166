package query

import (
	"context"
	"slices"
	"sort"
	"strconv"
	"strings"
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
type HealthResponse struct {
	OverallStatus       string             `json:"overall_status"`
	Components          []ComponentHealth  `json:"components"`
	PerformanceMetrics  CurrentPerformance `json:"performance_metrics"`
	Uptime              map[string]Uptime  `json:"uptime"` // by component name
	UptimeDefinition    string             `json:"uptime_definition"`
	ErrorRateDefinition string             `json:"error_rate_definition"`
	LastUpdated         time.Time          `json:"last_updated"`
}

// ComponentHealth is the latest probe result of a component. A component
// with several targets (external: one per dependency) lists them, and its
// status is the worst of theirs.
type ComponentHealth struct {
	Name           string         `json:"name"`
	Status         string         `json:"status"`     // healthy, degraded, critical or unknown
	Configured     bool           `json:"configured"` // false: unknown and left out of overall_status
	Reason         string         `json:"reason,omitempty"`
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
	ResponseTimeMS *float64       `json:"response_time_ms"`
	LastChecked    time.Time      `json:"last_checked"`
	Details        map[string]any `json:"details,omitempty"` // detailed=true only
}

// CurrentPerformance describes the fleet's requests over the last
// CurrentWindow, from the rollups. Figures of no requests are null.
type CurrentPerformance struct {
	WindowSeconds     int      `json:"window_seconds"`
	RequestCount      uint64   `json:"request_count"`
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

func (a *API) health(c echo.Context) error {
	p := newParams(c.Request().URL.RawQuery, "component", "detailed")
	component := p.Enum("component", "", event.Components...)
	detailed := p.Bool("detailed", false)
	if err := p.Err(); err != nil {
		return err
	}
	key := a.cacheKey("health", "component="+component, "detailed="+strconv.FormatBool(detailed))
	return a.answer(c, key, a.cfg.HealthCacheTTL, func(ctx context.Context) (any, error) {
		return a.buildHealth(ctx, component, detailed)
	})
}

// probeResult is a stored probe run.
type probeResult struct {
	component, target, status, details string
	responseTimeMS                     float64
	ts                                 time.Time
}

func (a *API) buildHealth(ctx context.Context, component string, detailed bool) (*HealthResponse, error) {
	now := a.cfg.Now().UTC()
	names := event.Components // the spec's five and Pulse's own pipeline, in order
	filter := ""
	if component != "" {
		names = []string{component}
		filter = " AND component = " + chstore.Quote(component)
	}
	resp := &HealthResponse{Uptime: map[string]Uptime{}, UptimeDefinition: UptimeDefinition,
		ErrorRateDefinition: ErrorRateDefinition, LastUpdated: now}
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
		}
		resp.PerformanceMetrics = pm
		return nil
	})
	if err := g.Wait(); err != nil {
		return nil, err
	}

	byComponent := map[string][]probeResult{}
	for _, r := range latest {
		byComponent[r.component] = append(byComponent[r.component], r)
	}
	overall := -1 // rank of the worst configured component; -1: none configured
	for _, name := range names {
		ch := a.component(name, byComponent[name], now, detailed)
		resp.Components = append(resp.Components, ch)
		if ch.Configured {
			overall = max(overall, rank(ch.Status))
		}
		u := Uptime{}
		if n := uptime[name]; n != nil {
			u = Uptime{window(n[0], n[1]), window(n[2], n[3]), window(n[4], n[5])}
		}
		resp.Uptime[name] = u
	}
	resp.OverallStatus = []string{event.StatusUnknown, event.StatusHealthy, event.StatusDegraded, event.StatusCritical}[overall+1]
	return resp, nil
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
	switch {
	case !t.Configured:
		if t.Reason == "" {
			t.Reason = "not configured"
		}
	case now.Sub(r.ts) > a.cfg.StaleAfter:
		t.Status = event.StatusUnknown
		t.Reason = "no probe result since " + r.ts.UTC().Format(time.RFC3339)
	default:
		t.ResponseTimeMS = num(r.responseTimeMS)
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
