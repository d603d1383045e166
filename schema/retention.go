package schema

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/wedsync/pulse/internal/chstore"
)

// Retention is how long each kind of table keeps its rows.
type Retention struct {
	Raw    time.Duration // raw event tables (daily partitions)
	Rollup time.Duration // rollup tables (monthly partitions)
}

// DefaultRetention keeps raw rows 30 days and rollups 400 days.
var DefaultRetention = Retention{Raw: 30 * 24 * time.Hour, Rollup: 400 * 24 * time.Hour}

// partitioned lists the tables retention applies to, with the layout of
// their partition IDs and their time column.
var partitioned = []struct {
	table, layout, column string
	rollup                bool
}{
	{"requests", "20060102", "ts", false},
	{"requests_1m", "200601", "minute", true},
	{"requests_1m_hist", "200601", "start", true},
	{"requests_5m", "200601", "start", true},
	{"requests_1h", "200601", "start", true},
	{"requests_1m_svc", "200601", "start", true},
	{"requests_1m_drill", "200601", "start", true},
	{"requests_1m_ep", "200601", "start", true},
	{"requests_5m_svc", "200601", "start", true},
	{"requests_5m_drill", "200601", "start", true},
	{"requests_5m_ep", "200601", "start", true},
	{"requests_1h_svc", "200601", "start", true},
	{"requests_1h_drill", "200601", "start", true},
	{"requests_1h_ep", "200601", "start", true},
	{"requests_1d_ep", "200601", "start", true},
	{"resources", "20060102", "ts", false},
	{"health_checks", "20060102", "ts", false},
	{"alerts", "200601", "ts", true},
}

// Validate checks that both retentions are at least a day.
func (r Retention) Validate() error {
	if r.Raw < 24*time.Hour || r.Rollup < 24*time.Hour {
		return fmt.Errorf("retention must be at least one day (raw %s, rollup %s)", r.Raw, r.Rollup)
	}
	return nil
}

func (r Retention) of(rollup bool) time.Duration {
	if rollup {
		return r.Rollup
	}
	return r.Raw
}

// ApplyTTL sets a table TTL matching r on servers that support TTL (19.6 and
// later), so that the server itself removes expired rows; on older servers
// it does nothing and DropExpired is the only mechanism. A retention that
// is not a whole number of days is rounded up, so that the TTL never removes
// rows that r keeps. A table whose TTL already matches r is left alone; a
// different TTL is replaced without rewriting existing parts
// (materialize_ttl_after_modify = 0): they expire as merges reach them.
func ApplyTTL(ctx context.Context, s *chstore.Store, r Retention) error {
	if err := r.Validate(); err != nil {
		return err
	}
	if !s.Version().HasTTL() {
		return nil
	}
	for _, p := range partitioned {
		days := int((r.of(p.rollup) + 24*time.Hour - 1) / (24 * time.Hour))
		ttl := fmt.Sprintf("%s + toIntervalDay(%d)", p.column, days)
		var engine string
		err := s.QueryRow(ctx, "SELECT engine_full FROM system.tables WHERE database = "+chstore.Quote(s.Database())+
			" AND name = "+chstore.Quote(p.table), &engine)
		if err != nil {
			return fmt.Errorf("read TTL of %s: %w", p.table, err)
		}
		if ttlOf(engine) == ttl {
			continue
		}
		err = s.Exec(ctx, fmt.Sprintf("ALTER TABLE %s MODIFY TTL %s + INTERVAL %d DAY SETTINGS materialize_ttl_after_modify = 0",
			s.T(p.table), p.column, days))
		if err != nil {
			return fmt.Errorf("set TTL of %s: %w", p.table, err)
		}
	}
	return nil
}

// ttlOf returns the TTL expression in a table's engine_full, "" when it has
// none: "MergeTree ... ORDER BY ts TTL ts + toIntervalDay(30) SETTINGS ..."
// gives "ts + toIntervalDay(30)".
func ttlOf(engine string) string {
	i := strings.Index(engine, " TTL ")
	if i < 0 {
		return ""
	}
	ttl := engine[i+len(" TTL "):]
	if j := strings.Index(ttl, " SETTINGS "); j >= 0 {
		ttl = ttl[:j]
	}
	return strings.TrimSpace(ttl)
}

// DropExpired drops every partition whose rows are all older than the
// retention at now, and returns "table/partition" for each one dropped.
// Partition IDs (toYYYYMMDD, toYYYYMM) are read in the server's time zone,
// which is the one they were computed in.
func DropExpired(ctx context.Context, s *chstore.Store, r Retention, now time.Time) ([]string, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	var tz string
	if err := s.QueryRow(ctx, "SELECT timezone()", &tz); err != nil {
		return nil, fmt.Errorf("read server time zone: %w", err)
	}
	loc, err := time.LoadLocation(tz)
	if err != nil {
		return nil, fmt.Errorf("server time zone %q: %w", tz, err)
	}
	var dropped []string
	for _, p := range partitioned {
		cutoff := now.Add(-r.of(p.rollup))
		rows, err := s.Query(ctx, "SELECT DISTINCT partition FROM system.parts WHERE active AND database = "+
			chstore.Quote(s.Database())+" AND table = "+chstore.Quote(p.table))
		if err != nil {
			return dropped, fmt.Errorf("list partitions of %s: %w", p.table, err)
		}
		var expired []string
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return dropped, fmt.Errorf("list partitions of %s: %w", p.table, err)
			}
			start, err := time.ParseInLocation(p.layout, id, loc)
			if err != nil || len(id) != len(p.layout) {
				continue // not a partition this job manages
			}
			end := start.AddDate(0, 0, 1)
			if p.rollup {
				end = start.AddDate(0, 1, 0)
			}
			if !end.After(cutoff) {
				expired = append(expired, id)
			}
		}
		if err := rows.Err(); err != nil {
			rows.Close()
			return dropped, err
		}
		rows.Close()
		for _, id := range expired {
			if err := s.Exec(ctx, "ALTER TABLE "+s.T(p.table)+" DROP PARTITION "+id); err != nil {
				return dropped, fmt.Errorf("drop partition %s of %s: %w", id, p.table, err)
			}
			dropped = append(dropped, p.table+"/"+id)
		}
	}
	return dropped, nil
}

// RetentionJob drops expired partitions once at start and then every
// Interval (an hour when not set), until its context ends.
type RetentionJob struct {
	Store     *chstore.Store
	Retention Retention
	Interval  time.Duration
	Log       zerolog.Logger
}

// Run blocks until ctx is done, then returns nil. Failures are logged and
// retried at the next interval; they never stop the job.
func (j *RetentionJob) Run(ctx context.Context) error {
	interval := j.Interval
	if interval <= 0 {
		interval = time.Hour
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		dropped, err := DropExpired(ctx, j.Store, j.Retention, time.Now())
		if err != nil && ctx.Err() == nil {
			j.Log.Warn().Err(err).Msg("retention: dropping expired partitions failed")
		}
		if len(dropped) > 0 {
			j.Log.Info().Strs("partitions", dropped).Msg("retention: dropped expired partitions")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
