package alerts_test

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/wedsync/pulse/alerts"
	"github.com/wedsync/pulse/alerts/rules"
)

// want is one expected problem of a bad fixture, from its "# want:" lines.
type want struct {
	line, col int
	field     string
	message   string
}

var wantLine = regexp.MustCompile(`^# want: (\d+):(\d+) ([^:]*): (.+)$`)

func wants(t *testing.T, path string) []want {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []want
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		m := wantLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		var w want
		fmt.Sscan(m[1], &w.line)
		fmt.Sscan(m[2], &w.col)
		w.field, w.message = m[3], m[4]
		out = append(out, w)
	}
	return out
}

// TestCheckFixtures runs Check, as `pulse rules check FILE` does, on every
// fixture: good ones pass with a summary; each bad one fails, and its
// output names exactly the problems its "# want:" lines list, each at its
// line (and column, when given) with its field.
func TestCheckFixtures(t *testing.T) {
	files, err := filepath.Glob("testdata/rules/*.yaml")
	if err != nil || len(files) < 10 {
		t.Fatalf("fixtures: %v, %d files", err, len(files))
	}
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			var out bytes.Buffer
			err := alerts.Check(path, &out)
			if strings.HasPrefix(filepath.Base(path), "good_") {
				if err != nil {
					t.Fatalf("Check: %v\n%s", err, out.String())
				}
				if !strings.Contains(out.String(), path+": ok:") {
					t.Errorf("got output %q; want a summary starting %q", out.String(), path+": ok:")
				}
				return
			}
			if err == nil {
				t.Fatalf("Check passed a bad fixture; output %q", out.String())
			}
			ws := wants(t, path)
			if len(ws) == 0 {
				t.Fatalf("bad fixture without # want: lines")
			}
			lines := strings.Split(strings.TrimSpace(out.String()), "\n")
			if len(lines) != len(ws) {
				t.Errorf("got %d problems; want %d:\n%s", len(lines), len(ws), out.String())
			}
			for _, w := range ws {
				prefix := fmt.Sprintf("%s:%d:", path, w.line)
				if w.col > 0 {
					prefix += fmt.Sprintf("%d:", w.col)
				}
				if w.field != "" {
					prefix += " " + w.field + ":"
				}
				found := false
				for _, l := range lines {
					if strings.HasPrefix(l, prefix) && strings.Contains(l, w.message) {
						found = true
					}
				}
				if !found {
					t.Errorf("no problem %q ... %q in:\n%s", prefix, w.message, out.String())
				}
			}
			if !strings.Contains(err.Error(), "problem") {
				t.Errorf("got error %q; want it to count the problems", err)
			}
		})
	}
}

// TestCheckMissingFile: a file that cannot be read is an error, not a
// summary.
func TestCheckMissingFile(t *testing.T) {
	var out bytes.Buffer
	if err := alerts.Check("testdata/rules/no-such-file.yaml", &out); err == nil || !strings.Contains(err.Error(), "read rules file") {
		t.Fatalf("got %v; want a read error", err)
	}
}

// TestExampleIsDefault: deploy/alerts.example.yaml is the built-in set
// written out, so copying it changes nothing until edited.
func TestExampleIsDefault(t *testing.T) {
	set, err := rules.Load("../deploy/alerts.example.yaml")
	if err != nil {
		t.Fatalf("load example: %v", err)
	}
	def := rules.Default()
	set.Source = def.Source
	stripLines(set)
	stripLines(def)
	if !reflect.DeepEqual(set, def) {
		t.Errorf("deploy/alerts.example.yaml differs from the built-in rules:\n got %+v\nwant %+v", set, def)
	}
}

func stripLines(s *rules.Set) {
	for i := range s.Instant {
		s.Instant[i].Line = 0
	}
	for i := range s.Window {
		s.Window[i].Line = 0
	}
	for i := range s.Scaling {
		s.Scaling[i].Line = 0
	}
}
