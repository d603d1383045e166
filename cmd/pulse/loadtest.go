package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/wedsync/pulse/internal/loadtest"
)

// loadtestEnvPrefix prefixes the environment twins of loadtest's flags
// (PULSE_LOADTEST_TOKEN for --token), so that the PULSE_* settings of a
// `pulse serve` in the same shell do not steer a load test.
const loadtestEnvPrefix = "PULSE_LOADTEST_"

// loadtestCmd is `pulse loadtest`: it loads a Pulse over HTTP, prints a
// summary judged against the spec's targets, and fails (exit 1) when one
// is missed.
func loadtestCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c loadtest.Config
	fs := newFlagSet("loadtest", stderr)
	fs.StringVar(&c.Target, "target", "http://127.0.0.1:7480", "base URL of the Pulse to load (loopback only unless --allow-remote)")
	fs.IntVar(&c.Users, "users", 10000, "virtual users (wedding-season: baseline users; the peak runs 3x)")
	fs.DurationVar(&c.RampUp, "ramp-up", 30*time.Second, "users start evenly spread over this, counted within --duration")
	fs.DurationVar(&c.Duration, "duration", 60*time.Second, "length of the run, ramp-up included (wedding-season: of each of its two phases)")
	fs.Float64Var(&c.RatePerUser, "rate-per-user", 1, "requests per second of each user")
	fs.StringVar(&c.Scenario, "scenario", loadtest.ScenarioIngest, "ingest, admin, mixed (1 admin user in 100) or wedding-season (baseline, then 3x users)")
	fs.StringVar(&c.Token, "token", "", "ingest token (prefer the env twin PULSE_LOADTEST_TOKEN)")
	fs.StringVar(&c.AdminToken, "admin-token", "", "admin token: admin reads, the storage check, the database probe (prefer PULSE_LOADTEST_ADMIN_TOKEN)")
	fs.IntVar(&c.Batch, "batch", 1, "events per ingest request; more than 1 sends NDJSON")
	fs.DurationVar(&c.VerifyTimeout, "verify-timeout", 60*time.Second, "how long to wait after the run for every event answered 202 to be stored")
	fs.BoolVar(&c.AllowRemote, "allow-remote", false, "allow a --target that is not on loopback")
	fs.IntVar(&c.MaxConns, "max-connections", 0, "connections the users share; 0: one per user, as far as the open-file limit allows")
	jsonFile := fs.String("json", "", "also write the summary as JSON to this file")
	if err := parseWithEnvPrefix(fs, loadtestEnvPrefix, args); err != nil {
		return err
	}
	if err := c.Validate(); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}

	need := uint64(c.PeakUsers() + loadtest.FileSlack)
	limit, err := loadtest.RaiseOpenFileLimit()
	if err != nil {
		fmt.Fprintf(stderr, "pulse loadtest: %v\n", err)
	}
	if c.MaxConns > 0 {
		need = uint64(min(c.MaxConns, c.PeakUsers()) + loadtest.FileSlack)
	}
	if limit < need {
		c.MaxConns = max(int(limit)-loadtest.FileSlack, 1)
		fmt.Fprintf(stderr, "pulse loadtest: the open-file limit is %d (the OS caps it there), below the %d that %d users need: "+
			"they share %d connections, and their waits count as latency\n", limit, need, c.PeakUsers(), c.MaxConns)
	}
	c.Progress = stdout
	if f, ok := stdout.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			c.Terminal = true
		}
	}

	r := loadtest.New(c)
	fmt.Fprintf(stdout, "pulse loadtest: %s scenario against %s, %d users, run service %s\n", c.Scenario, c.Target, c.PeakUsers(), r.Service())
	rep, err := r.Run(ctx)
	if err != nil {
		return err
	}
	rep.WriteTable(stdout)
	if *jsonFile != "" {
		b, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.WriteFile(*jsonFile, append(b, '\n'), 0o644); err != nil {
			return fmt.Errorf("write --json: %w", err)
		}
	}
	switch {
	case rep.Interrupted:
		return errors.New("load test interrupted")
	case !rep.Pass:
		var missed []string
		for _, cr := range rep.Criteria {
			if cr.Result == loadtest.Failed {
				missed = append(missed, cr.Name)
			}
		}
		return fmt.Errorf("load test failed: %s", strings.Join(missed, ", "))
	}
	return nil
}
