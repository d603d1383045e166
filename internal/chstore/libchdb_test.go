//go:build chdb

package chstore

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

// TestFindLibChDB: CHDB_LIB_PATH wins; otherwise the library is taken from
// the cache scripts/libchdb.sh fills, only once it is verified; otherwise
// the error says how to get it.
func TestFindLibChDB(t *testing.T) {
	cached := func(root string) string {
		dir := filepath.Join(root, "chdb-"+ChDBVersion)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		so := filepath.Join(dir, "libchdb.so")
		for _, f := range []string{so, so + ".verified"} {
			if err := os.WriteFile(f, nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return so
	}
	f := func(name string, env map[string]string, want, wantErr string) {
		t.Helper()
		t.Run(name, func(t *testing.T) {
			for _, k := range []string{"CHDB_LIB_PATH", "PULSE_CACHE", "XDG_CACHE_HOME", "HOME"} {
				t.Setenv(k, env[k])
			}
			got, err := findLibChDB()
			switch {
			case wantErr == "" && (err != nil || got != want):
				t.Errorf("got %q, %v; want %q", got, err, want)
			case wantErr != "" && (err == nil || !strings.Contains(err.Error(), wantErr)):
				t.Errorf("got %q, %v; want an error containing %q", got, err, wantErr)
			}
		})
	}
	explicit := filepath.Join(t.TempDir(), "lib.so")
	if err := os.WriteFile(explicit, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	pulseCache, xdg, home := t.TempDir(), t.TempDir(), t.TempDir()
	fromPulseCache := cached(pulseCache)
	fromXDG := cached(filepath.Join(xdg, "pulse"))
	fromHome := cached(filepath.Join(home, ".cache", "pulse"))
	unverified := t.TempDir()
	if err := os.MkdirAll(filepath.Join(unverified, "chdb-"+ChDBVersion), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(unverified, "chdb-"+ChDBVersion, "libchdb.so"), nil, 0o644); err != nil {
		t.Fatal(err)
	}

	f("CHDB_LIB_PATH", map[string]string{"CHDB_LIB_PATH": explicit, "PULSE_CACHE": pulseCache}, explicit, "")
	f("CHDB_LIB_PATH missing", map[string]string{"CHDB_LIB_PATH": explicit + ".gone", "PULSE_CACHE": pulseCache}, "", "CHDB_LIB_PATH")
	f("PULSE_CACHE", map[string]string{"PULSE_CACHE": pulseCache, "XDG_CACHE_HOME": xdg, "HOME": home}, fromPulseCache, "")
	f("XDG_CACHE_HOME", map[string]string{"XDG_CACHE_HOME": xdg, "HOME": home}, fromXDG, "")
	f("HOME", map[string]string{"HOME": home}, fromHome, "")
	f("not verified", map[string]string{"PULSE_CACHE": unverified}, "", "run scripts/libchdb.sh (or make run)")
	f("nothing", map[string]string{"HOME": t.TempDir()}, "", "run scripts/libchdb.sh (or make run)")
}

// TestChDBVersionMatchesScript: the cache directory looked in is the one
// scripts/libchdb.sh fills.
func TestChDBVersionMatchesScript(t *testing.T) {
	script, err := os.ReadFile("../../scripts/libchdb.sh")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^readonly CHDB_VERSION='([^']+)'`).FindSubmatch(script)
	if m == nil || string(m[1]) != ChDBVersion {
		t.Fatalf("scripts/libchdb.sh pins chDB %q; ChDBVersion is %q", m, ChDBVersion)
	}
}

// TestOpenWithoutLibrary: in a process that cannot find libchdb.so,
// opening a chdb: DSN fails with one line saying how to get it (no panic),
// and the process goes on.
func TestOpenWithoutLibrary(t *testing.T) {
	if os.Getenv("PULSE_TEST_NO_LIBCHDB_CHILD") != "" {
		_, err := Open(context.Background(), "chdb:"+t.TempDir(), zerolog.Nop())
		if err == nil {
			t.Fatal("Open succeeded without a library")
		}
		t.Logf("child error: %v", err)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestOpenWithoutLibrary$", "-test.count=1", "-test.v")
	cmd.Env = []string{"PULSE_TEST_NO_LIBCHDB_CHILD=1", "HOME=" + t.TempDir(), "PATH=" + os.Getenv("PATH")}
	out, err := cmd.CombinedOutput()
	m := regexp.MustCompile(`child error: (.*)`).FindSubmatch(out)
	if err != nil || m == nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	for _, want := range []string{"open chdb at ", "libchdb.so not found", "scripts/libchdb.sh"} {
		if !strings.Contains(string(m[1]), want) {
			t.Errorf("error %q lacks %q", m[1], want)
		}
	}
}
