package main

import (
	"flag"
	"io"
	"os"
	"regexp"
	"testing"
)

// TestREADMEConfigTable keeps the README's configuration table true: every
// flag of `pulse serve` is listed with its environment twin, and nothing
// else is.
func TestREADMEConfigTable(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := regexp.MustCompile("(?m)^\\| `--([a-z0-9-]+)` \\| `(PULSE_[A-Z0-9_]+)` \\|").FindAllStringSubmatch(string(readme), -1)
	listed := map[string]string{}
	for _, r := range rows {
		listed[r[1]] = r[2]
	}
	var f serveFlags
	fs, _ := serveFlagSet(&f, io.Discard)
	fs.VisitAll(func(fl *flag.Flag) {
		env, ok := listed[fl.Name]
		switch {
		case !ok:
			t.Errorf("README does not list --%s", fl.Name)
		case env != envName(fl.Name):
			t.Errorf("README lists --%s as %s; want %s", fl.Name, env, envName(fl.Name))
		}
		delete(listed, fl.Name)
	})
	for name := range listed {
		t.Errorf("README lists --%s, which pulse serve does not have", name)
	}
}
