package main

import (
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wedsync/pulse/validate"
)

// TestValidateConfigFlags: the architecture validation flags and their
// PULSE_* twins reach validate.Config; the defaults are WedSync's Postgres
// (no ClickHouse tables required); bad values are usage errors.
func TestValidateConfigFlags(t *testing.T) {
	parse := func(args ...string) (validate.Config, error) {
		t.Helper()
		var f serveFlags
		fs, _ := serveFlagSet(&f, io.Discard)
		if err := parseWithEnv(fs, args); err != nil {
			return validate.Config{}, err
		}
		return f.validate.config("postgres://pulse@127.0.0.1:5432/app")
	}
	c, err := parse()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.RequiredTables, []string{"user_profiles", "suppliers", "couples", "core_fields"}) ||
		!slices.Equal(c.ExposedSchemas, []string{"public"}) || !slices.Equal(c.UserIDColumns, []string{"user_profiles.id"}) ||
		c.UserIDsPseudonymised || c.SLOAverage != 500*time.Millisecond || c.SLOP95 != time.Second || c.SLOErrorRate != 0.01 ||
		c.DatabaseURL == "" {
		t.Errorf("defaults: %+v", c)
	}

	t.Setenv("PULSE_VALIDATE_REQUIRED_TABLES", "suppliers, crm.leads")
	t.Setenv("PULSE_VALIDATE_EXPOSED_SCHEMAS", "public,api")
	t.Setenv("PULSE_VALIDATE_USER_ID_COLUMNS", "auth.users.id")
	t.Setenv("PULSE_VALIDATE_USER_IDS_PSEUDONYMISED", "true")
	t.Setenv("PULSE_VALIDATE_SLO_AVG", "300ms")
	t.Setenv("PULSE_VALIDATE_SLO_P95", "800ms")
	t.Setenv("PULSE_VALIDATE_SLO_ERROR_RATE", "0.005")
	if c, err = parse("--validate-slo-p95", "900ms"); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.RequiredTables, []string{"suppliers", "crm.leads"}) || !slices.Equal(c.ExposedSchemas, []string{"public", "api"}) ||
		!slices.Equal(c.UserIDColumns, []string{"auth.users.id"}) || !c.UserIDsPseudonymised ||
		c.SLOAverage != 300*time.Millisecond || c.SLOP95 != 900*time.Millisecond || c.SLOErrorRate != 0.005 {
		t.Errorf("from the environment (and --validate-slo-p95 over it): %+v", c)
	}
	if c, err = parse("--validate-required-tables", ""); err != nil || c.RequiredTables == nil || len(c.RequiredTables) != 0 {
		t.Errorf("empty required tables: %v, %v; want none required", c.RequiredTables, err)
	}

	for _, bad := range [][]string{
		{"--validate-exposed-schemas", ""},
		{"--validate-user-id-columns", "id"},
		{"--validate-user-id-columns", "a.b.c.d"},
		{"--validate-user-ids-pseudonymised=false", "--validate-user-id-columns", ""},
		{"--validate-slo-error-rate", "2"},
		{"--validate-slo-avg", "0s"},
		{"--validate-slo-p95", "soon"},
	} {
		if _, err := parse(bad...); !errors.Is(err, errUsage) || strings.Contains(err.Error(), "127.0.0.1") {
			t.Errorf("%v: err %v; want a usage error without the database URL", bad, err)
		}
	}
}
