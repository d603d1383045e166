//go:build soak

package main

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// TestSoak runs the fault scenarios of faults_test.go one after another,
// each under load three times as long as in its short form, until
// SOAK_DURATION (default 10m) has passed, then prints the table of every
// round (fault, events sent, accepted, stored, duplicated, lost) and fails
// if any event answered 202 was lost or stored twice. `make soak` runs it;
// the soak build tag keeps it out of `make test`.
func TestSoak(t *testing.T) {
	d := 10 * time.Minute
	if s := os.Getenv("SOAK_DURATION"); s != "" {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			t.Fatalf("SOAK_DURATION: %v", err)
		}
	}
	faults := []struct {
		name string
		run  func(*testing.T, int) tally
	}{
		{"aggregator-killed", faultAggregatorKilled},
		{"clickhouse-stopped", faultClickHouseStopped},
		{"sigterm-every-role", faultSIGTERMEveryRole},
		{"redis-stopped", faultRedisStopped},
		{"postgres-unreachable", faultPostgresUnreachable},
		{"stream-full", faultStreamFull},
	}
	var rows []tally
	end := time.Now().Add(d)
	for round := 1; time.Now().Before(end); round++ {
		for _, f := range faults {
			if !time.Now().Before(end) {
				break
			}
			t.Run(f.name, func(t *testing.T) {
				r := f.run(t, 3)
				rows = append(rows, r)
				assertTally(t, r)
			})
		}
	}
	t.Logf("soak of %s:\n%s", d, formatTallies(rows))
	os.Stdout.WriteString(formatTallies(rows))
}

// formatTallies renders tallies as the soak's table.
func formatTallies(rows []tally) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-32s %10s %10s %10s %10s %6s\n", "fault", "sent", "accepted", "stored", "duplicated", "lost")
	for _, r := range rows {
		fmt.Fprintf(&b, "%-32s %10d %10d %10d %10d %6d\n", r.Fault, r.Sent, r.Accepted, r.Stored, r.Duplicated, r.Lost)
	}
	return b.String()
}
